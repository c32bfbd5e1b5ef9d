"""Old defaults against new ones, and against the named recipes, on real image sets.

Each (case, variant) is one ``resnetlab train`` run in a subprocess; its result (best and
final validation accuracy, steps, epochs, training and wall time, the machine's load
average during the run, the first epochs' losses) is appended as one JSON line to
``benchmarks/defaults/results.jsonl``. Runs already recorded are skipped, so the same
command continues an interrupted series.

Variants:
  old          the defaults before the ``auto`` recipe: the code at ``OLD_COMMIT``, no
               ``--recipe`` (``modern``, 15 epochs; ``seed``, 30 epochs, for resnet50_keras)
  auto         this code, no ``--recipe``: the ``auto`` recipe
  seed, paper-cifar, modern
               this code, that recipe, for as many epochs as ``auto`` chose on the case

    python benchmarks/defaults/run.py digits cifar500 --variants old auto seed
    python benchmarks/defaults/run.py --table    # the Markdown table of recorded results
    python benchmarks/defaults/run.py --table --update docs/defaults.md
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).with_name("results.jsonl")
OLD_COMMIT = "5e46c0e54e87728ef65c6fc5ec48822de1f7315c"
DATA = ROOT.parent / "shared" / "data"
SIGNS = DATA / "signs"
CIFAR = DATA / "cifar10-jpg.tar.gz"
WORK = Path(os.environ.get("RESNETLAB_BENCH_WORK", Path.home() / ".cache" / "resnetlab-defaults"))
CIFAR64 = WORK / "cifar64"  # built by prepare_cifar64
WIDE = WORK / "wide"  # built by prepare_wide: photos that are not square, for --resize

CASES: dict[str, list[str]] = {
    "digits": [],  # resnet20 on digits at 32x32: the offline demo
    "signs-h5-keras": [
        "--model", "resnet50_keras",
        "--data", f"{SIGNS}/train_signs.h5", "--val-data", f"{SIGNS}/test_signs.h5",
    ],
    "signs-h5-resnet18": [
        "--model", "resnet18", "--input-size", "64",
        "--data", f"{SIGNS}/train_signs.h5", "--val-data", f"{SIGNS}/test_signs.h5",
    ],
    # A deeper bottleneck network, torchvision's layout, without zero-initialised branches.
    "signs-h5-resnet50": [
        "--model", "resnet50", "--input-size", "64",
        "--data", f"{SIGNS}/train_signs.h5", "--val-data", f"{SIGNS}/test_signs.h5",
    ],
    "signs-jpeg-resnet18": [
        "--model", "resnet18", "--input-size", "64", "--data", f"{SIGNS}/64x64_SIGNS",
    ],
    "cifar500": [
        "--model", "resnet20", "--data", str(CIFAR), "--subset", "500", "--val-subset", "2000",
    ],
    "cifar5000": [
        "--model", "resnet20", "--data", str(CIFAR), "--subset", "5000", "--val-subset", "2000",
    ],
    "cifar64-resnet18": ["--model", "resnet18", "--input-size", "64", "--data", str(CIFAR64)],
    # A cheaper stand-in for choosing the rule: the SIGNS photos at 32x32 with ResNet-20.
    "signs-h5-resnet20": [
        "--model", "resnet20", "--input-size", "32",
        "--data", f"{SIGNS}/train_signs.h5", "--val-data", f"{SIGNS}/test_signs.h5",
    ],
    # Photos of two shapes, 4:3 and 3:4, to choose between --resize squash and crop.
    "signs-wide-resnet20": [
        "--model", "resnet20", "--input-size", "32", "--data", str(WIDE / "signs"),
    ],
    "cifar-wide-resnet20": [
        "--model", "resnet20", "--input-size", "32", "--data", str(WIDE / "cifar"),
    ],
}  # fmt: skip
NAMED = ("seed", "paper-cifar", "modern")


def prepare_cifar64(per_class_train: int = 200, per_class_test: int = 100) -> None:
    """CIFAR-10 JPEGs upscaled to 64x64 (bicubic, JPEG quality 90): 2,000 training images
    (the first 200 of each class) and 1,000 test images, as ``train/`` and ``test/``."""
    if (CIFAR64 / "done").exists():
        return
    from PIL import Image

    counts: dict[tuple[str, str], int] = {}
    with tarfile.open(CIFAR) as tar:
        for member in tar:
            parts = Path(member.name).parts  # cifar10-jpg/<split>/<class>/<file>
            if not member.isfile() or len(parts) != 4 or not parts[3].endswith(".jpg"):
                continue
            split, cls = parts[1], parts[2]
            limit = per_class_train if split == "train" else per_class_test
            if counts.get((split, cls), 0) >= limit:
                continue
            counts[(split, cls)] = counts.get((split, cls), 0) + 1
            with Image.open(tar.extractfile(member)) as im:
                big = im.convert("RGB").resize((64, 64), Image.BICUBIC)
            out = CIFAR64 / split / cls / parts[3]
            out.parent.mkdir(parents=True, exist_ok=True)
            big.save(out, quality=90)
    (CIFAR64 / "done").write_text("")


def _wide(im, index: int):
    """Every other image cut to 4:3 (landscape), the others to 3:4 (portrait), centred: the
    subject keeps its proportions, as in photos taken in either orientation."""
    w, h = im.size
    if index % 2 == 0:
        return im.crop((0, h // 8, w, h - h // 8))
    return im.crop((w // 8, 0, w - w // 8, h))


def prepare_wide() -> None:
    """``WIDE/signs``: the SIGNS JPEG folder's photos; ``WIDE/cifar``: 2,000 CIFAR-10
    training and 1,000 test images; each cut to 4:3 or 3:4 and saved as PNG."""
    if (WIDE / "done").exists():
        return
    from PIL import Image

    for split in ("train", "val", "test"):
        folder = SIGNS / "64x64_SIGNS" / f"{split}_signs"
        for i, path in enumerate(sorted(folder.glob("*.jpg"))):
            label = path.name.split("_")[0]
            out = WIDE / "signs" / split / label / f"{path.stem}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(path) as im:
                _wide(im.convert("RGB"), i).save(out)
    counts: dict[tuple[str, str], int] = {}
    with tarfile.open(CIFAR) as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) != 4 or not parts[3].endswith(".jpg"):
                continue
            split, cls = parts[1], parts[2]
            n = counts.get((split, cls), 0)
            if n >= (200 if split == "train" else 100):
                continue
            counts[(split, cls)] = n + 1
            out = WIDE / "cifar" / split / cls / f"{Path(parts[3]).stem}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(tar.extractfile(member)) as im:
                _wide(im.convert("RGB"), n).save(out)
    (WIDE / "done").write_text("")


def code_at(commit: str) -> Path:
    """The source tree at ``commit``, extracted once: runs queued behind a long one use the
    code they were queued with, whatever happens to the working tree meanwhile."""
    folder = WORK / f"code-{commit[:10]}"
    if not (folder / "src").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", commit, "src"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "src"


def read_results() -> list[dict]:
    if not RESULTS.exists():
        return []
    return [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]


def find(results: list[dict], case: str, variant: str, seed: int) -> dict | None:
    return next(
        (
            r
            for r in results
            if (r["case"], r["variant"], r["seed"]) == (case, variant, seed)
            and r["status"] == "finished"
        ),
        None,
    )


class LoadSampler:
    """The 1-minute load average every 15 s while a run lasts (the CPU is shared)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(15):
                return

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_one(
    case: str, variant: str, seed: int, extra: list[str], results: list[dict], commit: str
) -> dict:
    args = ["train", *CASES[case], "--seed", str(seed), "--log-every", "1000000"]
    code = OLD_COMMIT if variant == "old" else commit
    src = code_at(code)
    if variant in NAMED:
        # The auto recipe's length depends on the data alone, so any seed's auto run says it.
        auto = next(
            (
                r
                for r in results
                if (r["case"], r["variant"], r["status"]) == (case, "auto", "finished")
            ),
            None,
        )
        if auto is None:
            raise SystemExit(f"{case}: run the auto variant first (named recipes take its epochs)")
        args += ["--recipe", variant, "--epochs", str(auto["epochs"])]
    elif variant.startswith("auto"):
        args += ["--recipe", "auto"]  # resnet50_keras defaults to course
    elif variant != "old":
        raise SystemExit(f"unknown variant {variant!r}")
    args += extra
    out = WORK / "runs" / f"{case}-{variant}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    args += ["--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, "-m", "resnetlab", *args]
    print(f"[{time.strftime('%H:%M:%S')}] {case} {variant}: {shlex.join(args)}", flush=True)
    tick = time.perf_counter()
    with LoadSampler() as load:
        proc = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - tick
    record = {
        "case": case,
        "variant": variant,
        "seed": seed,
        "command": "resnetlab " + shlex.join(args[:-2]),
        "code": code,
        "status": "failed",
        "wall_s": wall,
        "load_avg": sum(load.samples) / len(load.samples),
        "load_max": max(load.samples),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "stderr_tail": proc.stderr[-3000:],
    }
    summary_path = out / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        epochs = _epoch_rows(out / "metrics.csv")
        record.update(
            status=summary["status"],
            best_val_acc=summary["best_val_acc"],
            best_epoch=summary["best_epoch"],
            final_val_acc=summary["final_val_acc"],
            steps=summary["steps"],
            epochs=summary["epochs"],
            train_time_s=summary["train_time_s"],
            train_images=summary["train_images"],
            val_images=summary["val_images"],
            recipe_line=next(
                (line for line in proc.stderr.splitlines() if line.startswith("recipe auto")), None
            ),
            lr_halvings=[line for line in proc.stderr.splitlines() if "auto halves" in line],
            first_epochs=epochs[:3],
            epoch_val_acc=[r["val_acc"] for r in epochs],
        )
    if proc.returncode != 0:
        record["status"] = f"failed (exit {proc.returncode})"
    return record


def _epoch_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["kind"] == "epoch"]
    keys = ("train_loss", "train_acc", "val_loss", "val_acc")
    return [{k: float(r[k]) if r[k] else None for k in keys} for r in rows]


def _head() -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help=f"default: all of {', '.join(CASES)}")
    parser.add_argument("--variants", nargs="+", default=["old", "auto"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--extra", default="", help="more train flags, e.g. '--resize crop'")
    parser.add_argument("--force", action="store_true", help="rerun recorded runs")
    parser.add_argument("--commit", help="the code to run (default: HEAD; commit src first)")
    parser.add_argument("--table", action="store_true", help="print the results table")
    parser.add_argument(
        "--update", metavar="MARKDOWN", help="with --table: write it between the file's markers"
    )
    args = parser.parse_args()
    if args.table:
        from table import render, update  # benchmarks/defaults/table.py

        if args.update:
            update(Path(args.update), read_results())
        else:
            print(render(read_results(), args.cases or None), end="")
        return
    commit = args.commit or _head()
    cases = args.cases or list(CASES)
    if "cifar64-resnet18" in cases:
        prepare_cifar64()
    if any("wide" in case for case in cases):
        prepare_wide()
    for case in cases:
        for variant in args.variants:
            for seed in args.seeds:
                results = read_results()
                if find(results, case, variant, seed) and not args.force:
                    continue
                record = run_one(case, variant, seed, shlex.split(args.extra), results, commit)
                with open(RESULTS, "a") as f:
                    f.write(json.dumps(record) + "\n")
                best = record.get("best_val_acc")
                print(
                    f"  {record['status']}: best {best}, final {record.get('final_val_acc')}, "
                    f"{record.get('steps')} steps, {record['wall_s']:.0f} s, "
                    f"load {record['load_avg']:.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
