import json

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
