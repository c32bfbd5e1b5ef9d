"""The CIFAR-10 nets: He et al. (2015), section 4.2, and the pre-activation and wide
ResNets that followed.

- ``resnetN`` / ``plainN`` (He et al. 2015): a 3x3 conv with 16 filters, then three stages
  of ``n`` basic blocks on 32x32, 16x16 and 8x8 maps with 16, 32 and 64 filters, global
  average pooling and a 10-way classifier: ``6n + 2`` weighted layers. Shortcuts are option
  A (parameter-free) by default, as in the paper's CIFAR experiments; ``shortcut="B"``
  gives projections where the shape changes.
- ``resnet164``, ``resnet1001``: the bottleneck nets of He et al. (2016), "Identity
  Mappings", with the original units (their Table 3 baseline): ``9n + 2`` layers, stages
  of 64, 128 and 256 output channels, projection shortcuts where the shape changes.
- ``preresnetN`` (He et al. 2016): the same nets with pre-activation units; the basic
  ones keep option A shortcuts, the bottleneck ones (164, 1001) project, as the paper does.
- ``wrnD_K`` (Zagoruyko & Komodakis 2016): wide ResNets WRN-D-K, pre-activation basic
  units ``K`` times as wide (16K, 32K, 64K), ``6n + 4`` layers, projection shortcuts;
  ``drop_rate=0.3`` gives the paper's WRN-D-K-dropout.

The bottleneck nets put the stride on the first 1x1 conv, as the released code of
"Identity Mappings" (KaimingHe/resnet-1k-layers) does; ``stride_in_1x1=False`` moves it
to the 3x3.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from .blocks import BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck
from .preact import PreActResNet
from .registry import register_model
from .resnet import ResNet

CIFAR_WIDTHS = (16, 32, 64)


def _blocks_per_stage(depth: int, layers_per_block: int, extra: int, what: str) -> int:
    """``n`` of a ``depth = 3 * layers_per_block * n + extra`` net, or a clear error."""
    step = 3 * layers_per_block
    if depth < step + extra or (depth - extra) % step:
        examples = ", ".join(str(step * n + extra) for n in (1, 2, 3))
        raise ValueError(
            f"{what} depth must be {step}n + {extra} with n >= 1 ({examples}...), got {depth}"
        )
    return (depth - extra) // step


def cifar_resnet(
    depth: int, *, num_classes: int = 10, bottleneck: bool = False, **kwargs
) -> ResNet:
    """The CIFAR net with ``depth`` weighted layers: ``6n + 2`` basic (option A shortcuts),
    or with ``bottleneck=True`` ``9n + 2`` bottleneck (projections, stride on the 1x1)."""
    if bottleneck:
        n = _blocks_per_stage(depth, 3, 2, "CIFAR bottleneck ResNet")
        kwargs = {"shortcut": "B", "stride_in_1x1": True, **kwargs}
    else:
        n = _blocks_per_stage(depth, 2, 2, "CIFAR ResNet")
        kwargs = {"shortcut": "A", **kwargs}
    block = Bottleneck if bottleneck else BasicBlock
    kwargs = {"widths": CIFAR_WIDTHS, "stem": "cifar", **kwargs}  # an option given wins
    return ResNet(block, (n, n, n), num_classes=num_classes, **kwargs)


def cifar_preresnet(
    depth: int, *, num_classes: int = 10, bottleneck: bool = False, **kwargs
) -> PreActResNet:
    """The pre-activation CIFAR net with ``depth`` weighted layers: ``6n + 2`` basic
    (option A shortcuts), or ``9n + 2`` bottleneck (projections, stride on the 1x1)."""
    if bottleneck:
        n = _blocks_per_stage(depth, 3, 2, "CIFAR pre-activation bottleneck ResNet")
        kwargs = {"shortcut": "B", "stride_in_1x1": True, **kwargs}
    else:
        n = _blocks_per_stage(depth, 2, 2, "CIFAR pre-activation ResNet")
        kwargs = {"shortcut": "A", **kwargs}
    block = PreActBottleneck if bottleneck else PreActBasicBlock
    kwargs = {"widths": CIFAR_WIDTHS, "stem": "cifar", **kwargs}  # an option given wins
    return PreActResNet(block, (n, n, n), num_classes=num_classes, **kwargs)


def wide_resnet(depth: int, widen: int, *, num_classes: int = 10, **kwargs) -> PreActResNet:
    """WRN-``depth``-``widen`` (``depth = 6n + 4``): a 16-filter stem conv, three stages of
    ``n`` pre-activation basic units with ``16 * widen``, ``32 * widen`` and ``64 * widen``
    filters, projection shortcuts (Zagoruyko & Komodakis 2016, Table 1)."""
    n = _blocks_per_stage(depth, 2, 4, "wide ResNet")
    if widen < 1:
        raise ValueError(f"a wide ResNet's widening factor must be at least 1, got {widen}")
    widths = tuple(w * widen for w in CIFAR_WIDTHS)
    kwargs = {"widths": widths, "stem": "cifar", "stem_width": CIFAR_WIDTHS[0], **kwargs}
    return PreActResNet(PreActBasicBlock, (n, n, n), num_classes=num_classes, **kwargs)


def _register(name: str, build: Callable[..., nn.Module], **info: str) -> None:
    def builder(*, num_classes: int = 10, **kwargs) -> nn.Module:
        return build(num_classes=num_classes, **kwargs)

    builder.__name__ = builder.__qualname__ = name
    register_model(family="cifar", input_size=32, num_classes=10, **info)(builder)


BOTTLENECK_DEPTHS = {164: 18, 1001: 111}  # the bottleneck nets: depth -> blocks per stage
_HE2015 = "He et al. 2015, section 4.2 and Table 6"
_HE2016 = "He et al. 2016 (Identity Mappings)"


def _units(depth: int) -> str:
    if depth in BOTTLENECK_DEPTHS:
        return f"bottlenecks [{BOTTLENECK_DEPTHS[depth]}] x 3, projections"
    return "option A shortcuts"


# The paper's depths, and 8 and 14: small enough to train in minutes on a CPU, where the
# degradation experiment's quick mode needs a shallow end. 164 and 1001 are the
# bottleneck nets of "Identity Mappings", with the original units.
for _d in (8, 14, 20, 32, 44, 56, 110, 164, 1001, 1202):
    _bottleneck = _d in BOTTLENECK_DEPTHS
    _register(
        f"resnet{_d}",
        partial(cifar_resnet, _d, bottleneck=_bottleneck),
        group="CIFAR ResNet",
        source=f"{_HE2016}, Table 3 (original units)" if _bottleneck else _HE2015,
        description=f"CIFAR ResNet-{_d}, "
        + ("original units: " if _bottleneck else "")
        + _units(_d),
    )
for _d in (8, 14, 20, 32, 44, 56, 110):
    _register(
        f"plain{_d}",
        partial(cifar_resnet, _d, residual=False),
        group="CIFAR ResNet",
        source=f"{_HE2015} (plain, Fig. 6)",
        description=f"CIFAR plain-{_d}: ResNet-{_d} without shortcuts",
    )
for _d in (8, 14, 20, 32, 44, 56, 110, 164, 1001):
    _register(
        f"preresnet{_d}",
        partial(cifar_preresnet, _d, bottleneck=_d in BOTTLENECK_DEPTHS),
        group="CIFAR pre-activation ResNet",
        source=f"{_HE2016}, Tables 3-4"
        if _d in (110, 164, 1001)
        else f"{_HE2016} units at He et al. 2015's depths",
        description=f"CIFAR pre-activation ResNet-{_d}, {_units(_d)}",
    )
for _d, _k in ((16, 8), (28, 10)):
    _register(
        f"wrn{_d}_{_k}",
        partial(wide_resnet, _d, _k),
        group="CIFAR wide ResNet",
        source="Zagoruyko & Komodakis 2016, Tables 1 and 4",
        description=f"WRN-{_d}-{_k}: pre-activation basic units {_k}x as wide; "
        "drop_rate=0.3 for dropout",
    )
