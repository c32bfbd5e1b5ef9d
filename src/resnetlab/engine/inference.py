"""The inference path of ``predict``, ``eval`` and ``resnetlab bench infer``.

``inference_model(model, device)`` returns an eval-mode copy with every BatchNorm folded
into the convolution before it and, on CUDA and CPU, channels-last weights. In eval mode a
BN is a per-channel affine map, so folding it changes only rounding, and removes a pass
over every feature map: on 2 CPU cores, folding and channels-last together make ResNet-20
inference about 1.5x faster than the model as trained. On the CPU the convolutions with
small output maps (2x2 or less, a fixed rule: inference is not calibrated) take the
matrix-product path of ``engine.cpu``, and the process keeps the memory a forward pass frees
(``engine.cpu.keep_freed_memory``, as training does): a batch's activations are large
blocks that glibc would give back to the OS after every batch and fault in again (about
650,000 page faults a batch for ResNet-50 at 224 px, batch 32).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..errors import ResnetlabError, path_argument
from ..models import ModelMeta, load_model
from .cpu import keep_freed_memory, use_small_map_convs
from .step import resolve_channels_last


class ExternalModel(nn.Module):
    """A model that another runtime runs, behind the interface of a resnetlab model.

    ``model(x)`` on normalised (N, 3, H, W) images gives (N, K) logits and ``model.meta``
    says how to use it, as for a loaded model file; it holds no PyTorch weights, so there
    is nothing to fold, lay out or move. ``export.OnnxModel`` is one.
    """


def load_model_file(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> nn.Module:
    """The model in a file, for ``predict``, ``eval`` and ``serve``: a ``.safetensors`` file
    (``load_model``), or an ``.onnx`` file written by ``resnetlab export`` (run by onnxruntime
    on the CPU)."""
    if Path(path_argument(path, "the model file")).suffix.lower() == ".onnx":
        from ..export import OnnxModel

        return OnnxModel(path)
    return load_model(path, device=device)


def model_file_meta(model: nn.Module, command: str) -> ModelMeta:
    """The ``ModelMeta`` of a model loaded from its file, which ``command`` needs (class
    names, input size, normalisation); one line saying how to get one for any other model."""
    meta = getattr(model, "meta", None)
    if not isinstance(meta, ModelMeta):
        raise ResnetlabError(
            f"{command} takes a model file, or a model loaded from one with "
            f"resnetlab.load_model (which knows its class names, input size and "
            f"normalisation); this {type(model).__name__} has none: save it with "
            "resnetlab.save_model and give that file"
        )
    return meta


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold each ``bn<i>`` into ``conv<i>``, and each BN that follows a conv in a
    ``Sequential`` (projection shortcuts, ResNet-D's pooled ones, the deep stem), in place.

    Every resnetlab block and stem applies ``bn<i>`` directly to ``conv<i>``'s output
    (``conv1/bn1``, ``conv2/bn2``, ``conv3/bn3``; a deep stem's ``conv1`` ends in a conv)
    and a projection shortcut is ``Sequential([pool,] conv, bn)``; each such BN becomes an
    ``Identity``. Pre-activation
    blocks (``norm<i>`` before ``conv<i>``) are left as they are: a BN before a padded
    conv does not fold exactly. The model must be in eval mode (the running statistics
    are what gets folded).
    """
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode")
    for module in list(model.modules()):
        for i in (1, 2, 3):
            conv, bn = getattr(module, f"conv{i}", None), getattr(module, f"bn{i}", None)
            if not isinstance(bn, nn.BatchNorm2d):
                continue
            if isinstance(conv, nn.Conv2d):
                setattr(module, f"conv{i}", fuse_conv_bn_eval(conv, bn))
                setattr(module, f"bn{i}", nn.Identity())
            elif isinstance(conv, nn.Sequential) and isinstance(conv[-1], nn.Conv2d):
                conv[-1] = fuse_conv_bn_eval(conv[-1], bn)  # ResNet-C's deep stem, then bn1
                setattr(module, f"bn{i}", nn.Identity())
        if isinstance(module, nn.Sequential):
            for j in range(len(module) - 1):
                if isinstance(module[j], nn.Conv2d) and isinstance(module[j + 1], nn.BatchNorm2d):
                    module[j] = fuse_conv_bn_eval(module[j], module[j + 1])
                    module[j + 1] = nn.Identity()
    return model


def inference_model(
    model: nn.Module,
    device: torch.device | str,
    *,
    channels_last: bool | None = None,
    input_size: int | None = None,
) -> nn.Module:
    """An eval-mode copy of ``model`` on ``device``, BN folded, channels-last by default
    (an ``ExternalModel`` is returned as it is).

    Args:
        model: a resnetlab model (left unchanged).
        device: where to run it.
        channels_last: default: ``resolve_channels_last``'s (on for CUDA and CPU).
        input_size: the image side it will see, if known (lays out the CPU's small-map
            convolutions for it, see ``engine.cpu``).
    """
    if isinstance(model, ExternalModel):
        return model
    device = torch.device(device)
    channels_last = resolve_channels_last(channels_last, device)
    fast = fold_batchnorm(copy.deepcopy(model).eval()).to(device)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    if device.type == "cpu":
        keep_freed_memory()
        if input_size is not None:
            use_small_map_convs(fast, input_size)
    return fast


def is_channels_last(model: nn.Module) -> bool:
    """Whether the model's first 4-d weight is channels-last (so its inputs should be too)."""
    weight = next((p for p in model.parameters() if p.ndim == 4), None)
    return weight is not None and weight.is_contiguous(memory_format=torch.channels_last)
