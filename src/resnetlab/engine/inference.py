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

``precision="bf16"`` (or ``"fp16"``) runs the same model, small-map matrix products
included, under autocast and gives its outputs back in float32 (``MixedPrecision``). Float32
stays the default: what ``eval`` reports is exact.
"""

from __future__ import annotations

import os
from copy import deepcopy
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..errors import ResnetlabError, SettingWarning, option, path_argument, warn
from ..models import ModelMeta, load_model
from ..models.files import is_onnx_file
from ..options import INFERENCE_PRECISIONS
from .cpu import keep_freed_memory, slow_precision_note, use_small_map_convs
from .distributed import resolve_device
from .step import PRECISION_DTYPES, cuda_has_bf16, resolve_channels_last

FP32_FIX = "the default, fp32, is faster here"


class ExternalModel(nn.Module):
    """A model that another runtime runs, behind the interface of a resnetlab model.

    ``model(x)`` on normalised (N, 3, H, W) images gives (N, K) logits and ``model.meta``
    says how to use it, as for a loaded model file; it holds no PyTorch weights, so there
    is nothing to fold, lay out or move. ``export.OnnxModel`` is one.
    """


def load_model_file(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> nn.Module:
    """The model in a file, for ``predict``, ``eval`` and ``serve``: a ``.safetensors`` file
    (``load_model``), or an ONNX file written by ``resnetlab export`` (``.onnx``, or known by
    its bytes under another name), which onnxruntime runs on the CPU: ``device`` as given, so
    that a GPU named for one is refused (``auto`` runs it on the CPU whatever it picks for
    the images).

    Raises:
        ResnetlabError: a GPU named for an ``.onnx`` file.
    """
    path = path_argument(path, "the model file")
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx" or (suffix != ".safetensors" and is_onnx_file(path)):
        from ..export import OnnxModel

        named = resolve_device(device) if str(device) != "auto" else torch.device("cpu")
        if named.type != "cpu":
            raise ResnetlabError(
                f"{path} is run by onnxruntime on the CPU, not on {named}; give "
                f"{option('device', 'cpu')} (or auto), or the .safetensors model file it was "
                f"exported from to run on {named}"
            )
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


class MixedPrecision(nn.Module):
    """``model`` run under autocast in ``dtype`` (bf16 or fp16); its outputs in float32."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=self.dtype):
            return self.model(x).float()


def inference_model(
    model: nn.Module,
    device: torch.device | str,
    *,
    channels_last: bool | None = None,
    input_size: int | None = None,
    precision: str = "fp32",
    copy: bool = True,
) -> nn.Module:
    """An eval-mode float32 copy of ``model`` on ``device``, BN folded, channels-last by default
    (an ``ExternalModel`` is returned as it is).

    Args:
        model: a resnetlab model (left unchanged, unless ``copy`` is False).
        device: where to run it.
        channels_last: default: ``resolve_channels_last``'s (on for CUDA and CPU).
        input_size: the image side it will see, if known (lays out the CPU's small-map
            convolutions for it, see ``engine.cpu``).
        precision: ``fp32``, or ``bf16``/``fp16`` autocast (``MixedPrecision``).
        copy: False: ``model`` itself is folded and moved, for one loaded only to be run
            here (a copy of a ResNet-50 costs 0.1-0.2 s and its memory).

    Raises:
        ResnetlabError: another precision, or a reduced one for an ``ExternalModel``
            (which runs as it was exported) or a GPU without bf16.
    """
    dtype = _inference_dtype(precision, model, torch.device(device))
    if isinstance(model, ExternalModel):
        return model
    device = torch.device(device)
    channels_last = resolve_channels_last(channels_last, device)
    # In float32 whatever the dtype of the model given (model.half()): its inputs are.
    fast = fold_batchnorm((deepcopy(model) if copy else model).float().eval()).to(device)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    if device.type == "cpu":
        keep_freed_memory()
        if input_size is not None:
            use_small_map_convs(fast, input_size)
    return fast if dtype is None else MixedPrecision(fast, dtype)


def nonfinite_outputs_cause(precision: str) -> str:
    """Why a model's outputs came out NaN or inf, and the fix, as ``predict`` and ``eval`` say
    it: in fp16 the activations overflow (a model file's weights are checked finite when it
    is loaded), in bf16 and fp32, which have float32's range, the model is damaged."""
    if precision == "fp16":
        return (
            "in fp16 its activations overflowed (float16 holds at most 65,504); give "
            f"{option('precision', 'fp32')}, or bf16, which has float32's range"
        )
    return "its weights or normalisation are damaged"


def _inference_dtype(precision: str, model: nn.Module, device: torch.device) -> torch.dtype | None:
    """The autocast dtype ``precision`` names for ``model`` on ``device`` (None: float32)."""
    if precision not in INFERENCE_PRECISIONS:
        raise ResnetlabError(
            f"precision {precision!r} is not one of {', '.join(INFERENCE_PRECISIONS)}"
        )
    dtype = PRECISION_DTYPES[precision]
    if dtype is None:
        return None
    if isinstance(model, ExternalModel):
        raise ResnetlabError(
            f"{option('precision', precision)} applies to a .safetensors model file; an "
            "exported model "
            "runs in the precision it was exported in (resnetlab export --fp16 for float16)"
        )
    if device.type == "cuda" and dtype is torch.bfloat16 and not cuda_has_bf16(device):
        raise ResnetlabError(f"{device} has no bf16 arithmetic; give {option('precision', 'fp16')}")
    if device.type == "cpu" and (note := slow_precision_note(precision, fix=FP32_FIX)):
        warn(note, SettingWarning)
    return dtype


def is_channels_last(model: nn.Module) -> bool:
    """Whether the model's first 4-d weight is channels-last (so its inputs should be too)."""
    weight = next((p for p in model.parameters() if p.ndim == 4), None)
    return weight is not None and weight.is_contiguous(memory_format=torch.channels_last)
