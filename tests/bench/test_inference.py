import json

import pytest

from resnetlab.bench.table import summarize
from resnetlab.cli import main


def test_bench_infer_records_latency_and_throughput(tmp_path, capsys):
    out = tmp_path / "infer.jsonl"
    args = ["bench", "infer", "--model", "resnet18", "--input-size", "32", "--batch-size", "4"]
    args += ["--steps", "2", "--warmup", "1", "--repeats", "2", "--vs", "torchvision"]
    assert main([*args, "--device", "cpu", "--results", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["kind"] == "infer" and record["settings"]["channels_last"] is True
    for side in ("ours", "peer"):
        latency, rate = record[side]["latency_ms"], record[side]["images_per_s"]
        assert 0 < latency["min"] <= latency["median"] <= latency["max"]
        assert 0 < rate["min"] <= rate["median"] <= rate["max"]
    assert "BN folded" in record["ours"]["what"]
    assert record["peer"]["what"] == "torchvision.models.resnet18"
    assert record["ratio"]["latency"]["median"] > 0 and record["ratio"]["throughput"]["median"] > 0
    assert "latency" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnxruntime", "onnxruntime-int8"])
def test_bench_infer_runs_onnxruntime_against_our_pytorch_path(tmp_path, runtime):
    out = tmp_path / "infer.jsonl"
    args = ["bench", "infer", "--model", "resnet8", "--input-size", "16", "--batch-size", "4"]
    args += ["--steps", "1", "--warmup", "1", "--repeats", "2", "--runtime", runtime]
    assert main([*args, "--device", "cpu", "--results", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["settings"]["runtime"] == runtime
    assert record["settings"]["precision"] == ("int8" if runtime.endswith("int8") else "fp32")
    assert record["ours"]["what"].startswith("onnxruntime ")
    assert record["peer"]["what"] == "resnetlab resnet8, the predict/eval path (BN folded)"
    assert record["ratio"]["latency"]["median"] > 0 and record["ratio"]["throughput"]["median"] > 0
    assert (
        f"16x16, batch 4, {record['settings']['precision']}, onnxruntime"
        in summarize(record)["what"]
    )


def test_bench_infer_onnxruntime_compares_with_our_fp32_cpu_path_only(capsys):
    args = ["bench", "infer", "--model", "resnet8", "--runtime", "onnxruntime", "--no-save"]
    assert main([*args, "--vs", "torchvision"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --runtime onnxruntime runs against our PyTorch path in fp32")
