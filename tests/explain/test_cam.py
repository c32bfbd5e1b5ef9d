import numpy as np
import pytest
import torch

import resnetlab
from resnetlab.errors import ResnetlabError
from resnetlab.explain import (
    METHODS,
    class_activation_maps,
    default_layer,
    explain,
    find_layer,
    layer_choices,
)
from resnetlab.explain.cam import scale_maps, upsample

from .conftest import fit, normalise, squares


@pytest.mark.parametrize(
    "name, size",
    [("resnet8", 32), ("plain8", 32), ("resnet18", 64), ("resnet50_keras", 64), ("preresnet8", 32)],
    ids=["cifar", "plain", "imagenet", "keras", "preact"],
)
def test_maps_have_the_image_size_and_vary_for_each_family(name, size):
    kwargs = {"input_size": size} if name == "resnet50_keras" else {}
    model = fit(name, size=size, steps=4, batch=8, **kwargs)
    images, _ = squares(3, size, seed=5)
    for method in ("gradcam", "layercam"):
        result = explain(model, images, method=method)
        assert result.maps.shape == (3, size, size)
        assert torch.isfinite(result.maps).all()
        flat = result.maps.flatten(1)
        assert (flat.amax(1) - flat.amin(1) > 0.5).all()  # each map scaled to [0, 1]
        assert result.layer == model.feature_layer()


@pytest.mark.parametrize(
    "name, layer",
    [
        ("resnet8", "layer3"),
        ("resnet18d", "layer4"),
        ("seresnet50", "layer4"),
        ("resnet50_keras", "layer4"),
        ("preresnet8", "act"),
        ("wrn16_8", "act"),
        ("resnetv2_50", "act"),
    ],
)
def test_the_default_layer_is_the_feature_map_the_classifier_sees(name, layer):
    """The output of forward_features: for the pre-activation nets the final BN-ReLU, not
    the last stage before it. Where the head pools that map and applies a linear layer
    (all but resnet50_keras's Flatten-Dense), Grad-CAM there is exactly CAM: the class's
    classifier weights over the feature map."""
    torch.manual_seed(0)
    kwargs = {"input_size": 64} if name == "resnet50_keras" else {}
    model = resnetlab.create_model(name, num_classes=3, **kwargs).eval()
    with torch.no_grad():  # BN statistics that are not the identity, so norm and act count
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    assert default_layer(model) == layer
    if name == "resnet50_keras":
        return
    x = torch.randn(2, 3, 64, 64)
    result = class_activation_maps(model, x, method="gradcam")
    assert result.layer == layer
    with torch.no_grad():
        features = model.forward_features(x)  # (B, C, h, w)
        fc = model.get_submodule("head.fc" if hasattr(model, "head") else "fc")
        weights = fc.weight.reshape(fc.weight.shape[0], -1)[result.targets]  # (B, C)
        cam = torch.einsum("bc,bchw->bhw", weights, features).clamp_min(0)
        expected = scale_maps(upsample(cam, x.shape[-2:]))
    torch.testing.assert_close(result.maps, expected, atol=1e-5, rtol=1e-4)


def test_a_feature_map_of_one_cell_gives_maps_of_zeros():
    """ResNet-18 at 32 px: layer4 is 1x1, one value per image, which points at no place.
    Every method's map is zeros, not the upsampling's rounding errors scaled to [0, 1]."""
    torch.manual_seed(0)
    model = resnetlab.create_model("resnet18", num_classes=4).eval()
    x = torch.randn(4, 3, 32, 32)
    for method in METHODS:
        result = class_activation_maps(model, x, method=method)
        assert result.grid == (1, 1)
        assert torch.equal(result.maps, torch.zeros(4, 32, 32)), method
    # A map of several cells is still scaled to [0, 1].
    result = class_activation_maps(model, x, layer="layer3")
    assert result.grid == (2, 2) and (result.maps.flatten(1).amax(1) == 1).all()


def test_the_class_chosen_changes_the_map(trained_resnet8):
    images, labels = squares(4, seed=3)
    red = explain(trained_resnet8, images, target=2)  # a model without class names
    blue = explain(trained_resnet8, images, target="0")  # names its classes 0, 1, 2
    assert red.targets.tolist() == [2] * 4 and blue.targets.tolist() == [0] * 4
    assert torch.equal(red.probabilities, blue.probabilities)
    assert (red.maps - blue.maps).abs().flatten(1).amax(1).min() > 0.1
    # By default each image's predicted class, which this model gets right.
    assert explain(trained_resnet8, images).targets.tolist() == labels.tolist()
    with pytest.raises(ResnetlabError, match="no class 'purple'; the model's classes: 0, 1, 2"):
        explain(trained_resnet8, images, target="purple")


def test_a_class_the_model_lacks_is_answered_with_the_near_names_not_all(tmp_path):
    # ImageNet's thousand names made one line of 20,000 characters.
    names = [f"{animal} {i}" for i in range(50) for animal in ("tabby", "tiger")][:100]
    path = tmp_path / "m.safetensors"
    resnetlab.save_model(
        resnetlab.create_model("resnet8", num_classes=100), path, class_names=names
    )
    model = resnetlab.load_model(path)
    images, _ = squares(1, seed=0)
    with pytest.raises(ResnetlabError) as caught:
        explain(model, images, target="tabby 7O")
    assert str(caught.value) == (
        "no class 'tabby 7O'; did you mean 'tabby 7' or 'tabby 47' or 'tabby 37'? the model has "
        "100 classes (tabby 0, tiger 0, tabby 1, tiger 1, tabby 2, ...)"
    )
    # In any letter case, as a class is matched: TIGER 7O is near tiger 7.
    with pytest.raises(ResnetlabError, match=r"^no class 'TIGER 7O'; did you mean 'tiger 7' or "):
        explain(model, images, target="TIGER 7O")


def test_maps_point_at_the_square(trained_resnet8):
    images, _ = squares(16, seed=7)
    # Where the square is: its pixels are the ones far from the noise's range.
    square = (images.int().amax(-1) > 200) & (images.int().amin(-1) < 40)
    for method in METHODS:
        maps = explain(trained_resnet8, images, method=method).maps
        inside = (maps * square).sum((1, 2)) / square.sum((1, 2))
        outside = (maps * ~square).sum((1, 2)) / (~square).sum((1, 2))
        assert (inside > outside).float().mean() >= 0.9, method


def test_one_batch_gives_what_one_image_at_a_time_gives(trained_resnet8):
    x = normalise(squares(5, seed=2)[0])
    for method in METHODS:
        batch = class_activation_maps(trained_resnet8, x, method=method, batch_size=16).maps
        single = torch.cat(
            [
                class_activation_maps(trained_resnet8, x[i : i + 1], method=method).maps
                for i in range(5)
            ]
        )
        torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_maps_match_pytorch_grad_cam(trained_resnet8, method):
    """The formulas are pytorch-grad-cam's; Score-CAM upsamples its masks with
    align_corners=True there and False here, so it agrees closely but not exactly."""
    cams = pytest.importorskip("pytorch_grad_cam", reason="the reference: pip install grad-cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    reference = {
        "gradcam": cams.GradCAM,
        "gradcam++": cams.GradCAMPlusPlus,
        "layercam": cams.LayerCAM,
        "scorecam": cams.ScoreCAM,
    }[method]
    x = normalise(squares(4, seed=4)[0])
    targets = [0, 1, 2, 1]
    ours = class_activation_maps(trained_resnet8, x, method=method, targets=torch.tensor(targets))
    with reference(model=trained_resnet8, target_layers=[trained_resnet8.layer3]) as cam:
        theirs = cam(x, targets=[ClassifierOutputTarget(t) for t in targets])
    if method == "scorecam":
        correlation = np.corrcoef(ours.maps.numpy().ravel(), theirs.ravel())[0, 1]
        assert correlation > 0.99
    else:
        np.testing.assert_allclose(ours.maps.numpy(), theirs, atol=1e-4)


def test_a_named_layer_and_the_errors_for_bad_ones(trained_resnet8):
    x = normalise(squares(2, seed=1)[0])
    deeper = class_activation_maps(trained_resnet8, x, layer="layer2.0")
    assert deeper.grid == (16, 16) and deeper.maps.shape == (2, 32, 32)
    assert class_activation_maps(trained_resnet8, x, layer="layer3.0.conv2").grid == (8, 8)
    assert "layer3" in layer_choices(trained_resnet8) and "fc" not in layer_choices(trained_resnet8)
    with pytest.raises(ResnetlabError) as error:
        find_layer(trained_resnet8, "layer4")
    message = str(error.value)
    assert "\n" not in message and "no layer 'layer4' in resnet8" in message
    assert "conv1, bn1, relu, layer1, layer1.0, layer2, layer2.0, layer3, layer3.0" in message
    with pytest.raises(ResnetlabError, match="no layer '' in resnet8"):  # not the default
        class_activation_maps(trained_resnet8, x, layer="")
    with pytest.raises(ResnetlabError) as error:  # was str's AttributeError (removeprefix)
        class_activation_maps(trained_resnet8, x, layer=3)
    assert str(error.value) == (
        "layer is a module's name, got 3 ('layer3' for stage 3); choose one of conv1, bn1, "
        "relu, layer1, layer1.0, layer2, layer2.0, layer3, layer3.0"
    )
    with pytest.raises(ResnetlabError, match=r"runs 2 times in one forward pass.*layer3\.0$"):
        class_activation_maps(trained_resnet8, x, layer="layer3.0.relu")
    with pytest.raises(ResnetlabError, match=r"'fc' gives \(2, 3\), not a \(B, C, h, w\)"):
        class_activation_maps(trained_resnet8, x, layer="fc")
    with pytest.raises(ResnetlabError, match=r"unknown CAM method 'gradcam\+'"):
        class_activation_maps(trained_resnet8, x, method="gradcam+")
    pixels = squares(2, seed=1)[0]  # uint8 (2, 32, 32, 3): what explain takes, not this
    with pytest.raises(ResnetlabError, match=r"^x must be normalised float \(B, 3, H, W\) "):
        class_activation_maps(trained_resnet8, pixels)
    # Not numpy's AttributeError ('no attribute is_floating_point') nor a convolution's
    # 'expected scalar type Double but found Float'.
    with pytest.raises(ResnetlabError, match=r"got ndarray \(a tensor of it: torch.from_numpy"):
        class_activation_maps(trained_resnet8, x.numpy())
    in_float64 = class_activation_maps(trained_resnet8, x.double())
    torch.testing.assert_close(in_float64.maps, class_activation_maps(trained_resnet8, x).maps)


def test_the_keras_models_layers_go_by_their_keras_names_too():
    model = resnetlab.create_model("resnet50_keras", num_classes=6).eval()
    assert find_layer(model, "res5c_branch2c") is model.layer4[2].conv3
    assert find_layer(model, "bn_conv1") is model.bn1
    x = torch.randn(1, 3, 64, 64)
    ours = class_activation_maps(model, x, layer="res5c_branch2c")
    same = class_activation_maps(model, x, layer="layer4.2.conv3")
    assert torch.equal(ours.maps, same.maps)
    with pytest.raises(
        ResnetlabError,
        match=r"\(or a module inside a block, e\.g\. layer4\.0\.conv1, or "
        r"a Keras layer name, e\.g\. res5c_branch2c\)$",
    ):
        find_layer(model, "res5z_branch2c")


def test_the_model_is_left_as_it_was():
    model = resnetlab.create_model("resnet8", num_classes=3)  # train mode
    for p in model.layer1.parameters():
        p.requires_grad_(False)  # a partly frozen model still has its gradients at the layer
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = normalise(squares(4, seed=6)[0])
    for method in METHODS:
        class_activation_maps(model, x, method=method)
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN too
    frozen = resnetlab.create_model("resnet8", num_classes=3).requires_grad_(False).eval()
    assert torch.isfinite(class_activation_maps(frozen, x).maps).all()


def test_stage_names_of_the_imagenet_nets_name_the_pre_activation_nets_stages():
    # --freeze layer3 freezes preresnet20's stages.2; --layer layer3 explains it too.
    model = resnetlab.create_model("preresnet20", num_classes=3).eval()
    assert find_layer(model, "layer3") is find_layer(model, "stages.2")
    for name in ("layer4", "layer0", "layer3.0"):  # three stages; a block is stages.2.blocks.0
        with pytest.raises(ResnetlabError, match=f"no layer '{name}' in preresnet20"):
            find_layer(model, name)
