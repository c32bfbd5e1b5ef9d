"""Run ``resnetlab`` with a SIGKILL at a chosen point, or count the points a command passes.

    FAULT_KILL=KIND:PHASE:N:FRACTION python tests/faults/killer.py train ...
    FAULT_COUNTS=counts.json python tests/faults/killer.py train ...

Kill points are counted events, never a clock, so the same point is hit on any machine:

- ``step``: the Nth training step, after the optimizer moved the weights and before the
  loop counted the step;
- ``checkpoint``, ``model``, ``summary``, ``config``, ``metrics``, ``figure``: the Nth
  write of that kind of file through ``storage.atomic_write``, either torn after FRACTION of
  its bytes (``PHASE`` ``write``) or whole but not yet renamed into place (``rename``);
- ``row``: the Nth row appended to ``metrics.csv``, torn after FRACTION of its bytes.

With ``FAULT_COUNTS`` nothing is killed; the number of events of each kind is written to
that JSON file when the command ends.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path

import resnetlab.engine.report as report
import resnetlab.storage as storage
from resnetlab.cli import main
from resnetlab.engine.train import Trainer

KINDS = {
    "checkpoint.pt": "checkpoint",
    "last.safetensors": "model",
    "best.safetensors": "model",
    "summary.json": "summary",
    "config.json": "config",
    "metrics.csv": "metrics",
    "curves.png": "figure",
    "confusion.png": "figure",
}

counts: Counter = Counter()
spec = os.environ.get("FAULT_KILL")
kind, phase, nth, fraction = None, None, 0, 0.5
if spec:
    kind, phase, n, frac = spec.split(":")
    nth, fraction = int(n), float(frac)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def event(name: str, this_phase: str) -> bool:
    """Count an event; True when it is the one to kill at."""
    if this_phase == "write" or name in ("step", "row"):
        counts[name] += 1
    return name == kind and this_phase == phase and counts[name] == nth


class TornFile:
    """A file whose first write stops after ``fraction`` of its bytes, then the process dies."""

    def __init__(self, f) -> None:
        self.f = f

    def write(self, data) -> int:
        data = bytes(data) if not isinstance(data, str) else data
        self.f.write(data[: int(len(data) * fraction)])
        self.f.flush()
        os.fsync(self.f.fileno())
        die()

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


def storage_open(path, mode="r", *args, **kwargs):
    f = open(path, mode, *args, **kwargs)  # noqa: SIM115
    name = Path(path).name.removeprefix(".").removesuffix(".tmp")
    if "w" in mode and name in KINDS and event(KINDS[name], "write"):
        return TornFile(f)
    return f


real_replace = os.replace


def storage_replace(src, dst) -> None:
    name = Path(dst).name
    if name in KINDS and event(KINDS[name], "rename"):
        die()
    real_replace(src, dst)


class RowFile:
    """metrics.csv opened to append: each flush writes one row."""

    def __init__(self, f) -> None:
        self.f = f

    def write(self, data: str) -> int:
        if event("row", "write"):
            self.f.write(data[: int(len(data) * fraction)])
            self.f.flush()
            die()
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)


def report_open(path, mode="r", *args, **kwargs):
    f = open(path, mode, *args, **kwargs)  # noqa: SIM115
    return RowFile(f) if "a" in mode else f


real_step = Trainer._train_step


def step(self, x, y) -> None:
    real_step(self, x, y)
    if event("step", "write"):
        die()


storage.open = storage_open
storage.os = type(sys)("os_with_hooked_replace")
storage.os.__dict__.update(os.__dict__)
storage.os.replace = storage_replace
report.open = report_open
Trainer._train_step = step

if os.environ.get("FAULT_COUNTS"):
    atexit.register(lambda: Path(os.environ["FAULT_COUNTS"]).write_text(json.dumps(counts)))

if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.exit(code)
