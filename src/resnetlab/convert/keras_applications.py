"""Import keras.applications' ResNet50, ResNet101 and ResNet152 (v1) as resnetlab's own.

keras.applications builds them (``keras/src/applications/resnet.py``) as::

    ZeroPadding2D(3) 'conv1_pad' -> Conv2D(64, 7, strides=2) 'conv1_conv' -> BN 'conv1_bn'
    -> ReLU 'conv1_relu' -> ZeroPadding2D(1) 'pool1_pad' -> MaxPooling2D(3, strides=2)
    -> stacks 'conv2'..'conv5' of [3, 4, 6, 3] (101: [3, 4, 23, 3]; 152: [3, 8, 36, 3])
       bottlenecks 'convN_blockM_{1,2,3}_{conv,bn}', a projection '_0_{conv,bn}' in block 1,
       the stride on the first 1x1 conv, the 3x3 'same', every conv biased, BN epsilon
       1.001e-5
    -> GlobalAveragePooling2D 'avg_pool' -> Dense(classes, softmax) 'predictions'

That is resnetlab's ``resnet50`` (``resnet101``, ``resnet152``) with ``stride_in_1x1=True``
(v1), ``bias=True`` and ``norm_eps`` the file's BN epsilon: the zero padding before the max
pool follows a ReLU, so it pads with values no larger than any other, as PyTorch's pool
padding does. A transfer model, the network without its top (``include_top=False``) nested in
another and followed by GlobalAveragePooling2D (or the network's own ``pooling='avg'``),
Dropout and one Dense classifier, is the same model with that classifier.

The networks take Keras's ``preprocess_input`` for ResNets ('caffe' mode): RGB to BGR, then
ImageNet's mean subtracted from 0-255 pixels. The model file records that as a normalisation
of RGB ``pixels / 255``, mean ``(123.68, 116.779, 103.939) / 255`` and std ``1 / 255``; the
channel order is taken into the first convolution, whose input channels are reversed, so the
converted model takes RGB images as every resnetlab model does.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from ..errors import ResnetlabError, finite_number, option
from ..models.registry import create_model
from .keras import (
    CHANNELS_LAST_FIX,
    KerasImportReport,
    _KerasFile,
    _padding,
    _pair,
    load_layers,
    shown_class,
)

KERAS_BN_EPS = 1.001e-5  # keras.applications' BatchNormalization epsilon
MIN_INPUT_SIZE = 32  # the smallest input keras.applications builds these networks for
DEFAULT_INPUT_SIZE = 224
# Blocks per stage -> the network.
DEPTHS = {(3, 4, 6, 3): "resnet50", (3, 4, 23, 3): "resnet101", (3, 8, 36, 3): "resnet152"}
_KERAS_NAMES = {"resnet50": "ResNet50", "resnet101": "ResNet101", "resnet152": "ResNet152"}
SUPPORTED = "keras.applications' ResNet50, ResNet101 and ResNet152 (v1)"
HEAD = (
    "nothing after the network but GlobalAveragePooling2D (or its pooling='avg'), "
    "Dropout and one Dense classifier"
)
# For a layer the pixels go through before the network: preprocess_input called on the
# model's input (its GetItem, Stack and Add layers), a Lambda, a Rescaling.
_SAVE_WITHOUT_PREPROCESSING = (
    "; where it is preprocess_input, the converted model does that normalisation itself: "
    "build the model on the network's own input (keras.applications.ResNet50(...).input), "
    "copy the weights (new_model.set_weights(model.get_weights())), save that and convert it"
)
_STEM = {"conv1_conv": "conv1", "conv1_bn": "bn1"}
_BLOCK = re.compile(r"conv([2-5])_block(\d+)_([0-3])_(conv|bn)")
_V2 = re.compile(r"conv\d_block\d+_preact_bn|post_bn")
# Layers without weights: name pattern -> class.
_PLAIN_LAYERS = {
    r"conv1_pad": "ZeroPadding2D",
    r"conv1_relu": "Activation",
    r"pool1_pad": "ZeroPadding2D",
    r"pool1_pool": "MaxPooling2D",
    r"conv[2-5]_block\d+_[12]_relu": "Activation",
    r"conv[2-5]_block\d+_out": "Activation",
    r"conv[2-5]_block\d+_add": "Add",
}
_HEAD_CLASSES = ("InputLayer", "GlobalAveragePooling2D", "Dropout", "Dense")


def is_keras_applications_resnet(keras_file: _KerasFile) -> bool:
    """Whether the file's layers are named as keras.applications names its ResNets'."""
    names = keras_file.layers
    return "conv1_conv" in names and any(_BLOCK.fullmatch(n) or _V2.fullmatch(n) for n in names)


@dataclass(frozen=True)
class _Plan:
    """What the file holds: the network, its classifier and the layers mapped to modules."""

    model: str  # resnet50, resnet101, resnet152
    classifier: str | None  # the Dense layer's name; None for the network alone
    num_classes: int  # 0 without a classifier
    modules: dict[str, str]  # Keras layer name -> the model's module name
    norm_eps: float
    # The layers after the network in a transfer model; None for the whole network
    # (include_top=True).
    head: tuple[str, ...] | None
    pooled: bool = False  # the nested network pools itself (pooling='avg')

    @property
    def model_kwargs(self) -> dict[str, Any]:
        return {"stride_in_1x1": True, "bias": True, "norm_eps": self.norm_eps}

    @property
    def network(self) -> str:
        network = f"keras.applications {_KERAS_NAMES[self.model]}"
        if self.head is None:
            return network
        pooling = ", pooling='avg'" if self.pooled else ""
        after = f" + {', '.join(self.head)}" if self.head else ""
        return f"{network} (include_top=False{pooling}){after}"


def plan(keras_file: _KerasFile) -> _Plan:
    """Check the file's layers (and architecture, when it holds one); say what it converts to.

    Raises:
        ResnetlabError: a ResNetV2, another depth, a layer missing or extra, or anything
            but GlobalAveragePooling2D, Dropout and one Dense classifier after the network.
    """
    path, names = keras_file.path, list(keras_file.layers)
    if any(_V2.fullmatch(n) for n in names):
        raise ResnetlabError(
            f"{path} is a keras.applications ResNetV2 (pre-activation: "
            f"conv2_block1_preact_bn, ..., post_bn), which does not convert; {SUPPORTED} do"
        )
    blocks: dict[int, set[int]] = {}
    for name in names:
        if match := _BLOCK.fullmatch(name):
            blocks.setdefault(int(match[1]), set()).add(int(match[2]))
    counts = tuple(len(blocks.get(stage, ())) for stage in (2, 3, 4, 5))
    model = DEPTHS.get(counts)
    if model is None:
        raise ResnetlabError(
            f"{path} has keras.applications' ResNet layers with {list(counts)} blocks in "
            f"stages conv2..conv5; {SUPPORTED} have "
            f"{' / '.join(str(list(c)) for c in DEPTHS)}"
        )
    modules = dict(_STEM)
    for stage, num_blocks in zip((2, 3, 4, 5), counts, strict=True):
        for block in range(1, num_blocks + 1):
            prefix, module = f"conv{stage}_block{block}", f"layer{stage - 1}.{block - 1}"
            for i in (0, 1, 2, 3) if block == 1 else (1, 2, 3):
                conv, norm = ("downsample.0", "downsample.1") if i == 0 else (f"conv{i}", f"bn{i}")
                modules[f"{prefix}_{i}_conv"] = f"{module}.{conv}"
                modules[f"{prefix}_{i}_bn"] = f"{module}.{norm}"
    missing = [n for n in modules if n not in keras_file.layers]
    if missing:
        more = f" (and {len(missing) - 1} more)" if missing[1:] else ""
        raise ResnetlabError(
            f"{path} has no layer {missing[0]}{more}, which keras.applications' "
            f"{_KERAS_NAMES[model]} has; it is truncated or a different model"
        )
    others = [n for n in names if n not in modules]
    dense = [n for n in others if _is_dense(keras_file.layers[n])]
    if not others:  # include_top=False saved alone: the network without a classifier
        norm_eps, head, pooled = KERAS_BN_EPS, (), False
        if keras_file.config_layers is not None:
            norm_eps, head, pooled = _check_architecture(keras_file, model, modules, None)
            if head == ("GlobalAveragePooling2D",) and keras_file.nested is None:
                # saved alone: its own pooling="avg"
                head, pooled = (), True
        return _Plan(model, None, 0, modules, norm_eps, head, pooled)
    if len(others) != 1 or len(dense) != 1:
        found = ", ".join(others) or "none"
        raise ResnetlabError(
            f"{path} has {_KERAS_NAMES[model]} and after it layers with weights {found}; "
            f"it converts with {HEAD}"
        )
    classifier = dense[0]
    kernel = keras_file.layers[classifier]["kernel"]
    if kernel.shape[0] != 2048:
        raise ResnetlabError(
            f"{path}: its classifier {classifier} takes {kernel.shape[0]} inputs, not the "
            f"2048 channels of {_KERAS_NAMES[model]}'s global average pool; it converts with "
            f"{HEAD}"
        )
    norm_eps, head, pooled = KERAS_BN_EPS, (f"Dense {classifier}",), False
    top: tuple[str, ...] = ("Dense predictions",)  # include_top=True's, as the weights show
    if keras_file.config_layers is not None:
        norm_eps, head, pooled = _check_architecture(keras_file, model, modules, classifier)
        top = ("GlobalAveragePooling2D", *top)
    # Nested in a model with nothing after it (keras.Sequential([ResNet50()])), the network
    # holds its own pool and classifier: include_top=True too.
    include_top = head == top if keras_file.nested is None else not head
    return _Plan(
        model,
        classifier,
        int(kernel.shape[1]),
        modules,
        norm_eps,
        None if include_top else head,
        pooled,
    )


def _is_dense(weights: dict[str, np.ndarray]) -> bool:
    kernel = weights.get("kernel")
    return kernel is not None and kernel.ndim == 2


def _check_architecture(
    keras_file: _KerasFile, model: str, modules: dict[str, str], classifier: str | None
) -> tuple[float, tuple[str, ...], bool]:
    """Check each layer of a saved architecture: what the weights cannot show (strides,
    padding, pooling, activations, the layers after the network). Returns the BN epsilon,
    the layers after the network's last block (outside a nested network), and whether a
    nested network pools itself (``pooling='avg'``). ``classifier`` None: the network
    alone, with at most its GlobalAveragePooling2D after it."""
    path = keras_file.path
    network = _KERAS_NAMES[model]
    layers = keras_file.config_layers or []
    epsilons = set()
    head = []
    in_network = False
    for layer in layers:
        name, kind, config = layer["name"], layer["class_name"], layer["config"]
        expected = _expected_class(name, modules)
        in_network = in_network or (expected is not None and kind != "InputLayer")
        if expected is None and kind not in _HEAD_CLASSES:
            before = "" if in_network else _SAVE_WITHOUT_PREPROCESSING
            raise ResnetlabError(
                f"{path}: its layer {name} is a {shown_class(kind)}, which keras.applications' "
                f"{network} does not have; it converts with nothing before the network and "
                f"{HEAD}{before}"
            )
        if expected is not None and kind != expected:
            raise ResnetlabError(f"{path}: its layer {name} is a {kind}, not a {expected}")
        if kind == "BatchNormalization":
            epsilons.add(config.get("epsilon", 1e-3))
        problem = _layer_problem(name, kind, config, classifier)
        if problem:
            raise ResnetlabError(f"{path}: its layer {name} {problem}")
        if expected is None and kind != "InputLayer" and layer.get("model") is None:
            head.append(f"{kind} {name}" if kind == "Dense" else kind)
    counts = Counter(layer["class_name"] for layer in layers)
    if classifier is None and counts["GlobalAveragePooling2D"] <= 1 and not counts["Dense"]:
        pass  # the network alone (include_top=False), pooled or not
    elif counts["GlobalAveragePooling2D"] != 1 or counts["Dense"] != 1:
        raise ResnetlabError(
            f"{path} has {counts['GlobalAveragePooling2D']} GlobalAveragePooling2D and "
            f"{counts['Dense']} Dense layers after {network}; it converts with {HEAD}"
        )
    order = [layer["class_name"] for layer in layers]
    if classifier is not None and order.index("GlobalAveragePooling2D") > order.index("Dense"):
        raise ResnetlabError(
            f"{path}: its Dense layer comes before its GlobalAveragePooling2D; it converts "
            f"with {HEAD}"
        )
    if len(epsilons) != 1 or not all(finite_number(e) and e > 0 for e in epsilons):
        shown = ", ".join(map(str, sorted(epsilons, key=str)))
        raise ResnetlabError(
            f"{path}: its BatchNormalization layers have epsilon {shown}; it converts with "
            f"one positive epsilon for all ({KERAS_BN_EPS} in keras.applications)"
        )
    pooled = any(
        layer["class_name"] == "GlobalAveragePooling2D" and layer.get("model") is not None
        for layer in layers
    )
    return float(epsilons.pop()), tuple(head), pooled


def _expected_class(name: str, modules: dict[str, str]) -> str | None:
    """The class keras.applications gives the layer its ResNet names so, or None."""
    if name in modules:
        return "BatchNormalization" if name.endswith("_bn") else "Conv2D"
    for pattern, kind in _PLAIN_LAYERS.items():
        if re.fullmatch(pattern, name):
            return kind
    return None


def _layer_problem(name: str, kind: str, config: dict[str, Any], classifier: str) -> str | None:
    """What in a layer's config differs from keras.applications' ResNet, or None."""
    if config.get("data_format", "channels_last") not in ("channels_last", None):
        return (
            f"uses data_format={config['data_format']}; the network's is channels_last"
            f"{CHANNELS_LAST_FIX}"
        )
    checks: list[tuple[str, Any, Any]] = []  # (setting, file's value, the network's)
    if kind == "Conv2D":
        match = _BLOCK.fullmatch(name)
        kernel = 7 if name == "conv1_conv" else 3 if match and match[3] == "2" else 1
        first = match is not None and match[2] == "1" and match[3] in "01"
        stride = 2 if name == "conv1_conv" or (first and match[1] != "2") else 1
        checks += [
            ("kernel_size", _pair(config.get("kernel_size", kernel)), (kernel, kernel)),
            ("strides", _pair(config.get("strides", 1)), (stride, stride)),
            ("dilation_rate", _pair(config.get("dilation_rate", 1)), (1, 1)),
            ("groups", config.get("groups", 1), 1),
            ("activation", config.get("activation", "linear"), "linear"),
        ]
        if kernel == 3:
            checks.append(("padding", str(config.get("padding", "valid")).lower(), "same"))
        elif kernel == 7:
            checks.append(("padding", config.get("padding", "valid"), "valid"))
    elif kind == "BatchNormalization":
        axis = config.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        checks += [
            ("axis", 3 if axis == -1 else axis, 3),
            ("center", config.get("center", True), True),
            ("scale", config.get("scale", True), True),
            ("renorm", config.get("renorm", False), False),
        ]
    elif kind == "Activation":
        checks.append(("activation", config.get("activation"), "relu"))
    elif kind == "ZeroPadding2D":
        pad = 3 if name == "conv1_pad" else 1
        checks.append(("padding", _padding(config.get("padding", 1)), ((pad, pad), (pad, pad))))
    elif kind == "MaxPooling2D":
        checks += [
            ("pool_size", _pair(config.get("pool_size", 2)), (3, 3)),
            ("strides", _pair(config.get("strides") or config.get("pool_size", 2)), (2, 2)),
            ("padding", config.get("padding", "valid"), "valid"),
        ]
    elif kind == "GlobalAveragePooling2D":
        checks.append(("keepdims", config.get("keepdims", False), False))
    elif kind == "Dense":
        activation = config.get("activation", "linear")
        if activation not in ("softmax", "linear"):  # either gives the logits' classes
            return (
                f"is a classifier with activation={activation!r}; one with 'softmax' (or "
                f"none) converts"
            )
        checks.append(("use_bias", config.get("use_bias", True), True))
    for setting, have, want in checks:
        if have != want:
            return f"has {setting}={have!r}, keras.applications' ResNet {want!r}"
    return None


def input_size(keras_file: _KerasFile, flag: int | None) -> int:
    """The input side: the file's, else ``flag``, else 224; the file's and the flag must
    agree, and it must be at least 32."""
    path = keras_file.path
    file_size = keras_file.input_size
    if flag is not None and file_size is not None and flag != file_size:
        raise ResnetlabError(
            f"{path} holds a model for {file_size}x{file_size} inputs but "
            f"{option('input_size', flag)} was given; drop it"
        )
    size = flag if flag is not None else file_size or DEFAULT_INPUT_SIZE
    if size < MIN_INPUT_SIZE:
        raise ResnetlabError(
            f"keras.applications' ResNets take inputs of at least {MIN_INPUT_SIZE}x"
            f"{MIN_INPUT_SIZE} pixels, not {size}x{size}; give "
            f"{option('input_size', MIN_INPUT_SIZE)} or more"
        )
    return size


def without_classifier(keras_file: _KerasFile, the_plan: _Plan, fix: str) -> str:
    """Why a file of the network alone (``include_top=False``) makes no classifier, and ``fix``."""
    return (
        f"{keras_file.path} holds {the_plan.network} with no Dense classifier after it; "
        f"{fix}, or convert the model saved with its classifier"
    )


def build(keras_file: _KerasFile, the_plan: _Plan, num_classes: int | None) -> nn.Module:
    """The resnetlab model for the file, with fresh weights (a fresh classifier, of
    ``num_classes`` or 1 outputs, for a network without one)."""
    if the_plan.classifier is None:
        return create_model(the_plan.model, num_classes=num_classes or 1, **the_plan.model_kwargs)
    if num_classes is not None and num_classes != the_plan.num_classes:
        raise ResnetlabError(
            f"{keras_file.path} has {the_plan.num_classes} classes (its classifier "
            f"{the_plan.classifier}) but {option('num_classes', num_classes)} was given; drop "
            f"it or convert the file that has {num_classes}"
        )
    return create_model(the_plan.model, num_classes=the_plan.num_classes, **the_plan.model_kwargs)


def check_target(model: nn.Module, keras_file: _KerasFile, the_plan: _Plan) -> None:
    """A model built by the user must be the one the file converts to."""
    name = getattr(model, "model_name", None)
    kwargs = {
        k: v
        for k, v in getattr(model, "model_kwargs", {}).items()
        if k not in ("zero_init_residual", "input_size")
    }
    if the_plan.classifier is None:
        raise ResnetlabError(
            without_classifier(
                keras_file,
                the_plan,
                f"start a model from it with create_model({the_plan.model!r}, "
                f"num_classes=K, pretrained={str(keras_file.path)!r}) and train its new "
                f"classifier",
            )
        )
    if (
        name != the_plan.model
        or kwargs != the_plan.model_kwargs
        or model.num_classes != the_plan.num_classes
    ):
        options = ", ".join(f"{k}={v!r}" for k, v in the_plan.model_kwargs.items())
        raise ResnetlabError(
            f"{keras_file.path} holds {the_plan.network}; load it into "
            f"create_model({the_plan.model!r}, num_classes={the_plan.num_classes}, {options})"
        )


def load(model: nn.Module, keras_file: _KerasFile, the_plan: _Plan, size: int) -> KerasImportReport:
    """Copy the file's weights into ``model`` (built by ``build``), checking every shape;
    a network without a classifier leaves the model's as it is."""
    layers = dict(the_plan.modules)
    if the_plan.classifier is not None:
        layers[the_plan.classifier] = "fc"
    return load_layers(
        model,
        keras_file,
        layers,
        bgr=True,  # 'caffe' preprocessing
        num_classes=the_plan.num_classes,
        input_size=size,
        model=the_plan.model,
        model_kwargs=the_plan.model_kwargs,
        network=the_plan.network,
        caffe_preprocessing=True,
    )
