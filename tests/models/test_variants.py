"""The ImageNet variants against the peers that ship them: strict loads, equal outputs."""

import json

import pytest
import torch
import torchvision
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import resnetlab
from resnetlab.engine import TrainConfig
from resnetlab.errors import SettingWarning
from resnetlab.models import Bottleneck, SqueezeExcite

from .test_resnet import _randomise_bn_statistics

timm = pytest.importorskip("timm")

PEERS = {
    "resnext50_32x4d": "torchvision",
    "resnext101_32x8d": "torchvision",
    "resnext101_64x4d": "torchvision",
    "wide_resnet50_2": "torchvision",
    "wide_resnet101_2": "torchvision",
    "resnet18d": "timm",
    "resnet34d": "timm",
    "resnet50c": "timm",
    "resnet50d": "timm",
    "resnet50s": "timm",
    "seresnet50": "timm",
    "seresnext50_32x4d": "timm",
    "resnetv2_50": "timm",
    "resnetv2_101": "timm",
}
# One of each group in the default run; the rest with -m slow.
DEFAULT = {"resnext50_32x4d", "wide_resnet50_2", "resnet18d", "seresnext50_32x4d", "resnetv2_50"}


def _theirs(name):
    if PEERS[name] == "torchvision":
        return torchvision.models.get_model(name, weights=None)
    return timm.create_model(name, pretrained=False)


@pytest.mark.parametrize(
    "name",
    [n if n in DEFAULT else pytest.param(n, marks=pytest.mark.slow) for n in sorted(PEERS)],
)
def test_peer_weights_load_strictly_and_give_the_same_outputs(name):
    theirs = _theirs(name).eval()  # the peer's own initialisation...
    _randomise_bn_statistics(theirs)  # ...and BN statistics that are not (0, 1)
    with torch.device("meta"):  # no initialisation of ours: the load assigns every tensor
        ours = resnetlab.create_model(name)
    ours.load_state_dict(theirs.state_dict(), strict=True, assign=True)
    # 48x48: the last stages see odd 3x3 maps, where ResNet-D's ceil-mode pooling matters.
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        expected = theirs(x)
        got = ours.eval()(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert list(ours.state_dict()) and ours.state_dict().keys() == theirs.state_dict().keys()


def test_every_variant_has_a_peer():
    imagenet = [n for n in resnetlab.list_models() if resnetlab.model_info(n).family == "imagenet"]
    ours = {n for n in imagenet if resnetlab.model_info(n).group != "ResNet"}
    assert ours == set(PEERS)


def test_parts_of_the_variants():
    with torch.device("meta"):
        d = resnetlab.create_model("resnet50d")
        c = resnetlab.create_model("resnet50c")
        s = resnetlab.create_model("resnet50s")
        x = resnetlab.create_model("resnext50_32x4d")
        w = resnetlab.create_model("wide_resnet50_2")
        se = resnetlab.create_model("seresnext50_32x4d")
    # ResNet-C/D: a deep stem of 32, 32, 64 channels; S: 64, 64, 128.
    assert [m.out_channels for m in c.conv1 if isinstance(m, torch.nn.Conv2d)] == [32, 32, 64]
    assert [m.out_channels for m in s.conv1 if isinstance(m, torch.nn.Conv2d)] == [64, 64, 128]
    # ResNet-D: average pooling takes the stride, the 1x1 conv sees every pixel.
    pool, conv, _ = d.layer2[0].downsample
    assert isinstance(pool, torch.nn.AvgPool2d) and pool.stride == 2 and conv.stride == (1, 1)
    assert isinstance(d.layer1[0].downsample[0], torch.nn.Identity)  # stage 1 keeps its size
    assert c.layer2[0].downsample[0].stride == (2, 2)  # C keeps the strided projection
    # ResNeXt-50 32x4d: 128 channels in 32 groups in the first stage; WRN-50-2: 128, 1 group.
    assert (x.layer1[0].conv2.in_channels, x.layer1[0].conv2.groups) == (128, 32)
    assert (w.layer1[0].conv2.in_channels, w.layer1[0].conv2.groups) == (128, 1)
    assert isinstance(se.layer4[2].se, SqueezeExcite) and se.layer4[2].se.fc1.out_channels == 128
    assert isinstance(se.layer1[0], Bottleneck)


def test_user_options_override_the_variants_parts():
    with torch.device("meta"):
        d_as_c = resnetlab.create_model("resnet50d", shortcut="B")
        c = resnetlab.create_model("resnet50c")
    assert d_as_c.state_dict().keys() == c.state_dict().keys()
    with pytest.raises(resnetlab.ResnetlabError, match="resnet18d: groups and base_width"):
        resnetlab.create_model("resnet18d", groups=4)
    # The basic nets' own parts give way too: a deep stem on ResNet-18 and ResNet-20.
    with torch.device("meta"):
        for name in ("resnet18", "resnet20"):
            deep = resnetlab.create_model(name, stem="deep")
            assert isinstance(deep.conv1, torch.nn.Sequential)  # three 3x3 convs, not one


@pytest.mark.parametrize(
    ("name", "option", "says"),
    [
        ("resnet20", {"residual": "False"}, "residual must be true or false, got 'False'"),
        ("resnet18", {"zero_init_residual": "no"}, "zero_init_residual must be true or false"),
        ("resnet50", {"stride_in_1x1": 1}, "stride_in_1x1 must be true or false, got 1"),
        ("resnext50_32x4d", {"groups": 2.5}, "groups must be a whole number, got 2.5"),
        ("wrn16_8", {"drop_rate": "abc"}, "wrn16_8: drop_rate must be a number, got 'abc'"),
        # --model-option values that failed inside PyTorch or named the wrong count
        ("resnet20", {"stem_width": -3}, "resnet20: stem_width must be at least 1, got -3"),
        ("resnet20", {"stem_width": 0}, "stem_width must be at least 1, got 0"),  # was ignored
        ("resnet50", {"groups": -1}, "resnet50: groups must be at least 1, got -1"),
        ("resnet50", {"base_width": 0}, "base_width must be at least 1, got 0"),
        ("preresnet20", {"widths": 8}, r"widths must be a list of whole numbers .* got 8$"),
        ("resnet20", {"widths": "8,16,32"}, r"widths must be a list .* got '8,16,32'$"),
        ("resnetv2_50", {"widths": [64, 0, 256, 512]}, r"widths must be a list"),
    ],
)
def test_an_option_of_the_wrong_type_is_named(name, option, says):
    # A string "False" would count as true: the run would be the opposite of the one asked.
    with pytest.raises(resnetlab.ResnetlabError, match=says), torch.device("meta"):
        resnetlab.create_model(name, **option)


def test_a_switch_stored_as_text_is_rebuilt_as_it_was_built(tmp_path):
    # Model files and config.json written when --model-option kept "False" as text: the
    # net was built residual (the text counts as true), and is rebuilt so, with a warning.
    path = tmp_path / "m.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=3), path, input_size=8)
    meta = json.loads(safe_open(str(path), "pt").metadata()["resnetlab"])
    meta["model_kwargs"] = {"residual": "False", "shortcut": "A"}  # as such a file holds it
    save_file(load_file(str(path)), str(path), metadata={"resnetlab": json.dumps(meta)})
    with pytest.warns(SettingWarning, match="residual is stored as the text 'False', which built"):
        loaded = resnetlab.load_model(path)
    assert loaded.residual is True and loaded.meta.model_kwargs["residual"] is True
    config = tmp_path / "config.json"
    config.write_text('{"model": "resnet8", "model_kwargs": {"zero_init_residual": "no"}}')
    with pytest.warns(SettingWarning, match="zero_init_residual=True; it is rebuilt so"):
        assert TrainConfig.load(config)["model_kwargs"] == {"zero_init_residual": True}


@pytest.mark.parametrize(
    "name", ["resnext50_32x4d", "resnet50d", "seresnet50", "resnetv2_50", "resnet18d"]
)
def test_plain_twins_share_every_key_but_the_shortcuts(name):
    with torch.device("meta"):
        res = resnetlab.create_model(name).state_dict()
        plain = resnetlab.create_model(name, residual=False).state_dict()
    assert {k for k in res if k not in plain} == {k for k in res if ".downsample." in k}
    assert all(plain[k].shape == res[k].shape for k in plain)
