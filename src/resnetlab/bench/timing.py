"""Clocks, peak memory and the measured matrix-multiply peak.

On a GPU, time is read from CUDA events on the stream (what the device did), never from
the host clock around asynchronous launches; on the CPU, from ``time.perf_counter``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class Clock:
    """Elapsed seconds between ``start()`` and ``stop()`` of the work queued on ``device``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"

    def start(self) -> None:
        if self.cuda:
            self._begin = torch.cuda.Event(enable_timing=True)
            self._begin.record()
        else:
            synchronize(self.device)
            self._t0 = time.perf_counter()

    def stop(self) -> float:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            end.synchronize()
            return self._begin.elapsed_time(end) / 1000
        synchronize(self.device)
        return time.perf_counter() - self._t0


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, minimum and maximum, rounded for a record."""
    return {
        "median": _round(statistics.median(values)),
        "min": _round(min(values)),
        "max": _round(max(values)),
    }


def _round(x: float) -> float:
    return float(f"{x:.4g}")


class PeakMemory:
    """Peak device memory of the work in a ``with`` block, in MiB, above what was in use before.

    The CUDA caching allocator's peak of allocated bytes; ``None`` elsewhere (a process's
    resident size cannot tell two models in one process apart: freed memory is kept and
    reused).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mib: float | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) - self._base
            self.mib = round(peak / 2**20, 1)


def matmul_peak_tflops(
    device: torch.device, dtype: torch.dtype = torch.bfloat16, n: int = 8192, repeats: int = 5
) -> float | None:
    """The best rate of an ``n`` x ``n`` matrix product in ``dtype`` on a GPU, in TFLOP/s.

    The ceiling the fraction of peak is measured against: what this chip, at its clocks and
    power limit now, does on the kind of work that tensor cores are for. ``None`` off CUDA.
    """
    if device.type != "cuda":
        return None
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    clock, best, per_timing = Clock(device), 0.0, 10
    for _ in range(repeats):
        clock.start()
        for _ in range(per_timing):
            a @ b
        seconds = clock.stop()
        best = max(best, 2 * n**3 * per_timing / seconds / 1e12)
    del a, b
    torch.cuda.empty_cache()
    return round(best, 1)


def time_steps(step: Callable[[], None], steps: int, clock: Clock) -> float:
    """Seconds for ``steps`` calls of ``step``, the device's work included."""
    clock.start()
    for _ in range(steps):
        step()
    return clock.stop()
