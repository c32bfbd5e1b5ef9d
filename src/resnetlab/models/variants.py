"""The ImageNet ResNet variants that torchvision and timm ship, from the same blocks.

Each is a choice of parts for ``ResNet`` (or ``PreActResNet``), with the peer's name,
state-dict keys and outputs (tested against torchvision 0.29 and timm 1.0):

- ResNeXt (Xie et al. 2017): bottlenecks whose 3x3 conv has ``groups`` groups of
  ``base_width`` channels per 64; torchvision's keys.
- Wide ResNets (Zagoruyko & Komodakis 2016, WRN-50-2-bottleneck): the bottleneck's 3x3
  conv twice as wide; torchvision's keys.
- ResNet-C, -D (He et al. 2019, "Bag of Tricks") and -S (Gluon's v1s): the deep stem
  (three 3x3 convs), and for D the average-pool shortcut; timm's keys.
- SE-ResNet, SE-ResNeXt (Hu et al. 2018): squeeze-and-excitation on every residual
  branch; timm's keys.
- ResNet-v2 (He et al. 2016, "Identity Mappings"): pre-activation units; timm's keys.

All take ``residual=False`` for their plain twin and the options of their class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from .blocks import BasicBlock, Block, Bottleneck, PreActBottleneck, SqueezeExcite
from .preact import PreActResNet
from .registry import register_model
from .resnet import ResNet

RESNET50 = (3, 4, 6, 3)
RESNET101 = (3, 4, 23, 3)


def _resnet(
    block: Block, layers: Sequence[int], num_classes: int, parts: dict, kwargs: dict[str, Any]
) -> ResNet:
    # The user's options override the variant's parts (resnet50d with shortcut="B" is C).
    return ResNet(block, layers, num_classes=num_classes, **{**parts, **kwargs})


def _register(group: str, source: str, description: str):
    return register_model(
        family="imagenet",
        input_size=224,
        num_classes=1000,
        group=group,
        source=source,
        description=description,
    )


_BAG = "He et al. 2019 (Bag of Tricks), ResNet-{}; timm's keys"
_D = dict(stem="deep", stem_width=32, shortcut="D")


@_register("ResNet-C/D/S", _BAG.format("D"), "ResNet-18-D: deep stem, average-pool shortcuts")
def resnet18d(*, num_classes: int = 1000, **kwargs) -> ResNet:
    return _resnet(BasicBlock, (2, 2, 2, 2), num_classes, _D, kwargs)


@_register("ResNet-C/D/S", _BAG.format("D"), "ResNet-34-D: deep stem, average-pool shortcuts")
def resnet34d(*, num_classes: int = 1000, **kwargs) -> ResNet:
    return _resnet(BasicBlock, (3, 4, 6, 3), num_classes, _D, kwargs)


@_register("ResNet-C/D/S", _BAG.format("C"), "ResNet-50-C: deep stem (32, 32, 64)")
def resnet50c(*, num_classes: int = 1000, **kwargs) -> ResNet:
    return _resnet(Bottleneck, RESNET50, num_classes, dict(stem="deep", stem_width=32), kwargs)


@_register("ResNet-C/D/S", _BAG.format("D"), "ResNet-50-D: deep stem, average-pool shortcuts")
def resnet50d(*, num_classes: int = 1000, **kwargs) -> ResNet:
    return _resnet(Bottleneck, RESNET50, num_classes, _D, kwargs)


@_register(
    "ResNet-C/D/S", "Gluon's ResNet-v1s; timm's keys", "ResNet-50-S: deep stem (64, 64, 128)"
)
def resnet50s(*, num_classes: int = 1000, **kwargs) -> ResNet:
    return _resnet(Bottleneck, RESNET50, num_classes, dict(stem="deep", stem_width=64), kwargs)


_XIE = "Xie et al. 2017 (ResNeXt); torchvision's keys"


@_register("ResNeXt", _XIE, "ResNeXt-50 32x4d: cardinality 32, bottleneck width 4 per group")
def resnext50_32x4d(*, num_classes: int = 1000, **kwargs) -> ResNet:
    return _resnet(Bottleneck, RESNET50, num_classes, dict(groups=32, base_width=4), kwargs)


@_register("ResNeXt", _XIE, "ResNeXt-101 32x8d: cardinality 32, bottleneck width 8 per group")
def resnext101_32x8d(*, num_classes: int = 1000, **kwargs) -> ResNet:
    return _resnet(Bottleneck, RESNET101, num_classes, dict(groups=32, base_width=8), kwargs)


@_register("ResNeXt", _XIE, "ResNeXt-101 64x4d: cardinality 64, bottleneck width 4 per group")
def resnext101_64x4d(*, num_classes: int = 1000, **kwargs) -> ResNet:
    return _resnet(Bottleneck, RESNET101, num_classes, dict(groups=64, base_width=4), kwargs)


_WRN = "Zagoruyko & Komodakis 2016 (WRN-50-2-bottleneck); torchvision's keys"


@_register("Wide ResNet", _WRN, "Wide ResNet-50-2: ResNet-50 with 3x3 convs twice as wide")
def wide_resnet50_2(*, num_classes: int = 1000, **kwargs) -> ResNet:
    return _resnet(Bottleneck, RESNET50, num_classes, dict(base_width=128), kwargs)


@_register("Wide ResNet", _WRN, "Wide ResNet-101-2: ResNet-101 with 3x3 convs twice as wide")
def wide_resnet101_2(*, num_classes: int = 1000, **kwargs) -> ResNet:
    return _resnet(Bottleneck, RESNET101, num_classes, dict(base_width=128), kwargs)


_HU = "Hu et al. 2018 (SENet); timm's keys"


@_register("SE-ResNet", _HU, "SE-ResNet-50: squeeze-excitation (reduction 16) in every block")
def seresnet50(*, num_classes: int = 1000, **kwargs) -> ResNet:
    return _resnet(Bottleneck, RESNET50, num_classes, dict(attn_layer=SqueezeExcite), kwargs)


@_register("SE-ResNet", _HU, "SE-ResNeXt-50 32x4d: ResNeXt-50 with squeeze-excitation")
def seresnext50_32x4d(*, num_classes: int = 1000, **kwargs) -> ResNet:
    parts = dict(groups=32, base_width=4, attn_layer=SqueezeExcite)
    return _resnet(Bottleneck, RESNET50, num_classes, parts, kwargs)


_V2 = "He et al. 2016 (Identity Mappings); timm's keys"


def _v2(layers: Sequence[int], num_classes: int, kwargs: dict[str, Any]) -> nn.Module:
    return PreActResNet(PreActBottleneck, layers, num_classes=num_classes, **kwargs)


@_register("Pre-activation ResNet", _V2, "ResNet-v2-50: pre-activation bottlenecks [3, 4, 6, 3]")
def resnetv2_50(*, num_classes: int = 1000, **kwargs) -> PreActResNet:
    return _v2(RESNET50, num_classes, kwargs)


@_register("Pre-activation ResNet", _V2, "ResNet-v2-101: pre-activation bottlenecks [3, 4, 23, 3]")
def resnetv2_101(*, num_classes: int = 1000, **kwargs) -> PreActResNet:
    return _v2(RESNET101, num_classes, kwargs)
