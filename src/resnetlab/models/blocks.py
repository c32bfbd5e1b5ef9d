"""Residual blocks shared by every model family.

A block computes ``relu(F(x) + shortcut(x))`` when ``residual=True`` and ``relu(F(x))``
when ``residual=False``: a plain net is the same net with the additions taken out, so a
plain net and its residual twin share every conv and BN key.

Shortcuts, as named in He et al. (2015), section 3.3:

- identity: used whenever input and output shapes agree;
- option ``"A"``: parameter-free; subsample by the stride and zero-pad the new channels;
- option ``"B"``: a projection (1x1 conv + BN) where the shape changes, identity elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Shortcut = Literal["A", "B"]
NormLayer = Callable[[int], nn.Module]
ActLayer = Callable[[], nn.Module]

SHORTCUTS = ("A", "B")


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=bias)


class PadShortcut(nn.Module):
    """Option A: subsample by ``stride`` and zero-pad channels on both sides. No parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError("option A shortcuts can only add channels")
        self.stride = stride
        self.pad_before = (out_channels - in_channels) // 2
        self.pad_after = out_channels - in_channels - self.pad_before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        # F.pad pads the last dims first: (W, W, H, H, C, C).
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad=({self.pad_before}, {self.pad_after})"


def make_shortcut(
    kind: Shortcut,
    in_channels: int,
    out_channels: int,
    stride: int,
    norm_layer: NormLayer,
    bias: bool = False,
) -> nn.Module | None:
    """The shortcut module of a residual block, or ``None`` for an identity shortcut."""
    if kind not in SHORTCUTS:
        raise ValueError(f"unknown shortcut {kind!r}; choose one of {', '.join(SHORTCUTS)}")
    if stride == 1 and in_channels == out_channels:
        return None
    if kind == "A":
        return PadShortcut(in_channels, out_channels, stride)
    return nn.Sequential(
        conv1x1(in_channels, out_channels, stride, bias=bias), norm_layer(out_channels)
    )


class BasicBlock(nn.Module):
    """Two 3x3 convs (the paper's Fig. 2, left). Keys match torchvision's ``BasicBlock``."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        channels: int,
        *,
        stride: int = 1,
        residual: bool = True,
        shortcut: Shortcut = "B",
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
        bias: bool = False,
    ) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.residual = residual
        self.stride = stride
        self.conv1 = conv3x3(in_channels, channels, stride, bias=bias)
        self.bn1 = norm_layer(channels)
        self.relu = act_layer()
        self.conv2 = conv3x3(channels, out_channels, bias=bias)
        self.bn2 = norm_layer(out_channels)
        self.downsample = (
            make_shortcut(shortcut, in_channels, out_channels, stride, norm_layer, bias)
            if residual
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)

    def zero_init_last(self) -> None:
        """Start the block as an identity map (Goyal et al. 2017): zero the last BN scale."""
        nn.init.zeros_(self.bn2.weight)

    @property
    def last_norm(self) -> nn.Module:
        return self.bn2


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (the paper's Fig. 5, right). Keys match torchvision's.

    ``stride_in_1x1=False`` puts the stride on the 3x3 conv (ResNet v1.5, torchvision's
    default); ``True`` puts it on the first 1x1 conv, as in the paper and the Keras seed.
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        channels: int,
        *,
        stride: int = 1,
        residual: bool = True,
        shortcut: Shortcut = "B",
        norm_layer: NormLayer = nn.BatchNorm2d,
        act_layer: ActLayer = nn.ReLU,
        bias: bool = False,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.residual = residual
        self.stride = stride
        self.conv1 = conv1x1(in_channels, channels, stride_1x1, bias=bias)
        self.bn1 = norm_layer(channels)
        self.conv2 = conv3x3(channels, channels, stride_3x3, bias=bias)
        self.bn2 = norm_layer(channels)
        self.conv3 = conv1x1(channels, out_channels, bias=bias)
        self.bn3 = norm_layer(out_channels)
        self.relu = act_layer()
        self.downsample = (
            make_shortcut(shortcut, in_channels, out_channels, stride, norm_layer, bias)
            if residual
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)

    def zero_init_last(self) -> None:
        """Start the block as an identity map (Goyal et al. 2017): zero the last BN scale."""
        nn.init.zeros_(self.bn3.weight)

    @property
    def last_norm(self) -> nn.Module:
        return self.bn3


Block = type[BasicBlock] | type[Bottleneck]


def make_stage(
    block: Block, in_channels: int, channels: int, num_blocks: int, *, stride: int, **block_kwargs
) -> nn.Sequential:
    """``num_blocks`` blocks; the first one changes resolution (``stride``) and width."""
    blocks = [block(in_channels, channels, stride=stride, **block_kwargs)]
    out_channels = channels * block.expansion
    blocks += [block(out_channels, channels, **block_kwargs) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)
