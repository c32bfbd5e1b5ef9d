"""bf16 autocast against float32 on the CPU: the same training runs, the same seed.

Each task trains twice with ``resnetlab train``, once with ``--precision fp32`` and once
with ``--precision bf16`` (what ``--precision auto`` picks on a CPU with bf16 hardware where
it measured faster), and appends one JSON line per run to
``benchmarks/precision/<machine>.jsonl``: final and best accuracy, training time and speed,
the machine's load average before and after.

    PYTHONPATH=src python benchmarks/precision/run.py [TASK ...] [--seeds 0 1]
    # default: every task, seed 0

Run from the project root; the data is the shared copy in ``../shared/data``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from resnetlab.bench.records import load_average, machine_slug
from resnetlab.engine.cpu import cpu_info

DATA = Path("../shared/data")
TASKS = {
    # The demo as `make demo` runs it: ResNet-20 on digits, the auto recipe. (Records named
    # "digits" are the demo's earlier settings: --recipe modern --epochs 15.)
    "demo": [],
    # The course's task, shortened from 30 epochs to 10 (the course recipe's cosine over 10).
    "signs-10-epochs": [
        "--model", "resnet50_keras", "--recipe", "course",
        "--data", str(DATA / "signs" / "train_signs.h5"),
        "--val-data", str(DATA / "signs" / "test_signs.h5"),
        "--epochs", "10",
    ],
    # ResNet-20 on 5,000 CIFAR-10 training images, tested on 2,000 test images, 15 epochs.
    "cifar10-5000": [
        "--model", "resnet20",
        "--data", str(DATA / "cifar10-jpg.tar.gz"),
        "--subset", "5000", "--val-subset", "2000", "--epochs", "15", "--recipe", "modern",
    ],
}  # fmt: skip


def run(task: str, precision: str, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        command = ["resnetlab", "train", *TASKS[task], "--precision", precision]
        command += ["--seed", str(seed)]
        before = load_average()
        subprocess.run(
            [sys.executable, "-m", "resnetlab", *command[1:], "--out", f"{tmp}/run"],
            check=True,
            env={**os.environ, "PYTHONPATH": "src"},
        )
        summary = json.loads(Path(tmp, "run", "summary.json").read_text())
    return {
        "task": task,
        "precision": precision,
        "seed": seed,
        "final_val_acc": summary["final_val_acc"],
        "best_val_acc": summary["best_val_acc"],
        "val_images": summary["val_images"],
        "epochs": summary["epochs"],
        "train_time_s": summary["train_time_s"],
        "images_per_s": summary["images_per_s"],
        "command": shlex.join(command),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_info(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_before": before,
        "load_after": load_average(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tasks", nargs="*", help=f"{', '.join(TASKS)} (default: every task)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    args = parser.parse_args()
    if unknown := [task for task in args.tasks if task not in TASKS]:
        parser.error(f"unknown task {unknown[0]!r}; the tasks are {', '.join(TASKS)}")
    out = Path(__file__).parent / f"{machine_slug(torch.device('cpu'))}.jsonl"
    for task in args.tasks or list(TASKS):
        for seed in args.seeds:
            for precision in ("fp32", "bf16"):
                record = run(task, precision, seed)
                with out.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
