from pathlib import Path

import pytest

from resnetlab.engine import calibrate

from ..fake_cpu import FakeMachine


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch) -> Path:
    """No benchmark test writes to the user's cache folder."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("RESNETLAB_CACHE", str(cache))
    return cache


@pytest.fixture
def matmul_rate_given(monkeypatch) -> None:
    """The CPU's matrix-product rate, which ``bench train`` puts each side's rate against,
    taken from ``FakeMachine`` (1.7 TFLOP/s) rather than timed: 16 products of 2048 x 2048
    matrices, seconds of CPU, for a test that asserts nothing about the rate. The rate is
    timed, and checked, by test_bench_train_writes_a_json_line_per_measurement."""
    monkeypatch.setattr(calibrate, "measure_in_turns", FakeMachine({}))
