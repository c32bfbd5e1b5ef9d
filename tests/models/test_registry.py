import functools
import re

import numpy as np
import pytest
import torch
from torch import nn

import resnetlab
from resnetlab import ResnetlabError
from resnetlab.errors import command_line
from resnetlab.models import register_model, registry
from resnetlab.models.registry import UnknownModelError

# Parameter counts (classifier included): He et al. 2015 and torchvision for the ImageNet
# nets, 1000 classes; the paper's CIFAR nets with option A shortcuts, 10 classes; the course's
# Keras ResNet50 at 64x64 with 6 classes (trainable only; Keras adds 53,120 BN statistics).
# The ImageNet variants' counts are torchvision 0.29's and timm 1.0.31's for the same names;
# the CIFAR pre-activation and wide nets are checked against their papers in test_cifar.py.
PARAM_COUNTS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "plain18": 11_515_688,  # resnet18 less its three projection shortcuts
    "plain34": 21_623_848,
    "resnet18d": 11_708_744,
    "resnet34d": 21_816_904,
    "resnet50c": 25_576_264,
    "resnet50d": 25_576_264,
    "resnet50s": 25_680_808,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
    "resnext101_64x4d": 83_455_272,
    "wide_resnet50_2": 68_883_240,
    "wide_resnet101_2": 126_886_696,
    "seresnet50": 28_088_024,
    "seresnext50_32x4d": 27_559_896,
    "resnetv2_50": 25_549_352,
    "resnetv2_101": 44_541_480,
    "resnet8": 75_290,
    "resnet14": 172_506,
    "resnet20": 269_722,
    "resnet32": 464_154,
    "resnet44": 658_586,
    "resnet56": 853_018,
    "resnet110": 1_727_962,
    "resnet164": 1_704_154,
    "resnet1001": 10_328_602,
    "resnet1202": 19_421_274,
    "plain8": 75_290,  # option A shortcuts have no parameters
    "plain14": 172_506,
    "plain20": 269_722,
    "plain32": 464_154,
    "plain44": 658_586,
    "plain56": 853_018,
    "plain110": 1_727_962,
    "preresnet8": 75_290,  # the same layers as resnetN: BNs move, their sizes add up alike
    "preresnet14": 172_506,
    "preresnet20": 269_722,
    "preresnet32": 464_154,
    "preresnet44": 658_586,
    "preresnet56": 853_018,
    "preresnet110": 1_727_962,
    "preresnet164": 1_703_258,
    "preresnet1001": 10_327_706,
    "wrn16_8": 10_961_370,
    "wrn28_10": 36_479_194,
    "resnet50_keras": 23_546_886,
}

# Too big or too deep to build and run in the default test run: 60M+ parameters, 1,000
# layers, or 5 G multiply-adds per 32x32 image. Their counts are checked on the meta
# device (no weights), their forward passes with -m slow.
HEAVY = {
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
    "resnet1001",
    "preresnet1001",
    "wrn28_10",
}


def light(names):
    """``names`` as test parameters, the heavy ones marked slow."""
    return [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in sorted(names)]


def test_every_model_has_a_known_parameter_count():
    assert sorted(resnetlab.list_models()) == sorted(PARAM_COUNTS)


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_parameter_count_and_every_buffer_in_the_state_dict(name):
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = resnetlab.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == PARAM_COUNTS[name]
    # load_model gives a model built on the meta device memory and fills it from the file:
    # a buffer left out of the state dict (persistent=False) would hold whatever that
    # memory held.
    assert {k for k, _ in model.named_buffers()} <= set(model.state_dict())


@pytest.mark.parametrize("name", light(PARAM_COUNTS))
def test_forward_backward(name):
    # The smallest inputs each family's strides take: the CIFAR nets' three stages at 8x8
    # run the same layers as at 32x32 (8, 4 then 2 pixels a side), 16 times cheaper.
    size = {"keras": 64, "imagenet": 32, "cifar": 8}[resnetlab.model_info(name).family]
    model = resnetlab.create_model(name, num_classes=5)
    x = torch.randn(2, 3, size, size)
    logits = model(x)
    assert logits.shape == (2, 5)
    logits.logsumexp(1).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "name",
    ["resnet18", "resnet50", "resnet20", "resnet50_keras", "resnet18d", "preresnet20", "wrn16_8"],
)
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
    # timm's get_classifier: the module reset_classifier replaced, the head's parameters.
    classifier = model.get_classifier()
    head = [n for n, _ in model.named_parameters() if model.stage_of(n) == model.num_stages + 1]
    assert {id(p) for p in classifier.parameters()} == {
        id(p) for n, p in model.named_parameters() if n in head
    }
    assert classifier.weight.shape[0] == 3
    model.reset_classifier(0)
    assert isinstance(model.get_classifier(), torch.nn.Identity)


@pytest.mark.parametrize("name", ["resnet8", "preresnet8"])
@pytest.mark.parametrize(
    ("given", "said"),
    [
        (-1, "num_classes must be at least 0, got -1"),
        ("5", "num_classes must be a whole number, got '5'"),
        (5.0, "num_classes must be a whole number, got 5.0"),
        (None, "num_classes must be a whole number, got None"),
        (True, "num_classes must be a whole number, got True"),
        (10**9, "num_classes must be at most 100,000, got 1,000,000,000"),
    ],
)
def test_reset_classifier_refuses_a_size_that_is_no_class_count(name, given, said):
    # -1 made no classifier and recorded num_classes -1; the others were torch's TypeError.
    model = resnetlab.create_model(name, num_classes=3)
    with pytest.raises(ResnetlabError, match=f"^{re.escape(said)}$"):
        model.reset_classifier(given)
    assert model.num_classes == 3 and model(torch.zeros(1, 3, 8, 8)).shape == (1, 3)
    model.reset_classifier(np.int64(0))  # no classifier: the pooled features
    assert model.num_classes == 0 and model(torch.zeros(1, 3, 8, 8)).shape == (1, 64)


def test_models_are_listed_family_by_family():
    names = resnetlab.list_models()
    groups = [resnetlab.model_info(n).group for n in names]
    assert list(dict.fromkeys(groups)) == [
        "ResNet",
        "ResNet-C/D/S",
        "ResNeXt",
        "Wide ResNet",
        "SE-ResNet",
        "Pre-activation ResNet",
        "CIFAR ResNet",
        "CIFAR pre-activation ResNet",
        "CIFAR wide ResNet",
        "Keras",
    ]
    assert all(resnetlab.model_info(n).source for n in names)
    assert names[names.index("resnet110") : names.index("plain8")] == [
        "resnet110",
        "resnet164",
        "resnet1001",
        "resnet1202",
    ]


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
    assert resnetlab.list_models("") == resnetlab.list_models()  # as timm's empty filter
    # As timm's: a list of globs (any of them), and exclude_filters.
    assert resnetlab.list_models(["wrn*", "resnetv2*"]) == [
        "resnetv2_50",
        "resnetv2_101",
        "wrn16_8",
        "wrn28_10",
    ]
    assert resnetlab.list_models("resnet5*", exclude_filters=["*_keras", "resnet50?"]) == [
        "resnet50",
        "resnet56",
    ]
    assert resnetlab.list_models(exclude_filters="*") == []
    # timm's keyword for the pattern, as timm's code calls it
    assert resnetlab.list_models(filter="wrn*") == ["wrn16_8", "wrn28_10"]
    with pytest.raises(ResnetlabError, match="give pattern or filter, not both"):
        resnetlab.list_models("wrn*", filter="resnet*")
    with pytest.raises(ResnetlabError, match=r"^the pattern is a glob such as 'resnet\*' or a"):
        resnetlab.list_models(5)


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("resnet5", "resnet50, resnet56, resnet50_keras"),  # names it begins
        ("resnext50", "resnext50_32x4d, seresnext50_32x4d, resnet50"),  # then holds
        ("resnext", "resnext50_32x4d, resnext101_32x8d, resnext101_64x4d"),
        ("preact", "preresnet8, preresnet14, preresnet20"),  # a group: pre-activation
        ("Resnet18", "resnet18, resnet18d, resnet8"),  # case aside
        ("resnt20", "resnet20, resnet1202, resnet50"),  # then the closest spellings
        ("RESNT20", "resnet20, resnet1202, resnet50"),  # those too, case aside
        ("ResNet 50", "resnet50, resnet50_keras, resnet50c"),  # a space as a separator
        ("pre act", "preresnet8, preresnet14, preresnet20"),
    ],
)
def test_unknown_model_suggests_the_models_meant(name, meant):
    with pytest.raises(UnknownModelError) as caught:
        resnetlab.create_model(name)
    assert str(caught.value) == (
        f"unknown model {name!r}; did you mean {meant}? `resnetlab models` lists all"
    )


def test_a_path_given_as_the_model_name_points_to_pretrained(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=2), "m.safetensors")
    says = "unknown model 'm.safetensors': that is a path, not a model name; to start from the "
    with pytest.raises(UnknownModelError) as caught:  # was "`resnetlab models` lists all"
        resnetlab.create_model("m.safetensors")
    assert str(caught.value) == (
        says + "weights it holds, give pretrained='m.safetensors'; resnetlab.load_model reads "
        "a model file whole"
    )
    with command_line(), pytest.raises(UnknownModelError) as caught:
        resnetlab.TrainConfig(model="m.safetensors")
    assert str(caught.value) == says + "weights it holds, give --pretrained m.safetensors"


def test_a_timm_name_with_its_weights_tag_names_the_model_and_the_weights():
    # timm's create_model("resnet50.a1_in1k") picks the weights too; it was "did you mean
    # resnet50_keras, resnet50, resnet50s?"
    says = "the model is resnet50, and timm's weights a1_in1k for it are given apart: "
    for name in ("resnet50.a1_in1k", "timm/resnet50.a1_in1k"):
        with pytest.raises(UnknownModelError) as caught:
            resnetlab.create_model(name)
        expected = f"unknown model {name!r}: {says}pretrained='timm:resnet50.a1_in1k'"
        assert str(caught.value) == expected
    with command_line(), pytest.raises(UnknownModelError) as caught:
        resnetlab.TrainConfig(model="resnet50.a1_in1k")
    assert str(caught.value).endswith(f"{says}--pretrained timm:resnet50.a1_in1k")
    with pytest.raises(UnknownModelError, match="did you mean resnet50, "):  # a file's suffix
        resnetlab.create_model("resnet50.h5")


def test_one_letter_is_not_matched_inside_model_names():
    with pytest.raises(UnknownModelError) as caught:
        resnetlab.create_model("a")  # in every plainN, but means none of them
    assert str(caught.value) == "unknown model 'a'; `resnetlab models` lists all"


def test_unknown_option_names_it_and_the_options_the_model_takes():
    with pytest.raises(ResnetlabError) as info:
        resnetlab.create_model("resnet20", depth_boost=3, shortcat="B")
    message = str(info.value)
    assert message.startswith(
        "resnet20 has no option depth_boost, shortcat (did you mean shortcut?); it takes "
        "num_classes, widths,"
    )
    assert "zero_init_residual" in message and "\n" not in message
    assert "unexpected keyword" not in message  # not Python's wording
    # The course's model takes no residual: the list is what its builder takes.
    with pytest.raises(ResnetlabError) as info:
        resnetlab.create_model("resnet50_keras", residual=False)
    assert str(info.value) == (
        "resnet50_keras has no option residual; it takes num_classes, input_size"
    )


@pytest.mark.parametrize(
    "option, says",
    [
        ("weights", "weights (torchvision's weights load with pretrained='torchvision' here"),
        ("checkpoint_path", "checkpoint_path (a weights file loads with pretrained='FILE')"),
        ("in_chans", "in_chans (every model takes RGB images; grayscale ones are read with"),
        ("in_channels", "in_channels (every model takes RGB images"),
        ("drop_rate", "drop_rate (dropout is an option of resnetv2_50, resnetv2_101, preresnet8"),
    ],
)
def test_torchvision_and_timm_options_say_what_to_give_here(option, says):
    """A torchvision or timm user's weights=None was met with "did you mean widths?", and
    in_chans or drop_rate with nothing but the list of the model's options."""
    with pytest.raises(ResnetlabError) as caught:
        resnetlab.create_model("resnet18", **{option: "DEFAULT" if option == "weights" else None})
    message = str(caught.value)
    assert message.startswith(f"resnet18 has no option {says}")
    assert "did you mean" not in message and "\n" not in message
    # A wrn takes drop_rate, and its dropout is the hint's; the hint names every model that
    # takes it (it named 9 of the 13).
    with torch.device("meta"):  # the modules only: no weights to initialise
        wrn = resnetlab.create_model("wrn16_8", drop_rate=0.3)
    assert wrn.stages[0].blocks[0].drop.p == 0.3
    if option == "drop_rate":
        takes = [n for n in resnetlab.list_models() if "drop_rate" in registry.model_options(n)]
        assert message.split("dropout is an option of ")[1].startswith(f"{', '.join(takes)}); ")


@pytest.mark.parametrize(
    "name, options, says",
    [
        (
            "resnet50",
            {"include_top": False, "weights": "imagenet", "input_shape": (224, 224, 3)},
            "include_top (num_classes=0 is the network without its classifier, giving the "
            "pooled features; model.forward_features(x) gives the last feature map), weights "
            "(torchvision's weights load with pretrained='torchvision' here (weights=None is "
            "taken, and is the default)), input_shape (it takes images of any size, as "
            "Keras's input_shape=(None, None, 3))",
        ),
        (
            "resnet50",
            {"pooling": "avg", "classifier_activation": None},
            "pooling (the model pools its last feature map itself), classifier_activation "
            "(every model returns logits: model(x).softmax(-1) gives the probabilities)",
        ),
        (
            "resnet50_keras",
            {"input_shape": (64, 64, 3), "classes": 6},
            "input_shape (input_size=N for (N, N, 3) images), classes (did you mean num_classes?)",
        ),
    ],
)
def test_keras_applications_options_say_what_to_give_here(name, options, says):
    """keras.applications.ResNet50(include_top=False, weights="imagenet", ...) brought
    along was met with the list of the model's options alone."""
    with pytest.raises(ResnetlabError) as caught:
        resnetlab.create_model(name, **options)
    assert str(caught.value).startswith(f"{name} has no option {says}; it takes ")
    resnetlab.create_model(name, num_classes=0)  # the include_top=False of the hint
    with command_line(), pytest.raises(ResnetlabError, match=r"include_top \(train puts a"):
        resnetlab.create_model(name, include_top=False)


def test_weights_none_is_torchvisions_model_without_weights():
    """resnet18(weights=None), as torchvision's code writes it: the model with fresh weights,
    which the option does not follow into the model file's options."""
    torch.manual_seed(0)
    model = resnetlab.create_model("resnet18", num_classes=3, weights=None)
    torch.manual_seed(0)
    plain = resnetlab.create_model("resnet18", num_classes=3)
    assert "weights" not in model.model_kwargs
    for a, b in zip(model.state_dict().values(), plain.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_an_unknown_option_is_refused_before_pretrained_weights_are_fetched(monkeypatch):
    """With pretrained=, a timm user's in_chans=1 was said only after the weights were
    downloaded (or, offline, not at all: the download's error came first)."""
    from resnetlab.convert import pretrained

    def fetch(*args, **kwargs):
        raise AssertionError("the weights were fetched")

    monkeypatch.setattr(pretrained, "resolve_pretrained", fetch)
    with pytest.raises(ResnetlabError) as caught:
        resnetlab.create_model("resnet18", pretrained=True, num_classes=6, in_chans=1)
    assert str(caught.value).startswith("resnet18 has no option in_chans (every model takes RGB")


def test_a_part_that_cannot_be_called_so_says_how_the_blocks_call_it():
    """norm_layer=nn.GroupNorm (which needs its group count first) was a TypeError from
    deep inside a block."""
    with pytest.raises(ResnetlabError) as caught:
        resnetlab.create_model("resnet18", norm_layer=nn.GroupNorm)
    assert str(caught.value) == (
        "resnet18: building with norm_layer failed (GroupNorm.__init__() missing 1 required "
        "positional argument: 'num_channels'); the blocks call norm_layer(channels) (as "
        "torchvision's do), act_layer() and attn_layer(channels): give a factory of that "
        "form, e.g. norm_layer=functools.partial(nn.GroupNorm, 32)"
    )
    model = resnetlab.create_model("resnet18", norm_layer=functools.partial(nn.GroupNorm, 32))
    assert isinstance(model.bn1, nn.GroupNorm)  # the fix given builds the net
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 1000)


def test_the_torchvision_hint_names_the_flag_under_model_option():

    with command_line(), pytest.raises(ResnetlabError, match="with --pretrained torchvision here"):
        resnetlab.create_model("resnet18", weights="DEFAULT")


@pytest.mark.parametrize("name", ["resnet20", "seresnet50", "resnetv2_50", "wrn16_8"])
@pytest.mark.parametrize("option", ["norm_layer", "act_layer", "attn_layer"])
def test_a_part_given_as_a_string_is_one_line_not_a_traceback(name, option):
    """--model-option act_layer=silu gives a string; it failed deep inside a block with
    Python's TypeError ('str' object is not callable)."""
    if option == "attn_layer" and name in ("resnetv2_50", "wrn16_8"):
        return  # the pre-activation nets have no attention option
    with pytest.raises(ResnetlabError, match=rf"^{name}: {option} must be a module class"):
        resnetlab.create_model(name, **{option: "silu"})
    model = resnetlab.create_model(name, num_classes=2, act_layer=nn.SiLU)
    assert any(isinstance(m, nn.SiLU) for m in model.modules())


def test_an_unknown_option_of_a_builder_that_cannot_be_inspected_keeps_pythons_words(
    monkeypatch,
):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # the test's own

    @register_model(family="cifar", input_size=32, num_classes=10, description="picky")
    def picky_net(*, num_classes=10, **kwargs):
        if "width" not in kwargs:
            raise RuntimeError("this builder needs a width")
        return nn.Linear(1, num_classes, **{k: v for k, v in kwargs.items() if k != "width"})

    with pytest.raises(ResnetlabError, match=r"^picky_net: .*unexpected keyword.*'colour'"):
        resnetlab.create_model("picky_net", width=1, colour="red")


def test_model_options_are_the_builders_and_its_classes():
    assert registry.model_options("resnet50_keras") == ["input_size"]
    assert "drop_rate" in registry.model_options("wrn28_10")
    assert "drop_rate" not in registry.model_options("resnet20")
    assert "num_classes" not in registry.model_options("resnet50")


def test_duplicate_names_are_refused():
    with pytest.raises(ValueError, match="already registered"):

        @register_model(family="cifar", input_size=32, num_classes=10, description="dup")
        def resnet20(*, num_classes=10):
            raise AssertionError


@pytest.mark.parametrize(
    ("given", "error", "says"),
    [
        (
            {"family": "cifarr"},
            ValueError,
            "register_model's family must be one of 'imagenet', 'cifar', 'keras', got 'cifarr'",
        ),
        (
            {"input_size": "32"},
            resnetlab.ResnetlabError,
            "register_model's input_size must be a whole number, got '32'",
        ),
        (
            {"input_size": 4},
            resnetlab.ResnetlabError,
            "register_model's input_size must be from 8 to 2,048 pixels, got 4",
        ),
        (
            {"num_classes": 2.5},
            resnetlab.ResnetlabError,
            "register_model's num_classes must be a whole number, got 2.5",
        ),
    ],
)
def test_registering_names_a_wrong_value_before_anything_is_registered(given, error, says):
    # Not a TypeError from deep in a training run of the model ('>=' between int and str).
    values = {"family": "cifar", "input_size": 32, "num_classes": 10, "description": "d"}
    with pytest.raises(error) as caught:
        register_model(**{**values, **given})
    assert str(caught.value) == says


def test_create_model_records_how_to_rebuild():
    model = resnetlab.create_model("resnet20", num_classes=7, shortcut="B")
    assert model.model_name == "resnet20"
    assert model.model_kwargs == {"shortcut": "B"}
    assert model.num_classes == 7


def test_a_registered_builder_without_the_model_interface_is_one_line(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # the test's own

    @register_model(family="cifar", input_size=32, num_classes=10, description="d")
    def tinynet(*, num_classes: int = 10) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))

    with pytest.raises(resnetlab.ResnetlabError) as error:  # not AttributeError when saved
        resnetlab.create_model("tinynet")
    assert str(error.value) == (
        "tinynet's builder made a Sequential without num_classes, num_stages, stage_of, which "
        "training, saving and explaining use; see help(resnetlab.register_model)"
    )


@pytest.mark.parametrize("name", ["resnet8", "preresnet8", "resnet18d"])
def test_images_a_stem_cannot_take_are_named_with_the_fix(name):
    """Not the first BN's 'expected 4D input (got 3D input)' or the stem conv's 'expected
    input[2, 16, 16, 3] to have 3 channels, but got 16 channels instead'."""
    model = resnetlab.create_model(name, num_classes=3).eval()
    x = torch.randn(2, 3, 16, 16)
    wrong = [
        (x[0], "(3, 16, 16); one image has no batch dimension: give x.unsqueeze(0)"),
        (
            x.permute(0, 2, 3, 1),
            "(2, 16, 16, 3); channels last (B, H, W, 3): give x.permute(0, 3, 1, 2)",
        ),
        (x[:, :1], "(2, 1, 16, 16); one channel, grayscale: give x.expand(-1, 3, -1, -1)"),
        (torch.randn(2, 4, 16, 16), "(2, 4, 16, 16); give images of 3 channels, RGB"),
    ]
    for images, says in wrong:
        for function in (model, model.forward_features):
            with pytest.raises(ResnetlabError, match=re.escape(f"(B, 3, H, W), got {says}") + "$"):
                function(images)
    with pytest.raises(ResnetlabError, match=r"^the model takes a tensor of images, got ndarray; "):
        model(x.numpy())
    with pytest.raises(
        ResnetlabError,
        match=r"^the model takes float images, got torch\.uint8; give them normalised as it was "
        r"trained, or at least x\.float\(\) / 255$",
    ):
        model(torch.zeros(2, 3, 16, 16, dtype=torch.uint8))
    assert model(x).shape == (2, 3)
    # What works in torchvision still does: channels-last memory, a side below the stride.
    assert torch.allclose(model(x.contiguous(memory_format=torch.channels_last)), model(x))
    assert model(torch.randn(1, 3, 4, 4)).shape == (1, 3)


@pytest.mark.parametrize("name", ["resnet8", "preresnet8", "resnet50_keras"])
def test_forward_head_refuses_what_is_no_feature_map(name):
    """Pooled (B, C) features were a matmul's shape error, or with no classifier an answer
    of shape (1, 1); a map of other channels a matmul's error too."""
    model = resnetlab.create_model(name, num_classes=3).eval()
    side = resnetlab.model_info(name).input_size
    features = model.forward_features(torch.randn(2, 3, side, side))
    channels = features.shape[1]
    for wrong in (features.mean((2, 3)), features[:, : channels // 2], features[0]):
        for classes in (3, 0):
            model.reset_classifier(classes)
            with pytest.raises(
                ResnetlabError,
                match=re.escape(
                    f"forward_head takes the (B, {channels}, h, w) feature map that "
                    f"forward_features returns, got {tuple(wrong.shape)}"
                ),
            ):
                model.forward_head(wrong)
    assert model.forward_head(features).shape[0] == 2


@pytest.mark.parametrize("name", [n for n in resnetlab.list_models() if n != "resnet50_keras"])
def test_every_model_but_the_keras_one_takes_residual(name):
    # The README: every model but resnet50_keras takes residual=False. plain18 and plain34
    # passed residual=False themselves as well, and failed with Python's TypeError.
    with torch.device("meta"):  # shapes only
        plain = resnetlab.create_model(name, residual=False)
        residual = resnetlab.create_model(name, residual=True)
    assert not any(getattr(m, "residual", False) for m in plain.modules())
    assert any(getattr(m, "residual", False) for m in residual.modules())
