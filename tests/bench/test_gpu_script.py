"""``benchmarks/gpu.sh``, the GPU measurements in one bounded run, checked on the CPU with
its tiny settings (``SMOKE=1``): the steps it runs, skips and refuses, and where it writes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from resnetlab.engine import calibrate

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu.sh"


def _run(*args, **env):
    env = {**os.environ, "SMOKE": "1", "PYTHON": sys.executable, **env}
    return subprocess.run(
        ["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env
    )


class _QuietCores:
    """``calibrate.OtherWork`` on cores where nothing else runs."""

    def cores(self) -> float:
        return 0.0


@pytest.fixture
def matmul_rate_cached(matmul_rate_given, monkeypatch) -> None:
    """The CPU's matrix-product rate in the cache folder the script's processes share, as a
    run on quiet cores leaves it there: the r20 step's ``bench train`` reads it rather than
    timing 16 products of 2048 x 2048 matrices (see ``matmul_rate_given``)."""
    monkeypatch.setattr(calibrate, "OtherWork", _QuietCores)
    calibrate.cpu_matmul_tflops("fp32")


@pytest.mark.skipif(sys.platform == "win32", reason="a bash script")
def test_a_step_runs_and_a_step_that_no_longer_fits_is_skipped(tmp_path, matmul_rate_cached):
    out = tmp_path / "out"
    # A budget of 200 s: the r20 step has 60 s (a few seconds' work on a slow machine), and
    # the degradation step's limit (420 s) is over twice what can be left: skipped unstarted.
    records = tmp_path / "records.jsonl"
    done = _run("unused.tar.gz", out, 200, "r20", "degradation", RESULTS=records)
    assert done.returncode == 0, done.stderr
    assert "== r20: exit 0" in done.stdout
    assert "== degradation: skipped" in done.stdout
    (record,) = [json.loads(line) for line in records.read_text().splitlines()]
    assert record["kind"] == "train" and record["model"] == "resnet20"
    assert record["peer"] is not None  # --vs torchvision: the usual loop beside ours
    assert "resnet20" in (out / "r20.log").read_text()
    assert not (out / "degradation.log").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="a bash script")
def test_an_unknown_step_is_refused_before_anything_runs(tmp_path):
    done = _run("unused.tar.gz", tmp_path / "out", 60, "r20", "r99")
    assert done.returncode == 2
    assert "unknown step 'r99'; the steps: tests r50 r56 r20" in done.stderr
    assert not (tmp_path / "out").exists()
