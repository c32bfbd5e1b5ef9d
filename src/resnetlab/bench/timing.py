"""Spreads of repeated figures, peak memory, and the machine's matrix-product rate.

Clocks and timing in turns are ``engine.timing``'s (the CPU calibration times with them
too). ``torch.utils.benchmark`` times one statement at a time; a comparison here needs two
sides timed in turns on the same machine state, with CUDA events on a GPU.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from functools import cache

import torch

from ..engine.calibrate import cpu_matmul_tflops
from ..engine.step import PRECISION_DTYPES
from ..engine.timing import Clock


def spread(values: Sequence[float]) -> dict[str, float | list[float]]:
    """Median, minimum and maximum of repeated figures, and the figures themselves."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": list(values),
    }


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
            self.mib = peak / 2**20


def matmul_tflops(device: torch.device, precision: str) -> float | None:
    """The device's rate on a large matrix product in ``precision``, in TFLOP/s.

    The ceiling a training step's rate is put against: on the CPU a 2048 x 2048 product,
    measured once per machine and cached (``engine.calibrate.cpu_matmul_tflops``); on a GPU
    an 8192 x 8192 product, measured once per process (its clocks depend on its power
    limit now). ``None`` on other devices.
    """
    if device.type == "cpu":
        return cpu_matmul_tflops(precision)
    if device.type == "cuda":
        return _cuda_matmul_tflops(device, precision)
    return None


@cache
def _cuda_matmul_tflops(device: torch.device, precision: str, n: int = 8192) -> float:
    dtype = PRECISION_DTYPES[precision] or torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    clock, best, per_timing = Clock(device), 0.0, 10
    for _ in range(5):
        clock.start()
        for _ in range(per_timing):
            a @ b
        best = max(best, 2 * n**3 * per_timing / clock.stop() / 1e12)
    del a, b
    torch.cuda.empty_cache()
    return best
