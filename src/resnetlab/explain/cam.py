"""Class activation maps of the Grad-CAM family, for a batch at once, from a hook on one layer.

A method weighs the feature maps ``A`` (B, C, h, w) of one layer, for one class per image,
sums them over the channels, keeps the positive part and upsamples the result to the
input's size (bilinear) before scaling each map to [0, 1]:

- ``gradcam`` (Selvaraju et al. 2017): channel weights are the spatial mean of the
  gradient of the class's logit with respect to ``A``.
- ``gradcam++`` (Chattopadhay et al. 2018): weights from the positive gradients, each
  position weighted by the closed-form alphas of the paper's eq. 19.
- ``layercam`` (Jiang et al. 2021): each position of each channel weighted by its own
  positive gradient, no spatial averaging.
- ``scorecam`` (Wang et al. 2020): no gradients; each channel, upsampled and scaled to
  [0, 1], masks the input, and the softmax over channels of the class's logits for the
  masked inputs gives the weights. One forward pass per channel and image.

The formulas are pytorch-grad-cam's (the weights, the epsilon in Grad-CAM++, the logits and
softmax of Score-CAM), so the maps agree with it (tested); the gradient is taken with
respect to the layer's output only, and everything stays on the model's device.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ResnetlabError, option, shown
from ..options import METHODS


def model_on(model: nn.Module, device: torch.device | None) -> nn.Module:
    """``model`` as maps are drawn from it: the model inside a ``torch.compile`` wrapper, on
    ``device`` (None: where it is) in float32, as its normalised inputs are. A copy where it
    is elsewhere or in another dtype (a ``model.half()``), so that the caller's stays as it is.
    """
    model = getattr(model, "_orig_mod", model)
    weight = next(model.parameters())
    to = device if device is not None else weight.device
    if weight.device != to or weight.dtype != torch.float32:
        model = copy.deepcopy(model).to(to, torch.float32)
    return model


@dataclass
class CamResult:
    maps: torch.Tensor  # (B, H, W) float32 in [0, 1], the input's height and width
    logits: torch.Tensor  # (B, K) for the unchanged images
    targets: torch.Tensor  # (B,) int64: the class each map explains
    grid: tuple[int, int]  # (h, w) of the layer's feature map
    layer: str  # the layer's name: as given, or the default (``default_layer``)


def default_layer(model: nn.Module) -> str:
    """The last feature map before the pooling, as Grad-CAM uses: the last stage
    (``layer4`` of the ImageNet nets and ``resnet50_keras``, ``layer3`` of the CIFAR nets),
    or for the pre-activation nets the final BN-ReLU after it (``act``), whose output the
    classifier sees (``feature_layer``)."""
    feature_layer = getattr(model, "feature_layer", None)
    if feature_layer is not None:
        return feature_layer()
    stages = getattr(model, "num_stages", None)
    if stages is None:
        raise ResnetlabError(
            f"{type(model).__name__} has no stages to choose a layer from; name one with "
            f"{option('layer')}"
        )
    return model.stage_name(stages)


# Feature-map cells a side at or below which a map points at a quarter of the image or more.
COARSE_SIDE = 2


def coarse_map_note(model: nn.Module, layer: str, grid: tuple[int, int], side: int) -> str | None:
    """A line when ``layer``'s feature map (``grid`` cells, for images of ``side`` pixels)
    is too coarse for its maps to point at a place, naming the layer to take instead: one
    cell (every map blank) or two a side (ResNet-18's ``layer4`` at 64 px)."""
    h, w = grid
    if max(h, w) > COARSE_SIDE:
        return None
    finer = _earlier_stage(model, layer)
    instead = option("layer", finer) if finer else f"an earlier {option('layer')}"
    at = f"{h}x{w} for images of {side}x{side} pixels"
    if h * w == 1:
        return (
            f"{layer}'s feature map is {at}: one cell points at no place, so every map is "
            f"blank; take {instead}, or train at a larger {option('input_size')}"
        )
    return (
        f"{layer}'s feature map is {at}: each cell covers a quarter of the image or more; "
        f"{instead} draws a finer map"
    )


def _earlier_stage(model: nn.Module, layer: str) -> str | None:
    """The stage before the one ``layer`` is in (or is), if there is one."""
    if not hasattr(model, "stage_of"):
        return None
    module = find_layer(model, layer)
    own = next(name for name, m in model.named_modules() if m is module)
    stage = model.stage_of(own)
    return model.stage_name(stage - 1) if 2 <= stage <= model.num_stages else None


def layer_choices(model: nn.Module) -> list[str]:
    """The stem's modules, the stages and their blocks: the layers worth naming."""
    names = []
    for name, child in model.named_children():
        if isinstance(child, nn.Identity) or name in ("avgpool", "fc", "head"):
            continue
        names.append(name)
        names += [f"{name}.{sub}" for sub, _ in child.named_children()]
    return names


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The module called ``name`` (for ``resnet50_keras`` also its Keras layer name, such as
    ``res5c_branch2c``); an unknown name raises with the valid ones."""
    if not isinstance(name, str):  # layer=4 for the last stage: not str's AttributeError
        meant = f" ('layer{name}' for stage {name})" if type(name) is int else ""
        raise ResnetlabError(
            f"layer is a module's name, got {shown(name)}{meant}; choose one of "
            f"{', '.join(layer_choices(model))}"
        )
    modules = dict(model.named_modules())
    module = modules.get(name) if name else None
    keras_names = getattr(model, "keras_layer_names", None)
    if module is None and keras_names is not None:
        own = {keras: own for own, keras in keras_names().items()}.get(name)
        module = modules.get(own) if own is not None else None
    if module is None:
        module = modules.get(_stage_alias(model, name))
    if module is None:
        last = f"{model.stage_name(model.num_stages)}." if hasattr(model, "stage_name") else ""
        convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        example = next((n for n in convs if n.startswith(last)), "conv1")
        keras = ", or a Keras layer name, e.g. res5c_branch2c" if keras_names is not None else ""
        raise ResnetlabError(
            f"no layer {name!r} in {getattr(model, 'model_name', type(model).__name__)}; "
            f"choose one of {', '.join(layer_choices(model))} (or a module inside a block, "
            f"e.g. {example}{keras})"
        )
    return module


def _stage_alias(model: nn.Module, name: str) -> str | None:
    """``layerN`` as the model names its stage ``N`` (the pre-activation nets'
    ``stages.<N-1>``), as ``--freeze layerN`` takes it."""
    index = name.removeprefix("layer")
    if not (name.startswith("layer") and index.isdigit() and hasattr(model, "stage_name")):
        return None
    return model.stage_name(int(index)) if 1 <= int(index) <= model.num_stages else None


@contextlib.contextmanager
def _capture(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """The module's outputs during the block; made to require grad when grad is on, so
    that a model with frozen weights still has a gradient at the layer."""
    outputs: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        if torch.is_grad_enabled() and not output.requires_grad:
            output.requires_grad_()  # no graph behind it: a leaf, and the model's input
        outputs.append(output)

    handle = module.register_forward_hook(hook)
    try:
        yield outputs
    finally:
        handle.remove()


def _feature_map(outputs: list[torch.Tensor], name: str, model: nn.Module) -> torch.Tensor:
    if len(outputs) != 1:
        raise ResnetlabError(
            f"layer {name!r} runs {len(outputs)} times in one forward pass, so it has no one "
            f"feature map; choose a module that runs once, e.g. "
            f"{name.rsplit('.', 1)[0] if '.' in name else default_layer(model)}"
        )
    (a,) = outputs
    if not isinstance(a, torch.Tensor) or a.ndim != 4:
        shape = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
        raise ResnetlabError(
            f"layer {name!r} gives {shape}, not a (B, C, h, w) feature map; choose one of "
            f"{', '.join(layer_choices(model))}"
        )
    return a


def _gradient_cam(method: str, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """(B, h, w) map from activations and gradients, both (B, C, h, w)."""
    if method == "layercam":
        return (g.clamp_min(0) * a).sum(1)
    if method == "gradcam":
        weights = g.mean((2, 3))
    else:  # gradcam++, eq. 19 with exp(logit) as the score: alphas from powers of g
        g2 = g * g
        g3 = g2 * g
        alphas = g2 / (2 * g2 + a.sum((2, 3), keepdim=True) * g3 + 1e-6)
        alphas = torch.where(g != 0, alphas, torch.zeros_like(alphas))
        weights = (g.clamp_min(0) * alphas).sum((2, 3))
    return (weights[:, :, None, None] * a).sum(1)


@torch.no_grad()
def _scorecam_weights(
    model: nn.Module, x: torch.Tensor, a: torch.Tensor, targets: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """(B, C) Score-CAM channel weights: one masked forward pass per channel and image.

    A channel that is constant over the map (after the ReLU at the end of a stage, often
    all zero) scales to an all-zero mask: every such channel scores what a blank input
    scores, measured once per image instead of once per channel.
    """
    b, c = a.shape[:2]
    blank = model(torch.zeros_like(x[:1])).float()[0]  # (K,)
    scores = blank[targets][:, None].repeat(1, c)  # (B, C)
    for i in range(b):
        flat = a[i].flatten(1)
        varying = torch.nonzero(flat.amax(1) > flat.amin(1)).flatten()
        masks = scale_maps(upsample(a[i, varying], x.shape[-2:]))  # (C', H, W)
        for start in range(0, len(varying), batch_size):
            m = masks[start : start + batch_size, None]  # (n, 1, H, W)
            logits = model(x[i : i + 1] * m)  # (n, K)
            scores[i, varying[start : start + len(m)]] = logits[:, targets[i]].float()
    return scores.softmax(1)


def upsample(maps: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """(N, h, w) maps to (N, H, W), bilinear, pixel centres aligned (as the feature map's
    cells cover the image)."""
    return F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=False)[
        :, 0
    ]


def scale_maps(maps: torch.Tensor) -> torch.Tensor:
    """Each (H, W) map of (N, H, W) scaled to [0, 1]; a constant map becomes zeros."""
    flat = maps.flatten(1)
    low = flat.amin(1)[:, None, None]
    span = (flat.amax(1)[:, None, None] - low).clamp_min(1e-7)
    return (maps - low) / span


def check_method(method: str) -> None:
    """Refuse, in one line, a method that is not one of ``METHODS``."""
    if method not in METHODS:
        raise ResnetlabError(f"unknown CAM method {method!r}; choose one of {', '.join(METHODS)}")


def class_activation_maps(
    model: nn.Module,
    x: torch.Tensor,
    *,
    method: str = "gradcam",
    targets: torch.Tensor | int | None = None,
    layer: str | None = None,
    batch_size: int = 64,
) -> CamResult:
    """Class activation maps of a batch of normalised images.

    Args:
        model: a resnetlab model; it is run in eval mode and left in the mode it was in.
        x: (B, 3, H, W) images, normalised as the model expects, on its device.
        method: one of ``METHODS``.
        targets: the class to explain, one for all or one per image (B,); default the
            predicted class of each image.
        layer: a module name (``"layer4"``, ``"layer3.2"``, ``"layer4.1.conv2"``); default
            the last stage.
        batch_size: masked images per forward pass (Score-CAM).

    Returns:
        The maps at the input's size, the logits, the classes explained and the layer's
        feature-map size.
    """
    check_method(method)
    tensor = isinstance(x, torch.Tensor)
    if not (tensor and x.is_floating_point() and x.dim() == 4 and x.shape[1] == 3):  # pixels
        got = f"{x.dtype} {tuple(x.shape)}" if tensor else type(x).__name__
        if isinstance(x, np.ndarray):
            got += " (a tensor of it: torch.from_numpy(x))"
        raise ResnetlabError(
            f"x must be normalised float (B, 3, H, W) images, got {got}; "
            "resnetlab.explain.explain takes uint8 (N, H, W, 3) pixels, files and PIL images"
        )
    weight = next(model.parameters())
    x = x.to(weight.device, weight.dtype)  # float64 images for a float32 model, say
    # torch.compile's wrapper names every layer _orig_mod.<name>, and runs a graph that
    # calls no hooks: the maps are drawn from the model inside it, run eagerly.
    model = getattr(model, "_orig_mod", model)
    name = default_layer(model) if layer is None else layer
    module = find_layer(model, name)
    was_training = model.training
    model.eval()
    try:
        with torch.set_grad_enabled(method != "scorecam"), _capture(module) as outputs:
            logits = model(x)
        a = _feature_map(outputs, name, model)
        if targets is None:
            targets = logits.argmax(1)
        targets = torch.as_tensor(targets, device=logits.device).expand(len(x))
        if not ((targets >= 0) & (targets < logits.shape[1])).all():
            raise ResnetlabError(f"class index out of range for {logits.shape[1]} classes")
        if method == "scorecam":
            weights = _scorecam_weights(model, x, a, targets, batch_size)
            cam = (weights[:, :, None, None] * a.float()).sum(1)
        else:
            score = logits.gather(1, targets[:, None]).sum()
            (g,) = torch.autograd.grad(score, a)
            cam = _gradient_cam(method, a.detach().float(), g.float())
    finally:
        model.train(was_training)
    cam = cam.clamp_min(0)  # (B, h, w)
    maps = scale_maps(upsample(cam, x.shape[-2:]))
    # A map of one value (a 1x1 feature map, or nothing positive) points at no place: zeros,
    # not the upsampling's rounding errors scaled up to [0, 1].
    flat = cam.flatten(1)
    maps[flat.amax(1) == flat.amin(1)] = 0
    return CamResult(maps, logits.detach().float(), targets, tuple(a.shape[-2:]), name)
