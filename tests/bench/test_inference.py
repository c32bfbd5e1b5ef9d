import json
import re

import pytest

from resnetlab.bench.table import as_record
from resnetlab.cli import main
from resnetlab.errors import ResnetlabError


def test_bench_infer_records_latency_and_throughput(tmp_path, capsys):
    out = tmp_path / "infer.jsonl"
    args = ["bench", "infer", "--model", "resnet18", "--input-size", "32", "--batch-size", "4"]
    args += ["--steps", "2", "--warmup", "1", "--repeats", "2", "--vs", "torchvision"]
    assert main([*args, "--device", "cpu", "--results", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["kind"] == "infer" and record["settings"]["channels_last"] is True
    assert record["settings"]["precision"] == "fp32" and record["settings"]["input_size"] == 32
    ours, peer = record["ours"], record["peer"]
    for side in (ours, peer):
        assert len(side["latency_ms"]["values"]) == len(side["images_per_s"]["values"]) == 2
    assert "BN folded" in ours["what"]
    assert peer["what"] == "torchvision.models.resnet18"
    assert (peer["precision"], peer["channels_last"], peer["compile"]) == ("fp32", False, False)
    # Ratios repeat by repeat, above 1 when ours is faster: lower latency, higher throughput.
    pairs = zip(ours["latency_ms"]["values"], peer["latency_ms"]["values"], strict=True)
    assert record["ratio"]["latency"]["values"] == [p / o for o, p in pairs]
    pairs = zip(ours["images_per_s"]["values"], peer["images_per_s"]["values"], strict=True)
    assert record["ratio"]["throughput"]["values"] == [o / p for o, p in pairs]
    out = capsys.readouterr().out
    assert out.startswith("infer resnet18, 32x32, batch 4, fp32, channels-last (latency at batch")


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
        in as_record(record).cells()["what"]
    )


def test_bench_infer_onnxruntime_compares_with_our_fp32_cpu_path_only(capsys):
    args = ["bench", "infer", "--model", "resnet8", "--runtime", "onnxruntime", "--no-save"]
    assert main([*args, "--vs", "torchvision"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --runtime onnxruntime runs against our PyTorch path in fp32")


def test_a_model_file_is_benched_as_its_architecture_classes_and_size(tmp_path, monkeypatch):
    from resnetlab.bench.sides import bench_spec
    from resnetlab.models import create_model, save_model

    model = create_model("resnet8", num_classes=3, shortcut="B")
    path = tmp_path / "m.safetensors"
    save_model(model, path, class_names=["a", "b", "c"], input_size=16)
    timed = dict(steps=1, warmup=0, repeats=1, vs=None, threads=None, compile=False)
    common = dict(batch_size=2, precision=None, channels_last=None, device="cpu", **timed)
    spec = bench_spec(str(path), training=False, input_size=None, num_classes=None, **common)
    assert (spec.model, spec.input_size, spec.num_classes) == ("resnet8", 16, 3)
    built = spec.build_model()
    assert built.state_dict().keys() == model.state_dict().keys()  # projection shortcuts too
    spec = bench_spec(str(path), training=True, input_size=24, num_classes=None, **common)
    assert spec.input_size == 24 and spec.config.model_kwargs == {"shortcut": "B"}
    # A run folder is named as one, with its model files; a registered name stays a name
    # even where a folder of that name is at hand.
    with pytest.raises(ResnetlabError, match=r"is a folder, not a model file; a run folder"):
        bench_spec(str(tmp_path), training=False, input_size=None, num_classes=None, **common)
    (tmp_path / "resnet8").mkdir()
    monkeypatch.chdir(tmp_path)
    spec = bench_spec("resnet8", training=False, input_size=None, num_classes=None, **common)
    assert (spec.model, spec.num_classes) == ("resnet8", 10)


def test_a_model_file_unlike_its_peer_is_refused_with_vs(tmp_path, capsys):
    # The peer is the registered architecture: a file whose options change the network
    # (projection shortcuts: more parameters) would be timed against another network.
    from resnetlab.models import create_model, save_model

    path = tmp_path / "m.safetensors"
    save_model(create_model("resnet8", num_classes=3, shortcut="B"), path, input_size=16)
    args = ["bench", "infer", "--model", str(path), "--device", "cpu", "--no-save"]
    args += ["--batch-size", "2", "--steps", "1", "--warmup", "0", "--repeats", "1"]
    assert main([*args, "--vs", "torchvision"]) == 2
    assert capsys.readouterr().err == (
        f"error: {path} is resnet8 with shortcut='B' (77,587 parameters), which its peer is "
        "not (resnet8 has 74,835); leave out --vs to time your model alone, or compare "
        "--model resnet8\n"
    )
    # Options that leave the network as it is (how it starts) keep the comparison.
    same = tmp_path / "same.safetensors"
    model = create_model("resnet8", num_classes=3, zero_init_residual=True)
    save_model(model, same, input_size=16)
    assert main([*args[:3], str(same), *args[4:], "--vs", "torchvision"]) == 0
    capsys.readouterr()
    args[1] = "train"  # bench train says it alike
    assert main([*args, "--vs", "torchvision"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {path} is resnet8 with shortcut='B' (")


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"threads": "2"}, "--threads must be a whole number, got '2'"),
        ({"channels_last": "no"}, "--channels-last is True or False, got 'no'"),
        ({"compile": "no"}, "--compile is True or False, got 'no'"),
        ({"compile": None}, "--compile is True or False, got None"),
        ({"model": None}, "a model name is a string, got None"),
    ],
)
def test_bench_names_a_wrong_option_before_timing(options, says):
    """threads='2' was a comparison's TypeError, model=None os.stat's, and 'no' for
    channels_last or compile was taken as True."""
    from resnetlab.bench import bench_infer, bench_train

    model = options.pop("model", "resnet8")
    timed = dict(batch_size=2, input_size=8, device="cpu", steps=1, warmup=0, repeats=1)
    for bench in (bench_infer, bench_train):
        with pytest.raises(ResnetlabError, match=f"^{re.escape(says)}$"):
            bench(model, **timed, **options)
