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
    for add in (add_models, add_summary, add_convert):
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
