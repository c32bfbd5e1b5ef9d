"""Fine-tuning against training from scratch: the runs of docs/finetuning.md.

Each run is one ``resnetlab train`` process, followed by ``resnetlab eval`` of its last model
on the data's test split; one JSON line per run goes to ``results.jsonl`` next to this file
(the raw numbers: accuracies, seconds, the load average before and after). Runs already in
that file are skipped, so an interrupted experiment continues where it stopped. Run from
the project root:

    python docs/finetuning/experiment.py signs --pretrained runs/cifar-r18 --seeds 0 1 2
    python docs/finetuning/experiment.py length --pretrained runs/cifar-r18 --seeds 0 1 2
    python docs/finetuning/experiment.py validation --pretrained runs/cifar-r18 --seeds 0 1 2
    python docs/finetuning/experiment.py keras --pretrained ResNet50.h5 --seeds 0
    python docs/finetuning/experiment.py table
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.jsonl"
SIGNS_FOLDER = "../shared/data/signs/64x64_SIGNS"
SIGNS_H5 = "../shared/data/signs"
# Images per class (None: all, about 144) -> epochs: about 90, 220 and 430 steps of 16.
EPOCHS = {10: 30, 30: 20, None: 8}
SIGNS_CLASSES = 6


def signs_runs(pretrained: str, seeds: list[int]) -> list[dict]:
    """resnet18 at 64x64 on the SIGNS JPEG folder: from the given weights, or from scratch."""
    runs = []
    for seed in seeds:
        for per_class, epochs in EPOCHS.items():
            for start in ("pretrained", "scratch"):
                args = ["--model", "resnet18", "--data", SIGNS_FOLDER, "--input-size", "64"]
                args += ["--batch-size", "16", "--epochs", str(epochs), "--seed", str(seed)]
                if per_class is not None:
                    args += ["--subset", str(per_class * SIGNS_CLASSES)]
                # Each start with its default recipe: finetune with --pretrained, else modern.
                args += ["--pretrained", pretrained] if start == "pretrained" else []
                name = f"signs-{per_class or 'all'}-{start}-{seed}"
                runs.append(
                    dict(
                        name=name,
                        experiment="signs",
                        per_class=per_class,
                        start=start,
                        seed=seed,
                        args=args,
                        eval_data=SIGNS_FOLDER,
                    )
                )
    return runs


# The finetune recipe's length on small sets: images per class -> {label: batch/epoch flags}.
# "default" leaves both to the recipe; the others give what it chose before (batch 32, 10
# epochs) and what a floor of 100 steps instead of 300 would choose.
LENGTHS = {
    10: {
        "batch 32, 10 epochs (10 steps)": ["--batch-size", "32", "--epochs", "10"],
        "batch 16, 34 epochs (102 steps)": ["--batch-size", "16", "--epochs", "34"],
        "default": [],
    },
    30: {
        "batch 32, 10 epochs (50 steps)": ["--batch-size", "32", "--epochs", "10"],
        "batch 32, 20 epochs (100 steps)": ["--batch-size", "32", "--epochs", "20"],
        "default": [],
    },
}


def length_runs(pretrained: str, seeds: list[int]) -> list[dict]:
    """resnet18 at 64x64 on a few SIGNS photos, fine-tuned from the given weights with the
    ``finetune`` recipe for several lengths: the default and explicit batch and epochs."""
    return [
        _few_photos_run("length", tag, label, flags, per_class, seed, pretrained)
        for seed in seeds
        for per_class, lengths in LENGTHS.items()
        for label, flags in lengths.items()
        for tag in ["default" if not flags else "-".join(flags[1::2])]
    ]


def validation_runs(pretrained: str, seeds: list[int]) -> list[dict]:
    """The ``length`` experiment's default runs, validated as the run decides (every few of
    their short epochs) and every epoch (``--val-every 1``), one after the other."""
    ways = (("default", "default", []), ("every", "--val-every 1", ["--val-every", "1"]))
    return [
        _few_photos_run("validation", tag, label, flags, per_class, seed, pretrained)
        for seed in seeds
        for per_class in LENGTHS
        for tag, label, flags in ways
    ]


def _few_photos_run(
    experiment: str,
    tag: str,
    label: str,
    flags: list[str],
    per_class: int,
    seed: int,
    pretrained: str,
) -> dict:
    """resnet18 at 64x64 fine-tuned on ``per_class`` SIGNS photos a class, with ``flags``."""
    args = ["--model", "resnet18", "--data", SIGNS_FOLDER, "--input-size", "64"]
    args += ["--subset", str(per_class * SIGNS_CLASSES), "--seed", str(seed)]
    return dict(
        name=f"{experiment}-{per_class}-{tag}-{seed}",
        experiment=experiment,
        per_class=per_class,
        start=f"pretrained, {label}",
        seed=seed,
        args=[*args, "--pretrained", pretrained, *flags],
        eval_data=SIGNS_FOLDER,
    )


def keras_runs(
    pretrained: str, seeds: list[int], epochs: int, recipe: str | None = None
) -> list[dict]:
    """The course's model on the course's SIGNS files: continued from a Keras file, or not.

    From scratch the model trains with its default recipe (``seed``); continued, with
    ``recipe`` (default: ``finetune``, the default with ``--pretrained``).
    """
    runs = []
    for seed in seeds:
        for start in ("pretrained", "scratch"):
            args = ["--model", "resnet50_keras", "--data", f"{SIGNS_H5}/train_signs.h5"]
            args += ["--val-data", f"{SIGNS_H5}/test_signs.h5", "--epochs", str(epochs)]
            args += ["--seed", str(seed)]
            name = f"keras{epochs}-{start}-{seed}"
            if start == "pretrained":
                args += ["--pretrained", pretrained]
                if recipe is not None:
                    args += ["--recipe", recipe]
                    name = f"keras{epochs}-{start}-{recipe}-{seed}"
            runs.append(
                dict(
                    name=name,
                    experiment="keras",
                    per_class=None,
                    start=start,
                    recipe=recipe if start == "pretrained" else None,
                    seed=seed,
                    args=args,
                    eval_data=f"{SIGNS_H5}/test_signs.h5",
                )
            )
    return runs


def resnetlab(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "resnetlab", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True)


def run(spec: dict, out_root: Path) -> dict:
    out = out_root / spec["name"]
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    resnetlab("train", *spec["args"], "--out", str(out))
    wall = time.perf_counter() - start
    load_after = os.getloadavg()[0]
    summary = json.loads((out / "summary.json").read_text())
    report = json.loads(
        resnetlab(
            "eval",
            str(out / "last.safetensors"),
            "--data",
            spec["eval_data"],
            "--json",
            "--png",
            str(out / "test-confusion.png"),
        ).stdout
    )
    return {
        **{k: spec.get(k) for k in ("name", "experiment", "per_class", "start", "recipe", "seed")},
        "command": "resnetlab train " + " ".join([*spec["args"], "--out", str(out)]),
        "train_images": summary["train_images"],
        "batch_size": json.loads((out / "config.json").read_text())["batch_size"],
        "epochs": summary["epochs"],
        "steps": summary["steps"],
        "final_val_acc": summary["final_val_acc"],
        "best_val_acc": summary["best_val_acc"],
        "test_acc": report["accuracy"],
        "test_images": report["count"],
        "train_time_s": summary["train_time_s"],
        "wall_s": wall,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "cpus": os.cpu_count(),
    }


def done() -> set[str]:
    if not RESULTS.is_file():
        return set()
    return {json.loads(line)["name"] for line in RESULTS.read_text().splitlines() if line}


def table() -> str:
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines() if line]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        start = r["start"] + (f", --recipe {r['recipe']}" if r.get("recipe") else "")
        if r["experiment"] == "keras":
            start += f", {r['epochs']} epochs"
        if r["experiment"] == "length" and start.endswith("default"):  # what it chose
            start += f" (batch {r['batch_size']}, {r['epochs']} epochs, {r['steps']} steps)"
        groups.setdefault((r["experiment"], r["per_class"] or 10**9, start), []).append(r)
    lines = [
        "| experiment | images per class | start | runs | test accuracy | validation accuracy "
        "| training time | wall time | load average |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (experiment, per_class, start), rs in sorted(groups.items()):
        loads = [v for r in rs for v in (r["loadavg_before"], r["loadavg_after"])]
        lines.append(
            f"| {experiment} | {'all' if per_class == 10**9 else per_class} | {start} "
            f"| {len(rs)} | {_spread(rs, 'test_acc')}% | {_spread(rs, 'final_val_acc')}% "
            f"| {_spread(rs, 'train_time_s', 1.0)} s | {_spread(rs, 'wall_s', 1.0)} s "
            f"| {min(loads):.1f}-{max(loads):.1f} |"
        )
    return "\n".join(lines) + "\n"


def _spread(rows: list[dict], key: str, scale: float = 100.0) -> str:
    """Mean, and the range when there are several runs."""
    values = [r[key] * scale for r in rows]
    mean = statistics.mean(values)
    if len(values) == 1:
        return f"{mean:.1f}"
    return f"{mean:.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=("signs", "length", "validation", "keras", "table"))
    parser.add_argument("--pretrained", help="the weights to start from")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=5, help="keras: epochs of every run")
    parser.add_argument("--recipe", help="keras: the recipe of the continued run")
    parser.add_argument("--out", default="runs/finetuning", help="run folders go here")
    args = parser.parse_args()
    if args.experiment == "table":
        print(table(), end="")
        return
    if args.experiment == "signs":
        specs = signs_runs(args.pretrained, args.seeds)
    elif args.experiment == "length":
        specs = length_runs(args.pretrained, args.seeds)
    elif args.experiment == "validation":
        specs = validation_runs(args.pretrained, args.seeds)
    else:
        specs = keras_runs(args.pretrained, args.seeds, args.epochs, args.recipe)
    finished = done()
    for spec in specs:
        if spec["name"] in finished:
            continue
        record = run(spec, Path(args.out))
        with open(RESULTS, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(
            f"{record['name']}: test {record['test_acc']:.4f}, "
            f"{record['train_time_s']:.0f} s, load {record['loadavg_before']:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
