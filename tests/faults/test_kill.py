"""SIGKILL at any point of a run, then ``--resume``: the run ends as if never killed.

Each trial kills a training process at a counted event (a step, a write of a checkpoint,
model file, summary, config, metrics file or figure, torn partway or whole but not yet
renamed; a row appended to metrics.csv, torn), resumes it (or, killed before its config was
written, starts it again, as the error message says), and compares the finished folder with
an uninterrupted run of the same command: the same weights bit for bit, the same metrics,
a valid summary, no temporary files. The fast test runs two fixed kill points, a write and
a step; the slow one draws many at random, seeded (the README's Reliability section has the
command and counts).
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import PROJECT_ROOT

from .conftest import tally

KILLER = Path(__file__).with_name("killer.py")
# resnet8 on 256 digits at 8x8: 8 steps an epoch, 3 epochs, a row every 3 steps.
TRAIN = [
    "train",
    "--model",
    "resnet8",
    "--data",
    "digits",
    "--input-size",
    "8",
    "--subset",
    "256",
    "--batch-size",
    "32",
    "--epochs",
    "3",
    "--log-every",
    "3",
    "--deterministic",
    # The reference run is a module's fixture, started before the conftest's CPU-only rule.
    "--device",
    "cpu",
]
WRITE_KINDS = ("checkpoint", "model", "summary", "config", "metrics", "figure")
TIMED = ("images_per_s", "train_time_s", "run_dir")


def start(
    args: list[str],
    *,
    kill: str | None = None,
    counts: Path | None = None,
    log: Path | None = None,
) -> subprocess.Popen:
    """``killer.py ARGS`` started; its output piped, or written to ``log`` (for a process
    nobody reads from while it runs)."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "src") + os.pathsep + str(PROJECT_ROOT)}
    env.pop("FAULT_KILL", None)
    if kill:
        env["FAULT_KILL"] = kill
    if counts:
        env["FAULT_COUNTS"] = str(counts)
    output = log.open("w") if log else subprocess.PIPE
    try:
        return subprocess.Popen(
            [sys.executable, str(KILLER), *args],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT if log else subprocess.PIPE,
            text=True,
        )
    finally:
        if log:
            output.close()


def finished(process: subprocess.Popen) -> subprocess.CompletedProcess:
    try:
        stdout, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run(args: list[str], *, kill: str | None = None, counts: Path | None = None):
    return finished(start(args, kill=kill, counts=counts))


class Reference:
    """An uninterrupted run started in the background; ``result()`` waits for it."""

    def __init__(self, out: Path, args: list[str], counts: bool = False) -> None:
        self.out, self.log = out, out.with_suffix(".log")
        self.counts = out.with_name("counts.json") if counts else None
        self.process = start([*args, "--out", str(out)], counts=self.counts, log=self.log)

    def result(self) -> Path:
        try:
            self.process.wait(timeout=300)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        assert self.process.returncode == 0, self.log.read_text()[-2000:]
        return self.out

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run the random kills are compared with, which also counts the
    events of each kind it passes: started in the background as the first test that asks
    for it begins, beside that test's first killed run (most of each process's time is
    spent importing PyTorch, on one core)."""
    started = Reference(tmp_path_factory.mktemp("reference") / "run", TRAIN, counts=True)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def validated_every_2(tmp_path_factory):
    """The same run validated (and saved) after epochs 2 and 3 only, uninterrupted; started
    in the background as ``reference`` is."""
    started = Reference(tmp_path_factory.mktemp("every-2") / "run", [*TRAIN, "--val-every", "2"])
    yield started
    started.stop()


def killed_and_resumed(out: Path, kills: list[str], train: Sequence[str] = TRAIN) -> int:
    """Run, kill at each point in turn (resuming after each), then run to the end.

    A resumed run starts counting events afresh; a kill point it never reaches lets it
    finish, and the kill points after it are not used.

    Returns:
        How many kills hit.
    """
    for hit, kill in enumerate([*kills, None]):
        if hit == 0 or not (out / "config.json").exists():
            # The first run; or one killed before it wrote its config, which left nothing
            # to resume: what the error message says to do is to run it again.
            args = [*train, "--out", str(out)]
        else:
            args = ["train", "--resume", str(out)]
        done = run(args, kill=kill)
        if done.returncode == 0:
            return hit
        assert kill is not None and done.returncode == -signal.SIGKILL, (
            kill,
            done.returncode,
            done.stderr[-2000:],
        )
    raise AssertionError("unreachable")


def assert_same_run(got: Path, want: Path) -> None:
    assert not [p.name for p in got.iterdir() if p.name.endswith(".tmp")]
    for name in ("last.safetensors", "best.safetensors"):
        a, b = load_file(str(got / name)), load_file(str(want / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    summary = json.loads((got / "summary.json").read_text())
    expected = json.loads((want / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert {k: v for k, v in summary.items() if k not in TIMED} == {
        k: v for k, v in expected.items() if k not in TIMED
    }
    rows = [_untimed(r) for r in csv.DictReader((got / "metrics.csv").open())]
    assert rows == [_untimed(r) for r in csv.DictReader((want / "metrics.csv").open())]
    assert (got / "config.json").read_text() == (want / "config.json").read_text()
    assert (got / "curves.png").stat().st_size > 0 and (got / "confusion.png").stat().st_size > 0


def _untimed(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in TIMED}


def test_a_run_killed_writing_a_checkpoint_then_between_validations_resumes_to_the_same_result(
    tmp_path, validated_every_2
):
    """A checkpoint torn halfway, then a step killed, each resumed from the checkpoint
    before: validated (and saved) after epochs 2 and 3 only, the run is killed writing epoch
    2's checkpoint (the first epoch's end saved nothing), and the resume starts from the
    checkpoint the run wrote as it started; that resume is killed in its epoch 2, and the
    next starts there again and drops the rows of epoch 1 it wrote."""
    train = [*TRAIN, "--val-every", "2"]
    kills = ["checkpoint:write:2:0.5", "step:write:12:0.5"]
    assert killed_and_resumed(tmp_path / "run", kills, train) == 2
    want = validated_every_2.result()
    assert_same_run(tmp_path / "run", want)
    rows = list(csv.DictReader((want / "metrics.csv").open()))
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert [bool(r["val_acc"]) for r in epochs] == [False, True, True]
    tally("kill points", 2)
    tally("resumes matched")


def draw_kills(counts: dict[str, int], rng: random.Random, n: int) -> list[str]:
    """``n`` kill points drawn from the events an uninterrupted run passes: a step about a
    third of the time (most of a run's time is spent in steps), else a write."""
    kinds = ["step", "row", *[k for k in WRITE_KINDS if counts.get(k)]]
    weights = [len(kinds) // 2, *[1] * (len(kinds) - 1)]
    kills = []
    for _ in range(n):
        (kind,) = rng.choices(kinds, weights)
        phase = "write" if kind in ("step", "row") else rng.choice(("write", "rename"))
        kills.append(f"{kind}:{phase}:{rng.randint(1, counts[kind])}:{rng.random():.3f}")
    return kills


@pytest.mark.slow
def test_random_kill_points_all_resume_to_the_same_result(tmp_path, reference):
    """The long loop: 40 trials, each killed once or twice at random points (seeded)."""
    want = reference.result()
    counts = json.loads(reference.counts.read_text())
    rng = random.Random(14)
    failures = []
    for trial in range(40):
        kills = draw_kills(counts, rng, rng.choice((1, 1, 2)))
        try:
            hits = killed_and_resumed(tmp_path / f"trial{trial}", kills)
            assert hits >= 1, f"{kills[0]} was never reached"
            assert_same_run(tmp_path / f"trial{trial}", want)
        except AssertionError as e:
            failures.append(f"{kills}: {str(e)[:300]}")
            tally("failures")
            continue
        tally("kill points", hits)
        for kill in kills[:hits]:
            tally(f"kill points at {kill.split(':')[0]}")
        tally("resumes matched")
    assert not failures, failures
