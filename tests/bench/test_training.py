import json
import re
import shlex
import statistics

import pytest
import torch

import resnetlab
from resnetlab.analysis import summarize
from resnetlab.bench import bench_train
from resnetlab.bench.sides import bench_spec
from resnetlab.cli import build_parser, main

TINY = ["--batch-size", "4", "--input-size", "16", "--steps", "1", "--warmup", "1"]


def test_bench_train_writes_a_json_line_per_measurement(tmp_path, capsys, monkeypatch):
    # How PyTorch's threads wait, by GNU's OpenMP and by Intel's: recorded as set.
    monkeypatch.setenv("GOMP_SPINCOUNT", "3000")
    monkeypatch.setenv("KMP_BLOCKTIME", "0")
    results = tmp_path / "results"
    args = ["bench", "train", "--model", "resnet20", *TINY, "--repeats", "2", "--vs", "torchvision"]
    assert main([*args, "--device", "cpu", "--results", str(results)]) == 0
    assert main([*args, "--device", "cpu", "--results", str(results)]) == 0
    (path,) = results.glob("*.jsonl")
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    record = json.loads(lines[0])
    assert record["kind"] == "train" and record["model"] == "resnet20"
    assert record["machine"] == path.stem
    assert record["versions"]["torch"] == torch.__version__
    assert record["versions"]["resnetlab"] == resnetlab.__version__
    assert re.search(r", \d+ cores?$", record["device"]) and record["threads"] >= 1
    assert set(record["cpu"]) == {"model", "family", "capability", "bf16", "amx", "fp16"}
    assert record["cpu"]["capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["git"] is None or len(record["git"]["commit"]) == 12
    assert record["load_before"] is None or len(record["load_before"]) == 3
    assert record["date"][:2] == "20"
    assert (record["gomp_spincount"], record["kmp_blocktime"]) == ("3000", "0")

    settings, ours, peer = record["settings"], record["ours"], record["peer"]
    assert settings == {
        "batch_size": 4,
        "input_size": 16,
        "num_classes": 10,
        "precision": "fp32",  # auto on a CPU
        "channels_last": True,
        "compile": False,
        "cuda_graphs": False,
        "optimizer": "SGD (foreach)",
        "steps": 1,
        "warmup": 1,
        "repeats": 2,
    }
    # Stored raw: every repeat's figure; the ratio is taken repeat by repeat.
    rates, peer_rates = ours["images_per_s"]["values"], peer["images_per_s"]["values"]
    assert len(rates) == len(peer_rates) == 2
    assert ours["images_per_s"]["median"] == statistics.median(rates)
    assert record["ratio"]["values"] == [o / p for o, p in zip(rates, peer_rates, strict=True)]
    assert ours["peak_memory_mib"] is None and ours["graphed"] is False
    assert ours["cpu_plan"]["how"] == "not calibrated: RESNETLAB_CALIBRATE=off"
    assert "ResNet-20 written the usual way" in peer["what"]
    assert (peer["precision"], peer["channels_last"], peer["compile"]) == ("fp32", False, False)
    assert peer["optimizer"] == "SGD (for-loop, PyTorch's default)"
    # A training step is about three forward passes: backward costs about two.
    flops = record["train_flops_per_image"]
    forward = summarize(resnetlab.create_model("resnet20"), 16).flops
    assert 2.5 * forward < flops < 3 * forward
    # Each side against the machine's matrix-product rate in its precision (both fp32 here).
    assert set(record["matmul_tflops"]) == {"fp32"}
    rate = record["matmul_tflops"]["fp32"]
    for side in (ours, peer):
        achieved = side["images_per_s"]["median"] * flops / 1e12
        assert side["tflops"] == pytest.approx(achieved)
        assert side["fraction_of_matmul"] == pytest.approx(achieved / rate)

    out = capsys.readouterr().out
    assert "ours/peer:" in out and "usual way" in out

    # The recorded command reruns the measurement: every option is spelled out.
    words = shlex.split(record["command"])
    assert words[:3] == ["resnetlab", "bench", "train"]
    again = build_parser().parse_args(words[1:])
    assert (again.model, again.batch_size, again.input_size, again.vs) == (
        "resnet20",
        4,
        16,
        "torchvision",
    )


def test_the_recorded_command_keeps_a_setting_turned_off(tmp_path, matmul_rate_given):
    # --no-channels-last is not the default (ours: channels-last or what calibration
    # chose), so the command that reruns the measurement must say it.
    results = tmp_path / "results.jsonl"
    args = ["bench", "train", "--model", "resnet8", *TINY, "--repeats", "1", "--device", "cpu"]
    assert main([*args, "--no-channels-last", "--no-cuda-graphs", "--results", str(results)]) == 0
    record = json.loads(results.read_text())
    assert record["settings"]["channels_last"] is False
    words = shlex.split(record["command"])
    assert "--no-channels-last" in words and "--no-cuda-graphs" in words
    assert "--no-compile" not in words  # a plain switch left off is the default: not written
    again = build_parser().parse_args(words[1:])
    assert (again.channels_last, again.cuda_graphs, again.compile) == (False, False, False)


def test_named_settings_apply_to_torchvision_too(matmul_rate_given):
    record = bench_train(
        "resnet18",
        batch_size=2,
        input_size=32,
        precision="fp32",
        channels_last=False,
        steps=1,
        warmup=1,
        repeats=1,
        vs="torchvision",
        device="cpu",
    )
    assert record["peer"]["what"] == "torchvision.models.resnet18"
    assert record["settings"]["channels_last"] is False and record["peer"]["channels_last"] is False
    assert record["settings"]["num_classes"] == 1000


def test_bench_train_mistakes_are_one_line_errors(capsys, torch_2_5):
    assert main(["bench", "train", "--model", "plain18", *TINY, "--vs", "torchvision"]) == 2
    assert "torchvision has no plain18" in capsys.readouterr().err
    assert main(["bench", "train", "--model", "resnet20", "--steps", "0", "--no-save"]) == 2
    assert capsys.readouterr().err == "error: --steps must be at least 1, got 0\n"
    assert main(["bench", "train", "--model", "resnet20", "--repeats", "0", "--no-save"]) == 2
    assert capsys.readouterr().err == "error: --repeats must be at least 1, got 0\n"
    assert main(["bench", "train", "--model", "resnet5", "--no-save"]) == 2
    assert "unknown model 'resnet5'" in capsys.readouterr().err
    assert main(["bench", "train", "--model", "resnet20", "--warmup", "-1", "--no-save"]) == 2
    assert capsys.readouterr().err == "error: --warmup must be at least 0, got -1\n"
    assert main(["bench", "train", "--model", "resnet20", "--machine", "a/b"]) == 2
    assert "--machine 'a/b': letters, digits" in capsys.readouterr().err
    args = ["bench", "data", "--data", "digits", "--workers", "-1", "--no-save"]
    assert main(args) == 2
    assert "--workers must be at least 0" in capsys.readouterr().err
    with pytest.raises(resnetlab.ResnetlabError, match="needs a CUDA device"):
        bench_train("resnet20", cuda_graphs=True, device="cpu", steps=1, repeats=1)


@pytest.mark.parametrize("name", ["preresnet20", "plain18"])
def test_a_model_without_a_peer_is_refused_before_ours_is_measured(name, capsys, _cache_in_tmp):
    args = ["bench", "train", "--model", name, *TINY, "--vs", "torchvision", "--no-save"]
    assert main([*args, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1  # no CPU measuring first
    fix = "leave out --vs to time ours alone" if name == "preresnet20" else "compare resnet18"
    assert fix in err
    assert not (_cache_in_tmp / "calibration").exists()
    common = dict(input_size=8, num_classes=None, precision=None, channels_last=None)
    common.update(device="cpu", steps=1, warmup=0, repeats=1, threads=None, compile=False)
    for training in (True, False):  # bench infer too: before ours is built
        with pytest.raises(resnetlab.ResnetlabError, match=f"{name}"):
            bench_spec(name, training=training, batch_size=2, vs="torchvision", **common)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bench_train_on_a_gpu_with_cuda_graphs():
    record = bench_train(
        "resnet20",
        batch_size=256,
        precision="bf16",
        cuda_graphs=True,
        steps=5,
        repeats=2,
        vs="torchvision",
        device="cuda",
    )
    ours = record["ours"]
    assert ours["graphed"] is True and record["settings"]["optimizer"] == "SGD (fused)"
    assert ours["peak_memory_mib"] > 0 and record["peer"]["peak_memory_mib"] > 0
    assert record["matmul_tflops"]["bf16"] > 10 and "cpu_plan" not in ours
    assert 0 < ours["fraction_of_matmul"] < 1
    assert record["versions"]["cuda"] == torch.version.cuda


def test_explain_speed_prints_the_cpu_plan(capsys, matmul_rate_given):
    args = ["bench", "train", "--model", "resnet8", *TINY, "--device", "cpu", "--no-save"]
    assert main([*args, "--explain-speed"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "CPU plan: fp32, channels-last (not calibrated: RESNETLAB_CALIBRATE=off)"
    assert main([*args, "--explain-speed", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["kind"] == "train"  # stdout is the record alone
    assert err.splitlines()[-1].startswith("CPU plan: fp32, channels-last")


def test_compiled_runs_are_warmed_up_past_their_compilation():
    common = dict(input_size=8, num_classes=None, precision=None, channels_last=None)
    common.update(device="cpu", steps=1, repeats=1, vs=None, threads=None)
    for training in (True, False):
        spec = bench_spec(
            "resnet8", training=training, batch_size=2, compile=True, warmup=0, **common
        )
        assert spec.warmup == 2  # the first calls compile: 0 would time the compiler
        spec = bench_spec(
            "resnet8", training=training, batch_size=2, compile=False, warmup=0, **common
        )
        assert spec.warmup == 0
