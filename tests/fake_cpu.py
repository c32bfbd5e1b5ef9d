"""A CPU with fixed timings, for testing what the calibration decides without timing."""

import torch

from resnetlab.engine import calibrate


class FakeMachine:
    """Timings by rule: matrix products win on 64-channel maps; steps as given (seconds),
    a step with oneDNN everywhere ``onednn_only`` times its way's step unless given; the
    chosen step on ``n`` threads ``threads[n]`` (default 1.0: no count faster than another);
    the optimizer's step with each kernel ``optimizer`` (default: foreach and fused alike)."""

    def __init__(
        self,
        steps: dict[str, float],
        onednn_only: float = 1.1,
        threads: dict[int, float] | None = None,
        optimizer: dict[str, float] | None = None,
    ) -> None:
        self.steps = steps
        self.onednn_only = onednn_only
        self.threads = threads or {}
        self.optimizer = optimizer or {"foreach": 0.01, "fused": 0.01}
        self.timed: list[str] = []

    def __call__(self, what, calls, rounds=3):
        self.timed.append(what)
        if set(calls) == {"matmul"}:  # the machine's matrix-product rate: 1.7 TFLOP/s
            return {"matmul": [0.01] * rounds}
        if set(calls) == {"onednn", "matmul"}:
            matmul = 0.5 if what.split(" b")[1].split(" ", 1)[1].startswith("64x") else 1.5
            return {"onednn": [1.0] * 3, "matmul": [matmul] * 3}
        if set(calls) == {"foreach", "fused"}:
            return {name: [self.optimizer[name]] * 3 for name in calls}
        if what.endswith(", threads"):
            return {name: [self.threads.get(int(name.split()[0]), 1.0)] * 3 for name in calls}
        return {name: [self._step(name)] * 3 for name in calls}

    def _step(self, name: str) -> float:
        if name in self.steps or not name.endswith(" oneDNN-only"):
            return self.steps[name]
        return self.steps[name.removesuffix(" oneDNN-only")] * self.onednn_only


def fake_cpu(monkeypatch, *, bf16: bool = True, threads: int | None = None) -> list[float]:
    """Calibration on (the suite turns it off), on a quiet CPU with or without bf16
    hardware; returns the cores' worth of other work on it (``OtherWork``, while timings
    are measured and when a run looks before redoing shared ones), which a test may
    change. The thread count stays
    as it is (``OMP_NUM_THREADS``), so that no verdict depends on the machine's; with
    ``threads`` PyTorch says it has that many and the calibration may choose fewer
    (``torch.set_num_threads`` then only records what it is asked)."""
    monkeypatch.delenv("RESNETLAB_CALIBRATE")
    if threads is None:
        monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))
    else:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        current = [threads]
        monkeypatch.setattr(torch, "get_num_threads", lambda: current[0])
        monkeypatch.setattr(torch, "set_num_threads", lambda n: current.__setitem__(0, n))
    info = {"model": "Test CPU", "family": "1/2/3", "capability": "AVX512", "bf16": bf16}
    monkeypatch.setattr(calibrate, "cpu_info", lambda: {**info, "amx": False})
    others = [0.0]

    class FakeOtherWork:
        def cores(self) -> float:
            return others[0]

    monkeypatch.setattr(calibrate, "OtherWork", FakeOtherWork)
    monkeypatch.setattr(calibrate, "PROBE_SECONDS", 0.0)
    monkeypatch.setattr(calibrate, "MEASURE_MIN_STEPS", 1)  # the tests' runs are short
    monkeypatch.setattr(calibrate, "available_cpus", lambda: 2)
    return others


def threads_per_step(monkeypatch) -> list[int]:
    """PyTorch's thread count at each training step of the runs that follow, as they go."""
    from resnetlab.engine.train import Trainer

    during: list[int] = []
    step = Trainer._train_step

    def counting_step(self, x, y):
        during.append(torch.get_num_threads())
        return step(self, x, y)

    monkeypatch.setattr(Trainer, "_train_step", counting_step)
    return during
