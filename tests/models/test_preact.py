import pytest
import torch
from torch import nn

import resnetlab
from resnetlab.models import PreActBasicBlock, PreActBottleneck, PreActResNet


def test_stem_stages_final_norm_and_head():
    model = resnetlab.create_model("preresnet20").eval()
    assert isinstance(model, PreActResNet)
    assert [type(m) for m in model.stem] == [nn.Conv2d]  # no BN: the first unit's comes next
    x = torch.randn(2, 3, 32, 32)
    features = model.forward_features(x)
    assert features.shape == (2, 64, 8, 8) and features.min() >= 0  # after the last BN-ReLU
    assert [len(stage) for stage in model.stages] == [3, 3, 3]
    assert all(isinstance(b, PreActBasicBlock) for stage in model.stages for b in stage)
    # The head is a 1x1 conv (timm's keys) that computes what a linear layer would.
    pooled = model.forward_head(features, pre_logits=True)
    weight = model.head.fc.weight.flatten(1)
    torch.testing.assert_close(model(x), pooled @ weight.T + model.head.fc.bias)


@pytest.mark.parametrize(("block", "channels"), [(PreActBasicBlock, 16), (PreActBottleneck, 4)])
def test_zero_initialised_unit_is_the_identity(block, channels):
    unit = block(16, channels)
    unit.zero_init_last()
    x = torch.randn(2, 16, 8, 8)  # any sign: nothing follows the addition
    assert torch.equal(unit.eval()(x), x)


def test_zero_init_residual_zeroes_every_last_conv():
    model = resnetlab.create_model("preresnet20", zero_init_residual=True)
    blocks = [b for stage in model.stages for b in stage]
    assert len(blocks) == 9 and all(b.conv2.weight.abs().sum() == 0 for b in blocks)
    assert all(b.conv1.weight.abs().sum() > 0 for b in blocks)


def test_projection_reads_the_preactivated_input_and_option_a_the_input():
    torch.manual_seed(0)
    projected = PreActBasicBlock(16, 32, stride=2, shortcut="B").eval()
    nn.init.zeros_(projected.conv2.weight)  # leaves the shortcut alone
    x = torch.randn(2, 16, 8, 8)
    pre = torch.relu(projected.norm1(x))
    assert torch.allclose(projected(x), projected.downsample.conv(pre))
    padded = PreActBasicBlock(16, 32, stride=2, shortcut="A").eval()
    nn.init.zeros_(padded.conv2.weight)
    out = padded(x)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2]) and out[:, :8].abs().sum() == 0


def test_plain_twin_has_no_addition():
    plain = PreActBasicBlock(16, 16, residual=False).eval()
    nn.init.zeros_(plain.conv2.weight)
    assert plain(torch.randn(2, 16, 8, 8)).abs().sum() == 0
    assert plain.downsample is None


def test_dropout_sits_between_the_convs_of_basic_units_only():
    model = resnetlab.create_model("wrn16_8", drop_rate=0.3)
    block = model.stages[0][0]
    assert isinstance(block.drop, nn.Dropout) and block.drop.p == 0.3
    assert isinstance(resnetlab.create_model("wrn16_8").stages[0][0].drop, nn.Identity)
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # no dropout in eval mode
    with pytest.raises(resnetlab.ResnetlabError, match="drop_rate applies only to basic"):
        resnetlab.create_model("preresnet164", drop_rate=0.3)
    with pytest.raises(resnetlab.ResnetlabError, match=r"drop_rate must be in \[0, 1\)"):
        resnetlab.create_model("wrn16_8", drop_rate=1.5)


def test_reset_classifier_and_features_only():
    model = resnetlab.create_model("preresnet20", num_classes=0).eval()
    x = torch.randn(1, 3, 32, 32)
    assert model(x).shape == (1, 64)
    model.reset_classifier(7)
    assert model(x).shape == (1, 7) and model.num_classes == 7
