import math
import re

import pytest
import torch
from torch import nn

import resnetlab
from resnetlab import ResnetlabError
from resnetlab.analysis import count_parameters
from resnetlab.models import KerasBatchNorm2d
from resnetlab.models.keras_resnet50 import keras_feature_sizes


def test_parameter_totals_match_keras_summary():
    model = resnetlab.create_model("resnet50_keras")
    assert count_parameters(model) == (23_546_886, 53_120)  # Keras: total 23,600,006


def test_feature_map_sizes_at_64():
    model = resnetlab.create_model("resnet50_keras").eval()
    sizes = {}
    for name in ("conv1", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool"):
        module = model.get_submodule(name)
        module.register_forward_hook(lambda m, i, o, name=name: sizes.__setitem__(name, o.shape))
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert [s[-1] for s in sizes.values()] == [32, 15, 15, 8, 4, 2, 1]
    assert [s[1] for s in sizes.values()] == [64, 64, 256, 512, 1024, 2048, 2048]
    assert list(keras_feature_sizes(64).values()) == [32, 15, 15, 8, 4, 2, 1]


def test_other_input_sizes_size_the_dense_layer_as_keras_would():
    model = resnetlab.create_model("resnet50_keras", input_size=96)
    assert keras_feature_sizes(96)["avgpool"] == 2  # 3x3 stage-5 map, 'same' pooling
    assert model.fc.in_features == 2 * 2 * 2048
    assert model(torch.randn(2, 3, 96, 96)).shape == (2, 6)


def test_flatten_is_in_height_width_channel_order():
    model = resnetlab.create_model("resnet50_keras", input_size=96).eval()
    features = torch.arange(2048 * 2 * 2, dtype=torch.float32).reshape(1, 2048, 2, 2)
    model.avgpool = nn.Identity()
    flat = model.forward_head(features, pre_logits=True)
    # Keras's Flatten walks H, then W, then C fastest: element (h, w, c) is at h*W*C + w*C + c.
    assert flat[0, 1].item() == features[0, 1, 0, 0].item()
    assert flat[0, 2048].item() == features[0, 0, 0, 1].item()


def test_wrong_input_size_is_a_clear_error(tmp_path):
    model = resnetlab.create_model("resnet50_keras")
    with pytest.raises(ResnetlabError, match="built for 64x64 inputs"):
        model(torch.randn(1, 3, 128, 128))
    for side in (4, 7):  # 5 to 7 ran, but a model file takes no side under 8: save refused it
        with pytest.raises(ResnetlabError, match=f"must be from 8 to 2,048 pixels, got {side}$"):
            resnetlab.create_model("resnet50_keras", input_size=side)
    smallest = resnetlab.create_model("resnet50_keras", input_size=8)
    resnetlab.save_model(smallest, tmp_path / "smallest.safetensors")


def test_an_input_size_too_large_is_refused_before_its_dense_layer_is_allocated():
    # 10^6 pixels asked for a 12 TB Dense layer: a RuntimeError from the allocator.
    with pytest.raises(ResnetlabError) as caught:
        resnetlab.create_model("resnet50_keras", input_size=10**6)
    assert str(caught.value) == (
        "resnet50_keras's input_size must be from 8 to 2,048 pixels, got 1,000,000"
    )
    with torch.device("meta"):  # the largest a model file holds is built
        assert resnetlab.create_model("resnet50_keras", input_size=2048).fc.in_features > 0


def test_layers_are_the_seeds():
    model = resnetlab.create_model("resnet50_keras")
    assert model.conv1.kernel_size == (7, 7) and model.conv1.padding == (3, 3)
    assert model.conv1.bias is not None
    assert model.maxpool.padding == 0 and model.maxpool.kernel_size == 3
    first = model.layer2[0]
    assert first.conv1.stride == (2, 2) and first.conv2.stride == (1, 1)
    assert first.downsample[0].stride == (2, 2) and first.downsample[0].bias is not None
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 53 and all(isinstance(m, KerasBatchNorm2d) for m in bns)
    assert all(m.eps == 1e-3 and m.momentum == 0.01 for m in bns)


def test_glorot_uniform_kernels_and_zero_biases():
    model = resnetlab.create_model("resnet50_keras")
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * math.prod(m.kernel_size)
            fan_out = m.out_channels * math.prod(m.kernel_size)
            limit = math.sqrt(6 / (fan_in + fan_out))
            assert m.weight.abs().max() <= limit
            assert m.weight.abs().max() > 0.9 * limit  # uniform over the whole range
            assert m.bias.abs().sum() == 0


def test_keras_layer_names_cover_every_weighted_layer():
    model = resnetlab.create_model("resnet50_keras")
    names = model.keras_layer_names()
    weighted = {
        n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.BatchNorm2d | nn.Linear)
    }
    assert set(names) == weighted
    assert len(names) == 53 + 53 + 1
    assert names["layer1.0.conv1"] == "res2a_branch2a"
    assert names["layer1.0.downsample.0"] == "res2a_branch1"
    assert names["layer1.0.downsample.1"] == "bn2a_branch1"
    assert names["layer3.5.bn3"] == "bn4f_branch2c"
    assert names["layer4.2.conv2"] == "res5c_branch2b"
    assert names["fc"] == "fc6"
    pattern = re.compile(r"(res|bn)[2-5][a-f]_branch(1|2[abc])|conv1|bn_conv1|fc6")
    assert all(pattern.fullmatch(v) for v in names.values())
    assert len(set(names.values())) == len(names)


def test_moving_variance_uses_the_biased_batch_variance():
    bn = KerasBatchNorm2d(3).train()
    x = torch.randn(4, 3, 5, 5) * 2 + 1
    bn(x)
    batch_mean = x.mean((0, 2, 3))
    biased_var = x.var((0, 2, 3), unbiased=False)
    # Keras: moving = 0.99 * moving + 0.01 * batch statistic, from (0, 1).
    torch.testing.assert_close(bn.running_mean, 0.01 * batch_mean, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(bn.running_var, 0.99 + 0.01 * biased_var, rtol=1e-6, atol=1e-7)
    out = bn.eval()(x)
    expected = (x - bn.running_mean[:, None, None]) / torch.sqrt(
        bn.running_var[:, None, None] + 1e-3
    )
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
