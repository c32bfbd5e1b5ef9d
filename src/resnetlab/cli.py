"""The ``resnetlab`` command line.

Each command is a ``cmd_<name>(args)`` function and an ``add_<name>`` parser section. User
mistakes raise ``ResnetlabError`` and are printed as one line with exit status 2.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import dataclasses
import difflib
import fnmatch
import gc
import inspect
import io
import json
import logging
import os
import re
import shlex
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import __version__
from .errors import (
    ResnetlabError,
    RunInterrupted,
    as_given,
    command_line,
    empty_problem,
    folder_problem,
    named_as_given,
    options_under,
    out_of_memory,
    positional_arguments,
    readable,
    shell_word,
)
from .options import (
    CHOICES,
    DEFAULT_RESIZE,
    DEGRADATION_DEPTHS,
    FAMILIES,
    GRADIENT_DEPTHS,
    GRADIENT_STEPS,
    INFERENCE_PRECISIONS,
    INPUT_SIZES,
    KERAS_INPUTS,
    MAX_CLASSES,
    METHODS,
    NAMED_SOURCES,
    PREACT_DEPTHS,
    PREACT_QUICK_DEPTHS,
    QUICK,
    QUICK_DEPTHS,
    RESIZE_MODES,
    RUNTIMES,
    TRAIN_HELP,
    TrainOptions,
    is_input_size,
)
from .storage import (
    WriteError,
    check_writable,
    missing_folders,
    os_error_line,
    refixed,
    removed_on_failure,
)

if TYPE_CHECKING:
    from torch import nn


def add_models(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", help="glob filter, e.g. 'plain*'")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    import torch

    from .analysis import count_parameters
    from .models import create_model, list_models, model_info

    names = list_models(args.pattern)
    if not names and args.pattern and os.path.exists(args.pattern):  # `models resnet1*`
        kind = "folder" if os.path.isdir(args.pattern) else "file"
        raise ResnetlabError(
            f"no model matches {args.pattern!r}, a {kind} here: the shell replaces a pattern "
            "left unquoted with the files it matches; quote it, as in resnetlab models 'wide*'"
        )
    if not names:
        raise ResnetlabError(f"no model matches {args.pattern!r}; {_close_models(args.pattern)}")
    rows = []
    for name in names:
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
        print_json(rows)
        return 0
    console = Console()
    for group in dict.fromkeys(r["group"] for r in rows):
        table = Table(title=group or None, title_justify="left", title_style="bold")
        for column in ("model", "params", "classes", "input", "what it is", "source"):
            table.add_column(
                column,
                justify="right" if column in ("params", "classes") else "left",
                no_wrap=column in ("model", "params"),  # whole, to copy: the text wraps
                overflow="fold",  # a word longer than its column folds, not cut (torchvisi…)
            )
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


def print_json(value: object) -> None:
    """``--json``'s output: indented, with names as they are ("café", not "caf\\u00e9"); an
    output whose encoding cannot show them, and a file name that is not valid UTF-8 (a
    surrogate, which stdout would write back as its raw byte), get the escapes, which are
    the same JSON."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    try:
        text.encode(sys.stdout.encoding or "utf-8")  # strict, as JSON's readers are
    except UnicodeEncodeError:
        text = json.dumps(value, indent=2)
    print(text)


def _close_models(pattern: str) -> str:
    from .models import list_models

    # A word alone (`models wide`) is taken as a search, and names are lower case: say
    # which glob finds what was meant.
    glob = pattern.lower() if any(c in pattern for c in "*?[") else f"*{pattern.lower()}*"
    found = [name for name in list_models() if fnmatch.fnmatchcase(name, glob)]
    if found:
        shown = ", ".join(found[:6]) + (", ..." if len(found) > 6 else "")
        return f"'{glob}' matches {shown}"
    stem = pattern.strip("*?[]")
    close = difflib.get_close_matches(stem, list_models(), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return f"{hint}`resnetlab models` lists all"


def add_summary(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model",
        metavar="MODEL_OR_FILE",
        help="a registered model name (see `resnetlab models`) or a model file",
    )
    p.add_argument(
        "--input-size", type=_input_size, help="image side in pixels (default: the model's)"
    )
    p.add_argument(
        "--num-classes", type=_class_count, help="classifier size (default: the model's)"
    )
    p.add_argument(
        "--keras",
        action="store_true",
        help="resnet50_keras as Keras's model.summary() prints it: Keras's layer names, "
        "rows and parameter counts",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_summary)


def cmd_summary(args: argparse.Namespace) -> int:
    from .analysis import keras_summary, print_summary, summarize
    from .models import create_model, load_model, model_info
    from .models.files import names_a_file

    if names_a_file(args.model):
        if args.num_classes is not None:
            raise ResnetlabError("--num-classes is for model names; a model file has its own")
        model = load_model(args.model)
        name, input_size = model.meta.model, args.input_size or model.meta.input_size
        built_for = model.meta.input_size
        if input_size != built_for and model_info(name).takes_input_size:
            raise ResnetlabError(
                f"{args.model} holds {name}, built for {built_for}x{built_for} inputs, which "
                f"its classifier fixes; drop --input-size (or give the model name: summary "
                f"{name} --input-size {input_size})"
            )
    else:
        info = model_info(args.model)
        name, input_size = args.model, args.input_size or info.input_size
        model = create_model(name, num_classes=args.num_classes, **info.size_kwargs(input_size))
    summary = (keras_summary if args.keras else summarize)(model, input_size, name=name)
    if args.json:
        print_json(summary.to_dict())
    else:
        print_summary(summary)
    return 0


def add_data(p: argparse.ArgumentParser) -> None:
    data_sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    q = data_sub.add_parser(
        "inspect", help="splits, images per class, image sizes, and a contact sheet of samples"
    )
    q.add_argument("path", metavar="DATA", nargs="?", help="digits, cifar10, or a file or folder")
    # --data DATA, as train and eval take it, and as messages about data name it
    q.add_argument("--data", dest="data_option", metavar="DATA", help=argparse.SUPPRESS)
    q.add_argument("--out", help="contact sheet PNG (default: runs/<name>-samples.png)")
    q.add_argument("--no-sheet", action="store_true", help="do not write a contact sheet")
    q.add_argument(
        "--input-size", type=_input_size, help="resize images to N x N, as training would"
    )
    # the earlier name, apart: argparse names all of an option's flags in its errors
    q.add_argument("--image-size", dest="input_size", type=_input_size, help=argparse.SUPPRESS)
    q.add_argument(
        "--resize",
        choices=RESIZE_MODES,
        default=DEFAULT_RESIZE,
        help=f"how images that are not square meet --input-size, as for train ({DEFAULT_RESIZE})",
    )
    q.add_argument("--download", action="store_true", help="fetch cifar10 if it is not cached")
    q.add_argument(
        "--cache-dir",
        help="default: $RESNETLAB_CACHE, else $XDG_CACHE_HOME/resnetlab or ~/.cache/resnetlab",
    )
    q.add_argument("--json", action="store_true", help="print JSON instead of tables")
    q.set_defaults(func=cmd_data)


def cmd_data(args: argparse.Namespace) -> int:
    from .data.report import describe

    sheet = _data_sheet_path(args)
    summary, splits = describe(
        args.path,
        image_size=args.input_size,
        resize=args.resize,
        download=args.download,
        cache_dir=args.cache_dir,
    )
    summary["sheet"] = None  # --no-sheet: the key is there, as JSON readers expect it
    if not args.no_sheet:
        summary["sheet"] = _write_data_sheet(args, splits, sheet)
    if args.json:
        print_json(summary)
    else:
        _print_data_summary(args.path, summary)
    return 0


def _data_sheet_path(args: argparse.Namespace) -> Path:
    """``data inspect``'s contact sheet, once the data set (``args.path``, as given once,
    as DATA or --data) and --out are checked: before any image is decoded."""
    from .data.folders import class_folder_note, data_folder_holding, with_folder_notes
    from .data.sources import run_folder_as_data
    from .engine.report import data_tag

    if args.data_option is not None and args.path not in (None, args.data_option):
        raise ResnetlabError(
            f"two data sets given, {args.path} and --data {args.data_option}; data inspect "
            "describes one: give it once"
        )
    args.path = args.path if args.data_option is None else args.data_option
    if args.path is None:
        raise ResnetlabError(
            "give the data set to describe: resnetlab data inspect DATA (digits, cifar10, or "
            "a file or folder)"
        )
    if args.out and not args.no_sheet:
        check_figure_file(Path(args.out), "--out")
        check_output_file(args.out, "--out")
    sheet = Path(args.out or Path("runs") / f"{data_tag(args.path)}-samples.png").expanduser()
    if problem := run_folder_as_data(args.path):
        raise ResnetlabError(problem)
    if not args.no_sheet and (folder := data_folder_holding(sheet, [args.path])):
        inside = (
            f"the contact sheet {sheet} would be inside the data folder {folder}, where the "
            "next run would read it as an image: give --out outside it, or --no-sheet"
        )
        note = class_folder_note(Path(args.path))  # `data inspect .` in photos/cat/
        raise ResnetlabError(with_folder_notes([note] if note else [], inside))
    return sheet


def _write_data_sheet(args: argparse.Namespace, splits: dict, sheet: Path) -> str | None:
    """The contact sheet of the training split (else the first) written to ``sheet``; where
    the default (under runs/ in the current folder) cannot be written, a warning, and None:
    the data set is still described."""
    from .data.report import contact_sheet
    from .errors import SettingWarning, warn

    split = splits.get("train") or next(iter(splits.values()))
    try:
        return str(contact_sheet(split, sheet, title=args.path))
    except WriteError as e:
        if args.out:
            raise
        fix = "give --out a file in a folder you can write to, or --no-sheet"
        warn(str(refixed(e, fix)), SettingWarning)
        return None


def _print_data_summary(path: str, summary: dict) -> None:
    """``data inspect``'s tables: the splits, the classes per split, then the notes."""
    from .data.decode import unwarned
    from .data.report import class_table

    console = Console(markup=False)  # paths and class names print as they are: "photos [old]"
    names = list(summary["splits"])
    classes = len(summary["class_names"])
    console.print(
        Text(path, style="bold"),
        f": {summary['format']}, {classes} class{'es' if classes != 1 else ''}",
        sep="",
        soft_wrap=True,
    )
    sizes = Table("split", "images", "image size", "in memory")
    for name, s in summary["splits"].items():
        h, w = s["image_size"]
        sizes.add_row(
            name, f"{s['images']:,}", f"{w}x{h}", "no (streamed)" if s["streamed"] else "yes"
        )
    console.print(sizes)
    counts = Table("class", *names)
    for c, per_split in class_table(summary):
        counts.add_row(c, *(f"{n:,}" for n in per_split))
    console.print(counts)
    notes = summary["notes"] + [
        f"{n}: {t}" for n in names for t in unwarned(summary["splits"][n]["notes"])
    ]
    for note in notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    if summary["sheet"] is not None:
        console.print(f"contact sheet: {summary['sheet']}", highlight=False, soft_wrap=True)


def add_convert(p: argparse.ArgumentParser) -> None:
    sources = p.add_subparsers(dest="source", metavar="SOURCE", required=True)
    k = sources.add_parser(
        "keras",
        help="the course's Keras ResNet50 or a keras.applications ResNet50/101/152 (.h5, "
        ".weights.h5 or .keras) -> a resnetlab model file",
        description="Convert the deeplearning.ai course's Keras ResNet50, or a "
        "keras.applications ResNet50/101/152 (v1; alone or as the base of a transfer model: "
        "GlobalAveragePooling2D, Dropout, one Dense), into a resnetlab model file. The "
        "classes and input size are read from the Keras file when it holds them; the flags "
        "supply what it lacks, and contradicting the file is an error.",
    )
    k.add_argument(
        "src", metavar="SRC", help="Keras file: model.save('x.h5'), save_weights(...) or .keras"
    )
    k.add_argument("dst", metavar="DST", help="the .safetensors model file to write")
    k.add_argument(
        "--input-size", type=_input_size, help="input side in pixels (default: the file's)"
    )
    k.add_argument(
        "--num-classes", type=_class_count, help="number of classes, checked against the file"
    )
    k.add_argument(
        "--classes",
        type=readable,
        help='class names in output order, e.g. "0,1,2,3,4,5"; imagenet: ImageNet\'s 1000',
    )
    k.add_argument(
        "--inputs",
        choices=KERAS_INPUTS,
        help="how the Keras model's images were prepared: caffe (preprocess_input, the "
        "default for keras.applications networks), 0-1 (pixels / 255, the course's default) "
        "or 0-255 (pixels as they are)",
    )
    k.set_defaults(func=cmd_convert)
    w = sources.add_parser(
        "pretrained",
        help="torchvision, timm or Hugging Face weights as they are -> a resnetlab model file",
        description="Write pretrained weights, their classifier kept, to a resnetlab model "
        "file: their classes (ImageNet's for torchvision's and timm's ImageNet weights), "
        "normalisation and input size, for predict, eval, explain, export and serve.",
    )
    w.add_argument(
        "src",
        metavar="SOURCE",
        help="torchvision:WEIGHTS, timm:MODEL.TAG, a Hugging Face model's folder (timm, or a "
        "transformers ResNet) or a weights file, as train --pretrained takes them",
    )
    w.add_argument("dst", metavar="DST", help="the .safetensors model file to write")
    w.add_argument("--model", help="the model the weights are for (default: the one SOURCE names)")
    w.add_argument(
        "--input-size", type=_input_size, help="input side in pixels (default: the weights')"
    )
    w.set_defaults(func=cmd_convert_pretrained)


def cmd_convert_pretrained(args: argparse.Namespace) -> int:
    from .convert.pretrained import convert_pretrained

    with positional_arguments({"pretrained": "SOURCE"}):  # train's --pretrained
        report = convert_pretrained(
            args.src, args.dst, model=args.model, input_size=args.input_size
        )
    print(f"converted {report.describe()}")
    print(f"wrote {args.dst}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert_keras

    class_names = None
    if args.classes is not None:
        class_names = [name.strip() for name in args.classes.split(",")]
        if class_names == ["imagenet"]:  # ImageNet's 1000, named by convert_keras
            class_names = "imagenet"
        elif len(class_names) == 1 and Path(args.classes).expanduser().is_file():
            raise ResnetlabError(
                f"--classes takes the class names, not a file of them ({args.classes}); give "
                f'them separated by commas, for a file of one a line: --classes "$(paste -sd, '
                f'{shlex.quote(args.classes)})"'
            )
        elif not all(class_names):
            raise ResnetlabError(f'--classes has an empty name: "{args.classes}"')
    report = convert_keras(  # checks DST before it reads the Keras file
        args.src,
        args.dst,
        input_size=args.input_size,
        num_classes=args.num_classes,
        class_names=class_names,
        inputs=args.inputs,
    )
    print(f"converted {report.describe()}")
    print(f"wrote {args.dst}")
    if report.network is not None and report.file_input_size is None and not args.input_size:
        size = report.input_size  # keras.applications' default: any size would load
        print(
            f"note: {Path(args.src).name} does not record its input size: {size}x{size} "
            f"taken; convert with --input-size N if the model was trained at another size "
            f"(predict resizes photos to it)"
        )
    if class_names is None:  # a Keras file names no classes
        print(
            f"note: {Path(args.src).name} names no classes: predict calls its "
            f"{report.num_classes} outputs 0 to {report.num_classes - 1}, and eval and train "
            f"--pretrained take a data set's classes in their order; "
            f'--classes "a,b,..." names them in the order of the outputs, so that eval and '
            f"train --pretrained match them to a data set's classes by name"
            + (
                " (--classes imagenet: ImageNet's, for weights='imagenet')"
                if report.network is not None and report.num_classes == 1000
                else ""
            )
        )
    return 0


def add_train(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Train a model. With no flags: resnet20 on the bundled digits with the auto recipe, "
        "a few minutes on a laptop CPU. Flags override the recipe; --config reruns a run's "
        "config.json."
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
    for f in dataclasses.fields(TrainOptions):
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
            kwargs["type"] = _side if f.name == "input_size" else int  # range: TrainConfig's
        elif kind.startswith("float"):
            kwargs["type"] = float
        if f.name in CHOICES:
            kwargs["choices"] = CHOICES[f.name]
        if f.name.startswith("no_") and kind.startswith("bool"):
            # `--decay-norm-bias/--no-decay-norm-bias`, not `--no-decay-norm-bias/--no-no-...`
            positive = "--" + f.name[3:].replace("_", "-")
            p.add_argument(flag, action="store_true", dest=f.name, help=kwargs["help"])
            p.add_argument(positive, action="store_false", dest=f.name, help="the opposite")
            old = "--no-" + flag[2:]  # the spelling argparse made of it before: still taken
            p.add_argument(old, action="store_false", dest=f.name, help=argparse.SUPPRESS)
            p.set_defaults(**{f.name: None})
            continue
        p.add_argument(flag, **kwargs)
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from .engine import TrainConfig, train

    flags = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if f.name != "model_kwargs"
    }
    if args.model_option:
        flags["model_kwargs"] = parse_options(args.model_option)
    train(args.config, resume=args.resume, **flags)
    return 0


def parse_options(items: list[str], flag: str = "--model-option") -> dict:
    """``["shortcut=B", "zero_init_residual=true"]`` -> ``{"shortcut": "B", ...: True}``:
    JSON values, ``True``/``False`` in any case, else the text as it is. ``flag``: the
    option the items were given with, which a malformed one is named by."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ResnetlabError(f"{flag} {item!r} is not KEY=VALUE")
        if value.lower() in ("true", "false"):
            options[key] = value.lower() == "true"
            continue
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value  # a bare string such as B
    return options


def _add_inference_precision(p: argparse.ArgumentParser) -> None:
    """``--precision`` of the commands that run a model file (predict, eval, serve)."""
    p.add_argument(
        "--precision",
        choices=INFERENCE_PRECISIONS,
        default="fp32",
        help="fp32 (default), or bf16/fp16 autocast: faster on hardware with that arithmetic "
        "(CPUs with AMX or AVX512_BF16, GPUs), probabilities within a few thousandths (a "
        "few hundredths at worst)",
    )


def add_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model_file",
        metavar="MODEL_FILE",
        help="a model file: .safetensors, or .onnx from `export`",
    )
    p.add_argument(
        "--data", required=True, help="data spec; its test (else validation) split is used"
    )
    p.add_argument("--batch-size", type=int, default=256, help="images per batch (256)")
    p.add_argument("--device", default="auto", help=TRAIN_HELP["device"])
    _add_inference_precision(p)
    p.add_argument(
        "--png",
        help="confusion matrix image (default: MODEL.DATA.confusion.png next to the model file)",
    )
    p.add_argument("--download", action="store_true", help="fetch cifar10 if it is not cached")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from .analysis.plots import plot_confusion
    from .data.sources import data_name
    from .engine import evaluate
    from .errors import SettingWarning, warn

    png = _eval_png(args)
    # A --png that cannot be written is said before the images are scored, not after; the
    # folders made for it are removed again if the evaluation fails.
    with removed_on_failure(missing_folders(png.parent) if args.png else []):
        if args.png:
            make_folder_for(png, "--png")
            check_writable(png, png.parent, "give --png a file in a folder you can write to")
        report = evaluate(
            args.model_file,
            args.data,
            batch_size=args.batch_size,
            device=args.device,
            precision=args.precision,
            download=args.download,
        )
    count = report.result.count
    name = readable(Path(args.model_file).expanduser().name)
    title = f"{name} on {data_name(args.data)} ({count:,} images)"
    make_folder_for(png, "--png")
    try:
        plot_confusion(report.result.confusion, report.class_names, png, title=title)
    except WriteError as e:
        if args.png:
            raise
        # The default, beside the model file, whose folder may be read-only (a shared model):
        # the scores are still shown.
        warn(str(refixed(e, "give --png a file in a folder you can write to")), SettingWarning)
        png = None
    if args.json:
        print_json({**report.to_dict(), "confusion_png": png and str(png)})
    else:
        _print_eval_report(args, report, png)
    return 0


def _eval_png(args: argparse.Namespace) -> Path:
    """Where ``eval`` draws its confusion matrix, checked with the data before the images
    are scored: by default beside the model file, named after both (another data set's is
    kept), never inside the data folder, nor for data that is a run folder or an image."""
    from .data.folders import data_folder_holding
    from .data.sources import run_folder_as_data
    from .engine.report import data_tag
    from .models.files import EXPORT_KINDS, other_format

    model_file = Path(args.model_file).expanduser()
    png = Path(
        args.png or model_file.with_name(f"{model_file.stem}.{data_tag(args.data)}.confusion.png")
    ).expanduser()
    if args.png:
        check_figure_file(png, "--png")  # before the evaluation, not after it
        check_output_file(args.png, "--png")
    if problem := run_folder_as_data(args.data):  # not "the image would be inside the data"
        raise ResnetlabError(problem)
    if folder := data_folder_holding(png, [args.data]):
        raise ResnetlabError(
            f"the confusion matrix image {png} would be inside the data folder {folder}, "
            "where the next run would read it as an image: give --png outside it"
        )
    data = Path(args.data).expanduser()
    kind = data.is_file() and (
        "a model file" if data.suffix.lower() == ".safetensors" else other_format(data)
    )
    if kind == "an image":
        raise ResnetlabError(
            f"{args.data} is an image, not a data set to score (a folder of class folders, "
            f"an .h5 file...); to classify it: resnetlab predict {shell_word(args.model_file)} "
            f"{shell_word(args.data)}"
        )
    if kind in ("a model file", *EXPORT_KINDS):
        raise ResnetlabError(
            f"{args.data} is {kind}, not a data set to score: the model comes first and the "
            f"images after --data (resnetlab eval {shell_word(args.data)} --data IMAGES)"
        )
    return png


def _print_eval_report(args: argparse.Namespace, report, png: Path | None) -> None:
    """``eval``'s report as text: the notes, the scores in one line, the per-class table and
    the confusion matrix (as text where it fits the terminal)."""
    from .data.decode import unwarned

    data = report.to_dict()
    console = Console(markup=False)  # notes and tables name classes: "[dog, ship]", as they are
    result = report.result
    for note in unwarned(report.notes):
        console.print(f"note: {note}", highlight=False, soft_wrap=True)
    console.print(
        f"{args.model_file} on {args.data}: accuracy {result.accuracy:.4f} "
        f"({round(result.accuracy * result.count)}/{result.count}), "
        + (f"top-5 {result.top5:.4f}, " if result.top5 is not None else "")
        + (f"balanced accuracy {result.balanced_accuracy:.4f}, " if result.imbalanced else "")
        + f"loss {result.loss:.4f}",
        highlight=False,
        soft_wrap=True,  # one line, whatever the width: scripts read it
    )
    # The titles as lines of their own: as a table's title rich wraps them to the table's
    # width, which a few classes with short names make narrower than the words.
    console.print("per class", highlight=False)
    # Where a ratio is 0/0 (no image of the class here, none predicted as it) the table
    # says "-", not the 0 that the numbers keep for scikit-learn's sake (zero_division=0).
    predicted = [sum(column) for column in zip(*data["confusion"], strict=True)]
    rows = [
        (
            row["class"],
            f"{row['precision']:.3f}" if guessed else "-",
            f"{row['recall']:.3f}" if row["support"] else "-",
            str(row["support"]),
        )
        for row, guessed in zip(data["per_class"], predicted, strict=True)
    ]
    # In a narrow terminal a long name folds onto more lines and the numbers stay whole:
    # cut short, names that share a long beginning would read alike (Tomato___Spider_mi…).
    table = Table()
    table.add_column("class", overflow="fold")
    for i, column in enumerate(("precision", "recall", "support"), 1):
        width = max((len(row[i]) for row in rows), default=0)
        table.add_column(column, justify="right", min_width=width)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if any("-" in row[1:3] for row in rows):
        console.print("(-: no image of the class here, or none predicted as it)", highlight=False)
    console.print("confusion (rows: true, columns: predicted)", highlight=False)
    matrix = confusion_table(report.class_names, data["confusion"], console)
    if matrix is None:
        console.print(
            f"({len(report.class_names)} classes are too many for {console.width} columns of "
            "text: see the image, or --json)",
            highlight=False,
        )
    else:
        console.print(matrix)
    if png:
        console.print(f"confusion matrix image: {png}", highlight=False, soft_wrap=True)


def confusion_table(
    names: Sequence[str], confusion: Sequence[Sequence[int]], console: Console
) -> Table | None:
    """The confusion matrix as a table that fits the console: columns headed by the class
    names, else by their numbers (each row names its number), else None. Squeezed, rich
    would cut every name to its first letters, "class…" alike."""
    from rich.measure import Measurement

    for numbered in (False, True):
        matrix = Table()
        matrix.add_column("")
        for i, name in enumerate(names):
            matrix.add_column(str(i) if numbered else name, justify="right")
        for i, (name, counts) in enumerate(zip(names, confusion, strict=True)):
            matrix.add_row(
                f"{i} {name}" if numbered else name, *(str(c) if c else "." for c in counts)
            )
        unbounded = console.options.update(max_width=sys.maxsize)
        if Measurement.get(console, unbounded, matrix).minimum <= console.width:
            return matrix
    return None


def check_figure_file(path: Path, flag: str) -> None:
    """A figure a command will write: of a format matplotlib writes (named by its suffix;
    none is PNG)."""
    from matplotlib.backend_bases import FigureCanvasBase

    if path.suffix and path.suffix[1:].lower() not in FigureCanvasBase.get_supported_filetypes():
        raise ResnetlabError(
            f"{flag} {path}: cannot write a figure as {path.suffix} (a file name ending "
            f"in {', '.join(f'.{k}' for k in ('png', 'pdf', 'svg', 'jpg'))}, say)"
        )


def check_output_file(value: str, flag: str) -> None:
    """A file a command will write (as given: ``out/`` names a folder): not a folder, nor
    below a file, nor a file of a run folder (its curves.png, say)."""
    from .engine.train import run_file_problem

    value = os.path.expanduser(value)  # '~/figures/x.png', quoted: the file written
    if problem := folder_problem(value, "out.png"):
        raise ResnetlabError(f"{flag} {problem}")
    if problem := run_file_problem(value, Path(value).with_name(f"out{Path(value).suffix}")):
        raise ResnetlabError(f"{flag} {problem}")
    path = Path(value)
    above = next((p for p in path.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise ResnetlabError(f"{flag} {path}: {above} is a file, not a folder; choose another")


def make_folder_for(path: Path, flag: str) -> None:
    """The folder of a file about to be written, made where missing (as ``export`` and
    ``train --out`` make theirs)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ResnetlabError(
            f"{flag} {path}: cannot make the folder {path.parent} ({e.strerror or e}); "
            "choose another"
        ) from None


def add_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model_file",
        metavar="MODEL_FILE",
        help="a model file: .safetensors, or .onnx from `export`",
    )
    p.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE_OR_FOLDER",
        help='image files or folders; a quoted pattern ("photos/*.jpg") names its matches',
    )
    p.add_argument(
        "--top-k", type=_at_least_one, default=3, help="classes to show per image (default 3)"
    )
    p.add_argument("--device", default="auto", help=TRAIN_HELP["device"])
    _add_inference_precision(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--cam", metavar="DIR", help="also write Grad-CAM overlays to DIR (see explain)")
    p.add_argument(
        "--layer", help="with --cam: module whose feature map is used (default: the last stage)"
    )
    p.set_defaults(func=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    from .engine.inference import ExternalModel, load_model_file
    from .engine.predict import predict

    model = load_model_file(args.model_file, device=args.device)
    if args.cam and isinstance(model, ExternalModel):
        raise ResnetlabError(
            f"--cam needs the model's PyTorch weights, which {args.model_file} does not hold; "
            "give the .safetensors model file it was exported from"
        )
    if args.layer is not None and not args.cam:
        raise ResnetlabError(
            "--layer sets the layer of the --cam overlays: add --cam DIR, or drop it"
        )
    if args.cam:
        _check_outside_inputs(Path(args.cam), args.images, "--cam")
    if args.cam and args.layer is not None:
        from .explain.cam import find_layer

        find_layer(model, args.layer)  # a misspelt --layer said before the images are classified
    cam = Path(args.cam) if args.cam else None
    with _output_folder(cam, "choose another --cam, a folder you can write to", args.images):
        predictions = predict(
            model, args.images, top_k=args.top_k, device=args.device, precision=args.precision
        )
        if args.cam:
            from .explain import explain

            # The images predict read, not args.images again: a folder's unreadable files
            # were warned of and skipped once already.
            explanation = explain(model, [p.source for p in predictions], layer=args.layer)
    if args.cam:
        written = explanation.save(args.cam)
        print(f"wrote {len(written)} files to {args.cam}", file=sys.stderr)
        for note in explanation.notes:
            print(f"note: {note}", file=sys.stderr)
    if args.json:
        print_json([p.to_dict() for p in predictions])
        return 0
    for p in predictions:
        ranked = ", ".join(f"{name} {prob:.1%}" for name, prob in p.top)
        print(f"{one_line(p.source)}: {ranked}")
    return 0


def one_line(name: str) -> str:
    """A file name as one line of output: a line break in it (which a file name may hold)
    written as ``\\n``, so that each image's answer stays one line; --json has it as it is."""
    return name.replace("\r", "\\r").replace("\n", "\\n")


def add_explain(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Write, for each image, an overlay PNG (the image, its heat map, the predicted class "
        "and probability), the raw maps in maps.npz and, for several images, a contact sheet. "
        "With --check, the one input is a data set (as for eval --data) and the command "
        "measures instead whether the maps are faithful (sanity and deletion checks) on its "
        "held-out images."
    )
    p.add_argument(
        "model_file", metavar="MODEL_FILE", help="a model file written by resnetlab (.safetensors)"
    )
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER", help="or DATA with --check")
    p.add_argument(
        "--method",
        action="append",
        choices=METHODS,
        help="default gradcam; with --check, repeat it for several (default: every method)",
    )
    p.add_argument(
        "--class",
        dest="target",
        type=readable,  # typed in an ASCII locale, as the model file's names are
        metavar="NAME",
        help="explain this class (default: each image's predicted class)",
    )
    p.add_argument("--layer", help="module whose feature map is used (default: the last stage)")
    p.add_argument(
        "--out",
        help="output folder (default: ./cams, or cams-2, cams-3... when it is taken)",
    )
    p.add_argument("--device", default="auto", help=TRAIN_HELP["device"])
    p.add_argument(
        "--check", action="store_true", help="run the faithfulness checks on the data set DATA"
    )
    p.add_argument("--fraction", type=float, help="--check: share blanked (0.2)")
    p.add_argument("--stages", type=int, help="--check: stages re-initialised (1)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    from .engine.distributed import resolve_device
    from .models import load_model

    check_options = _explain_flags(args)
    model = load_model(args.model_file, device=resolve_device(args.device))
    if args.check:
        return _explain_check(args, model, check_options)
    return _explain_draw(args, model)


def _explain_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The faithfulness check's options given, once the flags are checked to go together:
    those of the check only with --check, those of the overlays only without it."""
    if args.check and len(args.images) != 1:
        raise ResnetlabError("--check takes one data set: resnetlab explain MODEL DATA --check")
    check_options = {"fraction": args.fraction, "stages": args.stages}
    given = {k: v for k, v in check_options.items() if v is not None}
    if given and not args.check:
        flags = " and ".join(f"--{k}" for k in given)
        sets, them = ("set", "them") if len(given) > 1 else ("sets", "it")
        raise ResnetlabError(f"{flags} {sets} the faithfulness check: add --check, or drop {them}")
    drawn = [flag for flag, value in (("--class", args.target), ("--out", args.out)) if value]
    if args.check and drawn:
        flags = " and ".join(drawn)
        apply, them = ("apply", "them") if len(drawn) > 1 else ("applies", "it")
        raise ResnetlabError(
            f"{flags} {apply} to the overlays explain draws; --check measures the maps of each "
            f"image's predicted class and writes no files: drop {them}"
        )
    return given


def _explain_check(args: argparse.Namespace, model: nn.Module, options: dict[str, Any]) -> int:
    """``explain --check``: the faithfulness table, a row as each method is done."""
    from .data.decode import unwarned
    from .explain import check_model
    from .explain.faithfulness import CheckRow, markdown_header, markdown_row

    printed: list[CheckRow] = []

    def print_row(row: CheckRow) -> None:
        if not printed:
            print(markdown_header(row.fraction, row.stages), end="")
        print(markdown_row(row, model.meta.model), end="", flush=True)
        printed.append(row)

    rows, notes = check_model(
        model,
        args.images[0],
        methods=args.method or METHODS,
        layer=args.layer,
        say=lambda line: print(line, file=sys.stderr, flush=True),
        on_row=None if args.json else print_row,
        **options,
    )
    if args.json:
        print_json({"notes": notes, "rows": [r.to_dict() for r in rows]})
        return 0
    for note in unwarned(notes):
        print(f"note: {note}", file=sys.stderr)
    return 0


def _explain_draw(args: argparse.Namespace, model: nn.Module) -> int:
    """``explain``: an overlay per image, the maps and a contact sheet, written to --out."""
    from .explain import explain

    if args.method and len(args.method) > 1:
        raise ResnetlabError("explain draws one --method at a time (several only with --check)")
    method = args.method[0] if args.method else "gradcam"
    out = Path(args.out) if args.out else _unused_folder(Path("cams"))
    _check_outside_inputs(out, args.images, "--out" if args.out else "the default --out")
    fix = "choose another --out, a folder you can write to"
    with _output_folder(out, fix, args.images):
        result = explain(model, args.images, method=method, target=args.target, layer=args.layer)
    try:
        written = result.save(out)
    except WriteError as e:  # the default, ./cams, in a read-only current folder
        raise refixed(e, fix) from None
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    overlays = written[: len(result.sources)]
    rows = [
        {
            "image": source,
            "class": result.class_names[int(result.predicted[i])],
            "probability": float(result.probabilities[i, result.predicted[i]]),
            "explained": result.class_names[int(result.targets[i])],
            "overlay": str(png),
        }
        for i, (source, png) in enumerate(zip(result.sources, overlays, strict=True))
    ]
    if args.json:
        print_json({"images": rows, "files": [str(w) for w in written]})
        return 0
    for row in rows:
        explained = "" if row["explained"] == row["class"] else f", map of {row['explained']}"
        print(
            f"{one_line(row['image'])}: {row['class']} {row['probability']:.1%}{explained} "
            f"-> {row['overlay']}"
        )
    print("also wrote " + ", ".join(str(w) for w in written[len(overlays) :]))
    return 0


def _check_outside_inputs(out: Path, inputs: list[str], flag: str) -> None:
    """Overlays are not written inside a folder of the images explained: the next run on that
    folder would read them as its images (and train them as a class of their own). Inside
    the data set of class folders that an image explained is in, a warning says so."""
    from .data.folders import data_folder_holding, data_set_above, data_sets_around
    from .errors import DataWarning, warn

    fix = "a folder" if flag == "--cam" else "--out"
    if folder := data_folder_holding(out, inputs):
        raise ResnetlabError(
            f"{flag} {out} is inside {folder}, the folder of images explained: the overlays "
            f"would be read as its images next time; give {fix} outside it"
        )
    why = " (the images explained are in one)"
    if not (folder := data_folder_holding(out, data_sets_around(inputs))):
        folder, why = data_set_above(out), ""
    if folder:
        warn(
            f"{flag} {out} is inside {folder}, which looks like a data set of class folders"
            f"{why}: a run on {folder} would read the overlays as its images; give {fix} "
            "outside it to keep them apart",
            DataWarning,
        )


@contextlib.contextmanager
def _output_folder(out: Path | None, fix: str, inputs: list[str]) -> Iterator[None]:
    """The work within, whose files go into the folder ``out`` (None: none): a folder that
    cannot be written, or that the overlays of the image files among ``inputs`` may not be
    written into (someone's photos, a run's figures), is said before the work, not after
    it, and the folders made for it are removed again if the work fails."""
    from .explain.api import check_output_folder

    with removed_on_failure(missing_folders(out.expanduser()) if out else []):
        if out:
            try:
                check_output_folder(out, [i for i in inputs if Path(i).is_file()])
            except WriteError as e:
                raise refixed(e, fix) from None
        yield


def _unused_folder(folder: Path) -> Path:
    """``folder``, or ``folder-2``, ``folder-3``... : the first that does not exist or is
    empty, so that a new run's files never mix with an earlier run's."""
    candidate, n = folder, 1
    while candidate.exists() and (not candidate.is_dir() or any(candidate.iterdir())):
        n += 1
        candidate = folder.with_name(f"{folder.name}-{n}")
    return candidate


def add_serve(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Serve a model file: POST /predict (an image as the body or a multipart file -> JSON "
        "top-k), a web page at /, GET /healthz and GET /metadata. Concurrent requests are "
        "batched. Needs the serve extra: pip install 'resnetlab[serve]'."
    )
    p.add_argument(
        "model_file",
        metavar="MODEL_FILE",
        help="a model file: .safetensors, or .onnx from `export`",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: everyone)",
    )
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0: any free)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--max-batch", type=int, default=16, help="most images per batch (16; 1: off)")
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=2.0,
        help="how long a batch waits for more images (2)",
    )
    p.add_argument(
        "--max-queue", type=int, default=256, help="images waiting before 503 answers (256)"
    )
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload (20 MB)")
    p.add_argument(
        "--top-k", type=_at_least_one, default=3, help="classes per answer (3; ?top_k=N)"
    )
    p.add_argument(
        "--request-timeout",
        type=float,
        default=30.0,
        help="seconds for a request's headers to come, and then for its whole body, before "
        "the connection is closed (a body not all in is answered 408 first) (30)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        help="connections open at once; a request on one more is answered 503 (default: "
        "--max-queue + --max-batch, 272: one for each image the queue and a running batch "
        "hold, so that uploads in memory stay under this many times --max-upload-mb)",
    )
    _add_inference_precision(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import serve

    serve(
        args.model_file,
        host=args.host,
        port=args.port,
        device=args.device,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_upload_mb=args.max_upload_mb,
        top_k=args.top_k,
        request_timeout=args.request_timeout,
        max_connections=args.max_connections,
        precision=args.precision,
    )
    return 0


def add_export(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Export a model file. The written file is run in its own runtime (onnxruntime, "
        "torch.jit.load, torch.export.load) on real images (--data) or generated ones and "
        "compared with the PyTorch model; beyond the tolerance nothing is written."
    )
    p.add_argument(
        "model_file", metavar="MODEL_FILE", help="a model file written by resnetlab (.safetensors)"
    )
    p.add_argument(
        "out",
        metavar="OUT",
        help="the file to write: .onnx, .pt2 (exported program) or .pt; - (with --format): "
        "standard output",
    )
    p.add_argument(
        "--format",
        choices=("onnx", "torchscript", "exported-program"),
        help="default: from OUT's suffix",
    )
    p.add_argument("--batch", default="dynamic", help="'dynamic' (default) or a fixed batch size N")
    p.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    p.add_argument("--fp16", action="store_true", help="float16 weights and arithmetic")
    p.add_argument(
        "--with-preprocessing",
        action="store_true",
        help="take uint8 (N, H, W, 3) RGB pixels at the input size and normalise inside",
    )
    p.add_argument("--data", help="check on this data's held-out images (and calibrate int8)")
    p.add_argument("--quantize", choices=("int8",), help="static INT8 (ONNX; needs --data)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_model

    # `export m.safetensors /dev/stdout --format onnx > m.onnx`: the report goes to stderr,
    # not into the file after (or, through a file's own offset, over) the exported bytes.
    report_to = sys.stderr if _is_stdout(args.out) else sys.stdout
    if report_to is sys.stderr and sys.stdout.isatty():  # (as gzip refuses)
        raise ResnetlabError(
            f"OUT {args.out} is the terminal, which would show the exported file's bytes; "
            "pipe it into a command, or give a file name"
        )
    report = export_model(
        args.model_file,
        args.out,
        format=args.format,
        batch=args.batch,
        opset=args.opset,
        fp16=args.fp16,
        with_preprocessing=args.with_preprocessing,
        data=args.data,
        quantize=args.quantize,
    )
    with contextlib.redirect_stdout(report_to):
        if args.json:
            print_json(report.to_dict())
        else:
            print("\n".join(report.describe()))
    return 0


def _is_stdout(path: str) -> bool:
    """Whether ``path`` is where standard output goes (``-``, ``/dev/stdout``, the file or
    pipe the shell opened for it)."""
    if path == "-":
        return True
    try:
        return os.path.samestat(os.stat(path), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError, AttributeError):  # no such file; a stdout without a file
        return False


def add_bench(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Measure speed, ours and the peer's side by side in one process, and "
        "append each result as a JSON line to <results>/<machine>.jsonl: --results, else "
        "benchmarks/results in a resnetlab checkout, else <cache>/bench."
    )
    kinds = p.add_subparsers(dest="bench_command", metavar="BENCHMARK", required=True)
    measured = [
        _add_bench_train(kinds, CHOICES),
        _add_bench_infer(kinds, CHOICES),
        _add_bench_data(kinds),
        _add_bench_time_to_accuracy(kinds, CHOICES),
    ]
    for q in measured:
        q.add_argument("--results", help="a .jsonl file or folder (default: see bench --help)")
        q.add_argument("--machine", help="machine name for the results file and table")
        q.add_argument("--no-save", action="store_true", help="print only")
        q.add_argument("--json", action="store_true", help="print the record as JSON")
    c = kinds.add_parser(
        "calibrate",
        help="measure this CPU's training choices for a workload (done on first use anyway)",
        description="Time the candidate ways to train MODEL on this CPU (per convolution "
        "shape: oneDNN or a matrix product; NCHW or channels-last; fp32 or bf16 autocast on "
        "CPUs with bf16 hardware), cache the choice for `resnetlab train`, and show it.",
    )
    c.add_argument(
        "--model",
        required=True,
        help="a registered model name, or a model file (its architecture, classes and size)",
    )
    c.add_argument(
        "--batch-size",
        type=int,
        help="the batch `train` will use, e.g. the one its `recipe auto:` line prints "
        "(default: 128, the modern recipe's)",
    )
    c.add_argument("--input-size", type=_input_size, help="image side (default: the model's)")
    c.add_argument(
        "--num-classes", type=_class_count, help="classifier outputs (default: the model's)"
    )
    c.add_argument("--precision", choices=CHOICES["precision"], help="default auto")
    c.add_argument(
        "--channels-last", action=argparse.BooleanOptionalAction, help="time only this layout"
    )
    c.add_argument("--optimizer", choices=CHOICES["optimizer"], help="default: recipe's")
    c.add_argument("--force", action="store_true", help="measure again, ignoring the cache")
    c.add_argument("--json", action="store_true", help="print the plan as JSON")
    c.set_defaults(bench_fn="bench_calibrate", bench_name="calibrate")
    r = kinds.add_parser("table", help="the README's Markdown table of recorded results")
    r.add_argument(
        "paths",
        nargs="*",
        help=".jsonl files, folders of them, or a record saved from --json (default: the "
        "results folder)",
    )
    r.add_argument("--update", metavar="README", help="write it between the README's markers")
    r.set_defaults(bench_fn=None, bench_name="table")
    for q in (*measured[:3], c):
        q.add_argument("--threads", type=int, help="CPU threads for PyTorch")
    for q in measured:  # the record's command writes their --no- form where it was given
        q.set_defaults(
            negatable=[a.dest for a in q._actions if isinstance(a, argparse.BooleanOptionalAction)]
        )
    p.set_defaults(func=cmd_bench)


def _add_bench_timed(q: argparse.ArgumentParser, choices: dict, steps: int, warmup: int) -> None:
    """The options of the side-by-side comparisons, ``bench train`` and ``bench infer``."""
    q.add_argument(
        "--model",
        required=True,
        help="a registered model name, or a model file (its architecture, classes and size)",
    )
    q.add_argument("--input-size", type=_input_size, help="image side (default: the model's)")
    q.add_argument(
        "--num-classes", type=_class_count, help="classifier outputs (default: the model's)"
    )
    q.add_argument(
        "--precision",
        choices=choices["precision"],
        help="named, applies to the peer too (default: ours auto, the peer fp32)",
    )
    q.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="named, applies to the peer too (default: ours as `train` chooses, the peer NCHW)",
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


def _add_bench_train(kinds: argparse._SubParsersAction, choices: dict) -> argparse.ArgumentParser:
    t = kinds.add_parser("train", help="images/s of full training steps (synthetic data)")
    t.add_argument("--batch-size", type=int, default=128, help="images per step (128)")
    _add_bench_timed(t, choices, steps=10, warmup=5)
    t.add_argument(
        "--cuda-graphs",
        action=argparse.BooleanOptionalAction,
        help="capture our step into a CUDA graph (default: as train, on CUDA wherever it can)",
    )
    t.add_argument(
        "--optimizer", choices=choices["optimizer"], help="default: sgd, the modern recipe's"
    )
    t.add_argument("--explain-speed", action="store_true", help=TRAIN_HELP["explain_speed"])
    t.set_defaults(bench_fn="bench_train", bench_name="train")
    return t


def _add_bench_infer(kinds: argparse._SubParsersAction, choices: dict) -> argparse.ArgumentParser:
    i = kinds.add_parser("infer", help="batch-1 latency and large-batch throughput")
    i.add_argument("--batch-size", type=int, default=256, help="for throughput (256)")
    _add_bench_timed(i, choices, steps=10, warmup=3)
    i.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="torch",
        help="onnxruntime: ours is the ONNX export (int8: quantized) run by onnxruntime, the "
        "peer our PyTorch path (CPU, fp32)",
    )
    i.set_defaults(bench_fn="bench_infer", bench_name="infer")
    return i


def _add_bench_data(kinds: argparse._SubParsersAction) -> argparse.ArgumentParser:
    d = kinds.add_parser(
        "data", help="data loading speed, and the share of training time waiting for data"
    )
    d.add_argument("--data", default="digits", help="a data spec as for train (digits)")
    d.add_argument("--batch-size", type=int, default=256, help="images per batch (256)")
    d.add_argument("--model", default="resnet20", help="model trained for the share (resnet20)")
    d.add_argument("--input-size", type=_input_size, help="resize when decoding (default: keep)")
    d.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    d.add_argument("--steps", type=int, default=20, help="training steps for the share (20)")
    d.add_argument("--workers", type=int, help="DataLoader workers (default: cores, max 8)")
    d.set_defaults(bench_fn="bench_data", bench_name="data")
    return d


def _add_bench_time_to_accuracy(
    kinds: argparse._SubParsersAction, choices: dict
) -> argparse.ArgumentParser:
    a = kinds.add_parser(
        "time-to-accuracy",
        aliases=["tta"],  # the name before 0.2, kept for a release
        help="wall-clock time from raw data to a target accuracy, whole process (alias: tta)",
    )
    a.add_argument("--model", default="resnet20", help="resnet20")
    a.add_argument("--data", default="cifar10", help="a data spec as for train (cifar10)")
    a.add_argument("--target", type=float, default=0.91, help="accuracy to reach (0.91)")
    a.add_argument("--epochs", type=int, help="recipe length (default 40)")
    a.add_argument("--batch-size", type=int, help="default 512")
    a.add_argument("--lr", type=float, help="default 0.4")
    a.add_argument("--recipe", choices=choices["recipe"], help="default modern")
    a.add_argument("--input-size", type=_input_size, help="default: the model's")
    a.add_argument("--precision", choices=choices["precision"])
    a.add_argument("--compile", action="store_true", help="torch.compile the model")
    a.add_argument(
        "--cuda-graphs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="default: as train, on CUDA wherever the step can be captured",
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
    a.add_argument("--log", help="write the training run's output to this file, also when it fails")
    a.set_defaults(bench_fn="bench_time_to_accuracy", bench_name="time-to-accuracy")
    return a


def cmd_bench(args: argparse.Namespace) -> int:
    import inspect

    from . import bench
    from .bench.records import command_line

    if args.bench_name == "table":
        table = bench.render_table(bench.read_records(args.paths or [bench.default_results_dir()]))
        if args.update:
            bench.update_readme(args.update, table)
            print(f"updated {args.update}")
        else:
            print(table, end="")
        return 0
    fn = getattr(bench, args.bench_fn)
    names = inspect.signature(fn).parameters
    options = {k: v for k, v in vars(args).items() if k in names}
    if args.bench_name == "calibrate":
        done = fn(**options)
        if args.json:
            print_json(done.to_record())
        else:
            print("\n".join(done.lines()))
        return 0
    if getattr(args, "machine", None) and not re.fullmatch(r"[\w.+-]+", args.machine):
        raise ResnetlabError(
            f"--machine {args.machine!r}: letters, digits, '.', '-' and '_' only (it names "
            "the results file)"
        )
    if not args.no_save:  # a results folder it cannot write is said before, not after
        bench.check_results(args.results)
    # The command that reruns it, with every default spelled out (where a log goes is not
    # part of the measurement).
    shown = {k: v for k, v in options.items() if k != "log"}
    if getattr(args, "train_option", None):
        shown["train_option"] = args.train_option
        options["train_options"] = parse_options(args.train_option, "--train-option")
    record = {"command": command_line(args.bench_name, shown, args.negatable)}
    record.update(fn(**options))
    if args.machine:
        record["machine"] = args.machine
    if args.json:
        print_json(record)
    else:
        print("\n".join(bench.describe(record)))
    if getattr(args, "explain_speed", False):  # beside --json, stdout stays one JSON document
        _explain_speed(record, file=sys.stderr if args.json else sys.stdout)
    if not args.no_save:
        path = bench.append_record(record, bench.results_path(record["machine"], args.results))
        print(f"appended to {path}", file=sys.stderr)
    return 0


def _explain_speed(record: dict, file: TextIO) -> None:
    from .engine.calibrate import CpuPlan, speed_lines

    plan = record["ours"].get("cpu_plan")
    plan = CpuPlan.from_record(plan) if plan is not None else None
    print("\n".join(speed_lines(plan, record["device"], detailed=True)), file=file)


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


def add_experiment(p: argparse.ArgumentParser) -> None:
    # Declarations only: the two experiments' shared and own options.
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
        help=f"default {list(DEGRADATION_DEPTHS)}; --family preact: {list(PREACT_DEPTHS)}",
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
        "--steps",
        type=int,
        default=GRADIENT_STEPS,
        help=f"training steps (default {GRADIENT_STEPS})",
    )
    g.add_argument("--seed", type=int, default=0, help="seed for weights, data order, batch")
    g.add_argument("--probe-size", type=int, default=128, help="images in the measured batch")
    g.set_defaults(func=cmd_experiment)
    for q in (d, g):
        q.add_argument("--data", required=True, help="data spec, e.g. cifar10 or an archive")
        q.add_argument("--download", action="store_true", help="fetch cifar10 if not cached")
        quick_tag = "[-quick]" if q is d else ""  # the plain family unnamed
        default = f"runs/{'degradation' if q is d else 'gradients'}[-preact]{quick_tag}-<data>"
        q.add_argument("--out", help=f"experiment folder (default: {default})")
        q.add_argument(
            "--family",
            choices=list(FAMILIES),
            default="plain",
            help="the two nets at each depth: plain (plainN vs resnetN, the shortcuts; "
            "default) or preact (resnetN vs preresnetN, pre-activation units)",
        )
        q.add_argument(
            "--recipe",
            choices=CHOICES["recipe"],
            help="default paper-cifar; --family preact: preact-cifar",
        )
        for name, kind in EXPERIMENT_TRAIN_FLAGS:
            if q is g and name in ("epochs", "max_steps"):
                continue  # --steps sets the length
            q.add_argument("--" + name.replace("_", "-"), type=kind, help=TRAIN_HELP[name])
        q.add_argument(
            "--train-option",
            "--option",  # the earlier name
            dest="train_option",
            action="append",
            metavar="KEY=VALUE",
            help="any other training option, e.g. weight_decay=5e-4 (repeatable)",
        )


def cmd_experiment(args: argparse.Namespace) -> int:
    from .experiments import run_degradation, run_gradients
    from .experiments.degradation import default_depths
    from .experiments.gradients import markdown as gradient_markdown
    from .experiments.runner import default_out

    options = parse_options(args.train_option, "--train-option") if args.train_option else {}
    run = run_degradation if args.experiment == "degradation" else run_gradients
    own = inspect.signature(run).parameters  # set by the command's own flags
    if taken := [
        k for k in options if k in own and k != "recipe" and own[k].kind != own[k].VAR_KEYWORD
    ]:
        flag = "--" + taken[0].replace("_", "-")
        raise ResnetlabError(
            f"--train-option {taken[0]}: the experiment's {flag} sets that; give {flag} instead"
        )
    options.update(
        {
            n: getattr(args, n)
            for n, _ in EXPERIMENT_TRAIN_FLAGS
            if getattr(args, n, None) is not None
        }
    )
    if args.download:
        options["download"] = True
    # The runs keep the data's absolute path; their messages name it as it was given.
    from .engine.train import path_as_given

    local = os.path.exists(args.data)
    # The training options the experiment has no flag for are given under --train-option,
    # and messages say them so; it sets each run's model, seed and folder itself.
    under = set(TRAIN_HELP) - set(vars(args)) - {"model", "seed", "out"}
    with (
        named_as_given(path_as_given(os.path.abspath(args.data), args.data) if local else {}),
        options_under("--train-option", under),
    ):
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
            print((result.out / "table.md").read_text(encoding="utf-8"))
            written = ("curves.png", "depth.png", "table.md", "table.json")
            if result.verdict is not None and not result.verdict["complete_seeds"]:
                # Every seed lost a run (diverged): no verdict, which a script must not
                # take for one; the table and the runs that finished are kept.
                print("wrote " + ", ".join(str(result.out / name) for name in written))
                return 1
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


def _smaller_work(args: argparse.Namespace) -> str:
    """How to ask the command of ``args`` for less memory: by its own batch flag (export's
    is --batch, serve's --max-batch) and its --input-size, where it has them."""
    flags = [
        flag
        for flag, dest in (
            ("--batch-size", "batch_size"),
            ("--batch", "batch"),
            ("--max-batch", "max_batch"),
            ("--input-size", "input_size"),
        )
        if hasattr(args, dest)
    ]
    if not flags:
        return "free memory, or run it on a machine with more"
    return f"lower {flags[0]}" + (f" (or {flags[1]})" if flags[1:] else "")


# Every command: name, one-line help, and the function that adds its arguments. Only the
# command being run gets its arguments, so ``resnetlab --help`` and ``--version`` never
# import PyTorch.
COMMANDS = (
    ("train", "train a model and write a run folder", add_train),
    ("eval", "accuracy, per-class precision/recall and confusion matrix", add_eval),
    ("predict", "classify images with a trained model", add_predict),
    (
        "explain",
        "class activation maps (Grad-CAM...): where a model looks; faithfulness checks",
        add_explain,
    ),
    ("serve", "a JSON API and a web page for a model's predictions", add_serve),
    (
        "export",
        "write a model file as ONNX, a torch.export program or TorchScript, checked in its runtime",
        add_export,
    ),
    ("models", "list the registered models", add_models),
    ("summary", "layer table, parameter counts and FLOPs of a model", add_summary),
    ("data", "look at a data set before training on it", add_data),
    ("convert", "import weights from other frameworks", add_convert),
    (
        "bench",
        "benchmarks: training and inference speed against torchvision, data loading, "
        "time to accuracy, the CPU calibration",
        add_bench,
    ),
    ("experiment", "reproduce the paper: degradation, gradient flow", add_experiment),
)


def _spelling(choice: str) -> str:
    """A choice as it may be typed: any case, without separators, "+" as "p" or "plus"
    (``GradCAM++``, ``gradcam-pp``, ``gradcam_plusplus`` all name ``gradcam++``)."""
    text = choice.lower().replace("plus", "p").replace("+", "p")
    return "".join(ch for ch in text if ch.isalnum())


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


# Two sides where --input-size takes one: 224x224, 320x200, "224,224", (224, 224).
_TWO_SIDES = re.compile(r"\(?\s*(\d+)\s*[xX×*,\s]\s*(\d+)\s*\)?")


def _side(text: str) -> int:
    """An ``--input-size`` as a whole number, two sides (``224x224``) told to give one: the
    models see square images."""
    if sides := _TWO_SIDES.fullmatch(text.strip()):
        a, b = sorted(int(n) for n in sides.groups())
        raise argparse.ArgumentTypeError(
            f"{text!r} is two sides, and the models see square images: give one side"
            + (f": --input-size {a}" if a == b else f", e.g. --input-size {a}")
        )
    return _whole_number(text)


def _input_size(text: str) -> int:
    """An ``--input-size``: a side the models can take (what model files may record)."""
    size = _side(text)
    if not is_input_size(size):
        raise argparse.ArgumentTypeError(f"must be {INPUT_SIZES}, got {size}")
    return size


def _at_least_one(text: str) -> int:
    count = _whole_number(text)
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {count}")
    return count


def _class_count(text: str) -> int:
    """A ``--num-classes``: at least one, and no more than a model file may record."""
    count = _at_least_one(text)
    if count > MAX_CLASSES:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_CLASSES:,}, got {count:,}")
    return count


def _is_data(item: str) -> bool:
    """Whether a stray argument names data: a path that exists, or a data set by name."""
    if os.path.exists(item):
        return True
    return item in NAMED_SOURCES


def _folders_of_one_folder(items: list[str]) -> str | None:
    """The folder that holds every one of ``items``, where they are two folders or more
    (the class folders a shell's ``photos/*`` expands to); None otherwise."""
    if len(items) < 2 or not all(Path(i).expanduser().is_dir() for i in items):
        return None
    parents = {os.path.dirname(os.path.normpath(i)) for i in items}
    return parents.pop() if len(parents) == 1 and "" not in parents else None


# Keywords of the Python API whose flag has another name: typed as flags, they name it.
_KEYWORD_FLAGS = {"target": "class"}


class _Parser(argparse.ArgumentParser):
    """argparse with short errors: the command's usage line, the problem, and a suggestion
    for a misspelt option or choice, instead of the whole usage of a long command."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"usage: {self.prog} ... (see {self.prog} --help)\nerror: {message}\n")

    def unknown(self, extras: list[str]) -> NoReturn:
        # Compared without their dashes, which every flag shares: --seconds is not like --json.
        names = [o[2:] for a in self._actions for o in a.option_strings if o.startswith("--")]
        # --data as the command shows it: not data inspect's alias of its DATA argument
        flags = {o for a in self._actions if a.help != argparse.SUPPRESS for o in a.option_strings}
        if parent := _folders_of_one_folder(extras):  # --data photos/*: a class folder each
            given = "--data " if "--data" in flags else ""
            self.error(
                f"unrecognized arguments: {' '.join(extras)} (a pattern such as {parent}/* "
                f"names each folder in {parent}: give the folder that holds them, {given}{parent})"
            )
        parts = []
        for item in extras:
            name = item.split("=", 1)[0]
            close = []
            if name.startswith("-") and (flag := _KEYWORD_FLAGS.get(name.lstrip("-"))) in names:
                close = [f"--{flag}"]  # explain(target=...) in Python is --class here
            elif name.startswith("-") and (current := _current_name(self, name)):
                close = [current]  # train --image-size: data inspect's earlier --input-size
            elif name.startswith("-") and (others := _commands_taking(name)):
                # Another command's option (eval --input-size): not a misspelling of one of
                # this command's, which a likeness of letters would offer (--batch-size).
                shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
                command = self.prog.removeprefix("resnetlab ")
                fix = "name the command first" if command == self.prog else f"not of {command}"
                if name == "--data" and any(a.dest == "images" for a in self._actions):
                    fix += ": name the images and folders without it"  # predict photos/
                parts.append(f"{item} (an option of {shown}; {fix})")
                continue
            elif name.startswith("-"):
                close = [f"--{c}" for c in difflib.get_close_matches(name.lstrip("-"), names, n=1)]
            if not close and "--data" in flags and not name.startswith("-") and _is_data(item):
                # `resnetlab train photos/`: the data is an option
                close = [f"--data {shell_word(item)}"]
            parts.append(f"{item} (did you mean {close[0]}?)" if close else item)
        self.error(f"unrecognized arguments: {' '.join(parts)}")

    def _check_value(self, action: argparse.Action, value) -> None:
        # An empty value (an unset shell variable: --pretrained "$WEIGHTS") is not the
        # option left out, nor the current folder: no option takes one.
        optional = action.option_strings and not action.required  # eval's --data is not
        give = "one or leave the option out" if optional else "one"
        if isinstance(value, str) and (problem := empty_problem(value, give)):
            raise argparse.ArgumentError(action, problem)
        if action.choices is not None and value not in action.choices:
            choices = [str(c) for c in action.choices]
            close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
            close += [c for c in choices if _spelling(c) == _spelling(str(value))]
            hint = f"; did you mean {close[-1]}?" if close else ""
            if action.dest == "command" and (full := _command_of_action(str(value))):
                hint = f"; did you mean {full}?"  # `resnetlab inspect`: data inspect
            if value == "help" and action.nargs == argparse.PARSER:  # as git and cargo take it
                hint = f"; did you mean {self.prog} --help?"
            if len(choices) == 1 and os.path.splitext(str(value))[1]:  # a file, kind left out
                hint = f"; name the kind first: {self.prog} {choices[0]} {value} ..."
            if action.dest == "source" and (kind := _convert_kind(str(value))):
                hint = f"; name the kind first: {self.prog} {kind} {value} ..."  # convert's
            raise argparse.ArgumentError(
                action, f"invalid choice {value!r} (choose from {', '.join(choices)}){hint}"
            )
        super()._check_value(action, value)


def _convert_kind(source: str) -> str | None:
    """The kind of ``convert`` that ``source``, given without its kind, is for: ``keras``
    for a Keras file, ``pretrained`` for other weights (a file, a folder, timm:...)."""
    from .convert.pretrained import KERAS_SUFFIXES, NAMED_SOURCES

    if Path(source).suffix.lower() in KERAS_SUFFIXES:
        return "keras"
    named = source.partition(":")[0] in NAMED_SOURCES
    return "pretrained" if named or Path(source).suffix or os.path.isdir(source) else None


def _command_of_action(name: str) -> str | None:
    """``data inspect`` for ``inspect``: the command and action ``name`` is the action of,
    for an action given without its command; None where no command has it. Builds every
    command's arguments: only on the way to an error."""
    for command, parser in _subcommands(build_parser()).items():
        if name in _subcommands(parser):
            return f"{command} {name}"
    return None


def _commands_taking(flag: str) -> list[str]:
    """The commands (``train``, ``data inspect``) that take the option ``flag``, in the order
    ``resnetlab --help`` lists them; built in full here, on the way to an error."""
    return [
        path
        for path, parser in _commands()
        if any(flag in a.option_strings for a in parser._actions)
    ]


def _current_name(parser: argparse.ArgumentParser, flag: str) -> str | None:
    """The option of ``parser`` that another command takes under ``flag``, an earlier name
    it keeps hidden (``data inspect --image-size``, ``--input-size`` everywhere now), or
    None."""
    dests = {
        a.dest
        for _, command in _commands()
        for a in command._actions
        if flag in a.option_strings and a.help == argparse.SUPPRESS
    }
    for action in parser._actions:
        if action.dest in dests and action.help != argparse.SUPPRESS:
            return next((o for o in action.option_strings if o.startswith("--")), None)
    return None


def _commands() -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Each command (``train``, ``data inspect``) and its parser, in the order ``resnetlab
    --help`` lists them; built in full here, on the way to an error."""

    def walk(
        parser: argparse.ArgumentParser, path: str
    ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
        subs = _subcommands(parser)
        if not subs:
            yield path, parser
        for name, sub in subs.items():
            yield from walk(sub, f"{path} {name}".strip())

    return walk(build_parser(), "")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parsers of ``parser``'s commands (or actions) by name; none where it has none."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(subs[0].choices) if subs else {}


def build_parser(only: str | None = None, *, complete: bool = True) -> argparse.ArgumentParser:
    """The command line: every command with its arguments, or with ``only``, just that one
    (the others are listed for ``--help``); ``complete=False`` gives none their arguments."""
    parser = _Parser(
        prog="resnetlab",
        description="Residual networks: train, evaluate, inspect and convert ResNets.",
    )
    parser.add_argument("--version", action="version", version=f"resnetlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help, add in COMMANDS:
        p = sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
        if only == name or (only is None and complete):
            add(p)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``; an unknown option is reported by the command it was given to."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    known = command in {name for name, _, _ in COMMANDS}
    parser = build_parser(command if known else None, complete=False)
    if command is None:  # `resnetlab --verison`: argparse would say only that COMMAND is missing
        options = {o for a in parser._actions for o in a.option_strings}
        if strays := [a for a in argv if a != "--" and a.split("=")[0] not in options]:
            parser.unknown(strays)
    _dashed_paths(_command_parser(parser, argv), argv)
    _data_without_its_flag(_command_parser(parser, argv), argv)
    args, extras = parser.parse_known_args(argv)
    if extras:
        _command_parser(parser, argv).unknown(extras)
    return args


def _dashed_paths(parser: _Parser, argv: list[str]) -> None:
    """A file or folder whose name begins with a dash (``-photos``) is read by argparse as
    an unknown option, which it then reports as a value or an argument missing: said as
    what it is, with the spelling that works."""
    options = {o for a in parser._actions for o in a.option_strings}
    for item in argv[: argv.index("--") if "--" in argv else len(argv)]:
        if (
            item[:1] == "-"
            and item[:2] != "--"
            and item not in options
            and " " not in item  # argparse reads these as values already
            and not re.fullmatch(r"-\d+(\.\d*)?", item)  # a negative number
            and os.path.lexists(item)
        ):
            parser.error(
                f"{item} begins with '-', which reads as an option: to name the file or "
                f"folder, write ./{item}"
            )


def _data_without_its_flag(parser: _Parser, argv: list[str]) -> None:
    """``resnetlab eval model.safetensors photos/``: a command that requires --data, given a
    data set as an argument too many and no --data, is told to name it so, as ``resnetlab
    train photos/`` is (``_Parser.unknown``), rather than only that --data is required."""
    data = next((a for a in parser._actions if "--data" in a.option_strings), None)
    if data is None or not data.required or {"-h", "--help"} & set(argv):
        return
    if any(a.split("=")[0] == "--data" for a in argv):
        return
    # The words that are no option's value: the command's names, its positionals, strays.
    valued = {o for a in parser._actions if a.nargs != 0 for o in a.option_strings}
    words = [
        a for i, a in enumerate(argv) if a[:1] != "-" and (i == 0 or argv[i - 1] not in valued)
    ]
    taken = len(parser.prog.split()) - 1 + sum(not a.option_strings for a in parser._actions)
    stray = [w for w in words[taken:] if _is_data(w)]
    if stray:
        parser.error(
            "the following arguments are required: --data (did you mean --data "
            f"{shell_word(stray[-1])}?)"
        )


def _command_parser(parser: argparse.ArgumentParser, argv: list[str]) -> _Parser:
    """The (sub)parser of the deepest command named in ``argv``."""
    while True:
        commands = _subcommands(parser)
        name = next((a for a in argv if a in commands), None)
        if name is None:
            return parser
        parser = commands[name]
        argv = argv[argv.index(name) + 1 :]


def _show_warning(message, category, *_args, **_kwargs) -> None:
    """Warnings as one line each, without Python's source location."""
    from .errors import CacheWarning, DataWarning, SettingWarning

    ours = (DataWarning, CacheWarning, SettingWarning)
    kind = "" if issubclass(category, ours) else f"{category.__name__}: "
    try:
        print(f"warning: {kind}{message}", file=sys.stderr)
    except OSError as e:  # (`resnetlab train ... 2>&1 | head -1`): as a run's log line
        from .engine.report import stderr_lost
        from .storage import reader_gone

        if not reader_gone(e, sys.stderr):
            raise
        stderr_lost()


def _stdout_reader_gone(error: OSError) -> bool:
    """Whether ``error``, come from anywhere in a command, is a write to stdout that found
    its reader gone. Windows says so with EINVAL, which other calls raise for errors of
    their own: there it counts only where stdout, asked to write what it still holds,
    fails again with it."""
    from .storage import reader_gone

    if isinstance(error, BrokenPipeError) or not reader_gone(error, sys.stdout):
        return isinstance(error, BrokenPipeError)
    try:
        sys.stdout.flush()
    except OSError as again:
        return again.errno == error.errno
    return False


def _not_matplotlib_config_dir(record: logging.LogRecord) -> bool:
    """Drops matplotlib's lines on a config or cache folder it cannot write (a read-only or
    missing home folder): it works on in a temporary one, at the cost of listing the fonts
    again; resnetlab's own cache says once where it cannot be written."""
    return record.funcName != "_get_config_or_cache_dir"


def run() -> int:
    """The ``resnetlab`` command: ``main``, then an exit that skips the garbage collector's
    passes over what is left (PyTorch's objects and the rest, about half a second)."""
    # Class and file names as stdout can show them: an output in an ASCII locale (LC_ALL=C,
    # Python's UTF-8 mode off) gets "\xe9t\xe9" for "été", as stderr does, not a traceback.
    stdout = sys.stdout
    if isinstance(stdout, io.TextIOWrapper) and codecs.lookup(stdout.encoding).name != "utf-8":
        stdout.reconfigure(errors="backslashreplace")
    code = main()
    gc.freeze()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    logging.getLogger("matplotlib").addFilter(_not_matplotlib_config_dir)  # added once
    # onnxscript 0.1 warns of its own deprecated names when imported, which torch 2.4 does
    # for every training run: nothing the user of the command can change.
    warnings.filterwarnings("ignore", category=FutureWarning, module="onnxscript")
    try:
        args = parse_args(argv)  # Ctrl-C may come here too
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    try:
        with warnings.catch_warnings(), command_line():  # messages name flags, not keywords
            warnings.showwarning = _show_warning
            return args.func(args)
    except ResnetlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RunInterrupted as e:  # the run said where it stopped and how to go on
        return e.exit_status
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        if _stdout_reader_gone(e):
            # The reader went away (`resnetlab predict ... | head`): not an error of ours.
            from .storage import discard_output

            discard_output(sys.stdout)
            return 1
        # A path given that cannot be used, which no command named itself.
        if (line := os_error_line(e)) is None:
            raise
        print(f"error: {as_given(line)}", file=sys.stderr)  # an archive's file: in it
        return 2
    except RuntimeError as e:  # a device out of memory where no command said more (bench)
        if not out_of_memory(e):
            raise
        what = str(e).strip().splitlines()[0][:200]
        print(f"error: out of memory ({what}); {_smaller_work(args)}", file=sys.stderr)
        return 2
