"""The thread count while a CPU run trains: the plan's, unless other work takes the cores.

The calibration chooses the thread count on quiet cores, and deliberately not from timings
taken beside other work, which goes away (``engine.calibrate``). But while a run shares its
cores, fewer threads can be much faster: with passive OpenMP waiting each of a step's
parallel regions waits for a thread the scheduler has set aside, and on a 2-core Xeon with
AMX a ``resnet50_keras`` step in bf16 took 1.90 s on 2 threads beside a busy process and
0.52 s on 1 (README: Speed). So the run watches its cores (``ThreadWatch``): every
``WINDOW_SECONDS`` of training it reads the other work on them (``OtherWork``); while that
is ``contended``, the next steps take turns on each of the plan's ``thread_counts``
(``TRIAL_ROUNDS`` rounds; they are training steps, not extra ones), and the run goes on
with the fastest by ``THREAD_MARGIN`` (``choose``, the calibration's rule), trying again
after ``RETRY_SECONDS``, an interval that doubles while the cores stay shared. Once they
are quiet again (less than half ``CONTENDED``, as ``quieter`` asks), it returns to the
plan's count.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
from collections.abc import Callable, Iterator

import torch

from ..data.decode import cpu_quota, usable_cpus
from . import calibrate
from .calibrate import (
    CONTENDED,
    THREAD_MARGIN,
    CpuPlan,
    choose,
    contended,
    thread_counts,
    threads_name,
)
from .config import TrainConfig

WINDOW_SECONDS = 5.0  # training time between two looks at the other work on the cores
TRIAL_ROUNDS = 3  # steps on each thread count when the cores are shared
RETRY_SECONDS = 60.0  # training time on shared cores before the counts are tried again
MAX_RETRY_SECONDS = 960.0  # the longest that interval grows to while the choice holds


def fit_threads_to_quota(root: str | os.PathLike = "/") -> str | None:
    """Lower PyTorch's thread count to the CPUs that a CPU quota allows (``usable_cpus``),
    before the calibration times anything, and return the line that says so for the run's
    log; None where it stays: no quota, one at least PyTorch's count, or a count fixed from
    outside (``OMP_NUM_THREADS``). PyTorch counts the cores it may run on, which in a
    container limited to 2 CPUs on a 32-core host are 32, and its 32 threads then wait for
    the quota's time slices (``root``: where ``proc`` and ``sys`` are read)."""
    if not calibrate.threads_free():
        return None
    quota = cpu_quota(root)
    threads, usable = torch.get_num_threads(), usable_cpus(root)
    if quota is None or threads <= usable:
        return None
    torch.set_num_threads(usable)
    why = (
        f"the CPU quota of this container ({quota[1]})"
        if usable == math.ceil(quota[0])
        else f"the cores this process may run on, within its CPU quota ({quota[1]})"
    )
    return f"threads: {usable}, {why}, not PyTorch's {threads} (OMP_NUM_THREADS fixes the count)"


def watch_threads(
    plan: CpuPlan | None, config: TrainConfig, say: Callable[[str], None]
) -> ThreadWatch | None:
    """The watch for a CPU run with ``plan``, or None where the thread count stays put: no
    plan (not the CPU), a run not calibrated (``RESNETLAB_CALIBRATE=off``, ``--compile``,
    a short run; asked of the settings too, as a resumed run's plan says only that it was
    kept), a count fixed from outside (``OMP_NUM_THREADS``), one thread, or a
    ``deterministic`` run (another thread count may round differently)."""
    if plan is None or plan.how.startswith("not calibrated"):
        return None
    if config.deterministic or config.compile or calibrate.calibration_off():
        return None
    if not calibrate.threads_free():
        return None
    counts = thread_counts(plan.threads or torch.get_num_threads())
    return ThreadWatch(counts, say) if len(counts) > 1 else None


class ThreadWatch:
    """Moves the thread count with the other work on the cores: ``after_step`` is told each
    training step's seconds (with the wait for its batch: fewer compute threads leave more
    of the cores to a streaming loader's workers) and sets the count for the next
    (``torch.set_num_threads``).

    Args:
        counts: the plan's thread count, then the fewer ones to try (``thread_counts``).
        say: takes a line for the run's log when the count changes.
    """

    def __init__(self, counts: list[int], say: Callable[[str], None]) -> None:
        self.counts = counts
        self.say = say
        self.threads = counts[0]
        self.retry = RETRY_SECONDS
        self.since_choice: float | None = None  # training time since a choice on shared cores
        self._window = calibrate.OtherWork()
        self._window_seconds = 0.0
        self._trial: list[float] | None = None  # step seconds, in turns over ``counts``
        self._trial_others = 0.0  # the other work that began the trial
        self._trial_threads = counts[0]  # the count before it

    def after_step(self, seconds: float) -> None:
        if self._trial is not None:
            self._trial.append(seconds)
            if len(self._trial) < TRIAL_ROUNDS * len(self.counts):
                self._set(self.counts[len(self._trial) % len(self.counts)])
            else:
                self._choose(self._trial)
            return
        self._window_seconds += seconds
        if self.since_choice is not None:
            self.since_choice += seconds
        if self._window_seconds < WINDOW_SECONDS:
            return
        others = self._window.cores()
        self._window, self._window_seconds = calibrate.OtherWork(), 0.0
        if contended(others):
            if self.since_choice is None or self.since_choice >= self.retry:
                self._trial, self._trial_others, self._trial_threads = [], others, self.threads
                self._set(self.counts[0])
        elif others is not None and others < CONTENDED / 2:
            self.since_choice, self.retry = None, RETRY_SECONDS
            if self.threads != self.counts[0]:
                self._set(self.counts[0])
                self.say(
                    f"threads: the cores are quiet again; back to {threads_name(self.threads)}"
                )

    @contextlib.contextmanager
    def settled(self) -> Iterator[None]:
        """Work between steps (validation, checkpoints) runs on the count in force, not on
        a count that an unfinished trial is timing; the trial goes on after it."""
        trial_count = self.threads
        torch.set_num_threads(self._trial_threads if self._trial is not None else self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(trial_count)

    def _choose(self, trial: list[float]) -> None:
        """Go on with the count that ran fastest on the shared cores, by ``THREAD_MARGIN``."""
        names = [threads_name(n) for n in self.counts]
        timings = {name: trial[i :: len(self.counts)] for i, name in enumerate(names)}
        chosen = self.counts[names.index(choose(timings, names[0], THREAD_MARGIN))]
        self._trial = None
        if chosen != self._trial_threads:
            self.retry = RETRY_SECONDS
        elif self.since_choice is not None:  # the same answer again, on cores still shared
            self.retry = min(2 * self.retry, MAX_RETRY_SECONDS)
        self.since_choice = 0.0
        self._set(chosen)
        if chosen != self._trial_threads:
            steps = ", ".join(
                f"{name} {statistics.median(seconds):.2f} s" for name, seconds in timings.items()
            )
            self.say(
                f"threads: other work holds {self._trial_others:.1f} cores' worth; "
                f"training on {threads_name(chosen)} (a step took {steps}; "
                "OMP_NUM_THREADS fixes the count)"
            )

    def _set(self, n: int) -> None:
        self.threads = n
        torch.set_num_threads(n)
