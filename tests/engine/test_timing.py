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


class FakeCalls:
    """Calls that take ``seconds[name]`` each on a fake clock; ``log`` records them."""

    def __init__(self, seconds, first=None):
        self.seconds, self.first = seconds, first or {}
        self.now, self.log = 0.0, []
        self.calls = {name: (lambda name=name: self.call(name)) for name in seconds}

    def call(self, name):
        warm = name in self.log
        self.log.append(name)
        self.now += self.seconds[name] if warm else self.first.get(name, self.seconds[name])

    def start(self):
        self.began = self.now

    def stop(self):
        return self.now - self.began


def runs_of(log):
    """The calls, as runs of one name: [(name, calls in a row), ...]."""
    runs = []
    for name in log:
        if runs and runs[-1][0] == name:
            runs[-1][1] += 1
        else:
            runs.append([name, 1])
    return [tuple(run) for run in runs]


def test_short_calls_are_timed_several_to_an_interval_chosen_from_the_warm_up():
    # 1 ms and 2 ms calls, 20 ms intervals: the slower one (2 ms) sets 10 calls a round
    # for both, and each is reported in seconds per call.
    fake = FakeCalls({"foreach": 0.001, "fused": 0.002})
    seconds = time_interleaved(fake.calls, 3, min_interval=0.02, clock=fake)
    assert fake.log[:4] == ["foreach", "fused"] * 2  # warm-up, then one more timed call each
    assert runs_of(fake.log[4:]) == [
        ("foreach", 10),
        ("fused", 20),  # fused ends round 1 and starts round 2
        ("foreach", 20),
        ("fused", 10),
    ]
    assert seconds["foreach"] == pytest.approx([0.001] * 3)
    assert seconds["fused"] == pytest.approx([0.002] * 3)


def test_the_number_comes_after_the_first_call_and_long_calls_run_once():
    # A first call that builds kernels (5 ms) does not set the number: the next one does.
    fake = FakeCalls({"a": 0.001}, first={"a": 0.005})
    time_interleaved(fake.calls, 2, min_interval=0.02, clock=fake)
    assert runs_of(fake.log) == [("a", 2 + 40)]  # 20 calls a round
    fake = FakeCalls({"a": 0.001}, first={"a": 0.005})
    time_interleaved(fake.calls, 2, warmup=2, min_interval=0.02, clock=fake)
    assert runs_of(fake.log) == [("a", 2 + 40)]  # the last warm-up call sets it
    fake = FakeCalls({"step": 0.2, "other": 0.3})
    seconds = time_interleaved(fake.calls, 2, min_interval=0.02, clock=fake)
    assert len(fake.log) == 2 + 4  # one call a round each
    assert seconds == {"step": pytest.approx([0.2, 0.2]), "other": pytest.approx([0.3, 0.3])}


def test_the_number_of_calls_is_capped():
    fake = FakeCalls({"tiny": 1e-6, "free": 0.0})
    seconds = time_interleaved(fake.calls, 2, min_interval=0.05, max_number=7, clock=fake)
    assert runs_of(fake.log[4:]) == [
        ("tiny", 7),
        ("free", 14),
        ("tiny", 7),
    ]
    assert seconds["tiny"] == pytest.approx([1e-6, 1e-6])
    fake = FakeCalls({"free": 0.0})  # a warm-up that took no time: the cap
    time_interleaved(fake.calls, 1, min_interval=0.05, max_number=7, clock=fake)
    assert len(fake.log) == 2 + 7


def test_choosing_the_number_needs_a_warm_up():
    with pytest.raises(ValueError, match="warm-up"):
        time_interleaved({"a": lambda: None}, 1, warmup=0, min_interval=0.02)
