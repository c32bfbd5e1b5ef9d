"""The ResNet network, and the ImageNet ResNets of He et al. (2015), Table 1.

State-dict keys are torchvision's (``conv1, bn1, layer1..4, fc``; blocks ``conv1..3``,
``bn1..3``, ``downsample.0/1``), so torchvision and timm weights load with ``strict=True``.
The same class builds the CIFAR nets (``cifar.py``), the Keras seed (``keras_resnet50.py``)
and the ResNeXt, wide, ResNet-C/D/S and squeeze-excitation variants (``variants.py``):
each is a choice of block, stem, shortcut, groups, width and attention, not a class.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Literal

import torch
from torch import nn

from .blocks import (
    ActLayer,
    AttnLayer,
    BasicBlock,
    Block,
    Bottleneck,
    NormLayer,
    Shortcut,
    check_features,
    check_images,
    check_option_types,
    conv3x3,
    make_stage,
)
from .registry import classifier_size, register_model

Stem = Literal["imagenet", "cifar", "deep"]
STEMS = ("imagenet", "cifar", "deep")


def deep_stem(width: int, norm_layer: NormLayer, act_layer: ActLayer) -> nn.Sequential:
    """ResNet-C's stem (He et al. 2019): three 3x3 convs (``width``, ``width``, ``2 * width``
    channels, the first with stride 2) in place of the 7x7. Keys ``conv1.0, .1, .3, .4, .6``
    as timm's; the BN after the last conv is the net's ``bn1``."""
    return nn.Sequential(
        conv3x3(3, width, stride=2),
        norm_layer(width),
        act_layer(),
        conv3x3(width, width),
        norm_layer(width),
        act_layer(),
        conv3x3(width, 2 * width),
    )


def init_weights(model: nn.Module, zero_init_residual: bool = False) -> None:
    """He (fan-out) normal convs, BN scale 1 and shift 0, as torchvision and timm do; with
    ``zero_init_residual`` every block starts as an identity map (``zero_init_last``).

    A model built on the meta device (for its shapes, e.g. to count parameters) is left
    alone: there is nothing to draw, and PyTorch draws normal values on meta tensors
    through a slow Python path.
    """
    if any(p.is_meta for p in model.parameters()):
        return
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in model.modules():
            if hasattr(m, "zero_init_last"):
                m.zero_init_last()


class ResNet(nn.Module):
    """A stem, stages of residual (or plain) blocks, global average pooling and a linear head.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: blocks per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-50.
        num_classes: outputs of the classifier; 0 leaves the head as an identity.
        widths: base channels of each stage (a bottleneck stage outputs 4x this).
        stem: ``"imagenet"`` (7x7/2 conv + 3x3/2 max pool), ``"cifar"`` (3x3 conv) or
            ``"deep"`` (ResNet-C: three 3x3 convs + 3x3/2 max pool).
        stem_width: channels of the stem; for ``"deep"`` those of its first two convs
            (the third has twice as many). Default: ``widths[0]`` (``widths[0] // 2`` deep).
        residual: ``False`` builds the plain net: the same convs with no shortcuts.
        shortcut: ``"A"`` (zero-padding, parameter-free), ``"B"`` (projection) or ``"D"``
            (average pool + projection, ResNet-D).
        stride_in_1x1: bottlenecks only; stride on the first 1x1 conv (ResNet v1)
            instead of the 3x3 (v1.5).
        groups, base_width: bottlenecks only; groups and width per group of the 3x3
            conv (ResNeXt-50 32x4d: 32 and 4; wide ResNet-50-2: 1 and 128).
        attn_layer: a factory ``channels -> module`` applied to each residual branch
            before the addition (``SqueezeExcite``).
        zero_init_residual: zero each block's last BN scale so every block starts
            as an identity map.
        norm_layer, act_layer: factories for the normalisation and activation.
        bias: give every conv a bias (the Keras seed does).
        norm_eps: the epsilon of every normalisation layer; default the layer's own
            (PyTorch's BatchNorm: 1e-5). keras.applications' ResNets use 1.001e-5.
    """

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        *,
        num_classes: int = 1000,
        widths: Sequence[int] = (64, 128, 256, 512),
        stem: Stem = "imagenet",
        stem_width: int | None = None,
        residual: bool = True,
        shortcut: Shortcut = "B",
        stride_in_1x1: bool = False,
        groups: int = 1,
        base_width: int = 64,
        attn_layer: AttnLayer | None = None,
        zero_init_residual: bool = False,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
        bias: bool = False,
        norm_eps: float | None = None,
    ) -> None:
        super().__init__()
        check_option_types(
            widths=widths,
            residual=residual,
            stride_in_1x1=stride_in_1x1,
            zero_init_residual=zero_init_residual,
            bias=bias,
            stem_width=stem_width,
            groups=groups,
            base_width=base_width,
            norm_layer=norm_layer,
            act_layer=act_layer,
            attn_layer=attn_layer,
            **({"norm_eps": norm_eps} if norm_eps is not None else {}),
        )
        if norm_eps is not None:
            if not norm_eps > 0:
                raise ValueError(f"norm_eps must be a positive number, got {norm_eps!r}")
            norm_layer = partial(norm_layer, eps=norm_eps)
        if len(layers) != len(widths):
            raise ValueError(f"{len(layers)} stages but {len(widths)} widths")
        block_kwargs = dict(
            residual=residual,
            shortcut=shortcut,
            norm_layer=norm_layer,
            act_layer=act_layer,
            bias=bias,
            groups=groups,
            base_width=base_width,
            attn_layer=attn_layer,
        )
        if stride_in_1x1:
            if block is not Bottleneck:
                raise ValueError("stride_in_1x1 applies only to bottleneck ResNets (50/101/152)")
            block_kwargs["stride_in_1x1"] = True
        self.residual = residual

        in_channels = self._make_stem(stem, stem_width, widths[0], norm_layer, act_layer, bias)
        for i, (num_blocks, width) in enumerate(zip(layers, widths, strict=True), start=1):
            stride = 1 if i == 1 else 2
            stage = make_stage(block, in_channels, width, num_blocks, stride=stride, **block_kwargs)
            self.add_module(f"layer{i}", stage)
            in_channels = width * block.expansion
        self.num_stages = len(layers)
        self.num_features = in_channels
        self.avgpool: nn.Module = nn.AdaptiveAvgPool2d(1)
        self.num_classes = num_classes
        self.fc: nn.Module = self._make_classifier(num_classes)
        init_weights(self, zero_init_residual)

    def _make_stem(
        self,
        stem: Stem,
        width: int | None,
        default: int,
        norm_layer: NormLayer,
        act_layer: ActLayer,
        bias: bool,
    ) -> int:
        """Build ``conv1``, ``bn1``, ``relu``, ``maxpool``; returns the stem's channels."""
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
        if stem == "deep":
            width = width or default // 2
            self.conv1: nn.Module = deep_stem(width, norm_layer, act_layer)
            out = 2 * width
        else:
            out = width or default
            kernel, stride = (7, 2) if stem == "imagenet" else (3, 1)
            self.conv1 = nn.Conv2d(3, out, kernel, stride=stride, padding=kernel // 2, bias=bias)
        self.bn1 = norm_layer(out)
        self.relu = act_layer()
        self.maxpool: nn.Module = (
            nn.Identity() if stem == "cifar" else nn.MaxPool2d(3, stride=2, padding=1)
        )
        return out

    def _make_classifier(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    @property
    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, f"layer{i}") for i in range(1, self.num_stages + 1)]

    def stage_name(self, i: int) -> str:
        """The module name of stage ``i`` (1-based): ``layer{i}``."""
        return f"layer{i}"

    def feature_layer(self) -> str:
        """The module whose output is ``forward_features``'s: the last stage (``layer4``)."""
        return self.stage_name(self.num_stages)

    def stage_of(self, name: str) -> int:
        """The stage of a parameter, buffer or module by its name: 0 for the stem
        (``conv1``, ``bn1``), ``i`` for ``layer{i}``, ``num_stages + 1`` for the head (``fc``)."""
        top = name.split(".", 1)[0]
        if top == "fc":
            return self.num_stages + 1
        index = top.removeprefix("layer")
        return int(index) if top.startswith("layer") and index.isdigit() else 0

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, C, h, w) last feature map."""
        check_images(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in self.stages:
            x = stage(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, C, h, w) feature map -> (B, num_classes) logits, or pooled features."""
        check_features(x, self.num_features)
        x = torch.flatten(self.avgpool(x), 1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The classifier, ``fc`` (an ``nn.Identity`` without one), as timm's models give it."""
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised one for ``num_classes`` outputs
        (0: none, ``forward`` gives the pooled features)."""
        num_classes = classifier_size(num_classes)
        self.num_classes = num_classes
        self.fc = self._make_classifier(num_classes)


def _imagenet(block: Block, layers: Sequence[int], **kwargs) -> ResNet:
    return ResNet(block, layers, **{"stem": "imagenet", **kwargs})  # an option given wins


_IMAGENET = dict(family="imagenet", input_size=224, num_classes=1000, group="ResNet")
_PAPER = "He et al. 2015, Table 1; torchvision's keys"
_PLAIN = "He et al. 2015, Table 1 (plain); torchvision's keys"


@register_model(
    **_IMAGENET, source=_PAPER, description="ImageNet ResNet-18, basic blocks [2, 2, 2, 2]"
)
def resnet18(*, num_classes: int = 1000, **kwargs) -> ResNet:
    return _imagenet(BasicBlock, (2, 2, 2, 2), num_classes=num_classes, **kwargs)


@register_model(
    **_IMAGENET, source=_PAPER, description="ImageNet ResNet-34, basic blocks [3, 4, 6, 3]"
)
def resnet34(*, num_classes: int = 1000, **kwargs) -> ResNet:
    return _imagenet(BasicBlock, (3, 4, 6, 3), num_classes=num_classes, **kwargs)


@register_model(
    **_IMAGENET, source=_PAPER, description="ImageNet ResNet-50, bottlenecks [3, 4, 6, 3]"
)
def resnet50(*, num_classes: int = 1000, **kwargs) -> ResNet:
    return _imagenet(Bottleneck, (3, 4, 6, 3), num_classes=num_classes, **kwargs)


@register_model(
    **_IMAGENET, source=_PAPER, description="ImageNet ResNet-101, bottlenecks [3, 4, 23, 3]"
)
def resnet101(*, num_classes: int = 1000, **kwargs) -> ResNet:
    return _imagenet(Bottleneck, (3, 4, 23, 3), num_classes=num_classes, **kwargs)


@register_model(
    **_IMAGENET, source=_PAPER, description="ImageNet ResNet-152, bottlenecks [3, 8, 36, 3]"
)
def resnet152(*, num_classes: int = 1000, **kwargs) -> ResNet:
    return _imagenet(Bottleneck, (3, 8, 36, 3), num_classes=num_classes, **kwargs)


@register_model(
    **_IMAGENET,
    source=_PLAIN,
    description="the paper's plain 18-layer net: ResNet-18, no shortcuts",
)
def plain18(*, num_classes: int = 1000, **kwargs) -> ResNet:
    kwargs = {"residual": False, **kwargs}  # an option given wins, as for the CIFAR plain nets
    return _imagenet(BasicBlock, (2, 2, 2, 2), num_classes=num_classes, **kwargs)


@register_model(
    **_IMAGENET,
    source=_PLAIN,
    description="the paper's plain 34-layer net: ResNet-34, no shortcuts",
)
def plain34(*, num_classes: int = 1000, **kwargs) -> ResNet:
    kwargs = {"residual": False, **kwargs}  # an option given wins, as for the CIFAR plain nets
    return _imagenet(BasicBlock, (3, 4, 6, 3), num_classes=num_classes, **kwargs)
