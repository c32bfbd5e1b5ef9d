"""The ``resnetlab`` command line.

Each command is a ``cmd_<name>(args)`` function and an ``add_<name>`` parser section. User
mistakes raise ``ResnetlabError`` and are printed as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from . import __version__
from .errors import ResnetlabError


def add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the registered models")
    p.add_argument("pattern", nargs="?", help="glob filter, e.g. 'plain*'")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    import torch

    from .analysis import count_parameters
    from .models import create_model, list_models, model_info

    rows = []
    for name in list_models(args.pattern):
        info = model_info(name)
        with torch.device("meta"):  # counts without allocating or initialising weights
            trainable, _ = count_parameters(create_model(name))
        rows.append(
            dict(
                name=name,
                family=info.family,
                group=info.group,
                input_size=info.input_size,
                num_classes=info.num_classes,
                params=trainable,
                description=info.description,
                source=info.source,
            )
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    console = Console()
    for group in dict.fromkeys(r["group"] for r in rows):
        table = Table(title=group or None, title_justify="left", title_style="bold")
        for column in ("model", "params", "classes", "input", "what it is", "source"):
            table.add_column(column, justify="right" if column in ("params", "classes") else "left")
        for r in (r for r in rows if r["group"] == group):
            table.add_row(
                r["name"],
                f"{r['params']:,}",
                str(r["num_classes"]),
                f"{r['input_size']}x{r['input_size']}",
                r["description"],
                r["source"],
            )
        console.print(table)
    return 0


def add_summary(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summary", help="layer table, parameter counts and FLOPs of a model")
    p.add_argument("model", help="a registered model name (see `resnetlab models`)")
    p.add_argument("--input-size", type=int, help="image side in pixels (default: the model's)")
    p.add_argument("--num-classes", type=int, help="classifier size (default: the model's)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_summary)


def cmd_summary(args: argparse.Namespace) -> int:
    from .analysis import print_summary, summarize
    from .models import create_model, model_info

    info = model_info(args.model)
    for flag, value in (("--input-size", args.input_size), ("--num-classes", args.num_classes)):
        if value is not None and value < 1:
            raise ResnetlabError(f"{flag} must be positive, got {value}")
    input_size = args.input_size or info.input_size
    kwargs = {"input_size": input_size} if info.family == "keras" else {}
    model = create_model(args.model, num_classes=args.num_classes, **kwargs)
    summary = summarize(model, input_size, name=args.model)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        print_summary(summary)
    return 0


def add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="look at a data set before training on it")
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    q = data_sub.add_parser(
        "inspect", help="splits, images per class, image sizes, and a contact sheet of samples"
    )
    q.add_argument("path", metavar="DATA", help="digits, cifar10, or a file or folder")
    q.add_argument("--out", help="contact sheet PNG (default: <name>-samples.png here)")
    q.add_argument("--no-sheet", action="store_true", help="do not write a contact sheet")
    q.add_argument("--image-size", type=int, help="resize images to N x N, as training would")
    q.add_argument("--download", action="store_true", help="fetch cifar10 if it is not cached")
    q.add_argument("--cache-dir", help="default: $RESNETLAB_CACHE or ~/.cache/resnetlab")
    q.add_argument("--json", action="store_true", help="print JSON instead of tables")
    q.set_defaults(func=cmd_data)


def cmd_data(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .data.report import contact_sheet, describe

    summary, splits = describe(
        args.path, image_size=args.image_size, download=args.download, cache_dir=args.cache_dir
    )
    if not args.no_sheet:
        name = Path(args.path.rstrip("/")).name.split(".")[0] or "data"
        out = Path(args.out or f"{name}-samples.png")
        split = splits.get("train") or next(iter(splits.values()))
        summary["sheet"] = str(contact_sheet(split, out, title=args.path))
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    console = Console()
    names = list(summary["splits"])
    console.print(
        f"[bold]{args.path}[/]: {summary['format']}, {len(summary['class_names'])} classes"
    )
    sizes = Table("split", "images", "image size", "in memory")
    for name, s in summary["splits"].items():
        h, w = s["image_size"]
        sizes.add_row(
            name, f"{s['images']:,}", f"{w}x{h}", "no (streamed)" if s["streamed"] else "yes"
        )
    console.print(sizes)
    counts = Table("class", *names)
    for c in summary["class_names"]:
        counts.add_row(c, *(f"{summary['splits'][n]['class_counts'].get(c, 0):,}" for n in names))
    console.print(counts)
    notes = summary["notes"] + [f"{n}: {t}" for n in names for t in summary["splits"][n]["notes"]]
    for note in notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    if "sheet" in summary:
        console.print(f"contact sheet: {summary['sheet']}", highlight=False, soft_wrap=True)
    return 0


def add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="import weights from other frameworks")
    sources = p.add_subparsers(dest="source", metavar="SOURCE", required=True)
    k = sources.add_parser(
        "keras",
        help="the seed's Keras ResNet50 (.h5, .weights.h5 or .keras) -> a resnetlab model file",
        description="Convert the deeplearning.ai course's Keras ResNet50 into a resnetlab "
        "model file. The classes and input size are read from the Keras file when it holds "
        "them; the flags override, and contradicting the file is an error.",
    )
    k.add_argument("src", help="Keras file: model.save('x.h5'), save_weights(...) or .keras")
    k.add_argument("dst", help="the .safetensors model file to write")
    k.add_argument("--input-size", type=int, help="input side in pixels (default: the file's)")
    k.add_argument("--num-classes", type=int, help="number of classes, checked against the file")
    k.add_argument("--classes", help='class names in output order, e.g. "0,1,2,3,4,5"')
    k.set_defaults(func=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert_keras

    class_names = None
    if args.classes is not None:
        class_names = [name.strip() for name in args.classes.split(",")]
        if not all(class_names):
            raise ResnetlabError(f'--classes has an empty name: "{args.classes}"')
    report = convert_keras(
        args.src,
        args.dst,
        input_size=args.input_size,
        num_classes=args.num_classes,
        class_names=class_names,
    )
    print(f"converted {report.describe()}")
    print(f"wrote {args.dst}")
    return 0


# Help for each TrainConfig field; every field is a flag of `resnetlab train`.
TRAIN_HELP = {
    "model": "model name (see `resnetlab models`); default resnet20",
    "data": "training data: digits, cifar10, a SIGNS .h5 file, an image folder or archive",
    "val_data": "validation data (default: the data's own held-out split, else --val-split)",
    "val_split": "fraction of the training data held out for validation (default: 0.2 when the "
    "data has no validation or test split of its own)",
    "subset": "train on about N training images, each class keeping its share (seeded)",
    "val_subset": "validate on about N of the validation images, likewise",
    "input_size": "image side the model sees; images are resized once (default: the model's)",
    "download": "download the data set if it is not in the cache (cifar10)",
    "stream": "stream images from disk instead of holding them in memory (default: by size)",
    "recipe": "preset: seed (Adam 1e-3, batch 32), paper-cifar (He et al. 4.2), modern (default)",
    "epochs": "passes over the training data",
    "max_steps": "train for this many steps instead of --epochs (the schedule spans them)",
    "batch_size": "images per step (per process under torchrun)",
    "optimizer": "sgd, adam or adamw",
    "lr": "peak learning rate",
    "momentum": "SGD momentum",
    "nesterov": "Nesterov momentum for SGD",
    "weight_decay": "L2 weight decay (decoupled for adamw)",
    "no_decay_norm_bias": "no weight decay on BN parameters and biases",
    "schedule": "learning-rate schedule: constant, step, cosine or onecycle",
    "milestones": "for --schedule step: fractions of training where the rate drops",
    "gamma": "for --schedule step: factor applied at each milestone",
    "warmup_epochs": "linear learning-rate warmup, in epochs (fractions allowed)",
    "label_smoothing": "label smoothing of the cross-entropy loss",
    "ema_decay": "keep and save an exponential moving average of the weights (e.g. 0.999)",
    "target_accuracy": "stop after the first epoch whose validation accuracy reaches this "
    "(e.g. 0.91; time-to-accuracy runs)",
    "crop_padding": "random crops after padding by this many pixels (0: off)",
    "flip": "random horizontal flips (default: on, except for digits)",
    "cutout": "cutout square side in pixels (0: off)",
    "seed": "seed for initialisation, data order and augmentation",
    "device": "auto, cpu, cuda, cuda:N or mps",
    "precision": "auto (bf16 on GPUs that support it, else fp32), fp32, bf16 or fp16",
    "channels_last": "channels-last memory format (default: on for CUDA and CPU)",
    "compile": "compile the model with torch.compile",
    "cuda_graphs": "capture the whole training step into a CUDA graph and replay it (CUDA only; "
    "fastest for small models such as the CIFAR nets, whose steps are launch-bound)",
    "deterministic": "use deterministic algorithms only (slower on GPU)",
    "sync_bn": "synchronise BatchNorm statistics across processes under torchrun",
    "num_workers": "loader worker processes for streamed data",
    "out": "run folder (default: runs/<model>-<data>-<time>)",
    "log_every": "steps between progress updates and metrics.csv rows",
    "tensorboard": "also write TensorBoard logs to RUN/tensorboard",
}
TRAIN_CHOICES = {
    "recipe": ("seed", "paper-cifar", "preact-cifar", "wrn-cifar", "modern"),
    "optimizer": ("sgd", "adam", "adamw"),
    "schedule": ("constant", "step", "cosine", "onecycle"),
    "precision": ("auto", "fp32", "bf16", "fp16"),
}


def add_train(sub: argparse._SubParsersAction) -> None:
    from .engine import TrainConfig

    p = sub.add_parser(
        "train",
        help="train a model and write a run folder",
        description="Train a model. With no flags: resnet20 on the bundled digits, about a minute "
        "on a laptop CPU. Flags override the recipe; --config reruns a run's config.json.",
    )
    p.add_argument(
        "--config", metavar="CONFIG_JSON", help="rerun a run's config.json (flags override)"
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument(
        "--model-option",
        action="append",
        metavar="KEY=VALUE",
        help="model constructor option, e.g. shortcut=B or zero_init_residual=true (repeatable)",
    )
    for f in dataclasses.fields(TrainConfig):
        if f.name == "model_kwargs":
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type)
        kwargs: dict = {"help": TRAIN_HELP[f.name], "default": None}
        if kind.startswith("bool"):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif kind.startswith("tuple"):
            kwargs.update(nargs="+", type=float)
        elif kind.startswith("int"):
            kwargs["type"] = int
        elif kind.startswith("float"):
            kwargs["type"] = float
        if f.name in TRAIN_CHOICES:
            kwargs["choices"] = TRAIN_CHOICES[f.name]
        p.add_argument(flag, **kwargs)
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from .engine import TrainConfig, resolve_config, train

    flags = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if f.name != "model_kwargs"
    }
    if args.model_option:
        flags["model_kwargs"] = parse_options(args.model_option)
    if args.resume:
        if args.config:
            raise ResnetlabError("--resume continues a run with its own config; drop --config")
        train(resume=args.resume, **flags)
        return 0
    file_values = TrainConfig.load(args.config) if args.config else None
    train(resolve_config(file_values, **flags))
    return 0


def parse_options(items: list[str]) -> dict:
    """``["shortcut=B", "zero_init_residual=true"]`` -> ``{"shortcut": "B", ...: True}``."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ResnetlabError(f"model option {item!r} is not KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value  # a bare string such as B
    return options


def add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="accuracy, per-class precision/recall and confusion matrix")
    p.add_argument("model_file", help="a model file written by resnetlab (.safetensors)")
    p.add_argument(
        "--data", required=True, help="data spec; its test (else validation) split is used"
    )
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto")
    p.add_argument("--png", help="confusion matrix image (default: next to the model file)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .analysis.plots import plot_confusion
    from .engine import evaluate

    report = evaluate(args.model_file, args.data, batch_size=args.batch_size, device=args.device)
    png = Path(args.png) if args.png else Path(args.model_file).with_suffix(".confusion.png")
    plot_confusion(
        report.result.confusion, report.class_names, png, title=f"{png.stem} on {args.data}"
    )
    data = report.to_dict()
    if args.json:
        print(json.dumps({**data, "confusion_png": str(png)}, indent=2))
        return 0
    console = Console()
    result = report.result
    for note in report.notes:
        console.print(f"note: {note}", highlight=False)
    console.print(
        f"{args.model_file} on {args.data}: accuracy {result.accuracy:.4f} "
        f"({round(result.accuracy * result.count)}/{result.count}), loss {result.loss:.4f}",
        highlight=False,
    )
    table = Table(title="per class", title_justify="left")
    for column in ("class", "precision", "recall", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for row in data["per_class"]:
        table.add_row(
            row["class"], f"{row['precision']:.3f}", f"{row['recall']:.3f}", str(row["support"])
        )
    console.print(table)
    matrix = Table(title="confusion (rows: true, columns: predicted)", title_justify="left")
    matrix.add_column("")
    for name in report.class_names:
        matrix.add_column(name, justify="right")
    for name, counts in zip(report.class_names, data["confusion"], strict=True):
        matrix.add_row(name, *(str(c) if c else "." for c in counts))
    console.print(matrix)
    console.print(f"confusion matrix image: {png}", highlight=False)
    return 0


def add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify images with a trained model")
    p.add_argument("model_file", help="a model file written by resnetlab (.safetensors)")
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER")
    p.add_argument("--top-k", type=int, default=3, help="classes to show per image (default 3)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    from .engine.predict import predict

    if args.top_k < 1:
        raise ResnetlabError(f"--top-k must be at least 1, got {args.top_k}")
    predictions = predict(args.model_file, args.images, top_k=args.top_k, device=args.device)
    if args.json:
        print(json.dumps([p.to_dict() for p in predictions], indent=2))
        return 0
    for p in predictions:
        ranked = ", ".join(f"{name} {prob:.1%}" for name, prob in p.top)
        print(f"{p.source}: {ranked}")
    return 0


def add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmarks: training and inference speed against torchvision, data loading, "
        "time to accuracy",
        description="Measure speed, ours and the peer's side by side in one process, and "
        "append each result as a JSON line to benchmarks/results/<machine>.jsonl.",
    )
    kinds = p.add_subparsers(dest="bench_command", metavar="BENCHMARK", required=True)

    def common(q: argparse.ArgumentParser, steps: int, warmup: int) -> None:
        q.add_argument("--input-size", type=int, help="image side (default: the model's)")
        q.add_argument("--num-classes", type=int, help="classifier outputs (default: the model's)")
        q.add_argument(
            "--precision",
            choices=("auto", "fp32", "bf16", "fp16"),
            help="named, applies to the peer too (default: ours auto, the peer fp32)",
        )
        q.add_argument(
            "--channels-last",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="named, applies to the peer too (default: ours on, the peer NCHW)",
        )
        q.add_argument("--compile", action="store_true", help="torch.compile both sides")
        q.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
        q.add_argument("--steps", type=int, default=steps, help=f"per timed repeat ({steps})")
        q.add_argument("--warmup", type=int, default=warmup, help=f"untimed steps first ({warmup})")
        q.add_argument("--repeats", type=int, default=5, help="timed repeats (5)")
        q.add_argument(
            "--vs",
            choices=("torchvision",),
            help="run the peer side by side: torchvision's model, or for the CIFAR nets and "
            "resnet50_keras the same architecture written the usual way",
        )

    t = kinds.add_parser("train", help="images/s of full training steps (synthetic data)")
    t.add_argument("--model", required=True, help="a registered model name")
    t.add_argument("--batch-size", type=int, default=128, help="images per step (128)")
    common(t, steps=10, warmup=5)
    t.add_argument("--cuda-graphs", action="store_true", help="capture our step (CUDA only)")
    t.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), help="default: sgd")
    t.set_defaults(bench_fn="bench_train")

    i = kinds.add_parser("infer", help="batch-1 latency and large-batch throughput")
    i.add_argument("--model", required=True, help="a registered model name")
    i.add_argument("--batch-size", type=int, default=256, help="for throughput (256)")
    common(i, steps=10, warmup=3)
    i.set_defaults(bench_fn="bench_infer")

    d = kinds.add_parser(
        "data", help="data loading speed, and the share of training time waiting for data"
    )
    d.add_argument("--data", default="digits", help="a data spec as for train (digits)")
    d.add_argument("--batch-size", type=int, default=256, help="images per batch (256)")
    d.add_argument("--model", default="resnet20", help="model trained for the share (resnet20)")
    d.add_argument("--input-size", type=int, help="resize when decoding (default: keep)")
    d.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    d.add_argument("--steps", type=int, default=20, help="training steps for the share (20)")
    d.add_argument("--workers", type=int, help="DataLoader workers (default: cores, max 8)")
    d.set_defaults(bench_fn="bench_data")

    a = kinds.add_parser(
        "tta", help="wall-clock time from raw data to a target accuracy, whole process"
    )
    a.add_argument("--model", default="resnet20", help="resnet20")
    a.add_argument("--data", default="cifar10", help="a data spec as for train (cifar10)")
    a.add_argument("--target", type=float, default=0.91, help="accuracy to reach (0.91)")
    a.add_argument("--epochs", type=int, help="recipe length (default 40)")
    a.add_argument("--batch-size", type=int, help="default 512")
    a.add_argument("--lr", type=float, help="default 0.4")
    a.add_argument("--recipe", choices=("seed", "paper-cifar", "modern"), help="default modern")
    a.add_argument("--input-size", type=int, help="default: the model's")
    a.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"))
    a.add_argument("--compile", action="store_true", help="torch.compile the model")
    a.add_argument(
        "--cuda-graphs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="default: on when training on CUDA",
    )
    a.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    a.add_argument("--warm-cache", action="store_true", help="keep the decoding cache")
    a.add_argument(
        "--train-option",
        action="append",
        metavar="KEY=VALUE",
        help="another `resnetlab train` option, e.g. crop_padding=1 (repeatable)",
    )
    a.add_argument("--timeout", type=float, help="give up after this many seconds")
    a.set_defaults(bench_fn="bench_tta")

    for q in (t, i, d):
        q.add_argument("--threads", type=int, help="CPU threads for PyTorch")
    for q in (t, i, d, a):
        q.add_argument("--results", help="a .jsonl file or folder (benchmarks/results)")
        q.add_argument("--machine", help="machine name for the results file and table")
        q.add_argument("--no-save", action="store_true", help="print only")
        q.add_argument("--json", action="store_true", help="print the record as JSON")

    r = kinds.add_parser("table", help="the README's Markdown table of recorded results")
    r.add_argument("paths", nargs="*", default=["benchmarks/results"], help=".jsonl files, folders")
    r.add_argument("--update", metavar="README", help="write it between the README's markers")
    r.set_defaults(bench_fn=None)
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    import inspect

    from . import bench
    from .bench.records import command_line

    if args.bench_command == "table":
        table = bench.render_table(bench.read_records(args.paths))
        if args.update:
            bench.update_readme(args.update, table)
            print(f"updated {args.update}")
        else:
            print(table, end="")
        return 0
    fn = getattr(bench, args.bench_fn)
    names = inspect.signature(fn).parameters
    options = {k: v for k, v in vars(args).items() if k in names}
    shown = dict(options)  # the command that reruns it, with every default spelled out
    if getattr(args, "train_option", None):
        shown["train_option"] = args.train_option
        options["train_options"] = parse_options(args.train_option)
    record = {"command": command_line(args.bench_command, shown)}
    record.update(fn(**options))
    if args.machine:
        record["machine"] = args.machine
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print("\n".join(bench.describe(record)))
    if not args.no_save:
        path = bench.append_record(record, bench.results_path(record["machine"], args.results))
        print(f"appended to {path}", file=sys.stderr)
    return 0


# Training options the experiment commands take as flags; any other through --option.
EXPERIMENT_TRAIN_FLAGS = (
    ("epochs", int),
    ("max_steps", int),
    ("subset", int),
    ("val_subset", int),
    ("batch_size", int),
    ("lr", float),
    ("input_size", int),
    ("log_every", int),
    ("device", str),
)


def add_experiment(sub: argparse._SubParsersAction) -> None:
    from .experiments import QUICK, QUICK_DEPTHS
    from .experiments.degradation import DEFAULT_DEPTHS, PREACT_DEPTHS, PREACT_QUICK_DEPTHS
    from .experiments.gradients import DEFAULT_DEPTHS as GRADIENT_DEPTHS
    from .experiments.gradients import DEFAULT_STEPS
    from .experiments.runner import FAMILIES

    p = sub.add_parser("experiment", help="reproduce the paper: degradation, gradient flow")
    kinds = p.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    quick = ", ".join(f"{k}={v}" for k, v in QUICK.items())
    d = kinds.add_parser(
        "degradation",
        help="train plain and residual nets of several depths; figure and table (Fig. 6)",
        description="Train plainN and resnetN for each depth with the same recipe, seed and "
        "data order, and write curves.png, depth.png, table.md and table.json into --out. "
        "Run the same command again to continue an interrupted experiment.",
    )
    d.add_argument(
        "--depths",
        type=int,
        nargs="+",
        help=f"default {list(DEFAULT_DEPTHS)}; --family preact: {list(PREACT_DEPTHS)}",
    )
    d.add_argument(
        "--quick",
        action="store_true",
        help=f"CPU-sized: depths {list(QUICK_DEPTHS)} (--family preact: "
        f"{list(PREACT_QUICK_DEPTHS)}), {quick} (flags override)",
    )
    d.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed")
    d.set_defaults(func=cmd_experiment)
    g = kinds.add_parser(
        "gradients",
        help="gradient norm of every weight layer at initialisation and after K steps",
        description="For the plain net and the ResNet of each depth, the gradient norm of "
        "each conv and fc weight on one batch, at initialisation and after --steps training "
        "steps; writes gradients.png, gradients.md and gradients.json into --out.",
    )
    g.add_argument("--depths", type=int, nargs="+", help=f"default {list(GRADIENT_DEPTHS)}")
    g.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help=f"training steps (default {DEFAULT_STEPS})"
    )
    g.add_argument("--seed", type=int, default=0, help="seed for weights, data order, batch")
    g.add_argument("--probe-size", type=int, default=128, help="images in the measured batch")
    g.set_defaults(func=cmd_experiment)
    for q in (d, g):
        q.add_argument("--data", required=True, help="data spec, e.g. cifar10 or an archive")
        q.add_argument("--download", action="store_true", help="fetch cifar10 if not cached")
        q.add_argument("--out", help="experiment folder (default: runs/<experiment>-<data>)")
        q.add_argument(
            "--family",
            choices=list(FAMILIES),
            default="plain",
            help="the two nets at each depth: plain (plainN vs resnetN, the shortcuts; "
            "default) or preact (resnetN vs preresnetN, pre-activation units)",
        )
        q.add_argument(
            "--recipe",
            choices=TRAIN_CHOICES["recipe"],
            help="default paper-cifar; --family preact: preact-cifar",
        )
        for name, kind in EXPERIMENT_TRAIN_FLAGS:
            if q is g and name in ("epochs", "max_steps"):
                continue  # --steps sets the length
            q.add_argument("--" + name.replace("_", "-"), type=kind, help=TRAIN_HELP[name])
        q.add_argument(
            "--option",
            action="append",
            metavar="KEY=VALUE",
            help="any other training option, e.g. weight_decay=5e-4 (repeatable)",
        )


def cmd_experiment(args: argparse.Namespace) -> int:
    from .experiments import QUICK, run_degradation, run_gradients
    from .experiments.degradation import default_depths
    from .experiments.gradients import markdown as gradient_markdown
    from .experiments.runner import FAMILIES, default_out

    options = parse_options(args.option) if args.option else {}
    options.update(
        {
            n: getattr(args, n)
            for n, _ in EXPERIMENT_TRAIN_FLAGS
            if getattr(args, n, None) is not None
        }
    )
    if args.download:
        options["download"] = True
    if args.experiment == "degradation":
        depths = args.depths or default_depths(args.family, args.quick)
        if args.quick:
            options = {**QUICK, **options}
        recipe = args.recipe or options.pop("recipe", None) or FAMILIES[args.family].recipe
        quick_out = default_out("degradation", args.data, family=args.family, quick=True)
        out = args.out or (quick_out if args.quick else None)
        result = run_degradation(
            args.data,
            depths,
            family=args.family,
            seeds=args.seeds,
            out=out,
            recipe=recipe,
            **options,
        )
        print((result.out / "table.md").read_text())
        written = ("curves.png", "depth.png", "table.md", "table.json")
    else:
        result = run_gradients(
            args.data,
            args.depths or None,
            steps=args.steps,
            seed=args.seed,
            probe_size=args.probe_size,
            out=args.out,
            recipe=args.recipe or options.pop("recipe", None),
            family=args.family,
            **options,
        )
        print(gradient_markdown(result))
        written = ("gradients.png", "gradients.md", "gradients.json")
    print("wrote " + ", ".join(str(result.out / name) for name in written))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resnetlab",
        description="Residual networks: train, evaluate, inspect and convert ResNets.",
    )
    parser.add_argument("--version", action="version", version=f"resnetlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands = (
        add_train,
        add_eval,
        add_predict,
        add_models,
        add_summary,
        add_data,
        add_convert,
        add_bench,
        add_experiment,
    )
    for add in commands:
        add(sub)
    return parser


def _show_warning(message, category, *_args, **_kwargs) -> None:
    """Warnings as one line each, without Python's source location."""
    from .errors import DataWarning

    kind = "" if issubclass(category, DataWarning) else f"{category.__name__}: "
    print(f"warning: {kind}{message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.func(args)
    except ResnetlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
