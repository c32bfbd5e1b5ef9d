import pytest
import torch
from torch import nn

import resnetlab
from resnetlab.models.cifar import cifar_resnet


@pytest.mark.parametrize("depth", [8, 14, 20, 32, 44, 56, 110])
def test_depth_is_6n_plus_2_weighted_layers(depth):
    model = resnetlab.create_model(f"resnet{depth}")
    weighted = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert len(weighted) == depth  # option A shortcuts add no conv


def test_stage_widths_and_map_sizes():
    model = resnetlab.create_model("resnet20").eval()
    x = torch.randn(1, 3, 32, 32)
    sizes = []
    x = model.relu(model.bn1(model.conv1(x)))
    for stage in model.stages:
        x = stage(x)
        sizes.append(tuple(x.shape[1:]))
    assert sizes == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]


def test_plain_and_residual_share_every_key():
    for depth in (8, 14, 20, 32, 44, 56, 110):
        plain = resnetlab.create_model(f"plain{depth}").state_dict()
        res = resnetlab.create_model(f"resnet{depth}").state_dict()
        assert {k: v.shape for k, v in plain.items()} == {k: v.shape for k, v in res.items()}


def test_other_depths_and_bad_depths():
    assert sum(isinstance(m, nn.Conv2d) for m in cifar_resnet(8).modules()) == 7
    with pytest.raises(ValueError, match="6n \\+ 2"):
        cifar_resnet(21)
