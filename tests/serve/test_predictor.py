"""The server's model object, on its own."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import resnetlab
from resnetlab.analysis import fonts
from resnetlab.errors import DataWarning
from resnetlab.serve import Predictor, RequestError
from resnetlab.serve.predictor import load_predictor

from .test_api import png_bomb


class Weightless(nn.Module):
    """A model with no PyTorch weights, as one run by another runtime is: fixed logits."""

    def __init__(self, meta: resnetlab.ModelMeta) -> None:
        super().__init__()
        self.meta = meta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x.mean((1, 2, 3)), -x.mean((1, 2, 3)), x[:, 0, 0, 0]], 1)


def test_any_model_with_meta_serves_and_maps_need_weights(model_file, image_files):
    meta = resnetlab.read_model_meta(model_file)
    predictor = Predictor(Weightless(meta))
    pixels = predictor.decode(image_files["red.png"].read_bytes(), "red.png")
    assert pixels.shape == (meta.input_size, meta.input_size, 3)
    probs = predictor(torch.from_numpy(pixels)[None])
    assert probs.shape == (1, 3) and float(probs.sum()) == pytest.approx(1.0)
    assert "PyTorch weights" in predictor.cam_problem()  # /metadata: "cam": false
    with pytest.raises(RequestError, match="PyTorch weights") as refused:
        predictor.cam_png(pixels)
    assert refused.value.status == 501
    with pytest.raises(resnetlab.ResnetlabError, match=r"^Predictor takes a model file, or a "):
        Predictor(resnetlab.create_model("resnet8"))  # was AttributeError: no attribute 'meta'


def test_a_cut_short_upload_is_named_in_the_words_predict_uses(model_file, image_files):
    """Cut in its header or in its pixels, the 422 says what `resnetlab predict` says of
    such a file, once: not a readable image, and why."""
    predictor = Predictor(Weightless(resnetlab.read_model_meta(model_file)))
    jpeg = image_files["red.jpg"].read_bytes()
    for kept in (40, len(jpeg) // 2):  # PIL fails on the header, or on decoding
        with pytest.raises(RequestError) as refused:
            predictor.decode(jpeg[:kept])
        assert refused.value.status == 422
        assert str(refused.value) == (
            "the upload is not a readable image (the file is truncated, as a copy or "
            "download that stopped leaves it)"
        )


def test_too_many_pixels_is_said_once_in_the_words_predict_uses(model_file, tmp_path):
    """A decompression bomb's 413 is predict's line for that file, the limit and the fix
    said once."""
    predictor = Predictor(Weightless(resnetlab.read_model_meta(model_file)))
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb(12_000, 12_000))
    with pytest.raises(resnetlab.ResnetlabError) as in_predict:
        resnetlab.predict(model_file, [bomb])
    with pytest.raises(RequestError) as refused:
        predictor.decode(bomb.read_bytes(), "bomb.png")
    assert refused.value.status == 413
    assert str(refused.value) == str(in_predict.value).replace(str(bomb), "the upload bomb.png")
    assert str(refused.value).count("decompression") == 1


def test_a_predictor_in_bf16_answers_as_in_float32_and_says_so(model_file, image_files):
    model = resnetlab.load_model(model_file)
    exact, reduced = Predictor(model), Predictor(model, precision="bf16")
    assert exact.describe()["precision"] == "fp32"
    assert reduced.describe()["precision"] == "bf16"
    pixels = torch.from_numpy(exact.decode(image_files["red.png"].read_bytes(), "red.png"))[None]
    torch.testing.assert_close(reduced(pixels), exact(pixels), rtol=0, atol=0.02)


def test_serve_takes_the_precision_it_runs_in(monkeypatch, model_file):
    from resnetlab import serve
    from resnetlab.cli import main

    given = {}
    monkeypatch.setattr(serve, "serve", lambda model_file, **kwargs: given.update(kwargs))
    assert main(["serve", str(model_file), "--precision", "bf16"]) == 0
    assert given["precision"] == "bf16"
    assert main(["serve", str(model_file)]) == 0
    assert given["precision"] == "fp32"


def test_names_no_font_has_are_said_once_however_many_maps_are_drawn(tmp_path, monkeypatch):
    monkeypatch.setattr(fonts, "installed_families", set)  # DejaVu Sans alone: no CJK
    monkeypatch.setattr(fonts, "_told", False)  # said once per process: as in a new one
    path = tmp_path / "cats.safetensors"
    resnetlab.save_model(
        resnetlab.create_model("resnet8", num_classes=2),
        path,
        class_names=["猫", "ねこ"],
        input_size=16,
    )
    predictor = load_predictor(path, device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # no help from Python's once per place
        for shade in (0, 255, 0, 255):  # requests for both classes' maps
            predictor.cam_png(np.full((16, 16, 3), shade, np.uint8))
    (warning,) = caught
    assert warning.category is DataWarning
    assert "are drawn as boxes" in str(warning.message)
    assert "fonts-noto-cjk" in str(warning.message)


def test_create_app_refuses_what_it_cannot_serve_in_one_line(model_file):
    """A path or a loaded model made an app that failed at each request, and limits out of
    range (top_k=0, max_upload_mb=-1) were taken; a limit given as text was a TypeError."""
    from resnetlab.serve import create_app

    says = r"^create_app takes a Predictor: resnetlab.serve.load_predictor\('model.safetensors'\)"
    for wrong in (str(model_file), resnetlab.load_model(model_file)):
        with pytest.raises(resnetlab.ResnetlabError, match=says):
            create_app(wrong)
    predictor = load_predictor(model_file, device="cpu")
    for options, message in [
        ({"top_k": 0}, "--top-k must be at least 1, got 0"),
        ({"max_batch": "16"}, "--max-batch must be a whole number, got '16'"),
        ({"max_upload_mb": -1}, "--max-upload-mb must be a finite positive number, got -1"),
        ({"max_wait_ms": "2"}, "--max-wait-ms must be a finite number of at least 0, got '2'"),
        (
            {"max_wait_ms": 1e308},
            "--max-wait-ms 1e+308 holds a lone request that long for others to batch with; give "
            "at most 60,000 (a minute): a few milliseconds batch requests that come together",
        ),
        (
            {"request_timeout": 0},
            "--request-timeout must be a finite positive number of seconds, got 0",
        ),
    ]:
        with pytest.raises(resnetlab.ResnetlabError) as error:
            create_app(predictor, **options)
        assert str(error.value) == message
    with pytest.raises(resnetlab.ResnetlabError, match=r"^--port must be a whole number"):
        resnetlab.serve.serve(model_file, port="8000")


def test_a_postscript_upload_is_refused_before_ghostscript_could_run(model_file, image_files):
    """Pillow reads an EPS file by running Ghostscript on it, where it is installed: an
    upload of one, from anyone, ran a PostScript interpreter on the server's machine."""
    import io

    from PIL import Image

    predictor = Predictor(Weightless(resnetlab.read_model_meta(model_file)))
    eps = io.BytesIO()
    Image.open(image_files["red.jpg"]).save(eps, format="EPS")  # Pillow writes one without it
    for name, what in (("red.eps", "the upload red.eps"), (None, "the upload")):
        with pytest.raises(RequestError) as refused:
            predictor.decode(eps.getvalue(), name)
        assert refused.value.status == 415
        assert str(refused.value) == (
            f"{what} is a PostScript (EPS) file, which the server does not read (Pillow would "
            "run Ghostscript on it); convert it to PNG or JPEG first"
        )


def test_an_upload_is_resized_as_the_model_files_crop_fraction_says(model_file, image_files):
    """A model whose file keeps 224 of 256 (converted ImageNet weights) gets uploads as
    predict reads the same file, and /metadata says how."""
    from dataclasses import replace

    from resnetlab.data import read_image
    from resnetlab.engine.predict import read_input

    meta = replace(resnetlab.read_model_meta(model_file), crop_fraction=0.875)
    assert (meta.input_size, meta.resize) == (16, "crop")
    predictor = Predictor(Weightless(meta))
    for name in ("red.png", "red.jpg"):
        pixels = predictor.decode(image_files[name].read_bytes(), name)
        assert np.array_equal(pixels, read_input(image_files[name], meta))
        assert np.array_equal(pixels, read_image(image_files[name], 16, "crop", 0.875))
        assert not np.array_equal(pixels, read_image(image_files[name], 16, "crop"))
    said = predictor.describe()["preprocessing"]
    assert said["crop_fraction"] == 0.875
    assert said["resize"] == (
        "crop: the shorter side to 18, bilinear (antialiased when shrinking), then the centre 16x16"
    )
