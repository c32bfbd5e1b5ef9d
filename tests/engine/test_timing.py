"""The clock and the timing in turns, with the host clock replaced by a script."""

import itertools

import pytest
import torch

from resnetlab.engine import timing
from resnetlab.engine.timing import Clock, time_interleaved


@pytest.fixture
def ticks(monkeypatch):
    """``time.perf_counter`` as 0, 1, 3, 6, 10, ...: each reading 1 s more apart."""
    values = itertools.accumulate(itertools.count())
    monkeypatch.setattr(timing.time, "perf_counter", lambda: float(next(values)))


def test_clock_sums_paused_intervals_and_reads_them_once(ticks):
    clock = Clock("cpu")
    clock.start()  # 0
    clock.pause()  # 1: 1 s
    clock.start()  # 3
    clock.pause()  # 6: 3 s
    assert clock.read() == 4.0
    assert clock.read() == 0.0  # read resets
    clock.start()  # 10
    assert clock.stop() == 5.0  # 15


def test_a_gpus_clock_times_that_gpus_stream(monkeypatch):
    # An event records on the current GPU's stream unless given one: work on cuda:1 was
    # timed on cuda:0's idle stream. torch.cuda's events and streams are stubbed here.
    class Event:
        def __init__(self, enable_timing=False):
            self.t = None

        def record(self, stream=None):
            self.t = len(recorded)
            recorded.append(stream)

        def synchronize(self):
            pass

        def elapsed_time(self, end):
            return 1000.0 * (end.t - self.t)

    recorded = []
    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: f"stream of {device}")
    clock = Clock("cuda:1")
    clock.start()
    assert clock.stop() == 1.0
    assert recorded == ["stream of cuda:1"] * 2


def test_candidates_take_turns_after_their_warm_up():
    order = []
    calls = {name: (lambda name=name: order.append(name)) for name in ("ours", "peer")}

    class Script:  # each interval lasts as many seconds as the calls made in it
        def start(self):
            self.before = len(order)

        def stop(self):
            return float(len(order) - self.before)

    seconds = time_interleaved(calls, 3, number=2, warmup=1, clock=Script())
    # Each round starts one candidate further on: no candidate always goes first.
    ours_first, peer_first = ["ours", "ours", "peer", "peer"], ["peer", "peer", "ours", "ours"]
    assert order == ["ours", "peer", *ours_first, *peer_first, *ours_first]
    assert seconds == {"ours": [1.0, 1.0, 1.0], "peer": [1.0, 1.0, 1.0]}  # per call
