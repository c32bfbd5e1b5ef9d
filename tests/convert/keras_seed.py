"""The course's ResNet50 built in Keras itself, and the tf.keras 2 file layouts.

``seed_resnet50`` is the deeplearning.ai course's model, block for block and name for name.
tf.keras 2 cannot be installed next to Keras 3, so its two HDF5 layouts are written here
with h5py, as its ``hdf5_format.save_weights_to_hdf5_group`` and ``save_model_to_hdf5``
wrote them: a ``layer_names`` attribute listing every layer (bytes), one group per layer
(created in name order) whose ``weight_names`` attribute lists its weights as
``<layer>/<variable>:0``, each a dataset at that path inside the group; for a full model,
all that under ``model_weights/`` with the architecture as JSON bytes in the root attribute
``model_config`` (``batch_input_shape``, built BatchNormalization layers with ``axis: [3]``,
inbound nodes as ``[[[layer, node, tensor, {}]]]``).
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
from keras import layers

TF_KERAS_VERSION = b"2.15.0"


def identity_block(x, f: int, filters: list[int], stage: int, block: str, named: bool = True):
    conv_name_base = f"res{stage}{block}_branch" if named else None
    bn_name_base = f"bn{stage}{block}_branch" if named else None
    f1, f2, f3 = filters
    shortcut = x
    x = layers.Conv2D(
        f1, (1, 1), strides=(1, 1), padding="valid", name=_join(conv_name_base, "2a")
    )(x)
    x = layers.BatchNormalization(axis=3, name=_join(bn_name_base, "2a"))(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(f2, (f, f), strides=(1, 1), padding="same", name=_join(conv_name_base, "2b"))(
        x
    )
    x = layers.BatchNormalization(axis=3, name=_join(bn_name_base, "2b"))(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(
        f3, (1, 1), strides=(1, 1), padding="valid", name=_join(conv_name_base, "2c")
    )(x)
    x = layers.BatchNormalization(axis=3, name=_join(bn_name_base, "2c"))(x)
    x = layers.Add()([x, shortcut])
    return layers.Activation("relu")(x)


def convolutional_block(
    x, f: int, filters: list[int], stage: int, block: str, s: int = 2, named: bool = True
):
    conv_name_base = f"res{stage}{block}_branch" if named else None
    bn_name_base = f"bn{stage}{block}_branch" if named else None
    f1, f2, f3 = filters
    shortcut = x
    x = layers.Conv2D(
        f1, (1, 1), strides=(s, s), padding="valid", name=_join(conv_name_base, "2a")
    )(x)
    x = layers.BatchNormalization(axis=3, name=_join(bn_name_base, "2a"))(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(f2, (f, f), strides=(1, 1), padding="same", name=_join(conv_name_base, "2b"))(
        x
    )
    x = layers.BatchNormalization(axis=3, name=_join(bn_name_base, "2b"))(x)
    x = layers.Activation("relu")(x)
    x = layers.Conv2D(
        f3, (1, 1), strides=(1, 1), padding="valid", name=_join(conv_name_base, "2c")
    )(x)
    x = layers.BatchNormalization(axis=3, name=_join(bn_name_base, "2c"))(x)
    shortcut = layers.Conv2D(
        f3, (1, 1), strides=(s, s), padding="valid", name=_join(conv_name_base, "1")
    )(shortcut)
    shortcut = layers.BatchNormalization(axis=3, name=_join(bn_name_base, "1"))(shortcut)
    x = layers.Add()([x, shortcut])
    return layers.Activation("relu")(x)


def clear_session() -> None:
    """Keras's layer names counted from zero again (``dense``, not ``dense_2``), without the
    garbage collection that ``keras.backend.clear_session`` runs by default (a third of a
    second each time with a few ResNet50s alive, for no name's sake)."""
    try:
        keras.backend.clear_session(free_memory=False)
    except TypeError:  # a Keras without the option: with its collection, as before
        keras.backend.clear_session()


def _join(base: str | None, part: str) -> str | None:
    return None if base is None else base + part


def seed_resnet50(
    input_shape=(64, 64, 3), classes: int = 6, *, named: bool = True, rescaling=None
) -> keras.Model:
    """The course's ``ResNet50(input_shape, classes)``, with Keras's automatic layer names
    (``input_layer``, ``activation_1``...) counted from zero whatever was built before.

    ``named=False`` builds it as the course's current notebook does: no layer named (Keras
    numbers them, here from where the notebook's block tests left the count: ``conv2d_4``
    on) and the average pool left at Keras's default padding, 'valid'. ``rescaling``:
    ``(scale, offset)`` of a ``Rescaling`` layer first, as models fed raw pixels have.
    """
    clear_session()
    if not named:  # the notebook tests its blocks before it builds the model
        convolutional_block(layers.Input((4, 4, 3)), 2, [2, 2, 4], stage=0, block="", named=False)
    x_input = layers.Input(input_shape)
    x = x_input if rescaling is None else layers.Rescaling(*rescaling)(x_input)
    x = layers.ZeroPadding2D((3, 3))(x)
    x = layers.Conv2D(64, (7, 7), strides=(2, 2), name="conv1" if named else None)(x)
    x = layers.BatchNormalization(axis=3, name="bn_conv1" if named else None)(x)
    x = layers.Activation("relu")(x)
    x = layers.MaxPooling2D((3, 3), strides=(2, 2))(x)
    x = convolutional_block(x, 3, [64, 64, 256], stage=2, block="a", s=1, named=named)
    for block in "bc":
        x = identity_block(x, 3, [64, 64, 256], stage=2, block=block, named=named)
    x = convolutional_block(x, 3, [128, 128, 512], stage=3, block="a", s=2, named=named)
    for block in "bcd":
        x = identity_block(x, 3, [128, 128, 512], stage=3, block=block, named=named)
    x = convolutional_block(x, 3, [256, 256, 1024], stage=4, block="a", s=2, named=named)
    for block in "bcdef":
        x = identity_block(x, 3, [256, 256, 1024], stage=4, block=block, named=named)
    x = convolutional_block(x, 3, [512, 512, 2048], stage=5, block="a", s=2, named=named)
    for block in "bc":
        x = identity_block(x, 3, [512, 512, 2048], stage=5, block=block, named=named)
    if named:
        x = layers.AveragePooling2D((2, 2), padding="same", name="avg_pool")(x)
    else:
        x = layers.AveragePooling2D(pool_size=(2, 2))(x)
    x = layers.Flatten()(x)
    x = layers.Dense(classes, activation="softmax", name=f"fc{classes}" if named else None)(x)
    return keras.Model(inputs=x_input, outputs=x, name="ResNet50")


def randomize(model: keras.Model, seed: int) -> None:
    """Weights no initialiser gives: non-zero biases, BN scales and offsets, moving statistics."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, c),  # gamma
                    rng.normal(0.0, 0.1, c),  # beta
                    rng.normal(0.0, 0.1, c),  # moving_mean
                    rng.uniform(0.5, 1.5, c),  # moving_variance
                ]
            )
        elif isinstance(layer, layers.Conv2D | layers.Dense):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0.0, 0.1, bias.shape)])


def weights_of(layer) -> list[tuple[str, np.ndarray]]:
    """(variable name, value) in tf.keras 2's order: trainable weights, then the others."""
    return [(w.name, keras.ops.convert_to_numpy(w)) for w in layer.weights]


def write_tf_keras2_weights(model: keras.Model, path: Path, *, suffix: str = ":0") -> None:
    """What tf.keras 2 wrote for ``model.save_weights('x.h5')``."""
    with h5py.File(path, "w") as f:
        _write_layers(f, model, suffix)


def write_tf_keras2_model(model: keras.Model, path: Path, *, suffix: str = ":0") -> None:
    """What tf.keras 2 wrote for ``model.save('x.h5')`` of an uncompiled model."""
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = TF_KERAS_VERSION
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(tf_keras2_config(model)).encode("utf8")
        _write_layers(f.create_group("model_weights"), model, suffix)


def _write_layers(group: h5py.Group, model: keras.Model, suffix: str) -> None:
    group.attrs["layer_names"] = np.array([layer.name.encode("utf8") for layer in model.layers])
    group.attrs["backend"] = b"tensorflow"
    group.attrs["keras_version"] = TF_KERAS_VERSION
    for layer in sorted(model.layers, key=lambda layer: layer.name):
        layer_group = group.create_group(layer.name)
        weights = weights_of(layer)
        names = [f"{layer.name}/{name}{suffix}".encode() for name, _ in weights]
        # np.asarray of no names is an empty float64 array, which is what tf.keras 2 stored.
        layer_group.attrs["weight_names"] = np.asarray(names)
        for name, (_, value) in zip(names, weights, strict=True):
            layer_group.create_dataset(name.decode("utf8"), data=value)


def tf_keras2_config(model: keras.Model) -> dict:
    """The model's architecture in tf.keras 2's JSON schema."""
    config = model.get_config()
    out_layers = []
    for layer in config["layers"]:
        layer_config = dict(layer["config"])
        if layer["class_name"] == "InputLayer":
            layer_config["batch_input_shape"] = layer_config.pop("batch_shape")
        if layer["class_name"] == "BatchNormalization":
            layer_config["axis"] = [layer_config["axis"]]  # a built layer's axis is a list
        layer_config.pop("dtype", None)
        out_layers.append(
            {
                "class_name": layer["class_name"],
                "config": layer_config,
                "name": layer["name"],
                "inbound_nodes": [[*_histories(node)] for node in layer["inbound_nodes"]],
            }
        )
    return {
        "class_name": "Functional",
        "config": {
            "name": config["name"],
            "layers": out_layers,
            "input_layers": [[*h[:3]] for h in _histories(config["input_layers"])],
            "output_layers": [[*h[:3]] for h in _histories(config["output_layers"])],
        },
    }


def _histories(obj) -> list[list]:
    """The [layer, node, tensor, {}] of every Keras tensor in a Keras 3 node description."""
    if isinstance(obj, dict):
        history = obj.get("config", {}).get("keras_history")
        if history is not None:
            return [[*history, {}]]
        return [h for value in obj.values() for h in _histories(value)]
    if isinstance(obj, list | tuple):
        if len(obj) == 3 and isinstance(obj[0], str) and isinstance(obj[1], int):
            return [[*obj, {}]]  # Keras 3's input_layers / output_layers entries
        return [h for value in obj for h in _histories(value)]
    return []


def without_layer_names(src: Path, dst: Path) -> Path:
    """A Keras 3 file (``.weights.h5``, or the weights inside a ``.keras`` archive) as Keras
    3.0 to 3.5 wrote it: the same layout, without the ``name`` attribute of each layer's
    ``vars`` group."""

    def strip(f: h5py.File) -> None:
        def visit(_, group) -> None:
            if isinstance(group, h5py.Group) and "vars" in group:
                group["vars"].attrs.pop("name", None)

        f.visititems(visit)

    if not zipfile.is_zipfile(src):
        shutil.copy(src, dst)
        with h5py.File(dst, "a") as f:
            strip(f)
        return dst
    with zipfile.ZipFile(src) as archive, zipfile.ZipFile(dst, "w") as out:
        for name in archive.namelist():
            data = archive.read(name)
            if name == "model.weights.h5":
                buffer = io.BytesIO(data)
                with h5py.File(buffer, "a") as f:
                    strip(f)
                data = buffer.getvalue()
            out.writestr(name, data)
    return dst
