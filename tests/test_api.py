"""The Python API's arguments: the wrong kind of value is one line naming it."""

import io
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import resnetlab
from resnetlab.engine.predict import read_input
from resnetlab.explain import explain


def test_the_python_api_names_an_argument_of_the_wrong_type(tmp_path):
    model = tmp_path / "m.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=2), model, input_size=8)
    cases = [
        (
            lambda: resnetlab.predict(model, [np.zeros((8, 8, 3), np.uint8)]),
            "or a PIL image, got ndarray; for uint8 (H, W, 3) pixels, PIL.Image.fromarray(pixels)",
        ),
        (  # the course's X_test / 255: fromarray refuses floats
            lambda: resnetlab.predict(model, list(np.zeros((2, 8, 8, 3)) / 255)),
            "got ndarray; for (H, W, 3) pixels in [0, 1] (the course's X / 255), "
            "PIL.Image.fromarray((pixels * 255).round().astype('uint8'))",
        ),
        (
            lambda: resnetlab.predict(model, [torch.zeros(8, 8, 3, dtype=torch.uint8)]),
            "got Tensor; for uint8 (H, W, 3) pixels, PIL.Image.fromarray(pixels.numpy())",
        ),
        (lambda: resnetlab.load_model(None), "the model file must be a path"),
        (lambda: resnetlab.evaluate(123, "digits"), "the model file must be a path"),
        (lambda: resnetlab.train({"data": "digits"}), "not a dict; unpack it: train(**options)"),
        (lambda: resnetlab.train(resume=123), "resume must be a path (str or pathlib.Path)"),
        (
            lambda: resnetlab.train(resnetlab.TrainConfig(), resume=tmp_path),
            "give what changes as keywords (train(resume=run, epochs=30)), not a TrainConfig",
        ),
        (lambda: resnetlab.read_model_meta(np.zeros(3)), "got ndarray"),
        (
            lambda: read_input(np.zeros((8, 8, 3)), resnetlab.read_model_meta(model)),
            "read_input takes a path (str or pathlib.Path), an open binary file or a PIL image, "
            "got ndarray",
        ),
        (
            lambda: read_input(Image.new("RGB", (8, 8)), resnetlab.load_model(model)),
            "read_input takes the model file's metadata (model.meta), got ResNet",
        ),
        (lambda: resnetlab.predict(model, None), "a PIL image or a list of them, got NoneType"),
        (lambda: explain(model, b"\x89PNG"), "a PIL image or a list of them, got bytes"),
        (
            lambda: resnetlab.create_model(resnetlab.create_model("resnet8")),
            "a model name is a string, got ResNet",
        ),
        (
            lambda: resnetlab.create_model("resnet8", pretrained=resnetlab.load_model(model)),
            "pretrained (torchvision, timm, timm:<model>.<tag>, a weights file or a run "
            "folder) must be a path (str or pathlib.Path), got ResNet",
        ),
        (
            lambda: resnetlab.create_model("resnet8", pretrained=""),
            "pretrained (torchvision, timm, timm:<model>.<tag>, a weights file or a run "
            "folder): an empty value; give one",
        ),
        (
            lambda: resnetlab.save_model(
                resnetlab.create_model("resnet8"), model, class_names="ab"
            ),
            "class_names must be a list of names, got the string 'ab'",
        ),
    ]
    for call, says in cases:
        with pytest.raises(resnetlab.ResnetlabError) as error:
            call()
        assert says in str(error.value)


@pytest.mark.parametrize("count", [-3, "10", 2.5, True])
def test_a_class_count_that_is_not_a_whole_number_from_0_is_refused(count):
    with pytest.raises(
        resnetlab.ResnetlabError, match=r"^num_classes must be (a whole|at least 0)"
    ):
        resnetlab.create_model("resnet8", num_classes=count)


def test_a_class_count_no_model_file_may_record_is_refused_before_building():
    with pytest.raises(
        resnetlab.ResnetlabError, match=r"^num_classes must be at most 100,000, got 10,000,000,000$"
    ):
        resnetlab.create_model("resnet8", num_classes=10**10)


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (
            lambda: resnetlab.create_model("resnet50_keras", input_size="64"),
            "resnet50_keras's input_size must be a whole number, got '64'",
        ),
        (
            lambda: resnetlab.list_models(3),
            "the pattern is a glob such as 'resnet*' or a list of them, got 3",
        ),
        (
            lambda: resnetlab.bench.bench_train("resnet8", steps="2", device="cpu"),
            "--steps must be a whole number, got '2'",
        ),
        (
            lambda: resnetlab.bench.bench_data("digits", steps=0, device="cpu"),
            "--steps must be at least 1, got 0",
        ),
    ],
)
def test_a_number_given_as_text_or_too_small_is_one_line_naming_it(call, says):
    with pytest.raises(resnetlab.ResnetlabError) as error:
        call()
    assert str(error.value) == says


@pytest.mark.parametrize(("top_k", "says"), [("3", "a whole number, got '3'"), (0, "at least 1")])
def test_predict_names_a_top_k_that_is_not_a_count(tmp_path, top_k, says):
    model = tmp_path / "m.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=2), model, input_size=8)
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    with pytest.raises(resnetlab.ResnetlabError, match=f"^top_k must be {says}"):
        resnetlab.predict(model, [tmp_path / "a.png"], top_k=top_k)


def test_any_integer_type_is_a_class_count():
    assert resnetlab.create_model("resnet8", num_classes=np.int64(4)).num_classes == 4
    assert resnetlab.create_model("resnet8", num_classes=0).num_classes == 0  # features only


def test_predict_and_explain_take_open_images_as_their_files(tmp_path):
    model = tmp_path / "m.safetensors"
    resnetlab.save_model(
        resnetlab.create_model("resnet8", num_classes=3),
        model,
        input_size=16,
        class_names=["a", "b", "c"],
    )
    rng = np.random.default_rng(0)
    photo = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (30, 20, 4), dtype=np.uint8)).save(photo)  # RGBA, 2:3
    from_file = resnetlab.predict(model, photo, top_k=3)
    with Image.open(photo) as im:
        (opened,) = resnetlab.predict(model, [im], top_k=3)
        assert im.mode == "RGBA"  # the caller's image is not changed
    assert opened.source == str(photo) and opened.top == from_file[0].top
    pixels = np.asarray(Image.open(photo))
    made = Image.fromarray(pixels)  # made in memory: named by its place in the list
    _, second = resnetlab.predict(model, [photo, made], top_k=3)
    assert second.source == "image 1"
    # In a batch of two rather than alone: the same classes, the numbers to float rounding.
    assert [name for name, _ in second.top] == [name for name, _ in from_file[0].top]
    assert [p for _, p in second.top] == pytest.approx([p for _, p in from_file[0].top], abs=1e-6)
    maps = explain(model, [made])
    assert maps.sources == ["image 0"]


def test_an_open_image_with_premultiplied_alpha_is_read_as_its_straight_alpha(tmp_path):
    """Mode 'La' was 'not a readable image (conversion from La to L not supported)'."""
    model = tmp_path / "m.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=3), model, input_size=8)
    rng = np.random.default_rng(0)
    straight = Image.fromarray(rng.integers(0, 256, (8, 8, 2), dtype=np.uint8), "LA")
    premultiplied = straight.convert("La")
    (got,) = resnetlab.predict(model, premultiplied, top_k=3)
    (expected,) = resnetlab.predict(model, premultiplied.convert("LA"), top_k=3)
    assert got.top == expected.top


def test_predict_shows_its_warnings_at_the_line_that_called_it(tmp_path):
    # predict runs under torch.no_grad(), whose wrapper is not the script's line.
    model = tmp_path / "m.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=2), model, input_size=8)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (8, 8)).save(photos / "a.png")
    (photos / "b.png").write_bytes(b"damaged")
    with pytest.warns(resnetlab.errors.DataWarning, match="b.png") as caught:
        line = sys._getframe().f_lineno + 1
        resnetlab.predict(model, [photos])
    assert {(w.filename, w.lineno) for w in caught} == {(__file__, line)}


def test_paths_from_the_home_folder_are_read_as_a_shell_reads_them(tmp_path, monkeypatch):
    # "~/photos" is the home folder's for the model file, the images and the folder written
    # to, as it is for the data (--data ~/photos), not a folder named "~" here.
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path / "..")
    resnetlab.save_model(
        resnetlab.create_model("resnet8", num_classes=2), tmp_path / "m.safetensors", input_size=8
    )
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    (found,) = resnetlab.predict("~/m.safetensors", ["~/a.png"])
    assert found.source == str(tmp_path / "a.png")
    assert resnetlab.load_model(Path("~/m.safetensors")).num_classes == 2
    explain("~/m.safetensors", "~/a.png").save("~/cams")
    assert (tmp_path / "cams" / "a.png").is_file()


def test_predict_and_evaluate_of_a_model_with_no_file_say_to_load_or_save_one(tmp_path):
    image = tmp_path / "x.png"
    Image.new("RGB", (32, 32)).save(image)
    model = resnetlab.create_model("resnet8")  # no class names, input size or normalisation
    with pytest.raises(resnetlab.ResnetlabError, match=r"^predict takes a model file, or .*"):
        resnetlab.predict(model, [image])
    with pytest.raises(resnetlab.ResnetlabError, match=r"resnetlab.save_model and give that file"):
        resnetlab.evaluate(model, "digits")


def test_evaluate_on_arrays_of_images_says_how_to_give_them(tmp_path):
    path = tmp_path / "m.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=2), path)
    x_test, y_test = np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4, np.int64)
    with pytest.raises(resnetlab.ResnetlabError) as caught:  # was "must be a path"
        resnetlab.evaluate(path, (x_test, y_test))
    assert str(caught.value) == (
        "data names a data set (digits, cifar10, a file or a folder), not arrays of images, "
        "got tuple; write the arrays to an HDF5 file as the course's: test_set_x uint8 "
        "(N, H, W, 3), test_set_y (N,) class indices, and give its path"
    )


def test_read_input_of_bytes_or_a_file_open_as_text_says_how_to_give_it(tmp_path):
    path = tmp_path / "m.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=2), path, input_size=16)
    meta = resnetlab.read_model_meta(path)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (16, 16)).save(photo)
    with pytest.raises(resnetlab.ResnetlabError) as caught:
        read_input(photo.read_bytes(), meta)
    assert str(caught.value).endswith("got bytes; for an image file's bytes, io.BytesIO(data)")
    with open(photo) as text, pytest.raises(resnetlab.ResnetlabError) as caught:
        read_input(text, meta)  # was "not a readable image (UnicodeDecodeError: ...)"
    assert str(caught.value) == (
        f"read_input takes an open binary file; {photo} was opened as text: give "
        f"open({str(photo)!r}, 'rb'), or its path"
    )
    with open(photo, "rb") as binary:
        assert read_input(binary, meta).shape == (16, 16, 3)  # the fix given works
    assert read_input(io.BytesIO(photo.read_bytes()), meta).shape == (16, 16, 3)


def test_train_prints_its_result_alone_to_standard_output_as_its_docstring_says(tmp_path, capsys):
    result = resnetlab.train(model="resnet8", max_steps=1, subset=64, out=tmp_path / "run")
    out, err = capsys.readouterr()
    assert re.fullmatch(
        r"done in [\d.]+ s of training: best val acc [\d.]+ \(epoch 1\)\. Run "
        rf"folder: {re.escape(str(result.run_dir))}\n(note: .*\n)?",
        out,
    )
    assert "epoch   1/1" in err and "Run folder" not in err
    doc = " ".join(resnetlab.train.__doc__.split())
    assert "each epoch to standard error, and the result (``done in ... Run folder: ...``" in doc
    assert "KeyboardInterrupt: Ctrl-C" in doc


def test_what_train_returned_given_where_a_path_goes_says_which_path(tmp_path):
    from resnetlab.engine.train import RunResult

    result = RunResult(tmp_path / "run", {"status": "finished"}, None)
    hint = (
        "; of what train returned, give result.run_dir / 'best.safetensors' (its best model "
        "file) or result.run_dir (the run's folder)"
    )
    for call, says in [
        (lambda: resnetlab.predict(result, "x.png"), "the model file must be a path (str or "),
        (lambda: resnetlab.load_model(result), "the model file must be a path (str or "),
        (lambda: resnetlab.TrainConfig(pretrained=result), "pretrained must be a string, got "),
    ]:
        with pytest.raises(resnetlab.ResnetlabError) as caught:
            call()
        assert str(caught.value).startswith(says) and str(caught.value).endswith(hint)


def test_predict_of_no_images_says_so(tmp_path):
    path = tmp_path / "m.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=2), path)
    with pytest.raises(resnetlab.ResnetlabError, match=r"^no images given: pass image files"):
        resnetlab.predict(path, [])  # not "none of the images could be read"


def test_an_open_file_or_its_bytes_is_named_with_the_way_to_give_it(tmp_path):
    # An open file iterates over its lines, bytes over numbers: neither is "got bytes".
    model = tmp_path / "m.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=2), model)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (16, 16)).save(photo)
    data = photo.read_bytes()
    opened = r"got (BufferedReader|BytesIO); for an open image file, PIL.Image.open\(file\)"
    from_bytes = r"got bytes; for an image file's bytes, PIL.Image.open\(io.BytesIO\(data\)\)"
    for call in (resnetlab.predict, explain):
        with open(photo, "rb") as file:
            with pytest.raises(resnetlab.ResnetlabError, match=opened):
                call(model, file)
            with pytest.raises(resnetlab.ResnetlabError, match=opened):
                call(model, [photo, file])
        with pytest.raises(resnetlab.ResnetlabError, match=opened):
            call(model, io.BytesIO(data))
        with pytest.raises(resnetlab.ResnetlabError, match=from_bytes):
            call(model, data)
        with pytest.raises(resnetlab.ResnetlabError, match=from_bytes):
            call(model, [data])
        with pytest.raises(resnetlab.ResnetlabError, match=r"or a list of them, got dict$"):
            call(model, {"photo": photo})  # not its keys read as paths


@pytest.mark.parametrize("empty", ["", " "])
def test_an_empty_value_is_refused_in_the_command_lines_wording(tmp_path, monkeypatch, empty):
    """Not read as the current folder (``Path("")`` is ``.``) nor as the value left out: each
    argument names itself, then says what the command line says (``argument --data: an
    empty value; give one``)."""
    model = tmp_path / "m.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=2), model, input_size=8)
    monkeypatch.chdir(tmp_path)  # a folder that holds a model file and could be read
    cases = [
        (lambda: resnetlab.load_model(empty), "the model file: an empty value; give one"),
        (
            lambda: resnetlab.predict(model, empty),
            "an image path: an empty value; give an image file or a folder (. for the current "
            "folder)",
        ),
        (
            lambda: resnetlab.evaluate(model, empty),
            "the data (digits, cifar10, or a file or folder): an empty value; give one (. for "
            "the current folder)",
        ),
        (lambda: resnetlab.train(resume=empty), "resume: an empty value; give one"),
        (
            lambda: resnetlab.TrainConfig(pretrained=empty),
            "pretrained: an empty value; give one or leave it out",
        ),
        (
            lambda: resnetlab.create_model("resnet8", pretrained=empty),
            "pretrained (torchvision, timm, timm:<model>.<tag>, a weights file or a run "
            "folder): an empty value; give one or leave it out",
        ),
    ]
    for call, says in cases:
        with pytest.raises(resnetlab.ResnetlabError) as error:
            call()
        assert str(error.value) == says


def test_a_value_with_a_long_repr_is_named_by_its_type():
    """A model or a tensor in the wrong place is named, not printed over screens."""
    model = resnetlab.create_model("resnet8")
    cases = [
        (
            lambda: resnetlab.TrainConfig(pretrained=model),
            "pretrained must be a string, got ResNet",
        ),
        (
            lambda: resnetlab.TrainConfig(out=torch.zeros(100, 3, 8, 8)),
            "out must be a string, got Tensor",  # (as data, it is named as arrays of images)
        ),
        (
            lambda: resnetlab.create_model("resnet8", num_classes=model),
            "num_classes must be a whole number, got ResNet",
        ),
        (lambda: resnetlab.TrainConfig(epochs="1"), "epochs must be an integer, got '1'"),
    ]
    for call, says in cases:
        with pytest.raises(resnetlab.ResnetlabError) as error:
            call()
        assert str(error.value) == says


def test_the_submodules_the_readme_names_are_attributes_of_the_package():
    """``resnetlab.explain.class_activation_maps``, ``resnetlab.export.OnnxModel`` and
    ``resnetlab.serve.create_app``, as the README writes them, after ``import resnetlab``
    alone (loaded on first use)."""
    pytest.importorskip("fastapi")
    code = (
        "import resnetlab; print(resnetlab.explain.class_activation_maps.__name__, "
        "resnetlab.export.OnnxModel.__name__, resnetlab.serve.create_app.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["class_activation_maps", "OnnxModel", "create_app"]
    assert {"explain", "export", "serve"} <= set(dir(resnetlab))


def test_what_the_api_returns_says_what_it_holds_in_help():
    from resnetlab.engine.evaluate import EvalReport, EvalResult
    from resnetlab.engine.predict import Prediction
    from resnetlab.engine.train import RunResult
    from resnetlab.explain import Explanation
    from resnetlab.export import ExportReport

    for kind in (RunResult, EvalReport, EvalResult, Prediction, Explanation, ExportReport):
        # A dataclass without a docstring gets its signature as one: help() says no more.
        assert not kind.__doc__.startswith(f"{kind.__name__}("), kind.__name__


def _said(call):
    """What ``call`` said: the message it raised, else its warnings and notes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = call()
        except resnetlab.ResnetlabError as e:
            return str(e)
    notes = getattr(result, "notes", [])
    return "\n".join([*(str(w.message) for w in caught), *notes])


def _model_file(folder, input_size=8):
    path = folder / "m.safetensors"
    model = resnetlab.create_model("resnet8", num_classes=2)
    resnetlab.save_model(model, path, input_size=input_size, class_names=["a", "b"])
    return path


def _image(folder):
    Image.new("RGB", (8, 8), "white").save(folder / "x.png")
    return folder / "x.png"


# Per module, a case made in tmp_path: the Python call, the same on the command line, and
# what each says.
SETTINGS_NAMED = {
    "engine.config": lambda t: (
        lambda: resnetlab.TrainConfig(epochs=2, head_epochs=2),
        ["train", "--epochs", "2", "--head-epochs", "2"],
        "--head-epochs 2 leaves none of the 2 epochs",
        "head_epochs=2 leaves none of the 2 epochs",
    ),
    "engine.config (model options)": lambda t: (
        lambda: resnetlab.TrainConfig(model_kwargs={"num_classes": 3}),
        ["train", "--model-option", "num_classes=3"],
        "drop --model-option num_classes",
        "drop model_kwargs['num_classes']",
    ),
    "engine.step": lambda t: (
        lambda: resnetlab.train(model="resnet18", batch_size=1, input_size=32, out=t / "r"),
        ["train", "--model", "resnet18", "--batch-size", "1", "--input-size", "32"],
        "--batch-size 1: resnet18 at 32x32 reaches 1x1 feature maps",
        "batch_size=1: resnet18 at 32x32 reaches 1x1 feature maps",
    ),
    "engine.finetune": lambda t: (
        lambda: resnetlab.train(freeze="layer4", input_size=8, out=t / "r"),
        ["train", "--freeze", "layer4", "--input-size", "8"],
        "--freeze layer4: resnet20 has no such stage",
        "freeze='layer4': resnet20 has no such stage",
    ),
    "engine.train": lambda t: (
        lambda: resnetlab.train(resume=t / "gone"),
        ["train", "--resume", str(t / "gone")],
        "--resume takes the folder a run was written to (the run folder its first lines "
        "printed, or its --out)",
        "resume takes the folder a run was written to (the run folder its first lines "
        "printed, or its out)",
    ),
    "data.sources": lambda t: (
        lambda: resnetlab.data.load_dataset("digits", val_split=1),
        ["train", "--val-split", "1"],
        "--val-split must be between 0 and 1",
        "val_split must be between 0 and 1",
    ),
    "models.files": lambda t: (
        lambda: resnetlab.load_model(t / "checkpoint.pt"),
        ["eval", str(t / "checkpoint.pt"), "--data", "digits"],
        "(checkpoint.pt is for --resume)",
        "(checkpoint.pt is for resume)",
    ),
    "export": lambda t: (
        lambda: resnetlab.export.export_model(_model_file(t), t / "m.onnx", batch=0),
        ["export", str(_model_file(t)), str(t / "m.onnx"), "--batch", "0"],
        "--batch must be 'dynamic' or a positive number",
        "batch must be 'dynamic' or a positive number",
    ),
    "explain": lambda t: (
        lambda: explain(_model_file(t), [_image(t)]),
        ["explain", str(_model_file(t)), str(_image(t)), "--out", str(t / "cams")],
        "--layer layer2 draws a finer map",
        "layer='layer2' draws a finer map",
    ),
    "experiments": lambda t: (
        lambda: resnetlab.experiments.run_gradients("digits", (8,), steps=0, out=t / "g"),
        ["experiment", "gradients", "--data", "digits", "--depths", "8", "--steps", "0"],
        "--steps must be at least 1",
        "steps must be at least 1",
    ),
}


@pytest.mark.parametrize("module", SETTINGS_NAMED)
def test_messages_name_settings_as_the_flag_or_as_the_keyword_given(module, tmp_path, capsys):
    """The command line is told its flags (``--head-epochs 2``); Python, which was given
    keywords, the keyword with the value as it writes it (``head_epochs=2``), never a flag."""
    from resnetlab.cli import main

    (tmp_path / "checkpoint.pt").write_bytes(b"\x80\x02not safetensors")
    call, args, flag_form, keyword_form = SETTINGS_NAMED[module](tmp_path)
    said = _said(call)
    assert keyword_form in said and "--" not in said, said
    main([*args, *(["--out", str(tmp_path / "cli")] if args[0] == "train" else [])])
    printed = "".join(capsys.readouterr())
    assert flag_form in printed and keyword_form not in printed.replace(flag_form, ""), printed
