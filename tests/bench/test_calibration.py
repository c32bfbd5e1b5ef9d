import json

from resnetlab.cli import main
from resnetlab.engine import calibrate

from ..fake_cpu import FakeMachine, fake_cpu

ARGS = ["bench", "calibrate", "--model", "resnet8", "--input-size", "8", "--batch-size", "8"]
STEPS = {"fp32 channels-last": 1.0, "fp32 NCHW": 0.5, "bf16 channels-last": 2, "bf16 NCHW": 2}


def test_bench_calibrate_measures_caches_and_explains(monkeypatch, capsys, _cache_in_tmp):
    fake_cpu(monkeypatch)  # with bf16 hardware
    machine = FakeMachine(STEPS)
    monkeypatch.setattr(calibrate, "measure_in_turns", machine)
    assert main(ARGS) == 0
    out = capsys.readouterr().out
    assert out.startswith("CPU plan: fp32, NCHW") and "measured now" in out
    assert "<- chosen" in out and "-> matrix product" in out
    assert "2048 x 2048 matrix products: fp32 " in out and ", bf16 " in out
    timed = len(machine.timed)
    assert main([*ARGS, "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["how"] == "from the cache" and len(machine.timed) == timed
    assert set(plan["matmul_tflops"]) == {"fp32", "bf16"}
    assert plan["matmul_convs"] == ["64x2x2>64 k3x3 s1 p1"]
    assert plan["cache"].startswith(str(_cache_in_tmp / "calibration"))
    assert main([*ARGS, "--force"]) == 0 and len(machine.timed) == 2 * timed
    assert "measured now" in capsys.readouterr().out


def test_bench_calibrate_refuses_when_calibration_is_off(monkeypatch, capsys):
    monkeypatch.setenv("RESNETLAB_CALIBRATE", "off")
    assert main(ARGS) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == (
        "error: RESNETLAB_CALIBRATE=off turns the CPU calibration off; unset it (or set it to "
        "on) to calibrate\n"
    )


def test_bench_calibrate_refuses_a_batch_of_one_that_reaches_1x1_maps(capsys):
    args = ["bench", "calibrate", "--model", "resnet18", "--input-size", "32", "--batch-size", "1"]
    assert main(args) == 2
    assert "BatchNorm in training needs more than one value" in capsys.readouterr().err


def test_bench_calibrate_takes_a_model_file_as_bench_train_does(monkeypatch, capsys, tmp_path):
    from resnetlab.models import create_model, save_model

    fake_cpu(monkeypatch)
    monkeypatch.setattr(calibrate, "measure_in_turns", FakeMachine(STEPS))
    path = tmp_path / "m.safetensors"
    model = create_model("resnet8", num_classes=3, shortcut="B")
    save_model(model, path, class_names=["a", "b", "c"], input_size=16)
    assert main(["bench", "calibrate", "--model", str(path), "--batch-size", "8", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    # Its architecture, options, size and classes: the workload its training runs.
    assert plan["workload"] == 'resnet8{"shortcut": "B"} at 16x16, batch 8, 3 classes'


def test_bench_calibrate_force_says_it_measures_again_as_asked(monkeypatch, capsys):
    fake_cpu(monkeypatch)
    monkeypatch.setattr(calibrate, "measure_in_turns", FakeMachine(STEPS))
    assert main([*ARGS, "--force"]) == 0  # nothing cached yet: measured for the first time
    err = capsys.readouterr().err
    assert "(once; then cached)" in err and "as asked" not in err
    assert main([*ARGS, "--force"]) == 0
    err = capsys.readouterr().err
    assert "measuring this CPU's training steps to choose the fastest again, as asked " in err
    assert "once" not in err


def test_bench_calibrate_warns_of_a_precision_the_cpu_emulates_as_train_does(monkeypatch, capsys):
    from resnetlab.engine import cpu

    fake_cpu(monkeypatch, bf16=False)
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: {"model name": "Test CPU", "flags": "avx2 fma"})
    monkeypatch.setattr(calibrate, "measure_in_turns", FakeMachine(STEPS))
    assert main([*ARGS, "--precision", "bf16"]) == 0
    assert (
        "warning: --precision bf16: this CPU has no bf16 arithmetic (AVX512_BF16 or AMX), so "
        "PyTorch emulates it, usually slower than fp32" in capsys.readouterr().err
    )
