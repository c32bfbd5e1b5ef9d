"""Start a model from pretrained weights: torchvision, timm, local files and earlier runs.

A SOURCE, as ``create_model(name, pretrained=SOURCE)`` and ``resnetlab train --pretrained
SOURCE`` take it, is one of:

``torchvision``, ``torchvision:<WEIGHTS>``
    torchvision's weights for the model (``IMAGENET1K_V1``, ``IMAGENET1K_V2``; default:
    torchvision's ``DEFAULT``), through its weights API into torch's hub cache
    (``$TORCH_HOME/hub/checkpoints``), downloaded on first use with torch's hash check.
``timm``, ``timm:<model>.<tag>``
    timm's weights (``timm:resnet50.a1_in1k``; ``timm`` alone or ``timm:<model>``: timm's
    default tag for the model) through timm and the Hugging Face cache, downloaded on first
    use; needs the ``timm`` extra.
a ``.pth``, ``.pt`` or ``.bin`` file
    a state dict saved with ``torch.save(model.state_dict(), path)`` (also under a
    ``state_dict`` or ``model`` key), read with ``weights_only=True``: a pickle that would
    run code is refused.
a ``.safetensors`` file
    a resnetlab model file, or a bare state dict with torchvision's or timm's keys.
a Hugging Face model's folder (``hf download``), or its weights file
    a timm model's (its ``config.json`` names the model and normalisation), or a
    transformers ResNet's (``microsoft/resnet-50``: ``config.json`` and
    ``preprocessor_config.json``; ``convert.transformers_resnet`` renames its tensors).
a Keras file (``.h5``, ``.keras``)
    the course's ResNet50, or a keras.applications ResNet50/101/152 (or a transfer model on
    one; the network alone, ``include_top=False``, as a backbone), read by the Keras
    converter (``convert.keras``).
a folder
    a resnetlab run folder: its ``best.safetensors``; or a Keras 3 model saved as a folder
    (``model.save("x", zipped=False)``).

Keys are matched by name. The backbone must match exactly (a missing, extra or reshaped
tensor is an error naming the first such key and both shapes); the classifier ``fc`` is
loaded when its shape fits and replaced by the model's freshly initialised one when it
does not (another number of classes).

Weights carry the preprocessing they were trained with, and a model started from them
keeps it: ImageNet's mean and standard deviation for torchvision and timm weights, the
recorded ones for resnetlab files, ``pixels / 255`` (or the file's ``Rescaling``) for the
course's Keras files, Keras's 'caffe' preprocessing for keras.applications ResNets. A bare
state dict of an ImageNet ResNet does not say; ImageNet's statistics are assumed, and the
report says so.
"""

from __future__ import annotations

import collections
import contextlib
import difflib
import functools
import hashlib
import json
import os
import pickle
import re
import socket
import urllib.error
import urllib.parse
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from ..errors import (
    ResnetlabError,
    folder_problem,
    keywords_of_call,
    near_name,
    on_command_line,
    option,
    options,
    path_argument,
)
from ..models.files import (
    EXPORT_KINDS,
    META_KEY,
    ModelMeta,
    case_matches,
    checkpoint_kind,
    cut_short,
    first_nonfinite,
    is_keras_folder,
    model_path_problem,
    model_skeleton,
    other_format,
    read_model_meta,
    save_model,
)
from ..models.registry import create_model, list_models, model_info
from ..options import CROP_FRACTIONS, is_crop_fraction
from ..storage import check_writable, missing_folders, permission_problem, removed_on_failure
from .transformers_resnet import CONFIG as HF_CONFIG
from .transformers_resnet import PREPROCESSOR as HF_PREPROCESSOR
from .transformers_resnet import (
    TransformersResNet,
    has_transformers_names,
    is_transformers_resnet,
    torchvision_names,
    transformers_resnet,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The classifier's keys: ``fc.*`` (ResNet.fc, torchvision's layout) and ``head.*``
# (PreActResNet.head, timm's ResNetV2 layout: ``head.fc``, a 1x1 convolution).
HEAD_PREFIXES = ("fc.", "head.")
# Seconds a download may wait for the server before giving up: without a network a
# connection attempt can otherwise hang for minutes.
NETWORK_TIMEOUT_S = 30.0
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
# Checkpoints named as timm's train.py and PyTorch's ImageNet example save them
# (model_best.pth.tar): torch.save files too, not tar archives.
TORCH_ARCHIVES = (".pth.tar",)
KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")
# Options that change initialisation or the classifier's input, not the trained layers.
_HEAD_OR_INIT_OPTIONS = ("zero_init_residual", "input_size")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")  # DDP, torch.compile, Lightning
NAMED_SOURCES = ("torchvision", "timm")  # each alone, or before a colon: timm:<model>.<tag>
# Each named source's weights named in full, their model with them: the example a source
# that names no model is given.
_NAMED_IN_FULL = {
    "torchvision": "torchvision:ResNet18_Weights.IMAGENET1K_V1",
    "timm": "timm:resnet18.a1_in1k",
}
_SOURCES = (
    "torchvision, torchvision:<WEIGHTS>, timm, timm:<model>.<tag>, a weights file "
    f"({'/'.join((*TORCH_SUFFIXES, '.safetensors', *KERAS_SUFFIXES))}), a Hugging Face "
    "model's folder (timm, or a transformers ResNet) or a run folder"
)


@dataclass
class PretrainedWeights:
    """Weights read from a source, with what the source says about them.

    Attributes:
        source: the source as given (``"torchvision:IMAGENET1K_V2"``, a path...).
        kind: ``torchvision``, ``timm``, ``state-dict``, ``resnetlab``, ``run`` or ``keras``.
        description: one line naming the weights.
        state_dict: the tensors, with the model's key names.
        location: the file they were read from, when there is one.
        sha256: of that file.
        mean, std: the normalisation the weights were trained with, ``None`` when unknown.
        normalisation_note: where ``mean`` and ``std`` come from.
        preprocessing: the rest of the source's recorded preprocessing (resize, crop...).
        model: the registered model the weights were made for, when the source says.
        model_kwargs: that model's options, when the source records them.
        num_classes: outputs of the weights' classifier (0 without one).
        class_names: their names, when the source has them.
        input_size: the image side the weights were trained at, when known.
        resize: how their images met that size: ``crop`` (shorter side, then the centre)
            or ``squash`` (the whole image), when known.
        crop_fraction: the share of the resized side their evaluation kept around the
            centre (``data.decode.resize_plan``: 224 of 256 is 0.875), when known.
    """

    source: str
    kind: str
    description: str
    # Left out of the repr, as class_names (a thousand for ImageNet weights) are: a repr
    # with every tensor ran to 200,000 characters for ResNet-18.
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    location: str | None = None
    sha256: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    normalisation_note: str = ""
    preprocessing: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    model_kwargs: dict[str, Any] | None = None
    num_classes: int | None = None
    class_names: list[str] | None = field(default=None, repr=False)
    input_size: int | None = None
    resize: str | None = None
    crop_fraction: float | None = None

    def provenance(self) -> dict[str, Any]:
        """What a run folder and a model file record about the weights a model started from."""
        return {
            "source": self.source,
            "kind": self.kind,
            "description": self.description,
            "location": self.location,
            "sha256": self.sha256,
        }


@dataclass
class PretrainedReport:
    """What ``load_pretrained`` did: the weights' provenance and the matched keys.

    Attributes:
        weights: ``PretrainedWeights.provenance()`` of the weights.
        model: the model they were loaded into.
        loaded: keys copied from the weights.
        new: model keys the weights did not provide (they keep their initialisation).
        dropped: keys of the weights the model does not use.
        head: ``kept`` (the classifier was loaded), ``replaced`` (its shape differed),
            ``new`` (the weights have none) or ``none`` (the model has none).
        head_note: why the classifier was replaced, for people.
        mean, std: the normalisation a model started from these weights uses, or ``None``
            to use the training data's.
        normalisation_note: where it comes from.
        preprocessing: the source's recorded preprocessing.
        class_names: the names of the kept classifier's outputs, when the weights (or the
            ``class_names`` they were loaded for) name them; None for a new classifier.
        resize: how the weights' images met their input size, when known.
        crop_fraction: the share of the resized side their evaluation kept, when known.
    """

    weights: dict[str, Any]
    model: str
    loaded: list[str]
    new: list[str]
    dropped: list[str]
    head: str
    head_note: str = ""
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    normalisation_note: str = ""
    preprocessing: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] | None = field(default=None, repr=False)
    resize: str | None = None
    crop_fraction: float | None = None

    @property
    def head_is_new(self) -> bool:
        """The classifier starts from scratch (replaced, or absent from the weights)."""
        return self.head in ("replaced", "new")

    def __repr__(self) -> str:  # the key lists run to hundreds of names
        return f"PretrainedReport({self.describe()!r})"

    def describe(self) -> str:
        """One line for people."""
        # Weights and BN statistics, as convert counts a Keras file's: BN's batch counters
        # (in PyTorch's state dicts, never in Keras files) hold no weight.
        count = sum(not _is_counter(k) for k in self.loaded)
        parts = [f"{self.model} from {self.weights['description']}: {count} tensors loaded"]
        if self.head_note:
            parts.append(self.head_note)
        # A new classifier is said once, by the head note, not again in both lists.
        said = {k for k in self.new if _is_head(k)} if self.head_is_new else set()
        if new := [k for k in self.new if k not in said]:  # keep their initialisation
            parts.append(f"initialised here: {_names(new)}")
        if dropped := [k for k in self.dropped if k not in said]:  # the weights' left out
            parts.append(f"not used from the weights: {_names(dropped)}")
        if self.normalisation_note:
            parts.append(f"normalisation: {self.normalisation_note}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": self.weights,
            "model": self.model,
            "loaded": self.loaded,
            "new": self.new,
            "dropped": self.dropped,
            "head": self.head,
            "head_note": self.head_note,
            "mean": list(self.mean) if self.mean is not None else None,
            "std": list(self.std) if self.std is not None else None,
            "normalisation_note": self.normalisation_note,
            "preprocessing": self.preprocessing,
            "resize": self.resize,
            "crop_fraction": self.crop_fraction,
        }


def _names(keys: list[str], shown: int = 4) -> str:
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more


# Resolving a source -------------------------------------------------------------------------


def resolve_pretrained(
    source: str | os.PathLike,
    model: str,
    model_kwargs: dict[str, Any] | None = None,
    *,
    input_size: int | None = None,
) -> PretrainedWeights:
    """Read the weights ``source`` names for the registered model ``model``.

    Args:
        source: see the module docstring.
        model: the registered model the weights are for (which torchvision weights, which
            timm architecture to expect).
        model_kwargs: its options.
        input_size: the side of the images the model will take (default: ``model_kwargs``'),
            for weights that do not record the one they were trained at and cannot load
            without it (the course's Keras model saved with ``save_weights`` at another
            size than 64).

    Raises:
        ResnetlabError: an unknown or missing source, a download that fails (no network),
            a file that is not weights or would run code when unpickled.
    """
    kwargs = dict(model_kwargs or {})
    what = "pretrained (torchvision, timm, timm:<model>.<tag>, a weights file or a run folder)"
    text = os.fspath(path_argument(source, what, "one or leave it out"))
    if text == "torchvision" or text.startswith("torchvision:"):
        return _from_torchvision(text, model, kwargs)
    if text == "timm" or text.startswith("timm:"):
        return _from_timm(text, model, kwargs)
    return _from_path(Path(text).expanduser(), text, input_size or kwargs.get("input_size"))


def imagenet_class_names() -> list[str]:
    """ImageNet's 1,000 class names in the order of its classifiers' outputs: torchvision's,
    the synsets' order, which keras.applications' ``decode_predictions`` follows too."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def _from_torchvision(source: str, model: str, kwargs: dict[str, Any]) -> PretrainedWeights:
    import torchvision
    from torchvision.models import get_model_weights

    served = set(torchvision.models.list_models(module=torchvision.models))
    _check_served(source, model, kwargs, "torchvision", served)
    if problem := _model_for_weights(source):
        raise ResnetlabError(problem)
    weights_enum = get_model_weights(model)
    name = source.partition(":")[2]
    if name.startswith(weights_enum.__name__ + "."):
        name = name[len(weights_enum.__name__) + 1 :]
    choices = ", ".join(w.name for w in weights_enum)
    if not name or name == "DEFAULT":
        weights = weights_enum.DEFAULT
    elif name in weights_enum.__members__:
        weights = weights_enum[name]
    else:
        raise ResnetlabError(
            f"torchvision has no weights {name!r} for {model}; choose {choices} "
            f"({option('pretrained', f'torchvision:{weights_enum.DEFAULT.name}')})"
        )
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    named = f"torchvision's {weights_enum.__name__}.{weights.name}"
    # torch checks the hash of a download, not of a file already in its cache (a copy the
    # user made, or one cut short): checked here, as torch would, before it is loaded.
    sha256 = _cached_hash(cached, weights.url, named) if cached.is_file() else None
    try:
        with _network_timeout():
            state = weights.get_state_dict(progress=True, check_hash=True, weights_only=True)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        reason = getattr(e, "reason", None) or e
        raise ResnetlabError(
            f"cannot download {named} from {weights.url} ({reason}); without a network, copy "
            f"that file to {cached} or pass a local file: {option('pretrained', 'FILE.pth')}"
        ) from None
    except OSError as e:
        if sha256 is not None:
            raise _bad_cached_file(cached, weights.url, named, type(e).__name__) from None
        # Downloading it: the cache held no file to blame (a full disk, an unwritable folder).
        raise ResnetlabError(
            f"cannot save {named} to {cached} ({e.strerror or e}); free space there, or set "
            "TORCH_HOME to a folder you can write to"
        ) from None
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        raise _bad_cached_file(cached, weights.url, named, type(e).__name__) from None
    transform = weights.transforms()
    crop = int(transform.crop_size[0])
    return PretrainedWeights(
        source=source,
        kind="torchvision",
        description=f"torchvision {weights_enum.__name__}.{weights.name}",
        state_dict=state,
        location=str(cached),
        sha256=sha256 or (file_sha256(cached) if cached.is_file() else None),  # downloaded
        mean=tuple(transform.mean),
        std=tuple(transform.std),
        normalisation_note="ImageNet mean/std (the weights')",
        preprocessing={
            "resize": int(transform.resize_size[0]),
            "crop": crop,
            "interpolation": transform.interpolation.value,
            "recipe": weights.meta.get("recipe"),
        },
        model=model,
        num_classes=len(weights.meta["categories"]),
        class_names=list(weights.meta["categories"]),
        input_size=crop,
        resize="crop",  # the shorter side to resize_size, then the centre
        crop_fraction=crop / int(transform.resize_size[0]),
    )


def _cached_hash(cached: Path, url: str, named: str) -> str:
    """The sha256 of torch's cached copy of ``url``, which must start with the hex digits
    its name ends in (``resnet18-f37072fd.pth``), as torch.hub checks a download."""
    try:
        digest = file_sha256(cached)
    except OSError as e:
        raise _bad_cached_file(cached, url, named, type(e).__name__) from None
    found = torch.hub.HASH_REGEX.search(cached.name)
    if found and not digest.startswith(found.group(1)):
        why = f"its sha256 starts {digest[: len(found.group(1))]}, its name says {found.group(1)}"
        raise _bad_cached_file(cached, url, named, why)
    return digest


def _bad_cached_file(cached: Path, url: str, named: str, why: str) -> ResnetlabError:
    return ResnetlabError(
        f"the cached file {cached} is not {named} ({why}: another file, or one cut short); "
        f"delete it and copy it again from {url} (with a network, deleting it is enough)"
    )


def _from_timm(source: str, model: str, kwargs: dict[str, Any]) -> PretrainedWeights:
    tag = source.partition(":")[2] or model  # timm's default tag for the model
    try:
        import timm
    except ImportError:
        raise ResnetlabError(
            f"{option('pretrained', source)} needs timm: pip install 'resnetlab[timm]'"
        ) from None
    architecture = tag.split(".", 1)[0]
    if architecture != model:
        raise ResnetlabError(
            f"{source} holds timm's {architecture or '(nothing)'}, not {model}; timm's "
            f"{model} weights are timm:{model}.<tag> (timm's resnet18..152 are torchvision's "
            f"architecture)"
        )
    served = {name.split(".", 1)[0] for name in timm.list_pretrained()}
    _check_served(source, model, kwargs, "timm", served)
    known = timm.list_pretrained(f"{architecture}.*")
    if "." in tag and tag not in known:
        tags = ", ".join(t.split(".", 1)[1] for t in known) or "none"
        raise ResnetlabError(f"timm has no pretrained weights {tag!r}; its {model} tags: {tags}")
    try:
        with _network_timeout(), _hub_offline_unless_reachable():
            net = timm.create_model(tag, pretrained=True)
    except Exception as e:  # timm and huggingface_hub raise many kinds; all mean "not fetched"
        first = _first_words(e)
        name, fix = _timm_offline_fix(tag)
        if (cached := _timm_cached_file(tag)) is not None:
            # Found, not read: fetching again finds the same file (the hub's copy has not
            # changed), even with its snapshot link deleted (the blob it points to is kept).
            folder = next((p for p in cached.parents if p.name.startswith("models--")), cached)
            raise ResnetlabError(
                f"the cached file {cached} of timm's {name} cannot be read "
                f"({type(e).__name__}: {first}): a copy or download cut short or "
                f"damaged; delete {folder} (with a network, it is downloaded again)"
                + fix.replace("; without a network,", ", and without a network", 1)
            ) from None
        raise ResnetlabError(
            f"cannot fetch timm's {name} ({type(e).__name__}: {first}){fix}"
        ) from None
    cfg = net.pretrained_cfg
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    crop_pct = float(cfg.get("crop_pct", 0.875))
    return PretrainedWeights(
        source=source,
        kind="timm",
        description=f"timm {net.pretrained_cfg.get('architecture', model)}."
        f"{cfg.get('tag') or 'default'}",
        state_dict=net.state_dict(),
        location=cfg.get("hf_hub_id") or cfg.get("url"),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        normalisation_note="the weights' mean/std (timm's pretrained config)",
        preprocessing={
            "resize": int(size / crop_pct),  # timm's eval transform: resize, then crop
            "crop": size,
            "crop_pct": crop_pct,
            "interpolation": cfg.get("interpolation"),
        },
        model=model,
        num_classes=int(cfg.get("num_classes", 1000)),
        input_size=size,
        resize="crop",
        crop_fraction=crop_pct,
    )


def _first_words(e: Exception, most: int = 200) -> str:
    """The first line of ``e``'s message, at most ``most`` characters, cut after a whole
    sentence where one ends in them: Hugging Face's offline error runs past 250, and cut
    at a count it read "... or make sure your Internet connection"."""
    text = str(e).strip()
    first = text.splitlines()[0] if text else type(e).__name__
    if len(first) <= most:
        return first
    end = first.rfind(". ", 0, most)
    return first[: end + 1] if end > 0 else first[:most].rstrip() + "..."


def _timm_offline_fix(tag: str) -> tuple[str, str]:
    """timm's full name for ``tag`` (its default tag for a bare architecture), and where
    its file is for a machine without a network: the download address, the file to pass
    and the Hugging Face cache to copy into (empty where timm names no file)."""
    from huggingface_hub import constants
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(tag)
    hub_id = getattr(cfg, "hf_hub_id", None)
    beside = ""
    if hub_id:
        name = hub_id.split("/", 1)[-1]
        file = getattr(cfg, "hf_hub_filename", None) or "model.safetensors"
        address = f"https://huggingface.co/{hub_id}/resolve/main/{file}"
        # Without config.json the file brings no normalisation, input size or class names,
        # and ImageNet's mean/std would be assumed (resnetv2_50.a1h_in1k's mean is 0.5).
        beside = f" and https://huggingface.co/{hub_id}/resolve/main/config.json into one folder"
    elif cfg is not None and getattr(cfg, "url", None):
        name, address = tag, cfg.url
        file = address.rsplit("/", 1)[-1]
    else:
        return tag, ""
    return name, (
        f"; without a network, download {address}{beside} on a machine that has one and pass it "
        f"({option('pretrained', file)}), or copy that machine's Hugging Face cache to "
        f"{constants.HF_HUB_CACHE}"
    )


def _timm_cached_file(tag: str) -> Path | None:
    """The Hugging Face cache's copy of the weights file of timm's ``tag``, where it has one."""
    from huggingface_hub import try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(tag)
    hub_id = getattr(cfg, "hf_hub_id", None)
    if not hub_id:
        return None
    file = getattr(cfg, "hf_hub_filename", None) or "model.safetensors"
    found = try_to_load_from_cache(hub_id, file)
    return Path(found) if isinstance(found, str) and os.path.isfile(found) else None


def _check_served(
    source: str, model: str, kwargs: dict[str, Any], whom: str, served: set[str]
) -> None:
    """``model`` must be one that ``whom`` (torchvision, timm) has weights for under that
    name: those are the architectures whose keys resnetlab keeps."""
    if model not in served:
        ours = ", ".join(name for name in list_models() if name in served)
        raise ResnetlabError(
            f"{whom} has no weights for {model}; {source} is for {ours}: name one with "
            f"{option('model', text='MODEL')} (other models: a file or a run folder)"
        )
    if kwargs.get("stride_in_1x1"):
        raise ResnetlabError(
            f"{whom}'s {model} puts the stride on the 3x3 conv (v1.5); drop stride_in_1x1 "
            f"to use its weights"
        )


def _model_for_weights(source: str) -> str | None:
    """The fix for ``torchvision:resnet18``, a model named where torchvision's weights go
    (as ``timm:resnet18`` names one): its default weights, named either way."""
    whom, _, name = source.partition(":")
    if whom != "torchvision" or name.lower() not in list_models():
        return None
    import torchvision
    from torchvision.models import get_model_weights

    model = name.lower()
    if model not in torchvision.models.list_models(module=torchvision.models):
        return None
    weights = get_model_weights(model)
    full = f"torchvision:{weights.__name__}.{weights.DEFAULT.name}"
    both = options(option("model", model), option("pretrained", "torchvision"))
    return (
        f"{option('pretrained', source)} names a model, not torchvision's weights: give "
        f"{both} (its default weights), or {option('pretrained', full)}"
    )


def check_names_model(source: str | os.PathLike | None) -> None:
    """For a run with no model named: ``torchvision`` or ``timm`` alone (or
    ``torchvision:IMAGENET1K_V1``) names none, and the run would try train's default,
    resnet20, with an error naming a model the user never asked for."""
    text = os.fspath(source) if isinstance(source, (str, os.PathLike)) else ""
    if source is True:  # as create_model takes it: torchvision's weights
        text = "torchvision"
    if problem := _model_for_weights(text):
        raise ResnetlabError(problem)
    whom = text.partition(":")[0]
    if whom in NAMED_SOURCES and declared_model(text) is None:
        example = _NAMED_IN_FULL[whom]
        raise ResnetlabError(
            f"{option('pretrained', source)} does not say which model its weights are for: "
            f"give {option('model')} (e.g. {option('model', 'resnet18')}), or name the weights "
            f"in full ({option('pretrained', example)})"
        )


def declared_model(
    source: str | os.PathLike, *, by_shapes: bool = True
) -> tuple[str, dict[str, Any]] | None:
    """The model (and its options) that a run folder, a resnetlab model file, a Keras file
    (the course's ``resnet50_keras``), a timm model's weights with their ``config.json``
    or a named source (``timm:resnet50.a1_in1k``,
    ``torchvision:ResNet18_Weights.IMAGENET1K_V1``) says its weights are for; for a bare
    state dict, the one model its tensors fit (``by_shapes``; not asked where a model is
    named: finding it builds every registered model on the meta device, seconds); None for
    other sources (``torchvision`` alone), and for a path that is not one of them (the run
    reports that when it reads the weights)."""
    text = os.fspath(source)
    if text.startswith("timm:"):
        architecture = text.partition(":")[2].split(".", 1)[0]
        return (architecture, {}) if architecture in list_models() else None
    if text.startswith("torchvision:"):
        return _torchvision_model(text.partition(":")[2].split(".", 1)[0])
    path = Path(text).expanduser()
    path = _hub_folder_weights(path) or path
    from .keras import keras_model_of

    if (path.suffix.lower() in KERAS_SUFFIXES and path.is_file()) or is_keras_folder(path):
        return keras_model_of(path)
    meta = recorded_meta(path)
    torch_file = path.name.lower().endswith(TORCH_ARCHIVES)
    if meta is None and (torch_file or path.suffix.lower() in (".safetensors", *TORCH_SUFFIXES)):
        if timm := timm_config(path):
            return (timm.architecture, {}) if timm.architecture in list_models() else None
        if is_transformers_resnet(path) and has_transformers_names(_state_shapes(path) or {}):
            with contextlib.suppress(ResnetlabError):  # (said on reading the weights)
                hf = transformers_resnet(path)
                return (hf.model, dict(hf.model_kwargs))
            return None
        return _model_that_fits(path) if by_shapes else None
    if meta is None or meta.model not in list_models():
        return None  # reading the weights names the file and the model this version lacks
    return meta.model, dict(meta.model_kwargs)


def _model_that_fits(path: Path) -> tuple[str, dict[str, Any]] | None:
    """The model a bare state dict (``torch.save(model.state_dict())``, or its safetensors
    twin) is for: the one registered model, with default options, whose backbone its
    tensors fit by name and shape (torchvision's resnet18 weights fit resnet18 alone). None
    where none or several fit, or where the file cannot be read for its shapes (reading the
    weights then says why)."""
    shapes = _state_shapes(path)
    fits = _models_fitting(shapes) if shapes else []
    return (fits[0], {}) if len(fits) == 1 else None


def _state_shapes(path: Path) -> dict[str, torch.Tensor] | None:
    """The tensors of the state dict in ``path`` as shapes only (the safetensors header;
    torch.save's archive memory-mapped, its data unread), or None where that fails: a
    torch.save file from before torch 1.6, a damaged file, one holding no state dict; and
    without a look where ``path`` is no plain file: a named pipe's bytes, read here, would
    be gone for the weights' read (and one without a writer waits for ever)."""
    if not path.is_file():
        return None
    try:
        if path.suffix.lower() == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                names = f.keys()
                shapes = {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in names}
            return _unwrap_keys(shapes)
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return _unwrap_keys(_find_state_dict(obj, path))
    except Exception:  # any reason: the weights are read in full later, which names it
        return None


def recorded_meta(source: str | os.PathLike) -> ModelMeta | None:
    """The metadata of the resnetlab model file that ``source`` names (a run folder's
    ``best.safetensors``, or the file); None for any other source or a file that cannot be
    read (the run reports that when it reads the weights)."""
    path = Path(source).expanduser()
    file = path / "best.safetensors" if path.is_dir() else path
    if file.suffix.lower() != ".safetensors" or not file.is_file():
        return None
    try:
        with safe_open(str(file), framework="pt") as f:
            if META_KEY not in (f.metadata() or {}):
                return None
        return read_model_meta(file)
    except (SafetensorError, OSError, ValueError, ResnetlabError):
        return None


def _torchvision_model(weights_enum: str) -> tuple[str, dict[str, Any]] | None:
    """The model here whose torchvision weights enum is ``weights_enum`` (ResNet18_Weights)."""
    import torchvision
    from torchvision.models import get_model_weights

    for name in torchvision.models.list_models(module=torchvision.models):
        if name in list_models() and get_model_weights(name).__name__ == weights_enum:
            return name, {}
    return None


def _from_path(path: Path, source: str, input_size: int | None = None) -> PretrainedWeights:
    from .keras import tensorflow_format_problem

    if problem := tensorflow_format_problem(path):
        raise ResnetlabError(problem)
    if is_keras_folder(path):  # model.save(folder, zipped=False)
        return _from_keras(path, source, input_size)
    if not path.exists():
        raise ResnetlabError(_not_found_problem(path, source))
    if (hub_weights := _hub_folder_weights(path)) is not None:
        return _from_path(hub_weights, source, input_size)
    if path.is_dir():
        return _from_model_file(_run_folder_model(path), source, kind="run")
    if (kind := other_format(path)) in EXPORT_KINDS:
        raise ResnetlabError(
            f"{path} is {kind}, for inference only (every BatchNorm folded into its "
            f"convolution); {option('pretrained')} takes the .safetensors model file it was "
            "exported from, or its run folder"
        )
    if kind == checkpoint_kind():  # its weights, without the normalisation they were trained with
        raise ResnetlabError(
            f"{path} is {kind}; {option('pretrained')} takes its run folder, {path.parent}, whose "
            f"model files record the model, its classes and its normalisation"
        )
    suffix = path.suffix.lower()
    if path.name.lower().endswith(TORCH_ARCHIVES):
        suffix = ".pth"
    if suffix == ".safetensors":
        return _with_hub_config(_from_safetensors(path, source), path)
    if suffix in TORCH_SUFFIXES:
        return _with_hub_config(_from_torch_file(path, source), path)
    if suffix in KERAS_SUFFIXES:
        return _from_keras(path, source, input_size)
    raise ResnetlabError(_not_weights_problem(path, suffix))


def _not_found_problem(path: Path, source: str) -> str:
    """What a SOURCE that is no source's name and no file may have meant: a misspelt name
    (torchvison, timm:..., TORCHVISION in another letter case: the names after the prefix,
    IMAGENET1K_V1 or a1_in1k, are matched as written) reads as a path; a misspelt path has a
    near name beside it (best.safetensor for best.safetensors)."""
    name, colon, rest = source.partition(":")
    named = difflib.get_close_matches(name.lower(), NAMED_SOURCES, n=1, cutoff=0.8)
    if source.lower() == "imagenet":  # Keras's weights="imagenet"
        hint = (
            f"; ImageNet weights are torchvision's ({option('pretrained', 'torchvision')}) "
            f"or timm's ({option('pretrained', 'timm')}), for the models they have "
            f"weights for"
        )
    elif named and os.sep not in source:
        meant = f"{named[0]}{colon}{rest}"
        # the fix of what it meant where that is refused too (torchvision:resnet18)
        hint = f"; {fix}" if (fix := _model_for_weights(meant)) else f"; did you mean {meant}?"
    elif near := near_name(path):
        hint = f"; did you mean {near}?"
    else:
        hint = f" (SOURCE is {_SOURCES})"
    return f"pretrained weights not found: {path}{hint}"


def _run_folder_model(path: Path) -> Path:
    """The best model of the run folder ``path``, refused in one line for a folder that is
    not one: the folder of the runs, a folder of weights files, a run before its first
    epoch has finished."""
    best = path / "best.safetensors"
    if best.is_file():
        return best
    runs = sorted(path.glob("*/best.safetensors"), key=lambda f: f.stat().st_mtime)
    if runs:  # the folder of the runs (runs/), not one of them (runs/<run>)
        raise ResnetlabError(
            f"{path} is a folder of {len(runs)} run folder{'s' * (len(runs) > 1)}, "
            "not one run: "
            f"{option('pretrained')} takes one of them, e.g. the newest, "
            f"{runs[-1].parent}"
        )
    suffixes = (".safetensors", *TORCH_SUFFIXES, *KERAS_SUFFIXES)
    files = sorted(f for f in path.iterdir() if f.suffix.lower() in suffixes)
    if files:  # a Hugging Face model's folder (model.safetensors, config.json)
        raise ResnetlabError(
            f"{path} is a folder without best.safetensors, so not a run folder; "
            f"for the weights file in it, give that file: {option('pretrained', files[0])}"
        )
    raise ResnetlabError(
        f"{path} is a folder without best.safetensors (a run folder has one once "
        f"its first epoch has finished); {option('pretrained')} takes {_SOURCES}"
    )


def _not_weights_problem(path: Path, suffix: str) -> str:
    """What a file of no weights format (``suffix``) is: one of a run's other files, given
    for the run, or a file of a kind no source reads."""
    run = path.parent
    # A run's files from its first epoch (best.safetensors) or step (engine's CHECKPOINT_NAME,
    # which this module, imported by the engine, cannot import).
    kept = ("best.safetensors", "checkpoint.pt")
    if (run / "config.json").is_file() and any((run / name).is_file() for name in kept):
        # A run's config.json, summary.json, metrics.csv...
        return (
            f"{path} is a file of the run in {run}, not weights; "
            f"{option('pretrained')} takes the run folder: {option('pretrained', run)}"
        )
    return (
        f"{path}: unknown kind of weights file {suffix or '(no suffix)'}; give a "
        f"{', '.join((*TORCH_SUFFIXES, '.safetensors', *KERAS_SUFFIXES))} file or a run folder"
    )


TIMM_CONFIG = "config.json"  # beside the weights of a timm model from Hugging Face
HUB_WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # the weights' names there


def _hub_folder_weights(path: Path) -> Path | None:
    """The weights file in ``path`` where it is a model's folder as Hugging Face keeps it
    (``hf download``): ``model.safetensors`` or ``pytorch_model.bin`` beside the
    ``config.json`` of a timm model or a transformers ResNet (or the model's folder in the
    Hugging Face cache, ``models--microsoft--resnet-50``: its snapshot that ``refs/main``
    names, or its only one); None for any other path."""
    if not path.is_dir():
        return None
    if (path / "snapshots").is_dir() and (snapshot := _cache_snapshot(path)) is not None:
        path = snapshot
    return next(
        (
            path / name
            for name in HUB_WEIGHTS
            if (path / name).is_file()
            and (timm_config(path / name) or is_transformers_resnet(path / name))
        ),
        None,
    )


def _cache_snapshot(path: Path) -> Path | None:
    """The snapshot of a model's folder in the Hugging Face cache that its ``refs/main``
    names (the one ``hf download`` and ``from_pretrained`` read), else its only one."""
    with contextlib.suppress(OSError, ValueError):
        named = path / "snapshots" / (path / "refs" / "main").read_text().strip()
        if named.is_dir():
            return named
    with contextlib.suppress(OSError):
        snapshots = [p for p in (path / "snapshots").iterdir() if p.is_dir()]
        if len(snapshots) == 1:
            return snapshots[0]
    return None


@dataclass(frozen=True)
class TimmConfig:
    """What a timm model's ``config.json`` says of its weights."""

    architecture: str
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: int
    crop_pct: float
    interpolation: str | None
    class_names: list[str] | None


def timm_config(weights_file: Path) -> TimmConfig | None:
    """The ``config.json`` beside ``weights_file`` where it is a timm model's, as Hugging
    Face's timm models keep one beside ``model.safetensors`` (``architecture``,
    ``num_classes``, ``pretrained_cfg`` with ``mean``, ``std`` and ``input_size``); None
    where there is none, or another kind of file of that name."""
    try:
        config = json.loads((weights_file.parent / TIMM_CONFIG).read_text(encoding="utf-8"))
        cfg = config["pretrained_cfg"]
        mean = tuple(float(v) for v in cfg["mean"])
        std = tuple(float(v) for v in cfg["std"])
        size = int(cfg["input_size"][-1])
        names = config.get("label_names")
        found = TimmConfig(
            architecture=str(config["architecture"]),
            num_classes=int(config.get("num_classes", cfg.get("num_classes", 0))),
            mean=mean,
            std=std,
            input_size=size,
            crop_pct=float(cfg.get("crop_pct", 0.875)),
            interpolation=cfg.get("interpolation"),
            class_names=[str(n) for n in names] if isinstance(names, list) else None,
        )
    except (OSError, ValueError, TypeError, KeyError, IndexError):
        return None
    if len(found.mean) != 3 or len(found.std) != 3 or min(found.std) <= 0 or size < 1:
        return None
    if not is_crop_fraction(found.crop_pct):  # what its images' centre keeps: unknown
        raise ResnetlabError(
            f"{weights_file.parent / TIMM_CONFIG}: pretrained_cfg's crop_pct is "
            f"{found.crop_pct:g}, where it must be {CROP_FRACTIONS}; correct it (timm's "
            "default is 0.875)"
        )
    return found


def _with_hub_config(weights: PretrainedWeights, path: Path) -> PretrainedWeights:
    """A bare state dict with what the config files of a Hugging Face model beside it say
    (timm's or transformers'): the model, the normalisation, the input size and the classes;
    a transformers ResNet's tensors under this project's names."""
    if weights.kind != "state-dict":
        return weights
    if has_transformers_names(weights.state_dict):
        if (hf := transformers_resnet(path)) is None:  # its names are transformers' own
            raise ResnetlabError(
                f"{path} holds a transformers ResNet's tensors (embedder, encoder.stages...) "
                f"without its {HF_CONFIG} beside it, which says which ResNet they are: put "
                f"the model's {HF_CONFIG} and {HF_PREPROCESSOR} beside it, or give the folder "
                "hf download leaves (hf download microsoft/resnet-50 --local-dir resnet-50)"
            )
        return _with_transformers_config(weights, path, hf)
    config = timm_config(path)
    if config is None:
        return weights
    names = config.class_names
    return replace(
        weights,
        description=f"{path.name} (timm {config.architecture}, with its {TIMM_CONFIG})",
        mean=config.mean,
        std=config.std,
        normalisation_note=f"the weights' mean/std (timm's {TIMM_CONFIG} beside them)",
        preprocessing={
            "resize": int(config.input_size / config.crop_pct),
            "crop": config.input_size,
            "crop_pct": config.crop_pct,
            "interpolation": config.interpolation,
        },
        model=config.architecture if config.architecture in list_models() else None,
        num_classes=config.num_classes,
        class_names=names if names and len(names) == config.num_classes else None,
        input_size=config.input_size,
        resize="crop",
        crop_fraction=config.crop_pct,
    )


def _with_transformers_config(
    weights: PretrainedWeights, path: Path, hf: TransformersResNet
) -> PretrainedWeights:
    """``weights``, a transformers ResNet's, under this project's names, with what its
    config files say (``hf``)."""
    state = torchvision_names(weights.state_dict)
    head = state.get("fc.weight")
    num_classes = int(head.shape[0]) if head is not None else 0
    names = hf.class_names if hf.class_names and len(hf.class_names) == num_classes else None
    preprocessing = {}
    if hf.input_size is not None:
        crop_pct = hf.crop_pct or 1.0
        preprocessing = {
            "resize": int(hf.input_size / crop_pct),
            "crop": hf.input_size,
            "crop_pct": crop_pct,
            "interpolation": hf.interpolation,
        }
    return replace(
        weights,
        description=f"{path.name} (transformers {hf.architecture}, with its {HF_CONFIG})",
        state_dict=state,
        mean=hf.mean,
        std=hf.std,
        normalisation_note=(
            f"the weights' mean/std (transformers' {HF_PREPROCESSOR} beside them)"
            if hf.mean is not None
            else ""
        ),
        preprocessing=preprocessing,
        model=hf.model,
        model_kwargs=dict(hf.model_kwargs),
        num_classes=num_classes,
        class_names=names,
        input_size=hf.input_size,
        resize=hf.resize,
        crop_fraction=hf.crop_pct,
    )


def _from_safetensors(path: Path, source: str) -> PretrainedWeights:
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        # (safetensors says "No such file or directory" of a file it may not read)
        problem = (
            permission_problem(path)
            or cut_short(path)
            or (
                f"{path} is not a readable safetensors file ({e}); it is damaged: copy or "
                "download it again"
            )
        )
        raise ResnetlabError(problem) from None
    if META_KEY in metadata:
        return _from_model_file(path, source, kind="resnetlab")
    return PretrainedWeights(
        source=source,
        kind="state-dict",
        description=path.name,
        state_dict=_unwrap_keys(load_file(str(path))),
        location=str(path),
        sha256=file_sha256(path),
    )


def _from_model_file(path: Path, source: str, kind: str) -> PretrainedWeights:
    meta = read_model_meta(path)
    model_skeleton(path, meta)  # a model or option this version lacks: named with the file
    where = f"the run {path.parent.name}" if kind == "run" else path.name
    return PretrainedWeights(
        source=source,
        kind=kind,
        description=f"{where} ({meta.model}, {meta.num_classes} classes)",
        state_dict=load_file(str(path)),
        location=str(path),
        sha256=file_sha256(path),
        mean=meta.mean,
        std=meta.std,
        normalisation_note=f"the model file's mean/std {_triple(meta.mean)}/{_triple(meta.std)}",
        preprocessing={"input_size": meta.input_size},
        model=meta.model,
        model_kwargs=dict(meta.model_kwargs),
        num_classes=meta.num_classes,
        class_names=meta.class_names,
        input_size=meta.input_size,
        resize=meta.resize,
        crop_fraction=meta.crop_fraction,
    )


def _from_torch_file(path: Path, source: str) -> PretrainedWeights:
    with open(path, "rb") as f:
        # torch.save writes a zip archive, or before torch 1.6 a pickle (PROTO opcode 0x80).
        archive = zipfile.is_zipfile(f)
        if not (archive or (f.seek(0) == 0 and f.read(1) == b"\x80")):
            raise ResnetlabError(
                f"{path} is not a PyTorch file, or is cut short (torch.save writes a zip archive)"
            )
    if archive and (damaged := _damaged_member(path)):
        raise ResnetlabError(
            f"{path} is damaged: its entry {damaged} fails the checksum the file records for "
            "it (a copy or download gone wrong); copy it again"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch names what it would not unpickle: "Unsupported global: GLOBAL argparse.Namespace"
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        held = f" ({found.group(1)})" if found else ""
        raise ResnetlabError(
            f"{path} was refused: it holds more than tensors{held}, and unpickling it could "
            "run code; if you trust the file, save its weights alone and give that file: "
            f"torch.save(torch.load({os.fspath(path)!r}, weights_only=False).state_dict(), "
            "'weights.pth') for a model saved whole, with ['model'] or ['state_dict'] in "
            "place of .state_dict() for a training checkpoint"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise ResnetlabError(
            f"{path} is not a readable PyTorch file ({type(e).__name__}: {e})"
        ) from None
    return PretrainedWeights(
        source=source,
        kind="state-dict",
        description=path.name,
        state_dict=_unwrap_keys(_find_state_dict(obj, path)),
        location=str(path),
        sha256=file_sha256(path),
    )


def _damaged_member(path: Path) -> str | None:
    """The first member of a torch.save zip archive whose bytes fail the CRC-32 stored
    beside them: torch.load does not check it, and loads bytes changed in a copy or a
    download as weights (a file cut short fails earlier: its archive does not open)."""
    unopened = (zipfile.BadZipFile, OSError, EOFError)  # torch.load's to report, naming the file
    with contextlib.suppress(*unopened), zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            try:
                with archive.open(info) as member:  # zipfile checks the CRC at the end
                    collections.deque(iter(functools.partial(member.read, 1 << 20), b""), 0)
            except (zipfile.BadZipFile, zlib.error):  # a CRC, or compressed bytes, wrong
                return info.filename
    return None


def _find_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state dict in what ``torch.save`` wrote: itself, or under a usual key."""
    if _is_state_dict(obj):
        return obj
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if _is_state_dict(obj.get(key)):
                return obj[key]
    raise ResnetlabError(
        f"{path} holds no state dict (a dict of tensors, or one under 'state_dict' or "
        f"'model'); save it with torch.save(model.state_dict(), path)"
    )


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _unwrap_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys without the prefix DDP, torch.compile or Lightning add when every key has it."""
    for prefix in _WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _from_keras(path: Path, source: str, input_size: int | None) -> PretrainedWeights:
    from .keras import read_keras_model

    model, report = read_keras_model(path, unrecorded_input_size=input_size, backbone=True)
    state_dict = model.state_dict()
    if not report.num_classes:  # the network alone (include_top=False): no classifier
        state_dict = {k: v for k, v in state_dict.items() if not _is_head(k)}
    # A keras.applications file without an architecture does not say its size (224 is
    # only the converter's default); the course's classifier always does.
    size = report.file_input_size if report.network is not None else report.input_size
    return PretrainedWeights(
        source=source,
        kind="keras",
        description=f"{path.name} ({report.layout}, "
        + (f"{report.num_classes} classes)" if report.num_classes else "no classifier)"),
        state_dict=state_dict,
        location=str(path),
        sha256=file_sha256(path / "model.weights.h5" if path.is_dir() else path),
        mean=report.mean,
        std=report.std,
        normalisation_note=report.normalisation_note,
        preprocessing={"input_size": size} if size else {},
        model=report.model,
        model_kwargs=report.model_kwargs,
        num_classes=report.num_classes,
        input_size=size,
    )


@contextmanager
def _network_timeout(seconds: float = NETWORK_TIMEOUT_S) -> Iterator[None]:
    """Sockets opened inside give up after ``seconds`` without an answer, instead of never."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


@contextmanager
def _hub_offline_unless_reachable(seconds: float = 3.0) -> Iterator[None]:
    """Hugging Face's offline mode inside, where its server does not answer within
    ``seconds``: weights in its cache load, others fail at once, instead of after a minute
    of retried requests."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:  # asked for (HF_HUB_OFFLINE=1): nothing to find out
        yield
        return
    host = urllib.parse.urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=seconds).close()
        reachable = True
    except OSError:
        reachable = False
    constants.HF_HUB_OFFLINE = not reachable
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = False


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _triple(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"


# Loading into a model -----------------------------------------------------------------------


def load_pretrained(
    model: nn.Module,
    source: str | os.PathLike | PretrainedWeights,
    *,
    class_names: list[str] | None = None,
) -> PretrainedReport:
    """Load pretrained weights into ``model`` (made by ``create_model``), in place.

    The backbone must match the weights key for key and shape for shape. The classifier
    is loaded when its shape fits, and otherwise keeps the model's own initialisation
    (the report says it was replaced, and why). Nothing is changed unless everything fits.

    When both the weights and ``class_names`` name the classes, the classifier is loaded
    only for the same classes: its rows are put in ``class_names``' order (an output
    means the same class whatever order the data lists them in), and a classifier for
    other classes is replaced.

    Args:
        model: the model to start.
        source: a SOURCE (see the module docstring) or weights already read.
        class_names: the classes the model is for, in the order of its outputs.

    Returns:
        What was loaded, new and dropped; also set as ``model.pretrained``.

    Raises:
        ResnetlabError: the source cannot be read, or holds another architecture: the
            message names the first key that differs and both shapes.
    """
    name = getattr(model, "model_name", None)
    if name is None:
        raise ResnetlabError("load_pretrained needs a model made by resnetlab.create_model")
    kwargs = dict(getattr(model, "model_kwargs", {}))
    weights = (
        source
        if isinstance(source, PretrainedWeights)
        else resolve_pretrained(source, name, kwargs)
    )
    target = model.state_dict()
    _check_declared_model(weights, name, kwargs)  # first: it names the model they are for
    loaded, new, dropped = _match(target, weights, name)
    head, head_note = _head_status(target, weights, loaded)
    rows = None
    if head == "kept":
        rows, head_note = _class_rows(weights.class_names, class_names)
        if rows == []:  # the weights' classifier is for other classes
            heads = [k for k in loaded if _is_head(k)]
            loaded = [k for k in loaded if not _is_head(k)]
            new, dropped, head = new + heads, dropped + heads, "replaced"
    with torch.no_grad():
        for key in loaded:
            tensor = weights.state_dict[key]
            if rows and _is_head(key):
                tensor = tensor[rows]
            target[key].copy_(tensor)
    mean, std, note = weights_normalisation(weights, name)
    report = PretrainedReport(
        weights=weights.provenance(),
        model=name,
        loaded=loaded,
        new=new,
        dropped=dropped,
        head=head,
        head_note=head_note,
        mean=mean,
        std=std,
        normalisation_note=note,
        # With the size they were trained at, which a model saved from them keeps.
        preprocessing={
            **weights.preprocessing,
            **({"input_size": weights.input_size} if weights.input_size else {}),
        },
        class_names=_output_names(head, rows, weights.class_names, class_names),
        resize=weights.resize,
        crop_fraction=weights.crop_fraction,
    )
    model.pretrained = report
    return report


def check_pretrained(
    weights: PretrainedWeights, name: str, kwargs: dict[str, Any], *, said: str | None = None
) -> None:
    """Raise as ``load_pretrained`` would for a ``name`` model, without making its tensors
    (the model is built on the meta device): a mismatch shows before any data is read.
    ``said``: how the mismatch names the model, where not as ``name`` (train's "the default
    model, resnet20", which the user may not know was chosen)."""
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    _check_declared_model(weights, name, kwargs)  # first: it names the model they are for
    _match(model.state_dict(), weights, name, said)


@contextmanager
def writing_model_file(
    dst: str | os.PathLike,
    default_name: str,
    source: str | os.PathLike | None = None,
    what: str = "the weights file",
) -> Iterator[Path]:
    """``dst``, the model file a conversion writes, checked before the source is read
    (which takes a while): a path that can be written, and not the ``source`` file itself
    (``what``) nor an export's or a run's file (a folder given gets ``default_name`` in
    it); the folders made for it are removed again if the conversion fails."""
    dst = path_argument(dst, "the model file to write", reading=False)  # ~ expanded
    if problem := folder_problem(dst, default_name):
        raise ResnetlabError(problem)
    dst = Path(dst)
    if source is not None and dst.resolve() == Path(source).resolve():
        raise ResnetlabError(f"{dst} is {what} itself; write the model to another path")
    if problem := model_path_problem(dst):
        from ..export.exporter import FORMATS

        if any(dst.suffix.lower() in suffixes for suffixes in FORMATS.values()):  # model.onnx
            problem += f", then make {dst.name} of it with resnetlab export"
        raise ResnetlabError(f"{dst}: not written: {problem}")
    from ..engine.train import run_file_problem  # (engine imports convert)

    if problem := run_file_problem(dst, dst.with_name(default_name)):
        raise ResnetlabError(problem)
    with removed_on_failure(missing_folders(dst.parent)):
        check_writable(dst, dst.parent)
        yield dst


def convert_pretrained(
    source: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    model: str | None = None,
    input_size: int | None = None,
) -> PretrainedReport:
    """Write pretrained weights, as they are, to a resnetlab model file: their classifier,
    class names (ImageNet's for torchvision's and timm's ImageNet weights) and
    preprocessing, for ``predict``, ``eval``, ``explain``, ``export`` and ``serve``.

    Args:
        source: what ``create_model(pretrained=...)`` takes (``torchvision:IMAGENET1K_V2``,
            ``timm:resnet50.a1_in1k``, a Hugging Face model's folder, a weights file).
        dst: the ``.safetensors`` file to write (checked before the weights are read).
        model: the model they are for; default: the one the source names.
        input_size: the image side predict resizes to; default: the weights'.

    Returns:
        The report of loading them (``describe()`` says what was loaded).
    """
    with keywords_of_call({"pretrained": "source"}):  # create_model's keyword, here SOURCE's
        return _convert_pretrained(source, dst, model, input_size)


def _convert_pretrained(
    source: str | os.PathLike, dst: str | os.PathLike, model: str | None, input_size: int | None
) -> PretrainedReport:
    if model is None:
        declared = declared_model(source)
        if declared is None:
            text = os.fspath(source)
            named = text.partition(":")[0] in NAMED_SOURCES
            # What a file or folder holds where it names no model, said as train does: not
            # there, empty, a data set, a transformers ResNet of no model here...
            found = None if named else _from_path(Path(text).expanduser(), text, input_size)
            declared = (found.model, {}) if found is not None and found.model else None
        if declared is None:
            check_names_model(source)  # torchvision, timm, torchvision:resnet18: as train says
            raise ResnetlabError(
                f"{source} does not say which model its weights are for: give it, "
                f"{option('model', 'resnet50')}"
            )
        model = declared[0]
    default_name = f"{model}.safetensors"
    with writing_model_file(dst, default_name, _local_file(source)) as dst:
        net = create_pretrained(model, source, num_classes=None)
        if net.pretrained.head == "new":  # a classifier of random weights, no classes
            raise ResnetlabError(
                f"{source} holds {model} without its classifier (the network alone), and a "
                "model file needs one: train one on them with resnetlab train --pretrained "
                f"{source} --data DATA, or convert the weights saved with their classifier"
            )
        if (bad := first_nonfinite(net.state_dict())) is not None:
            raise ResnetlabError(
                f"{source}: its weights hold NaN or inf ({bad}); the file is damaged or comes "
                "from a training that diverged"
            )
        save_model(net.eval(), dst, input_size=input_size)
    return net.pretrained


def _local_file(source: str | os.PathLike) -> Path | None:
    """The file here that ``source`` reads (a folder's weights file), if any: not for
    ``torchvision`` or ``timm:...``."""
    text = os.fspath(source)
    if text.partition(":")[0] in NAMED_SOURCES:
        return None
    path = Path(text).expanduser()
    return _hub_folder_weights(path) or (path / "best.safetensors" if path.is_dir() else path)


def create_pretrained(
    name: str, pretrained: str | os.PathLike | bool, *, num_classes: int | None, **kwargs: Any
) -> nn.Module:
    """``create_model(name, pretrained=...)``: the model built and started from the weights.

    ``num_classes`` defaults to the weights' classes, so their classifier is kept; the
    course's Keras model is built for the weights' input size unless ``input_size`` is given;
    weights that record their model's options (a model file, a keras.applications ResNet)
    build it with them unless options are given.
    ``pretrained=True`` means torchvision's default weights.
    """
    source = "torchvision" if pretrained is True else pretrained
    weights = resolve_pretrained(source, name, kwargs)
    if weights.model == name and weights.model_kwargs and set(kwargs) <= {"input_size"}:
        # Their own model named without options: built as they were (as train does).
        theirs = weights.model_kwargs.items()
        kwargs = {**{k: v for k, v in theirs if k not in ("input_size", "num_classes")}, **kwargs}
    if num_classes is None and weights.num_classes:
        num_classes = weights.num_classes
    if model_info(name).family == "keras" and weights.input_size is not None:
        kwargs.setdefault("input_size", weights.input_size)
    model = create_model(name, num_classes=num_classes, **kwargs)
    load_pretrained(model, weights)
    return model


def _check_declared_model(weights: PretrainedWeights, name: str, kwargs: dict[str, Any]) -> None:
    """Weights that say which model they are for must be for this one, built the same way.

    Keys and shapes cannot tell a plain net from its ResNet, or stride placements apart.
    """
    if weights.model is None:
        return
    if weights.model != name:
        raise ResnetlabError(
            f"{weights.description} holds a {weights.model}, not a {name}; start a {name} "
            f"from {name} weights, or give {option('model', weights.model)}"
        )
    if weights.model_kwargs is None:
        return
    theirs = {k: v for k, v in weights.model_kwargs.items() if k not in _HEAD_OR_INIT_OPTIONS}
    ours = {k: v for k, v in kwargs.items() if k not in _HEAD_OR_INIT_OPTIONS}
    if theirs != ours:
        if on_command_line():
            flags = " ".join(f"--model-option {k}={_option_text(v)}" for k, v in theirs.items())
            fix = flags or "no --model-option"
        else:  # create_model's keywords (train's model_kwargs)
            fix = ", ".join(f"{k}={v!r}" for k, v in theirs.items()) or "no options"
        raise ResnetlabError(
            f"{weights.description} is a {name} built with {_options_text(theirs)}, the "
            f"model with {_options_text(ours)}; build it with the weights' options ({fix})"
        )


def _option_text(value: Any) -> str:
    """A model option's value as ``--model-option`` takes it (``true``, ``B``, ``0.3``)."""
    return json.dumps(value) if not isinstance(value, str) else value


def _options_text(options: dict[str, Any]) -> str:
    if not options:
        return "no options"
    return "options " + ", ".join(f"{k}={_option_text(v)}" for k, v in options.items())


def _match(
    target: dict[str, torch.Tensor], weights: PretrainedWeights, name: str, said: str | None = None
) -> tuple[list[str], list[str], list[str]]:
    """(loaded, new, dropped) keys; raises on the first backbone key that does not fit
    (naming the model as ``said``, where given)."""
    source = weights.state_dict
    if problem := _backbone_problem(target, source, name):
        raise _mismatch(weights, name, problem, said)
    head_fits = all(
        k in source and source[k].shape == t.shape for k, t in target.items() if _is_head(k)
    )
    loaded = [k for k in target if k in source and (not _is_head(k) or head_fits)]
    if (bad := first_nonfinite({k: source[k] for k in loaded})) is not None:
        # Trained from, they fail the run's first check, blamed on its learning rate.
        raise ResnetlabError(
            f"{weights.location or weights.source}: its {bad} holds NaN or inf; the file is "
            "damaged or comes from a run that diverged: copy it again, or start from other "
            "weights"
        )
    new = [k for k in target if k not in loaded and not _is_counter(k)]
    # Listed in the model's order, as ``new`` is, whatever order the file keeps them in.
    dropped = [k for k in target if k in source and k not in loaded and not _is_counter(k)]
    dropped += [k for k in source if k not in target and not _is_counter(k)]
    return loaded, new, dropped


def _backbone_problem(
    target: dict[str, torch.Tensor], source: dict[str, torch.Tensor], name: str
) -> str | None:
    """The first tensor outside the classifier that is in one and not the other, or of
    another shape, in words; None where the weights fit the ``name`` model's backbone."""
    for key, tensor in target.items():
        if _is_head(key) or _is_counter(key):
            continue
        if key not in source:
            return f"{name}'s {key} {_shape(tensor)} is not in them"
        if source[key].shape != tensor.shape:
            return f"{key} is {_shape(source[key])} in them and {_shape(tensor)} in {name}"
    for key, tensor in source.items():
        if key not in target and not _is_head(key) and not _is_counter(key):
            return f"their {key} {_shape(tensor)} is not in {name}"
    return None


def _registered_states() -> dict[str, dict[str, torch.Tensor]]:
    """Each registered model's state dict (default options), by name, built on the meta
    device: no memory, no arithmetic (2 s for them all, kept while the registry stays)."""
    return _states_of(tuple(list_models()))


@functools.cache
def _states_of(names: tuple[str, ...]) -> dict[str, dict[str, torch.Tensor]]:
    states = {}
    for name in names:
        try:
            with torch.device("meta"), torch.random.fork_rng(devices=[]):
                states[name] = create_model(name).state_dict()
        except Exception:  # a model registered elsewhere that needs options to be built
            continue
    return states


def _models_fitting(source: dict[str, torch.Tensor]) -> list[str]:
    """The registered models (default options) whose backbone the tensors ``source`` fit
    by name and shape."""
    states = _registered_states()
    return [name for name, target in states.items() if not _backbone_problem(target, source, name)]


def _wrapped_in(
    source: dict[str, torch.Tensor], name: str, states: dict[str, dict[str, torch.Tensor]]
) -> tuple[str, str] | None:
    """(prefix, model) where ``source`` holds the whole backbone of a registered model under
    a prefix (a training module's ``net.``, beside its loss's tensors, so that not every key
    has it): ``name`` where it is that, else the first model found; None where it holds
    none."""
    for model in sorted(states, key=lambda n: n != name):  # name first
        target = states[model]
        first = next((k for k in target if not _is_head(k) and not _is_counter(k)), None)
        if first is None:
            continue
        for prefix in sorted({k[: -len(first)] for k in source if k.endswith("." + first)}):
            inner = {k[len(prefix) :]: t for k, t in source.items() if k.startswith(prefix)}
            if _backbone_problem(target, inner, model) is None:
                return prefix, model
    return None


def _mismatch(
    weights: PretrainedWeights, name: str, detail: str, said: str | None = None
) -> ResnetlabError:
    states = _registered_states()
    source = weights.state_dict
    if fits := _models_fitting(source):
        fix = f"they fit {' and '.join(fits)}: give {option('model', fits[0])}"
    elif wrapped := _wrapped_in(source, name, states):
        prefix, model = wrapped
        fix = (
            f"they hold a {model} under {prefix!r}, beside other tensors (a training module's); "
            f"save that part alone, its keys without {prefix!r}, and give that file"
            + (f" with {option('model', model)}" if model != name else "")
        )
    else:
        fix = f"they are for another architecture (choose the {option('model')} they were made for)"
    return ResnetlabError(f"{weights.description} does not fit {said or name}: {detail}; {fix}")


def _output_names(
    head: str, rows: list[int] | None, theirs: list[str] | None, ours: list[str] | None
) -> list[str] | None:
    """The names of a model's outputs after its classifier was loaded (``head`` and
    ``rows`` as ``load_pretrained`` decided them): the weights' own, or ours where the rows
    were put in our order; None for a classifier that starts anew."""
    if head != "kept":
        return None
    names = ours if rows else theirs or ours
    return list(names) if names else None


def _class_rows(theirs: list[str] | None, ours: list[str] | None) -> tuple[list[int] | None, str]:
    """How a classifier that fits in shape is loaded, when both sides name the classes:
    (None, "") as it is; (the weights' rows in ``ours``' order, a note) for the same
    classes listed in another order or named in another case (``case_matches``, as ``eval``
    matches them); ([], a note) for other classes: it is replaced.
    Weights that name no classes are loaded as they are, and the note says that their
    outputs are taken in the data's order, which nothing can check."""
    if not theirs and ours:
        return None, (
            f"classifier kept, its outputs taken as the data's classes in order "
            f"({_names(list(ours))}): the weights name no classes (a model file that names "
            f"them, as convert keras --classes writes, is matched by name)"
        )
    if not theirs or not ours:
        return None, ""
    if list(theirs) == list(ours):  # the model's own classes: fine-tuned further
        return None, f"classifier kept (the same {len(ours)} classes)"
    by_case = case_matches(list(ours), list(theirs))  # a folder cat for the class Cat
    named = [by_case.get(name, name) for name in ours]
    if sorted(theirs) == sorted(named) and len(set(theirs)) == len(theirs):
        rows = [list(theirs).index(name) for name in named]
        note = "classifier kept"
        if rows != sorted(rows):
            note += ", its rows put in the data's class order"
        if by_case:
            note += "; " + ", ".join(f"{a} as {b}" for a, b in by_case.items()) + " (case aside)"
        return rows, note
    return [], (
        f"classifier replaced (the weights' classes are {_names(list(theirs))}, "
        f"the data's {_names(list(ours))})"
    )


def _head_status(
    target: dict[str, torch.Tensor], weights: PretrainedWeights, loaded: list[str]
) -> tuple[str, str]:
    source = weights.state_dict
    ours = {k: t for k, t in target.items() if _is_head(k)}
    theirs = {k: t for k, t in source.items() if _is_head(k)}
    if not ours:
        return "none", "the model has no classifier" if theirs else ""
    if not theirs:
        return "new", "the weights have no classifier: a new one is trained"
    if all(k in loaded for k in ours):
        return "kept", ""
    ours_w, theirs_w = _head_weight(ours), _head_weight(theirs)
    if ours_w is not None and theirs_w is not None and ours_w.ndim == theirs_w.ndim:
        if ours_w.shape[0] != theirs_w.shape[0]:
            why = f"the weights have {theirs_w.shape[0]} classes, the model {ours_w.shape[0]}"
        else:
            why = (
                f"it takes {ours_w.shape[1]} features, the weights' {theirs_w.shape[1]} "
                f"(another input size)"
            )
        return "replaced", f"classifier replaced ({why})"
    return "replaced", "classifier replaced (its shape differs)"


def weights_normalisation(
    weights: PretrainedWeights, name: str
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None, str]:
    """(mean, std, where they come from) for a ``name`` model started from ``weights``;
    ``None`` for both when the training data's own statistics should be used."""
    if weights.mean is not None and weights.std is not None:
        return tuple(weights.mean), tuple(weights.std), weights.normalisation_note
    if model_info(name).family == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD, "ImageNet mean/std (assumed: the file does not say)"
    return None, None, "not in the file (training uses its data's mean/std)"


def _is_head(key: str) -> bool:
    return key.startswith(HEAD_PREFIXES)


def _head_weight(head: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The classifier's (classes, features[, 1, 1]) weight among its tensors."""
    return next((t for k, t in head.items() if k.endswith(".weight") and t.ndim >= 2), None)


def _is_counter(key: str) -> bool:
    # BN's batch counter: absent from many published weights, and unused at BN's momentum.
    return key.endswith("num_batches_tracked")


def _shape(tensor: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in tensor.shape) + ")"
