"""Hugging Face transformers' ResNets (``microsoft/resnet-50`` and its kin) as files.

``hf download microsoft/resnet-50 --local-dir resnet-50`` leaves a ``config.json`` with
``"model_type": "resnet"`` beside ``model.safetensors`` (or ``pytorch_model.bin``) and a
``preprocessor_config.json``. Nothing of transformers is needed to read them: the config
says which ResNet the tensors are (``depths``, ``layer_type``), the tensors are renamed to
this project's names (torchvision's: ``resnet.encoder.stages.0.layers.1.layer.0.convolution``
is ``layer1.1.conv1``), and the preprocessor config gives the normalisation and input size.

transformers' ResNet is torchvision's: a 7x7 stem and a max-pool, then stages of blocks
whose stride sits in the 3x3 convolution ("v1.5"), BN after every convolution, a 1x1
projection shortcut where the shape changes; with ``downsample_in_bottleneck`` the stride
sits in the first 1x1, as in the paper ("v1"), which the models here build with
``stride_in_1x1=True``. Configs that build anything else (other widths, depths or
activations) are refused, naming the setting.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import ResnetlabError
from ..options import CROP_FRACTIONS, is_crop_fraction

CONFIG = "config.json"
PREPROCESSOR = "preprocessor_config.json"

# (block type, blocks per stage) -> the model here with those blocks.
MODELS = {
    ("basic", (2, 2, 2, 2)): "resnet18",
    ("basic", (3, 4, 6, 3)): "resnet34",
    ("bottleneck", (3, 4, 6, 3)): "resnet50",
    ("bottleneck", (3, 4, 23, 3)): "resnet101",
    ("bottleneck", (3, 8, 36, 3)): "resnet152",
}
WIDTHS = {"basic": [64, 128, 256, 512], "bottleneck": [256, 512, 1024, 2048]}
# The settings the models here are built with: transformers' defaults.
FIXED = {
    "embedding_size": 64,
    "num_channels": 3,
    "hidden_act": "relu",
    "downsample_in_first_stage": False,
}
# Pillow's resampling numbers, as transformers' processors record them.
RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


@dataclass(frozen=True)
class TransformersResNet:
    """What a transformers ResNet's config files say of its weights.

    Attributes:
        architecture: transformers' class (``ResNetForImageClassification``).
        model: the model here with the same network (``resnet50``).
        model_kwargs: its options (``stride_in_1x1=True`` for ``downsample_in_bottleneck``).
        class_names: the classifier's labels (``id2label``), None where they are
            transformers' placeholders (``LABEL_0``...).
        mean, std, input_size, crop_pct, interpolation: from ``preprocessor_config.json``
            (None without one); ``crop_pct`` its own, else ``crop_size`` over the
            ``shortest_edge`` resized to first, else ConvNext's processor's default 0.875.
        resize: how its images met ``input_size``: ``crop`` (the shorter side to
            ``input_size / crop_pct``, then the centre) or ``squash`` (ConvNext's processor,
            which ResNets use, at 384 px and up).
    """

    architecture: str
    model: str
    class_names: list[str] | None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_size: int | None = None
    crop_pct: float | None = None
    interpolation: str | None = None
    resize: str | None = None


def _config(weights_file: Path) -> dict[str, Any] | None:
    """The ``config.json`` beside ``weights_file`` where it is a transformers ResNet's."""
    try:
        config = json.loads((weights_file.parent / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) and config.get("model_type") == "resnet" else None


def is_transformers_resnet(weights_file: Path) -> bool:
    """Whether ``weights_file`` has a transformers ResNet's ``config.json`` beside it."""
    return _config(weights_file) is not None


def transformers_resnet(weights_file: Path) -> TransformersResNet | None:
    """What the config files beside ``weights_file`` say, where they are a transformers
    ResNet's (None otherwise); a ResNet that no model here builds is refused, naming the
    setting that differs."""
    config = _config(weights_file)
    if config is None:
        return None
    where = weights_file.parent / CONFIG
    layer_type = config.get("layer_type", "bottleneck")
    depths = tuple(config.get("depths") or ())
    model = MODELS.get((layer_type, depths))
    if model is None:
        known = ", ".join(f"{t} {list(d)} ({m})" for (t, d), m in MODELS.items())
        raise ResnetlabError(
            f"{where}: a transformers ResNet of {layer_type} blocks {list(depths)}, which no "
            f"model here builds; the ones that load are {known}"
        )
    settings = {**FIXED, "hidden_sizes": WIDTHS[layer_type]}
    for key, value in settings.items():
        if config.get(key, value) != value:
            raise ResnetlabError(
                f"{where}: {key} is {json.dumps(config[key])}, and {model} here has "
                f"{json.dumps(value)} (torchvision's network): these weights are for another one"
            )
    labels = config.get("id2label") or {}
    try:
        names = [str(labels[k]) for k in sorted(labels, key=int)]
    except (TypeError, ValueError):
        names = []
    placeholders = [f"LABEL_{i}" for i in range(len(names))]
    architectures = config.get("architectures") or ["ResNetModel"]
    return TransformersResNet(
        architecture=str(architectures[0]),
        model=model,
        class_names=names if names and names != placeholders else None,
        # (a basic block has no 1x1 convolution to stride: transformers ignores it there)
        model_kwargs=(
            {"stride_in_1x1": True}
            if layer_type == "bottleneck" and config.get("downsample_in_bottleneck")
            else {}
        ),
        **_preprocessing(weights_file.parent / PREPROCESSOR),
    )


def _preprocessing(path: Path) -> dict[str, Any]:
    """The normalisation and input size that ``preprocessor_config.json`` records (its
    ``size`` an int, or ``shortest_edge``, or ``height`` and ``width``; without
    ``do_normalize``, the rescaled pixels alone); none where the file is missing or says
    none. One that cannot be read is refused: the inputs the weights expect are unknown."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        why = (
            f"cannot be read ({e.strerror or e})"
            if isinstance(e, OSError)
            else f"is not JSON ({e})"
        )
        raise ResnetlabError(
            f"{path} {why}: it says how images are normalised for these weights; copy or "
            "download it again (or remove it, to assume ImageNet's mean and std)"
        ) from None
    try:
        if config.get("do_normalize", True):
            mean, std = _per_channel(config["image_mean"]), _per_channel(config["image_std"])
        else:  # the rescaled pixels as they are
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        # Its pixels are multiplied by rescale_factor (where do_rescale) before the mean is
        # subtracted; here they are divided by 255: the mean and std scaled to match.
        factor = (
            float(config.get("rescale_factor", 1 / 255)) if config.get("do_rescale", True) else 1.0
        )
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0 or not factor > 0:
        return {}
    if not math.isclose(factor, 1 / 255):
        mean, std = tuple(m / (255 * factor) for m in mean), tuple(s / (255 * factor) for s in std)
    cropped = bool(config.get("crop_size")) and config.get("do_center_crop", True)
    size = config.get("crop_size") if cropped else config.get("size")
    # A size of height and width, without a crop after it, is the whole image resized to
    # it (ViT's processor); only ConvNext's, with shortest_edge, crops.
    whole = isinstance(size, dict) and not cropped and "shortest_edge" not in size
    if isinstance(size, dict):
        size = size.get("shortest_edge") or size.get("height")
    found: dict[str, Any] = {"mean": mean, "std": std}
    if isinstance(size, int) and size > 0:
        found["input_size"] = size
    kind = str(config.get("image_processor_type") or config.get("feature_extractor_type"))
    before = config.get("size") if cropped else None  # the side resized to before the crop
    before = before.get("shortest_edge") if isinstance(before, dict) else None
    if isinstance(config.get("crop_pct"), int | float):
        found["crop_pct"] = float(config["crop_pct"])
    elif isinstance(before, int) and isinstance(size, int) and 0 < size <= before:
        found["crop_pct"] = size / before  # BiT's processor: shortest_edge 256, crop_size 224
    elif kind.startswith("ConvNext"):
        found["crop_pct"] = 224 / 256  # what ConvNext's processor takes without one
    if "crop_pct" in found and not is_crop_fraction(found["crop_pct"]):
        raise ResnetlabError(
            f"{path}: its crop_pct (or crop_size over size) is {found['crop_pct']:g}, where "
            f"the share of the resized image kept must be {CROP_FRACTIONS}; correct it"
        )
    found["interpolation"] = RESAMPLE.get(config.get("resample"))
    found["resize"] = "crop"
    if whole or (kind.startswith("ConvNext") and found.get("input_size", 0) >= 384):
        found["resize"], found["crop_pct"] = "squash", 1.0  # the whole image, no crop
    return found


def _per_channel(value: object) -> tuple[float, ...]:
    """A processor's ``image_mean`` or ``image_std`` for each of the three channels: one
    number (or a list of one), as transformers' processor broadcasts it, for all of them."""
    values = [value] if isinstance(value, int | float) else list(value)
    return tuple(float(v) for v in (values * 3 if len(values) == 1 else values))


def has_transformers_names(state: dict[str, Any]) -> bool:
    """Whether ``state``'s keys are a transformers ResNet's (its stem ``embedder``)."""
    return any(key.removeprefix("resnet.").startswith("embedder.") for key in state)


def torchvision_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers ResNet's tensors under torchvision's names (this project's): the stem
    ``conv1``/``bn1``, stage ``s`` block ``b`` as ``layer{s+1}.{b}``, a block's convolutions
    ``conv1``... and their BNs ``bn1``..., the shortcut ``downsample.0``/``.1``, and the
    classifier (``classifier.1``, after a Flatten) ``fc``. Keys of no such part stay."""
    renamed = {}
    for key, tensor in state.items():
        new = key.removeprefix("resnet.")
        new = new.replace("embedder.embedder.convolution.", "conv1.")
        new = new.replace("embedder.embedder.normalization.", "bn1.")
        new = re.sub(
            r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.",
            lambda m: f"layer{int(m[1]) + 1}.{m[2]}.",
            new,
        )
        new = new.replace(".shortcut.convolution.", ".downsample.0.")
        new = new.replace(".shortcut.normalization.", ".downsample.1.")
        new = re.sub(r"\.layer\.(\d+)\.convolution\.", lambda m: f".conv{int(m[1]) + 1}.", new)
        new = re.sub(r"\.layer\.(\d+)\.normalization\.", lambda m: f".bn{int(m[1]) + 1}.", new)
        new = re.sub(r"^classifier\.1\.", "fc.", new)
        renamed[new] = tensor
    return renamed
