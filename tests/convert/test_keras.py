"""The course's Keras ResNet50, built and saved by Keras itself, imported into resnetlab.

Keras runs on its PyTorch backend (``conftest.py``). Each Keras model is built once per
module; the files it is saved to are shared by the tests, which edit copies of them, and
so is what each file loads to (``loaded``), for the tests that only read the model.
"""

import copy
import json
import re
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

import resnetlab
from resnetlab import ResnetlabError
from resnetlab.cli import main
from resnetlab.convert import convert_keras, load_keras_h5

keras = pytest.importorskip("keras")
# Keras converts its PyTorch tensors to NumPy in a way NumPy 2 warns about, thousands of times.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

from .keras_seed import (  # noqa: E402  (needs keras, imported above)
    clear_session,
    randomize,
    seed_resnet50,
    without_layer_names,
    write_tf_keras2_model,
    write_tf_keras2_weights,
)

# Files written for each test model: name -> (writer, the layout load_keras_h5 detects).
LAYOUTS = {
    "keras3-h5": (lambda m, p: m.save(p), "h5-model"),  # weight names without :0
    "tf-keras2-h5": (write_tf_keras2_model, "h5-model"),  # with :0
    "tf-keras2-weights": (write_tf_keras2_weights, "h5-weights"),
    "tf-keras2-weights-no-suffix": (
        lambda m, p: write_tf_keras2_weights(m, p, suffix=""),
        "h5-weights",
    ),
    "keras3-weights": (lambda m, p: m.save_weights(p), "keras3-weights"),
    "keras3-archive": (lambda m, p: m.save(p), "keras3-archive"),
}
SUFFIX = {"keras3-weights": ".weights.h5", "keras3-archive": ".keras"}
WITH_ARCHITECTURE = {"keras3-h5", "tf-keras2-h5", "keras3-archive"}


def keras_probabilities(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return keras.ops.convert_to_numpy(model(x, training=False))


def resnetlab_probabilities(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        logits = model(torch.from_numpy(x).permute(0, 3, 1, 2))  # NHWC -> NCHW
    return logits.softmax(-1).numpy()


def build_keras_seed(size: int, classes: int, seed: int):
    keras.utils.set_random_seed(seed)
    model = seed_resnet50((size, size, 3), classes)
    randomize(model, seed)
    return model


def write_files(model, folder, names) -> dict:
    folder.mkdir()
    paths = {}
    for name in names:
        paths[name] = folder / f"{name}{SUFFIX.get(name, '.h5')}"
        LAYOUTS[name][0](model, paths[name])
    return paths


class LazyFiles(dict):
    """``write_files`` for every layout, each written when a test first asks for it: the
    layouts only the slow run reads are not written in the default one."""

    def __init__(self, model, folder: Path) -> None:
        super().__init__()
        self.model, self.folder = model, folder
        folder.mkdir()

    def __missing__(self, name: str) -> Path:
        path = self[name] = self.folder / f"{name}{SUFFIX.get(name, '.h5')}"
        LAYOUTS[name][0](self.model, path)
        return path


@pytest.fixture(scope="module")
def new_seed_model():
    """A new resnet50_keras to load a file into: a copy of the one create_model built for
    those classes and that size, which is what create_model builds again, without its
    random initialisation (a third of a second) each time."""
    built = {}

    def new(num_classes: int = 6, input_size: int = 64):
        key = (num_classes, input_size)
        if key not in built:
            built[key] = resnetlab.create_model(
                "resnet50_keras", num_classes=num_classes, input_size=input_size
            )
        return copy.deepcopy(built[key])

    return new


@pytest.fixture(scope="module")
def loaded(new_seed_model):
    """The model (6 classes, 64x64, in eval mode) and report of ``load_keras_h5`` of a file,
    loaded once for the module: tests that change the model change a copy of it."""
    done = {}

    def load(path: Path):
        if path not in done:
            model = new_seed_model().eval()
            done[path] = model, load_keras_h5(model, path)
        return done[path]

    return load


@pytest.fixture(scope="module")
def keras64():
    return build_keras_seed(64, 6, seed=0)


@pytest.fixture(scope="module")
def files64(keras64, tmp_path_factory):
    return LazyFiles(keras64, tmp_path_factory.mktemp("keras") / "64")


@pytest.fixture(scope="module")
def x64() -> np.ndarray:
    return np.random.default_rng(0).random((3, 64, 64, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def probs64(keras64, x64) -> np.ndarray:
    return keras_probabilities(keras64, x64)


@pytest.fixture(scope="module")
def features64(keras64, x64) -> np.ndarray:
    """What the module's model's Flatten gives for x64, (3, 2048): the course's network
    without its classifier, and what a new classifier on it takes."""
    return keras_probabilities(keras.Model(keras64.input, keras64.get_layer("fc6").input), x64)


@pytest.fixture(scope="module")
def keras96():
    return build_keras_seed(96, 3, seed=1)


@pytest.fixture(scope="module")
def files96(keras96, tmp_path_factory):
    names = ["keras3-h5", "tf-keras2-weights"]
    return write_files(keras96, tmp_path_factory.mktemp("keras") / "96", names)


@pytest.fixture(scope="module")
def target64(new_seed_model):
    """A model for failing loads only; the tests that load weights build their own."""
    return new_seed_model()


def edited_copy(src, dst, edit):
    shutil.copy(src, dst)
    with h5py.File(dst, "a") as f:
        edit(f)
    return dst


# Outputs -------------------------------------------------------------------------------


# A tf.keras 2 weights file whose weight names lack the :0 suffix is read as one with it:
# in the slow run.
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=[pytest.mark.slow] * (name == "tf-keras2-weights-no-suffix"))
        for name in LAYOUTS
    ],
)
def test_every_layout_gives_the_keras_models_probabilities(
    name, files64, keras64, x64, probs64, loaded
):
    model, report = loaded(files64[name])  # load_keras_h5 into a new resnet50_keras
    assert report.layout == LAYOUTS[name][1]
    assert (report.layers_loaded, report.tensors_loaded) == (53 + 53 + 1, 53 * 2 + 53 * 4 + 2)
    assert report.values_loaded == keras64.count_params() == 23_600_006
    assert report.architecture_checked == (name in WITH_ARCHITECTURE)
    assert report.file_input_size == (64 if name in WITH_ARCHITECTURE else None)
    ours = resnetlab_probabilities(model, x64)
    assert np.abs(ours - probs64).max() < 1e-5
    assert probs64.max() - probs64.min() > 0.05  # the weights make a difference


@pytest.fixture(scope="module")
def course64():
    """The model as the course's current notebook builds it: no layer named, and the
    average pool at Keras's default padding, 'valid'."""
    keras.utils.set_random_seed(2)
    model = seed_resnet50((64, 64, 3), 6, named=False)
    randomize(model, 2)
    return model


@pytest.fixture(scope="module")
def course_files64(course64, tmp_path_factory):
    return LazyFiles(course64, tmp_path_factory.mktemp("keras") / "course64")


@pytest.fixture(scope="module")
def course_probs64(course64, x64) -> np.ndarray:
    return keras_probabilities(course64, x64)


# Matching by order comes after the weights are read, so a file of each way of reading
# them; the :0 suffix or its absence (tf-keras2-h5 is keras3-h5's reading with it,
# tf-keras2-weights-no-suffix tf-keras2-weights' without) only in the slow run.
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            name,
            marks=[pytest.mark.slow] * (name in {"tf-keras2-h5", "tf-keras2-weights-no-suffix"}),
        )
        for name in LAYOUTS
    ],
)
def test_unnamed_layers_are_matched_in_the_order_they_were_built(
    name, course64, course_files64, x64, course_probs64, loaded
):
    names = [layer.name for layer in course64.layers if layer.weights]
    # Numbered from where the notebook's block tests left off, past 9: conv2d_10 sorts
    # before conv2d_4 as text.
    assert names[:2] == ["conv2d_4", "batch_normalization_4"]
    assert names[-1] == "dense"
    model, report = loaded(course_files64[name])
    assert report.matched_by_order
    assert report.architecture_checked == (name in WITH_ARCHITECTURE)
    assert "107 layers (unnamed, matched in the order they were built)" in report.describe()
    probs = course_probs64
    assert np.abs(resnetlab_probabilities(model, x64) - probs).max() < 1e-5
    assert probs.max() - probs.min() > 0.05  # the weights make a difference


def test_errors_about_unnamed_layers_give_the_files_name_and_the_seeds(
    course_files64, target64, tmp_path
):
    path = edited_copy(
        course_files64["tf-keras2-weights"],
        tmp_path / "bad.h5",
        reshape_kernel("conv2d_6", (3, 3, 64, 32)),
    )
    with pytest.raises(
        ResnetlabError,
        match=r"layer conv2d_6 \(the course's res2a_branch2b\) in .* has a kernel of shape "
        r"\(3, 3, 64, 32\), the model expects \(3, 3, 64, 64\)$",
    ):
        load_keras_h5(target64, path)
    with pytest.raises(
        ResnetlabError, match=r"classes \(its classifier dense \(the course's fc6\)\)"
    ):
        convert_keras(course_files64["keras3-archive"], tmp_path / "m.safetensors", num_classes=3)
    # Unnamed, but a layer short: the counts are what can be said.
    path = edited_copy(
        course_files64["tf-keras2-weights"], tmp_path / "short.h5", drop_layer("conv2d_20")
    )
    with pytest.raises(
        ResnetlabError,
        match=r"short.h5 is neither the deeplearning.ai course's ResNet50 nor .*, the networks "
        r"resnetlab converts: its layers have the names "
        r"Keras makes up \(.*\), and it has 52 Conv2D, 53 BatchNormalization and 1 Dense "
        r"layers, where the course's model has 53, 53 and 1$",
    ):
        load_keras_h5(target64, path)


def test_every_weight_is_the_keras_layers_in_pytorchs_layout(keras64, files64, loaded):
    """Each tensor, exactly: a Conv2D kernel (kh, kw, in, out) as (out, in, kh, kw), a Dense
    kernel transposed, BN's gamma, beta and moving statistics as weight, bias and running
    statistics."""
    model, _ = loaded(files64["keras3-weights"])
    state = model.state_dict()
    checked = 0
    for module_name, keras_name in model.keras_layer_names().items():
        module, values = model.get_submodule(module_name), keras64.get_layer(keras_name)
        values = [keras.ops.convert_to_numpy(w) for w in values.weights]
        if isinstance(module, torch.nn.Conv2d):
            expected = {"weight": values[0].transpose(3, 2, 0, 1), "bias": values[1]}
        elif isinstance(module, torch.nn.Linear):
            expected = {"weight": values[0].T, "bias": values[1]}
        else:
            keys = ("weight", "bias", "running_mean", "running_var")
            expected = dict(zip(keys, values, strict=True))
        for key, value in expected.items():
            assert np.array_equal(state[f"{module_name}.{key}"].numpy(), value), module_name
            checked += 1
    assert checked == 53 * 2 + 53 * 4 + 2


def test_a_list_of_layer_names_split_into_chunks_is_read_whole(
    files64, x64, probs64, tmp_path, new_seed_model
):
    # tf.keras 2 splits an attribute too large for one HDF5 object header (64 KiB) into
    # layer_names0, layer_names1, ...; a long enough list of layers gets there.
    def split(f):
        names = f.attrs["layer_names"]
        del f.attrs["layer_names"]
        for i, chunk in enumerate(np.array_split(names, 3)):
            f.attrs[f"layer_names{i}"] = chunk

    path = edited_copy(files64["tf-keras2-weights"], tmp_path / "chunked.h5", split)
    model = new_seed_model().eval()
    assert load_keras_h5(model, path).layers_loaded == 107
    assert np.abs(resnetlab_probabilities(model, x64) - probs64).max() < 1e-5


@pytest.fixture(scope="module")
def x96() -> np.ndarray:
    return np.random.default_rng(1).random((2, 96, 96, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def probs96(keras96, x96) -> np.ndarray:
    return keras_probabilities(keras96, x96)


# The order is the model's Flatten, whatever the file: a weights-only file (read as at 64,
# and loaded at 96 by test_a_weights_only_file_at_another_size...) in the slow run.
@pytest.mark.parametrize(
    "name", ["keras3-h5", pytest.param("tf-keras2-weights", marks=pytest.mark.slow)]
)
def test_a_2x2_last_feature_map_flattens_in_keras_order(
    name, files96, keras96, x96, probs96, new_seed_model
):
    assert tuple(keras96.get_layer("avg_pool").output.shape) == (None, 2, 2, 2048)
    model = new_seed_model(num_classes=3, input_size=96).eval()
    load_keras_h5(model, files96[name])
    assert model.fc.in_features == 2 * 2 * 2048
    assert np.abs(resnetlab_probabilities(model, x96) - probs96).max() < 1e-5


def test_a_training_step_moves_bn_statistics_as_keras_does(keras64, files64, x64, loaded):
    model = copy.deepcopy(loaded(files64["keras3-h5"])[0])  # the step moves its statistics
    before = keras64.get_weights()
    try:
        with torch.no_grad():
            keras_out = keras.ops.convert_to_numpy(keras64(x64, training=True))
        keras_stats = {
            layer.name: [keras.ops.convert_to_numpy(v) for v in layer.non_trainable_weights]
            for layer in keras64.layers
            if isinstance(layer, keras.layers.BatchNormalization)
        }
    finally:
        keras64.set_weights(before)
    model.train()
    ours = resnetlab_probabilities(model, x64)
    # Normalising by the statistics of a small batch (12 values a channel in stage 5)
    # magnifies float32 rounding, hence a looser bound than in inference.
    assert np.abs(ours - keras_out).max() < 1e-4
    names = model.keras_layer_names()
    moved = 0
    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            moving_mean, moving_variance = keras_stats[names[module_name]]
            np.testing.assert_allclose(module.running_mean, moving_mean, rtol=2e-5, atol=2e-6)
            np.testing.assert_allclose(module.running_var, moving_variance, rtol=2e-5, atol=2e-6)
            moved += 1
    assert moved == 53
    bn_conv1 = keras64.get_layer("bn_conv1")
    restored = keras.ops.convert_to_numpy(bn_conv1.moving_variance)
    assert np.abs(keras_stats["bn_conv1"][1] - restored).min() > 0  # the step moved them


# What the file says: classes and input size ---------------------------------------------


def test_classes_and_input_size_come_from_the_file(files96, tmp_path):
    report = convert_keras(files96["keras3-h5"], tmp_path / "m.safetensors")
    assert (report.num_classes, report.input_size, report.file_input_size) == (3, 96, 96)
    meta = resnetlab.read_model_meta(tmp_path / "m.safetensors")
    assert (meta.model, meta.num_classes, meta.input_size) == ("resnet50_keras", 3, 96)
    assert meta.model_kwargs == {"input_size": 96}
    assert (meta.mean, meta.std) == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # pixels / 255
    assert meta.resize == "squash"  # as Keras's load_img(target_size=...) resizes


@pytest.mark.parametrize("name", ["keras3-h5", "keras3-weights"])
def test_the_courses_model_put_on_new_classes_converts_with_its_new_dense(
    name, keras64, x64, features64, tmp_path, target64
):
    # The transfer learning a Keras user does on the course's model: a new Dense on its
    # Flatten, which Keras names dense, not fc4.
    keras.utils.set_random_seed(3)
    head = keras.layers.Dense(4, activation="softmax")
    model = keras.Model(keras64.input, head(keras64.layers[-2].output))
    path = write_files(model, tmp_path / "files", [name])[name]
    report = convert_keras(path, tmp_path / "m.safetensors")
    assert (report.num_classes, report.layers_loaded) == (4, 107)
    assert not report.matched_by_order and "107 layers," in report.describe()
    converted = resnetlab.load_model(tmp_path / "m.safetensors")
    probs = keras_probabilities(head, features64)  # the model's last layer, on its features
    assert np.abs(resnetlab_probabilities(converted, x64) - probs).max() < 1e-5
    with pytest.raises(
        ResnetlabError,
        match=rf"layer {head.name} \(the course's fc4\) in .* has a kernel of shape \(2048, 4\)",
    ):
        load_keras_h5(target64, path)


def test_a_head_of_its_own_on_the_courses_network_names_its_layers(keras64, tmp_path):
    """Was only 'the course's model has one classifier layer fc<classes>, it has none'."""
    hidden = keras.layers.Dense(8, name="hidden")
    out = keras.layers.Dense(3, activation="softmax", name="out")
    model = keras.Model(keras64.input, out(hidden(keras64.layers[-2].output)))
    path = write_files(model, tmp_path / "files", ["keras3-weights"])["keras3-weights"]
    with pytest.raises(ResnetlabError) as caught:
        convert_keras(path, tmp_path / "m.safetensors")
    assert str(caught.value).endswith(
        "the course's model has one classifier layer fc<classes>, it has none, and layers with "
        "weights the course's has not: hidden, out"
    )


@pytest.mark.parametrize("name", ["keras3-h5", "keras3-weights", "unnamed"])
def test_the_courses_network_without_its_classifier_starts_a_model_as_its_backbone(
    name, keras64, course64, x64, features64, tmp_path, target64
):
    # Saved without its Dense: at its Flatten, or (the notebook's unnamed layers) after
    # its last block, before the pool.
    if name == "unnamed":
        network = keras.Model(course64.input, course64.layers[-4].output)
        path = write_files(network, tmp_path / "files", ["keras3-h5"])["keras3-h5"]
    else:
        network = keras.Model(keras64.input, keras64.layers[-2].output)
        path = write_files(network, tmp_path / "files", [name])[name]
    message = r"holds the course's ResNet50 without its classifier \(no fc<classes> Dense layer\); "
    with pytest.raises(ResnetlabError, match=message + r"a model file needs one: train one on it"):
        convert_keras(path, tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()
    with pytest.raises(ResnetlabError, match=message + r"start a model from it with create_model"):
        load_keras_h5(target64, path)
    model = resnetlab.create_model("resnet50_keras", num_classes=3, pretrained=path).eval()
    assert "318 tensors loaded" in model.pretrained.describe()
    assert "no classifier" in model.pretrained.describe()
    with torch.no_grad():
        features = model.forward_features(torch.from_numpy(x64).permute(0, 3, 1, 2))
        ours = model.forward_head(features, pre_logits=True).numpy()
    if name == "unnamed":  # (B, 2, 2, 2048) before the pool: the course's 2x2 average
        before_pool = keras_probabilities(network, x64)
        assert before_pool.shape == (len(x64), 2, 2, 2048)
        theirs = before_pool.mean(axis=(1, 2))
    else:
        theirs = features64  # the network's output, (B, 2048)
    assert np.abs(ours - theirs).max() < 1e-4 * np.abs(theirs).max()


def test_a_weights_only_file_with_a_1x1_map_is_for_the_seeds_64(files64, tmp_path):
    report = convert_keras(files64["tf-keras2-weights"], tmp_path / "m.safetensors")
    assert (report.input_size, report.file_input_size) == (64, None)


def test_a_weights_only_file_with_a_larger_map_needs_its_input_size(files96, tmp_path):
    src, dst = files96["tf-keras2-weights"], tmp_path / "m.safetensors"
    with pytest.raises(ResnetlabError, match=r"2x2 last feature map, from inputs of 69 to 132"):
        convert_keras(src, dst)
    with pytest.raises(
        ResnetlabError,
        match=r"layer fc3 in .* has a kernel of shape \(8192, 3\), the model expects \(2048, 3\)",
    ):
        convert_keras(src, dst, input_size=64)
    assert not dst.exists()
    assert convert_keras(src, dst, input_size=96).input_size == 96


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            dict(num_classes=10),
            r"has 6 classes \(its classifier fc6\) but num_classes=10 was given; drop it",
        ),
        (dict(class_names=["a", "b"]), r"2 class names given but .* has 6 classes"),
        (dict(input_size=96), r"holds a model for 64x64 inputs but input_size=96 was given; drop"),
    ],
)
def test_flags_that_contradict_the_file_are_errors(files64, tmp_path, kwargs, message):
    dst = tmp_path / "m.safetensors"
    with pytest.raises(ResnetlabError, match=message):
        convert_keras(files64["keras3-h5"], dst, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_the_keras_file_is_never_overwritten(files64):
    src = files64["keras3-weights"]
    size = src.stat().st_size
    with pytest.raises(ResnetlabError, match=r"is the Keras file itself"):
        convert_keras(src, src)
    assert src.stat().st_size == size


def _convert(via: str, src: Path, dst: Path, capsys) -> str:
    """Convert from Python or by the command; the one-line error either gives."""
    if via == "api":
        with pytest.raises(ResnetlabError) as info:
            convert_keras(src, dst)
        return str(info.value)
    assert main(["convert", "keras", str(src), str(dst)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    return err.removeprefix("error: ").removesuffix("\n")


@pytest.mark.parametrize("via", ["api", "cli"])
@pytest.mark.parametrize(
    ("dst", "message"),
    [
        (
            "out.bin",
            "{dst}: not written: a model file is a .safetensors file, not .bin; write {fix}",
        ),
        (  # an export's suffix: the model file first, then export
            "out.onnx",
            "{dst}: not written: a model file is a .safetensors file, and .onnx names another "
            "format (torch.save's, an export's or Keras's); write {fix}, then make out.onnx of "
            "it with resnetlab export",
        ),
        (
            "out.h5",
            "{dst}: not written: a model file is a .safetensors file, and .h5 names another "
            "format (torch.save's, an export's or Keras's); write {fix}",
        ),
        ("folder", "{dst} names a folder; give a file name, e.g. {dst}/seed.safetensors"),
        (
            "a-file/out.safetensors",
            "cannot write {dst}: File exists; a file stands where a folder is needed; "
            "choose another path",
        ),
    ],
)
def test_the_destination_is_checked_before_the_keras_file_is_read(
    tmp_path, monkeypatch, capsys, via, dst, message
):
    import resnetlab.convert.keras as module

    def not_to_be_read(*args, **kwargs):
        raise AssertionError("the Keras file was read")

    monkeypatch.setattr(module, "read_keras_model", not_to_be_read)
    (tmp_path / "folder").mkdir()
    (tmp_path / "a-file").write_text("")
    before = sorted(tmp_path.rglob("*"))
    dst = tmp_path / dst
    said = _convert(via, tmp_path / "seed.h5", dst, capsys)
    assert said == message.format(dst=dst, fix=tmp_path / "out.safetensors")
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.parametrize("via", ["api", "cli"])
def test_the_folders_made_for_the_destination_are_removed_when_the_conversion_fails(
    tmp_path, capsys, via
):
    (tmp_path / "seed.h5").write_text("not hdf5")
    (tmp_path / "kept").mkdir()
    dst = tmp_path / "kept" / "new" / "deeper" / "m.safetensors"
    assert "is not an HDF5 file" in _convert(via, tmp_path / "seed.h5", dst, capsys)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["kept", "seed.h5"]


# Errors ---------------------------------------------------------------------------------


def drop_layer(name):
    def edit(f):
        del f[name]
        f.attrs["layer_names"] = [n for n in f.attrs["layer_names"] if n != name.encode()]

    return edit


def add_layer(name, shape):
    def edit(f):
        group = f.create_group(name)
        group.attrs["weight_names"] = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
        group.create_dataset(f"{name}/kernel:0", data=np.zeros(shape, np.float32))
        group.create_dataset(f"{name}/bias:0", data=np.zeros(shape[-1], np.float32))
        f.attrs["layer_names"] = [*f.attrs["layer_names"], name.encode()]

    return edit


def reshape_kernel(layer, shape):
    def edit(f):
        del f[f"{layer}/{layer}/kernel:0"]
        f.create_dataset(f"{layer}/{layer}/kernel:0", data=np.zeros(shape, np.float32))

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            drop_layer("res3b_branch2b"),
            r"has no layer res3b_branch2b, which the course's ResNet50 has",
        ),
        (
            add_layer("res5d_branch2a", (1, 1, 2048, 512)),
            r"has a layer res5d_branch2a with weights, which the course's ResNet50 does not have",
        ),
        (
            reshape_kernel("res2a_branch2b", (3, 3, 64, 32)),
            r"layer res2a_branch2b in .* has a kernel of shape \(3, 3, 64, 32\), "
            r"the model expects \(3, 3, 64, 64\)$",
        ),
    ],
    ids=["missing layer", "extra layer", "shape mismatch"],
)
def test_layer_errors_name_the_layer_and_leave_the_model_alone(
    files64, target64, tmp_path, edit, message
):
    path = edited_copy(files64["tf-keras2-weights"], tmp_path / "bad.h5", edit)
    before = {k: v.clone() for k, v in target64.state_dict().items()}
    with pytest.raises(ResnetlabError, match=message):
        load_keras_h5(target64, path)
    after = target64.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_classifier_of_another_width_says_how_many_classes_the_file_has(files64):
    model = resnetlab.create_model("resnet50_keras", num_classes=10)
    with pytest.raises(ResnetlabError, match=r"\(2048, 6\), the model expects \(2048, 10\).*6 cl"):
        load_keras_h5(model, files64["keras3-weights"])


def test_a_model_built_for_another_input_size_is_refused(files64):
    model = resnetlab.create_model("resnet50_keras", num_classes=6, input_size=48)
    with pytest.raises(ResnetlabError, match=r"for 64x64 inputs but the model was built for 48x48"):
        load_keras_h5(model, files64["keras3-h5"])


def test_only_the_seeds_model_is_a_target(files64):
    with pytest.raises(
        ResnetlabError,
        match=r"is not a keras.applications ResNet, and loads only as the course's "
        r"ResNet50: build the model with create_model\('resnet50_keras', \.\.\.\), not a ResNet$",
    ):
        load_keras_h5(resnetlab.create_model("resnet50"), files64["keras3-h5"])


def test_a_file_that_is_not_hdf5(target64, tmp_path):
    path = tmp_path / "model.h5"
    path.write_text("not a model")
    with pytest.raises(ResnetlabError, match=r"model.h5 is not an HDF5 file"):
        load_keras_h5(target64, path)


@pytest.mark.parametrize("name", ["ResNet50.h5", "model.keras"])
def test_what_a_failed_fetch_leaves_is_named(target64, tmp_path, name):
    """The course's ResNet50.h5 travels by Git LFS and download links: a clone without LFS
    leaves a pointer, a link that answers with a page leaves HTML."""
    path = tmp_path / name
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:4d1d\nsize 94978552\n")
    with pytest.raises(ResnetlabError) as caught:
        load_keras_h5(target64, path)
    assert str(caught.value) == (
        f"{path} is a Git LFS pointer ({path.stat().st_size} bytes), not the file it stands "
        "for: its repository was cloned without Git LFS; fetch the file with git lfs pull (or "
        "download it from the repository's page)"
    )
    # A page after a byte order mark too, as an image named .jpg is told to be one.
    for page in (b"\n<!DOCTYPE html><html><head>", b"\xef\xbb\xbf<!DOCTYPE html><html>"):
        path.write_bytes(page + b"<title>Virus scan warning</title>")
        with pytest.raises(ResnetlabError) as caught:
            load_keras_h5(target64, path)
        assert str(caught.value) == (
            f"{path} is a web page (HTML), not the file it is named for, as a download link "
            "that answers with a sign-in or confirmation page leaves it; download the file "
            "itself (from the page, or with its direct link)"
        )


def test_a_keras_archive_without_its_weights(files64, target64, tmp_path):
    path = tmp_path / "light.keras"
    with zipfile.ZipFile(files64["keras3-archive"]) as archive, zipfile.ZipFile(path, "w") as out:
        for name in archive.namelist():
            if name != "model.weights.h5":
                out.writestr(name, archive.read(name))
    with pytest.raises(ResnetlabError) as caught:
        load_keras_h5(target64, path)
    assert str(caught.value) == (
        f"{path} is a Keras archive without its weights (no model.weights.h5 beside its "
        "config.json), as one edited or repacked after saving leaves it; save the model again "
        "with model.save('x.keras') and convert that"
    )


@pytest.mark.parametrize("name", ["keras3-h5", "keras3-weights", "keras3-archive"])
def test_a_file_cut_short_says_so(name, files64, target64, tmp_path):
    src = files64[name]
    path = tmp_path / f"short{SUFFIX.get(name, '.h5')}"
    path.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    size = f"{path.stat().st_size:,} of {src.stat().st_size:,} bytes"
    what = (
        r"a zip archive, as .keras files are, without its end" if name == "keras3-archive" else size
    )
    with pytest.raises(
        ResnetlabError,
        match=rf"short\S* is cut short \({what}\), as a copy or download that stopped leaves "
        r"it; copy it again$",
    ):
        load_keras_h5(target64, path)


@pytest.mark.parametrize("name", ["model.h5", "model.keras"])
def test_an_empty_file_says_to_copy_it_again(name, target64, tmp_path):
    # A copy or download that failed: said as for a model file, not as a file of another kind.
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(ResnetlabError) as caught:
        load_keras_h5(target64, path)
    assert str(caught.value) == (
        f"{path} is empty (0 bytes), as a copy or download that failed leaves it; copy it again"
    )


def test_a_folder_or_a_missing_file_is_named_as_such(target64, tmp_path):
    with pytest.raises(ResnetlabError, match=r"is a folder; give the Keras model file in it"):
        load_keras_h5(target64, tmp_path)
    with pytest.raises(ResnetlabError, match=r"Keras file not found: .*nope.h5$"):
        load_keras_h5(target64, tmp_path / "nope.h5")
    (tmp_path / "ResNet50.h5").write_bytes(b"")  # the name meant, one letter off
    with pytest.raises(ResnetlabError) as caught:
        load_keras_h5(target64, tmp_path / "ResNet5.h5")
    assert str(caught.value) == (
        f"Keras file not found: {tmp_path / 'ResNet5.h5'}; did you mean {tmp_path / 'ResNet50.h5'}?"
    )
    # Nothing, or an empty value, where the file goes: pathlib's TypeError, and the current
    # folder ("." is a folder; give the Keras model file in it).
    for call in (
        lambda: load_keras_h5(target64, None),
        lambda: convert_keras(None, tmp_path / "m.safetensors"),
    ):
        with pytest.raises(ResnetlabError, match=r"^the Keras file must be a path \(str or "):
            call()
    with pytest.raises(ResnetlabError, match=r"^the Keras file: an empty value; give one$"):
        convert_keras("", tmp_path / "m.safetensors")


def tensorflow_files(folder: Path) -> tuple[Path, Path]:
    """A TensorFlow SavedModel folder and a checkpoint prefix, as tf.keras 2 writes them for
    model.save('sm') and model.save_weights('ckpt/weights') (the files' bytes do not matter)."""
    saved_model = folder / "sm"
    (saved_model / "variables").mkdir(parents=True)
    for name in ("saved_model.pb", "keras_metadata.pb", "variables/variables.index"):
        (saved_model / name).write_bytes(b"\x08\x01")
    checkpoint = folder / "ckpt"
    checkpoint.mkdir()
    for name in ("checkpoint", "weights.index", "weights.data-00000-of-00001"):
        (checkpoint / name).write_bytes(b"\x08\x01")
    return saved_model, checkpoint / "weights"


def test_tensorflows_own_formats_say_how_to_make_a_keras_file(target64, tmp_path, capsys):
    saved_model, prefix = tensorflow_files(tmp_path)
    for given in (saved_model, saved_model / "saved_model.pb", saved_model / "variables"):
        with pytest.raises(ResnetlabError) as caught:
            load_keras_h5(target64, given)
        assert str(caught.value) == (
            f"{saved_model} is a TensorFlow SavedModel (tf.keras 2's model.save to a path "
            "without .h5 or .keras), which does not convert; with TensorFlow 2.15 or earlier "
            f"(or tf_keras), load it with tf.keras.models.load_model('{saved_model}'), save it "
            "with model.save('model.h5') and use that file"
        )
    for given in (prefix, prefix.with_suffix(".index"), prefix.parent / "checkpoint"):
        with pytest.raises(ResnetlabError) as caught:
            load_keras_h5(target64, given)
        assert str(caught.value) == (
            f"{prefix} is a TensorFlow checkpoint (tf.keras 2's model.save_weights to a path "
            "without .h5), which does not convert; in TensorFlow, build the model, load it "
            f"with model.load_weights('{prefix}'), save it with model.save('model.h5') and use "
            "that file"
        )
    dst = tmp_path / "m.safetensors"
    assert main(["convert", "keras", str(saved_model), str(dst)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"error: {saved_model} is a TensorFlow SavedModel") and err.count("\n") == 1
    )
    assert not dst.exists()


def test_tensorflows_own_formats_given_as_a_model_file_say_how_to_make_one(tmp_path, capsys):
    # predict, eval, export and serve said "sm is a folder, not a model file; a run
    # folder's model files are best.safetensors and last.safetensors".
    saved_model, prefix = tensorflow_files(tmp_path)
    image = tmp_path / "new.png"
    Image.new("RGB", (8, 8)).save(image)
    for given, kind in ((saved_model, "SavedModel"), (prefix, "checkpoint")):
        for args in (["predict", str(given), str(image)], ["export", str(given), "m.onnx"]):
            assert main(args) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"error: {given} is a TensorFlow {kind} (tf.keras 2's "), err
            assert err.endswith(
                "and use that file once converted: resnetlab convert keras model.h5 "
                "model.safetensors\n"
            )
    with pytest.raises(ResnetlabError, match="is a TensorFlow SavedModel"):
        resnetlab.load_model(saved_model)


def test_an_hdf5_file_keras_did_not_write(target64, tmp_path):
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["test_set_x"] = np.zeros((2, 64, 64, 3), np.uint8)
    with pytest.raises(ResnetlabError, match=r"data.h5 is an HDF5 file but not one Keras wrote"):
        load_keras_h5(target64, tmp_path / "data.h5")


def test_a_data_set_given_as_the_keras_file_says_to_give_it_as_the_data(target64, tmp_path):
    data = tmp_path / "train_signs.h5"
    with h5py.File(data, "w") as f:
        f["train_set_x"] = np.zeros((2, 64, 64, 3), np.uint8)
        f["train_set_y"] = np.zeros(2, np.int64)
    with pytest.raises(ResnetlabError, match=r"train_signs.h5 is a data set \(train_set_x, "):
        convert_keras(data, tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()


def test_another_keras_model_is_not_the_seed(target64, tmp_path):
    layers = keras.layers
    other = keras.Sequential(
        [
            keras.Input((64, 64, 3)),
            layers.Conv2D(8, 3, name="block1_conv1"),
            layers.BatchNormalization(name="block1_bn"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(6, activation="softmax", name="predictions"),
        ]
    )
    other.save(tmp_path / "other.h5")
    with pytest.raises(ResnetlabError) as info:
        load_keras_h5(target64, tmp_path / "other.h5")
    # The way forward: what does convert.
    assert str(info.value).startswith(
        f"{tmp_path / 'other.h5'} is neither the deeplearning.ai course's ResNet50 nor a "
        "keras.applications ResNet50, ResNet101 or ResNet152 (alone or as a transfer model's "
        "base), the networks resnetlab converts: it has 3 layers with weights (block1_conv1, "
        "block1_bn, predictions), 0 of them named as the course's"
    )


def test_a_keras_applications_resnet_is_not_the_seed(target64, tmp_path):
    """It converts to resnetlab's resnet50 (test_keras_applications.py), not into the course's."""
    clear_session()
    model = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=6)
    model.save(tmp_path / "resnet50.keras")
    with pytest.raises(
        ResnetlabError,
        match=r"resnet50.keras holds keras.applications ResNet50; load it into "
        r"create_model\('resnet50', num_classes=6, stride_in_1x1=True, bias=True, "
        r"norm_eps=1.001e-05\)$",
    ):
        load_keras_h5(target64, tmp_path / "resnet50.keras")


@pytest.mark.parametrize("name", ["outer.keras", "outer.weights.h5", "outer.h5"])
def test_a_model_nested_in_another_is_refused_in_every_layout(target64, tmp_path, name):
    layers = keras.layers
    inner = keras.Sequential(
        [keras.Input((8, 8, 3)), layers.Conv2D(2, 3, name="conv1"), layers.Conv2D(2, 3)]
    )
    outer = keras.Sequential([keras.Input((8, 8, 3)), layers.RandomFlip(), inner])
    if name.endswith(".weights.h5"):
        outer.save_weights(tmp_path / name)
    else:
        outer.save(tmp_path / name)
    with pytest.raises(
        ResnetlabError,
        match=rf"layer \S+ in .*{re.escape(name)} .*a model nested in another converts only "
        r"when it is a keras.applications ResNet, save the inner model itself$",
    ):
        load_keras_h5(target64, tmp_path / name)


def edit_config(edit):
    def apply(f):
        config = json.loads(f.attrs["model_config"])
        layers = {layer["name"]: layer for layer in config["config"]["layers"]}
        edit(config["config"]["layers"], layers)
        f.attrs["model_config"] = json.dumps(config)

    return apply


def set_option(layer, option, value):
    return edit_config(lambda _, layers: layers[layer]["config"].__setitem__(option, value))


def add_dropout(layer_list, _):
    layer_list.insert(-1, {"class_name": "Dropout", "name": "dropout", "config": {"rate": 0.5}})


@pytest.mark.parametrize(("class_name", "shown"), [("Lambda", "Lambda"), ("Custom>Scale", "Scale")])
def test_a_preprocessing_layer_of_code_says_how_to_convert_the_model(
    files64, target64, tmp_path, class_name, shown
):
    # A Lambda, or a class of the user's (register_keras_serializable's Custom>Scale in an
    # HDF5 file), first after the input: the file holds no code for it.
    def add_first(layer_list, _):
        layer_list.insert(1, {"class_name": class_name, "name": "scale", "config": {}})

    path = edited_copy(files64["keras3-h5"], tmp_path / "other.h5", edit_config(add_first))
    with pytest.raises(ResnetlabError) as info:
        load_keras_h5(target64, path)
    assert str(info.value) == (
        f"{path} is neither the deeplearning.ai course's ResNet50 nor a keras.applications "
        "ResNet50, ResNet101 or ResNet152 (alone or as a transfer model's base), the networks "
        f"resnetlab converts: its layer scale is a {shown}, "
        "which the course's model does not use; where it scales the pixels, build the model "
        "with keras.layers.Rescaling(scale, offset) in its place (or with nothing, for "
        "pixels / 255 done before it), copy the weights (new_model.set_weights("
        "model.get_weights())), save that and convert it"
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            set_option("res3a_branch2a", "strides", [1, 1]),
            r"res3a_branch2a has strides=\(1, 1\), the course's \(2, 2\)",
        ),
        (
            set_option("res2a_branch2b", "padding", "valid"),
            r"res2a_branch2b has padding='valid', the course's 'same'",
        ),
        (
            set_option("bn_conv1", "epsilon", 1.001e-5),
            r"bn_conv1 has epsilon=1.001e-05, the course's 0.001",
        ),
        (
            set_option("avg_pool", "pool_size", [3, 3]),
            r"avg_pool has pool_size=\(3, 3\), the course's \(2, 2\)",
        ),
        (
            set_option("fc6", "activation", "sigmoid"),
            r"fc6 has activation='sigmoid', the course's 'softmax'",
        ),
        (
            edit_config(add_dropout),
            r"its layer dropout is a Dropout, which the course's model does not use; a "
            r"Dropout changes no prediction: build the model without it, copy the weights "
            r"\(new_model.set_weights\(model.get_weights\(\)\)\), save that and convert it$",
        ),
    ],
    ids=["strides", "padding", "epsilon", "pooling", "activation", "extra layer"],
)
def test_an_architecture_that_is_not_the_seeds(files64, target64, tmp_path, edit, message):
    path = edited_copy(files64["keras3-h5"], tmp_path / "other.h5", edit)
    with pytest.raises(
        ResnetlabError,
        match=r"other.h5 is neither the deeplearning.ai course's ResNet50 nor .*: .*" + message,
    ):
        load_keras_h5(target64, path)


def channels_first(layer_list, _):
    """The architecture as Keras builds it after set_image_data_format('channels_first')."""
    for layer in layer_list:
        config = layer["config"]
        if layer["class_name"] == "InputLayer":
            config["batch_shape"] = [None, 3, 64, 64]
        if "data_format" in config:
            config["data_format"] = "channels_first"


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (
            edit_config(channels_first),
            r"takes inputs of shape \(3, 64, 64\), channels first, where a converted model's "
            r"are \(size, size, 3\)",
        ),
        (
            set_option("res2a_branch2b", "data_format", "channels_first"),
            r"its layer res2a_branch2b uses data_format=channels_first, the course's model "
            r"channels_last",
        ),
    ],
    ids=["inputs", "layer"],
)
def test_a_channels_first_model_says_how_to_save_it_channels_last(
    files64, target64, tmp_path, edit, problem
):
    path = edited_copy(files64["keras3-h5"], tmp_path / "first.h5", edit)
    with pytest.raises(
        ResnetlabError,
        match=problem + r"; build the model again after keras.config.set_image_data_format\("
        r"'channels_last'\), copy the weights \(new_model.set_weights\(model.get_weights\(\)\)\), "
        r"save that and convert it$",
    ):
        load_keras_h5(target64, path)


def test_valid_pooling_is_the_seeds_on_an_even_map_only(files64, files96, tmp_path, new_seed_model):
    # 64x64 inputs leave a 2x2 map, which 'valid' and 'same' pool alike.
    even = edited_copy(
        files64["keras3-h5"], tmp_path / "even.h5", set_option("avg_pool", "padding", "valid")
    )
    load_keras_h5(new_seed_model(), even)
    # 96x96 inputs leave a 3x3 map: 'valid' drops its last row and column.
    odd = edited_copy(
        files96["keras3-h5"], tmp_path / "odd.h5", set_option("avg_pool", "padding", "valid")
    )
    model = new_seed_model(num_classes=3, input_size=96)
    with pytest.raises(
        ResnetlabError,
        match=r"odd.h5 is neither the deeplearning.ai course's ResNet50 nor .*, the networks "
        r"resnetlab converts: its layer avg_pool has "
        r"padding='valid', which pools the 3x3 last feature map to 1x1; the course's 'same' "
        r"gives 2x2$",
    ):
        load_keras_h5(model, odd)


# A weights file's group keys (conv2d_7) are the same whether its layers were named or not
# (only its values differ): the named model's weights file in the slow run only.
@pytest.mark.parametrize(
    ("built", "name"),
    [
        pytest.param("named", "keras3-weights", marks=pytest.mark.slow),
        ("named", "keras3-archive"),
        ("unnamed", "keras3-weights"),
        ("unnamed", "keras3-archive"),
    ],
)
def test_keras_3_0_to_3_5_files_without_layer_names_convert_as_with_them(
    name, built, files64, course_files64, tmp_path, loaded, new_seed_model
):
    """Keras 3.0 to 3.5 wrote no name for a layer's weights: an archive names them from its
    config, a weights file by their groups' keys (conv2d_7), matched in the order they were
    built."""
    named = (files64 if built == "named" else course_files64)[name]
    old = without_layer_names(named, tmp_path / f"old{SUFFIX[name]}")
    models = [loaded(named)[0], new_seed_model()]
    assert loaded(named)[1].layout == LAYOUTS[name][1]
    report = load_keras_h5(models[1], old)
    assert report.layout == LAYOUTS[name][1]
    assert report.matched_by_order == (built == "unnamed" or name == "keras3-weights")
    assert report.architecture_checked == (name == "keras3-archive")
    theirs = models[0].state_dict()
    for key, value in models[1].state_dict().items():
        assert torch.equal(value, theirs[key]), key


def test_a_keras_3_0_to_3_5_weights_file_of_another_model_says_how_to_save_it(target64, tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="fc6")])
    model.save_weights(tmp_path / "new.weights.h5")
    old = without_layer_names(tmp_path / "new.weights.h5", tmp_path / "old.weights.h5")
    with pytest.raises(
        ResnetlabError,
        match=r"old.weights.h5 was written by Keras 3.0 to 3.5, whose weights files record no "
        r"layer names; without them only the course's ResNet50 converts \(by the order of its "
        r"layers\): save the model with model.save\('x.keras'\) \(or 'x.h5'\) and convert "
        r"that$",
    ):
        load_keras_h5(target64, old)


# The course's data ------------------------------------------------------------------------


def test_the_seeds_test_set_gets_the_keras_models_predictions(keras64, shared_data, tmp_path):
    with h5py.File(shared_data / "signs" / "test_signs.h5") as f:
        x = f["test_set_x"][()].astype(np.float32) / 255  # (120, 64, 64, 3), the course's input
        y = f["test_set_y"][()]
    # Five photos of each class, the first in the file: every class, at a quarter of the
    # cost of two ResNet50s on all 120.
    keep = np.concatenate([np.flatnonzero(y == c)[:5] for c in range(6)])
    x, y = x[keep], y[keep]
    # The module's model with a classifier fitted to these images' features, so that the
    # predictions span the classes instead of all falling on one: least squares on the
    # one-hot labels. A new fc6 on its Flatten: the module's model stays as it is.
    flat = keras64.get_layer("fc6").input
    features = keras_probabilities(keras.Model(keras64.input, flat), x)  # (30, 2048)
    centre = features.mean(0)
    targets = 10 * (np.eye(6)[y] - 1 / 6)
    kernel = np.linalg.lstsq(features - centre, targets, rcond=None)[0]
    classifier = keras.layers.Dense(6, activation="softmax", name="fc6")
    keras_model = keras.Model(keras64.input, classifier(flat))
    classifier.set_weights([kernel, -centre @ kernel])
    expected = keras_probabilities(classifier, features)  # the model's last layer, on its features
    assert len(set(expected.argmax(1))) == 6

    keras_model.save(tmp_path / "seed.h5")
    convert_keras(tmp_path / "seed.h5", tmp_path / "seed.safetensors")
    model = resnetlab.load_model(tmp_path / "seed.safetensors")
    ours = resnetlab_probabilities(model, x)
    assert (ours.argmax(1) == expected.argmax(1)).all()
    assert np.abs(ours - expected).max() < 1e-5


# A Rescaling layer first: raw pixels in --------------------------------------------------

RESCALINGS = {
    "1/255": ((1 / 255, 0.0), (0.0,) * 3, (1.0,) * 3),
    "[-1, 1]": ((1 / 127.5, -1.0), (0.5,) * 3, (0.5,) * 3),
    "per channel": (
        ([1 / 58.4, 1 / 57.1, 1 / 57.4], [-123.7 / 58.4, -116.3 / 57.1, -103.5 / 57.4]),
        (123.7 / 255, 116.3 / 255, 103.5 / 255),
        (58.4 / 255, 57.1 / 255, 57.4 / 255),
    ),
}


@pytest.fixture(scope="module")
def rescaled_seed():
    """The course's model at 32x32 with a Rescaling layer first, built once a rescaling."""
    built = {}

    def build(rescaling: str):
        if rescaling not in built:
            keras.utils.set_random_seed(3)
            built[rescaling] = seed_resnet50((32, 32, 3), 4, rescaling=RESCALINGS[rescaling][0])
            randomize(built[rescaling], 3)
        return built[rescaling]

    return build


@pytest.fixture(scope="module")
def rescaled_file(rescaled_seed, tmp_path_factory):
    """The file of ``rescaled_seed(rescaling)`` in a layout, written once for the module."""
    written = {}

    def write(rescaling: str, layout: str) -> Path:
        if (rescaling, layout) not in written:
            folder = tmp_path_factory.mktemp("rescaled")
            model = rescaled_seed(rescaling)
            written[rescaling, layout] = write_files(model, folder / "keras", [layout])[layout]
        return written[rescaling, layout]

    return write


def _rescaled_cases(default_layouts: set[str]) -> list:
    """Every rescaling from a Keras 3 archive, and the per-channel one (the one whose scale
    and offset are lists) from a tf.keras 2 .h5, whose config is read by another path; the
    per-channel one by default in ``default_layouts``, the rest in the slow run."""
    cases = [(name, "keras3-archive") for name in RESCALINGS] + [("per channel", "tf-keras2-h5")]
    return [
        pytest.param(
            rescaling,
            layout,
            marks=[pytest.mark.slow]
            * (rescaling != "per channel" or layout not in default_layouts),
        )
        for rescaling, layout in cases
    ]


# The tensors of the course's model (a Rescaling layer has none): weights and BN statistics,
# no BN batch counters, counted alike by convert and as pretrained weights.
SEED_TENSORS = 53 * 2 + 53 * 4 + 2


@pytest.mark.parametrize(
    ("rescaling", "layout"), _rescaled_cases({"keras3-archive", "tf-keras2-h5"})
)
def test_a_rescaling_layer_first_becomes_the_normalisation(
    rescaled_seed, rescaled_file, tmp_path, rescaling, layout
):
    """A model fed raw pixels by a Rescaling layer converts to a model file whose
    normalisation does what that layer did: predict on a photo gives Keras's numbers on its
    raw pixels."""
    _, mean, std = RESCALINGS[rescaling]
    model = rescaled_seed(rescaling)
    src = rescaled_file(rescaling, layout)
    dst = tmp_path / "m.safetensors"
    report = convert_keras(src, dst)
    assert report.mean == pytest.approx(mean) and report.std == pytest.approx(std)
    assert "inputs rescaled by rescaling (pixels * " in report.describe()
    assert report.tensors_loaded == SEED_TENSORS
    pixels = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    photo = tmp_path / "photo.png"
    Image.fromarray(pixels).save(photo)
    (answer,) = resnetlab.predict(dst, [photo], top_k=4)
    expected = keras_probabilities(model, pixels[None].astype(np.float32))[0]
    got = dict(answer.top)
    assert [got[str(i)] for i in range(4)] == pytest.approx(expected.tolist(), abs=1e-5)


# The pretrained weights read the file as convert does (the test above reads each layout):
# the tf.keras 2 .h5 in the slow run.
@pytest.mark.parametrize(("rescaling", "layout"), _rescaled_cases({"keras3-archive"}))
def test_a_rescaling_layers_normalisation_is_the_pretrained_weights_too(
    rescaled_file, tmp_path, rescaling, layout
):
    _, mean, std = RESCALINGS[rescaling]
    src = rescaled_file(rescaling, layout)
    pretrained = resnetlab.create_model("resnet50_keras", pretrained=src).pretrained
    assert pretrained.mean == pytest.approx(mean) and pretrained.std == pytest.approx(std)
    # Counted as convert counts them (weights and BN statistics, no BN batch counters).
    assert f": {SEED_TENSORS} tensors loaded" in pretrained.describe()
    # The layer says how the inputs were scaled: --inputs would contradict it.
    with pytest.raises(
        ResnetlabError, match=r"scales its inputs itself \(rescaled by rescaling \(pixels \* "
    ):
        convert_keras(src, tmp_path / "other.safetensors", inputs="0-255")


def _rescaling_edit(where: int, **config):
    def edit(layer_list, _):
        layer = {"class_name": "Rescaling", "name": "rescale", "config": config}
        layer_list.insert(where, layer)

    return edit_config(edit)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            _rescaling_edit(5, scale=1 / 255, offset=0.0),
            "its layer rescale is a Rescaling inside the network; one is read only as the "
            "first layer after the input",
        ),
        (
            _rescaling_edit(1, scale=[1.0, 2.0], offset=0.0),
            "its layer rescale rescales with scale=[1.0, 2.0], which is not one number or "
            "one per colour channel",
        ),
        (
            _rescaling_edit(1, scale=-1 / 255, offset=1.0),
            "only a positive scale reads as a normalisation of the inputs",
        ),
    ],
    ids=["inside", "two channels", "negative"],
)
def test_a_rescaling_that_is_no_normalisation_is_refused(
    files64, target64, tmp_path, edit, message
):
    path = edited_copy(files64["keras3-h5"], tmp_path / "other.h5", edit)
    with pytest.raises(ResnetlabError, match=re.escape(message)):
        load_keras_h5(target64, path)


# Command line ---------------------------------------------------------------------------


def test_cli_converts_to_a_file_load_model_rebuilds(files64, x64, probs64, tmp_path, capsys):
    dst = tmp_path / "seed.safetensors"
    names = "zero,one,two,three,four,five"
    assert (
        main(["convert", "keras", str(files64["tf-keras2-h5"]), str(dst), "--classes", names]) == 0
    )
    out = capsys.readouterr().out
    assert "107 layers, 320 tensors" in out and f"wrote {dst}" in out
    model = resnetlab.load_model(dst)
    assert model.meta.class_names == names.split(",")
    assert (model.meta.input_size, model.meta.num_classes) == (64, 6)
    assert model.meta.training["converted_from"] == "tf-keras2-h5.h5"
    assert np.abs(resnetlab_probabilities(model, x64) - probs64).max() < 1e-5
    # Without --classes the file names none (eval and train --pretrained then take a data
    # set's classes in order), and the last line says so and how to name them.
    assert main(["convert", "keras", str(files64["tf-keras2-h5"]), str(dst)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "note: tf-keras2-h5.h5 names no classes: predict calls its 6 outputs 0 to 5, and eval "
        "and train --pretrained take a data set's classes in their order; "
        '--classes "a,b,..." names them in the order of the outputs, so that eval and train '
        "--pretrained match them to a data set's classes by name"
    )
    assert resnetlab.load_model(dst).meta.class_names is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--num-classes", "10"],
            "has 6 classes (its classifier fc6) but --num-classes 10 was given; drop it",
        ),
        (["--classes", "a,b,c"], "3 class names given but"),
        (["--classes", "a b c d e f"], "give one name per class, separated by commas: a,b,c,d,e,f"),
        (["--classes", "a,,b,c,d,e"], "--classes has an empty name"),
        (["--input-size", "96"], "holds a model for 64x64 inputs but --input-size 96 was given"),
    ],
)
def test_cli_failures_are_one_line_and_write_nothing(files64, tmp_path, capsys, args, message):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = ["convert", "keras", str(files64["keras3-h5"]), str(out_dir / "m.safetensors"), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1
    assert list(out_dir.iterdir()) == []


def test_cli_classes_given_a_file_of_names_says_how_to_give_them(files64, tmp_path, capsys):
    labels = tmp_path / "my labels.txt"  # one name a line, as label files keep them
    labels.write_text("a\nb\nc\nd\ne\nf\n")
    dst = tmp_path / "m.safetensors"
    argv = ["convert", "keras", str(files64["keras3-h5"]), str(dst), "--classes", str(labels)]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"error: --classes takes the class names, not a file of them ({labels}); give them "
        f"separated by commas, for a file of one a line: --classes \"$(paste -sd, '{labels}')\"\n"
    )
    assert not dst.exists()


def test_cli_refuses_a_file_that_is_not_keras(tmp_path, capsys):
    src = tmp_path / "notes.h5"
    src.write_text("weights are elsewhere")
    assert main(["convert", "keras", str(src), str(tmp_path / "m.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {src} is not an HDF5 file") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.h5"]
    # A resnetlab model file given to convert: it needs no converting.
    model = tmp_path / "m.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8"), model)
    assert main(["convert", "keras", str(model), str(tmp_path / "again.safetensors")]) == 2
    assert capsys.readouterr().err == (
        f"error: {model} is a .safetensors file, not a Keras file: a resnetlab model file "
        "needs no converting (predict, eval, serve and train --pretrained take it as it is)\n"
    )


# As pretrained weights ------------------------------------------------------------------


def test_a_keras_file_is_a_pretrained_source(files64, x64, probs64):
    path = files64["keras3-h5"]
    model = resnetlab.create_model("resnet50_keras", pretrained=path).eval()
    assert (model.input_size, model.num_classes) == (64, 6)  # the file's
    assert np.abs(resnetlab_probabilities(model, x64) - probs64).max() < 1e-5
    report = model.pretrained
    assert report.head == "kept" and report.weights["kind"] == "keras"
    assert (report.mean, report.std) == ((0.0,) * 3, (1.0,) * 3)  # the course's pixels / 255
    ten = resnetlab.create_model("resnet50_keras", num_classes=10, pretrained=path)
    assert ten.pretrained.head == "replaced" and ten.pretrained.new == ["fc.weight", "fc.bias"]
    assert len(ten.pretrained.loaded) == len(ten.state_dict()) - 2
    # The file says which model it holds: that is what the error names.
    with pytest.raises(ResnetlabError, match="holds a resnet50_keras, not a resnet50; "):
        resnetlab.create_model("resnet50", pretrained=path)


def test_a_weights_only_file_at_another_size_starts_a_model_built_for_that_size(files96):
    """train --pretrained x.weights.h5 --input-size 96 and create_model(..., input_size=96)
    take the size given, which the weights alone do not record."""
    from resnetlab.convert import resolve_pretrained
    from resnetlab.engine.config import resolve_config
    from resnetlab.engine.finetune import PretrainedStart

    src = files96["tf-keras2-weights"]
    model = resnetlab.create_model("resnet50_keras", pretrained=src, input_size=96)
    assert (model.input_size, model.pretrained.head) == (96, "kept")
    assert len(model.pretrained.loaded) == len(model.state_dict())
    config = resolve_config(pretrained=src, data="digits", input_size=96)  # train's
    assert PretrainedStart.of(config).weights.input_size == 96
    with pytest.raises(ResnetlabError, match=r"from inputs of 69 to 132 pixels; give the size"):
        resolve_pretrained(src, "resnet50_keras", input_size=64)  # the classifier fits no 64


def test_a_run_from_a_keras_file_without_model_trains_the_keras_model(files64):
    """A Keras file holds the course's model, as a model file holds its own: without
    --model the run builds it, not the default resnet20 that the weights cannot fit."""
    from resnetlab.engine.config import resolve_config

    for path in (files64["keras3-h5"], files64["keras3-archive"], files64["keras3-weights"]):
        config = resolve_config(pretrained=path, data="digits")
        assert (config.model, config.recipe) == ("resnet50_keras", "finetune"), path
    given = resolve_config(pretrained=files64["keras3-h5"], data="digits", model="resnet18")
    assert given.model == "resnet18"  # a --model given stays; the weights then name theirs


def test_a_file_holding_nan_is_refused_naming_it(files64, tmp_path):
    # convert blamed the file it was to write ("m.safetensors: not written: the model's
    # layer2.2.conv2.weight holds NaN or inf"), and train --pretrained loaded it.
    def poison(f):
        kernels = []
        f.visititems(lambda name, item: kernels.append(item) if name.endswith("kernel") else None)
        kernels[len(kernels) // 2][(0,) * kernels[len(kernels) // 2].ndim] = np.nan

    src = edited_copy(files64["keras3-h5"], tmp_path / "nan.h5", poison)
    with pytest.raises(ResnetlabError, match=rf"^{src}: its weights hold NaN or inf \(converted"):
        resnetlab.convert.convert_keras(src, tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()
    with pytest.raises(ResnetlabError, match=rf"^{src}: its \S+ holds NaN or inf; the file is"):
        resnetlab.create_model("resnet50_keras", pretrained=str(src))
