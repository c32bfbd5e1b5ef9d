"""CPU training choices made by measuring the machine at hand, once, and remembered.

What trains fastest on a CPU depends on the CPU: on one 2-core machine ResNet-18's small
late feature maps ran 1.2x faster as matrix products and channels-last beat NCHW; on
another, with AVX-512 and bfloat16 instructions, oneDNN won on those maps and bf16
autocast made the whole step 1.6x to 1.9x faster. So the first CPU run of a workload (a
model at an input size and batch size, with its training options) times the candidates
on this machine and keeps the choice:

1. every convolution shape the model has, forward and backward, as ``nn.Conv2d``
   (oneDNN) and as a matrix product (``engine.cpu.MatmulConv2d``), where that is a
   candidate (1x1 kernels, and maps of up to ``MATMUL_MAX_PIXELS``);
2. the whole training step (``engine.step.TrainStep``, the run's optimizer) in each
   memory layout and, for ``--precision auto`` on a CPU with bf16 hardware, in float32
   and in bf16 autocast, each with the convolution paths of step 1 and, where those
   include matrix products, with oneDNN for every convolution: a path that wins alone
   may lose inside the model (other kernels, caches, layout changes between layers), so
   the whole step has the last word;
3. the chosen step on PyTorch's thread count and on halvings of it (``thread_counts``):
   a small step's many short operations can run faster on fewer threads;
4. before the steps, the optimizer's step on the model's parameters with PyTorch's
   foreach path (on a CPU, a loop of one pass over memory per arithmetic operation) and
   with its fused kernels (one pass per parameter, a parallel region each); the steps
   above run with the one chosen.

Candidates take turns, one call each per round (``REPEATS`` rounds for a convolution,
``STEP_REPEATS`` for the whole step, after one untimed call; calls shorter than
``MIN_INTERVAL``, as the optimizer's step, several to a round, the same number for each
candidate), and each is compared with the default round by round: the median of its
per-round time ratios to the default. A virtual machine's speed can drift by a third
within seconds (other guests, clocks), which moves every call of a round alike but two
rounds differently: the ratio within a round cancels it where a median of each
candidate's own times does not. The decision rule (``choose``) keeps the default unless
another candidate is faster by a margin: a convolution stays with oneDNN unless the
matrix product is ``CONV_MARGIN`` faster, and keeps the paths so chosen only while the
whole step with them is no slower than with oneDNN everywhere; the layout stays
channels-last unless NCHW is ``LAYOUT_MARGIN`` faster, the precision stays float32
unless bf16 is ``PRECISION_MARGIN`` faster, the optimizer stays foreach unless fused is
``OPTIMIZER_MARGIN`` faster, and the thread count stays PyTorch's unless fewer threads
are ``THREAD_MARGIN`` faster (``OMP_NUM_THREADS`` fixes it). Margins keep the decision
from flipping on noise, towards what PyTorch does by itself.

Timings are cached in ``<cache>/calibration/`` (``$RESNETLAB_CACHE``), one JSON file per
machine key: the CPU model, family and instruction sets (and those oneDNN is held to,
``ONEDNN_ISA_SETTINGS``), PyTorch's thread count, how its threads wait
(``OMP_WAIT_SETTINGS``), the torch version and ``CALIBRATION_VERSION``. A
change to any of them measures again; an unreadable file is reported and measured over.
The whole steps are kept with the convolution paths they ran (``_paths_key``): convolutions
measured again that choose other paths have the steps timed again.
Timings are kept with the CPU time other work took from this process's cores while they were
measured (``OtherWork``: other processes and, in a virtual machine, other guests; this
process's own threads do not count). Timings shared with ``CONTENDED`` cores' worth or more
of other work choose the defaults (``choose``) while the cores stay shared and are measured
again by the first run that finds them quiet (``quieter``): shared cores can make fewer
threads, or another plan, look faster than they are on the machine alone, and their noise
exceeds the margins. Where the counters cannot be read (not Linux),
timings are kept as measured.
``RESNETLAB_CALIBRATE=off`` measures nothing and trains with the defaults (float32,
channels-last, oneDNN everywhere), as do ``--compile`` runs (the compiler makes its own
choices). Calibration costs seconds to about a minute, once per workload: eight training
steps per candidate, at a batch cut down when one step would take long.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from .. import OMP_WAIT_SETTINGS
from ..data.cache import cache_unwritable
from ..data.decode import available_cpus
from ..errors import CacheWarning, SettingWarning, finite_number, option, warn
from .auto import count_of
from .config import TrainConfig
from .cpu import (
    ConvShape,
    conv_shapes,
    cpu_info,
    keep_freed_memory,
    to_matmul,
    use_matmul_convs,
)
from .distributed import DistInfo, broadcast_object
from .optim import build_optimizer
from .step import PRECISION_DTYPES, TrainStep, autocast, initial_model, resolve_channels_last
from .timing import time_interleaved

# The settings that hold oneDNN to fewer instruction sets than the CPU has (DNNL_ is the
# older name), which change the convolution kernels a calibration times.
ONEDNN_ISA_SETTINGS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
CALIBRATION_VERSION = 8  # bump when what is measured, or how, changes
REPEATS = 5  # rounds of a convolution's timing
STEP_REPEATS = 7  # rounds of the whole step, where candidates are often within 10%
# The shortest timed interval: calls shorter than this (the optimizer's step, about 1 ms for
# a small model; a convolution at a small map) are timed several to an interval. A call
# preempted by other work loses a time slice of a few ms; alone in an interval, a 1 ms
# call's ratios spanned 0.08 to 15 on a shared 2-core VM, and on a quiet one the optimizer's
# choice flipped. 50 ms dilutes one lost slice to under a tenth, the margins' size, and costs
# the optimizer's timing under a second; at most MAX_NUMBER calls to an interval.
MIN_INTERVAL = 0.05
MAX_NUMBER = 100
CONV_MARGIN = 0.10
LAYOUT_MARGIN = 0.05
PRECISION_MARGIN = 0.10
# Fewer threads need a clear win: on a VM whose speed drifts, two threads can time 10-20%
# slower than one for minutes (other guests), while one thread on quiet cores costs a
# large step a third of its speed; a small step that gains does so by 1.5x to 2x.
THREAD_MARGIN = 0.25
# Fused optimizer kernels measured 3x faster than foreach on a 2-core EPYC VM (ResNet-18's
# optimizer step 3.5 against 9.8 ms), where an earlier measurement on that kind of VM had
# found them no faster, and far slower while other work shared the cores.
OPTIMIZER_MARGIN = 0.10
KERNELS = ("foreach", "fused")  # the ways the optimizer can step
MAX_THREAD_COUNTS = 4  # PyTorch's thread count and up to three halvings of it
# The most arithmetic a timed step may do: a run with a larger batch is timed at a smaller
# one (a fixed number, not a measured time, so that the batch timed does not depend on how
# busy the machine was). About 0.1 to 0.3 s on one 2-core machine.
STEP_FLOPS_BUDGET = 40e9
BUSY_LOAD = 1.5  # load average per core above which a run's log says the CPU is busy
BUSY_NOTE = "the CPU is busy"  # how that line starts (``busy_note``), the same for every load
# Runs shorter than this many steps of the timed batch (``measured_from``) take the cached
# timings, or the defaults, and measure nothing: measuring costs about a hundred timed
# steps (the whole step of up to eight candidates over eight rounds, the thread counts, the
# convolutions), which a gain of a fifth repays over about 500.
MEASURE_MIN_STEPS = 500
CONTENDED = 0.25  # cores' worth of other work from which timings keep the defaults (redone quiet)
PROBE_SECONDS = 0.5  # how long a run watches the cores before redoing shared timings
PATHS = ("onednn", "matmul")  # the ways a convolution can run
ENV = "RESNETLAB_CALIBRATE"
CPU = torch.device("cpu")

Calls = Mapping[str, Callable[[], object]]
# (what is timed: its key in the cache, the calls, rounds) -> seconds per call of each
Measure = Callable[[str, Calls, int], dict[str, list[float]]]


def measure_in_turns(what: str, calls: Calls, rounds: int = REPEATS) -> dict[str, list[float]]:
    """``rounds`` rounds of each call, after one untimed call each (first calls build
    oneDNN's kernels and allocate), in seconds per call: calls shorter than
    ``MIN_INTERVAL`` are timed several to a round (``time_interleaved``). Every timing of
    the calibration goes through here (tests replace it with fixed timings)."""
    return time_interleaved(calls, rounds, min_interval=MIN_INTERVAL, max_number=MAX_NUMBER)


def choose(
    timings: Mapping[str, Sequence[float]],
    default: str,
    margin: float,
    *,
    others: float | None = None,
) -> str:
    """The candidate to use, given each one's seconds per round (``relative``).

    The default unless another candidate's time relative to it is below ``1 - margin``;
    then the one with the lowest (the first listed among equals). Candidates without a
    finite timing are out; without the default, the first candidate is the default.
    Timings shared with ``others`` cores' worth of other work (``contended``) keep the
    default: there a call may wait a time slice for a thread that another process holds,
    or may not, and a call timed against itself the same way came out faster by more
    than the margins (README: Speed).
    """
    finite = {name: v for name, v in timings.items() if any(math.isfinite(t) for t in v)}
    if not finite:
        raise ValueError("no candidate has a finite timing")
    if default not in finite:
        default = next(iter(finite))
    if contended(others):
        return default
    ratios = relative(finite, default)
    best = min(ratios, key=ratios.__getitem__)
    return best if ratios[best] < 1 - margin else default


def relative(timings: Mapping[str, Sequence[float]], default: str) -> dict[str, float]:
    """Each candidate's time as a fraction of the default's: the median, over the rounds
    where both have a finite timing, of the ratio within the round. The calls of a round
    ran one after another, so a change in the machine's speed between rounds falls on
    both sides of each ratio. Candidates that share no such round with the default are
    left out."""
    base = timings[default]
    ratios = {}
    for name, values in timings.items():
        pairs = [
            t / b
            for t, b in zip(values, base, strict=False)
            if math.isfinite(t) and math.isfinite(b) and b > 0
        ]
        if pairs:
            ratios[name] = statistics.median(pairs)
    return ratios


@dataclass(frozen=True)
class Candidate:
    """A way to run the whole step: a precision, a memory layout, and the convolution
    paths: those chosen shape by shape, or ``onednn_only``."""

    precision: str  # fp32, bf16 or fp16
    channels_last: bool
    onednn_only: bool = False

    @property
    def name(self) -> str:
        layout = "channels-last" if self.channels_last else "NCHW"
        return f"{self.precision} {layout}" + (" oneDNN-only" if self.onednn_only else "")

    @property
    def per_shape(self) -> Candidate:
        """The same precision and layout with the convolution paths chosen shape by shape."""
        return replace(self, onednn_only=False)

    @classmethod
    def parse(cls, name: str) -> Candidate:
        precision, layout, *paths = name.split(" ")
        return cls(precision, layout == "channels-last", paths == ["oneDNN-only"])


def decide(steps: Mapping[str, Sequence[float]], others: float | None = None) -> Candidate:
    """The precision, layout and convolution paths to train with, from step timings keyed
    by ``Candidate.name``, taken beside ``others`` cores' worth of other work (``choose``).

    First the paths per precision and layout (the shape-by-shape choice unless oneDNN
    everywhere is faster), then the layout per precision (channels-last unless NCHW wins
    by ``LAYOUT_MARGIN``), then the precision between the winners (float32 unless another
    wins by ``PRECISION_MARGIN``). Beside other work, the defaults: float32,
    channels-last, and oneDNN everywhere where that was timed (the whole step cannot
    check the matrix products there).
    """
    by_way: dict[tuple[str, bool], dict[str, Sequence[float]]] = {}
    for name, values in steps.items():
        c = Candidate.parse(name)
        by_way.setdefault((c.precision, c.channels_last), {})[name] = values

    def path_default(way: tuple[str, bool], names: Collection[str]) -> str:
        only = Candidate(*way, onednn_only=True).name
        return only if contended(others) and only in names else Candidate(*way).name

    paths = {
        way: choose(names, path_default(way, names), 0.0, others=others)
        for way, names in by_way.items()
    }
    by_precision: dict[str, dict[str, Sequence[float]]] = {}
    for (precision, _), name in paths.items():
        by_precision.setdefault(precision, {})[name] = steps[name]
    winners = {
        precision: choose(layouts, paths.get((precision, True), ""), LAYOUT_MARGIN, others=others)
        for precision, layouts in by_precision.items()
    }
    finalists = {name: steps[name] for name in winners.values()}
    default = winners.get("fp32", next(iter(finalists)))
    return Candidate.parse(choose(finalists, default, PRECISION_MARGIN, others=others))


def matmul_paths(convs: Mapping[str, Mapping[str, Any]]) -> frozenset[str]:
    """The convolution shapes whose matrix-product timing beats oneDNN's by ``CONV_MARGIN``
    (not where taken beside other work: each shape's ``others``)."""
    return frozenset(
        shape
        for shape, paths in convs.items()
        if choose({p: paths[p] for p in PATHS}, "onednn", CONV_MARGIN, others=paths.get("others"))
        == "matmul"
    )


def machine_key() -> dict[str, Any]:
    """What a CPU calibration holds for: a change to any of it measures again."""
    info = cpu_info()
    return {
        "cpu": info["model"],
        "family": info["family"],
        "capability": info["capability"],
        "bf16": info["bf16"],
        "amx": info["amx"],
        "threads": torch.get_num_threads(),
        # Spinning or passive waiting moves the thread count that wins (README: Speed).
        "omp_wait": {name: os.environ.get(name) for name in OMP_WAIT_SETTINGS},
        # oneDNN kept below the CPU's instruction sets (no AMX, no AVX-512): other kernels.
        "onednn_isa": {name: os.environ.get(name) for name in ONEDNN_ISA_SETTINGS},
        "torch": torch.__version__,
        "version": CALIBRATION_VERSION,
    }


class CalibrationStore:
    """The cached timings of one machine key: a JSON file under ``<cache>/calibration``."""

    SECTIONS = ("optimizer", "convs", "steps", "matmul")

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        from ..data.cache import cache_root

        self.key = machine_key()
        digest = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:12]
        slug = re.sub(r"[^a-z0-9]+", "-", self.key["cpu"].lower()).strip("-") or "cpu"
        # The folder a warning names where it cannot be written: the cache's, by default.
        self.cache = Path(folder) if folder is not None else cache_root()
        root = self.cache if folder is not None else self.cache / "calibration"
        self.path = root / f"{slug}-{self.key['threads']}t-{digest}.json"
        self.data = self._read(warn_unreadable=True)
        self.changed = False
        self._savable: bool | None = None
        self.unsaved: str | None = None  # why the last save could not write the file

    def savable(self) -> bool:
        """Whether what is measured can be saved here (the folder made, a file written in
        it): the run says "then cached" only where it will be."""
        if self._savable is None:
            from ..storage import WriteError, check_writable

            try:
                check_writable(self.path, self.path.parent)
                self._savable = True
            except WriteError:
                self._savable = False
        return self._savable

    def _read(self, *, warn_unreadable: bool) -> dict[str, Any]:
        empty: dict[str, Any] = {section: {} for section in self.SECTIONS}
        try:
            data = json.loads(self.path.read_text())
            if isinstance(data, dict):  # a section added since the file was written: empty
                data = {**empty, **data}
            if not (isinstance(data, dict) and all(isinstance(data[s], dict) for s in empty)):
                raise ValueError("not a calibration file")
        except (FileNotFoundError, NotADirectoryError):  # none yet, or no cache folder
            return empty
        except (OSError, ValueError) as e:
            if warn_unreadable and ("read", self.path) not in _WARNED:  # once a process
                _WARNED.add(("read", self.path))
                reason = e.msg if isinstance(e, json.JSONDecodeError) else str(e)
                warn(
                    f"ignoring the unreadable CPU calibration {self.path} ({reason}); "
                    "measuring again",
                    CacheWarning,
                )
            return empty
        return data if data.get("key") == self.key else empty

    def get(self, section: str, key: str) -> Any:
        return self.data[section].get(key)

    def timings(self, section: str, key: str, names: Sequence[str]) -> dict[str, list] | None:
        """The cached timings of ``names`` under ``key``, or None when any is missing or
        is not a list of positive numbers, or its ``others`` (cores' worth of other work
        when measured) is not a number from 0; an entry from an edited or damaged file is
        measured again."""
        entry = self.get(section, key)
        if not isinstance(entry, dict):
            return None
        for name in names:
            values = entry.get(name)
            if not (isinstance(values, list) and values and all(map(finite_number, values))):
                return None
            if not all(v > 0 for v in values):
                return None
        if "others" in entry and not (finite_number(entry["others"]) and entry["others"] >= 0):
            return None
        return entry

    def put(self, section: str, key: str, value: Any) -> None:
        self.data[section][key] = value
        self.changed = True

    def save(self) -> None:
        """Write what was measured, merged with what other processes wrote meanwhile."""
        if not self.changed:
            return
        merged = self._read(warn_unreadable=False)
        for section in self.SECTIONS:
            merged[section].update(self.data[section])
        merged["key"] = self.key
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(merged, indent=1) + "\n")
            os.replace(tmp, self.path)
            self.unsaved = None
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            self.unsaved = e.strerror or str(e)
            cache_unwritable(self.cache, e)  # once a process, not once a section
        self.changed = False


# What this process has warned about, once each: calibration files it could not read
# (("read", path)) and RESNETLAB_CALIBRATE values ((ENV, value)); a cache folder it could
# not write to is said by cache_unwritable.
_WARNED: set[tuple[str, Path | str]] = set()


def cpu_matmul_tflops(
    precision: str = "fp32", store: CalibrationStore | None = None, *, force: bool = False
) -> float | None:
    """This CPU's rate on a 2048 x 2048 matrix product in ``precision``, in TFLOP/s.

    The best of ``REPEATS * 3`` timed products at PyTorch's thread count, measured once per
    machine key and cached (``force``: measured again): the ceiling a training step's rate
    is put against. None for a precision the CPU has no instructions for (bf16 without
    AVX512_BF16 or AMX, fp16): emulated, it has no hardware ceiling, and timing it would
    take minutes.
    """
    if precision != "fp32" and not (precision == "bf16" and cpu_info()["bf16"]):
        return None
    n = 2048

    def calls() -> Calls:
        dtype = PRECISION_DTYPES[precision] or torch.float32
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        return {"matmul": lambda: a @ b}

    store = store or CalibrationStore()
    timings, _ = _cached(
        store, "matmul", precision, ["matmul"], calls, measure_in_turns, force, REPEATS * 3
    )
    store.save()
    return 2 * n**3 / min(timings["matmul"]) / 1e12


def synthetic_batch(
    batch_size: int,
    size: int,
    classes: int,
    device: torch.device = CPU,
    channels_last: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random batch (seeded, the global RNG untouched) in the loader's layout."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 3, size, size, generator=generator).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch_size,), generator=generator).to(device)
    return x, y


def step_flops(config: TrainConfig, num_classes: int, input_size: int) -> int:
    """FLOPs of one training step per image, counted on the meta device (no arithmetic)."""
    from ..analysis.summary import training_flops

    with torch.device("meta"), torch.random.fork_rng(devices=[]):
        model = initial_model(config, num_classes, input_size)
    return training_flops(model, input_size)


@dataclass
class CpuPlan:
    """How a CPU training run goes: precision, layout, convolution paths, and why."""

    precision: str = "fp32"
    channels_last: bool = True
    matmul_convs: frozenset[str] = frozenset()
    onednn_only: bool = False  # shapes chose matrix products, the whole step oneDNN
    fused_optimizer: bool = False  # PyTorch's fused optimizer kernels, not foreach
    how: str = "default"  # measured now, from the cache, or why nothing was measured
    workload: str = ""
    batch: int | None = None  # the batch the step timings ran at
    steps: dict[str, list[float]] = field(default_factory=dict)  # Candidate.name -> seconds
    others: float | None = None  # cores' worth of other work while the steps were timed
    threads: int | None = None  # fewer threads than PyTorch's, where they were faster
    thread_steps: dict[str, list[float]] = field(default_factory=dict)  # threads_name -> s
    thread_others: float | None = None  # other work while the thread counts were timed
    optimizer_steps: dict[str, list[float]] = field(default_factory=dict)  # KERNELS -> s
    convs: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # chosen candidate's
    counts: dict[str, int] = field(default_factory=dict)  # shape key -> convolutions of it
    machine: dict[str, Any] = field(default_factory=dict)
    cache: str | None = None
    unsaved: str | None = None  # why what was measured could not be written to ``cache``

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return PRECISION_DTYPES[self.precision]

    @property
    def candidate(self) -> Candidate:
        return Candidate(self.precision, self.channels_last, self.onednn_only)

    def describe(self) -> str:
        """One line for the run's log."""
        text = "bf16 autocast" if self.precision == "bf16" else self.precision
        text = f"CPU plan: {text}, {self.candidate.name.split(' ')[1]}"
        if self.onednn_only:
            text += ", oneDNN for every convolution (faster in the whole step)"
        elif self.counts:
            text += (
                f", matrix-product path for {len(self.matmul_convs)} of "
                f"{len(self.counts)} convolution shapes"
            )
        if self.fused_optimizer:
            text += ", fused optimizer"
        if self.threads is not None:
            text += f", {threads_name(self.threads)} of {self.machine.get('threads', '?')}"
        return f"{text} ({self.how})"

    def explain(self) -> list[str]:
        """What was chosen and the timings behind it."""
        m = self.machine
        lines = [self.describe()]
        if m:
            bf16 = "bf16 hardware" if m.get("bf16") else "no bf16 hardware"
            lines.append(
                f"  {self.workload} on {m['cpu']} ({m['capability']}, {bf16}), "
                f"{m['threads']} thread{'s' if m['threads'] != 1 else ''}, torch {m['torch']}; "
                + (
                    f"not saved to {self.cache} ({self.unsaved}): the next run measures again"
                    if self.unsaved
                    else f"cache {self.cache}"
                )
            )
        if len(self.steps) > 1:
            shared = ""
            if self.others is not None:
                note = (
                    ": the defaults kept, to be measured again when quiet"
                    if contended(self.others)
                    else ""
                )
                shared = f" (other work {self.others:.2f} cores{note})"
            first = next(iter(self.steps))
            rounds = len(self.steps[first])
            lines.append(
                f"  training step at batch {self.batch}: median ms of {rounds} rounds, and time "
                f"relative to {first} round by round{shared}; NCHW needs {LAYOUT_MARGIN:.0%} over "
                f"channels-last, bf16 {PRECISION_MARGIN:.0%} over fp32, oneDNN-only is taken "
                "when faster:"
            )
            lines += _timing_rows(self.steps, self.candidate.name)
        if self.thread_steps:
            first = next(iter(self.thread_steps))
            shared = ""
            if contended(self.thread_others):
                shared = (
                    f" (other work {self.thread_others:.2f} cores: {first} kept, to be "
                    "measured again when quiet)"
                )
            lines.append(
                f"  the chosen step on fewer threads: median ms, and time relative to {first} "
                f"round by round; fewer threads need {THREAD_MARGIN:.0%}{shared}:"
            )
            chosen = threads_name(self.threads) if self.threads is not None else first
            lines += _timing_rows(self.thread_steps, chosen)
        if self.optimizer_steps:
            lines.append(
                "  the optimizer's step: median ms, and time relative to foreach round by "
                f"round; fused needs {OPTIMIZER_MARGIN:.0%}:"
            )
            chosen = KERNELS[self.fused_optimizer]
            lines += _timing_rows(self.optimizer_steps, chosen, digits=2)
        if self.convs:
            lines.append(
                f"  convolutions in {self.candidate.per_shape.name}, forward and backward: "
                "median ms of oneDNN and of the matrix product, and the product's time "
                f"relative to oneDNN's round by round, which decides (it needs {CONV_MARGIN:.0%} "
                "less):"
            )
            for shape, paths in self.convs.items():
                onednn, matmul = (statistics.median(paths[p]) * 1e3 for p in ("onednn", "matmul"))
                ratio = relative({p: paths[p] for p in PATHS}, "onednn").get("matmul", math.nan)
                pick = "matrix product" if shape in self.matmul_convs else "oneDNN"
                if contended(paths.get("others")):
                    pick = "oneDNN (timed beside other work)"
                elif self.onednn_only and shape in matmul_paths({shape: paths}):
                    pick = "oneDNN (the matrix product won alone, lost in the whole step)"
                    if contended(self.others):
                        pick = "oneDNN (the whole step was timed beside other work)"
                lines.append(
                    f"    {shape:<32} x{self.counts.get(shape, 1):<2} "
                    f"{onednn:8.2f} {matmul:8.2f} {ratio:6.2f}  -> {pick}"
                )
        return lines

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["matmul_convs"] = sorted(self.matmul_convs)
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> CpuPlan:
        return cls(**{**record, "matmul_convs": frozenset(record.get("matmul_convs", ()))})


def _timing_rows(timings: Mapping[str, Sequence[float]], chosen: str, digits: int = 1) -> list[str]:
    """A line per candidate: its median ms, and its time relative to the first's round by
    round (``relative``), the chosen one marked."""
    ratios = relative(timings, next(iter(timings)))
    rows = []
    for name, values in timings.items():
        mark = "  <- chosen" if name == chosen else ""
        ms = statistics.median(values) * 1e3
        rows.append(f"    {name:<32} {ms:8.{digits}f} {ratios.get(name, math.nan):6.2f}{mark}")
    return rows


def speed_lines(plan: CpuPlan | None, device: str, *, detailed: bool) -> list[str]:
    """What a run's log says of its speed choices: the plan in one line, or ``detailed``
    with the timings behind it; where nothing was calibrated, only ``detailed`` says so."""
    if plan is None:
        return [f"speed on {device}: fixed choices (only CPUs are calibrated)"] if detailed else []
    if detailed:
        return plan.explain()
    shows = f"; {option('explain_speed', True)} shows the timings"
    return [plan.describe() + (shows if plan.steps else "")]


def plan_cpu(
    config: TrainConfig,
    *,
    num_classes: int,
    input_size: int,
    dist: DistInfo | None = None,
    force: bool = False,
    measure: Measure | None = None,
    store: CalibrationStore | None = None,
    run_steps: int | None = None,
    step_images: int | None = None,
) -> CpuPlan:
    """The plan for training ``config`` on this CPU: from the cache, or measured now.

    Args:
        config: the run (model, batch size, optimizer; ``precision`` and ``channels_last``
            fix those choices when named).
        num_classes, input_size: of the model as the run builds it.
        dist: under torchrun, rank 0 decides for every process.
        force: measure again even where the cache has timings.
        measure: times a set of calls (``measure_in_turns``; tests pass fixed timings).
        store: the cache (default: this machine's file in the cache folder).
        run_steps: the training steps of the run; one of fewer than ``measured_from`` takes
            what the cache holds and measures nothing (the defaults where the cache lacks
            timings): measuring costs about a hundred timed steps.
        step_images: the images each of those steps trains, where fewer than the batch (a
            batch larger than the data: one step over all of it).
    """
    candidates = _candidates(config)
    default = CpuPlan(candidates[0].precision, resolve_channels_last(config.channels_last, CPU))
    skip = (
        f"not calibrated: {ENV}=off"
        if calibration_off()
        else "not calibrated: --compile chooses its own kernels"
        if config.compile
        else None
    )
    if skip is not None:
        default.how = skip
        return default
    dist = dist or DistInfo()
    plan = None
    _ANNOUNCED.clear()
    _QUIET_NOW.clear()
    if dist.is_main:
        with torch.random.fork_rng(devices=[]):  # a run draws the same numbers either way
            store = store or CalibrationStore()
            measure = measure or measure_in_turns
            batch = _calibration_batch(config, num_classes, input_size)
            step = min(config.batch_size, step_images or config.batch_size)
            least = measured_from(step, batch)
            if run_steps is not None and run_steps < least:
                measure = _cache_only
            try:
                plan = _calibrate(
                    config, num_classes, input_size, candidates, store, measure, force, batch
                )
            except _Unmeasured:
                at = f"batch {step:,}" if step == config.batch_size else f"{step:,} images a step"
                default.how = (
                    f"not calibrated: a run of {count_of(run_steps or 0, 'step')} would spend "
                    f"longer measuring than training; runs of {least:,} steps or more (at "
                    f"{at}) measure the CPU, once"
                )
                plan = default
    return broadcast_object(plan, dist)


def measured_from(batch_size: int, timed_batch: int) -> int:
    """The fewest steps of ``batch_size`` images for which a run measures the CPU: those
    that do the arithmetic of ``MEASURE_MIN_STEPS`` steps of the ``timed_batch`` that
    calibration times (smaller for heavy steps: ``_calibration_batch``). A fine-tuning run of
    ResNet-50 at 224 px, timed at 8 images a step, measures from 125 steps of 32."""
    return math.ceil(MEASURE_MIN_STEPS * timed_batch / batch_size)


class _Unmeasured(Exception):
    """Timings a short run needed that the cache does not hold."""


def _cache_only(what: str, calls: Calls, rounds: int) -> dict[str, list[float]]:
    """The ``Measure`` of a run too short to measure the CPU: timings come from the cache
    or not at all (``_cached`` stops before calling it)."""
    raise _Unmeasured(what)


def _candidates(config: TrainConfig) -> list[Candidate]:
    """fp32 first (the default), then bf16 for ``auto`` on bf16 hardware; both layouts,
    channels-last first, unless the config names one."""
    if config.precision != "auto":
        precisions = [config.precision]
    else:
        precisions = ["fp32"] + (["bf16"] if cpu_info()["bf16"] else [])
    layouts = [config.channels_last] if config.channels_last is not None else [True, False]
    return [Candidate(p, cl) for p in precisions for cl in layouts]


def _calibrate(
    config: TrainConfig,
    num_classes: int,
    input_size: int,
    candidates: list[Candidate],
    store: CalibrationStore,
    measure: Measure,
    force: bool,
    batch: int,
) -> CpuPlan:
    """``batch``: the images of a timed step (``_calibration_batch``)."""
    keep_freed_memory()  # timed as training runs (`bench calibrate` builds no training)
    probe = initial_model(config, num_classes, input_size)
    counts = Counter(shape for shape in conv_shapes(probe, input_size).values())
    shapes = [shape for shape in counts if shape.matmul_candidate]
    options = json.dumps(config.model_kwargs, sort_keys=True) if config.model_kwargs else ""
    workload = (
        f"{config.model}{options} at {input_size}x{input_size}, batch {config.batch_size}, "
        f"{num_classes} classes"
    )
    try:  # what was measured is kept, also when Ctrl-C stops a later part
        kernel_key = f"{config.model}{options}, {num_classes} classes, {_optimizer_key(config)}"
        fused, optimizer_steps, fresh = _calibrate_optimizer(
            store, measure, force, kernel_key, partial(_optimizer_calls, probe, config)
        )
        convs, new = _calibrate_convs(store, measure, force, candidates, shapes, batch)
        fresh = fresh or new
        matmul = {name: matmul_paths(timings) for name, timings in convs.items()}
        ways = [
            way
            for c in candidates
            for way in ([c, replace(c, onednn_only=True)] if matmul[c.name] else [c])
        ]
        step_call = partial(
            _step_call, config, num_classes, input_size, matmul=matmul, batch=batch, fused=fused
        )
        key = (
            f"{workload}, {_optimizer_key(config)}{', fused' if fused else ''}, b{batch}"
            f"{_paths_key(matmul)}"
        )
        steps, others, new = _calibrate_steps(store, measure, force, key, ways, step_call)
        chosen = decide(steps, others) if steps else ways[0]
        base = chosen.per_shape.name
        threads, thread_steps, thread_others, new_threads = _calibrate_threads(
            store, measure, force, f"{key}, {chosen.name}", partial(step_call, chosen)
        )
        fresh = fresh or new or new_threads
    finally:
        store.save()
    return CpuPlan(
        precision=chosen.precision,
        channels_last=chosen.channels_last,
        matmul_convs=frozenset() if chosen.onednn_only else matmul[base],
        onednn_only=chosen.onednn_only,
        fused_optimizer=fused,
        how="measured now" if fresh else "from the cache",
        workload=workload,
        batch=batch,
        steps=steps,
        others=others,
        threads=threads,
        thread_steps=thread_steps,
        thread_others=thread_others,
        optimizer_steps=optimizer_steps,
        convs=convs[base],
        counts={shape.key: n for shape, n in counts.items() if shape.matmul_candidate},
        machine=store.key,
        cache=str(store.path),
        unsaved=store.unsaved,
    )


def thread_counts(threads: int) -> list[int]:
    """The thread counts a run may train with: PyTorch's, then halvings of it down to one
    (``MAX_THREAD_COUNTS`` at most: 2 -> [2, 1], 16 -> [16, 8, 4, 2])."""
    counts = [threads]
    while counts[-1] > 1 and len(counts) < MAX_THREAD_COUNTS:
        counts.append(counts[-1] // 2)
    return counts


def threads_name(n: int) -> str:
    return f"{n} thread{'s' if n != 1 else ''}"


def _calibrate_convs(
    store: CalibrationStore,
    measure: Measure,
    force: bool,
    candidates: list[Candidate],
    shapes: list[ConvShape],
    batch: int,
) -> tuple[dict[str, dict[str, dict[str, list[float]]]], bool]:
    """Each candidate's timings of each conv shape through each of ``PATHS``, and whether
    any were measured now."""
    fresh = False
    convs: dict[str, dict[str, dict[str, list[float]]]] = {}
    for candidate in candidates:
        convs[candidate.name] = {}
        for shape in shapes:
            key = f"{candidate.name} b{batch} {shape.key}"
            calls = partial(_conv_calls, shape, candidate, batch)
            timings, new = _cached(store, "convs", key, PATHS, calls, measure, force, REPEATS)
            convs[candidate.name][shape.key], fresh = timings, fresh or new
    return convs, fresh


def _paths_key(matmul: Mapping[str, frozenset[str]]) -> str:
    """The convolution paths the steps are timed with, for their cache key: convolutions
    measured again since (beside other work before, quiet now; or forced for another
    workload of the same shapes) can choose other paths, and steps timed with the former
    ones would then judge a plan they never ran."""
    chosen = {name: sorted(shapes) for name, shapes in matmul.items() if shapes}
    if not chosen:
        return ""
    digest = hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:8]
    return f", matrix products {digest}"


def _optimizer_key(config: TrainConfig) -> str:
    """The optimizer's settings that change its arithmetic: ``sgd m0.9 nesterov wd``."""
    if config.optimizer != "sgd":
        return config.optimizer
    nesterov = " nesterov" if config.nesterov and config.momentum else ""
    return f"sgd m{config.momentum:g}{nesterov}{' wd' if config.weight_decay else ''}"


def _calibrate_optimizer(
    store: CalibrationStore,
    measure: Measure,
    force: bool,
    key: str,
    calls: Callable[[], Calls],
) -> tuple[bool, dict[str, list[float]], bool]:
    """Whether the optimizer runs PyTorch's fused kernels, the timings behind it, and
    whether they were measured now."""
    cached, new = _cached(store, "optimizer", key, KERNELS, calls, measure, force, STEP_REPEATS)
    timings = {name: cached[name] for name in KERNELS}
    others = cached.get("others")
    return choose(timings, "foreach", OPTIMIZER_MARGIN, others=others) == "fused", timings, new


def _optimizer_calls(model: torch.nn.Module, config: TrainConfig) -> Calls:
    """The optimizer's step over ``model``'s parameters, each way of ``KERNELS``, with
    gradients in place (both update the same parameters: only the time matters)."""
    generator = torch.Generator().manual_seed(0)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=generator)
    return {
        kernel: build_optimizer(model, config, CPU, fused=kernel == "fused").step
        for kernel in KERNELS
    }


def _calibrate_steps(
    store: CalibrationStore,
    measure: Measure,
    force: bool,
    key: str,
    ways: list[Candidate],
    step_call: Callable[[Candidate], Callable[[], None]],
) -> tuple[dict[str, list[float]], float | None, bool]:
    """The step timings of each way, the other work while they were measured, and whether
    they were measured now; nothing is timed when there is only one way."""
    if len(ways) < 2:
        return {}, None, False
    names = [way.name for way in ways]

    def calls() -> Calls:
        return {way.name: step_call(way) for way in ways}

    cached, new = _cached(store, "steps", key, names, calls, measure, force, STEP_REPEATS)
    return {name: cached[name] for name in names}, cached.get("others"), new


def _calibrate_threads(
    store: CalibrationStore,
    measure: Measure,
    force: bool,
    key: str,
    step_call: Callable[[], Callable[[], None]],
) -> tuple[int | None, dict[str, list[float]], float | None, bool]:
    """The thread count to train with (None: PyTorch's own), the step timings behind it,
    the other work while they were measured, and whether they were measured now.

    Small steps (a CIFAR net at a small batch) can run faster on fewer threads: each of a
    step's many small operations waits for every thread. The chosen step is timed at each of
    ``thread_counts``; fewer threads are taken where ``THREAD_MARGIN`` faster (never more
    than PyTorch's count, which ``torch.set_num_threads`` may have lowered). Not where
    ``OMP_NUM_THREADS`` sets the count: that is kept. Nor from timings taken beside other
    work (``contended``): there fewer threads win because another job holds cores, which
    it gives back later, and one thread on quiet cores costs more than two on shared ones;
    PyTorch's count is kept until a quiet run measures again. While a run trains, its
    ``engine.threads.ThreadWatch`` follows the other work of the moment.
    """
    threads = torch.get_num_threads()
    if not threads_free() or threads == 1:
        return None, {}, None, False
    counts = thread_counts(threads)
    names = [threads_name(n) for n in counts]

    def calls() -> Calls:
        step = step_call()

        def at(n: int) -> Callable[[], None]:
            def call() -> None:
                torch.set_num_threads(n)
                step()

            return call

        return {threads_name(n): at(n) for n in counts}

    try:
        cached, new = _cached(
            store, "steps", f"{key}, threads", names, calls, measure, force, STEP_REPEATS
        )
    finally:
        torch.set_num_threads(threads)
    timings, others = {name: cached[name] for name in names}, cached.get("others")
    best = counts[names.index(choose(timings, names[0], THREAD_MARGIN, others=others))]
    return (best if best != threads else None), timings, others, new


def calibration_off() -> bool:
    """Whether ``RESNETLAB_CALIBRATE`` turns the calibration off; a value that neither turns
    it off nor leaves it on is warned about (once), and leaves it on."""
    value = os.environ.get(ENV, "").strip().lower()
    if value in ("off", "0", "no", "false"):
        return True
    if value not in ("", "on", "1", "yes", "true") and (ENV, value) not in _WARNED:
        _WARNED.add((ENV, value))
        warn(
            f"{ENV}={os.environ[ENV]!r} is neither off nor on; calibrating (set it to off "
            "to train with the defaults)",
            SettingWarning,
        )
    return False


def threads_free() -> bool:
    """Whether the calibration may train on fewer threads than PyTorch's count: not where
    ``OMP_NUM_THREADS`` sets it (a positive number, or a list of them, one per nesting
    level; OpenMP ignores any other value, with a message of its own, and so does this)."""
    first = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return not (first.isdigit() and int(first) > 0)


@contextlib.contextmanager
def cpu_threads(plan: CpuPlan | None) -> Iterator[None]:
    """The plan's thread count inside (where it chose one), PyTorch's before it after (which
    a run's ``ThreadWatch`` may also have moved)."""
    before = torch.get_num_threads()
    if plan is not None and plan.threads is not None:
        torch.set_num_threads(plan.threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _cached(
    store: CalibrationStore,
    section: str,
    key: str,
    names: Sequence[str],
    calls: Callable[[], Calls],
    measure: Measure,
    force: bool,
    rounds: int,
) -> tuple[dict[str, Any], bool]:
    """The timings of ``names`` under ``key``, from the cache or measured now (and cached),
    with the cores' worth of other work while they were measured (``others``, where it can
    be read); and whether they were measured now.

    Timings shared with other work (``contended``) are measured again by the first run that
    finds the cores quiet (``quieter``): they may be far from what the machine does alone.
    """
    cached = None if force else store.timings(section, key, names)
    if cached is not None and (
        measure is _cache_only or not quieter(_others_now, than=cached.get("others"))
    ):
        return cached, False
    if measure is _cache_only:
        raise _Unmeasured(section)  # before saying that the CPU is being measured
    to_time = calls()
    again = cached is not None
    kept = store.savable()
    asked = force and store.timings(section, key, names) is not None  # not the first time
    with _measuring(section, logged=section in _ANNOUNCED, again=again, asked=asked, kept=kept):
        watch = OtherWork()
        timings: dict[str, Any] = measure(key, to_time, rounds)
        others = watch.cores()
    if others is not None:
        timings["others"] = round(others, 3)
    _ANNOUNCED.add(section)
    store.put(section, key, timings)
    return timings, True


@contextlib.contextmanager
def _measuring(
    section: str,
    *,
    logged: bool = False,
    again: bool = False,
    asked: bool = False,
    kept: bool = True,
) -> Iterator[None]:
    """What the run is doing while the CPU is measured (the first run of a model on a
    machine spends some seconds to a minute here before its first line): a spinner on an
    interactive terminal, the same words as one line in a log (not again once ``logged``:
    a model's convolution shapes are measured one after another). ``again``: cached
    timings taken beside other work are measured anew; ``asked``: measured again as asked
    (``force``), whatever the cache holds; not ``kept``: the cache cannot be written, and the
    next run measures again."""
    what = {
        "convs": "convolutions to choose the fastest",
        "steps": "training steps to choose the fastest",
        "optimizer": "optimizer kernels to choose the fastest",
        "matmul": "matrix-product rate",
    }[section]
    kept_or_not = "then cached" if kept else "for this run only: the cache cannot be written"
    message = f"measuring this CPU's {what} " + (
        f"again, as asked ({kept_or_not})"
        if asked
        else "again (the cached timings were taken beside other work, which has gone)"
        if again
        else "(once; then cached)"
        if kept
        else f"({kept_or_not})"
    )
    if not sys.stderr.isatty():
        if not logged:
            print(message, file=sys.stderr, flush=True)
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(message):
        yield


# What the log has said is being measured (``CalibrationStore.SECTIONS``), since the start
# of the last plan: each once.
_ANNOUNCED: set[str] = set()


def busy(load: float) -> bool:
    """Whether a 1-minute load average means other work competes for the cores: above
    ``BUSY_LOAD`` per core (a run's own threads count up to one per core)."""
    return load > BUSY_LOAD * available_cpus()


def contended(others: float | None) -> bool:
    """Whether timings shared the cores with ``others`` cores' worth of other work
    (``CONTENDED`` or more; None: not known, taken as quiet)."""
    return others is not None and others >= CONTENDED


def quieter(now: Callable[[], float | None], *, than: float | None) -> bool:
    """Whether timings measured with ``than`` cores' worth of other work are to be measured
    again: they were shared (``contended``), and the cores are quiet ``now`` (less than half
    ``CONTENDED``, so that other work hovering at the line does not measure, and perhaps
    change the plan, at every run). ``now`` is called only for shared timings: it watches
    the cores for ``PROBE_SECONDS``."""
    if not contended(than):
        return False
    others = now()
    return others is not None and others < CONTENDED / 2


class OtherWork:
    """The CPU time that other work took from the cores this process may run on, from when
    it is made to each ``cores()``, in cores' worth (1.0: one core busy throughout):
    every process but this one and its children, and in a virtual machine the time other
    guests took (steal). None where the counters cannot be read (``/proc/stat``: Linux
    only)."""

    def __init__(self) -> None:
        self.start = _cpu_counters()

    def cores(self) -> float | None:
        end = _cpu_counters()
        if self.start is None or end is None:
            return None
        (busy0, own0, wall0), (busy1, own1, wall1) = self.start, end
        if wall1 <= wall0:
            return 0.0
        return max(0.0, (busy1 - busy0 - (own1 - own0)) / (wall1 - wall0))


def _others_now() -> float | None:
    """The other work on this process's cores now, watched for ``PROBE_SECONDS`` while this
    process waits (once per plan)."""
    if not _QUIET_NOW:
        watch = OtherWork()
        time.sleep(PROBE_SECONDS)
        _QUIET_NOW.append(watch.cores())
    return _QUIET_NOW[0]


# The other work ``_others_now`` saw since the start of the last plan (one value at most).
_QUIET_NOW: list[float | None] = []


def busy_seconds(stat: str, cpus: Collection[int]) -> float | None:
    """The CPU seconds the cores ``cpus`` have been busy since boot, from the text of
    ``/proc/stat``: every state but idle and waiting for I/O, steal included; None when
    none of ``cpus`` is listed."""
    ticks, seen = 0, False
    for line in stat.splitlines():
        name, *values = line.split() or [""]
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, values[:8])
            ticks += user + nice + system + irq + softirq + steal
            seen = True
    return ticks / os.sysconf("SC_CLK_TCK") if seen else None


def _cpu_counters() -> tuple[float, float, float] | None:
    """(seconds the cores this process may use have been busy, the CPU seconds of this
    process and its child processes, the monotonic clock), or None where ``/proc/stat``
    cannot be read."""
    try:
        with open("/proc/stat") as f:
            stat = f.read()
        cpus = os.sched_getaffinity(0)
    except (OSError, AttributeError):
        return None
    busy = busy_seconds(stat, cpus)
    own = time.process_time() + children_seconds()
    return None if busy is None else (busy, own, time.monotonic())


def children_seconds() -> float:
    """The CPU seconds of this process's live child processes (a streaming loader's
    workers, which are the run's own work, not other work), from ``/proc``; 0 elsewhere."""
    ticks = 0
    for listing in Path("/proc/self/task").glob("*/children"):
        try:
            pids = listing.read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:  # gone since it was listed
                continue
            fields = stat.rsplit(")", 1)[1].split()  # after the name, which may hold spaces
            ticks += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15
    return ticks / os.sysconf("SC_CLK_TCK") if ticks else 0.0


def busy_note() -> str | None:
    """A line for the run's log when other work competes for the CPU (``busy``), else None:
    a run that shares the cores trains slower than it would alone."""
    load = _load_average()[0]
    if not busy(load):
        return None
    return (
        f"{BUSY_NOTE}: load average {load:.1f} on {available_cpus()} cores; this run "
        "shares them and trains slower than it would alone"
    )


def _load_average() -> tuple[float, ...]:
    try:
        return os.getloadavg()
    except (AttributeError, OSError):  # not on every platform: never busy
        return (0.0,) * 3


def _calibration_batch(config: TrainConfig, num_classes: int, input_size: int) -> int:
    """The run's batch, or a smaller one where a step would exceed ``STEP_FLOPS_BUDGET``."""
    per_image = step_flops(config, num_classes, input_size)
    fits = int(STEP_FLOPS_BUDGET // max(per_image, 1))
    return max(min(8, config.batch_size), min(config.batch_size, fits))


def _conv_calls(shape: ConvShape, candidate: Candidate, batch: int) -> Calls:
    """Forward and backward of one convolution shape, through oneDNN and as a matrix product."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, shape.in_channels, shape.height, shape.width, generator=generator)
    if candidate.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(shape.input_grad)
    calls = {}
    for path in PATHS:
        conv = shape.module()
        if candidate.channels_last:
            conv = conv.to(memory_format=torch.channels_last)
        if path == "matmul":
            to_matmul(conv)

        def call(conv: torch.nn.Module = conv) -> None:
            with autocast(torch.device("cpu"), PRECISION_DTYPES[candidate.precision]):
                y = conv(x)
            y.backward(torch.ones_like(y))
            conv.weight.grad = x.grad = None

        calls[path] = call
    return calls


def _step_call(
    config: TrainConfig,
    num_classes: int,
    input_size: int,
    candidate: Candidate,
    matmul: Mapping[str, frozenset[str]],
    batch: int,
    fused: bool = False,
) -> Callable[[], None]:
    """One training step of the run's model and optimizer, in the candidate's way
    (``matmul``: the shapes that chose matrix products, per precision and layout)."""
    model = initial_model(config, num_classes, input_size)
    if candidate.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if not candidate.onednn_only:
        use_matmul_convs(model, input_size, matmul[candidate.per_shape.name])
    step = TrainStep(
        model,
        build_optimizer(model, config, CPU, fused=fused),
        amp_dtype=PRECISION_DTYPES[candidate.precision],
        label_smoothing=config.label_smoothing,
    )
    x, y = synthetic_batch(batch, input_size, num_classes, CPU, candidate.channels_last)
    return lambda: step(x, y)
