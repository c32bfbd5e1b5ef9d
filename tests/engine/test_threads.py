"""The thread count during a run on shared cores, driven by given step times and other work:
nothing here depends on measured speed."""

import json

import pytest
import torch

from resnetlab.engine import TrainConfig, calibrate, threads, train
from resnetlab.engine.calibrate import CpuPlan
from resnetlab.engine.threads import (
    MAX_RETRY_SECONDS,
    RETRY_SECONDS,
    TRIAL_ROUNDS,
    WINDOW_SECONDS,
    ThreadWatch,
    watch_threads,
)

from ..fake_cpu import FakeMachine, fake_cpu, threads_per_step

# A busy process beside a bf16 run on 2 cores (README: Speed): 1.90 s a step on 2 threads,
# 0.52 on 1; in float32 the two counts were close (0.89 and 0.84 s).
CONTENDED_BF16 = {2: 1.90, 1: 0.52}
CONTENDED_FP32 = {2: 0.89, 1: 0.84}


class Cores:
    """The other work each ``OtherWork`` window reports, and the thread counts set."""

    def __init__(self, monkeypatch, others: float | None = 0.0) -> None:
        self.others = others
        self.set: list[int] = []
        cores = self

        class FakeOtherWork:
            def cores(self) -> float | None:
                return cores.others

        monkeypatch.setattr(calibrate, "OtherWork", FakeOtherWork)
        monkeypatch.setattr(torch, "set_num_threads", self.set.append)


def _steps(watch: ThreadWatch, times: dict[int, float], n: int) -> None:
    """``n`` training steps, each as long as ``times`` says for the count the watch set."""
    for _ in range(n):
        watch.after_step(times[watch.threads])


def _until_tried(watch: ThreadWatch, cores: Cores, times: dict[int, float]) -> float:
    """Steps until the watch tries the counts again; the training time that took."""
    cores.set.clear()
    spent = 0.0
    while not cores.set:
        spent += times[watch.threads]
        watch.after_step(times[watch.threads])
    _steps(watch, times, 2 * TRIAL_ROUNDS)  # the rest of the trial
    return spent


def test_shared_cores_train_on_the_count_that_ran_fastest_on_them(monkeypatch):
    cores = Cores(monkeypatch)
    said = []
    watch = ThreadWatch([2, 1], said.append)
    _steps(watch, CONTENDED_BF16, 20)  # quiet: nothing tried
    assert cores.set == [] and watch.threads == 2
    cores.others = 1.0
    spent = _until_tried(watch, cores, CONTENDED_BF16)
    assert spent <= WINDOW_SECONDS + 1.9  # at the next look at the cores
    # Three rounds of one step on each count, then the fastest.
    assert cores.set == [2, 1, 2, 1, 2, 1, 1] and watch.threads == 1
    assert said == [
        "threads: other work holds 1.0 cores' worth; training on 1 thread (a step took "
        "2 threads 1.90 s, 1 thread 0.52 s; OMP_NUM_THREADS fixes the count)"
    ]
    # Still shared: tried again after RETRY_SECONDS of training, then after twice as long.
    spent = _until_tried(watch, cores, CONTENDED_BF16)
    assert RETRY_SECONDS <= spent <= RETRY_SECONDS + WINDOW_SECONDS + 0.52
    assert cores.set == [2, 1, 2, 1, 2, 1, 1] and watch.retry == 2 * RETRY_SECONDS
    assert len(said) == 1  # the same choice is not said again
    # Quiet again: back to the plan's count at the next look, said once.
    cores.others = 0.0
    cores.set.clear()
    _steps(watch, CONTENDED_BF16, 10)
    assert cores.set == [2] and watch.threads == 2 and watch.retry == RETRY_SECONDS
    assert said[-1] == "threads: the cores are quiet again; back to 2 threads"
    cores.others = 1.0  # shared once more: tried at once
    assert _until_tried(watch, cores, CONTENDED_BF16) <= WINDOW_SECONDS + 1.9
    # Another answer on cores still shared (the other work eased): said, and asked again
    # after RETRY_SECONDS once more.
    eased = {2: 0.5, 1: 0.9}
    _until_tried(watch, cores, eased)
    assert watch.threads == 2 and watch.retry == RETRY_SECONDS
    assert said[-1].startswith("threads: other work holds 1.0 cores' worth; training on 2 threads")
    assert RETRY_SECONDS <= _until_tried(watch, cores, eased) <= RETRY_SECONDS + WINDOW_SECONDS + 1
    assert watch.retry == 2 * RETRY_SECONDS and len(said) == 4


def test_a_count_no_faster_by_the_margin_keeps_the_plans_and_asks_less_often(monkeypatch):
    cores = Cores(monkeypatch, others=1.0)
    said = []
    watch = ThreadWatch([2, 1], said.append)
    _until_tried(watch, cores, CONTENDED_FP32)
    assert cores.set == [2, 1, 2, 1, 2, 1, 2] and watch.threads == 2 and said == []
    for retry in (RETRY_SECONDS, 2 * RETRY_SECONDS, 4 * RETRY_SECONDS, 8 * RETRY_SECONDS):
        assert retry <= _until_tried(watch, cores, CONTENDED_FP32) <= retry + WINDOW_SECONDS + 1
    assert watch.retry == MAX_RETRY_SECONDS and said == []


@pytest.mark.parametrize(
    ("others", "why"),
    [
        (0.2, "between quiet and shared: no change either way"),
        (None, "the counters cannot be read (not Linux)"),
    ],
)
def test_other_work_not_known_to_share_the_cores_changes_nothing(monkeypatch, others, why):
    cores = Cores(monkeypatch, others=others)
    watch = ThreadWatch([4, 2, 1], [].append)
    _steps(watch, {4: 1.0, 2: 0.1, 1: 0.1}, 100)
    assert cores.set == [] and watch.threads == 4, why


def test_four_counts_take_turns_in_each_round(monkeypatch):
    cores = Cores(monkeypatch, others=2.0)
    said = []
    watch = ThreadWatch([4, 2, 1], said.append)
    _until_tried(watch, cores, {4: 1.0, 2: 0.6, 1: 0.8})
    _steps(watch, {4: 1.0, 2: 0.6, 1: 0.8}, 3)  # the third round
    assert cores.set == [4, 2, 1, 4, 2, 1, 4, 2, 1, 2] and watch.threads == 2
    assert "training on 2 threads" in said[0]


def test_work_between_epochs_runs_on_the_count_in_force_not_a_trials(monkeypatch):
    cores = Cores(monkeypatch, others=1.0)
    watch = ThreadWatch([2, 1], [].append)
    while not cores.set:  # until a trial begins
        watch.after_step(CONTENDED_BF16[watch.threads])
    watch.after_step(CONTENDED_BF16[2])  # the trial's first step; the next is on 1 thread
    assert watch.threads == 1
    cores.set.clear()
    with watch.settled():  # an epoch ends in the middle of the trial: validation
        assert cores.set == [2]  # the count the run had before the trial
    assert cores.set == [2, 1]  # the trial goes on where it was
    _steps(watch, CONTENDED_BF16, 2 * TRIAL_ROUNDS - 1)  # the rest of it: 1 thread chosen
    assert watch.threads == 1
    cores.set.clear()
    with watch.settled():  # no trial: the chosen count stays
        pass
    assert cores.set == [1, 1]


KEPT = CpuPlan(how="kept from the run's start, cpu_plan.json")  # what a resumed run has


@pytest.mark.parametrize(
    ("plan", "settings", "env", "counts"),
    [
        (CpuPlan(how="measured now"), {}, {}, [2, 1]),
        (KEPT, {}, {}, [2, 1]),
        (CpuPlan(how="from the cache", threads=1), {}, {}, None),  # one thread already
        (None, {}, {}, None),  # not the CPU
        (CpuPlan(how="not calibrated: RESNETLAB_CALIBRATE=off"), {}, {}, None),
        (KEPT, {}, {"RESNETLAB_CALIBRATE": "off"}, None),  # resumed, not calibrated
        (KEPT, {"compile": True}, {}, None),  # resumed --compile run
        (CpuPlan(how="measured now"), {"deterministic": True}, {}, None),
        (CpuPlan(how="measured now"), {}, {"OMP_NUM_THREADS": "2"}, None),  # fixed count
    ],
)
def test_which_runs_watch_their_cores(monkeypatch, plan, settings, env, counts):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    for name in ("OMP_NUM_THREADS", "RESNETLAB_CALIBRATE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = TrainConfig(model="resnet8", batch_size=8, **settings)
    watch = watch_threads(plan, config, [].append)
    assert (watch.counts if watch else None) == counts


@pytest.mark.parametrize(
    ("how", "watched"),
    [
        ("measured now", True),
        ("not calibrated: a run of 28 steps would spend longer measuring than training", False),
    ],
)
def test_a_resumed_run_watches_its_cores_only_where_its_start_did(
    monkeypatch, tmp_path, how, watched
):
    """A short run is not calibrated and keeps PyTorch's thread count, so that it ends as
    the same run does again; resumed (from its cpu_plan.json, and resumed once more from
    the plan that resumption wrote back), it keeps that count too, or it would end with
    other weights than the run that was never stopped."""
    from resnetlab.engine.train import CPU_PLAN_NAME, _stored_plan

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    for name in ("OMP_NUM_THREADS", "RESNETLAB_CALIBRATE"):
        monkeypatch.delenv(name, raising=False)
    config = TrainConfig(model="resnet8", batch_size=8)
    plan = CpuPlan(how=how)
    for _ in range(2):  # resumed, then resumed again
        (tmp_path / CPU_PLAN_NAME).write_text(json.dumps(plan.to_record()))
        plan = _stored_plan(tmp_path)
        assert (watch_threads(plan, config, [].append) is not None) == watched


def test_a_run_on_shared_cores_moves_its_thread_count_and_puts_it_back(
    monkeypatch, tmp_path, capsys
):
    from resnetlab.engine.train import Trainer

    others = fake_cpu(monkeypatch, threads=2)
    monkeypatch.setattr(
        calibrate, "measure_in_turns", FakeMachine({"fp32 channels-last": 1.0, "fp32 NCHW": 1.0})
    )
    monkeypatch.setattr(threads, "WINDOW_SECONDS", 0.0)  # a look after every step
    # What the counts measured is tested above; here one thread wins whatever they took.
    monkeypatch.setattr(threads, "choose", lambda timings, default, margin: "1 thread")
    during = []
    step = Trainer._train_step

    def counting_step(self, x, y):
        during.append(torch.get_num_threads())
        others[0] = 0.0 if len(during) == 9 else 1.0  # shared cores, quiet at step 9
        return step(self, x, y)

    monkeypatch.setattr(Trainer, "_train_step", counting_step)
    common = dict(model="resnet8", data="digits", input_size=8, batch_size=64, max_steps=10)
    result = train(**common, device="cpu", precision="fp32", out=str(tmp_path / "run"))
    assert during == [2, 2, 1, 2, 1, 2, 1, 1, 1, 2]
    assert torch.get_num_threads() == 2 and result.summary["status"] == "finished"
    err = capsys.readouterr().err
    assert "other work holds 1.0 cores' worth; training on 1 thread" in err
    assert "the cores are quiet again; back to 2 threads" in err


def quota_of(monkeypatch, tmp_path, cpu_max: str | None, *, torch_threads: int) -> list[int]:
    """A container whose ``cpu.max`` is ``cpu_max`` (None: no file) on a host of 32 cores,
    where PyTorch counts ``torch_threads``; returns the count PyTorch is set to, as it moves
    (the process's own count is never changed)."""
    from resnetlab.data import decode

    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text("0::/\n")
    (tmp_path / "sys/fs/cgroup").mkdir(parents=True)
    if cpu_max is not None:
        (tmp_path / "sys/fs/cgroup/cpu.max").write_text(cpu_max)
    monkeypatch.setattr(decode, "available_cpus", lambda: 32)
    monkeypatch.setattr(threads, "cpu_quota", lambda root="/": decode.cpu_quota(tmp_path))
    monkeypatch.setattr(threads, "usable_cpus", lambda root="/": decode.usable_cpus(tmp_path))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    current = [torch_threads]
    monkeypatch.setattr(torch, "get_num_threads", lambda: current[-1])
    monkeypatch.setattr(torch, "set_num_threads", current.append)
    return current


def test_pytorchs_count_is_lowered_to_a_cpu_quota(monkeypatch, tmp_path):
    set_to = quota_of(monkeypatch, tmp_path, "200000 100000", torch_threads=32)
    note = threads.fit_threads_to_quota()
    assert set_to == [32, 2]
    assert note == (
        "threads: 2, the CPU quota of this container (cpu.max 200000 100000), not PyTorch's 32 "
        "(OMP_NUM_THREADS fixes the count)"
    )


@pytest.mark.parametrize(
    "cpu_max, torch_threads, env",
    [
        ("400000 100000", 2, None),  # PyTorch's count already within the quota
        ("max 100000", 32, None),  # no quota
        (None, 32, None),  # no cpu.max to read
        ("200000 100000", 32, "32"),  # a count fixed from outside
    ],
)
def test_pytorchs_count_is_kept_within_a_quota_or_when_fixed(
    monkeypatch, tmp_path, cpu_max, torch_threads, env
):
    set_to = quota_of(monkeypatch, tmp_path, cpu_max, torch_threads=torch_threads)
    if env is not None:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    assert threads.fit_threads_to_quota() is None
    assert set_to == [torch_threads]


def test_a_run_in_a_container_trains_and_calibrates_on_its_quotas_count(
    monkeypatch, tmp_path, capsys
):

    fake_cpu(monkeypatch, threads=8)  # then a quota of 1.5 CPUs on 32 cores
    set_to = quota_of(monkeypatch, tmp_path, "150000 100000", torch_threads=8)
    monkeypatch.setattr(
        calibrate, "measure_in_turns", FakeMachine({"fp32 channels-last": 1.0, "fp32 NCHW": 1.0})
    )
    during = threads_per_step(monkeypatch)
    common = dict(model="resnet8", data="digits", input_size=8, batch_size=64, max_steps=2)
    result = train(**common, device="cpu", precision="fp32", out=str(tmp_path / "run"))
    assert result.summary["status"] == "finished"
    assert during == [2, 2] and set_to[1] == 2
    plan = json.loads((tmp_path / "run/cpu_plan.json").read_text())
    assert plan["machine"]["threads"] == 2  # the calibration's key and its candidates
    assert "threads: 2, the CPU quota of this container (cpu.max 150000 100000), not " in (
        capsys.readouterr().err
    )
