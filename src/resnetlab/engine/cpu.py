"""CPU speed-ups of the training and inference paths.

Convolutions whose output map has at most ``SMALL_MAP_PIXELS`` pixels (the last stage of
an ImageNet ResNet at 32x32 or 64x64 inputs, of the seed's model at 64x64) are computed as
one matrix product over unfolded patches. oneDNN's kernels are tuned for large maps: on 2
CPU cores the backward pass of ResNet-18's 512-channel 3x3 conv on a 2x2 map took 61 ms
(90 ms channels-last), and the same conv as unfold + matrix product 22 ms. A ResNet-18
training step at 64x64 ran 1.2x to 1.3x faster with it, at 32x32 1.6x.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SMALL_MAP_PIXELS = 4  # 2x2 and smaller; at 4x4 oneDNN was as fast as the matrix product


class SmallMapConv2d(nn.Conv2d):
    """``nn.Conv2d`` that, on the CPU, computes small output maps as one matrix product.

    Same parameters, state-dict keys and results (up to rounding) as ``nn.Conv2d``; other
    devices and larger maps take ``nn.Conv2d``'s path.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = _output_size(self, x)
        if x.device.type != "cpu" or x.ndim != 4 or height * width > SMALL_MAP_PIXELS:
            return super().forward(x)
        batch = x.shape[0]
        # (B, C_in * kh * kw, h * w) patches; weight (C_out, C_in * kh * kw).
        patches = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)
        out = self.weight.reshape(self.out_channels, -1) @ patches  # (B, C_out, h * w)
        if self.bias is not None:
            out = out + self.bias[:, None]
        return out.view(batch, self.out_channels, height, width)


def _output_size(conv: nn.Conv2d, x: torch.Tensor) -> tuple[int, int]:
    size = []
    for dim in (0, 1):
        extent = x.shape[-2 + dim] + 2 * conv.padding[dim] - conv.kernel_size[dim]
        size.append(extent // conv.stride[dim] + 1)
    return size[0], size[1]


def use_small_map_convs(model: nn.Module, input_size: int | None = None) -> nn.Module:
    """Give every plain convolution of ``model`` the small-map CPU path, in place.

    Args:
        model: a model on the CPU (on other devices the convolutions behave as before).
        input_size: the image side it will see; the convolutions whose maps are small at
            that size get their weights in the default (NCHW) layout, which their matrix
            product reads without a copy, also when the model is channels-last.
    """
    convs = [
        m
        for m in model.modules()
        if type(m) is nn.Conv2d
        and m.groups == 1
        and m.dilation == (1, 1)
        and m.padding_mode == "zeros"
        and isinstance(m.padding, tuple)
    ]
    for conv in convs:
        conv.__class__ = SmallMapConv2d
    if input_size is None or not convs:
        return model
    small = set()

    def record(module: nn.Module, inputs: tuple, _output: torch.Tensor) -> None:
        height, width = _output_size(module, inputs[0])
        if height * width <= SMALL_MAP_PIXELS:
            small.add(module)

    handles = [conv.register_forward_hook(record) for conv in convs]
    param = next(model.parameters())
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, input_size, input_size, dtype=param.dtype))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    with torch.no_grad():
        for conv in small:
            conv.weight.data = conv.weight.data.contiguous()
    return model
