import numpy as np
import onnx
import onnx.numpy_helper
import pytest
from PIL import Image

import resnetlab
from resnetlab.cli import main
from resnetlab.export import export_model, exporter


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    """ResNet-8 trained for a few epochs on the bundled digits, at 8x8."""
    out = tmp_path_factory.mktemp("run") / "run"
    resnetlab.train(
        model="resnet8",
        data="digits",
        input_size=8,
        crop_padding=1,
        batch_size=32,
        epochs=6,
        device="cpu",  # a module's fixture runs before the conftest's CPU-only rule
        out=str(out),
    )
    return out / "best.safetensors"


@pytest.mark.slow
def test_int8_export_is_quantized_calibrated_and_judged_by_accuracy(digits_model, tmp_path):
    out = tmp_path / "int8.onnx"
    report = export_model(digits_model, out, quantize="int8", data="digits")
    graph = onnx.load(str(out)).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 9  # every convolution of ResNet-8 and its classifier
    # 7-bit weights: sums of two products fit in 16 bits on CPUs without VNNI.
    values = [onnx.numpy_helper.to_array(t) for t in int8_weights]
    assert all(v.min() >= -64 and v.max() <= 64 for v in values)  # 255 x 64 x 2 < 32,767
    assert any(v.min() == -64 or v.max() == 64 for v in values)  # the range is used
    assert {p.key: p.value for p in onnx.load(str(out)).metadata_props}["precision"] == "int8"
    accuracy = report.int8_accuracy
    # The 359 digits the model's run held out (eval scores those of its own data set).
    assert accuracy["count"] == 359 and accuracy["fp32"] > 0.5  # chance is 0.1
    assert abs(accuracy["int8"] - accuracy["fp32"]) <= exporter.MAX_INT8_DROP
    # The reported figures are what eval says of each file.
    assert resnetlab.evaluate(out, "digits", device="cpu").result.accuracy == accuracy["int8"]
    fp32 = resnetlab.evaluate(digits_model, "digits", device="cpu").result.accuracy
    assert fp32 == accuracy["fp32"]


@pytest.mark.slow
def test_an_int8_file_that_loses_too_much_accuracy_is_not_written(
    digits_model, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(exporter, "allowed_int8_loss", lambda count: -1)  # any file loses too much
    out = tmp_path / "int8.onnx"
    args = ["export", str(digits_model), str(out), "--quantize", "int8", "--data", "digits"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the int8 file scores ") and err.count("\n") == 1
    assert "nothing written, export fp32 instead" in err
    assert list(tmp_path.iterdir()) == []


def test_an_int8_refusal_says_how_many_images_the_accuracies_are():
    # On a few dozen held-out photos, 2 points is one image: the counts show it.
    accuracy = {"data": "photos/", "count": 61, "fp32": 36 / 61, "int8": 34 / 61, "notes": []}
    with pytest.raises(resnetlab.ResnetlabError) as caught:
        exporter._judge_int8(accuracy)
    assert str(caught.value) == (
        "the int8 file scores 55.74% (34 of 61 images) on photos/ against 59.02% (36) for fp32 "
        "(allowed: 1 image fewer, 2 points and at least one); nothing written, export fp32 "
        "instead"
    )


@pytest.mark.parametrize(
    ("count", "fp32_right", "int8_right", "kept"),
    [
        (24, 22, 21, True),  # one image of 24 is 4.2 points: it was refused
        (24, 22, 20, False),
        (49, 40, 39, True),
        (50, 40, 39, True),  # 2 points of 50 are one image
        (50, 40, 38, False),
        (1000, 900, 880, True),  # 2 points
        (1000, 900, 879, False),
        (359, 300, 301, True),  # the int8 file better
        (24, 22, float("nan"), False),
    ],
)
def test_an_int8_file_may_lose_2_points_and_at_least_one_image(count, fp32_right, int8_right, kept):
    accuracy = {"data": "d", "count": count, "fp32": fp32_right / count, "int8": int8_right / count}
    if kept:
        exporter._judge_int8(accuracy)
    else:
        with pytest.raises(resnetlab.ResnetlabError, match="nothing written"):
            exporter._judge_int8(accuracy)


def test_calibration_leaves_out_the_images_the_check_scores(tmp_path):
    # A folder without splits: its run held out a fifth, which the int8 check scores.
    rng = np.random.default_rng(0)
    for c in "ab":
        (tmp_path / "photos" / c).mkdir(parents=True)
        for i in range(20):
            pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "photos" / c / f"{i}.png")
    photos = str(tmp_path / "photos")
    run = resnetlab.train(
        model="resnet8", data=photos, input_size=8, max_steps=1, out=str(tmp_path / "r")
    )
    meta = resnetlab.read_model_meta(run.run_dir / "best.safetensors")
    calibration = exporter.calibration_images(meta, photos).numpy()
    scored = resnetlab.evaluate(run.run_dir / "best.safetensors", photos)
    assert scored.result.count == run.summary["val_images"] == 8
    assert len(calibration) == 32  # the 32 training images
    held_out = {image.tobytes() for image in exporter.check_images(meta, photos)[0].numpy()}
    assert len(held_out) == 8 and not held_out & {image.tobytes() for image in calibration}
