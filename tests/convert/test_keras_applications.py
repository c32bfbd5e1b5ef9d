"""keras.applications' ResNets, built and saved by Keras itself, imported as resnetlab's own.

Keras runs on its PyTorch backend (``conftest.py``); no weights are downloaded: each network
is built with ``weights=None`` at 32x32 and given random biases, BN scales, offsets and
moving statistics, so that every part of the conversion shows in the outputs. Keras's side
of each comparison is ``model.predict(preprocess_input(images))``; resnetlab's is
``predict`` on the same RGB images through the model file's recorded normalisation.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import resnetlab
from resnetlab import ResnetlabError
from resnetlab.cli import main
from resnetlab.convert import convert_keras, load_keras_h5, read_keras_model
from resnetlab.engine.predict import class_names

keras = pytest.importorskip("keras")
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

from .keras_seed import (  # noqa: E402  (needs keras, imported above)
    clear_session,
    randomize,
    without_layer_names,
)

SIZE = 32
LAYERS = keras.layers
APPLICATIONS_OPTIONS = {"stride_in_1x1": True, "bias": True, "norm_eps": 1.001e-5}
CLASSIFIER_SCALE = 0.05
CAFFE_MEAN = (123.68 / 255, 116.779 / 255, 103.939 / 255)  # RGB, on pixels / 255


def randomize_all(model, seed: int) -> None:
    """``randomize`` for the model and every model nested in it (a transfer model's base),
    with a classifier of small weights: probabilities away from 0 and 1, where a difference
    in the network shows."""
    randomize(model, seed)
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            randomize_all(layer, seed + 1)
        elif isinstance(layer, LAYERS.Dense):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel * CLASSIFIER_SCALE, bias])


def full_resnet50(classes: int = 6, seed: int = 0):
    clear_session()
    keras.utils.set_random_seed(seed)
    model = keras.applications.ResNet50(weights=None, input_shape=(SIZE, SIZE, 3), classes=classes)
    randomize_all(model, seed)
    return model


def transfer_model(classes: int = 5, seed: int = 1, *, extra=(), before=(), base=None):
    """ResNet50(include_top=False) nested in a model: GlobalAveragePooling2D, Dropout, Dense.
    Given a ``base`` (one built before, shared), nothing is randomized: its weights stay as
    they are, the layers around it keep Keras's initial ones (for a file that is refused)."""
    clear_session()  # names counted from zero: dense, not dense_2
    keras.utils.set_random_seed(seed)
    randomized = base is None
    if base is None:
        base = keras.applications.ResNet50(
            include_top=False, weights=None, input_shape=(SIZE, SIZE, 3)
        )
    inputs = keras.Input((SIZE, SIZE, 3))
    x = inputs
    for layer in before:
        x = layer(x)
    x = base(x, training=False)
    x = LAYERS.GlobalAveragePooling2D()(x)
    x = LAYERS.Dropout(0.3)(x)
    for layer in extra:
        x = layer(x)
    outputs = LAYERS.Dense(classes, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    if randomized:
        randomize_all(model, seed)
    return model


def rgb_images(count: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, SIZE, SIZE, 3), dtype=np.uint8)


def keras_probabilities(model, images: np.ndarray) -> np.ndarray:
    """What Keras's ``model.predict(preprocess_input(images))`` gives."""
    x = keras.applications.resnet.preprocess_input(images.astype(np.float32))
    with torch.no_grad():
        return keras.ops.convert_to_numpy(model(x, training=False))


def resnetlab_probabilities(model_file, images: np.ndarray) -> np.ndarray:
    """``predict`` on the RGB images: the model file's normalisation, then the model."""
    predictions = resnetlab.predict(
        model_file, [Image.fromarray(image) for image in images], top_k=1000, device="cpu"
    )
    names = class_names(resnetlab.read_model_meta(model_file))  # "0", "1"... when unnamed
    out = []
    for prediction in predictions:
        probabilities = dict(prediction.top)
        out.append([probabilities[name] for name in names])
    return np.array(out)


@pytest.fixture(scope="module")
def resnet50():
    return full_resnet50()


def saved(model, folder: Path, stem: str) -> dict[str, Path]:
    """``model`` written each way Keras writes it: ``.keras``, ``.h5``, ``.weights.h5``."""
    files = {
        "keras": folder / f"{stem}.keras",
        "h5": folder / f"{stem}.h5",
        "weights": folder / f"{stem}.weights.h5",
    }
    model.save(files["keras"])
    model.save(files["h5"])
    model.save_weights(files["weights"])
    return files


@pytest.fixture(scope="module")
def resnet50_files(resnet50, tmp_path_factory):
    return saved(resnet50, tmp_path_factory.mktemp("resnet50"), "resnet50")


CLASS_NAMES = ["a", "b", "c", "d", "e", "f"]


@pytest.fixture(scope="module")
def resnet50_converted(resnet50_files, tmp_path_factory):
    """The report and model file of ``convert_keras(resnet50.keras)`` with its class names
    and no other option."""
    dst = tmp_path_factory.mktemp("resnet50_converted") / "m.safetensors"
    return convert_keras(resnet50_files["keras"], dst, class_names=CLASS_NAMES), dst


@pytest.fixture(scope="module")
def resnet50_converted_state(resnet50_converted) -> dict[str, torch.Tensor]:
    """The state dict of ``resnet50_converted``: what read_keras_model(resnet50.keras) reads."""
    return resnetlab.load_model(resnet50_converted[1]).state_dict()


@pytest.fixture(scope="module")
def images():
    return rgb_images()


@pytest.fixture(scope="module")
def resnet50_probabilities(resnet50, images):
    return keras_probabilities(resnet50, images)


@pytest.fixture(scope="module")
def transfer():
    return transfer_model()


def nested_base(transfer) -> keras.Model:
    """The ResNet50(include_top=False) inside a transfer model."""
    (base,) = [layer for layer in transfer.layers if isinstance(layer, keras.Model)]
    return base


@pytest.fixture(scope="module")
def transfer_files(transfer, tmp_path_factory):
    return saved(transfer, tmp_path_factory.mktemp("transfer"), "transfer")


@pytest.fixture(scope="module")
def transfer_converted(transfer_files, tmp_path_factory):
    """The report and model file of ``convert_keras(transfer.keras)`` with no options: the
    state dict read_keras_model gives, inputs as preprocess_input ('caffe')."""
    dst = tmp_path_factory.mktemp("transfer_converted") / "m.safetensors"
    return convert_keras(transfer_files["keras"], dst), dst


@pytest.fixture(scope="module")
def transfer_converted_state(transfer_converted) -> dict[str, torch.Tensor]:
    """The state dict of ``transfer_converted``, which tests compare others with."""
    return resnetlab.load_model(transfer_converted[1]).state_dict()


# What converts, and to what ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["keras", "h5", "weights"])
def test_resnet50_gives_kerass_probabilities_on_rgb_images(
    kind, resnet50_files, resnet50_converted, images, resnet50_probabilities, tmp_path
):
    names = CLASS_NAMES
    if kind == "keras":  # the module's conversion of it, with these names
        report, dst = resnet50_converted
    else:
        dst = tmp_path / "m.safetensors"
        size = SIZE if kind == "weights" else None  # a weights file does not record it
        report = convert_keras(resnet50_files[kind], dst, input_size=size, class_names=names)
    assert (report.model, report.num_classes, report.input_size) == ("resnet50", 6, SIZE)
    assert (report.layers_loaded, report.tensors_loaded, report.values_loaded) == (
        107,
        320,
        23_600_006,  # Keras's model.count_params()
    )
    assert report.architecture_checked == (kind != "weights")
    meta = resnetlab.read_model_meta(dst)
    assert (meta.model, meta.model_kwargs, meta.input_size) == (
        "resnet50",
        APPLICATIONS_OPTIONS,
        32,
    )
    assert meta.class_names == names
    assert np.allclose(meta.mean, CAFFE_MEAN, rtol=0, atol=1e-12)
    assert np.allclose(meta.std, (1 / 255,) * 3, rtol=0, atol=1e-12)
    ours = resnetlab_probabilities(dst, images)
    assert np.abs(ours - resnet50_probabilities).max() < 1e-4
    # The outputs differ enough between images for the comparison to mean something.
    assert np.abs(resnet50_probabilities[0] - resnet50_probabilities[1]).max() > 5e-3


def test_a_photo_of_another_size_is_resized_as_keras_load_img_bilinear_does(
    resnet50, resnet50_converted, tmp_path
):
    """predict squashes a larger photo with PIL's bilinear filter: Keras's numbers on
    ``load_img(path, target_size=..., interpolation="bilinear")``, not on its default
    "nearest" (README: keras.applications ResNets)."""
    _, dst = resnet50_converted
    photo = tmp_path / "photo.png"
    Image.fromarray(rgb_images(1, seed=5)[0]).resize((57, 45), Image.NEAREST).save(photo)
    names = class_names(resnetlab.read_model_meta(dst))
    (prediction,) = resnetlab.predict(dst, [photo], top_k=1000, device="cpu")
    ours = np.array([dict(prediction.top)[name] for name in names])
    keras_side = {}
    for interpolation in ("bilinear", "nearest"):
        image = keras.utils.load_img(photo, target_size=(SIZE, SIZE), interpolation=interpolation)
        pixels = keras.utils.img_to_array(image).astype(np.uint8)[None]
        keras_side[interpolation] = keras_probabilities(resnet50, pixels)[0]
    assert np.abs(ours - keras_side["bilinear"]).max() < 1e-4
    assert np.abs(ours - keras_side["nearest"]).max() > 1e-3


def test_the_report_says_which_network_and_what_preprocessing(resnet50_converted):
    report, _ = resnet50_converted
    assert report.describe() == (
        "resnet50.keras (full model, Keras 3 model.save('x.keras'), Keras "
        f"{keras.__version__}): keras.applications ResNet50, as resnet50 (stride_in_1x1=True, "
        "bias=True, norm_eps=1.001e-05): 107 layers, 320 tensors, 23,600,006 values; 6 "
        "classes, 32x32 inputs; inputs as Keras's 'caffe' preprocess_input (RGB to BGR, "
        "ImageNet's mean subtracted from 0-255 pixels), recorded in the model file"
    )


@pytest.mark.parametrize("kind", ["keras", "h5", "weights"])
def test_a_transfer_model_gives_kerass_probabilities(
    kind, transfer, transfer_files, transfer_converted, tmp_path
):
    images = rgb_images(seed=1)
    if kind == "keras":  # the module's conversion of it
        report, dst = transfer_converted
    else:
        dst = tmp_path / "m.safetensors"
        size = SIZE if kind == "weights" else None
        report = convert_keras(transfer_files[kind], dst, input_size=size)
    head = "GlobalAveragePooling2D, Dropout, Dense dense" if kind != "weights" else "Dense dense"
    assert report.network == f"keras.applications ResNet50 (include_top=False) + {head}"
    assert (report.model, report.num_classes, report.values_loaded) == (
        "resnet50",
        5,
        23_597_957,
    )
    ours = resnetlab_probabilities(dst, images)
    theirs = keras_probabilities(transfer, images)
    assert np.abs(ours - theirs).max() < 1e-4


@pytest.fixture(scope="module")
def other_inputs_images() -> np.ndarray:
    return rgb_images(seed=7)


@pytest.fixture(scope="module")
def other_inputs_as_caffe(transfer_converted, other_inputs_images) -> np.ndarray:
    """What the model file converted without --inputs ('caffe') predicts for them."""
    return resnetlab_probabilities(transfer_converted[1], other_inputs_images)


# One scaling of the pixels or the other: the same reading of --inputs, the other in the
# slow run.
@pytest.mark.parametrize("inputs", ["0-1", pytest.param("0-255", marks=pytest.mark.slow)])
def test_a_model_fed_other_inputs_than_preprocess_input(
    inputs, transfer, transfer_files, other_inputs_images, other_inputs_as_caffe, tmp_path
):
    """A transfer model trained on pixels / 255 (ImageDataGenerator(rescale=1/255)) or on
    the pixels as they are, not on preprocess_input: --inputs says so, and the model file
    takes RGB images scaled so."""
    images = other_inputs_images
    dst = tmp_path / "m.safetensors"
    report = convert_keras(transfer_files["keras"], dst, inputs=inputs)
    note = "pixels / 255" if inputs == "0-1" else "0-255 pixels as they are"
    assert report.describe().endswith(f"inputs as {note}, recorded in the model file")
    x = images / 255 if inputs == "0-1" else images.astype(np.float32)
    with torch.no_grad():
        theirs = keras.ops.convert_to_numpy(transfer(x, training=False))
    error = np.abs(resnetlab_probabilities(dst, images) - theirs).max()
    wrong = np.abs(other_inputs_as_caffe - theirs).max()
    assert error < 1e-5 and wrong > 100 * error
    with pytest.raises(ResnetlabError, match=r"^inputs='tf': choose caffe, 0-1 or 0-255, how"):
        convert_keras(transfer_files["keras"], dst, inputs="tf")


@pytest.mark.parametrize("network", ["resnet50", "transfer"])
def test_a_keras_3_0_to_3_5_archive_without_layer_names_converts_as_with_them(
    network,
    resnet50_files,
    transfer_files,
    resnet50_converted_state,
    transfer_converted_state,
    tmp_path,
):
    """Keras 3.0 to 3.5 wrote no name for a layer's weights; the archive's config names
    them, a nested network's too."""
    named = (resnet50_files if network == "resnet50" else transfer_files)["keras"]
    old = without_layer_names(named, tmp_path / "old.keras")
    # What read_keras_model reads from the archive with its names, as the module's
    # conversion of it wrote it.
    theirs = resnet50_converted_state if network == "resnet50" else transfer_converted_state
    state = read_keras_model(old)[0].state_dict()
    assert state.keys() == theirs.keys()
    for key, value in state.items():
        assert torch.equal(value, theirs[key]), key


def test_a_model_saved_as_a_folder_converts_as_its_archive(
    transfer, transfer_converted_state, tmp_path
):
    """``model.save(folder, zipped=False)``, as a Keras model downloaded from the Hugging Face
    Hub is: the archive's files unzipped."""
    folder = tmp_path / "flowers"
    transfer.save(folder, zipped=False)
    report = convert_keras(folder, tmp_path / "m.safetensors")
    assert report.layout == "keras3-folder" and report.architecture_checked
    assert report.describe().startswith(
        "flowers (full model, Keras 3 model.save('x', zipped=False), Keras "
    )
    theirs = transfer_converted_state  # the archive's
    for key, value in resnetlab.load_model(tmp_path / "m.safetensors").state_dict().items():
        assert torch.equal(value, theirs[key]), key
    model = resnetlab.create_model("resnet50", pretrained=folder)
    assert model.pretrained.head == "kept" and model.model_kwargs["stride_in_1x1"] is True


def test_sharded_weights_say_how_to_save_them_in_one_file(transfer, tmp_path):
    index = tmp_path / "big.weights.json"
    transfer.save_weights(index, max_shard_size=0.05)
    shard = tmp_path / "big_00000.weights.h5"
    assert shard.is_file()
    for given, what in ((index, ""), (shard, "a shard of ")):
        with pytest.raises(ResnetlabError) as caught:
            convert_keras(given, tmp_path / "m.safetensors")
        assert str(caught.value) == (
            f"{given} is {what}Keras's sharded weights (model.save_weights('big.weights.json', "
            "max_shard_size=...)), which do not convert; save them to one file with "
            "model.save_weights('x.weights.h5'), or the model with model.save('x.keras'), and "
            "convert that"
        )


@pytest.mark.parametrize("network", ["resnet50", "transfer"])
def test_a_keras_3_0_to_3_5_weights_file_says_to_save_the_model(
    network, resnet50_files, transfer_files, tmp_path
):
    """Without names, keras.applications' layers are told from the course's by their order
    only (the shortcut before the main path's last conv): refused, with the way out."""
    named = (resnet50_files if network == "resnet50" else transfer_files)["weights"]
    old = without_layer_names(named, tmp_path / "old.weights.h5")
    with pytest.raises(
        ResnetlabError,
        match=r"old.weights.h5 was written by Keras 3.0 to 3.5, whose weights files record no "
        r"layer names; .* save the model with model.save\('x.keras'\) \(or 'x.h5'\) and "
        r"convert that$",
    ):
        read_keras_model(old, input_size=SIZE)


def test_a_transfer_model_on_the_bases_output_is_not_nested(transfer, tmp_path):
    # On the transfer model's base, randomized already: its layers are shared, not changed.
    base = nested_base(transfer)
    keras.utils.set_random_seed(4)
    x = LAYERS.GlobalAveragePooling2D()(base.output)
    classifier = LAYERS.Dense(4, activation="softmax", name="flowers")
    model = keras.Model(base.input, classifier(LAYERS.Dropout(0.2)(x)))
    kernel, bias = classifier.get_weights()  # as randomize_all makes a classifier
    bias = np.random.default_rng(4).normal(0.0, 0.1, bias.shape)
    classifier.set_weights([kernel * CLASSIFIER_SCALE, bias])
    model.save(tmp_path / "flat.h5")
    report = convert_keras(tmp_path / "flat.h5", tmp_path / "m.safetensors")
    assert report.network == (
        "keras.applications ResNet50 (include_top=False) + GlobalAveragePooling2D, Dropout, "
        "Dense flowers"
    )
    images = rgb_images(seed=4)
    ours = resnetlab_probabilities(tmp_path / "m.safetensors", images)
    assert np.abs(ours - keras_probabilities(model, images)).max() < 1e-4


def test_the_whole_network_in_a_sequential_model_is_include_top(resnet50, tmp_path):
    """Its pool and classifier inside the nested network: was described as
    '(include_top=False, pooling='avg')' with nothing after it."""
    model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), resnet50])
    model.save(tmp_path / "seq.h5")
    report = convert_keras(tmp_path / "seq.h5", tmp_path / "m.safetensors")
    assert report.network == "keras.applications ResNet50"
    assert report.num_classes == 6
    images = rgb_images(seed=5)
    ours = resnetlab_probabilities(tmp_path / "m.safetensors", images)
    assert np.abs(ours - keras_probabilities(model, images)).max() < 1e-4


def test_a_base_that_pools_itself_in_a_sequential_model(tmp_path):
    clear_session()
    keras.utils.set_random_seed(2)
    base = keras.applications.ResNet50(include_top=False, weights=None, pooling="avg")
    model = keras.Sequential([base, LAYERS.Dropout(0.5), LAYERS.Dense(3)])  # logits
    randomize_all(model, 2)
    model.save(tmp_path / "seq.keras")
    # Built for any input size: 224 unless given.
    report = convert_keras(tmp_path / "seq.keras", tmp_path / "m.safetensors", input_size=SIZE)
    assert report.network == (
        "keras.applications ResNet50 (include_top=False, pooling='avg') + Dropout, Dense dense"
    )
    assert (report.input_size, report.file_input_size) == (SIZE, None)
    images = rgb_images(seed=2)
    x = keras.applications.resnet.preprocess_input(images.astype(np.float32))
    with torch.no_grad():
        theirs = keras.ops.convert_to_numpy(keras.ops.softmax(model(x, training=False)))
    assert np.abs(resnetlab_probabilities(tmp_path / "m.safetensors", images) - theirs).max() < 1e-4
    default = convert_keras(tmp_path / "seq.keras", tmp_path / "d.safetensors")
    assert default.input_size == 224


@pytest.mark.parametrize(
    ("name", "builder"),
    [
        ("resnet101", "ResNet101"),
        pytest.param("resnet152", "ResNet152", marks=pytest.mark.slow),
    ],
)
def test_resnet101_and_152_are_recognised_by_their_blocks(name, builder, tmp_path):
    clear_session()
    model = getattr(keras.applications, builder)(
        weights=None, input_shape=(SIZE, SIZE, 3), classes=6
    )
    randomize_all(model, 3)
    model.save(tmp_path / f"{name}.h5")
    report = convert_keras(tmp_path / f"{name}.h5", tmp_path / f"{name}.safetensors")
    assert (report.model, report.values_loaded) == (name, model.count_params())
    assert report.network == f"keras.applications {builder}"
    images = rgb_images(2, seed=3)
    ours = resnetlab_probabilities(tmp_path / f"{name}.safetensors", images)
    assert np.abs(ours - keras_probabilities(model, images)).max() < 1e-4


# From Python and as pretrained weights ----------------------------------------------------


def test_load_keras_h5_into_the_model_it_converts_to(
    resnet50, resnet50_files, images, resnet50_probabilities
):
    model = resnetlab.create_model("resnet50", num_classes=6, **APPLICATIONS_OPTIONS)
    report = load_keras_h5(model, resnet50_files["h5"])
    assert report.model == "resnet50" and report.mean == pytest.approx(CAFFE_MEAN)
    # The first kernel takes RGB where Keras's took BGR: its input channels reversed.
    kernel = keras.ops.convert_to_numpy(resnet50.get_layer("conv1_conv").kernel)
    conv1 = model.state_dict()["conv1.weight"].numpy()
    assert np.array_equal(conv1, kernel.transpose(3, 2, 0, 1)[:, ::-1])
    x = torch.from_numpy(images / 255).float().permute(0, 3, 1, 2)  # RGB, (B, 3, H, W)
    mean = torch.tensor(report.mean).view(1, 3, 1, 1)
    std = torch.tensor(report.std).view(1, 3, 1, 1)
    with torch.no_grad():
        ours = model.eval()((x - mean) / std).softmax(-1).numpy()
    assert np.abs(ours - resnet50_probabilities).max() < 1e-4
    with pytest.raises(
        ResnetlabError,
        match=r"resnet50.h5 holds keras.applications ResNet50; load it into "
        r"create_model\('resnet50', num_classes=6, stride_in_1x1=True, bias=True, "
        r"norm_eps=1.001e-05\)$",
    ):
        load_keras_h5(resnetlab.create_model("resnet50", num_classes=6), resnet50_files["h5"])


def test_a_keras_applications_file_is_a_pretrained_source(
    resnet50_files, resnet50_converted_state, tmp_path
):
    from resnetlab.convert.pretrained import declared_model, resolve_pretrained
    from resnetlab.engine.config import resolve_config

    path = resnet50_files["keras"]
    assert declared_model(path) == ("resnet50", APPLICATIONS_OPTIONS)
    # The input size is the file's; a weights-only file has none (224 is no more than
    # convert's default), so training says which it takes.
    assert resolve_pretrained(path, "resnet50").input_size == SIZE
    assert resolve_pretrained(resnet50_files["weights"], "resnet50").input_size is None
    config = resolve_config(pretrained=path, data="digits")
    assert (config.model, config.model_kwargs) == ("resnet50", APPLICATIONS_OPTIONS)
    model = resnetlab.create_model("resnet50", pretrained=path, **APPLICATIONS_OPTIONS)
    report = model.pretrained
    assert report.head == "kept" and report.weights["kind"] == "keras"
    assert report.mean == pytest.approx(CAFFE_MEAN) and report.std == pytest.approx((1 / 255,) * 3)
    state = model.state_dict()
    for key, value in resnet50_converted_state.items():  # what read_keras_model(path) reads
        assert torch.equal(state[key], value), key
    # Named without options, the model is built with the file's (from Python as by train).
    alike = resnetlab.create_model("resnet50", pretrained=path)
    assert alike.model_kwargs == model.model_kwargs
    config = resolve_config(model="resnet50", pretrained=path, data="digits")
    assert config.model_kwargs == APPLICATIONS_OPTIONS
    # Options said to be none (a run's config.json) stay the run's: checked, not filled in.
    assert resolve_config(model="resnet50", model_kwargs={}, pretrained=path).model_kwargs == {}
    # Options of its own that differ from the file's are refused, naming the file's.
    with pytest.raises(ResnetlabError, match="built with options stride_in_1x1=true, bias=true"):
        resnetlab.create_model("resnet50", pretrained=path, bias=False)
    config = resolve_config(model="resnet50", model_kwargs={"bias": False}, pretrained=path)
    with pytest.raises(ResnetlabError, match="built with options stride_in_1x1=true, bias=true"):
        resnetlab.engine.finetune.PretrainedStart.of(config)


@pytest.mark.parametrize("kind", ["keras", "weights"])
def test_the_network_without_a_classifier_is_a_backbone_not_a_model_file(
    kind, transfer, transfer_converted_state, tmp_path
):
    """``ResNet50(include_top=False)`` saved alone names no classes: converting it says how
    to train on it, and as pretrained weights it gives the backbone and a new classifier."""
    base = nested_base(transfer)
    path = tmp_path / ("base.keras" if kind == "keras" else "base.weights.h5")
    base.save(path) if kind == "keras" else base.save_weights(path)
    dst = tmp_path / "m.safetensors"
    with pytest.raises(
        ResnetlabError,
        match=r"base.(keras|weights.h5) holds keras.applications ResNet50 \(include_top=False\) "
        r"with no Dense classifier after it; a model file needs one: train one on it with "
        r"resnetlab train --pretrained .*base.(keras|weights.h5) --data DATA, or convert the "
        r"model saved with its classifier$",
    ):
        convert_keras(path, dst)
    assert not dst.exists()
    model = resnetlab.create_model("resnet50", num_classes=3, pretrained=path)
    assert model.pretrained.head == "new" and model.fc.out_features == 3
    assert model.pretrained.mean == pytest.approx(CAFFE_MEAN)
    theirs = transfer_converted_state
    for key, value in model.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(value, theirs[key]), key
    target = resnetlab.create_model("resnet50", num_classes=3, **APPLICATIONS_OPTIONS)
    with pytest.raises(ResnetlabError, match=r"start a model from it with create_model\('resnet"):
        load_keras_h5(target, path)


def test_cli_says_which_input_size_it_takes_for_a_file_that_records_none(
    resnet50_files, tmp_path, capsys
):
    dst = tmp_path / "m.safetensors"
    assert main(["convert", "keras", str(resnet50_files["weights"]), str(dst)]) == 0
    assert (
        "note: resnet50.weights.h5 does not record its input size: 224x224 taken; convert "
        "with --input-size N if the model was trained at another size (predict resizes "
        "photos to it)"
    ) in capsys.readouterr().out.splitlines()
    argv = ["convert", "keras", str(resnet50_files["weights"]), str(dst), "--input-size", "32"]
    assert main(argv) == 0
    assert "does not record its input size" not in capsys.readouterr().out
    # A file that records one: test_cli_converts_and_predict_reads_the_file.


def test_imagenets_classifier_is_named_by_classes_imagenet(resnet50_files, tmp_path, capsys):
    """ResNet50(weights="imagenet") keeps ImageNet's 1000 outputs, in the synsets' order."""
    clear_session()
    path = tmp_path / "imagenet.weights.h5"
    keras.applications.ResNet50(weights=None, input_shape=(SIZE, SIZE, 3)).save_weights(path)
    dst = tmp_path / "m.safetensors"
    argv = ["convert", "keras", str(path), str(dst), "--input-size", str(SIZE)]
    assert main(argv) == 0
    assert "(--classes imagenet: ImageNet's, for weights='imagenet')" in capsys.readouterr().out
    assert main([*argv, "--classes", "imagenet"]) == 0
    names = resnetlab.read_model_meta(dst).class_names
    assert (len(names), names[0], names[1], names[999]) == (
        1000,
        "tench",
        "goldfish",
        "toilet tissue",
    )
    with pytest.raises(
        ResnetlabError,
        match=r"ImageNet's 1000 class names given but .*resnet50.keras has 6 classes \(its "
        r"classifier predictions\); they name the outputs of an ImageNet classifier only: give "
        r"the file's own, one per class, separated by commas$",
    ):
        convert_keras(resnet50_files["keras"], dst, class_names="imagenet")


def test_cli_converts_and_predict_reads_the_file(resnet50_files, tmp_path, capsys):
    dst = tmp_path / "m.safetensors"
    assert main(["convert", "keras", str(resnet50_files["h5"]), str(dst)]) == 0
    out = capsys.readouterr().out
    assert "keras.applications ResNet50, as resnet50" in out and f"wrote {dst}" in out
    assert "does not record its input size" not in out  # the file records it
    model = resnetlab.load_model(dst)
    assert model.bn1.eps == 1.001e-5 and model.layer2[0].conv1.stride == (2, 2)
    assert model.conv1.bias is not None


# What does not convert --------------------------------------------------------------------


def test_a_resnet_v2_is_refused(tmp_path):
    clear_session()
    model = keras.applications.ResNet50V2(weights=None, input_shape=(SIZE, SIZE, 3), classes=6)
    model.save_weights(tmp_path / "v2.weights.h5")
    with pytest.raises(
        ResnetlabError,
        match=r"v2.weights.h5 is a keras.applications ResNetV2 \(pre-activation: .*\), which "
        r"does not convert; keras.applications' ResNet50, ResNet101 and ResNet152 \(v1\) do$",
    ):
        convert_keras(tmp_path / "v2.weights.h5", tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize(
    ("extra", "before", "message"),
    [
        (
            [LAYERS.Dense(16, name="hidden")],
            [],
            r"has ResNet50 and after it layers with weights hidden, dense; it converts with "
            r"nothing after the network but GlobalAveragePooling2D \(or its pooling='avg'\), "
            r"Dropout and one Dense classifier$",
        ),
        (
            [LAYERS.Activation("relu", name="act")],
            [],
            r"its layer act is a Activation, which keras.applications' ResNet50 does not have; "
            r"it converts with nothing before the network and .* one Dense classifier$",
        ),
        (
            [],
            [LAYERS.Rescaling(1 / 255, name="scale")],
            r"its layer scale is a Rescaling, which keras.applications' ResNet50 does not have; "
            r"it converts with nothing before the network and nothing after .* Dense "
            r"classifier; where it is preprocess_input, the converted model does that "
            r"normalisation itself: build the model on the network's own input "
            r"\(keras.applications.ResNet50\(...\).input\), copy the weights "
            r"\(new_model.set_weights\(model.get_weights\(\)\)\), save that and convert it$",
        ),
    ],
)
def test_other_layers_around_the_network_are_refused(extra, before, message, transfer, tmp_path):
    model = transfer_model(extra=extra, before=before, base=nested_base(transfer))
    model.save(tmp_path / "t.keras")
    with pytest.raises(ResnetlabError, match=message):
        convert_keras(tmp_path / "t.keras", tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"num_classes": 10},
            r"resnet50.keras has 6 classes \(its classifier predictions\) but num_classes=10 "
            r"was given; drop it or convert the file that has 10$",
        ),
        (
            {"class_names": ["a", "b"]},
            r"2 class names given but .*resnet50.keras has 6 classes \(its classifier "
            r"predictions\); give one name per class, separated by commas$",
        ),
        (
            {"input_size": 64},
            r"resnet50.keras holds a model for 32x32 inputs but input_size=64 was given; "
            r"drop it$",
        ),
    ],
)
def test_flags_that_contradict_the_file_are_errors(resnet50_files, tmp_path, kwargs, message):
    with pytest.raises(ResnetlabError, match=message):
        convert_keras(resnet50_files["keras"], tmp_path / "m.safetensors", **kwargs)
    assert not (tmp_path / "m.safetensors").exists()


def test_a_channels_first_network_is_refused_with_a_way_out_that_works(tmp_path):
    """Keras keeps its kernels alike in either data format: the weights of a channels_first
    model, set into the same model built channels_last, convert to the same numbers."""
    images = rgb_images(seed=6)
    clear_session()
    keras.config.set_image_data_format("channels_first")
    try:
        first = keras.applications.ResNet50(weights=None, input_shape=(3, SIZE, SIZE), classes=4)
        randomize_all(first, 6)
        first.save(tmp_path / "first.keras")
        x = keras.applications.resnet.preprocess_input(
            images.astype(np.float32), data_format="channels_last"
        )
        with torch.no_grad():
            theirs = keras.ops.convert_to_numpy(first(x.transpose(0, 3, 1, 2), training=False))
    finally:
        keras.config.set_image_data_format("channels_last")
    with pytest.raises(
        ResnetlabError,
        match=r"first.keras: its layer conv1_pad uses data_format=channels_first; the network's "
        r"is channels_last; build the model again after keras.config.set_image_data_format\("
        r"'channels_last'\), copy the weights \(new_model.set_weights\(model.get_weights\(\)\)\), "
        r"save that and convert it$",
    ):
        convert_keras(tmp_path / "first.keras", tmp_path / "m.safetensors")
    last = keras.applications.ResNet50(weights=None, input_shape=(SIZE, SIZE, 3), classes=4)
    last.set_weights(first.get_weights())
    last.save(tmp_path / "last.keras")
    convert_keras(tmp_path / "last.keras", tmp_path / "m.safetensors")
    ours = resnetlab_probabilities(tmp_path / "m.safetensors", images)
    assert np.abs(ours - theirs).max() < 1e-4


def test_an_input_size_keras_would_not_build_is_refused(resnet50_files, tmp_path):
    with pytest.raises(
        ResnetlabError,
        match=r"take inputs of at least 32x32 pixels, not 16x16; give input_size=32 or more$",
    ):
        convert_keras(resnet50_files["weights"], tmp_path / "m.safetensors", input_size=16)
