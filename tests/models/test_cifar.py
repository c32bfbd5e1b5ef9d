import pytest
import torch
from torch import nn

import resnetlab
from resnetlab.models.cifar import cifar_preresnet, cifar_resnet, wide_resnet


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


# Parameter counts in the papers, in millions, 10 classes:
# - He et al. 2016, "Identity Mappings", Table 4 (the comparison with the state of the art on
#   CIFAR): ResNet-110 1.7M, ResNet-164 1.7M, ResNet-1001 10.2M (pre-activation units for
#   164 and 1001; Zagoruyko & Komodakis 2016, Table 5, give pre-act-ResNet-110 1.7M too).
# - Zagoruyko & Komodakis 2016, "Wide Residual Networks", Table 4: WRN-16-8 11.0M,
#   WRN-28-10 36.5M.
PAPER_MILLIONS = {
    "preresnet110": 1.7,
    "preresnet164": 1.7,
    "resnet164": 1.7,
    "wrn16_8": 11.0,
    "wrn28_10": 36.5,
}


def _counts(name):
    with torch.device("meta"):
        model = resnetlab.create_model(name)
    total = sum(p.numel() for p in model.parameters())
    norms = sum(
        p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()
    )
    return model, total, total - norms


@pytest.mark.parametrize("name", sorted(PAPER_MILLIONS))
def test_parameter_counts_round_to_the_papers(name):
    _, total, _ = _counts(name)
    assert round(total / 1e6, 1) == PAPER_MILLIONS[name]


def test_resnet1001_counts_as_the_paper_without_the_bn_parameters():
    # ResNet-1001 has 10.33M parameters with BN's scale and shift (0.15M of them), 10.18M
    # without; the paper's 10.2M is the latter (He et al. 2015 counted BN: ResNet-1202's
    # 19.4M is 19,421,274 with it, 19.33M without).
    for name in ("preresnet1001", "resnet1001"):
        _, total, weights = _counts(name)
        assert round(total / 1e6, 2) == 10.33 and round(weights / 1e6, 1) == 10.2


@pytest.mark.parametrize(
    ("name", "convs"),
    [
        ("preresnet20", 19),  # 6n + 2 = 20 weighted layers: 19 convs and the classifier
        ("preresnet110", 109),
        ("preresnet164", 163 + 3),  # 9n + 2, and three projection shortcuts
        ("resnet164", 163 + 3),
        ("wrn16_8", 16),  # WRN-n-k counts convolutions, projections included: 6n + 4
        ("wrn28_10", 28),
    ],
)
def test_depths_as_the_papers_count_them(name, convs):
    model, _, _ = _counts(name)
    weighted = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert len(weighted) - 1 == convs  # all but the classifier (a 1x1 conv in pre-act nets)


def test_bottleneck_and_wide_stage_widths():
    with torch.device("meta"):
        pre = resnetlab.create_model("preresnet164")
        wrn = resnetlab.create_model("wrn28_10")
    # Identity Mappings' nStages: a 16-filter stem, stages of 64, 128, 256 output channels.
    assert pre.stem.conv.out_channels == 16 and pre.num_features == 256
    assert [s[0].conv3.out_channels for s in pre.stages] == [64, 128, 256]
    assert [len(s) for s in pre.stages] == [18, 18, 18]
    assert pre.stages[1][0].conv1.stride == (2, 2)  # the stride on the 1x1, as the paper's code
    # WRN-28-10: 16, then 160, 320, 640 filters; 4 units per stage.
    assert wrn.stem.conv.out_channels == 16
    assert [s[0].conv2.out_channels for s in wrn.stages] == [160, 320, 640]
    assert [len(s) for s in wrn.stages] == [4, 4, 4]


@pytest.mark.parametrize("name", ["preresnet20", "preresnet110", "resnet164", "preresnet164"])
def test_pre_activation_plain_twins_share_every_key(name):
    with torch.device("meta"):
        res = resnetlab.create_model(name).state_dict()
        plain = resnetlab.create_model(name, residual=False).state_dict()
    # Option A shortcuts have no parameters: every key is shared. Projections are the
    # only keys a plain twin lacks.
    assert {k for k in res if k not in plain} == {k for k in res if ".downsample." in k}
    assert all(plain[k].shape == res[k].shape for k in plain)
    if name in ("preresnet20", "preresnet110"):
        assert plain.keys() == res.keys()


def test_bad_pre_activation_and_wide_depths():
    with pytest.raises(ValueError, match=r"9n \+ 2 with n >= 1 \(11, 20, 29"):
        cifar_preresnet(100, bottleneck=True)
    with pytest.raises(ValueError, match=r"6n \+ 4 with n >= 1 \(10, 16, 22"):
        wide_resnet(20, 4)
    with pytest.raises(ValueError, match="widening factor must be at least 1"):
        wide_resnet(16, 0)
