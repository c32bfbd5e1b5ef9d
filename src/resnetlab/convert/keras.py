"""Import the course's Keras ResNet50 from the files Keras writes, exactly; and, through
``keras_applications``, keras.applications' ResNet50/101/152 and transfer models on them.

Layouts, told apart by what is inside the file rather than by its name:

``h5-model``
    ``model.save("x.h5")``, by tf.keras 2 (and the standalone Keras 2 before it) or by
    Keras 3's legacy HDF5 writer. Layer groups under ``model_weights/``, whose attribute
    ``layer_names`` lists them; each group's attribute ``weight_names`` lists its weights
    (``conv1/kernel:0`` in tf.keras 2, ``conv1/kernel`` in Keras 3), which are datasets at
    those paths inside the group. The root attribute ``model_config`` holds the
    architecture as JSON.
``h5-weights``
    tf.keras 2 ``model.save_weights("x.h5")``: the same layer groups at the root, and no
    architecture.
``keras3-weights``
    Keras 3 ``model.save_weights("x.weights.h5")``: ``layers/<class>[_<n>]/vars/<i>``. The
    groups are keyed by the layer's class and its place among the model's layers (the
    first Conv2D ``conv2d``, the next ``conv2d_1``...), the variables by position (Conv2D
    and Dense: kernel, bias; BatchNormalization: gamma, beta, moving_mean,
    moving_variance); from Keras 3.6 on, the layer's own name is the ``name`` attribute of
    ``vars``. Keras 3.0 to 3.5 wrote none: the keys then stand for the names, matched as
    automatic names are (below), since the course's model lists its layers in the order it
    builds them; a file whose shapes are not the course's in that order is refused.
``keras3-archive``
    Keras 3 ``model.save("x.keras")``: a zip of ``config.json`` (the architecture) and
    ``model.weights.h5`` (the layout above). Without the ``name`` attributes (Keras 3.0 to
    3.5), the config's layer lists name the groups, by the keys Keras gives them.
``keras3-folder``
    Keras 3 ``model.save("x", zipped=False)``, as the Hugging Face Hub holds Keras models:
    the archive's files in a folder.

A model nested in another (a transfer model's base) is read layer by layer among the outer
model's layers: in the HDF5 layouts its group's weight names name its layers
(``conv1_conv/kernel``), in Keras 3's its group holds a ``layers`` group of its own, and its
config is a ``Functional`` or ``Sequential`` layer with a layer list. Only
keras.applications' ResNets convert nested; the course's model must be saved as itself.

Layers are matched by the course's names (``conv1``, ``bn_conv1``, ``res2a_branch2a``,
``bn2a_branch1``... ``fc6``), weights by the last part of their name, with or without the
``:0`` suffix; the scope part is ignored because Keras on TensorFlow 1 renamed it
(``conv1_1/kernel:0``) when a notebook built the model twice. The course's current notebook
names no layer: a file whose 107 layers with weights all have Keras's automatic names
(``conv2d_7``, ``batch_normalization_7``, ``dense``) has them matched in the order Keras
numbered them, which is the order the notebook builds them in (each block's main path,
then its shortcut), as the course's are; the shapes of every weight are checked after.

Tensors change layout on the way: conv kernels (kh, kw, in, out) -> (out, in, kh, kw);
Dense kernels (in, out) -> (out, in); BatchNormalization gamma, beta, moving_mean,
moving_variance -> weight, bias, running_mean, running_var. Keras's Flatten orders the
last feature map (H, W, C), PyTorch's (C, H, W); ``KerasResNet50`` flattens in Keras's
order itself, so the rows of the Dense kernel need no permutation when that map is
larger than 1x1.

The seed takes ``pixels / 255``, divided before the model. A model built with Keras's
``Rescaling(scale, offset)`` as its first layer takes raw pixels instead: that layer has no
weights and becomes the model file's normalisation, ``mean = -offset / (255 * scale)`` and
``std = 1 / (255 * scale)`` per channel, so that ``(pixels / 255 - mean) / std`` is
``pixels * scale + offset``, what the layer computes. A weights-only file cannot say that
its model had one.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import zipfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn

from ..errors import (
    ResnetlabError,
    finite_number,
    near_name,
    option,
    path_argument,
)
from ..models.files import (
    empty_file_problem,
    first_nonfinite,
    is_keras_folder,
    save_model,
)
from ..models.keras_resnet50 import KerasResNet50, keras_feature_sizes
from ..models.registry import create_model, model_info
from ..options import KERAS_INPUTS, MIN_INPUT_SIZE
from ..storage import (
    is_cut_short_zip,
    stand_in_problem,
)

LAYOUTS = {
    "h5-model": "full model, model.save('x.h5')",
    "h5-weights": "weights, tf.keras 2 model.save_weights('x.h5')",
    "keras3-weights": "weights, Keras 3 model.save_weights('x.weights.h5')",
    "keras3-archive": "full model, Keras 3 model.save('x.keras')",
    "keras3-folder": "full model, Keras 3 model.save('x', zipped=False)",
}

# Variables of a Keras 3 layer, by position, keyed by the group name's class part.
_KERAS3_VARIABLES = {
    "conv2d": ("kernel", "bias"),
    "batch_normalization": ("gamma", "beta", "moving_mean", "moving_variance"),
    "dense": ("kernel", "bias"),
}
# Keras weight name -> PyTorch parameter or buffer name, per kind of layer.
_KERAS_TO_TORCH = {
    "Conv2D": {"kernel": "weight", "bias": "bias"},
    "BatchNormalization": {
        "gamma": "weight",
        "beta": "bias",
        "moving_mean": "running_mean",
        "moving_variance": "running_var",
    },
    "Dense": {"kernel": "weight", "bias": "bias"},
}
_SEED_NAME = re.compile(r"conv1|bn_conv1|(res|bn)[2-9][a-z]_branch(1|2[abc])|fc\d+")
_CLASSIFIER = re.compile(r"fc\d+")
_SEED_LAYER_CLASSES = {
    "InputLayer",
    "ZeroPadding2D",
    "Conv2D",
    "BatchNormalization",
    "Activation",
    "ReLU",
    "MaxPooling2D",
    "Add",
    "AveragePooling2D",
    "Flatten",
    "Dense",
}
# Keras's automatic layer names, numbered in the order the layers were built.
_AUTO_NAME = re.compile(r"(conv2d|batch_normalization|dense)(?:_(\d+))?")
# Said only once the file is known not to be a keras.applications ResNet: what converts.
_NOT_SEED = (
    "is neither the deeplearning.ai course's ResNet50 nor a keras.applications ResNet50, "
    "ResNet101 or ResNet152 (alone or as a transfer model's base), the networks resnetlab "
    "converts"
)
# For a layer without weights that the pixels go through first (a Lambda, a custom layer):
# the file holds no code for it, and the course's model takes pixels / 255 or a Rescaling.
_REBUILD_PREPROCESSING = (
    "; where it scales the pixels, build the model with keras.layers.Rescaling(scale, offset) "
    "in its place (or with nothing, for pixels / 255 done before it), copy the weights "
    "(new_model.set_weights(model.get_weights())), save that and convert it"
)

# Keras keeps a conv kernel as (kh, kw, in, out) in either data format, and its Flatten
# orders channels_first maps as channels_last ones: the weights carry over as they are.
CHANNELS_LAST_FIX = (
    "; build the model again after keras.config.set_image_data_format('channels_last'), copy "
    "the weights (new_model.set_weights(model.get_weights())), save that and convert it"
)
# A Dropout passes its inputs on unchanged at inference, and has no weights.
_REBUILD_WITHOUT_DROPOUT = (
    "; a Dropout changes no prediction: build the model without it, copy the weights "
    "(new_model.set_weights(model.get_weights())), save that and convert it"
)


def shown_class(kind: str) -> str:
    """A layer's class as its code names it: an HDF5 file names a class registered with
    ``register_keras_serializable`` ``Package>Class`` (``Custom>Scale``)."""
    return kind.rsplit(">", 1)[-1]


_SEED_LAYERS = 107  # layers with weights: 53 Conv2D, 53 BatchNormalization, 1 Dense
# keras.applications' preprocess_input for its ResNets ('caffe' mode): RGB -> BGR, then
# this mean subtracted from 0-255 pixels, per channel in BGR order; no scaling.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
CAFFE_NOTE = (
    "Keras's 'caffe' preprocess_input (RGB to BGR, ImageNet's mean subtracted from 0-255 pixels)"
)


@dataclass(frozen=True)
class KerasImportReport:
    """What ``load_keras_h5`` found in a Keras file and loaded into the model.

    Attributes:
        path: the Keras file.
        layout: one of ``LAYOUTS`` (``"h5-model"``, ``"h5-weights"``, ``"keras3-weights"``,
            ``"keras3-archive"``, ``"keras3-folder"``).
        keras_version: the Keras version that wrote the file, when it says.
        layers_loaded: Keras layers whose weights were loaded (107 for the course's model).
        tensors_loaded: weights and BN statistics loaded (320 for the course's model).
        values_loaded: numbers loaded, the Keras summary's total parameter count.
        num_classes: outputs of the classifier (0 for a network saved without one, the
            course's or keras.applications', read as pretrained weights).
        input_size: the side of the square input the model was built for.
        file_input_size: the input size recorded in the file's architecture, or ``None``
            for weights-only files.
        architecture_checked: whether the file held an architecture that was checked
            layer by layer against the course's (strides, padding, epsilon, pooling...).
        matched_by_order: whether the file's layers had Keras's automatic names
            (``conv2d_7``...) and were matched to the course's in the order they were built.
        input_scaling: the file's first ``Rescaling`` layer, the course's inputs'
            normalisation.
        model, model_kwargs: the resnetlab model the file converts to, and its options
            (``resnet50`` with ``stride_in_1x1``, ``bias`` and ``norm_eps`` for a
            keras.applications ResNet).
        network: for a keras.applications ResNet, the Keras network: ``keras.applications
            ResNet50``, and the layers after it in a transfer model.
        caffe_preprocessing: the model takes Keras's ``preprocess_input`` for ResNets
            ('caffe': RGB to BGR, ImageNet's mean subtracted from 0-255 pixels).
    """

    path: Path
    layout: str
    keras_version: str | None
    layers_loaded: int
    tensors_loaded: int
    values_loaded: int
    num_classes: int
    input_size: int
    file_input_size: int | None
    architecture_checked: bool
    matched_by_order: bool = False
    input_scaling: InputScaling | None = None
    model: str = "resnet50_keras"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    network: str | None = None
    caffe_preprocessing: bool = False
    raw_pixels: bool = False

    @property
    def mean(self) -> tuple[float, float, float]:
        """The normalisation the model's inputs take, on pixels / 255 in RGB order: the
        course's (none) unless the file's first layer rescales them; ImageNet's mean for
        Keras's 'caffe' preprocessing."""
        if self.caffe_preprocessing:
            return tuple(v / 255 for v in reversed(CAFFE_MEAN_BGR))
        return self.input_scaling.mean if self.input_scaling else (0.0, 0.0, 0.0)

    @property
    def std(self) -> tuple[float, float, float]:
        if self.caffe_preprocessing or self.raw_pixels:  # 0-255: (pixels / 255 - m) / (1 / 255)
            return (1 / 255,) * 3
        return self.input_scaling.std if self.input_scaling else (1.0, 1.0, 1.0)

    @property
    def inputs(self) -> str:
        """What the model takes, as ``--inputs`` names it: ``caffe``, ``0-1`` or ``0-255``
        (a file's ``Rescaling`` layer: ``0-255``, rescaled inside)."""
        if self.caffe_preprocessing:
            return "caffe"
        return "0-255" if self.raw_pixels or self.input_scaling else "0-1"

    @property
    def normalisation_note(self) -> str:
        if self.caffe_preprocessing:
            return CAFFE_NOTE
        if self.raw_pixels:
            return "0-255 pixels as they are"
        if self.input_scaling is None and self.network is None:
            return "pixels / 255, as the course's Keras model was trained"
        if self.input_scaling is None:
            return "pixels / 255"
        return f"{self.input_scaling}, as the file's first layer"

    def describe(self) -> str:
        """One line for people: the file, its layout and what was loaded."""
        version = f", Keras {self.keras_version}" if self.keras_version else ""
        if self.network is not None:
            options = ", ".join(f"{k}={v}" for k, v in self.model_kwargs.items())
            return (
                f"{self.path.name} ({LAYOUTS[self.layout]}{version}): {self.network}, as "
                f"{self.model} ({options}): {self.layers_loaded} layers, "
                f"{self.tensors_loaded} tensors, {self.values_loaded:,} values; "
                f"{f'{self.num_classes} classes' if self.num_classes else 'no classifier'}, "
                f"{self.input_size}x{self.input_size} inputs; "
                f"inputs as {self.normalisation_note}, recorded in the model file"
            )
        order = " (unnamed, matched in the order they were built)" if self.matched_by_order else ""
        scaling = f"; inputs {self.input_scaling}" if self.input_scaling else ""
        if self.caffe_preprocessing or self.raw_pixels:
            scaling = f"; inputs as {self.normalisation_note}"
        return (
            f"{self.path.name} ({LAYOUTS[self.layout]}{version}): {self.layers_loaded} "
            f"layers{order}, {self.tensors_loaded} tensors, {self.values_loaded:,} values; "
            f"{f'{self.num_classes} classes' if self.num_classes else 'no classifier'}, "
            f"{self.input_size}x{self.input_size} inputs{scaling}"
        )


@dataclass(frozen=True)
class InputScaling:
    """A Keras ``Rescaling`` layer before the course's network: raw pixels * scale + offset,
    per channel, as the normalisation of pixels / 255 that gives the same numbers."""

    layer: str
    scale: tuple[float, float, float]
    offset: tuple[float, float, float]

    @property
    def mean(self) -> tuple[float, float, float]:
        return tuple(_tidy(-o / (255 * s)) for s, o in zip(self.scale, self.offset, strict=True))

    @property
    def std(self) -> tuple[float, float, float]:
        return tuple(_tidy(1 / (255 * s)) for s in self.scale)

    def __str__(self) -> str:
        def show(values: tuple[float, ...]) -> str:
            if len(set(values)) == 1:
                return f"{values[0]:.6g}"
            return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"

        return f"rescaled by {self.layer} (pixels * {show(self.scale)} + {show(self.offset)})"


def _tidy(value: float) -> float:
    """``value`` without the last bits of float rounding: 1 / (255 * (1 / 255)) is 1."""
    return float(f"{value:.12g}")


@dataclass
class _KerasFile:
    """The weights and (when saved) architecture of a Keras file, in Keras's layouts."""

    path: Path
    layout: str
    layers: dict[str, dict[str, np.ndarray]]  # layer name -> weight name -> array
    config_layers: list[dict[str, Any]] | None  # the model config's layer list, in order
    keras_version: str | None
    # The course's name -> the file's own, for layers matched by order (Keras's automatic names).
    own_names: dict[str, str] = field(default_factory=dict)
    # A model nested in the file's (a transfer model's base), whose layers are among ``layers``.
    nested: str | None = None
    # A Keras 3.0-3.5 weights file: its layers are named by their groups' keys (conv2d_7).
    named_by_key: bool = False

    def label(self, name: str) -> str:
        """A layer as the file names it, with the course's name when they differ."""
        own = self.own_names.get(name)
        return f"{own} (the course's {name})" if own else name

    @cached_property
    def input_size(self) -> int | None:
        """The side of the square inputs of the architecture's first input layer: None for
        a model built for any size, or a file without an architecture."""
        for layer in self.config_layers or ():
            config = layer.get("config", {})
            shape = config.get("batch_shape") or config.get("batch_input_shape")
            if layer.get("class_name") != "InputLayer" or not shape:
                continue
            if len(shape) == 4 and shape[1] == 3 and shape[3] != 3:
                raise ResnetlabError(
                    f"{self.path} takes inputs of shape {_shape(shape[1:])}, channels first, "
                    f"where a converted model's are (size, size, 3){CHANNELS_LAST_FIX}"
                )
            if len(shape) != 4 or shape[3] != 3:
                raise ResnetlabError(
                    f"{self.path} takes inputs of shape {_shape(shape[1:])}, not (size, size, "
                    f"3) RGB images"
                )
            height, width = shape[1], shape[2]
            if height != width:
                raise ResnetlabError(
                    f"{self.path} takes {height}x{width} inputs; a converted model takes square "
                    f"ones: build the Keras model for (size, size, 3) inputs"
                )
            return height
        return None

    @property
    def classifier(self) -> str | None:
        names = [n for n in self.layers if _CLASSIFIER.fullmatch(n)]
        return names[0] if len(names) == 1 else None


def load_keras_h5(model: nn.Module, path: str | os.PathLike) -> KerasImportReport:
    """Load a Keras file's weights into the model it converts to, in place.

    Every layout Keras writes is read (see the module docstring). The file must hold
    exactly the model's layers, with the model's shapes; when it also holds the
    architecture, that is checked too. Nothing is changed in ``model`` unless everything
    checks out. The model's inputs take the report's ``mean`` and ``std``.

    Args:
        model: for the course's file a ``KerasResNet50``, e.g. ``create_model(
            "resnet50_keras", num_classes=6)``, built for the file's number of classes and
            input size; for a keras.applications ResNet, ``create_model("resnet50",
            num_classes=K, stride_in_1x1=True, bias=True, norm_eps=1.001e-5)`` (101, 152:
            the file's depth; the error for another model names the call).
        path: the Keras file (``.h5``, ``.weights.h5`` or ``.keras``).

    Returns:
        A report of the file's layout and what was loaded.

    Raises:
        ResnetlabError: the file is not HDF5 or not a Keras file, is neither the course's
            ResNet50 nor a keras.applications ResNet50/101/152, lacks one of the model's
            layers or has one more, or a weight's shape differs from the model's.
    """
    from . import keras_applications as applications

    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    keras_file = _read_keras_file(path)
    if applications.is_keras_applications_resnet(keras_file):
        plan = applications.plan(keras_file)
        applications.check_target(model, keras_file, plan)
        size = applications.input_size(keras_file, None)
        return applications.load(model, keras_file, plan, size)
    if not isinstance(model, KerasResNet50):
        raise ResnetlabError(
            f"{keras_file.path} is not a keras.applications ResNet, and loads only as the "
            f"course's ResNet50: build the model with create_model('resnet50_keras', ...), not "
            f"a {type(model).__name__}"
        )
    _check_looks_like_seed(keras_file)
    if _is_seed_backbone(keras_file):
        raise ResnetlabError(
            _without_classifier(
                keras_file,
                f"start a model from it with create_model('resnet50_keras', num_classes=K, "
                f"pretrained={str(keras_file.path)!r}) and train its new classifier",
            )
        )
    file_size = keras_file.input_size
    if file_size is not None and file_size != model.input_size:
        raise ResnetlabError(
            f"{keras_file.path} holds a model for {file_size}x{file_size} inputs but the model "
            f"was built for {model.input_size}x{model.input_size}; build it with "
            f"input_size={file_size}"
        )
    return _load(model, keras_file)


def read_keras_model(
    src: str | os.PathLike,
    *,
    input_size: int | None = None,
    num_classes: int | None = None,
    class_names: list[str] | None = None,
    unrecorded_input_size: int | None = None,
    backbone: bool = False,
    inputs: str | None = None,
) -> tuple[nn.Module, KerasImportReport]:
    """The model a Keras file converts to, built for it (its classes, its input size) and
    loaded: ``resnet50_keras`` for the course's, ``resnet50``/``resnet101``/``resnet152``
    with keras.applications' options for theirs (see ``keras_applications``).

    Args:
        src: the Keras file (``.h5``, ``.weights.h5`` or ``.keras``).
        input_size: the side of the square inputs, for files that do not record it.
        num_classes: the number of classes, to check against the file.
        class_names: class names, to check that there is one per class.
        unrecorded_input_size: the side to take for the course's model from a file that
            does not record it, when its classifier fits that side (``train --pretrained``
            with ``--input-size``); a file that records one keeps its own.
        backbone: take a network without a classifier too (keras.applications'
            ``include_top=False``, the course's model without its ``fc`` layer), as
            pretrained weights for its backbone: the model's classifier is then a fresh one,
            and the report's ``num_classes`` 0.
        inputs: how the Keras model's inputs were prepared, when not as its network's are
            (``KERAS_INPUTS``): ``caffe`` (keras.applications' ``preprocess_input``),
            ``0-1`` (pixels / 255, the course's) or ``0-255`` (pixels as they are).

    Returns:
        The model, in train mode, and the report of ``load_keras_h5``.

    Raises:
        ResnetlabError: as ``load_keras_h5``, or when an argument contradicts the file.
    """
    from . import keras_applications as applications

    if inputs is not None and inputs not in KERAS_INPUTS:
        raise ResnetlabError(
            f"{option('inputs', inputs)}: choose {', '.join(KERAS_INPUTS[:-1])} or "
            f"{KERAS_INPUTS[-1]}, how the Keras model's images were prepared"
        )
    keras_file = _read_keras_file(src)
    if applications.is_keras_applications_resnet(keras_file):
        plan = applications.plan(keras_file)
        if plan.classifier is None and not backbone:
            fix = (
                f"a model file needs one: train one on it with resnetlab train --pretrained "
                f"{keras_file.path} --data DATA"
            )
            raise ResnetlabError(applications.without_classifier(keras_file, plan, fix))
        if class_names is not None and len(class_names) != plan.num_classes:
            _class_count_problem(keras_file, class_names, plan.num_classes, plan.classifier)
        size = applications.input_size(keras_file, input_size)
        model = applications.build(keras_file, plan, num_classes)
        report = applications.load(model, keras_file, plan, size)
        return model, _fed_as(model, report, inputs)
    _check_looks_like_seed(keras_file)
    if _is_seed_backbone(keras_file):
        if not backbone:
            fix = (
                f"a model file needs one: train one on it with resnetlab train --pretrained "
                f"{keras_file.path} --data DATA"
            )
            raise ResnetlabError(_without_classifier(keras_file, fix))
        size = _choose_input_size(keras_file, input_size, unrecorded_input_size)
        model = create_model("resnet50_keras", num_classes=num_classes or 1, input_size=size)
        return model, _fed_as(model, _load(model, keras_file), inputs)
    file_classes = _file_num_classes(keras_file)
    if num_classes is not None and num_classes != file_classes:
        raise ResnetlabError(
            f"{keras_file.path} has {file_classes} classes (its classifier "
            f"{keras_file.label(keras_file.classifier)}) but "
            f"{option('num_classes', num_classes)} was given; drop it or convert the file that "
            f"has {num_classes}"
        )
    if class_names is not None and len(class_names) != file_classes:
        _class_count_problem(
            keras_file, class_names, file_classes, keras_file.label(keras_file.classifier)
        )
    size = _choose_input_size(keras_file, input_size, unrecorded_input_size)
    model = create_model("resnet50_keras", num_classes=file_classes, input_size=size)
    report = _load(model, keras_file)
    return model, _fed_as(model, report, inputs)


def _fed_as(model: nn.Module, report: KerasImportReport, inputs: str | None) -> KerasImportReport:
    """The model and report for inputs prepared as ``inputs`` says; 'caffe' takes BGR
    images, which the first conv's input channels, reversed, take as RGB."""
    if inputs is None or (inputs == report.inputs and report.input_scaling is None):
        return report
    if report.input_scaling is not None:
        raise ResnetlabError(
            f"{report.path} scales its inputs itself ({report.input_scaling}); drop "
            f"{option('inputs', inputs)}"
        )
    caffe = inputs == "caffe"
    if caffe != report.caffe_preprocessing:
        with torch.no_grad():
            model.conv1.weight.copy_(model.conv1.weight.flip(1))
    return replace(report, caffe_preprocessing=caffe, raw_pixels=inputs == "0-255")


def keras_model_of(path: str | os.PathLike) -> tuple[str, dict[str, Any]] | None:
    """The resnetlab model (and its options) a Keras file converts to: ``resnet50_keras``
    for the course's, ``resnet50`` (101, 152) with keras.applications' options for theirs;
    None for a file that does not convert (reading it says why)."""
    from . import keras_applications as applications

    try:
        keras_file = _read_keras_file(path)
        if applications.is_keras_applications_resnet(keras_file):
            plan = applications.plan(keras_file)
            return plan.model, plan.model_kwargs
    except ResnetlabError:
        return None
    return "resnet50_keras", {}


def _class_count_problem(
    keras_file: _KerasFile, class_names: list[str], file_classes: int, classifier: str
) -> None:
    from .pretrained import imagenet_class_names

    if class_names == imagenet_class_names():
        raise ResnetlabError(
            f"ImageNet's 1000 class names given but {keras_file.path} has {file_classes} "
            f"classes (its classifier {classifier}); they name the outputs of an ImageNet "
            f"classifier only: give the file's own, one per class, separated by commas"
        )
    words = " ".join(class_names).split()  # "0 1 2 3 4 5": names separated by spaces
    hint = f": {','.join(words)}" if len(words) == file_classes else ""
    raise ResnetlabError(
        f"{len(class_names)} class names given but {keras_file.path} has {file_classes} "
        f"classes (its classifier {classifier}); give one name per class, separated by "
        f"commas{hint}"
    )


def convert_keras(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    input_size: int | None = None,
    num_classes: int | None = None,
    class_names: list[str] | str | None = None,
    inputs: str | None = None,
) -> KerasImportReport:
    """Convert a Keras file of the course's ResNet50, or of a keras.applications ResNet (or a
    transfer model on one), into a resnetlab model file.

    The number of classes comes from the file's classifier (``fc{K}``; a keras.applications
    network's Dense layer), the input size from its architecture when it holds one. An
    argument supplies what the file lacks and must agree with what it holds. A
    weights-only file of the course's model whose last feature map is 1x1 is taken to be
    for the course's 64x64 inputs; a keras.applications network without an input size
    for 224x224. The model file records the course's preprocessing, ``pixels / 255``
    (mean 0, std 1), or the file's first ``Rescaling`` layer as mean and std, or for
    keras.applications Keras's 'caffe' ``preprocess_input``; it is written only once
    everything has been checked.

    Args:
        src: the Keras file (``.h5``, ``.weights.h5`` or ``.keras``).
        dst: the ``.safetensors`` file to write.
        input_size: the side of the square inputs the model was trained at.
        num_classes: the number of classes, to check against the file.
        class_names: a name for each class, in the order of the model's outputs; or
            ``"imagenet"``, ImageNet's 1000 (a keras.applications network with
            ``weights="imagenet"`` and its top).
        inputs: how the Keras model's images were prepared, when not as its network's
            are: ``caffe`` (``preprocess_input``, a keras.applications network's),
            ``0-1`` (pixels / 255, the course's) or ``0-255`` (pixels as they are).

    Returns:
        The report of ``load_keras_h5``.

    Raises:
        ResnetlabError: as ``load_keras_h5``, or when an argument contradicts the file.
    """
    from .pretrained import imagenet_class_names, writing_model_file

    src = path_argument(src, "the Keras file")
    if isinstance(class_names, str) and class_names.lower() == "imagenet":
        class_names = imagenet_class_names()
    with writing_model_file(dst, f"{Path(src).stem}.safetensors", src, "the Keras file") as dst:
        return _convert(src, dst, input_size, num_classes, class_names, inputs)


def _convert(
    src: str | os.PathLike,
    dst: Path,
    input_size: int | None,
    num_classes: int | None,
    class_names: list[str] | None,
    inputs: str | None,
) -> KerasImportReport:
    """``convert_keras`` once ``dst`` is known to be writable."""
    model, report = read_keras_model(
        src,
        input_size=input_size,
        num_classes=num_classes,
        class_names=class_names,
        inputs=inputs,
    )
    if (bad := first_nonfinite(model.state_dict())) is not None:  # the source is to blame
        raise ResnetlabError(
            f"{report.path}: its weights hold NaN or inf (converted to {bad}); the file is "
            "damaged or comes from a training that diverged: copy or save it again"
        )
    try:
        save_model(
            model.eval(),
            dst,
            class_names=class_names,
            input_size=report.input_size,
            mean=report.mean,  # the course's pixels / 255, unless a Rescaling layer says
            std=report.std,
            resize="squash",  # Keras's load_img(target_size=...) resizes the whole image
            training={
                "converted_from": report.path.name,
                "keras_layout": report.layout,
                "keras_version": report.keras_version,
                **({"keras_network": report.network} if report.network else {}),
            },
        )
    except OSError as e:
        raise ResnetlabError(f"cannot write {dst} ({e.strerror or e})") from None
    return report


# Reading ----------------------------------------------------------------------------------

# TensorFlow's own formats, which hold a graph or a checkpoint's variables, not Keras's layers.
_SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
_CHECKPOINT_DATA = re.compile(r"(.+)\.data-\d{5}-of-\d{5}")


def tensorflow_format_problem(path: Path) -> str | None:
    """Why ``path`` does not convert when it is (or is part of, or the prefix of) a
    TensorFlow SavedModel or checkpoint, with the way to a Keras file; None otherwise."""
    folder = path if path.is_dir() else path.parent
    saved_model = folder.parent if folder.name == "variables" else folder
    part = path.name in (*_SAVED_MODEL_FILES, "keras_metadata.pb", "fingerprint.pb")
    if any((saved_model / name).is_file() for name in _SAVED_MODEL_FILES) and (
        path.is_dir() or part or folder.name == "variables"
    ):
        return (
            f"{saved_model} is a TensorFlow SavedModel (tf.keras 2's model.save to a path "
            f"without .h5 or .keras), which does not convert; with TensorFlow 2.15 or earlier "
            f"(or tf_keras), load it with tf.keras.models.load_model({str(saved_model)!r}), "
            f"save it with model.save('model.h5') and use that file"
        )
    prefix = None
    if match := _CHECKPOINT_DATA.fullmatch(path.name):
        prefix = path.with_name(match[1])
    elif path.suffix == ".index" or path.name == "checkpoint" or not path.exists():
        index = path if path.suffix == ".index" else path.with_name(f"{path.name}.index")
        if path.name == "checkpoint":  # tf.keras 2's list of a folder's checkpoints
            index = next(folder.glob("*.index"), index)
        data = index.with_name(f"{index.stem}.data-00000-of-00001")
        if index.is_file() and (data.is_file() or any(folder.glob(f"{index.stem}.data-*"))):
            prefix = index.with_suffix("")
    if prefix is None:
        return None
    return (
        f"{prefix} is a TensorFlow checkpoint (tf.keras 2's model.save_weights to a path "
        f"without .h5), which does not convert; in TensorFlow, build the model, load it with "
        f"model.load_weights({str(prefix)!r}), save it with model.save('model.h5') and "
        f"use that file"
    )


def _read_keras_file(path: str | os.PathLike) -> _KerasFile:
    return _name_classifier(_name_unnamed_layers(_read_keras_layout(path)))


def _read_keras_layout(path: str | os.PathLike) -> _KerasFile:
    path = Path(path_argument(path, "the Keras file"))  # not pathlib's TypeError for None
    if problem := tensorflow_format_problem(path):
        raise ResnetlabError(problem)
    if is_keras_folder(path):
        return _read_keras_folder(path)
    if path.is_dir():
        raise ResnetlabError(
            f"{path} is a folder; give the Keras model file in it (.h5, .hdf5 or .keras)"
        )
    if not path.is_file():
        near = near_name(path)
        raise ResnetlabError(
            f"Keras file not found: {path}" + (f"; did you mean {near}?" if near else "")
        )
    if path.stat().st_size == 0:  # a stopped copy, not a file of another kind
        raise ResnetlabError(empty_file_problem(path))
    if zipfile.is_zipfile(path):
        return _read_keras_archive(path)
    if is_cut_short_zip(path):
        raise ResnetlabError(
            f"{path} is cut short (a zip archive, as .keras files are, without its end), as a "
            "copy or download that stopped leaves it; copy it again"
        )
    if problem := _sharded_problem(path):
        raise ResnetlabError(problem)
    if not h5py.is_hdf5(path) and path.suffix.lower() == ".safetensors":
        raise ResnetlabError(
            f"{path} is a .safetensors file, not a Keras file: a resnetlab model file needs no "
            "converting (predict, eval, serve and train --pretrained take it as it is)"
        )
    if not h5py.is_hdf5(path) and (problem := stand_in_problem(path)):
        raise ResnetlabError(problem)
    if not h5py.is_hdf5(path):
        raise ResnetlabError(
            f"{path} is not an HDF5 file (nor a .keras archive); give a file written by "
            f"Keras's model.save('x.h5'), model.save_weights(...) or model.save('x.keras')"
        )
    with _open_h5(path, path) as f:
        if "model_weights" in f:
            config = _attr_text(f.attrs, "model_config")
            layers, nested = _read_legacy_layers(f["model_weights"], path)
            return _KerasFile(
                path,
                "h5-model",
                layers,
                _config_layers(config, path) if config else None,
                _keras_version(f["model_weights"].attrs) or _keras_version(f.attrs),
                nested=nested,
            )
        if _attr_strings(f.attrs, "layer_names") is not None:
            layers, nested = _read_legacy_layers(f, path)
            return _KerasFile(
                path, "h5-weights", layers, None, _keras_version(f.attrs), nested=nested
            )
        if isinstance(f.get("layers"), h5py.Group):
            layers, nested, by_key = _read_keras3_layers(f, path, None)
            return _KerasFile(
                path, "keras3-weights", layers, None, None, nested=nested, named_by_key=by_key
            )
    from ..data.signs import data_set_as_model  # (data imports convert's modules)

    if (data_set := data_set_as_model(path)) is not None:
        raise ResnetlabError(data_set)
    raise ResnetlabError(
        f"{path} is an HDF5 file but not one Keras wrote (no model_weights group, layer_names "
        f"attribute or layers group); give the file of model.save('x.h5') or "
        f"model.save_weights(...)"
    )


_SHARD = re.compile(r"(.+)_\d{5}\.weights\.h5")


def _sharded_problem(path: Path) -> str | None:
    """Why the index or a shard of Keras 3's sharded weights does not convert, or None."""
    index = path
    if match := _SHARD.fullmatch(path.name):
        index = path.with_name(f"{match[1]}.weights.json")
    if not index.name.endswith(".weights.json") or not index.is_file():
        return None
    return (
        f"{path} is {'a shard of ' if index != path else ''}Keras's sharded weights "
        f"(model.save_weights('{index.name}', max_shard_size=...)), which do not convert; "
        f"save them to one file with model.save_weights('x.weights.h5'), or the model with "
        f"model.save('x.keras'), and convert that"
    )


def _read_keras_archive(path: Path) -> _KerasFile:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" in names and "model.weights.h5" not in names:
                raise ResnetlabError(
                    f"{path} is a Keras archive without its weights (no model.weights.h5 "
                    f"beside its config.json), as one edited or repacked after saving leaves "
                    f"it; save the model again with model.save('x.keras') and convert that"
                )
            if not {"config.json", "model.weights.h5"} <= names:
                raise ResnetlabError(
                    f"{path} is a zip file but not a Keras model (it needs config.json and "
                    f"model.weights.h5; sharded weights are not supported)"
                )
            config = archive.read("config.json").decode("utf8")
            metadata = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
            weights = io.BytesIO(archive.read("model.weights.h5"))
    except (zipfile.BadZipFile, OSError, json.JSONDecodeError) as e:
        raise ResnetlabError(f"cannot read the Keras archive {path} ({e})") from None
    return _keras3_model(path, "keras3-archive", config, metadata, weights)


def _read_keras_folder(path: Path) -> _KerasFile:
    """What ``model.save(folder, zipped=False)`` writes, as a Hugging Face Hub download of a
    Keras model holds it: the files of a ``.keras`` archive, unzipped."""
    try:
        config = (path / "config.json").read_text(encoding="utf8")
        meta = path / "metadata.json"
        metadata = json.loads(meta.read_text(encoding="utf8")) if meta.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResnetlabError(f"cannot read the Keras model folder {path} ({e})") from None
    return _keras3_model(path, "keras3-folder", config, metadata, path / "model.weights.h5")


def _keras3_model(
    path: Path, layout: str, config: str, metadata: Any, weights: Path | io.BytesIO
) -> _KerasFile:
    with _open_h5(weights, path) as f:
        layers, nested, _ = _read_keras3_layers(f, path, _keras3_group_names(config, path))
    version = metadata.get("keras_version") if isinstance(metadata, dict) else None
    return _KerasFile(path, layout, layers, _config_layers(config, path), version, nested=nested)


@contextmanager
def _open_h5(source: Path | io.BytesIO, path: Path) -> Iterator[h5py.File]:
    try:
        f = h5py.File(source, "r")
    except OSError as e:
        short = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", str(e))
        if short:
            size, needed = int(short[1]), int(short[2])
            raise ResnetlabError(
                f"{path} is cut short ({size:,} of {needed:,} bytes), as a copy or download "
                "that stopped leaves it; copy it again"
            ) from None
        raise ResnetlabError(f"cannot read {path} as HDF5 ({e})") from None
    with f:
        yield f


def _read_legacy_layers(
    group: h5py.Group, path: Path
) -> tuple[dict[str, dict[str, np.ndarray]], str | None]:
    """Layers of the Keras 2 layout (and Keras 3's legacy writer), by their weight names,
    and the name of a model nested in the file's, whose layers are read among its own.

    A nested model is one group whose weight names (``conv1_conv/kernel``,
    ``conv1_bn/gamma``...) name several layers: each becomes a layer of its own.
    """
    layers: dict[str, dict[str, np.ndarray]] = {}
    nested = None
    for layer in _attr_strings(group.attrs, "layer_names") or []:
        layer_group = group.get(layer)
        if not isinstance(layer_group, h5py.Group):
            raise ResnetlabError(f"{path} lists a layer {layer} that it holds no group for")
        inner: dict[str, dict[str, np.ndarray]] = {}  # the weights' own layer -> weights
        for weight in _attr_strings(layer_group.attrs, "weight_names") or []:
            dataset = layer_group.get(weight)
            if not isinstance(dataset, h5py.Dataset):
                raise ResnetlabError(f"{path} lists a weight {weight} that it does not hold")
            parts = weight.split("/")
            name = re.sub(r":\d+$", "", parts[-1])
            weights = inner.setdefault(parts[-2] if len(parts) > 1 else layer, {})
            if name in weights:
                raise ResnetlabError(f"layer {layer} in {path} holds two weights named {name}")
            weights[name] = dataset[()]
        if len(inner) > 1:  # a model of its own
            nested = nested or layer
            for name, weights in inner.items():
                if name in layers:
                    raise ResnetlabError(f"{path} holds two layers named {name}")
                layers[name] = weights
        elif inner:  # tf.keras 2 on TensorFlow 1 may have renamed the scope: the group names it
            layers[layer] = next(iter(inner.values()))
    return layers, nested


def _read_keras3_layers(
    f: h5py.Group,
    path: Path,
    names: dict[str, str] | None,
    layers: dict[str, dict[str, np.ndarray]] | None = None,
    where: str = "layers",
) -> tuple[dict[str, dict[str, np.ndarray]], str | None, bool]:
    """Layers of the Keras 3 weights layout, named by the ``name`` attribute of ``vars``; the
    name of a model nested in the file's (``layers/<model>/layers/...``), whose layers are
    read among its own; and whether the layers are named by their groups' keys.

    Keras 3.0 to 3.5 wrote no ``name`` attribute: a layer is then named from ``names`` (its
    group's path -> its name, from an archive's config), or in a weights file alone by its
    group's key (``conv2d_7``: its class and its place among the model's layers).
    """
    layers = {} if layers is None else layers
    nested, by_key = None, False
    for key, group in f[where].items():
        if isinstance(group, h5py.Group) and isinstance(group.get("layers"), h5py.Group):
            nested = nested or key
            _read_keras3_layers(f, path, names, layers, f"{where}/{key}/layers")
            continue
        variables = group.get("vars") if isinstance(group, h5py.Group) else None
        if not isinstance(variables, h5py.Group) or len(variables) == 0:
            continue  # a layer without weights (activation, pooling...)
        name = _text(variables.attrs.get("name"))
        if name is None and names is not None:
            name = names.get(f"{where}/{key}")
            if name is None:
                raise ResnetlabError(
                    f"{path} holds weights at {where}/{key}, where no layer of its "
                    f"config.json is saved; its model.weights.h5 is not its model's"
                )
        elif name is None:
            if where != "layers":  # a nested model's keys repeat its outer model's
                raise ResnetlabError(_unnamed_keras3(path))
            name, by_key = key, True
        if sorted(variables, key=str) != sorted(str(i) for i in range(len(variables))):
            raise ResnetlabError(f"{path} has unreadable variables in layer {name}")
        values = [variables[str(i)][()] for i in range(len(variables))]
        kind = re.sub(r"_\d+$", "", key)
        kinds = _KERAS3_VARIABLES.get(kind, ())
        if len(kinds) != len(values):
            kinds = tuple(f"variable {i}" for i in range(len(values)))
        if name in layers:
            raise ResnetlabError(f"{path} holds two layers named {name}")
        layers[name] = dict(zip(kinds, values, strict=True))
    return layers, nested, by_key


def _unnamed_keras3(path: Path) -> str:
    return (
        f"{path} was written by Keras 3.0 to 3.5, whose weights files record no layer names; "
        f"without them only the course's ResNet50 converts (by the order of its layers): save "
        f"the model with model.save('x.keras') (or 'x.h5') and convert that"
    )


def _keras3_group_names(text: str, path: Path) -> dict[str, str]:
    """Each layer's group in a Keras 3 archive's weights (``layers/conv2d_7``, a nested
    model's ``layers/functional/layers/conv2d``) -> the layer's name, from ``config.json``.

    Keras's saving_lib keys the layers of a model by their class in snake case, in the
    order of ``model.layers``, which is the order of its config's layer list: the first of
    a class bare, the next ``_1``, ``_2``... A Sequential's config lists its input layer
    too, which ``model.layers`` leaves out; its key (``input_layer``) is no other's.
    """
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ResnetlabError(f"{path} has an unreadable model config ({e})") from None
    names: dict[str, str] = {}

    def walk(model: Any, where: str) -> None:
        used: Counter[str] = Counter()
        for layer in _model_layers(model) or []:
            if not isinstance(layer, dict):
                continue
            kind = _snake_case(str(layer.get("class_name")))
            key = f"{kind}_{used[kind]}" if used[kind] else kind
            used[kind] += 1
            config = layer.get("config") if isinstance(layer.get("config"), dict) else {}
            names[f"{where}/{key}"] = layer.get("name") or config.get("name")
            if _model_layers(layer) is not None:
                walk(layer, f"{where}/{key}/layers")

    walk(config, "layers")
    return names


def _snake_case(name: str) -> str:
    """Keras's ``naming.to_snake_case``: ``BatchNormalization`` -> ``batch_normalization``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _config_layers(text: str, path: Path) -> list[dict[str, Any]]:
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ResnetlabError(f"{path} has an unreadable model config ({e})") from None
    layers = _model_layers(config)
    if layers is None:
        raise ResnetlabError(f"{path} {_NOT_SEED}: its model config lists no layers")
    return _flat_layers(layers)


def _model_layers(config: Any) -> list[Any] | None:
    """The layer list of a model's config (a Functional's or a Sequential's), or None."""
    inner = config.get("config") if isinstance(config, dict) else None
    layers = inner.get("layers") if isinstance(inner, dict) else inner
    return layers if isinstance(layers, list) else None


def _flat_layers(layers: list[Any], model: str | None = None) -> list[dict[str, Any]]:
    """Each layer's class, name and config, in order; a model nested in the file's (a
    transfer model's base) in its place, layer by layer, each with ``model`` its name."""
    out = []
    for layer in layers:
        if not isinstance(layer, dict):
            continue
        config = layer.get("config") if isinstance(layer.get("config"), dict) else {}
        name = layer.get("name") or config.get("name")
        inner = _model_layers(layer)
        if inner is not None:
            out += _flat_layers(inner, model or name)
            continue
        out.append(
            {"class_name": layer.get("class_name"), "name": name, "config": config, "model": model}
        )
    return out


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    return value.decode("utf8") if isinstance(value, bytes | np.bytes_) else str(value)


def _attr_text(attrs: h5py.AttributeManager, name: str) -> str | None:
    return _text(attrs[name]) if name in attrs else None


def _attr_strings(attrs: h5py.AttributeManager, name: str) -> list[str] | None:
    """A list of strings Keras stored as an attribute, as bytes or str, whole or in chunks."""
    # Keras splits a list too long for one HDF5 object header into name0, name1, ...
    chunks = [name] if name in attrs else []
    while f"{name}{len(chunks)}" in attrs:
        chunks.append(f"{name}{len(chunks)}")
    if not chunks:
        return None
    return [_text(v) for chunk in chunks for v in np.atleast_1d(attrs[chunk])]


def _keras_version(attrs: h5py.AttributeManager) -> str | None:
    return _attr_text(attrs, "keras_version")


@cache
def _seed_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
    """The course's Conv2D and BatchNormalization layers, in the order it builds them, and
    the shapes of their weights."""
    with torch.device("meta"):  # names and shapes only: no memory, no initialisation
        model = create_model("resnet50_keras")
    modules = {
        name: model.get_submodule(module) for module, name in model.keras_layer_names().items()
    }
    return {name: _keras_shapes(m) for name, m in modules.items() if not isinstance(m, nn.Linear)}


def _seed_build_order() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The course's Conv2D and BatchNormalization layer names, in the order it builds them."""
    shapes = _seed_shapes()
    convs = tuple(name for name, weights in shapes.items() if "kernel" in weights)
    norms = tuple(name for name, weights in shapes.items() if "gamma" in weights)
    return convs, norms


def _name_unnamed_layers(keras_file: _KerasFile) -> _KerasFile:
    """Give the course's names to a model built without names (the course's current notebook).

    Keras numbers the layers of each class as they are built (``conv2d``, ``conv2d_1``...,
    from wherever the session's count stood), so their numbers give the order the course's
    names follow. A file with other names is left as it is, for the checks that follow; one
    with only automatic names but other counts of layers is refused with those counts.
    """
    if not keras_file.layers:
        return keras_file
    built: dict[str, list[tuple[int, str]]] = {"conv2d": [], "batch_normalization": [], "dense": []}
    for name in keras_file.layers:
        match = _AUTO_NAME.fullmatch(name)
        if match is None and keras_file.named_by_key:
            raise ResnetlabError(_unnamed_keras3(keras_file.path))
        if match is None:
            return keras_file
        built[match[1]].append((int(match[2] or 0), name))
    convs, norms = _seed_build_order()
    counts = (len(built["conv2d"]), len(built["batch_normalization"]), len(built["dense"]))
    # No Dense: the network saved without its classifier (see _is_seed_backbone).
    seed_counts = counts[:2] == (len(convs), len(norms)) and counts[2] in (0, 1)
    if not seed_counts and keras_file.named_by_key:
        raise ResnetlabError(_unnamed_keras3(keras_file.path))
    if not seed_counts:
        shown = ", ".join(list(keras_file.layers)[:4]) + (
            ", ..." if len(keras_file.layers) > 4 else ""
        )
        raise ResnetlabError(
            f"{keras_file.path} {_NOT_SEED}: its layers have the names Keras makes up "
            f"({shown}), and it has {counts[0]} Conv2D, {counts[1]} BatchNormalization and "
            f"{counts[2]} Dense layers, where the course's model has {len(convs)}, "
            f"{len(norms)} and 1"
        )
    seed_names = {}
    if built["dense"]:
        dense = built["dense"][0][1]
        kernel = keras_file.layers[dense].get("kernel")
        if (kernel is None or kernel.ndim != 2) and keras_file.named_by_key:
            raise ResnetlabError(_unnamed_keras3(keras_file.path))
        if kernel is None or kernel.ndim != 2:
            return keras_file
        seed_names[dense] = f"fc{kernel.shape[1]}"
    for kind, names in (("conv2d", convs), ("batch_normalization", norms)):
        in_order = [name for _, name in sorted(built[kind])]
        seed_names |= dict(zip(in_order, names, strict=True))
    config_layers = keras_file.config_layers
    if config_layers is not None:
        config_layers = [
            layer | {"name": seed_names.get(layer["name"], layer["name"])}
            for layer in config_layers
        ]
    layers = {seed_names[name]: weights for name, weights in keras_file.layers.items()}
    if keras_file.named_by_key:
        # Keyed by their place in model.layers, which is the course's build order; a network
        # in another order (keras.applications' puts each shortcut before its main path's
        # last conv) or of other widths shows in the shapes.
        shapes = _seed_shapes()
        if any(
            {k: v.shape for k, v in layers[name].items()} != shapes[name]
            for name in (*convs, *norms)
        ):
            raise ResnetlabError(_unnamed_keras3(keras_file.path))
    return replace(
        keras_file,
        layers=layers,
        config_layers=config_layers,
        own_names={seed: own for own, seed in seed_names.items()},
    )


def _name_classifier(keras_file: _KerasFile) -> _KerasFile:
    """Give the course's name, ``fc{K}``, to the one Dense layer of a file whose other layers
    have the course's names: the classifier of the course's model put on new classes
    (``Dense(K)(model.layers[-2].output)`` is named ``dense``). Other files are left as
    they are, for the checks that follow."""
    others = [name for name in keras_file.layers if not _SEED_NAME.fullmatch(name)]
    if len(others) != 1 or any(_CLASSIFIER.fullmatch(name) for name in keras_file.layers):
        return keras_file
    dense = others[0]
    kernel = keras_file.layers[dense].get("kernel")
    if kernel is None or kernel.ndim != 2 or set(keras_file.layers[dense]) != {"kernel", "bias"}:
        return keras_file
    seed_name = f"fc{kernel.shape[1]}"
    config_layers = keras_file.config_layers
    if config_layers is not None:
        config_layers = [
            layer | {"name": seed_name} if layer["name"] == dense else layer
            for layer in config_layers
        ]
    layers = {seed_name if name == dense else name: w for name, w in keras_file.layers.items()}
    return replace(
        keras_file,
        layers=layers,
        config_layers=config_layers,
        own_names=keras_file.own_names | {seed_name: dense},
    )


# Checking ---------------------------------------------------------------------------------


def _check_looks_like_seed(keras_file: _KerasFile) -> None:
    """Refuse files of other architectures before listing a hundred missing layers."""
    names = list(keras_file.layers)
    seed_like = [n for n in names if _SEED_NAME.fullmatch(n)]
    if keras_file.nested is not None:
        raise ResnetlabError(
            f"layer {keras_file.nested} in {keras_file.path} is a model of its own; a model "
            f"nested in another converts only when it is a keras.applications ResNet, save "
            f"the inner model itself"
        )
    if 2 * len(seed_like) < max(_SEED_LAYERS, len(names)):
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        raise ResnetlabError(
            f"{keras_file.path} {_NOT_SEED}: it has {len(names)} layers with weights "
            f"({shown or 'none'}), {len(seed_like)} of them named as the course's (conv1, "
            f"bn_conv1, res2a_branch2a, ..., fc6)"
        )


def _is_seed_backbone(keras_file: _KerasFile) -> bool:
    """Whether the file holds the course's network without its classifier: every Conv2D
    and BatchNormalization layer of the course's model, and nothing else with weights
    (``keras.Model(model.input, model.layers[-2].output)`` saved)."""
    convs, norms = _seed_build_order()
    return set(keras_file.layers) == {*convs, *norms}


def _without_classifier(keras_file: _KerasFile, fix: str) -> str:
    return (
        f"{keras_file.path} holds the course's ResNet50 without its classifier (no "
        f"fc<classes> Dense layer); {fix}, or convert the model saved with its classifier"
    )


def _file_num_classes(keras_file: _KerasFile) -> int:
    classifier = keras_file.classifier
    if classifier is None:
        found = [n for n in keras_file.layers if _CLASSIFIER.fullmatch(n)]
        others = [n for n in keras_file.layers if not _SEED_NAME.fullmatch(n)]
        detail = f"it has {', '.join(found)}" if found else "it has none"
        if not found and others:  # a head of its own: Dense(256), Dense(K)
            detail += f", and layers with weights the course's has not: {', '.join(others)}"
        raise ResnetlabError(
            f"{keras_file.path} {_NOT_SEED}: the course's model has one classifier layer "
            f"fc<classes>, {detail}"
        )
    kernel = keras_file.layers[classifier].get("kernel")
    if kernel is None or kernel.ndim != 2:
        raise ResnetlabError(f"layer {classifier} in {keras_file.path} has no Dense kernel")
    return int(kernel.shape[1])


def _choose_input_size(keras_file: _KerasFile, flag: int | None, unrecorded: int | None) -> int:
    file_size = keras_file.input_size
    if flag is not None and file_size is not None and flag != file_size:
        raise ResnetlabError(
            f"{keras_file.path} holds a model for {file_size}x{file_size} inputs but "
            f"{option('input_size', flag)} was given; drop it"
        )
    size = flag if flag is not None else file_size
    if size is not None:
        keras_feature_sizes(size)  # refuses sizes too small for the network
        return size
    if keras_file.classifier is None:  # the network alone takes any size: the course's
        size = unrecorded or model_info("resnet50_keras").input_size
        keras_feature_sizes(size)
        return size
    # Weights only: the classifier's width says how large the last feature map was.
    dense_inputs = keras_file.layers[keras_file.classifier]["kernel"].shape[0]
    final = math.isqrt(dense_inputs // 2048)
    sizes = [
        s
        for s in range(MIN_INPUT_SIZE, 64 * (final + 2))
        if keras_feature_sizes(s)["avgpool"] == final
    ]
    if dense_inputs != 2048 * final**2 or not sizes:
        raise ResnetlabError(
            f"{keras_file.path} {_NOT_SEED}: its classifier "
            f"{keras_file.label(keras_file.classifier)} takes "
            f"{dense_inputs} inputs, not 2048 per position of the last feature map"
        )
    for size in (unrecorded, model_info("resnet50_keras").input_size):
        if size in sizes:
            return size
    raise ResnetlabError(
        f"{keras_file.path} holds weights only, and its classifier "
        f"{keras_file.label(keras_file.classifier)} "
        f"takes {dense_inputs} inputs: a {final}x{final} last feature map, from inputs of "
        f"{sizes[0]} to {sizes[-1]} pixels; give the size it was trained at with "
        f"{option('input_size')}"
    )


def _expected_layers(model: KerasResNet50, keras_file: _KerasFile) -> dict[str, str]:
    """The course's Keras layer name -> the model's module name."""
    names = {keras_name: module for module, keras_name in model.keras_layer_names().items()}
    classifier, seed_classifier = keras_file.classifier, f"fc{model.num_classes}"
    # The seed names its classifier after its width, which the kernel's shape then checks
    # with a clearer message than a missing fc6 and an extra fc10 would give.
    if classifier is not None and seed_classifier in names:
        names[classifier] = names.pop(seed_classifier)
    return names


def _keras_kind(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        return "Conv2D"
    if isinstance(module, nn.BatchNorm2d):
        return "BatchNormalization"
    return "Dense"


def _keras_shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    """The shape Keras gives each weight of the layer that ``module`` stands for."""
    if isinstance(module, nn.Conv2d):
        out_channels, in_channels, kh, kw = module.weight.shape
        return {"kernel": (kh, kw, in_channels, out_channels), "bias": (out_channels,)}
    if isinstance(module, nn.BatchNorm2d):
        c = module.num_features
        return {k: (c,) for k in ("gamma", "beta", "moving_mean", "moving_variance")}
    out_features, in_features = module.weight.shape
    return {"kernel": (in_features, out_features), "bias": (out_features,)}


def _check_layer_set(keras_file: _KerasFile, expected: dict[str, str]) -> None:
    path = keras_file.path
    missing = [n for n in expected if n not in keras_file.layers]
    extra = [n for n in keras_file.layers if n not in expected]
    if missing:
        more = f" (and {len(missing) - 1} more: {', '.join(missing[1:6])})" if missing[1:] else ""
        raise ResnetlabError(
            f"{path} has no layer {missing[0]}{more}, which the course's ResNet50 has; it is "
            f"truncated or a different model"
        )
    if extra:
        more = f" (and {len(extra) - 1} more: {', '.join(extra[1:6])})" if extra[1:] else ""
        raise ResnetlabError(
            f"{path} has a layer {extra[0]}{more} with weights, which the course's ResNet50 does "
            f"not have; it is a different model"
        )


def _check_architecture(
    model: KerasResNet50, keras_file: _KerasFile, expected: dict[str, str]
) -> None:
    """Check a saved architecture against the course's: what the weights alone cannot show."""
    path = keras_file.path
    layers = keras_file.config_layers or []
    last_map = keras_feature_sizes(model.input_size)["stage5"]
    for layer in layers:
        name, kind, config = layer["name"], layer["class_name"], layer["config"]
        if kind == "Rescaling":  # the inputs' normalisation, read by _input_scaling
            continue
        if kind not in _SEED_LAYER_CLASSES:
            first = layers.index(layer) == 1 and layers[0]["class_name"] == "InputLayer"
            hint = ""
            if kind == "Dropout":
                hint = _REBUILD_WITHOUT_DROPOUT
            elif first and not keras_file.layers.get(name):
                hint = _REBUILD_PREPROCESSING
            raise ResnetlabError(
                f"{path} {_NOT_SEED}: its layer {name} is a {shown_class(kind)}, which the "
                f"course's model does not use{hint}"
            )
        if name in expected:
            module = model.get_submodule(expected[name])
            want = _keras_kind(module)
            if kind != want:
                raise ResnetlabError(
                    f"{path} {_NOT_SEED}: its layer {keras_file.label(name)} is a {kind}, "
                    f"not a {want}"
                )
            problem = _layer_problem(
                kind, config, module, is_stem=module is model.conv1, last_map=last_map
            )
        else:
            problem = _layer_problem(kind, config, None, is_stem=False, last_map=last_map)
        if problem:
            raise ResnetlabError(
                f"{path} {_NOT_SEED}: its layer {keras_file.label(name)} {problem}"
            )
    counts = Counter(layer["class_name"] for layer in layers)
    counts["Activation"] += counts.pop("ReLU", 0)
    blocks = sum(len(stage) for stage in model.stages)
    want_counts = {
        "ZeroPadding2D": 1,
        "MaxPooling2D": 1,
        "AveragePooling2D": 1,
        "Flatten": 1,
        "Add": blocks,
        "Activation": 1 + 3 * blocks,
    }
    if keras_file.classifier is None:  # cut after the last block, its pool or its Flatten
        want_counts |= {k: counts[k] for k in ("AveragePooling2D", "Flatten") if counts[k] <= 1}
    for kind, want in want_counts.items():
        if counts[kind] != want:
            raise ResnetlabError(
                f"{path} {_NOT_SEED}: it has {counts[kind]} {kind} layers, the course's model "
                f"has {want}"
            )


def _layer_problem(
    kind: str, config: dict[str, Any], module: nn.Module | None, *, is_stem: bool, last_map: int
) -> str | None:
    """What in a layer's config differs from the course's, or None.

    ``last_map`` is the side of the last feature map, which the average pool reads.
    """
    if config.get("data_format", "channels_last") not in ("channels_last", None):
        return (
            f"uses data_format={config['data_format']}, the course's model channels_last"
            f"{CHANNELS_LAST_FIX}"
        )
    checks: list[tuple[str, Any, Any]] = []  # (setting, file's value, course model's value)
    if kind == "Conv2D" and module is not None:
        checks += [
            ("strides", _pair(config.get("strides", 1)), tuple(module.stride)),
            ("dilation_rate", _pair(config.get("dilation_rate", 1)), (1, 1)),
            ("groups", config.get("groups", 1), 1),
            ("activation", config.get("activation", "linear"), "linear"),
        ]
        # A 1x1 kernel gives the same output with either padding. The stem's padding is a
        # ZeroPadding2D(3) layer of its own; the 3x3 convs are 'same'.
        if tuple(module.kernel_size) != (1, 1):
            padding = "valid" if is_stem else "same"
            checks.append(("padding", config.get("padding", "valid"), padding))
    elif kind == "BatchNormalization":
        axis = config.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        checks += [
            ("axis", 3 if axis == -1 else axis, 3),
            ("epsilon", float(config.get("epsilon", 1e-3)), 1e-3),
            ("renorm", config.get("renorm", False), False),
        ]
    elif kind == "Dense":
        activation = config.get("activation", "linear")
        # Either gives the course's logits; its probabilities are softmax(logits).
        if activation not in ("softmax", "linear"):
            return f"has activation={activation!r}, the course's 'softmax'"
    elif kind == "Activation":
        checks.append(("activation", config.get("activation"), "relu"))
    elif kind == "ReLU":
        checks += [
            ("max_value", config.get("max_value"), None),
            ("negative_slope", float(config.get("negative_slope", 0.0)), 0.0),
            ("threshold", float(config.get("threshold", 0.0)), 0.0),
        ]
    elif kind == "ZeroPadding2D":
        checks.append(("padding", _padding(config.get("padding", 1)), ((3, 3), (3, 3))))
    elif kind == "MaxPooling2D":
        checks += [
            ("pool_size", _pair(config.get("pool_size", 2)), (3, 3)),
            ("strides", _pair(config.get("strides") or config.get("pool_size", 2)), (2, 2)),
            ("padding", config.get("padding", "valid"), "valid"),
        ]
    elif kind == "AveragePooling2D":
        # The course's current notebook keeps Keras's default 'valid', which pools a map of
        # even side exactly as 'same' does; on an odd side it leaves out the last row and
        # column, where 'same' averages them alone.
        padding = config.get("padding", "valid")
        if padding == "valid" and last_map % 2:
            return (
                f"has padding='valid', which pools the {last_map}x{last_map} last feature map "
                f"to {last_map // 2}x{last_map // 2}; the course's 'same' gives "
                f"{-(-last_map // 2)}x{-(-last_map // 2)}"
            )
        checks += [
            ("pool_size", _pair(config.get("pool_size", 2)), (2, 2)),
            ("strides", _pair(config.get("strides") or config.get("pool_size", 2)), (2, 2)),
            ("padding", padding, "valid" if padding == "valid" else "same"),
        ]
    for setting, have, want in checks:
        if have != want:
            return f"has {setting}={have!r}, the course's {want!r}"
    return None


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _padding(value: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    if isinstance(value, int):
        return ((value, value), (value, value))
    return tuple(_pair(v) for v in value)


def _shape(shape: Any) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


# Loading ----------------------------------------------------------------------------------


def load_layers(
    model: nn.Module,
    keras_file: _KerasFile,
    layers: dict[str, str],
    /,
    *,
    bgr: bool = False,
    **details: Any,
) -> KerasImportReport:
    """Copy the file's ``layers`` (Keras name -> module name) into ``model``, each shape
    checked; the report of what was loaded, with ``details`` (the classes, the input size,
    the model...). ``bgr``: the network reads BGR images, so the converted one's first conv
    takes its input channels reversed (RGB, as every resnetlab model)."""
    tensors: dict[str, torch.Tensor] = {}
    for keras_name, module_name in layers.items():
        tensors |= _convert_layer(model, keras_file, keras_name, module_name)
    if bgr:
        tensors["conv1.weight"] = tensors["conv1.weight"].flip(1)
    state = model.state_dict()
    with torch.no_grad():
        for key, value in tensors.items():
            state[key].copy_(value)
    return KerasImportReport(
        path=keras_file.path,
        layout=keras_file.layout,
        keras_version=keras_file.keras_version,
        layers_loaded=len(layers),
        tensors_loaded=len(tensors),
        values_loaded=sum(t.numel() for t in tensors.values()),
        file_input_size=keras_file.input_size,
        architecture_checked=keras_file.config_layers is not None,
        **details,
    )


def _load(model: KerasResNet50, keras_file: _KerasFile) -> KerasImportReport:
    """Check everything, then copy the file's weights into the model."""
    expected = _expected_layers(model, keras_file)
    backbone = keras_file.classifier is None and _is_seed_backbone(keras_file)
    if backbone:  # the model's classifier stays as it is
        expected.pop(f"fc{model.num_classes}")
    _check_layer_set(keras_file, expected)
    scaling = _input_scaling(keras_file)
    if keras_file.config_layers is not None:
        _check_architecture(model, keras_file, expected)
    return load_layers(
        model,
        keras_file,
        expected,
        num_classes=0 if backbone else model.num_classes,
        input_size=model.input_size,
        # Not for the classifier alone, which _name_classifier names by its kind.
        matched_by_order=bool(set(keras_file.own_names) - {keras_file.classifier}),
        input_scaling=scaling,
        model_kwargs={"input_size": model.input_size},
    )


def _input_scaling(keras_file: _KerasFile) -> InputScaling | None:
    """The file's ``Rescaling`` layer, which must come first after the input, or None."""
    layers = keras_file.config_layers or []
    found = [i for i, layer in enumerate(layers) if layer["class_name"] == "Rescaling"]
    if not found:
        return None
    path = keras_file.path
    misplaced = [i for i in found if i != 1 or layers[0]["class_name"] != "InputLayer"]
    if misplaced:
        raise ResnetlabError(
            f"{path} {_NOT_SEED}: its layer {layers[misplaced[0]]['name']} is a Rescaling "
            f"inside the network; one is read only as the first layer after the input, where "
            f"it is the inputs' normalisation"
        )
    layer = layers[found[0]]
    values = {}
    for setting, default in (("scale", 1.0), ("offset", 0.0)):
        value = layer["config"].get(setting, default)
        if isinstance(value, dict):  # Keras 3 writes an array as {"config": {"value": ...}}
            value = value.get("config", {}).get("value", value)
        numbers = value if isinstance(value, list) else [value]
        if len(numbers) not in (1, 3) or not all(finite_number(v) for v in numbers):
            raise ResnetlabError(
                f"{path}: its layer {layer['name']} rescales with {setting}={value!r}, which "
                f"is not one number or one per colour channel"
            )
        values[setting] = tuple(float(v) for v in numbers * (3 // len(numbers)))
    if not all(v > 0 for v in values["scale"]):
        raise ResnetlabError(
            f"{path}: its layer {layer['name']} rescales with scale={layer['config']['scale']!r}; "
            f"only a positive scale reads as a normalisation of the inputs"
        )
    return InputScaling(layer["name"], values["scale"], values["offset"])


def _convert_layer(
    model: nn.Module, keras_file: _KerasFile, keras_name: str, module_name: str
) -> dict[str, torch.Tensor]:
    """One layer's weights as PyTorch state-dict entries, checked against the model (the
    course's, or the keras.applications ResNet's)."""
    path = keras_file.path
    module = model.get_submodule(module_name)
    kind = _keras_kind(module)
    weights = keras_file.layers[keras_name]
    shapes = _keras_shapes(module)
    if set(weights) != set(shapes):
        raise ResnetlabError(
            f"layer {keras_file.label(keras_name)} in {path} holds {', '.join(weights)}; the "
            f"model's {kind} for it has {', '.join(shapes)}"
        )
    out = {}
    for weight, want in shapes.items():
        value = weights[weight]
        if value.shape != want:
            raise ResnetlabError(
                _shape_mismatch(model, keras_file, keras_name, weight, value, want)
            )
        if not np.issubdtype(value.dtype, np.floating):
            raise ResnetlabError(
                f"{weight} of layer {keras_file.label(keras_name)} in {path} is {value.dtype}, "
                f"not floating point"
            )
        tensor = torch.from_numpy(np.ascontiguousarray(value))
        if kind == "Conv2D" and weight == "kernel":
            tensor = tensor.permute(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
        elif kind == "Dense" and weight == "kernel":
            tensor = tensor.T  # (in, out) -> (out, in); rows already in (H, W, C) order
        # A view: load_layers copies it into the model's tensor, the one copy it needs.
        out[f"{module_name}.{_KERAS_TO_TORCH[kind][weight]}"] = tensor
    return out


def _shape_mismatch(
    model: KerasResNet50,
    keras_file: _KerasFile,
    keras_name: str,
    weight: str,
    value: np.ndarray,
    want: tuple[int, ...],
) -> str:
    message = (
        f"layer {keras_file.label(keras_name)} in {keras_file.path} has a {weight} of shape "
        f"{_shape(value.shape)}, "
        f"the model expects {_shape(want)}"
    )
    if keras_name != keras_file.classifier or weight != "kernel" or value.ndim != 2:
        return message
    if value.shape[1] != want[1]:
        return f"{message}: the file has {value.shape[1]} classes; build with that num_classes"
    final = math.isqrt(value.shape[0] // 2048)
    return (
        f"{message}: the file's last feature map is {final}x{final}, the model's "
        f"{model.final_size}x{model.final_size} at {model.input_size}x{model.input_size} "
        f"inputs; use the input size the file was trained at"
    )
