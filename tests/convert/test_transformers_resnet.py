"""Hugging Face transformers' ResNets (microsoft/resnet-50 and its kin) as pretrained weights:
the same outputs as transformers' own model, and the config files read as the hub has them."""

import json
from pathlib import Path

import pytest
import torch

import resnetlab
from resnetlab import ResnetlabError
from resnetlab.cli import main
from resnetlab.convert.pretrained import declared_model
from resnetlab.convert.transformers_resnet import transformers_resnet
from resnetlab.engine.config import resolve_config

# microsoft/resnet-50's preprocessor_config.json, as the hub serves it.
PREPROCESSOR = {
    "crop_pct": 0.875,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "ConvNextFeatureExtractor",
    "image_mean": [0.485, 0.456, 0.406],
    "image_std": [0.229, 0.224, 0.225],
    "resample": 3,
    "size": 224,
}


def _hub_folder(tmp_path, layer_type, depths, widths, labels, **settings):
    """A transformers ResNet with random weights and BN statistics, saved as `hf download`
    leaves one (config.json, model.safetensors, preprocessor_config.json)."""
    transformers = pytest.importorskip(
        "transformers", reason="the reference model; installed by the dev extra"
    )
    config = transformers.ResNetConfig(
        depths=depths,
        hidden_sizes=widths,
        layer_type=layer_type,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        **settings,
    )
    torch.manual_seed(0)
    reference = transformers.ResNetForImageClassification(config).eval()
    for module in reference.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    folder = tmp_path / "resnet"
    reference.save_pretrained(folder, safe_serialization=True)
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR))
    return folder, reference


@pytest.mark.parametrize(
    ("layer_type", "depths", "widths", "settings", "name", "options"),
    [
        ("basic", [2, 2, 2, 2], [64, 128, 256, 512], {}, "resnet18", {}),
        ("bottleneck", [3, 4, 6, 3], [256, 512, 1024, 2048], {}, "resnet50", {}),
        # The stride in the first 1x1, as in the paper ("v1"), as the models here build it.
        (
            "bottleneck",
            [3, 4, 6, 3],
            [256, 512, 1024, 2048],
            {"downsample_in_bottleneck": True},
            "resnet50",
            {"stride_in_1x1": True},
        ),
    ],
)
def test_a_transformers_resnet_gives_transformers_outputs(
    tmp_path, layer_type, depths, widths, settings, name, options
):
    labels = ["ant", "bee", "cat"]
    folder, reference = _hub_folder(tmp_path, layer_type, depths, widths, labels, **settings)
    assert declared_model(folder) == (name, options)  # a run without --model trains it
    model = resnetlab.create_model(name, pretrained=folder).eval()
    assert model.model_kwargs == options
    if layer_type == "bottleneck":  # v1 weights are not loaded into v1.5, nor v1.5 into v1
        with pytest.raises(ResnetlabError, match=" is a resnet50 built with "):
            resnetlab.create_model(name, pretrained=folder, stride_in_1x1=not options)
    report = model.pretrained
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x).logits, rtol=1e-5, atol=1e-5)
    assert report.head == "kept" and report.class_names == ["ant", "bee", "cat"]
    assert not report.new and not report.dropped  # every tensor, renamed, and no other
    assert (report.mean, report.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert report.preprocessing == {
        "resize": 256,
        "crop": 224,
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "input_size": 224,
    }
    assert report.describe().startswith(
        f"{name} from model.safetensors (transformers ResNetForImageClassification, with its "
        "config.json): "
    )


def test_a_transformers_resnet_fine_tunes_from_the_command_line(tmp_path, capsys):
    folder, reference = _hub_folder(
        tmp_path, "basic", [2, 2, 2, 2], [64, 128, 256, 512], ["LABEL_0", "LABEL_1"]
    )
    # Its pytorch_model.bin, as older hub folders hold the weights, reads the same.
    torch.save(reference.state_dict(), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    assert resolve_config(pretrained=str(folder), data="digits").model == "resnet18"
    capsys.readouterr()  # (transformers' own progress bars)
    out = tmp_path / "run"
    args = ["--data", "digits", "--input-size", "32", "--max-steps", "2", "--out", str(out)]
    assert main(["train", "--pretrained", str(folder), *args]) == 0
    err = capsys.readouterr().err
    assert "\nresnet18 (" in err  # the model its config names, without --model
    assert (
        "pretrained: resnet18 from pytorch_model.bin (transformers ResNetForImageClassification, "
        "with its config.json): 100 tensors loaded; classifier replaced (the weights have 2 "
        "classes, the model 10); normalisation: the weights' mean/std (transformers' "
        "preprocessor_config.json beside them)"
    ) in err
    meta = resnetlab.read_model_meta(out / "best.safetensors")
    assert (meta.model, meta.mean) == ("resnet18", (0.485, 0.456, 0.406))


def _config_folder(tmp_path, preprocessor=None, **config):
    folder = tmp_path / "hub"
    folder.mkdir(exist_ok=True)
    base = {"model_type": "resnet", "architectures": ["ResNetForImageClassification"]}
    (folder / "config.json").write_text(json.dumps({**base, **config}))
    if preprocessor is not None:
        (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return folder / "model.safetensors"


def test_the_config_files_are_read_as_the_hub_keeps_them(tmp_path):
    bottleneck = {"layer_type": "bottleneck", "depths": [3, 4, 23, 3]}
    labels = {"id2label": {"1": "dog", "0": "cat", "10": "yak", "2": "eel"}}  # keys as text
    found = transformers_resnet(_config_folder(tmp_path, **bottleneck, **labels))
    assert found.model == "resnet101" and found.class_names[:3] == ["cat", "dog", "eel"]
    assert found.mean is None and found.input_size is None  # no preprocessor_config.json
    placeholders = {"id2label": {"0": "LABEL_0", "1": "LABEL_1"}}
    assert (
        transformers_resnet(_config_folder(tmp_path, **bottleneck, **placeholders)).class_names
        is None
    )
    # The image processors' sizes: an int, shortest_edge, or height and width (the whole
    # image resized to it, as ViT's processor does, unless a crop_size follows); ConvNext's
    # processor takes the whole image from 384 px, without the crop.
    for size, more, expected in [
        (224, {}, (224, "crop", 0.875)),
        ({"shortest_edge": 224}, {}, (224, "crop", 0.875)),
        (
            {"height": 256, "width": 256},
            {"image_processor_type": "ViTImageProcessor"},
            (256, "squash", 1.0),
        ),
        (
            {"shortest_edge": 256},
            {"crop_size": {"height": 224, "width": 224}},
            (224, "crop", 0.875),
        ),
        ({"shortest_edge": 384}, {}, (384, "squash", 1.0)),
        # Without a crop_pct: the crop over the side resized to first (BiT's processor),
        # else what ConvNext's processor takes without one (224 / 256).
        (
            {"shortest_edge": 256},
            {"crop_pct": None, "crop_size": {"height": 224, "width": 224}},
            (224, "crop", 0.875),
        ),
        (
            {"shortest_edge": 240},
            {"crop_pct": None, "crop_size": 224, "image_processor_type": "BitImageProcessor"},
            (224, "crop", 224 / 240),
        ),
        ({"shortest_edge": 224}, {"crop_pct": None}, (224, "crop", 0.875)),
    ]:
        preprocessor = {**PREPROCESSOR, "size": size, **more}
        preprocessor = {k: v for k, v in preprocessor.items() if v is not None}
        weights = _config_folder(tmp_path, preprocessor, **bottleneck)
        found = transformers_resnet(weights)
        assert (found.input_size, found.resize, found.crop_pct) == expected
    # A share of the resized image that is none (a crop_size over a size much larger) is
    # refused, naming the file.
    for more in ({"crop_pct": 8.75}, {"crop_pct": None, "crop_size": 224}):
        preprocessor = {**PREPROCESSOR, "size": {"shortest_edge": 1000}, **more}
        preprocessor = {k: v for k, v in preprocessor.items() if v is not None}
        weights = _config_folder(tmp_path, preprocessor, **bottleneck)
        with pytest.raises(ResnetlabError) as e:
            transformers_resnet(weights)
        assert str(e.value).startswith(f"{weights.parent / 'preprocessor_config.json'}: its ")
        assert "must be a number from 0.5 to 1; correct it" in str(e.value)
    # Another kind of model's config.json is not read here.
    (tmp_path / "hub" / "config.json").write_text(json.dumps({"model_type": "vit"}))
    assert transformers_resnet(tmp_path / "hub" / "model.safetensors") is None


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"layer_type": "bottleneck", "depths": [1, 1, 1, 1]},
            "a transformers ResNet of bottleneck blocks [1, 1, 1, 1], which no model here "
            "builds; the ones that load are basic [2, 2, 2, 2] (resnet18), ",
        ),
        (
            {"layer_type": "bottleneck", "depths": [3, 4, 6, 3], "embedding_size": 32},
            "embedding_size is 32, and resnet50 here has 64 (torchvision's network): these "
            "weights are for another one",
        ),
        (
            {"layer_type": "basic", "depths": [2, 2, 2, 2], "hidden_act": "gelu"},
            'hidden_act is "gelu", and resnet18 here has "relu"',
        ),
    ],
)
def test_a_transformers_resnet_of_another_network_is_refused_naming_the_setting(
    tmp_path, config, message
):
    with pytest.raises(ResnetlabError, match=r"config\.json: ") as caught:
        transformers_resnet(_config_folder(tmp_path, **config))
    assert message in str(caught.value)


def test_convert_pretrained_names_the_setting_of_a_transformers_resnet_of_no_model_here(
    tmp_path, capsys
):
    # Without --model too: not "does not say which model its weights are for".
    from safetensors.torch import save_file

    weights = _config_folder(tmp_path, layer_type="basic", depths=[2, 2, 2, 2], hidden_act="gelu")
    save_file({"embedder.embedder.convolution.weight": torch.zeros(64, 3, 7, 7)}, weights)
    out = tmp_path / "x.safetensors"
    assert main(["convert", "pretrained", str(weights.parent), str(out)]) == 2
    assert capsys.readouterr().err == (
        f'error: {weights.parent / "config.json"}: hidden_act is "gelu", and resnet18 here '
        'has "relu" (torchvision\'s network): these weights are for another one\n'
    )


def test_a_transformers_resnets_weights_without_their_config_say_so(tmp_path):
    # Its tensors' names are transformers' own: not "does not fit resnet18 ... another
    # architecture" for the ResNet-18 they are.
    from safetensors.torch import save_file

    weights = tmp_path / "model.safetensors"
    save_file({"resnet.embedder.embedder.convolution.weight": torch.zeros(64, 3, 7, 7)}, weights)
    with pytest.raises(ResnetlabError) as caught:
        resnetlab.create_model("resnet18", pretrained=weights)
    assert str(caught.value) == (
        f"{weights} holds a transformers ResNet's tensors (embedder, encoder.stages...) without "
        "its config.json beside it, which says which ResNet they are: put the model's "
        "config.json and preprocessor_config.json beside it, or give the folder hf download "
        "leaves (hf download microsoft/resnet-50 --local-dir resnet-50)"
    )


def test_convert_pretrained_makes_a_model_file_that_predicts_with_its_labels(tmp_path, capsys):
    folder, reference = _hub_folder(
        tmp_path, "basic", [2, 2, 2, 2], [64, 128, 256, 512], ["ant", "bee", "cat"]
    )
    out = tmp_path / "r18.safetensors"
    assert main(["convert", "pretrained", str(folder), str(out)]) == 0
    model = resnetlab.load_model(out).eval()
    assert (model.meta.model, model.meta.class_names) == ("resnet18", ["ant", "bee", "cat"])
    assert (model.meta.input_size, model.meta.resize) == (224, "crop")
    assert model.meta.crop_fraction == 0.875  # the processor's crop_pct: 256, then the centre
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x).logits, rtol=1e-5, atol=1e-5)
    # Its own weights file is not written over.
    weights = folder / "model.safetensors"
    before = weights.read_bytes()
    capsys.readouterr()
    assert main(["convert", "pretrained", str(folder), str(weights)]) == 2
    assert capsys.readouterr().err == (
        f"error: {weights} is the weights file itself; write the model to another path\n"
    )
    assert weights.read_bytes() == before


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"do_normalize": False},  # the pixels rescaled alone
        {"do_rescale": False, "image_mean": [124.0, 116.0, 104.0], "image_std": [58.4, 57.1, 57.4]},
        {"rescale_factor": 1 / 127.5, "image_mean": [1.0, 1.0, 1.0], "image_std": [1.0, 1.0, 1.0]},
        {"image_mean": 0.5, "image_std": 0.25},  # one number for every channel
        {"image_mean": [0.5], "image_std": [0.25]},
    ],
)
def test_the_normalisation_is_the_image_processors(tmp_path, settings):
    """(pixels / 255 - mean) / std with the mean and std read here is what transformers'
    processor feeds the model, whatever its do_normalize, do_rescale and rescale_factor."""
    transformers = pytest.importorskip("transformers", reason="the reference processor")
    preprocessor = {**PREPROCESSOR, "do_resize": False, **settings}
    weights = _config_folder(tmp_path, preprocessor, layer_type="basic", depths=[2, 2, 2, 2])
    found = transformers_resnet(weights)
    assert found.mean is not None  # the processor's, not ImageNet's for want of it
    pixels = torch.randint(
        0, 256, (8, 8, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    processor = transformers.ConvNextImageProcessor(**preprocessor)
    theirs = processor(pixels.numpy(), return_tensors="pt", input_data_format="channels_last")
    mean, std = torch.tensor(found.mean)[:, None, None], torch.tensor(found.std)[:, None, None]
    ours = (pixels.permute(2, 0, 1).double() / 255 - mean) / std
    torch.testing.assert_close(ours[None].float(), theirs["pixel_values"], rtol=1e-5, atol=1e-5)


def test_a_model_in_the_hugging_face_cache_is_read_from_its_snapshot(tmp_path, capsys):
    """The cache keeps a model as models--<org>--<name>/snapshots/<commit>/ of links to its
    blobs/, refs/main naming the commit: the snapshot, or the model's folder, is the model."""
    folder, reference = _hub_folder(
        tmp_path, "basic", [2, 2, 2, 2], [64, 128, 256, 512], ["ant", "bee", "cat"]
    )
    cached = tmp_path / "hub" / "models--microsoft--resnet-18"
    snapshot = cached / "snapshots" / "0123abc"
    (cached / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (cached / "refs").mkdir()
    (cached / "refs" / "main").write_text("0123abc")
    for file in folder.iterdir():
        file.rename(cached / "blobs" / f"blob-{file.name}")
        (snapshot / file.name).symlink_to(Path("..", "..", "blobs", f"blob-{file.name}"))
    for source in (snapshot, cached):
        assert declared_model(source) == ("resnet18", {})
        out = tmp_path / f"{source.name}.safetensors"
        assert main(["convert", "pretrained", str(source), str(out)]) == 0
        model = resnetlab.load_model(out)
        assert model.meta.class_names == ["ant", "bee", "cat"]
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            torch.testing.assert_close(model(x), reference(x).logits, rtol=1e-5, atol=1e-5)


def test_a_damaged_preprocessor_config_is_refused_not_taken_for_none(tmp_path):
    """Without the file, ImageNet's mean and std are assumed, as the report says; a file
    cut short says nothing either, but is the download to mend."""
    bottleneck = {"layer_type": "bottleneck", "depths": [3, 4, 6, 3]}
    weights = _config_folder(tmp_path, **bottleneck)
    (tmp_path / "hub" / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR)[:60])
    with pytest.raises(ResnetlabError) as caught:
        transformers_resnet(weights)
    assert str(caught.value).startswith(
        f"{tmp_path / 'hub' / 'preprocessor_config.json'} is not JSON ("
    )
    assert str(caught.value).endswith(
        "): it says how images are normalised for these weights; copy or download it again "
        "(or remove it, to assume ImageNet's mean and std)"
    )
