"""The CIFAR-10 ResNets and plain nets of He et al. (2015), section 4.2.

A 3x3 conv with 16 filters, then three stages of ``n`` basic blocks on 32x32, 16x16 and
8x8 maps with 16, 32 and 64 filters, global average pooling and a 10-way classifier:
``6n + 2`` weighted layers. Shortcuts are option A (parameter-free) by default, as in the
paper's CIFAR experiments; ``shortcut="B"`` gives projections where the shape changes.
"""

from __future__ import annotations

from .blocks import BasicBlock
from .registry import register_model
from .resnet import ResNet

CIFAR_WIDTHS = (16, 32, 64)


def cifar_resnet(depth: int, *, num_classes: int = 10, **kwargs) -> ResNet:
    """The CIFAR net with ``depth = 6n + 2`` weighted layers (any n >= 1)."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"CIFAR ResNet depth must be 6n + 2 with n >= 1 (8, 14, 20...), got {depth}"
        )
    n = (depth - 2) // 6
    kwargs.setdefault("shortcut", "A")
    return ResNet(
        BasicBlock, (n, n, n), num_classes=num_classes, widths=CIFAR_WIDTHS, stem="cifar", **kwargs
    )


def _register(depth: int, residual: bool) -> None:
    name = f"{'resnet' if residual else 'plain'}{depth}"

    def builder(*, num_classes: int = 10, **kwargs) -> ResNet:
        return cifar_resnet(depth, num_classes=num_classes, residual=residual, **kwargs)

    builder.__name__ = builder.__qualname__ = name
    description = (
        f"CIFAR ResNet-{depth}, option A shortcuts"
        if residual
        else f"CIFAR plain-{depth}: ResNet-{depth} without shortcuts"
    )
    register_model(family="cifar", input_size=32, num_classes=10, description=description)(builder)


# The paper's depths, and 8 and 14: small enough to train in minutes on a CPU, where the
# degradation experiment's quick mode needs a shallow end.
for _depth in (8, 14, 20, 32, 44, 56, 110, 1202):
    _register(_depth, residual=True)
for _depth in (8, 14, 20, 32, 44, 56, 110):
    _register(_depth, residual=False)
