"""Pre-activation ResNets (He et al. 2016, "Identity Mappings in Deep Residual Networks").

Each unit is ``x + F(relu(bn(x)))`` with BN-ReLU-conv inside ``F`` and nothing after the
addition, so the signal and its gradient pass from any unit to any other through
identities alone. The stem is a bare conv (the first unit's BN-ReLU follows it) and a last
BN-ReLU comes before the pooling.

One class builds the ImageNet ResNet-v2 (``resnetv2_50``, ``resnetv2_101``), the CIFAR
pre-activation ResNets (``preresnet*``) and the wide ResNets (``wrn*``, which are
pre-activation nets too). State-dict keys are timm's ``ResNetV2``: ``stem.conv``,
``stages.<i>.blocks.<j>.{norm1,conv1,...}``, ``norm``, ``head.fc`` (a 1x1 conv).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
from torch import nn

from .blocks import (
    ActLayer,
    NormLayer,
    PreActBasicBlock,
    PreActBottleneck,
    Shortcut,
    check_features,
    check_images,
    check_option_types,
    make_stage,
)
from .registry import classifier_size
from .resnet import init_weights

PreActBlock = type[PreActBasicBlock] | type[PreActBottleneck]


class Stage(nn.Module):
    """A stage whose blocks are keyed ``blocks.<j>``, as timm's ``ResNetStage``;
    iterating it gives the blocks."""

    def __init__(self, blocks: nn.Sequential) -> None:
        super().__init__()
        self.blocks = blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)

    def __iter__(self) -> Iterator[nn.Module]:
        return iter(self.blocks)

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, index: int) -> nn.Module:
        return self.blocks[index]


class ConvHead(nn.Module):
    """The classifier as a 1x1 conv over the pooled (B, C, 1, 1) features, flattened:
    timm's ``ClassifierHead(use_conv=True)``, key ``head.fc``. The same numbers as a linear
    layer; its weight is (num_classes, C, 1, 1)."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Conv2d(in_features, num_classes, 1) if num_classes > 0 else nn.Identity()
        if num_classes > 0 and not self.fc.weight.is_meta:  # see resnet.init_weights
            nn.init.normal_(self.fc.weight, std=0.01)  # timm's initialisation of it
            nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x).flatten(1)


class PreActResNet(nn.Module):
    """A bare stem conv, stages of pre-activation blocks, BN-ReLU, pooling and a classifier.

    Args:
        block: ``PreActBasicBlock`` or ``PreActBottleneck``.
        layers: blocks per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-v2-50.
        num_classes: outputs of the classifier; 0 leaves the head as an identity.
        widths: base channels of each stage (a bottleneck stage outputs 4x this).
        stem: ``"imagenet"`` (7x7/2 conv + 3x3/2 max pool) or ``"cifar"`` (3x3 conv).
        stem_width: channels of the stem conv (default ``widths[0]``).
        residual: ``False`` builds the plain twin: the same layers, no shortcuts.
        shortcut: ``"A"`` (zero-padding), ``"B"`` (1x1 projection of the pre-activated
            input) or ``"D"`` (average pool, then the projection).
        stride_in_1x1: bottlenecks only; stride on the first 1x1 conv, as the paper's
            code does, instead of the 3x3 (timm's choice).
        groups, base_width: bottlenecks only; as in ``ResNet``.
        drop_rate: basic blocks only; dropout between the two convs (wide ResNets).
        zero_init_residual: zero each block's last conv so every block starts as an
            identity map.
        norm_layer, act_layer: factories for the normalisation and activation.
    """

    def __init__(
        self,
        block: PreActBlock,
        layers: Sequence[int],
        *,
        num_classes: int = 1000,
        widths: Sequence[int] = (64, 128, 256, 512),
        stem: Literal["imagenet", "cifar"] = "imagenet",
        stem_width: int | None = None,
        residual: bool = True,
        shortcut: Shortcut = "B",
        stride_in_1x1: bool = False,
        groups: int = 1,
        base_width: int = 64,
        drop_rate: float = 0.0,
        zero_init_residual: bool = False,
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
    ) -> None:
        super().__init__()
        check_option_types(
            widths=widths,
            residual=residual,
            stride_in_1x1=stride_in_1x1,
            zero_init_residual=zero_init_residual,
            stem_width=stem_width,
            groups=groups,
            base_width=base_width,
            drop_rate=drop_rate,
            norm_layer=norm_layer,
            act_layer=act_layer,
        )
        if len(layers) != len(widths):
            raise ValueError(f"{len(layers)} stages but {len(widths)} widths")
        block_kwargs: dict = dict(
            residual=residual, shortcut=shortcut, norm_layer=norm_layer, act_layer=act_layer
        )
        if block is PreActBottleneck:
            block_kwargs.update(stride_in_1x1=stride_in_1x1, groups=groups, base_width=base_width)
        elif stride_in_1x1 or groups != 1 or base_width != 64:
            raise ValueError("stride_in_1x1, groups and base_width apply only to bottlenecks")
        if block is PreActBasicBlock:
            block_kwargs["drop_rate"] = drop_rate
        elif drop_rate:
            raise ValueError("drop_rate applies only to basic blocks (wide ResNets)")
        self.residual = residual

        in_channels = stem_width or widths[0]
        self.stem = _make_stem(stem, in_channels)
        self.stages = nn.Sequential()
        for i, (num_blocks, width) in enumerate(zip(layers, widths, strict=True)):
            stride = 1 if i == 0 else 2
            blocks = make_stage(
                block, in_channels, width, num_blocks, stride=stride, **block_kwargs
            )
            self.stages.add_module(str(i), Stage(blocks))
            in_channels = width * block.expansion
        self.num_stages = len(layers)
        self.num_features = in_channels
        self.norm = norm_layer(in_channels)
        self.act = act_layer()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_classes = num_classes
        init_weights(self, zero_init_residual)
        self.head = ConvHead(self.num_features, num_classes)

    def stage_name(self, i: int) -> str:
        """The module name of stage ``i`` (1-based): ``stages.{i - 1}``."""
        return f"stages.{i - 1}"

    def feature_layer(self) -> str:
        """The module whose output is ``forward_features``'s: ``act``, the final BN-ReLU's
        ReLU. The last stage's output comes before that BN-ReLU, which the pooling and the
        classifier see through."""
        return "act"

    def stage_of(self, name: str) -> int:
        """The stage of a parameter, buffer or module by its name: 0 for the stem, ``i`` for
        ``stages.{i - 1}`` (the final ``norm`` and ``act`` with the last), ``num_stages + 1``
        for the head."""
        top, _, rest = name.partition(".")
        if top == "head":
            return self.num_stages + 1
        if top in ("norm", "act"):
            return self.num_stages
        index = rest.split(".", 1)[0]
        return int(index) + 1 if top == "stages" and index.isdigit() else 0

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images -> (B, C, h, w) last feature map, after the final BN-ReLU."""
        check_images(x)
        return self.act(self.norm(self.stages(self.stem(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, C, h, w) feature map -> (B, num_classes) logits, or pooled features."""
        check_features(x, self.num_features)
        x = self.avgpool(x)  # (B, C, 1, 1)
        return x.flatten(1) if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The classifier, ``head.fc`` (a 1x1 conv; an ``nn.Identity`` without one), as
        timm's ``ResNetV2`` gives it."""
        return self.head.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised one for ``num_classes`` outputs
        (0: none, ``forward`` gives the pooled features)."""
        num_classes = classifier_size(num_classes)
        self.num_classes = num_classes
        self.head = ConvHead(self.num_features, num_classes)


def _make_stem(stem: str, width: int) -> nn.Sequential:
    """``stem.conv`` (and ``stem.pool``), as timm's; no BN: the first block's comes next."""
    if stem == "imagenet":
        return nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False),
                pool=nn.MaxPool2d(3, stride=2, padding=1),
            )
        )
    if stem == "cifar":
        return nn.Sequential(OrderedDict(conv=nn.Conv2d(3, width, 3, padding=1, bias=False)))
    raise ValueError(f"unknown stem {stem!r}; choose 'imagenet' or 'cifar'")
