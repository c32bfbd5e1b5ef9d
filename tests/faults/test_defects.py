"""What a hostile walkthrough found: each case, as the user met it, now a one-line error
(exit status 2) that loses nothing and leaves no debris, or the right behaviour.

Ordered as found, most severe first: a diverged run, a full disk (``test_disk.py``),
decompression bombs, tampered model files, resuming finished runs and torn metrics, misused
options, odd HDF5 files, and a kill before the first checkpoint.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import resnetlab
from resnetlab.cli import main
from resnetlab.engine import train
from resnetlab.errors import ResnetlabError

from .conftest import assert_one_line_error, cli, model_file, png_header, strict_json

# --- a diverged run -------------------------------------------------------------------------

DIVERGING = [
    "train",
    "--model",
    "resnet8",
    "--data",
    "digits",
    "--subset",
    "64",
    "--batch-size",
    "32",
    "--input-size",
    "16",
    "--lr",
    "1e6",
    "--warmup-epochs",
    "0",
    "--schedule",
    "constant",
]


@pytest.mark.parametrize("length", [["--epochs", "3"], ["--max-steps", "3"]])
def test_a_diverged_run_stops_as_diverged_and_writes_nothing_non_finite(tmp_path, capsys, length):
    out = tmp_path / "run"
    code, err = cli(capsys, *DIVERGING, *length, "--out", out)
    assert_one_line_error(code, err, "became NaN/inf", "lower --lr")
    summary = strict_json(out / "summary.json")
    assert summary["status"] == "diverged"
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert all(v.isfinite().all() for v in state["model"].values() if v.is_floating_point())
    for name in ("last.safetensors", "best.safetensors"):
        if (out / name).exists():
            assert all(v.isfinite().all() for v in load_file(str(out / name)).values())


def test_a_nan_bn_statistic_stops_the_run_while_the_loss_is_still_finite(
    tmp_path, capsys, monkeypatch
):
    from resnetlab.engine.train import Trainer

    step = Trainer._train_step
    calls = {"n": 0}

    def poisoning_step(self, x, y):
        step(self, x, y)
        calls["n"] += 1
        if calls["n"] == 7:  # training mode normalises with batch statistics: loss unharmed
            self.model.layer2[0].bn1.running_var[0] = float("nan")

    monkeypatch.setattr(Trainer, "_train_step", poisoning_step)
    out = tmp_path / "run"
    args = ["--model", "resnet8", "--data", "digits", "--input-size", "8", "--subset", "128"]
    args += ["--batch-size", "32", "--log-every", "2", "--val-every", "1"]  # saved each epoch
    code, err = cli(capsys, "train", *args, "--out", out)
    assert_one_line_error(code, err, "the weights (layer2.0.bn1.running_var) became NaN/inf")
    assert "step 8" in err  # the next log point
    assert strict_json(out / "summary.json")["status"] == "diverged"
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4 and all(v.isfinite().all() for v in state["model"].values())
    weights = load_file(str(out / "last.safetensors"))  # the first epoch's, written before
    assert all(v.isfinite().all() for v in weights.values())


# --- decompression bombs --------------------------------------------------------------------


# 900 million pixels, which PIL refuses itself, and 90 million, over its limit (89.5
# million) but under the twice that at which it stops warning and refuses.
@pytest.mark.parametrize("side", [(30000, 30000), (10000, 9000)])
def test_predict_refuses_a_decompression_bomb_named_and_skips_one_in_a_folder(
    tmp_path, capsys, side
):
    model = model_file(tmp_path / "m.safetensors")
    folder = tmp_path / "images"
    folder.mkdir()
    bomb = folder / "bomb.png"
    bomb.write_bytes(png_header(*side))  # about 100 bytes on disk
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(folder / "fine.png")
    code, err = cli(capsys, "predict", model, bomb)
    assert_one_line_error(code, err, str(bomb), "decompression", "save a smaller copy of it")
    # The same words either side of twice the limit (PIL's own gave twice it as the limit).
    pixels = f"{side[0] * side[1]:,} pixels, more than PIL's decompression-bomb limit of "
    assert f"{pixels}89,478,485 (which guards against files made to exhaust memory)" in err
    assert "; save a smaller copy of it to use it" in err
    code, err = cli(capsys, "predict", model, folder)
    assert code == 0, err
    assert f"{bomb}: skipped, cannot read it (" in err and "Traceback" not in err
    assert "DecompressionBombWarning" not in err


# --- tampered model files -------------------------------------------------------------------


def _rewrite_meta(path, change) -> None:
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["resnetlab"])
    tensors = load_file(str(path))
    meta = change(meta)
    save_file(tensors, str(path), metadata={"resnetlab": json.dumps(meta)})


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda m: {**m, "num_classes": 10**9}, "num_classes 1000000000 is not an integer in"),
        (
            lambda m: {**m, "input_size": 60000},
            "input_size 60000 is not a whole number from 8 to 2,048 pixels",
        ),
        (lambda m: {**m, "input_size": 0}, "input_size 0 is not a whole number from 8 to 2,048"),
        (lambda m: [m], "a JSON list, not an object"),
        (lambda m: {**m, "num_classes": "3"}, "num_classes '3' is not an integer"),
        (lambda m: {**m, "mean": "abc"}, "mean is not three numbers"),
        (lambda m: {**m, "std": [0, 0, 0]}, "std is not three numbers"),
    ],
)
def test_tampered_model_metadata_is_refused_before_anything_is_built(
    tmp_path, capsys, change, says
):
    path = model_file(tmp_path / "m.safetensors")
    _rewrite_meta(path, change)
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    code, err = cli(capsys, "predict", path, image)
    assert_one_line_error(code, err, "invalid resnetlab metadata", says)


def test_a_model_file_with_nan_weights_is_refused(tmp_path, capsys):
    path = model_file(tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(path))
    tensors["fc.weight"][0, 0] = float("nan")
    save_file(tensors, str(path), metadata=metadata)
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    code, err = cli(capsys, "predict", path, image)
    assert_one_line_error(code, err, "fc.weight holds NaN or inf")


# --- resuming a finished run; a torn metrics.csv ---------------------------------------------

SMALL = dict(model="resnet8", data="digits", input_size=8, subset=128, batch_size=32)


@pytest.fixture
def finished_run(tmp_path):
    return train(**SMALL, epochs=1, log_every=2, out=str(tmp_path / "run")).run_dir


def test_resuming_a_finished_run_changes_nothing(finished_run, capsys):
    files = ("summary.json", "config.json", "metrics.csv", "checkpoint.pt", "last.safetensors")
    before = {name: (finished_run / name).read_bytes() for name in files}
    code, err = cli(capsys, "train", "--resume", finished_run, "--lr", "0.05")
    assert code == 0
    assert "already finished its 1 epoch; add --epochs N" in err
    assert {name: (finished_run / name).read_bytes() for name in files} == before


def test_a_damaged_metrics_file_stops_a_resume_and_a_torn_last_row_is_dropped(finished_run, capsys):
    metrics = finished_run / "metrics.csv"
    good = metrics.read_text()
    lines = good.splitlines(keepends=True)
    metrics.write_text("".join([*lines[:2], "step,1,x\n", *lines[2:]]))
    code, err = cli(capsys, "train", "--resume", finished_run, "--epochs", "2")
    assert_one_line_error(code, err, f"{metrics}, line 3:", "restore it, or delete it")
    assert json.loads((finished_run / "summary.json").read_text())["epochs"] == 1
    metrics.write_text(good + "step,1.25,5,2.")  # a row cut short by a kill
    code, err = cli(capsys, "train", "--resume", finished_run, "--epochs", "2")
    assert code == 0, err
    rows = metrics.read_text().splitlines()
    assert rows[: len(lines)] == good.splitlines()  # the first epoch's history is kept
    assert sum(r.startswith("epoch,") for r in rows) == 2


# --- misused options ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """A resnet8 model file for the ten digit classes at 8x8."""
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    model = resnetlab.create_model("resnet8", num_classes=10)
    resnetlab.save_model(model, path, class_names=[str(i) for i in range(10)], input_size=8)
    return path


TRAIN = ["train", "--model", "resnet8", "--data", "digits", "--input-size", "8"]


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--momentum", "-5"], "--momentum must be in [0, 1)"),
        (["--crop-padding", "-1"], "--crop-padding must be at least 0"),
        (["--cutout", "-3"], "--cutout must be at least 0"),
        (["--warmup-epochs", "-1"], "--warmup-epochs must be at least 0"),
        (["--num-workers", "-1"], "--num-workers must be at least 0"),
        (["--gamma", "nan"], "--gamma must be a finite number"),
        (["--lr", "inf"], "lr must be a finite number"),
        (["--weight-decay", "nan"], "--weight-decay must be a finite number"),
        (["--model-option", "num_classes=5"], "drop --model-option num_classes"),
        (["--crop-padding", "8"], "--crop-padding 8 is not smaller than the 8-pixel images"),
        (["--cutout", "8"], "--cutout 8 covers the whole 8-pixel image"),
        # Padding no memory holds, refused before the images are padded by it.
        (["--crop-padding", "100000000"], "--crop-padding 100000000 is not smaller than"),
        (["--warmup-epochs", "1e308"], "warmup epochs 1e+308 is more steps than can be counted"),
        # Finite, but more than the optimizers' float32 scalars hold.
        (["--lr", "1e39"], "--lr must be at most 3.4e+38 (float32's largest)"),
        (["--weight-decay", "1e308"], "--weight-decay must be at most 3.4e+38"),
        (
            ["--schedule", "step", "--gamma", "1e308"],
            "gamma 1e+308 raises the rate beyond float32's largest number after 2 milestones",
        ),
    ],
)
def test_bad_training_options_are_one_line_errors(tmp_path, capsys, flags, says):
    code, err = cli(capsys, *TRAIN, *flags, "--out", tmp_path / "run")
    assert_one_line_error(code, err, says)
    assert not (tmp_path / "run").exists()


def _parse_error(capsys, *args: str) -> tuple[int, str]:
    """The exit status and stderr of a command line the parser refuses."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    return exited.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--resume", ""],  # not a fresh default run
        ["train", "--config", " "],
        ["train", "--pretrained", ""],  # not from scratch
        ["train", "--val-data", ""],
        ["explain", "model.safetensors", "x.png", "--out", ""],
        ["eval", "model.safetensors", "--data", "digits", "--png", ""],
        ["predict", "model.safetensors", "x.png", "--cam", ""],
        ["data", "inspect", "digits", "--out", ""],
    ],
)
def test_an_empty_option_is_refused_not_taken_as_left_out(capsys, args):
    """An unset shell variable (--pretrained "$WEIGHTS") gives an empty value: every
    command refuses it before doing anything, rather than use the default or the current
    folder."""
    code, err = _parse_error(capsys, *args)
    flag = args[[a.strip() for a in args].index("") - 1]
    assert_one_line_error(code, err, f"argument {flag}: an empty value; give one or leave")


def test_an_empty_positional_is_refused(capsys):
    code, err = _parse_error(capsys, "predict", "", "x.png")
    assert_one_line_error(code, err, "argument MODEL_FILE: an empty value; give one")
    assert "leave the option out" not in err
    for args in (
        ["eval", "m.safetensors", "--data", ""],
        ["experiment", "gradients", "--data", ""],
    ):
        code, err = _parse_error(capsys, *args)  # a required option cannot be left out
        assert_one_line_error(code, err, "argument --data: an empty value; give one")
        assert "leave the option out" not in err


def test_an_empty_setting_from_the_python_api_is_refused():
    with pytest.raises(ResnetlabError, match=r"^pretrained: an empty value; give one or leave"):
        resnetlab.TrainConfig(pretrained="")


def test_out_naming_a_file_is_a_one_line_error(tmp_path, capsys):
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me")
    code, err = cli(capsys, *TRAIN, "--epochs", "1", "--out", existing)
    assert_one_line_error(code, err, f"--out {existing} is a file")
    assert existing.read_text() == "keep me"


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (
            ["--png", "/proc/nope/x.png"],
            "--png /proc/nope/x.png: cannot make the folder /proc/nope",
        ),
        (["--png", "cm.txt"], "--png cm.txt: cannot write a figure as .txt (a file name"),
    ],
)
def test_bad_eval_options_are_one_line_errors(digits_model, capsys, flags, says):
    code, err = cli(capsys, "eval", digits_model, "--data", "digits", *flags)
    assert_one_line_error(code, err, says)


def test_a_contact_sheet_of_an_unknown_format_is_refused_before_decoding(tmp_path, capsys):
    sheet = tmp_path / "sheet.txt"
    code, err = cli(capsys, "data", "inspect", "digits", "--out", sheet)
    assert_one_line_error(code, err, f"--out {sheet}: cannot write a figure as .txt")
    assert not sheet.exists()


@pytest.mark.parametrize("size", [(0, 0), (0, 20), (20, 0)])
def test_a_pil_image_with_no_pixels_is_a_one_line_error(digits_model, size):
    model = resnetlab.load_model(digits_model)
    with pytest.raises(ResnetlabError) as error:
        resnetlab.predict(model, Image.new("RGB", size))
    width, height = size
    assert str(error.value) == f"image is not a readable image (it has no pixels: {width}x{height})"


def test_eval_png_naming_a_folder_writes_nothing_beside_it(digits_model, tmp_path, capsys):
    folder = tmp_path / "figures"
    folder.mkdir()
    code, err = cli(capsys, "eval", digits_model, "--data", "digits", "--png", folder)
    assert_one_line_error(code, err, f"--png {folder} names a folder; give a file name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures"]


# --- odd HDF5 files --------------------------------------------------------------------------


def _h5(path, x, y, classes=None):
    with h5py.File(path, "w") as f:
        f["train_set_x"], f["train_set_y"] = x, y
        if classes is not None:
            f["list_classes"] = classes
    return path


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("empty", "train_set_x holds no images"),
        ("byte_labels", "train_set_y holds |S1 values; expected integer class indices"),
        ("one_class", "every training image is of one class (a)"),
    ],
)
def test_odd_hdf5_files_are_one_line_errors(tmp_path, capsys, case, says):
    images = np.random.default_rng(0).integers(0, 255, (40, 8, 8, 3), dtype=np.uint8)
    path = tmp_path / "data.h5"
    if case == "empty":
        _h5(path, images[:0], np.zeros(0, np.int64), np.array([b"a", b"b"]))
    elif case == "byte_labels":
        _h5(path, images, np.array([b"a", b"b"] * 20), np.array([b"a", b"b"]))
    else:
        _h5(path, images, np.zeros(40, np.int64), np.array([b"a", b"b"]))
    code, err = cli(capsys, "train", "--model", "resnet8", "--data", path, "--out", tmp_path / "r")
    assert_one_line_error(code, err, str(path), says)


# --- a kill before the first checkpoint -----------------------------------------------------


def test_a_run_killed_before_its_first_checkpoint_resumes_from_the_start(tmp_path, capsys):
    whole = train(
        **SMALL, max_steps=6, log_every=2, out=str(tmp_path / "whole"), deterministic=True
    )
    run = tmp_path / "killed"
    run.mkdir()
    # What such a kill leaves: the config, and a checkpoint torn halfway through its write.
    (run / "config.json").write_text((whole.run_dir / "config.json").read_text())
    torn = (whole.run_dir / "checkpoint.pt").read_bytes()
    (run / ".checkpoint.pt.tmp").write_bytes(torn[: len(torn) // 2])
    code, err = cli(capsys, "train", "--resume", run)
    assert code == 0, err
    assert not list(run.glob(".*.tmp"))
    assert strict_json(run / "summary.json")["status"] == "finished"
    a, b = load_file(str(run / "last.safetensors")), whole.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resuming_a_folder_killed_before_its_config_says_to_start_again(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / ".config.json.tmp").write_text('{"model": "res')
    code, err = cli(capsys, "train", "--resume", run)
    assert_one_line_error(code, err, "holds no run to resume", f"start it again with --out {run}")


# --- a user's own folder, from training to export ------------------------------------------


def _folder(root, classes=("cat", "dog"), per_class=10, size=16):
    rng = np.random.default_rng(0)
    for name in classes:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


TINY = ["--model", "resnet8", "--input-size", "16", "--max-steps", "2"]


def test_export_and_convert_refuse_to_write_over_a_runs_own_files(tmp_path, capsys):
    from resnetlab.engine.train import run_file_problem

    run = tmp_path / "run"
    run.mkdir()
    best = model_file(run / "best.safetensors")
    (run / "last.safetensors").write_bytes(best.read_bytes())
    (run / "checkpoint.pt").write_bytes(b"the run's checkpoint")
    (run / "config.json").write_text("{}")
    for figure in ("curves.png", "confusion.png", "errors.png"):
        (run / figure).write_bytes(b"the run's figure")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    seed = tmp_path / "seed.h5"
    for dst, args, instead in [
        (run / "checkpoint.pt", ["export", best], run / "best.pt"),  # TorchScript's suffix
        (run / "config.json", ["export", best, "--format", "onnx"], run / "best.onnx"),
        (run / "best.safetensors", ["convert", "keras", seed], run / "seed.safetensors"),
        (run / "confusion.png", ["eval", best, "--data", "digits", "--png"], run / "out.png"),
        (run / "errors.png", ["data", "inspect", "digits", "--out"], run / "out.png"),
        (run / "pretrained.json", ["export", best, "--format", "onnx"], run / "best.onnx"),
    ]:
        code, err = cli(capsys, *args, dst)
        flag = f"{args[-1]} " if str(args[-1]).startswith("--") else ""
        assert err == (
            f"error: {flag}{dst} is a file of the run in {run}, which writing it would "
            f"replace; name another file to write, e.g. {instead}\n"
        )
        assert code == 2
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # no temporary file either
    # The same names outside a run folder are anyone's.
    assert run_file_problem(tmp_path / "checkpoint.pt", tmp_path / "m.pt") is None


def test_exporting_a_model_onto_its_own_file_is_refused(tmp_path, capsys):
    model = model_file(tmp_path / "m.safetensors")
    before = model.read_bytes()
    code, err = cli(capsys, "export", model, model, "--format", "onnx")
    assert_one_line_error(code, err, "is the model file being exported", "m.onnx")
    code, err = cli(capsys, "export", model, model)  # no format: the same refusal
    assert_one_line_error(code, err, "is the model file being exported", "m.onnx")
    assert model.read_bytes() == before
    code, err = cli(capsys, "export", model, model / "x.onnx")  # a folder that is a file
    assert_one_line_error(code, err, f"cannot write {model / 'x.onnx'}")


def test_exports_and_checkpoints_named_as_model_files_say_what_they_are(tmp_path, capsys):
    model = model_file(tmp_path / "m.safetensors")
    image = tmp_path / "x.png"
    Image.new("RGB", (16, 16)).save(image)
    for name in ("m.pt", "m.pt2", "m.onnx"):
        assert cli(capsys, "export", model, tmp_path / name)[0] == 0
    torch.save({"model": {}, "images_trained": 0}, tmp_path / "checkpoint.pt")
    torch.save(resnetlab.create_model("resnet8").state_dict(), tmp_path / "r8.pth")
    torch.save(resnetlab.create_model("resnet8"), tmp_path / "whole.pt")  # no state_dict()
    says = {
        "m.pt": "is a TorchScript export, not a model file",
        "m.pt2": "is a torch.export program (.pt2 export), not a model file",
        "checkpoint.pt": "is a training checkpoint (for --resume), not a model file",
        "r8.pth": "is a PyTorch weights file (torch.save), which --pretrained takes",
        "whole.pt": "is a pickled whole model (torch.save(model)), never unpickled here as it "
        "could run code; --pretrained takes its torch.save(model.state_dict()), not a model file",
    }
    for name, what in says.items():
        for command in ("predict", "explain"):
            code, err = cli(capsys, command, tmp_path / name, image)
            assert_one_line_error(code, err, what, "best.safetensors", ".onnx exports")
    code, err = cli(capsys, "explain", tmp_path / "m.onnx", image)
    assert_one_line_error(code, err, "is an ONNX export, which only predict, eval and serve run")
    code, err = cli(capsys, "predict", tmp_path / "m.onnx", image)  # an export predict runs
    assert code == 0


def test_resume_without_a_checkpoint_does_not_start_over_a_trained_run(finished_run, capsys):
    (finished_run / "checkpoint.pt").unlink()
    before = (finished_run / "best.safetensors").read_bytes()
    code, err = cli(capsys, "train", "--resume", finished_run, "--epochs", "3")
    assert_one_line_error(code, err, "checkpoint.pt is missing", "best.safetensors", "--config")
    assert (finished_run / "best.safetensors").read_bytes() == before


def test_a_resumed_run_says_how_long_it_ran_and_notices_changed_data(tmp_path, capsys):
    data = _folder(tmp_path / "data")
    run = tmp_path / "run"
    code, err = cli(capsys, "train", "--data", data, *TINY[:4], "--epochs", "2", "--out", run)
    assert code == 0, err
    code, err = cli(capsys, "train", "--resume", run, "--epochs", "1")
    assert code == 0 and f"{run} already finished its 2 epochs; add --epochs N (more than 2)" in err
    for i in range(4):
        (data / "dog" / f"{i}.png").unlink()
    code, err = cli(capsys, "train", "--resume", run, "--epochs", "3")
    assert_one_line_error(code, err, "was trained on", "the training data changed")


def test_out_inside_the_data_folder_is_refused(tmp_path, capsys, monkeypatch):
    data = _folder(tmp_path / "data")
    # Refused before the data is read: a large folder is not decoded for nothing.
    read = []
    train_module = importlib.import_module("resnetlab.engine.train")
    monkeypatch.setattr(train_module, "load_dataset", lambda *a, **k: read.append(a))
    code, err = cli(capsys, "train", "--data", data, *TINY, "--out", data / "cat" / "run")
    assert_one_line_error(code, err, "is inside the data folder", "outside it")
    assert sorted(p.name for p in (data / "cat").iterdir()) == sorted(f"{i}.png" for i in range(10))
    assert read == []


def test_file_and_class_names_that_are_not_utf8_train(tmp_path, capsys):
    import os

    data = _folder(tmp_path / "data")
    latin1 = os.fsdecode(bytes(data / "caf") + b"\xe9")  # an old archive's Latin-1 name
    os.rename(data / "dog", latin1)
    os.rename(os.path.join(latin1, "0.png"), os.path.join(latin1, os.fsdecode(b"\xe9t\xe9.png")))
    run = tmp_path / "run"
    code, err = cli(capsys, "train", "--data", data, *TINY, "--out", run)
    assert code == 0, err
    assert strict_json(run / "summary.json")["class_names"] == ["caf\u00e9", "cat"]


def test_a_class_whose_images_all_fail_to_read_is_an_error(tmp_path, capsys):
    data = _folder(tmp_path / "data", per_class=20)
    (data / "zebra").mkdir()
    (data / "zebra" / "0.jpg").write_bytes(b"\xff\xd8 not a jpeg")  # 1 of 41: under 5%
    code, err = cli(capsys, "train", "--data", data, *TINY, "--out", tmp_path / "run")
    assert_one_line_error(code, err, "none of the images of class zebra could be read")


def test_more_misplaced_files_are_one_line_errors(tmp_path, capsys):
    model = model_file(tmp_path / "m.safetensors")
    code, err = cli(capsys, "train", "--config", model)
    assert_one_line_error(code, err, "is not a text file", "config.json")
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"a file")
    code, err = cli(capsys, "explain", model, image, "--out", taken)
    assert_one_line_error(code, err, f"{taken} is a file", "folder")
    assert taken.read_bytes() == b"a file"
    code, err = cli(capsys, "bench", "table", tmp_path / "no-records")
    assert_one_line_error(code, err, "no benchmark records at", "bench train")


def test_a_run_on_a_relative_data_path_resumes_from_another_folder(tmp_path, capsys, monkeypatch):
    _folder(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    code, err = cli(capsys, "train", "--data", "data", *TINY, "--out", "run")
    assert code == 0, err
    assert strict_json(tmp_path / "run" / "config.json")["data"] == str(tmp_path / "data")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, err = cli(capsys, "train", "--resume", tmp_path / "run", "--max-steps", "4")
    assert code == 0, err
    code, err = cli(capsys, "train", "--config", tmp_path / "run" / "config.json", "--out", "b")
    assert code == 0, err


def test_freezing_layers_without_pretrained_weights_warns(tmp_path, capsys):
    code, err = cli(capsys, "train", *TINY, "--data", "digits", "--subset", "64",
                    "--freeze", "layer1", "--out", tmp_path / "run")  # fmt: skip
    assert code == 0
    assert "warning: --freeze layer1 without --pretrained: the frozen layers keep the random" in err


# --- a first hour with one's own photos -----------------------------------------------------


def test_predict_and_explain_read_a_folder_as_training_does(tmp_path, capsys):
    model = model_file(tmp_path / "m.safetensors")
    photos = tmp_path / "photos"
    for name in ("a.png", "sub/b.png", ".thumbnails/a.png", "__MACOSX/._a.png", ".hidden.png"):
        (photos / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16)).save(photos / name, format="PNG")
    capsys.readouterr()
    assert main(["predict", str(model), str(photos), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    read = [Path(p["image"]).relative_to(photos).as_posix() for p in printed]
    assert read == ["a.png", "sub/b.png"]
    code, err = cli(capsys, "explain", model, photos, "--out", tmp_path / "cams")
    assert code == 0, err
    overlays = sorted(p.name for p in (tmp_path / "cams").glob("*.png") if p.name != "sheet.png")
    assert overlays == ["a.png", "b.png"]


def test_a_relative_pretrained_file_is_stored_absolute_and_frozen_parameters_are_counted(
    tmp_path, capsys, monkeypatch
):
    _folder(tmp_path / "data")
    model_file(tmp_path / "weights.safetensors", classes=2)
    monkeypatch.chdir(tmp_path)
    flags = ["--pretrained", "weights.safetensors", "--freeze", "backbone"]
    code, err = cli(capsys, "train", "--data", "data", *TINY, *flags, "--out", "run")
    assert code == 0, err
    config = strict_json(tmp_path / "run" / "config.json")
    assert config["pretrained"] == str(tmp_path / "weights.safetensors")
    summary = strict_json(tmp_path / "run" / "summary.json")
    total = sum(p.numel() for p in resnetlab.create_model("resnet8", num_classes=2).parameters())
    assert summary["params"] == total
    assert summary["trainable_params"] == 64 * 2 + 2  # the classifier alone
    assert f"resnet8 ({total:,} parameters, 130 of them trainable)" in err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, err = cli(capsys, "train", "--config", tmp_path / "run" / "config.json", "--out", "b")
    assert code == 0, err


def test_a_batch_larger_than_the_training_set_warns(tmp_path, capsys):
    data = _folder(tmp_path / "data")  # 20 images, 16 of them for training
    code, err = cli(capsys, "train", "--data", data, *TINY, "--batch-size", "64",
                    "--out", tmp_path / "run")  # fmt: skip
    assert code == 0, err
    assert "warning: a batch of 64 is more than the 16 training images" in err


def test_a_class_far_smaller_than_the_others_warns(tmp_path, capsys):
    data = _folder(tmp_path / "data", per_class=20)
    _folder(tmp_path / "data", classes=("stray",), per_class=2)
    code, err = cli(capsys, "train", "--data", data, *TINY, "--out", tmp_path / "run")
    assert code == 0, err
    assert "warning: class 'stray' has 1 training image, 'cat' 16: a class this small" in err


def test_arguments_in_the_wrong_place_say_what_they_are(tmp_path, capsys):
    model = model_file(tmp_path / "m.safetensors")
    image = tmp_path / "x.png"
    Image.new("RGB", (16, 16)).save(image)
    code, err = cli(capsys, "predict", image, model)
    assert_one_line_error(code, err, f"{image} is an image, not a model file; give a .safetensors")
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.safetensors").write_bytes(model.read_bytes())
    code, err = cli(capsys, "predict", run, image)
    assert_one_line_error(code, err, f"{run} is a run folder", str(run / "best.safetensors"))
    data = _folder(tmp_path / "data")
    code, err = cli(capsys, "train", "--resume", data)
    assert_one_line_error(code, err, f"{data} holds no run to resume", "train --out")
    assert not (data / "config.json").exists()
    with pytest.raises(SystemExit) as exit_:
        main(["explain", str(model), str(image), "--method", "gradcampp"])
    assert exit_.value.code == 2 and "did you mean gradcam++?" in capsys.readouterr().err


def test_freezing_a_stage_the_model_lacks_is_refused_without_a_warning_first(tmp_path, capsys):
    code, err = cli(capsys, "train", "--model", "resnet20", "--data", "digits", "--freeze",
                    "layer4", "--out", tmp_path / "run")  # fmt: skip
    assert_one_line_error(
        code,
        err,
        "--freeze layer4: resnet20 has no such stage; choose stem, layer1, layer2, layer3",
    )
    assert "warning" not in err


def test_a_run_folder_removed_while_training_is_written_again_whole(tmp_path, capsys, monkeypatch):
    import shutil

    from resnetlab.engine.train import Trainer

    train_epoch = Trainer._train_epoch
    calls = {"n": 0}

    def removing_epoch(self):
        calls["n"] += 1
        if calls["n"] == 2:  # a clean-up of runs/ while the run trains on
            shutil.rmtree(self.run_dir)
        return train_epoch(self)

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_train_epoch", removing_epoch)
        code, err = cli(capsys, *TRAIN, "--subset", "128", "--epochs", "2", "--out", out)
    assert code == 0, err
    assert f"warning: the run folder {out} was removed while the run trained" in err
    assert strict_json(out / "config.json")["epochs"] == 2
    epochs = [r for r in (out / "metrics.csv").read_text().splitlines() if r.startswith("epoch,")]
    assert [r.split(",")[1] for r in epochs] == ["1", "2"]  # the first epoch's row kept
    assert strict_json(out / "summary.json")["status"] == "finished"
    code, err = cli(capsys, "train", "--resume", out)  # resumable as any finished run
    assert code == 0 and "already finished its 2 epochs" in err


def test_a_fine_tuning_run_folder_removed_while_training_can_be_resumed(
    finished_run, tmp_path, capsys, monkeypatch
):
    """A run from pretrained weights needs its pretrained.json to resume: the folder
    written again holds it too."""
    import shutil

    from resnetlab.engine.train import Trainer

    train_epoch = Trainer._train_epoch
    calls = {"n": 0}

    def removing_epoch(self):
        calls["n"] += 1
        if calls["n"] == 2:
            shutil.rmtree(self.run_dir)
        return train_epoch(self)

    weights = finished_run / "last.safetensors"
    out = tmp_path / "tuned"
    flags = ["--subset", "128", "--epochs", "2", "--pretrained", weights, "--out", out]
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_train_epoch", removing_epoch)
        code, err = cli(capsys, *TRAIN, *flags)
    assert code == 0, err
    assert "was removed while the run trained" in err
    assert strict_json(out / "pretrained.json")["weights"]["source"] == str(weights)
    code, err = cli(capsys, "train", "--resume", out)
    assert code == 0 and "already finished its 2 epochs" in err, err


def test_a_checkpoint_of_another_model_is_refused_in_a_few_words(finished_run, tmp_path, capsys):
    other = train(**{**SMALL, "model": "resnet20"}, max_steps=1, out=str(tmp_path / "other"))
    checkpoint = finished_run / "checkpoint.pt"
    checkpoint.write_bytes((other.run_dir / "checkpoint.pt").read_bytes())
    code, err = cli(capsys, "train", "--resume", finished_run, "--epochs", "2")
    assert_one_line_error(
        code, err, f"{checkpoint} does not fit", "its model has unexpected layer1.1.", " more)"
    )
    assert err.strip().endswith(f"--config {finished_run / 'config.json'} and another --out")
    assert err.strip().splitlines()[-1].count("layer") == 1  # not all 72 of ResNet-20's keys


def test_a_damaged_checkpoint_names_a_way_on_that_works(finished_run, tmp_path, capsys):
    # Not "start the run again": a new run in its folder would write over it, and is refused.
    checkpoint = finished_run / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # a copy that stopped
    code, err = cli(capsys, "train", "--resume", finished_run, "--epochs", "2")
    fix = (
        f"restore the checkpoint from a copy, or start a new run with --config "
        f"{finished_run / 'config.json'} and another --out"
    )
    assert_one_line_error(
        code,
        err,
        f"{checkpoint} is not a readable resnetlab checkpoint (it is cut short, as a copy or a "
        "write that stopped leaves it)",
    )
    assert err.strip().endswith(fix)
    code, err = cli(
        capsys, "train", "--config", finished_run / "config.json", "--out", tmp_path / "b"
    )
    assert code == 0, err


def test_a_checkpoint_this_user_may_not_read_is_not_called_one_to_restore(
    finished_run, capsys, monkeypatch
):
    # A run folder from another account (chmod 600): it was "is not a readable resnetlab
    # checkpoint (PermissionError); restore the checkpoint from a copy". Root reads it, so
    # the kernel's refusal is made here.
    checkpoint = finished_run / "checkpoint.pt"
    access, load = os.access, torch.load
    monkeypatch.setattr(
        os, "access", lambda p, mode, **kw: str(p) != str(checkpoint) and access(p, mode, **kw)
    )

    def refused(f, *args, **kwargs):
        if str(f) == str(checkpoint):
            raise PermissionError(13, "Permission denied", str(f))
        return load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", refused)
    code, err = cli(capsys, "train", "--resume", finished_run, "--epochs", "2")
    assert_one_line_error(
        code,
        err,
        f"{checkpoint}: no permission to read it; give yourself read access to it (chmod u+r)",
    )


def test_a_checkpoint_whose_image_count_is_no_count_is_named_so(finished_run, capsys):
    checkpoint = finished_run / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=True)
    torch.save({**state, "train_images": [{"b": None}]}, checkpoint)
    code, err = cli(capsys, "train", "--resume", finished_run, "--epochs", "2")
    assert_one_line_error(
        code, err, f"{checkpoint} is damaged", "(train_images is [{'b': None}], not a count)"
    )


def test_a_checkpoint_of_a_nonfinite_weight_names_it(finished_run, capsys):
    checkpoint = finished_run / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=True)
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][name] = state["model"][name].clone().fill_(float("inf"))
    torch.save(state, checkpoint)
    code, err = cli(capsys, "train", "--resume", finished_run, "--epochs", "2")
    assert_one_line_error(code, err, f"{checkpoint} is damaged", f"(NaN/inf in {name})")


def test_a_wrong_type_in_config_json_names_the_file(finished_run, tmp_path, capsys):
    config = finished_run / "config.json"
    config.write_text(json.dumps({**strict_json(config), "lr": "fast"}))
    said = f"{config}: lr must be a finite number, got 'fast'; correct it in the file, or "
    code, err = cli(capsys, "train", "--resume", finished_run, "--epochs", "2")
    assert_one_line_error(code, err, said)
    code, err = cli(capsys, "train", "--config", config, "--out", tmp_path / "again")
    assert_one_line_error(code, err, said)


def test_a_run_from_a_run_on_the_same_folder_that_held_out_others_warns(tmp_path, capsys):
    """Fine-tuning a run's model on the same photos with another --seed validates on images
    the weights trained on: said, with the flags that hold out the same ones."""
    data = _folder(tmp_path / "photos", per_class=10)
    first = ["train", "--data", str(data), *TINY, "--seed", "3", "--out", str(tmp_path / "a")]
    assert main(first) == 0
    capsys.readouterr()
    again = ["train", "--data", str(data), "--pretrained", str(tmp_path / "a"), "--max-steps"]
    assert main([*again, "1", "--out", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "the weights' run held out 0.2 of these images with seed 3, this run 0.2 with " in err
    assert "seed 0: its validation images include some the weights trained on" in err
    assert "give --seed 3 to hold out the same ones" in err
    assert main([*again, "1", "--seed", "3", "--out", str(tmp_path / "c")]) == 0
    assert "the weights' run held out" not in capsys.readouterr().err


def test_a_run_from_a_run_on_its_folder_with_photos_added_since_warns(tmp_path, capsys):
    """Photos added to the folder reshuffle each class that got some: the next run from
    the first's model holds out other images, some of which the weights trained on."""
    data = _folder(tmp_path / "photos", per_class=10)
    first = ["train", "--data", str(data), *TINY, "--out", str(tmp_path / "a")]
    assert main(first) == 0
    capsys.readouterr()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(data / "cat" / "new.png")
    again = ["train", "--data", str(data), "--pretrained", str(tmp_path / "a"), "--max-steps"]
    assert main([*again, "1", "--out", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "the weights' run split photos when it counted other images per class (added" in err
    assert "some of them ones the weights trained on, which flatters its validation" in err
    assert f"move them out of {data} and give them with --val-data DIR" in err
    other = _folder(tmp_path / "elsewhere" / "pictures", per_class=11)  # another folder
    assert main([*again, "1", "--data", str(other), "--out", str(tmp_path / "c")]) == 0
    assert "the weights' run" not in capsys.readouterr().err
    # A photo edited in place, the counts kept: the same images are held out.
    (data / "cat" / "new.png").unlink()
    Image.new("RGB", (16, 16), (10, 200, 10)).save(data / "dog" / "0.png")
    assert main([*again, "1", "--out", str(tmp_path / "d")]) == 0
    assert "the weights' run" not in capsys.readouterr().err
    # An unreadable file: a streamed run splits it with the rest, a decoded one leaves it out.
    (data / "cat" / "broken.png").write_bytes(b"not an image")
    assert main([*first[:-1], str(tmp_path / "e")]) == 0
    capsys.readouterr()
    streamed = [*again[:-2], str(tmp_path / "e"), "--stream", "--max-steps", "1"]
    assert main([*streamed, "--out", str(tmp_path / "f")]) == 0
    assert "or the unreadable ones that a run with --stream counts)" in capsys.readouterr().err


def test_a_run_from_a_run_on_other_photos_in_a_folder_of_the_same_name_does_not_warn(
    tmp_path, capsys
):
    """photos/ (or data/, train/) of other classes elsewhere is not the weights' folder
    counted otherwise: none of its images trained the weights."""
    data = _folder(tmp_path / "photos", per_class=10)
    assert main(["train", "--data", str(data), *TINY, "--out", str(tmp_path / "a")]) == 0
    other = _folder(tmp_path / "elsewhere" / "photos", classes=("ant", "bee"), per_class=11)
    again = ["train", "--data", str(other), "--pretrained", str(tmp_path / "a")]
    capsys.readouterr()
    assert main([*again, "--max-steps", "1", "--out", str(tmp_path / "b")]) == 0
    assert "the weights' run" not in capsys.readouterr().err


def test_a_run_from_a_run_on_a_set_of_no_files_warns_only_on_the_same_set(tmp_path, capsys):
    # digits has no files to digest: the same set is known by its name and class counts.
    first = ["train", "--data", "digits", *TINY, "--seed", "3", "--out", str(tmp_path / "a")]
    assert main(first) == 0
    capsys.readouterr()
    again = ["train", "--pretrained", str(tmp_path / "a"), "--max-steps", "1"]
    assert main([*again, "--data", "digits", "--out", str(tmp_path / "b")]) == 0
    assert "give --seed 3 to hold out the same ones" in capsys.readouterr().err
    rng = np.random.default_rng(0)  # other images of no files, of ten classes too
    x = rng.integers(0, 255, (40, 16, 16, 3), dtype=np.uint8)
    other = _h5(tmp_path / "other.h5", x, np.arange(40) % 10)
    assert main([*again, "--data", str(other), "--out", str(tmp_path / "c")]) == 0
    assert "the weights' run held out" not in capsys.readouterr().err
