"""The ``resnetlab`` command line.

Each command is a ``cmd_<name>(args)`` function and an ``add_<name>`` parser section. User
mistakes raise ``ResnetlabError`` and are printed as one line with exit status 2.
"""

from __future__ import annotations

import argparse
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
    from .analysis import count_parameters
    from .models import create_model, list_models, model_info

    rows = []
    for name in list_models(args.pattern):
        info = model_info(name)
        trainable, _ = count_parameters(create_model(name))
        rows.append(
            dict(
                name=name,
                family=info.family,
                input_size=info.input_size,
                num_classes=info.num_classes,
                params=trainable,
                description=info.description,
            )
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table()
    for column in ("model", "params", "classes", "input", "what it is"):
        table.add_column(column, justify="right" if column in ("params", "classes") else "left")
    for r in rows:
        table.add_row(
            r["name"],
            f"{r['params']:,}",
            str(r["num_classes"]),
            f"{r['input_size']}x{r['input_size']}",
            r["description"],
        )
    Console().print(table)
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
    input_size = args.input_size or info.input_size
    if input_size < 1:
        raise ResnetlabError(f"--input-size must be positive, got {input_size}")
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
    import warnings
    from pathlib import Path

    from .data.report import contact_sheet, describe
    from .errors import DataWarning

    def show(message, category, *_args, **_kwargs) -> None:
        if issubclass(category, DataWarning):
            print(f"warning: {message}", file=sys.stderr)
        else:
            print(f"warning: {category.__name__}: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resnetlab",
        description="Residual networks: train, evaluate, inspect and convert ResNets.",
    )
    parser.add_argument("--version", action="version", version=f"resnetlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (add_models, add_summary, add_convert, add_data):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ResnetlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
