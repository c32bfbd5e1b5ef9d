import pytest
import torch
from torch import nn

import resnetlab
from resnetlab.engine import TrainConfig
from resnetlab.engine.cpu import SmallMapConv2d, use_small_map_convs
from resnetlab.engine.optim import set_lr
from resnetlab.engine.step import build_training


@pytest.mark.parametrize(
    ("in_ch", "out_ch", "kernel", "stride", "padding", "bias", "size"),
    [
        (16, 32, 3, 1, 1, False, 2),  # 3x3 on a 2x2 map
        (16, 32, 3, 2, 1, True, 4),  # stride 2: 4x4 -> 2x2, with a bias (the Keras seed)
        (16, 32, 1, 2, 0, False, 4),  # a projection shortcut
        (16, 8, 3, 1, 1, False, 1),  # 1x1 map
        (16, 8, 3, 1, 1, False, 8),  # 8x8: nn.Conv2d's own path
    ],
)
@pytest.mark.parametrize("channels_last", [False, True])
def test_small_map_conv_matches_conv2d(
    in_ch, out_ch, kernel, stride, padding, bias, size, channels_last
):
    reference = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=bias)
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=bias)
    conv.load_state_dict(reference.state_dict())
    use_small_map_convs(conv)
    assert isinstance(conv, SmallMapConv2d)
    x = torch.randn(5, in_ch, size, size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        conv = conv.to(memory_format=torch.channels_last)
    xr = x.detach().clone().requires_grad_()
    xs = x.detach().clone().requires_grad_()
    expected, got = reference(xr), conv(xs)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(expected)
    expected.backward(grad)
    got.backward(grad)
    torch.testing.assert_close(xs.grad, xr.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv.weight.grad, reference.weight.grad, rtol=1e-4, atol=1e-4)


def test_small_maps_are_found_and_laid_out_for_the_input_size():
    model = resnetlab.create_model("resnet18").to(memory_format=torch.channels_last)
    keys = set(model.state_dict())
    use_small_map_convs(model, input_size=64)
    assert set(model.state_dict()) == keys  # same model file
    convs = dict(model.named_modules())
    # At 64x64 the last stage works on 2x2 maps: its weights are read as matrices.
    assert convs["layer4.1.conv2"].weight.is_contiguous()
    assert convs["layer4.0.downsample.0"].weight.is_contiguous()
    assert convs["layer3.1.conv2"].weight.is_contiguous(memory_format=torch.channels_last)
    assert convs["conv1"].weight.is_contiguous(memory_format=torch.channels_last)
    assert model.training  # the probe left the mode as it was


def test_training_step_with_small_maps_gives_the_plain_loss():
    """ResNet-18 at 32x32 ends on 1x1 maps: the CPU step takes the matrix-product path."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 32, 32, generator=generator)
    y = torch.randint(0, 10, (8,), generator=generator)
    losses = {}
    for name, config in {
        "plain": TrainConfig(model="resnet18", precision="fp32", channels_last=False),
        "fast": TrainConfig(model="resnet18", precision="fp32", channels_last=True),
    }.items():
        parts = build_training(config, torch.device("cpu"), num_classes=10, input_size=32)
        if name == "plain":  # the same model with nn.Conv2d everywhere
            for m in parts.model.modules():
                if type(m) is SmallMapConv2d:
                    m.__class__ = nn.Conv2d
        else:
            assert any(type(m) is SmallMapConv2d for m in parts.model.modules())
        values = []
        for _ in range(2):
            set_lr(parts.optimizer, config.lr)
            parts.step(x, y)
            values.append(parts.step.take_sums()[0].item() / len(y))
        losses[name] = values
    assert losses["fast"] == pytest.approx(losses["plain"], rel=1e-4)
