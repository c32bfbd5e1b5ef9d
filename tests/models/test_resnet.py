import pytest
import torch
import torchvision

import resnetlab
from resnetlab.models import Bottleneck


def _outputs_match(ours, theirs, size=64):
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        return (ours.eval()(x) - theirs.eval()(x)).abs().max().item()


def _randomise_bn_statistics(model):
    # Fresh BN statistics are (0, 1), which would hide a wrong mapping of running stats.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_weights_load_strictly_and_give_the_same_outputs(name):
    theirs = getattr(torchvision.models, name)(weights=None)
    _randomise_bn_statistics(theirs)
    ours = resnetlab.create_model(name)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert _outputs_match(ours, theirs) < 1e-5


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_our_weights_load_into_torchvision(name):
    ours = resnetlab.create_model(name)
    _randomise_bn_statistics(ours)
    theirs = getattr(torchvision.models, name)(weights=None)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    assert _outputs_match(ours, theirs) < 1e-5


@pytest.mark.parametrize("name", ["resnet34", "resnet101", "resnet152"])
def test_state_dict_keys_and_shapes_match_torchvision(name):
    ours = resnetlab.create_model(name).state_dict()
    theirs = getattr(torchvision.models, name)(weights=None).state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


def test_v1_moves_the_stride_but_keeps_the_keys():
    v15 = resnetlab.create_model("resnet50").eval()
    v1 = resnetlab.create_model("resnet50", stride_in_1x1=True).eval()
    v1.load_state_dict(v15.state_dict(), strict=True)
    first = v1.layer2[0]
    assert isinstance(first, Bottleneck)
    assert first.conv1.stride == (2, 2) and first.conv2.stride == (1, 1)
    assert v15.layer2[0].conv1.stride == (1, 1) and v15.layer2[0].conv2.stride == (2, 2)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(v1(x), v15(x), atol=1e-4)


def test_stride_in_1x1_is_refused_for_basic_blocks():
    with pytest.raises(
        resnetlab.ResnetlabError, match="resnet18: stride_in_1x1 applies only to bottleneck"
    ):
        resnetlab.create_model("resnet18", stride_in_1x1=True)


def test_zero_init_residual_zeroes_every_last_bn():
    model = resnetlab.create_model("resnet50", zero_init_residual=True)
    blocks = [b for stage in model.stages for b in stage]
    assert len(blocks) == 16
    assert all(b.bn3.weight.abs().sum() == 0 for b in blocks)
    assert all(b.bn2.weight.abs().sum() > 0 for b in blocks)


@pytest.mark.parametrize("size", [32, 33, 100, 224])
def test_any_input_size_from_32(size):
    model = resnetlab.create_model("resnet18", num_classes=4).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, size, size)).shape == (1, 4)


def test_plain_imagenet_nets_are_the_resnets_without_projections():
    plain = resnetlab.create_model("plain34").state_dict()
    res = resnetlab.create_model("resnet34").state_dict()
    assert set(plain) < set(res)
    assert {k for k in res if k not in plain} == {k for k in res if ".downsample." in k}
    assert all(plain[k].shape == res[k].shape for k in plain)


def test_norm_eps_sets_every_batchnorms_epsilon_and_a_model_file_keeps_it(tmp_path):
    """keras.applications' ResNets use BN epsilon 1.001e-5; the option gives it exactly."""
    model = resnetlab.create_model("resnet50", norm_eps=1.001e-5, num_classes=3)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 53 and {m.eps for m in norms} == {1.001e-5}
    _randomise_bn_statistics(model)
    resnetlab.save_model(model, tmp_path / "m.safetensors")
    loaded = resnetlab.load_model(tmp_path / "m.safetensors")
    assert loaded.bn1.eps == 1.001e-5 and _outputs_match(model, loaded) == 0
    for bad, message in ((0, "must be a positive number"), ("1e-5", "must be a number")):
        with pytest.raises(resnetlab.ResnetlabError, match=f"resnet50: norm_eps {message}"):
            resnetlab.create_model("resnet50", norm_eps=bad)
