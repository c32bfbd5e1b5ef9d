"""Timing device work: a clock, and candidates timed in turns.

On a GPU, time is read from CUDA events on the stream (what the device did), never from
the host clock around asynchronous launches; on the CPU, from ``time.perf_counter``.
``resnetlab bench`` and the CPU calibration (``engine.calibrate``) both time with these.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class Clock:
    """Seconds of the work queued on ``device`` in marked intervals.

    ``start()`` ... ``stop()`` times one interval; ``start()`` ... ``pause()`` several, summed
    and read with one wait at the end by ``read()`` (the device is not made to wait between
    them, so the work around the intervals runs as it would untimed).
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self._events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self._seconds = 0.0

    def start(self) -> None:
        if self.cuda:
            self._begin = torch.cuda.Event(enable_timing=True)
            self._begin.record(self._stream())
        else:
            synchronize(self.device)
            self._t0 = time.perf_counter()

    def pause(self) -> None:
        """End the interval without waiting for the device."""
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record(self._stream())
            self._events.append((self._begin, end))
        else:
            synchronize(self.device)
            self._seconds += time.perf_counter() - self._t0

    def _stream(self) -> torch.cuda.Stream:
        # The device's own stream: an event's default is the current GPU's, and timing work
        # on cuda:1 from there (cuda:0 current) measures an idle stream.
        return torch.cuda.current_stream(self.device)

    def read(self) -> float:
        """Seconds in the intervals since the last read (waits for the device once)."""
        seconds = self._seconds
        if self._events:
            self._events[-1][1].synchronize()
            seconds += sum(a.elapsed_time(b) for a, b in self._events) / 1000
        self._events, self._seconds = [], 0.0
        return seconds

    def stop(self) -> float:
        """End the interval; its seconds (with any paused ones since the last read)."""
        self.pause()
        return self.read()


def time_interleaved(
    calls: Mapping[str, Callable[[], object]],
    repeats: int,
    *,
    number: int = 1,
    warmup: int = 1,
    min_interval: float | None = None,
    max_number: int = 100,
    clock: Clock | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of each of ``calls``, timed in turns.

    After ``warmup`` untimed calls of each, ``repeats`` rounds in which each candidate in
    turn is timed over ``number`` calls: a change in the machine's load during the
    measurement hits every candidate alike. Each round starts one candidate further on
    than the one before, so that a change within rounds does not always fall on the same
    candidate. The lists hold the rounds in order, so entry ``i`` of each comes from round
    ``i``.

    With ``min_interval`` (seconds; ``warmup`` at least 1), ``number`` is chosen instead,
    the same for every candidate: enough calls that each timed interval lasts about
    ``min_interval``, at most ``max_number``, from the slowest candidate's last warm-up
    call (after a single warm-up call shorter than ``min_interval``, which may have built
    kernels and allocated, from one more timed call of each). A call of a millisecond
    timed alone gains or loses a whole time slice of the scheduler's; many of them in one
    interval share it.
    """
    clock = clock or Clock()
    if min_interval is not None and warmup < 1:
        raise ValueError("min_interval needs a warm-up call to choose the number from")

    def timed(call: Callable[[], object]) -> float:
        clock.start()
        call()
        return clock.stop()

    slowest = 0.0
    for call in calls.values():
        for i in range(warmup):
            if min_interval is not None and i == warmup - 1:
                slowest = max(slowest, timed(call))
            else:
                call()
    if min_interval is not None:
        if warmup == 1 and slowest < min_interval:
            # Short calls whose first call built kernels and allocated: time one more of
            # each (this costs under min_interval a candidate).
            slowest = max(timed(call) for call in calls.values()) if calls else 0.0
        enough = math.ceil(min_interval / slowest) if slowest > 0 else max_number
        number = max(1, min(enough, max_number))
    names = list(calls)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        start = round_ % len(names) if names else 0
        for name in names[start:] + names[:start]:
            clock.start()
            for _ in range(number):
                calls[name]()
            seconds[name].append(clock.stop() / number)
    return seconds
