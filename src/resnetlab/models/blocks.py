"""Residual blocks shared by every model family.

A block computes ``relu(F(x) + shortcut(x))`` when ``residual=True`` and ``relu(F(x))``
when ``residual=False``: a plain net is the same net with the additions taken out, so a
plain net and its residual twin share every conv and BN key.

A block takes its parts: the norm and activation layers, the groups and width of a
bottleneck's 3x3 conv (ResNeXt, Xie et al. 2017; wide ResNets, Zagoruyko & Komodakis
2016), an attention module on the residual branch (squeeze-and-excitation, Hu et al. 2018)
and the kind of shortcut. ``BasicBlock`` and ``Bottleneck`` are the original units
(conv-BN-ReLU, ReLU after the addition; torchvision's and timm's keys);
``PreActBasicBlock`` and ``PreActBottleneck`` the pre-activation units of He et al. (2016),
"Identity Mappings in Deep Residual Networks" (BN-ReLU-conv, nothing after the addition;
timm's ``ResNetV2`` keys).

Shortcuts, as named in He et al. (2015), section 3.3, and He et al. (2019), "Bag of Tricks":

- identity: used whenever input and output shapes agree;
- option ``"A"``: parameter-free; subsample by the stride and zero-pad the new channels;
- option ``"B"``: a projection (1x1 conv + BN) where the shape changes, identity elsewhere;
- ``"D"`` (ResNet-D): 2x2 average pooling for the stride, then the 1x1 conv + BN, so the
  projection sees every pixel instead of one in four.

In a pre-activation block a projection has no BN of its own: it reads the block's
pre-activated input, as in the paper.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ResnetlabError

Shortcut = Literal["A", "B", "D"]
NormLayer = Callable[[int], nn.Module]
ActLayer = Callable[[], nn.Module]
AttnLayer = Callable[[int], nn.Module]

SHORTCUTS = ("A", "B", "D")


def check_images(x: object) -> None:
    """One line for what a stem cannot take as its (B, 3, H, W) float images, with the fix for
    the usual mistakes (one image without its batch, channels last, grayscale, uint8 pixels),
    instead of the first BN's or conv's error ('expected 4D input', 'to have 3 channels,
    but got 16', 'expected scalar type Byte but found Float')."""
    if torch.jit.is_tracing():  # its sizes are traced values: a TracerWarning each
        return
    if isinstance(x, torch.Tensor) and x.ndim == 4 and x.shape[1] == 3:
        if x.is_floating_point():
            return
        raise ResnetlabError(  # not the conv's 'expected scalar type Byte but found Float'
            f"the model takes float images, got {x.dtype}; give them normalised as it was "
            "trained, or at least x.float() / 255"
        )
    if not isinstance(x, torch.Tensor):
        fix = "; convert it with torch.from_numpy" if type(x).__module__ == "numpy" else ""
        raise ResnetlabError(f"the model takes a tensor of images, got {type(x).__name__}{fix}")
    shape = tuple(x.shape)
    if x.ndim == 3 and shape[0] == 3:
        fix = "one image has no batch dimension: give x.unsqueeze(0)"
    elif x.ndim == 4 and shape[-1] == 3:
        fix = "channels last (B, H, W, 3): give x.permute(0, 3, 1, 2)"
    elif x.ndim == 4 and shape[1] == 1:
        fix = "one channel, grayscale: give x.expand(-1, 3, -1, -1)"
    else:
        fix = "give images of 3 channels, RGB"
    raise ResnetlabError(f"the model takes images as (B, 3, H, W), got {shape}; {fix}")


def check_features(x: object, channels: int) -> None:
    """One line for what ``forward_head`` cannot take as its (B, ``channels``, h, w) feature
    map: pooled features (B, C) were a matmul's shape error, or with no classifier a wrong
    answer of shape (1, 1)."""
    if torch.jit.is_tracing():  # as check_images
        return
    if isinstance(x, torch.Tensor) and x.ndim == 4 and x.shape[1] == channels:
        return
    got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
    raise ResnetlabError(
        f"forward_head takes the (B, {channels}, h, w) feature map that forward_features "
        f"returns, got {got}"
    )


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


class Projection(nn.Module):
    """A pre-activation block's projection shortcut: [2x2 average pool,] 1x1 conv, no BN.

    Keys ``conv`` (and the parameter-free ``pool``) as timm's ``DownsampleConv`` and
    ``DownsampleAvg`` with ``preact=True``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, avg: bool) -> None:
        super().__init__()
        self.pool = _avg_pool(stride) if avg else nn.Identity()
        self.conv = conv1x1(in_channels, out_channels, 1 if avg else stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pool(x))


def _avg_pool(stride: int) -> nn.Module:
    # ResNet-D's pool, as timm builds it: a stride-1 stage has none; ceil mode and
    # count_include_pad=False average the edge windows of odd maps over the pixels there.
    if stride == 1:
        return nn.Identity()
    return nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)


def make_shortcut(
    kind: Shortcut,
    in_channels: int,
    out_channels: int,
    stride: int,
    norm_layer: NormLayer | None,
    bias: bool = False,
    *,
    preact: bool = False,
) -> nn.Module | None:
    """The shortcut module of a residual block, or ``None`` for an identity shortcut.

    Args:
        kind: ``"A"``, ``"B"`` or ``"D"`` (see the module docstring).
        norm_layer: the projection's BN (not used by option A or pre-activation blocks).
        preact: for a pre-activation block: projections without a BN (``Projection``).
    """
    if kind not in SHORTCUTS:
        raise ValueError(f"unknown shortcut {kind!r}; choose one of {', '.join(SHORTCUTS)}")
    if stride == 1 and in_channels == out_channels:
        return None
    if kind == "A":
        return PadShortcut(in_channels, out_channels, stride)
    if preact:
        return Projection(in_channels, out_channels, stride, avg=kind == "D")
    if kind == "D":  # keys downsample.1/.2 as timm's ResNet-D
        return nn.Sequential(
            _avg_pool(stride),
            conv1x1(in_channels, out_channels, bias=bias),
            norm_layer(out_channels),
        )
    return nn.Sequential(
        conv1x1(in_channels, out_channels, stride, bias=bias), norm_layer(out_channels)
    )


# The constructor options a user types (``--model-option``) whose type is checked: true or
# false, whole numbers (or None), numbers.
SWITCHES = ("residual", "stride_in_1x1", "zero_init_residual", "bias")
COUNTS = ("stem_width", "groups", "base_width")
RATES = ("drop_rate", "norm_eps")
PARTS = ("norm_layer", "act_layer", "attn_layer")  # module classes or factories; attn may be None


def check_option_types(**options: object) -> None:
    """Each option of the type its kind (``SWITCHES``, ``COUNTS``, ``RATES``, ``PARTS``,
    ``widths``) must have. A string such as ``"False"`` would otherwise count as true, and
    one given for a part or the widths would fail deep inside PyTorch; a ValueError names
    it."""
    for name, value in options.items():
        if name in PARTS and not (callable(value) or (name == "attn_layer" and value is None)):
            example = {"norm_layer": "torch.nn.BatchNorm2d", "act_layer": "torch.nn.SiLU"}
            raise ValueError(
                f"{name} must be a module class or factory (such as "
                f"{example.get(name, 'SqueezeExcite')}), got {value!r}; it is a Python "
                "option, which --model-option and model files cannot hold"
            )
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if name in SWITCHES and not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        if name in COUNTS and value is not None and not (number and isinstance(value, int)):
            raise ValueError(f"{name} must be a whole number, got {value!r}")
        if name in COUNTS and value is not None and value < 1:  # a conv of no channels
            raise ValueError(f"{name} must be at least 1, got {value!r}")
        if name == "widths" and not (
            isinstance(value, (list, tuple))
            and value
            and all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in value)
        ):
            raise ValueError(
                f"widths must be a list of whole numbers of channels, one per stage, such as "
                f"[16, 32, 64], got {value!r}"
            )
        if name in RATES and not (number and value == value):  # NaN is not a rate
            raise ValueError(f"{name} must be a number, got {value!r}")


def make_divisible(value: float, divisor: int = 8) -> int:
    """``value`` rounded to the nearest multiple of ``divisor`` (at least ``divisor``)."""
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): scale each channel by a gate computed
    from the globally pooled features, ``x * sigmoid(fc2(relu(fc1(mean(x)))))``.

    The two fully connected layers are 1x1 convs with biases, ``channels / reduction``
    wide (rounded to a multiple of 8), keyed ``fc1``/``fc2`` as timm's ``SEModule``.
    """

    def __init__(self, channels: int, reduction: int = 16, act_layer: ActLayer = nn.ReLU) -> None:
        super().__init__()
        hidden = make_divisible(channels / reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = act_layer()
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))  # (B, C, 1, 1)
        return x * torch.sigmoid(gate)


def bottleneck_width(channels: int, groups: int, base_width: int) -> int:
    """Channels of a bottleneck's 3x3 conv, as torchvision and timm compute them.

    ResNet-50 (``groups=1, base_width=64``) keeps ``channels``; ResNeXt-50 32x4d has 32
    groups of 4 per 64 channels (128 in its first stage); a wide ResNet-50-2 doubles
    ``base_width`` (128 in its first stage).
    """
    return int(channels * (base_width / 64)) * groups


def _check_basic(groups: int, base_width: int) -> None:
    if groups != 1 or base_width != 64:
        raise ValueError(
            "groups and base_width apply only to bottleneck blocks (ResNeXt, wide ResNets)"
        )


class BasicBlock(nn.Module):
    """Two 3x3 convs (the paper's Fig. 2, left). Keys match torchvision's ``BasicBlock``
    (and timm's, with ``se`` when ``attn_layer`` is given)."""

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
        groups: int = 1,
        base_width: int = 64,
        attn_layer: AttnLayer | None = None,
    ) -> None:
        super().__init__()
        _check_basic(groups, base_width)
        out_channels = channels * self.expansion
        self.residual = residual
        self.stride = stride
        self.conv1 = conv3x3(in_channels, channels, stride, bias=bias)
        self.bn1 = norm_layer(channels)
        self.relu = act_layer()
        self.conv2 = conv3x3(channels, out_channels, bias=bias)
        self.bn2 = norm_layer(out_channels)
        self.se = attn_layer(out_channels) if attn_layer is not None else None
        self.downsample = (
            make_shortcut(shortcut, in_channels, out_channels, stride, norm_layer, bias)
            if residual
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
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
    """1x1 reduce, 3x3, 1x1 expand (the paper's Fig. 5, right). Keys match torchvision's
    (and timm's, with ``se`` when ``attn_layer`` is given).

    ``stride_in_1x1=False`` puts the stride on the 3x3 conv (ResNet v1.5, torchvision's
    default; "ResNet-B" in Bag of Tricks); ``True`` puts it on the first 1x1 conv, as in the
    paper and the Keras seed. ``groups`` and ``base_width`` set the 3x3 conv's groups and
    width (``bottleneck_width``): ResNeXt and wide ResNets.
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
        groups: int = 1,
        base_width: int = 64,
        attn_layer: AttnLayer | None = None,
    ) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        width = bottleneck_width(channels, groups, base_width)
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.residual = residual
        self.stride = stride
        self.conv1 = conv1x1(in_channels, width, stride_1x1, bias=bias)
        self.bn1 = norm_layer(width)
        self.conv2 = nn.Conv2d(
            width, width, 3, stride=stride_3x3, padding=1, groups=groups, bias=bias
        )
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, out_channels, bias=bias)
        self.bn3 = norm_layer(out_channels)
        self.relu = act_layer()
        self.se = attn_layer(out_channels) if attn_layer is not None else None
        self.downsample = (
            make_shortcut(shortcut, in_channels, out_channels, stride, norm_layer, bias)
            if residual
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se is not None:
            out = self.se(out)
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)

    def zero_init_last(self) -> None:
        """Start the block as an identity map (Goyal et al. 2017): zero the last BN scale."""
        nn.init.zeros_(self.bn3.weight)

    @property
    def last_norm(self) -> nn.Module:
        return self.bn3


class _PreActBlock(nn.Module):
    """What the pre-activation units share: the shortcut, and how it is added.

    ``x_{l+1} = x_l + F(x_l)`` with ``F`` a stack of BN-ReLU-conv (He et al. 2016, the
    full pre-activation of Fig. 4e): nothing follows the addition, so the identity path
    runs through the whole net untouched. A
    projection shortcut reads the pre-activated input, as the paper's code does; an
    option A shortcut pads the input itself. With ``residual=False`` there is no shortcut:
    the plain twin of the same net.
    """

    def _init_shortcut(
        self, residual: bool, shortcut: Shortcut, in_channels: int, out_channels: int, stride: int
    ) -> None:
        self.residual = residual
        self.stride = stride
        self.downsample = (
            make_shortcut(shortcut, in_channels, out_channels, stride, None, preact=True)
            if residual
            else None
        )

    def _add_shortcut(self, out: torch.Tensor, x: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
        if not self.residual:
            return out
        if self.downsample is None:
            return out + x
        return out + self.downsample(x if isinstance(self.downsample, PadShortcut) else pre)


class PreActBasicBlock(_PreActBlock):
    """BN-ReLU-3x3 conv, twice (He et al. 2016, Fig. 4e). Keys as timm's ``PreActBasic``
    (``norm1, conv1, norm2, conv2``, ``downsample.conv``).

    ``drop_rate`` puts dropout between the two convs, after the second BN-ReLU: the
    wide ResNets' ``WRN-n-k-dropout`` (Zagoruyko & Komodakis 2016, section 2.4).
    """

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
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0 <= drop_rate < 1:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
        out_channels = channels * self.expansion
        self.norm1 = norm_layer(in_channels)
        self.act = act_layer()
        self.conv1 = conv3x3(in_channels, channels, stride)
        self.norm2 = norm_layer(channels)
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.conv2 = conv3x3(channels, out_channels)
        self._init_shortcut(residual, shortcut, in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act(self.norm1(x))
        out = self.conv1(pre)
        out = self.conv2(self.drop(self.act(self.norm2(out))))
        return self._add_shortcut(out, x, pre)

    def zero_init_last(self) -> None:
        """Start the block as an identity map: zero its last conv (nothing follows it)."""
        nn.init.zeros_(self.conv2.weight)


class PreActBottleneck(_PreActBlock):
    """BN-ReLU-1x1, BN-ReLU-3x3, BN-ReLU-1x1 (He et al. 2016, the units of ResNet-164 and
    ResNet-1001). Keys as timm's ``PreActBottleneck`` (``norm1..3, conv1..3``,
    ``downsample.conv``). ``stride_in_1x1``, ``groups`` and ``base_width`` as in
    ``Bottleneck``.
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
        stride_in_1x1: bool = False,
        groups: int = 1,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        width = bottleneck_width(channels, groups, base_width)
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.norm1 = norm_layer(in_channels)
        self.act = act_layer()
        self.conv1 = conv1x1(in_channels, width, stride_1x1)
        self.norm2 = norm_layer(width)
        self.conv2 = nn.Conv2d(
            width, width, 3, stride=stride_3x3, padding=1, groups=groups, bias=False
        )
        self.norm3 = norm_layer(width)
        self.conv3 = conv1x1(width, out_channels)
        self._init_shortcut(residual, shortcut, in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act(self.norm1(x))
        out = self.conv1(pre)
        out = self.conv2(self.act(self.norm2(out)))
        out = self.conv3(self.act(self.norm3(out)))
        return self._add_shortcut(out, x, pre)

    def zero_init_last(self) -> None:
        """Start the block as an identity map: zero its last conv (nothing follows it)."""
        nn.init.zeros_(self.conv3.weight)


Block = type[BasicBlock] | type[Bottleneck] | type[PreActBasicBlock] | type[PreActBottleneck]


def make_stage(
    block: Block, in_channels: int, channels: int, num_blocks: int, *, stride: int, **block_kwargs
) -> nn.Sequential:
    """``num_blocks`` blocks; the first one changes resolution (``stride``) and width."""
    blocks = [block(in_channels, channels, stride=stride, **block_kwargs)]
    out_channels = channels * block.expansion
    blocks += [block(out_channels, channels, **block_kwargs) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)
