"""The CPU calibration, driven by fixed timings: nothing here depends on measured speed."""

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from resnetlab.cli import main
from resnetlab.engine import TrainConfig, calibrate, timing, train
from resnetlab.engine.calibrate import (
    CalibrationStore,
    Candidate,
    CpuPlan,
    choose,
    decide,
    matmul_paths,
    plan_cpu,
)
from resnetlab.engine.cpu import MatmulConv2d
from resnetlab.engine.step import build_training
from resnetlab.errors import CacheWarning, SettingWarning, command_line

from ..fake_cpu import FakeMachine, fake_cpu, threads_per_step

NAN = math.nan


@pytest.mark.parametrize(
    ("timings", "expected", "why"),
    [
        ({"a": [1.0] * 3, "b": [0.95] * 3}, "a", "5% faster: within the margin, keep the default"),
        ({"a": [1.0] * 3, "b": [0.85] * 3}, "b", "15% faster: switch"),
        ({"a": [1.0] * 3, "b": [0.9] * 3}, "a", "exactly the margin is not enough"),
        ({"a": [0.2, 1.0, 1.0], "b": [0.85] * 3}, "b", "one quick repeat of the default"),
        ({"a": [1.0] * 3, "b": [0.1, 2.0, 2.0]}, "a", "one lucky repeat does not switch"),
        ({"a": [1.0] * 3, "b": [0.7] * 3, "c": [0.6] * 3}, "c", "the fastest beyond the margin"),
        ({"a": [1.0] * 3, "b": [0.6] * 3, "c": [0.6] * 3}, "b", "equals: the first listed"),
        ({"a": [1.0] * 3, "b": [NAN, NAN, NAN]}, "a", "no finite timing: not a candidate"),
        ({"a": [1.0, NAN, 1.0], "b": [0.8] * 3}, "b", "non-finite repeats are left out"),
        ({"b": [1.0] * 3, "c": [0.95] * 3}, "b", "without the default, the first is the default"),
        ({"a": [2.0]}, "a", "alone"),
        (
            {"a": [1.0, 1.0, 1.0, 2.0, 2.0], "b": [0.85, 0.85, 1.7, 1.7, 1.7]},
            "b",
            "15% faster in four rounds of five; the machine slowed down within the third",
        ),
        (
            {"a": [2.0, 2.0, 2.0, 1.0, 1.0], "b": [1.9, 1.0, 1.0, 1.05, 1.05]},
            "a",
            "a lower median time, but not 10% faster in three rounds of five",
        ),
    ],
)
def test_choose_keeps_the_default_unless_another_wins_by_the_margin(timings, expected, why):
    assert choose(timings, "a", 0.10) == expected, why


def test_timings_shared_with_other_work_keep_every_default():
    # A candidate twice as fast, timed beside a core's worth of other work: on shared cores
    # a call timed against itself wins by more than the margins, so nothing moves until
    # the cores are quiet (``contended``: a quarter of a core or more).
    wins = {"default": [1.0] * 7, "other": [0.5] * 7}
    assert choose(wins, "default", 0.1, others=1.0) == "default"
    assert choose(wins, "default", 0.1, others=calibrate.CONTENDED) == "default"
    assert choose(wins, "default", 0.1, others=0.1) == "other"
    assert choose(wins, "default", 0.1, others=None) == "other"  # not known: as measured
    steps = {name: [t] * 7 for name, t in BF16_WINS.items()}
    steps |= {name + ONLY: [t * 0.5] * 7 for name, t in BF16_WINS.items()}
    assert decide(steps, others=1.0) == Candidate("fp32", True, onednn_only=True)
    assert decide(dict(list(steps.items())[:4]), others=1.0) == Candidate("fp32", True)
    assert decide(steps, others=0.0) == Candidate("bf16", False, onednn_only=True)
    convs = {"a": {"onednn": [1.0] * 5, "matmul": [0.5] * 5, "others": 0.6}}
    assert matmul_paths(convs) == set()
    assert matmul_paths({"a": {**convs["a"], "others": 0.1}}) == {"a"}


def test_relative_times_compare_within_each_round():
    timings = {"a": [1.0, 2.0, NAN, 4.0], "b": [0.5, 1.0, 1.0, 2.0], "c": [NAN] * 4}
    assert calibrate.relative(timings, "a") == {"a": 1.0, "b": 0.5}


def test_choose_needs_a_timing():
    with pytest.raises(ValueError, match="no candidate"):
        choose({"a": [NAN]}, "a", 0.1)


FP32_CL, FP32_NCHW, BF16_CL, BF16_NCHW = (
    "fp32 channels-last",
    "fp32 NCHW",
    "bf16 channels-last",
    "bf16 NCHW",
)
ONLY = " oneDNN-only"


@pytest.mark.parametrize(
    ("steps", "expected", "why"),
    [
        ({FP32_CL: 1.0, FP32_NCHW: 0.97}, FP32_CL, "NCHW 3% faster: within the layout margin"),
        ({FP32_CL: 1.0, FP32_NCHW: 0.9}, FP32_NCHW, "NCHW 10% faster"),
        ({FP32_CL: 1.0, FP32_NCHW: 0.9, BF16_CL: 0.6, BF16_NCHW: 0.62}, BF16_CL, "bf16 gains"),
        ({FP32_CL: 1.0, FP32_NCHW: 1.1, BF16_CL: 0.95, BF16_NCHW: 0.93}, FP32_CL, "bf16 +5%"),
        (
            {FP32_CL: 1.0, FP32_NCHW: 0.8, BF16_CL: 0.75, BF16_NCHW: 0.74},
            FP32_NCHW,
            "bf16 is measured against fp32's best layout",
        ),
        ({FP32_CL: 1.0, BF16_CL: 2.0}, FP32_CL, "emulated bf16 is slower"),
        ({FP32_NCHW: 1.0, BF16_NCHW: 0.5}, BF16_NCHW, "the layout was named"),
        ({BF16_CL: 1.0, BF16_NCHW: 0.5}, BF16_NCHW, "the precision was named"),
        (
            {FP32_CL: 1.0, FP32_CL + ONLY: 0.99, FP32_NCHW: 1.2},
            FP32_CL + ONLY,
            "matrix products that won alone lose in the whole step: oneDNN everywhere",
        ),
        ({FP32_CL: 1.0, FP32_CL + ONLY: 1.0}, FP32_CL, "equal: the shape-by-shape paths stay"),
        (
            {FP32_CL: 1.0, FP32_CL + ONLY: 1.3, FP32_NCHW: 0.96, FP32_NCHW + ONLY: 0.9},
            FP32_NCHW + ONLY,
            "the layouts compare with their best paths",
        ),
        (
            {FP32_CL: 1.0, FP32_CL + ONLY: 1.1, BF16_CL: 0.95, BF16_CL + ONLY: 0.85},
            BF16_CL + ONLY,
            "bf16 with oneDNN everywhere beats fp32 by the margin",
        ),
    ],
)
def test_decide_chooses_the_paths_then_the_layout_then_the_precision(steps, expected, why):
    timings = {name: [seconds] * 3 for name, seconds in steps.items()}
    assert decide(timings) == Candidate.parse(expected), why


def test_matmul_paths_need_the_conv_margin():
    convs = {
        "a": {"onednn": [1.0] * 3, "matmul": [0.5] * 3},
        "b": {"onednn": [1.0] * 3, "matmul": [0.95] * 3},
        "c": {"onednn": [1.0] * 3, "matmul": [3.0] * 3},
    }
    assert matmul_paths(convs) == {"a"}


BF16_WINS = {FP32_CL: 1.0, FP32_NCHW: 0.98, BF16_CL: 0.7, BF16_NCHW: 0.55}
FP32_NCHW_WINS = {FP32_CL: 1.0, FP32_NCHW: 0.5, BF16_CL: 0.9, BF16_NCHW: 0.9}
CONFIG = TrainConfig(model="resnet8", batch_size=8, input_size=8)


@pytest.fixture
def calibrating(monkeypatch, tmp_path):
    """Calibration on, on a quiet 2-core CPU with bf16 hardware; the cache folder in tmp."""
    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "cache"))
    others = fake_cpu(monkeypatch)
    return SimpleNamespace(folder=tmp_path / "cache" / "calibration", others=others)


def _plan(machine, **kwargs):
    return plan_cpu(CONFIG, num_classes=10, input_size=8, measure=machine, **kwargs)


def test_the_plan_follows_the_timings_and_is_cached(calibrating):
    machine = FakeMachine(BF16_WINS)
    plan = _plan(machine)
    assert (plan.precision, plan.channels_last, plan.how) == ("bf16", False, "measured now")
    # ResNet-8 at 8x8 ends on 2x2 maps, where (by the fake timings) products win.
    assert plan.matmul_convs == {"64x2x2>64 k3x3 s1 p1"}
    assert set(plan.steps) == {way + paths for way in BF16_WINS for paths in ("", ONLY)}
    assert plan.batch == 8 and not plan.onednn_only
    assert plan.counts == {  # the candidates: 3x3 convolutions on 4x4 maps and smaller
        "16x8x8>32 k3x3 s2 p1": 1,
        "32x4x4>32 k3x3 s1 p1": 1,
        "32x4x4>64 k3x3 s2 p1": 1,
        "64x2x2>64 k3x3 s1 p1": 1,
    }
    convs_timed = [w for w in machine.timed if "b8 " in w]
    assert len(convs_timed) == 4 * len(plan.counts)  # every candidate shape in every candidate
    assert len(machine.timed) == len(convs_timed) + 2  # and the optimizer's, the steps'

    explained = "\n".join(plan.explain())
    assert "bf16 NCHW" in explained and "<- chosen" in explained
    assert "64x2x2>64 k3x3 s1 p1" in explained and "-> matrix product" in explained
    # Each convolution line shows the round-by-round ratio that decided it.
    (line,) = [x for x in explained.splitlines() if x.strip().startswith("64x2x2>64 k3x3")]
    ratio = float(line.split("->")[0].split()[-1])
    assert ratio < 1 - calibrate.CONV_MARGIN
    assert "Test CPU (AVX512, bf16 hardware)" in explained

    (path,) = calibrating.folder.glob("*.json")
    assert path.name.startswith("test-cpu-")
    again = FakeMachine(BF16_WINS)
    cached = _plan(again)
    assert again.timed == [] and cached.how == "from the cache"
    assert (cached.precision, cached.matmul_convs) == (plan.precision, plan.matmul_convs)
    assert CpuPlan.from_record(json.loads(json.dumps(plan.to_record()))) == plan
    forced = FakeMachine(BF16_WINS)
    _plan(forced, force=True)
    assert len(forced.timed) == len(machine.timed)


def test_named_settings_narrow_the_candidates(calibrating):
    machine = FakeMachine(BF16_WINS)
    config = TrainConfig(model="resnet8", batch_size=8, precision="fp32", channels_last=True)
    plan = plan_cpu(config, num_classes=10, input_size=8, measure=machine)
    assert (plan.precision, plan.channels_last) == ("fp32", True)
    assert set(plan.steps) == {FP32_CL, FP32_CL + ONLY}  # the paths, checked in the step
    convs = [w for w in machine.timed if w.startswith("fp32 channels-last b8 ")]
    assert len(convs) == len(machine.timed) - 2  # and the optimizer's kernels, the steps


@pytest.mark.parametrize(("fused", "chosen"), [(0.5, True), (0.95, False), (1.5, False)])
def test_the_optimizer_runs_fused_kernels_where_they_measure_faster(
    calibrating, monkeypatch, fused, chosen
):
    machine = FakeMachine(BF16_WINS, optimizer={"foreach": 1.0, "fused": fused})
    monkeypatch.setattr(calibrate, "measure_in_turns", machine)
    parts = build_training(CONFIG, torch.device("cpu"), num_classes=10, input_size=8)
    plan = parts.cpu_plan
    assert plan.fused_optimizer is chosen  # fused needs the margin: 0.95 keeps foreach
    assert machine.timed[0] == "resnet8, 10 classes, sgd m0.9 nesterov wd"
    kernel = "fused" if chosen else "foreach"
    assert parts.optimizer.defaults.get(kernel) is True
    # The steps are timed with the kernels chosen, and cached apart from the others'.
    steps_key = machine.timed[-1].split(", matrix products ")[0]  # (the paths they ran)
    assert steps_key.endswith(", fused, b8" if chosen else " wd, b8")
    assert ("fused optimizer" in plan.describe()) is chosen
    explained = plan.explain()
    at = explained.index(
        "  the optimizer's step: median ms, and time relative to foreach "
        "round by round; fused needs 10%:"
    )
    rows = {line.split()[0]: line for line in explained[at + 1 : at + 3]}
    assert rows[kernel].endswith("<- chosen") and set(rows) == {"foreach", "fused"}
    # A plan recorded before the optimizer was measured resumes on foreach.
    record = {k: v for k, v in plan.to_record().items() if k != "fused_optimizer"}
    assert not CpuPlan.from_record(record).fused_optimizer


def test_matrix_products_that_lose_in_the_whole_step_are_not_used(calibrating, monkeypatch):
    machine = FakeMachine({FP32_CL: 1.0, FP32_NCHW: 1.2}, onednn_only=0.95)
    monkeypatch.setattr(calibrate, "measure_in_turns", machine)
    config = TrainConfig(model="resnet8", batch_size=8, precision="fp32")
    parts = build_training(config, torch.device("cpu"), num_classes=10, input_size=8)
    plan = parts.cpu_plan
    assert (plan.candidate.name, plan.matmul_convs) == (FP32_CL + ONLY, frozenset())
    assert not any(type(m) is MatmulConv2d for m in parts.model.modules())
    assert plan.describe() == (
        "CPU plan: fp32, channels-last, oneDNN for every convolution (faster in the whole "
        "step) (measured now)"
    )
    explained = "\n".join(plan.explain())
    assert "64x2x2>64 k3x3 s1 p1" in explained and "lost in the whole step" in explained
    assert f"{FP32_CL + ONLY:<32}" in explained and "<- chosen" in explained
    cached = plan_cpu(config, num_classes=10, input_size=8, measure=FakeMachine({}))
    assert cached.how == "from the cache" and cached.onednn_only
    assert CpuPlan.from_record(json.loads(json.dumps(plan.to_record()))) == plan


class MatmulEverywhere(FakeMachine):
    """Matrix products win on every convolution shape, not only on 64-channel maps."""

    def __call__(self, what, calls, rounds=3):
        if set(calls) == {"onednn", "matmul"}:
            self.timed.append(what)
            return {"onednn": [1.0] * 3, "matmul": [0.5] * 3}
        return super().__call__(what, calls, rounds)


def test_steps_timed_with_other_convolution_paths_are_timed_again(calibrating):
    before = FakeMachine(BF16_WINS)
    assert _plan(before).matmul_convs == {"64x2x2>64 k3x3 s1 p1"}
    # Another workload of the same shapes at the same batch, measured again as asked,
    # finds matrix products faster on every shape: the cached convolutions change.
    plan_cpu(CONFIG, num_classes=5, input_size=8, measure=MatmulEverywhere(BF16_WINS), force=True)
    machine = FakeMachine(BF16_WINS)
    plan = _plan(machine)
    assert plan.matmul_convs == set(plan.counts)  # the new paths,
    assert plan.how == "measured now"  # judged by steps that ran them
    (steps,) = [what for what in machine.timed if " b8 " not in what]  # not the convolutions
    assert steps != before.timed[-1] and steps.startswith(before.timed[-1].split(", matrix")[0])
    assert _plan(FakeMachine(BF16_WINS)).how == "from the cache"


def test_a_cpu_without_bf16_hardware_trains_in_fp32(calibrating, monkeypatch):
    info = {"model": "Old CPU", "family": None, "capability": "AVX2", "bf16": False, "amx": False}
    monkeypatch.setattr(calibrate, "cpu_info", lambda: info)
    plan = _plan(FakeMachine(BF16_WINS))
    assert {name.removesuffix(ONLY) for name in plan.steps} == {FP32_CL, FP32_NCHW}
    assert plan.precision == "fp32"


def test_what_was_measured_before_ctrl_c_is_kept(calibrating):
    class Interrupted(FakeMachine):
        def __call__(self, what, calls, rounds=3):
            if set(calls) >= {FP32_CL, FP32_NCHW}:  # the whole steps, after the convolutions
                raise KeyboardInterrupt
            return super().__call__(what, calls, rounds)

    first = Interrupted(BF16_WINS)
    with pytest.raises(KeyboardInterrupt):
        _plan(first)
    assert first.timed  # the convolutions were measured
    again = FakeMachine(BF16_WINS)
    assert _plan(again).how == "measured now"
    assert set(again.timed).isdisjoint(first.timed)  # and not measured again


def test_a_changed_torch_version_thread_count_thread_waiting_or_isa_calibrates_again(
    calibrating, monkeypatch
):
    _plan(FakeMachine(BF16_WINS))
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    machine = FakeMachine(BF16_WINS)
    assert _plan(machine).how == "measured now" and machine.timed
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        machine = FakeMachine(BF16_WINS)
        plan = _plan(machine)
        assert plan.how == "measured now" and plan.machine["threads"] == threads + 1
    finally:
        torch.set_num_threads(threads)
    # Spinning threads (the user's OMP_WAIT_POLICY) can make another thread count win.
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    machine = FakeMachine(BF16_WINS)
    assert _plan(machine).how == "measured now" and machine.timed
    # oneDNN held below the CPU's instruction sets (no AMX, AVX-512) runs other kernels.
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    machine = FakeMachine(BF16_WINS)
    assert _plan(machine).how == "measured now" and machine.timed
    assert len(list(calibrating.folder.glob("*.json"))) == 5  # one file per machine key


def test_timings_shared_with_other_work_are_measured_again_when_the_cores_are_quiet(
    calibrating, capsys
):
    calibrating.others[0] = 1.2  # another job took a core while the steps were timed
    shared = _plan(FakeMachine(BF16_WINS))
    assert shared.others == 1.2
    assert (shared.precision, shared.channels_last, shared.matmul_convs) == ("fp32", True, set())
    explained = "\n".join(shared.explain())
    assert "other work 1.20 cores: the defaults kept, to be measured again when quiet" in explained
    assert "-> oneDNN (timed beside other work)" in explained
    machine = FakeMachine(BF16_WINS)
    assert _plan(machine).how == "from the cache" and not machine.timed  # still shared
    calibrating.others[0] = 0.05
    capsys.readouterr()
    quiet = _plan(machine)
    assert quiet.how == "measured now" and machine.timed
    assert (quiet.precision, quiet.channels_last) == ("bf16", False)  # what the timings say
    assert "again (the cached timings were taken beside other work" in capsys.readouterr().err
    machine = FakeMachine(BF16_WINS)
    calibrating.others[0] = 1.2  # measured quiet, kept when shared again
    assert _plan(machine).how == "from the cache" and not machine.timed


def test_a_thread_count_chosen_on_shared_cores_is_not_kept_once_they_are_quiet(
    monkeypatch, tmp_path
):
    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "cache"))
    others = fake_cpu(monkeypatch, threads=2)
    # Another job on one of the 2 cores makes 1 thread look faster than 2: PyTorch's count
    # is kept, and the timings are redone once the cores are quiet.
    others[0] = 0.9
    shared = _plan(FakeMachine(BF16_WINS, threads={1: 0.7, 2: 1.0}))
    assert shared.threads is None and shared.thread_steps["1 thread"] == [0.7] * 3
    assert "other work 0.90 cores: 2 threads kept" in "\n".join(shared.explain())
    others[0] = 0.0
    machine = FakeMachine(BF16_WINS, threads={1: 0.5, 2: 1.0})  # faster alone too
    plan = _plan(machine)
    assert plan.how == "measured now" and plan.threads == 1
    assert machine.timed[-1].endswith(", threads")


@pytest.mark.parametrize(
    ("cached", "now", "again"),
    [
        (1.0, 0.05, True),  # the other work is gone
        (0.3, 0.1, True),
        (1.0, 0.2, False),  # some of it left: kept, so that a run does not measure each time
        (1.0, 1.0, False),  # still shared
        (0.2, 0.0, False),  # measured quiet
        (None, 0.0, False),  # not known (no counters): kept
        (1.0, None, False),
    ],
)
def test_shared_timings_are_redone_once_the_cores_are_quiet(cached, now, again):
    looked = []
    assert calibrate.quieter(lambda: looked.append(now) or now, than=cached) is again
    assert looked == ([now] if cached is not None and cached >= calibrate.CONTENDED else [])


STAT = """cpu  900 0 300 5000 10 0 20 40 0 0
cpu0 100 0 50 2000 5 0 10 20 0 0
cpu1 700 0 200 1000 5 0 5 10 0 0
cpu2 100 0 50 2000 0 0 5 10 7 0
intr 12345 0 0
"""


def test_busy_time_counts_every_state_but_idle_and_io_wait_on_this_process_cores(monkeypatch):
    monkeypatch.setattr(calibrate.os, "sysconf", lambda name: 100)  # ticks a second
    assert calibrate.busy_seconds(STAT, {0, 2}) == pytest.approx((180 + 165) / 100)
    assert calibrate.busy_seconds(STAT, {1}) == pytest.approx(915 / 100)
    assert calibrate.busy_seconds(STAT, {5}) is None


def test_other_work_leaves_out_this_process_own_cpu_time(monkeypatch):
    readings = iter([(10.0, 1.0, 100.0), (13.0, 2.5, 102.0), (13.0, 2.5, 102.0)])
    monkeypatch.setattr(calibrate, "_cpu_counters", lambda: next(readings))
    watch = calibrate.OtherWork()
    assert watch.cores() == pytest.approx((3.0 - 1.5) / 2.0)  # 3 s busy, 1.5 s of it ours
    assert watch.cores() == pytest.approx(0.75)
    monkeypatch.setattr(calibrate, "_cpu_counters", lambda: None)  # not Linux
    assert calibrate.OtherWork().cores() is None


def test_a_corrupt_cache_file_is_ignored_with_a_warning(calibrating):
    store = CalibrationStore()
    store.path.parent.mkdir(parents=True)
    store.path.write_text('{"key": {"cpu": "Test CPU"}, "convs": [')
    machine = FakeMachine(BF16_WINS)
    with pytest.warns(CacheWarning, match="unreadable CPU calibration .* measuring again"):
        plan = _plan(machine)
    assert plan.how == "measured now" and plan.precision == "bf16"
    assert json.loads(store.path.read_text())["key"]["cpu"] == "Test CPU"  # rewritten whole

    # Valid JSON with a damaged entry: that entry is measured again, the rest is kept.
    # Timings must be positive and finite (a zero would divide, a NaN never compare).
    for bad in ("fast", [0], [-1.0], [math.nan], [math.inf], [True], []):
        data = json.loads(store.path.read_text())
        damaged = next(iter(data["convs"]))
        data["convs"][damaged] = {"onednn": bad, "matmul": [0.1], "others": 0.0}
        store.path.write_text(json.dumps(data))  # NaN and Infinity as Python writes them
        machine = FakeMachine(BF16_WINS)
        assert _plan(machine).precision == "bf16" and machine.timed == [damaged], bad
    data = json.loads(store.path.read_text())
    steps = next(iter(data["steps"]))
    for bad in (-1.0, "none", math.nan, [0.5]):
        data = json.loads(store.path.read_text())
        data["steps"][steps]["others"] = bad
        store.path.write_text(json.dumps(data))
        machine = FakeMachine(BF16_WINS)
        assert _plan(machine).how == "measured now" and machine.timed == [steps], bad


def test_a_cache_file_without_a_section_keeps_the_timings_it_has(calibrating, recwarn):
    store = CalibrationStore()
    _plan(FakeMachine(BF16_WINS))
    data = json.loads(store.path.read_text())
    del data["optimizer"]  # as written before the optimizer was measured
    store.path.write_text(json.dumps(data))
    machine = FakeMachine(BF16_WINS)
    assert _plan(machine).precision == "bf16"
    assert machine.timed == ["resnet8, 10 classes, sgd m0.9 nesterov wd"]  # that alone
    assert not [w for w in recwarn if issubclass(w.category, CacheWarning)]


def test_a_cache_that_cannot_be_written_is_said_once_with_the_fix(calibrating, recwarn, capsys):
    store = CalibrationStore()
    store.path.mkdir(parents=True)  # a folder where the file goes
    plan = _plan(FakeMachine(BF16_WINS))
    err = capsys.readouterr().err
    assert "measuring this CPU's convolutions to choose the fastest (for this run only: " in err
    assert "then cached" not in err
    assert plan.precision == "bf16"  # measured and used all the same
    _plan(FakeMachine(BF16_WINS))
    said = [str(w.message) for w in recwarn if issubclass(w.category, CacheWarning)]
    assert len(said) == 2, said  # it cannot be read, and it cannot be saved: once each
    assert said[0].startswith("ignoring the unreadable CPU calibration")
    assert said[1].endswith("set RESNETLAB_CACHE to a folder you can write to")
    assert [p.name for p in store.path.parent.iterdir()] == [store.path.name]  # no .tmp


def test_the_explanation_names_no_cache_file_that_was_not_written(calibrating, recwarn):
    store = CalibrationStore()
    store.path.mkdir(parents=True)  # a folder where the file goes
    explained = "\n".join(_plan(FakeMachine(BF16_WINS)).explain())
    assert f"cache {store.path}" not in explained
    assert f"not saved to {store.path} (" in explained  # and why
    assert "): the next run measures again" in explained


def test_a_cache_that_cannot_be_written_is_one_warning_for_all_it_would_keep(
    calibrating, tmp_path, recwarn
):
    """A long run decodes its images and measures the CPU: a cache folder that takes
    neither is said once, not once for each."""
    from resnetlab.data import load_dataset

    from ..data.conftest import noise, write_tree

    calibrating.folder.parent.write_text("")  # the cache folder cannot be made
    photos = write_tree(tmp_path / "photos", {"a": [noise(0), noise(1)], "b": [noise(2)]})
    load_dataset(str(photos))
    assert _plan(FakeMachine(BF16_WINS)).precision == "bf16"  # measured all the same
    said = [str(w.message) for w in recwarn if issubclass(w.category, CacheWarning)]
    assert len(said) == 1 and said[0].startswith(
        f"cannot write the cache folder {calibrating.folder.parent}"
    )
    assert said[0].endswith("set RESNETLAB_CACHE to a folder you can write to")


def test_calibration_can_be_turned_off_and_is_off_for_compiled_runs(calibrating, monkeypatch):
    machine = FakeMachine(BF16_WINS)
    compiled = TrainConfig(model="resnet8", batch_size=8, compile=True)
    plan = plan_cpu(compiled, num_classes=10, input_size=8, measure=machine)
    assert (plan.precision, plan.channels_last, plan.matmul_convs) == ("fp32", True, frozenset())
    assert "--compile" in plan.how
    monkeypatch.setenv("RESNETLAB_CALIBRATE", "disable")  # neither off nor on: said, and on
    with pytest.warns(SettingWarning, match="RESNETLAB_CALIBRATE='disable' is neither off nor on"):
        assert _plan(machine).how == "measured now"
    monkeypatch.setenv("RESNETLAB_CALIBRATE", "off")
    machine = FakeMachine(BF16_WINS)
    plan = _plan(machine)
    assert plan.how == "not calibrated: RESNETLAB_CALIBRATE=off" and machine.timed == []
    assert (
        plan.describe() == "CPU plan: fp32, channels-last (not calibrated: RESNETLAB_CALIBRATE=off)"
    )


def test_build_training_runs_the_plan(calibrating, monkeypatch):
    monkeypatch.setattr(calibrate, "measure_in_turns", FakeMachine(BF16_WINS))
    parts = build_training(CONFIG, torch.device("cpu"), num_classes=10, input_size=8)
    assert parts.cpu_plan.precision == "bf16" and parts.amp_dtype == torch.bfloat16
    assert not parts.channels_last
    assert not parts.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    matmul = [name for name, m in parts.model.named_modules() if type(m) is MatmulConv2d]
    assert matmul == ["layer3.0.conv2"]


def test_the_run_log_says_what_was_chosen(calibrating, monkeypatch, tmp_path, capsys):
    machine = FakeMachine({FP32_CL: 1.0, FP32_NCHW: 0.5, BF16_CL: 0.9, BF16_NCHW: 0.9})
    monkeypatch.setattr(calibrate, "measure_in_turns", machine)
    common = dict(model="resnet8", data="digits", input_size=8, batch_size=64, max_steps=1)
    common["device"] = "cpu"  # the CPU is what is calibrated, whatever else the machine has
    monkeypatch.setattr(calibrate, "_load_average", lambda: (0.0, 0.0, 0.0))  # not busy
    result = train(**common, explain_speed=True, out=str(tmp_path / "run"))
    err = capsys.readouterr().err
    assert "CPU plan: fp32, NCHW" in err and "fp32 NCHW" in err and "<- chosen" in err
    assert result.summary["status"] == "finished" and "the CPU is busy" not in err
    # Off a terminal (a log), the measuring says so in a line before it starts, once for
    # all the convolution shapes.
    assert err.count("measuring this CPU's training steps to choose the fastest") == 1
    assert (
        err.count("measuring this CPU's convolutions to choose the fastest (once; then cached)")
        == 1
    )
    assert "data: no flips: the images look like digits" in err  # and the log says why
    cores = calibrate.available_cpus()
    load = calibrate.BUSY_LOAD * cores + 1  # other work on every core, whatever their number
    monkeypatch.setattr(calibrate, "_load_average", lambda: (load, load, load))
    train(**common, out=str(tmp_path / "again"))
    err = capsys.readouterr().err
    assert "CPU plan: fp32, NCHW" in err and "from the cache" in err and "<- chosen" not in err
    assert "measuring this CPU" not in err
    assert f"the CPU is busy: load average {load:.1f} on {cores} cores" in err


def test_a_busy_cpu_is_said_once_an_experiment(monkeypatch, tmp_path, capsys):
    """Each run of an experiment (``run_series``) measures its own load; the first run that
    finds the CPU busy says so for all of them. A run alone says it as ever."""
    from resnetlab.engine.train import run_series

    cores = calibrate.available_cpus()
    loads = iter(calibrate.BUSY_LOAD * cores + 1 + i / 10 for i in range(10))
    monkeypatch.setattr(calibrate, "_load_average", lambda: (next(loads),) * 3)
    common = dict(model="resnet8", data="digits", input_size=8, batch_size=64, max_steps=1)
    with run_series():
        for name in ("a", "b"):
            train(**common, device="cpu", out=str(tmp_path / name))
    assert capsys.readouterr().err.count("the CPU is busy: load average") == 1
    train(**common, device="cpu", out=str(tmp_path / "alone"))
    assert capsys.readouterr().err.count("the CPU is busy: load average") == 1


def test_what_the_log_says_of_the_speed_choices():
    assert calibrate.speed_lines(None, "cuda", detailed=False) == []
    assert calibrate.speed_lines(None, "cuda", detailed=True) == [
        "speed on cuda: fixed choices (only CPUs are calibrated)"
    ]
    cached = CpuPlan(how="from the cache", steps={"fp32 channels-last": [0.1, 0.1, 0.1]})
    with command_line():
        said = calibrate.speed_lines(cached, "cpu", detailed=False)
    assert said == [
        "CPU plan: fp32, channels-last (from the cache); --explain-speed shows the timings"
    ]
    assert calibrate.speed_lines(cached, "cpu", detailed=False) == [
        "CPU plan: fp32, channels-last (from the cache); explain_speed=True shows the timings"
    ]
    assert calibrate.speed_lines(cached, "cpu", detailed=True) == cached.explain()
    off = CpuPlan(how="not calibrated: RESNETLAB_CALIBRATE=off")
    assert calibrate.speed_lines(off, "cpu", detailed=False) == [off.describe()]


def test_the_matrix_product_rate_is_measured_only_where_the_cpu_has_the_instructions(
    calibrating, monkeypatch
):
    machine = FakeMachine({})
    monkeypatch.setattr(calibrate, "measure_in_turns", machine)
    cpu = {"model": "Test CPU", "family": "1/2/3", "capability": "AVX2", "amx": False}
    monkeypatch.setattr(calibrate, "cpu_info", lambda: {**cpu, "bf16": False})
    assert calibrate.cpu_matmul_tflops("bf16") is None and machine.timed == []
    assert calibrate.cpu_matmul_tflops("fp16") is None and machine.timed == []
    assert calibrate.cpu_matmul_tflops("fp32") == pytest.approx(2 * 2048**3 / 0.01 / 1e12)
    monkeypatch.setattr(calibrate, "cpu_info", lambda: {**cpu, "bf16": True})
    assert calibrate.cpu_matmul_tflops("bf16") == pytest.approx(2 * 2048**3 / 0.01 / 1e12)


@pytest.mark.parametrize(
    ("threads", "counts"), [(1, [1]), (2, [2, 1]), (3, [3, 1]), (16, [16, 8, 4, 2]), (6, [6, 3, 1])]
)
def test_the_thread_counts_tried_are_halvings(threads, counts):
    assert calibrate.thread_counts(threads) == counts


@pytest.mark.parametrize(
    ("times", "chosen"),
    [
        ({4: 1.0, 2: 0.6, 1: 0.65}, 2),  # the fastest, 40% ahead
        ({4: 1.0, 2: 0.95, 1: 0.8}, None),  # under the 25% margin: PyTorch's count
        ({4: 1.0, 2: 1.3, 1: 2.0}, None),
    ],
)
def test_fewer_threads_are_chosen_where_the_step_is_faster_on_them(
    monkeypatch, tmp_path, times, chosen
):
    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "cache"))
    fake_cpu(monkeypatch, threads=4)
    machine = FakeMachine(BF16_WINS, threads=times)
    plan = _plan(machine)
    assert plan.threads == chosen and torch.get_num_threads() == 4  # (put back)
    assert list(plan.thread_steps) == ["4 threads", "2 threads", "1 thread"]
    assert machine.timed[-1].endswith(f", {plan.candidate.name}, threads")
    described = plan.describe()
    assert (", 2 threads of 4 " in described) is (chosen == 2)
    explained = "\n".join(plan.explain())
    assert "the chosen step on fewer threads" in explained
    assert _plan(FakeMachine(BF16_WINS)).threads == chosen  # cached


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        *[("4", True), ("4,2", True), (" 3 ", True)],
        *[("", False), ("0", False), ("-2", False), ("abc", False), ("2.5", False)],
    ],
)
def test_a_thread_count_set_by_omp_num_threads_is_kept(value, kept, monkeypatch, tmp_path):
    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "cache"))
    fake_cpu(monkeypatch, threads=4)
    monkeypatch.setenv("OMP_NUM_THREADS", value)  # OpenMP ignores what is not a count
    machine = FakeMachine(BF16_WINS, threads={1: 0.1})
    plan = _plan(machine)
    assert (plan.threads is None) is kept
    assert any(w.endswith("threads") for w in machine.timed) is not kept


def test_training_runs_on_the_chosen_threads_and_puts_them_back(monkeypatch):
    before = torch.get_num_threads()
    seen = []
    with calibrate.cpu_threads(calibrate.CpuPlan(threads=1)):
        seen.append(torch.get_num_threads())
    with calibrate.cpu_threads(calibrate.CpuPlan()):  # none chosen: untouched
        seen.append(torch.get_num_threads())
    assert seen == [1, before] and torch.get_num_threads() == before


def test_a_run_trains_on_the_threads_the_calibration_chose(monkeypatch, tmp_path):

    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "cache"))
    fake_cpu(monkeypatch, threads=2)
    monkeypatch.setattr(calibrate, "measure_in_turns", FakeMachine(BF16_WINS, threads={1: 0.5}))
    during = threads_per_step(monkeypatch)
    common = dict(model="resnet8", data="digits", input_size=8, batch_size=64, max_steps=2)
    result = train(**common, device="cpu", out=str(tmp_path / "run"))
    assert during == [1, 1] and torch.get_num_threads() == 2
    assert result.summary["status"] == "finished"


def test_a_resumed_run_keeps_the_plan_it_started_with(calibrating, monkeypatch, tmp_path, capsys):
    common = dict(model="resnet8", data="digits", input_size=8, batch_size=64, device="cpu")
    common |= dict(subset=320, val_subset=100)
    monkeypatch.setattr(calibrate, "measure_in_turns", FakeMachine(FP32_NCHW_WINS))
    run = train(**common, max_steps=2, out=str(tmp_path / "run")).run_dir
    assert json.loads((run / "cpu_plan.json").read_text())["precision"] == "fp32"
    # Measured again (another cache, as after a busy first measurement): bf16 would win now.
    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "other-cache"))
    monkeypatch.setattr(calibrate, "measure_in_turns", FakeMachine(BF16_WINS))
    capsys.readouterr()
    train(resume=run, max_steps=4)
    err = capsys.readouterr().err
    assert "CPU plan: fp32, NCHW" in err and "kept from the run's start" in err
    assert "measuring this CPU" not in err
    (run / "cpu_plan.json").write_text("{broken")
    with pytest.warns(SettingWarning, match="cannot read the CPU plan .* measures the CPU again"):
        train(resume=run, max_steps=5)
    assert "CPU plan: bf16 autocast" in capsys.readouterr().err
    # A precision or layout given on resuming is the one it trains with from there on, not
    # recorded in config.json while the kept plan trains.
    assert main(["train", "--resume", str(run), "--max-steps", "6", "--precision", "fp32"]) == 0
    assert "CPU plan: fp32" in capsys.readouterr().err
    assert json.loads((run / "cpu_plan.json").read_text())["precision"] == "fp32"
    assert json.loads((run / "summary.json").read_text())["precision"] == "fp32"
    assert main(["train", "--resume", str(run), "--max-steps", "7", "--no-channels-last"]) == 0
    assert "CPU plan: fp32, NCHW" in capsys.readouterr().err
    assert json.loads((run / "cpu_plan.json").read_text())["channels_last"] is False


@pytest.mark.parametrize(
    ("batch_size", "timed_batch", "steps"),
    [
        (32, 32, 500),  # a light step is timed whole: 500 steps
        (128, 128, 500),
        (32, 8, 125),  # ResNet-18 or -50 at 224 px: timed at 8 images
        (32, 21, 329),  # resnet50_keras at 64 px
        (64, 8, 63),
        (8, 8, 500),
    ],
)
def test_a_run_measures_from_the_work_of_500_timed_steps(batch_size, timed_batch, steps):
    assert calibrate.MEASURE_MIN_STEPS == 500
    assert calibrate.measured_from(batch_size, timed_batch) == steps


def test_a_run_of_heavy_steps_measures_sooner(calibrating, monkeypatch):
    monkeypatch.setattr(calibrate, "MEASURE_MIN_STEPS", 500)
    config = TrainConfig(model="resnet8", batch_size=64, input_size=8)
    per_image = calibrate.step_flops(config, 10, 8)
    monkeypatch.setattr(calibrate, "STEP_FLOPS_BUDGET", 8 * per_image)  # timed at 8 images
    machine = FakeMachine(BF16_WINS)
    short = plan_cpu(config, num_classes=10, input_size=8, measure=machine, run_steps=62)
    assert machine.timed == [] and short.how == (
        "not calibrated: a run of 62 steps would spend longer measuring than training; runs "
        "of 63 steps or more (at batch 64) measure the CPU, once"
    )
    # A batch larger than the data: each step trains the 10 images there are, not 64, so
    # 63 steps are the work of 79 timed steps of 8 images; measuring waits for 400 of them
    # (a one-step run of batch 100,000 on 1,438 images spent a minute measuring)
    few = plan_cpu(
        config, num_classes=10, input_size=8, measure=machine, run_steps=63, step_images=10
    )
    assert machine.timed == [] and few.how == (
        "not calibrated: a run of 63 steps would spend longer measuring than training; runs "
        "of 400 steps or more (at 10 images a step) measure the CPU, once"
    )
    measured = plan_cpu(config, num_classes=10, input_size=8, measure=machine, run_steps=63)
    assert measured.how == "measured now" and measured.batch == 8 and machine.timed


def test_a_short_run_measures_nothing_and_takes_what_the_cache_holds(
    calibrating, monkeypatch, tmp_path, capsys
):
    monkeypatch.setattr(calibrate, "MEASURE_MIN_STEPS", 500)
    common = dict(model="resnet8", data="digits", input_size=8, batch_size=64, device="cpu")
    machine = FakeMachine(FP32_NCHW_WINS)
    monkeypatch.setattr(calibrate, "measure_in_turns", machine)
    train(**common, max_steps=3, out=str(tmp_path / "short"))
    err = capsys.readouterr().err
    assert "CPU plan: fp32, channels-last (not calibrated: a run of 3 steps would spend " in err
    assert "runs of 500 steps or more (at batch 64) measure the CPU, once" in err
    assert not machine.timed
    assert "measuring this CPU" not in err
    config = TrainConfig.from_recipe("modern", **common)
    measured = plan_cpu(config, num_classes=10, input_size=8, measure=machine)  # (bench)
    assert measured.how == "measured now" and not measured.channels_last
    train(**common, max_steps=3, out=str(tmp_path / "again"))
    assert "CPU plan: fp32, NCHW" in capsys.readouterr().err  # from the cache


@pytest.mark.skipif(
    not list(Path("/proc/self/task").glob("*/children")),
    reason="needs Linux's /proc/<pid>/task/<tid>/children",
)
def test_the_cpu_time_of_child_processes_is_the_runs_own_not_other_work():
    """A streaming loader's worker processes are the run's own work: their CPU time counts
    with this process's, so that a run does not take its workers for another job."""
    code = (
        "import sys, time\n"
        "start = time.process_time()\n"
        "while time.process_time() - start < 0.3: pass\n"
        "print('done', flush=True)\n"
        "sys.stdin.read()\n"
    )
    before = calibrate.children_seconds()
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline() == "done\n"
        assert calibrate.children_seconds() - before >= 0.3 - 0.02  # (clock ticks of 10 ms)
    finally:
        child.kill()
        child.wait()


def test_the_calibration_times_a_1_ms_call_several_to_a_round(monkeypatch):
    # The optimizer's step takes about 1 ms: alone in a round, one lost time slice moves
    # its ratio several-fold. Every timing of the calibration goes through measure_in_turns.
    counts = {"foreach": 0, "fused": 0}
    now = [0.0]

    def call(name):
        counts[name] += 1
        now[0] += 0.001

    calls = {name: (lambda name=name: call(name)) for name in counts}
    monkeypatch.setattr(timing.time, "perf_counter", lambda: now[0])
    seconds = calibrate.measure_in_turns("optimizer", calls, 3)
    number = math.ceil(calibrate.MIN_INTERVAL / 0.001)
    assert 1 < number <= calibrate.MAX_NUMBER
    assert counts == {"foreach": 2 + 3 * number, "fused": 2 + 3 * number}  # 2: warm-up, probe
    assert seconds == {name: pytest.approx([0.001] * 3) for name in counts}
