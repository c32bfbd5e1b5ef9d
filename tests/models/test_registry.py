import pytest
import torch

import resnetlab
from resnetlab import ResnetlabError
from resnetlab.models import register_model
from resnetlab.models.registry import UnknownModelError

# Parameter counts (classifier included): He et al. 2015 and torchvision for the ImageNet
# nets, 1000 classes; the paper's CIFAR nets with option A shortcuts, 10 classes; the seed's
# Keras ResNet50 at 64x64 with 6 classes (trainable only; Keras adds 53,120 BN statistics).
PARAM_COUNTS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "plain18": 11_515_688,  # resnet18 less its three projection shortcuts
    "plain34": 21_623_848,
    "resnet8": 75_290,
    "resnet14": 172_506,
    "resnet20": 269_722,
    "resnet32": 464_154,
    "resnet44": 658_586,
    "resnet56": 853_018,
    "resnet110": 1_727_962,
    "resnet1202": 19_421_274,
    "plain8": 75_290,  # option A shortcuts have no parameters
    "plain14": 172_506,
    "plain20": 269_722,
    "plain32": 464_154,
    "plain44": 658_586,
    "plain56": 853_018,
    "plain110": 1_727_962,
    "resnet50_keras": 23_546_886,
}


def test_every_model_has_a_known_parameter_count():
    assert sorted(resnetlab.list_models()) == sorted(PARAM_COUNTS)


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_parameter_count(name):
    model = resnetlab.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == PARAM_COUNTS[name]


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_forward_backward(name):
    info = resnetlab.model_info(name)
    size = 64 if info.family == "keras" else 32
    model = resnetlab.create_model(name, num_classes=5)
    x = torch.randn(2, 3, size, size)
    logits = model(x)
    assert logits.shape == (2, 5)
    logits.logsumexp(1).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.conv1.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet20", "resnet50_keras"])
def test_head_interface(name):
    model = resnetlab.create_model(name).eval()
    size = resnetlab.model_info(name).input_size
    x = torch.randn(1, 3, size, size)
    features = model.forward_features(x)
    assert features.ndim == 4
    assert torch.equal(model.forward_head(features), model(x))
    assert model.forward_head(features, pre_logits=True).shape == (1, model.num_features)
    model.reset_classifier(3)
    assert model(x).shape == (1, 3) and model.num_classes == 3


def test_list_models_pattern():
    assert resnetlab.list_models("plain*") == [
        "plain18",
        "plain34",
        "plain8",
        "plain14",
        "plain20",
        "plain32",
        "plain44",
        "plain56",
        "plain110",
    ]
    assert resnetlab.list_models("nothing*") == []


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownModelError, match=r"resnet5'.*did you mean resnet56, resnet50"):
        resnetlab.create_model("resnet5")


def test_unknown_option_is_a_clear_error():
    with pytest.raises(ResnetlabError, match=r"resnet20 does not take that option.*depth_boost"):
        resnetlab.create_model("resnet20", depth_boost=3)


def test_duplicate_names_are_refused():
    with pytest.raises(ValueError, match="already registered"):

        @register_model(family="cifar", input_size=32, num_classes=10, description="dup")
        def resnet20(*, num_classes=10):
            raise AssertionError


def test_create_model_records_how_to_rebuild():
    model = resnetlab.create_model("resnet20", num_classes=7, shortcut="B")
    assert model.model_name == "resnet20"
    assert model.model_kwargs == {"shortcut": "B"}
    assert model.num_classes == 7
