import pytest
import torch
from torch import nn

import resnetlab
from resnetlab.models import BasicBlock, Bottleneck, PadShortcut, SqueezeExcite


def _silence_residual_branch(block):
    # With the last BN's scale and shift at zero, the residual branch F(x) outputs zeros:
    # a residual block then returns relu(shortcut(x)), a plain block returns zeros.
    block.last_norm.weight.data.zero_()
    block.last_norm.bias.data.zero_()


@pytest.mark.parametrize("block_type", [BasicBlock, Bottleneck])
def test_plain_block_has_no_addition(block_type):
    width = 16
    channels = width * block_type.expansion
    x = torch.rand(2, channels, 8, 8)  # non-negative, as after a ReLU
    residual = block_type(channels, width, residual=True).eval()
    plain = block_type(channels, width, residual=False).eval()
    for block in (residual, plain):
        _silence_residual_branch(block)
    assert torch.equal(residual(x), x)
    assert torch.equal(plain(x), torch.zeros_like(x))


def test_plain_net_has_no_shortcut_anywhere():
    plain = resnetlab.create_model("plain20").eval()
    res = resnetlab.create_model("resnet20").eval()
    res.load_state_dict(plain.state_dict(), strict=True)
    for model in (plain, res):
        for stage in model.stages:
            for block in stage:
                _silence_residual_branch(block)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert plain.forward_features(x).abs().max() == 0
        assert res.forward_features(x).abs().max() > 0
    assert all(b.downsample is None for s in plain.stages for b in s)


def test_option_a_subsamples_and_zero_pads():
    shortcut = PadShortcut(16, 32, stride=2)
    x = torch.randn(2, 16, 8, 8)
    out = shortcut(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert out[:, :8].abs().sum() == 0 and out[:, 24:].abs().sum() == 0
    assert list(shortcut.parameters()) == []


def test_option_a_adds_no_parameters_and_option_b_projects():
    a = resnetlab.create_model("resnet56")
    b = resnetlab.create_model("resnet56", shortcut="B")
    plain = resnetlab.create_model("plain56")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(a) == count(plain)
    # Option B projects at the two places where width doubles: 16->32 and 32->64.
    projections = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert count(b) == count(a) + projections
    assert isinstance(b.layer2[0].downsample, nn.Sequential)
    assert isinstance(a.layer2[0].downsample, PadShortcut)
    assert a.layer1[0].downsample is None and b.layer1[0].downsample is None


def test_unknown_shortcut_is_refused():
    with pytest.raises(resnetlab.ResnetlabError, match="resnet20: unknown shortcut 'C'"):
        resnetlab.create_model("resnet20", shortcut="C")


def test_squeeze_excitation_gates_each_channel():
    se = SqueezeExcite(64).eval()
    assert (se.fc1.in_channels, se.fc1.out_channels) == (64, 8)  # 64 / 16, at least 8
    assert SqueezeExcite(2048).fc1.out_channels == 128
    x = torch.randn(2, 64, 5, 5)
    squeezed = x.mean((2, 3))  # (B, C)
    hidden = torch.relu(squeezed @ se.fc1.weight.flatten(1).T + se.fc1.bias)
    gate = torch.sigmoid(hidden @ se.fc2.weight.flatten(1).T + se.fc2.bias)  # (B, C)
    torch.testing.assert_close(se(x), x * gate[:, :, None, None])


def test_option_d_averages_before_projecting():
    block = BasicBlock(16, 32, stride=2, shortcut="D").eval()
    pool, conv, _ = block.downsample
    x = torch.randn(2, 16, 7, 7)  # odd: the last window averages only the pixels there
    pooled = pool(x)
    assert pooled.shape == (2, 16, 4, 4)
    torch.testing.assert_close(pooled[:, :, -1, -1], x[:, :, -1, -1])
    torch.testing.assert_close(pooled[:, :, 0, 0], x[:, :, :2, :2].mean((2, 3)))
    assert conv.stride == (1, 1) and conv.kernel_size == (1, 1)
    assert BasicBlock(16, 16, shortcut="D").downsample is None  # identity where shapes agree


def test_bottleneck_groups_and_width():
    block = Bottleneck(256, 64, groups=32, base_width=4)
    assert block.conv2.groups == 32 and block.conv1.out_channels == 128
    assert Bottleneck(256, 64, base_width=128).conv2.out_channels == 128
    with pytest.raises(ValueError, match="only to bottleneck"):
        BasicBlock(64, 64, groups=2)
