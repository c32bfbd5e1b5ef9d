"""Pretrained sources, each from a file its own library wrote, against that library's model.

Nothing is downloaded: torchvision's source reads a file placed in torch's hub cache under
the name torchvision expects, timm's a snapshot placed in the Hugging Face cache, so that
both libraries' own loading code runs. The files hold the libraries' own initialisation.
"""

import argparse
import errno
import json
import os
import pickle
import re
import socket
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file

import resnetlab
from resnetlab import ResnetlabError
from resnetlab.cli import main
from resnetlab.convert import load_pretrained, resolve_pretrained
from resnetlab.convert import pretrained as pretrained_module
from resnetlab.convert.pretrained import IMAGENET_MEAN, IMAGENET_STD
from resnetlab.errors import command_line


def _same_outputs(ours, theirs, size: int = 64) -> None:
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=1e-5, atol=1e-5)


def _same_features(ours, theirs, size: int = 64) -> None:
    """The layers both have: everything up to the classifier's input."""
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(_pooled(ours.eval(), x), _pooled(theirs.eval(), x))


def _pooled(model, x: torch.Tensor) -> torch.Tensor:
    if hasattr(model, "forward_features"):  # resnetlab's and timm's
        return model.forward_head(model.forward_features(x), pre_logits=True)
    return torch.nn.Sequential(*list(model.children())[:-1])(x).flatten(1)  # torchvision's


@pytest.fixture(scope="module")
def torchvision18():
    torch.manual_seed(1)
    return torchvision.models.resnet18().eval()


@pytest.fixture(scope="module")
def torchvision18_file(torchvision18, tmp_path_factory):
    path = tmp_path_factory.mktemp("tv") / "resnet18.pth"
    torch.save(torchvision18.state_dict(), path)
    return path


# torchvision ----------------------------------------------------------------------------------


def _put_in_hub_cache(monkeypatch, tmp_path, state) -> Path:
    """``state`` in torch's hub cache as torchvision's ResNet18_Weights.IMAGENET1K_V1, whose
    address is made to name it as torchvision names its files (resnet18-<its sha256>.pth),
    so that the hash check passes it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    made = tmp_path / "resnet18.pth"
    torch.save(state, made)
    digest = pretrained_module.file_sha256(made)
    monkeypatch.setattr(weights.value, "url", f"https://example.invalid/resnet18-{digest[:8]}.pth")
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    cached.parent.mkdir(parents=True)
    made.rename(cached)
    return cached


def test_torchvision_source_reads_torchs_hub_cache(torchvision18, tmp_path, monkeypatch):
    cached = _put_in_hub_cache(monkeypatch, tmp_path, torchvision18.state_dict())
    model = resnetlab.create_model("resnet18", pretrained="torchvision")
    _same_outputs(model, torchvision18)
    report = model.pretrained
    assert report.head == "kept" and not report.new and not report.dropped
    assert report.weights["description"] == "torchvision ResNet18_Weights.IMAGENET1K_V1"
    assert report.weights["location"] == str(cached)
    assert (report.mean, report.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert report.preprocessing["resize"] == 256 and report.preprocessing["crop"] == 224
    _same_outputs(resnetlab.create_model("resnet18", pretrained=True), torchvision18)  # timm's way
    # The enum's name, in either spelling, names the same file; a class count of the
    # user's own replaces the classifier.
    six = resnetlab.create_model(
        "resnet18", num_classes=6, pretrained="torchvision:ResNet18_Weights.IMAGENET1K_V1"
    )
    _same_features(six, torchvision18)
    assert six.pretrained.head == "replaced" and six.fc.out_features == 6
    assert six.pretrained.new == ["fc.weight", "fc.bias"]
    assert "the weights have 1000 classes, the model 6" in six.pretrained.describe()
    # Saved, it keeps the weights' normalisation, so predict feeds it what they expect.
    meta = resnetlab.save_model(six, tmp_path / "six.safetensors")
    assert (meta.mean, meta.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert meta.class_names is None and meta.resize == "crop"  # a new classifier: no names
    # The classifier kept, its outputs keep ImageNet's names: predict answers with them.
    kept = resnetlab.save_model(model, tmp_path / "imagenet.safetensors")
    categories = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    assert kept.class_names == list(categories) and kept.input_size == 224


def test_convert_pretrained_writes_torchvisions_weights_as_a_model_file(
    torchvision18, tmp_path, monkeypatch, capsys
):
    # ImageNet's classifier kept, with its class names and preprocessing, for predict,
    # explain, export and serve as they are.
    _put_in_hub_cache(monkeypatch, tmp_path, torchvision18.state_dict())
    out = tmp_path / "models" / "r18.safetensors"
    assert (
        main(
            ["convert", "pretrained", "torchvision:IMAGENET1K_V1", str(out), "--model", "resnet18"]
        )
        == 0
    )
    assert capsys.readouterr().out == (
        "converted resnet18 from torchvision ResNet18_Weights.IMAGENET1K_V1: 102 tensors loaded; "
        "normalisation: ImageNet mean/std (the weights')\n"
        f"wrote {out}\n"
    )
    model = resnetlab.load_model(out)
    _same_outputs(model, torchvision18)
    categories = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    assert model.meta.class_names == list(categories)
    assert (model.meta.input_size, model.meta.mean) == (224, IMAGENET_MEAN)
    # The weights named in full say their model; torchvision alone does not.
    full = tmp_path / "full.safetensors"
    assert (
        main(["convert", "pretrained", "torchvision:ResNet18_Weights.IMAGENET1K_V1", str(full)])
        == 0
    )
    assert main(["convert", "pretrained", "torchvision", str(tmp_path / "x.safetensors")]) == 2
    assert capsys.readouterr().err.endswith(
        "error: torchvision does not say which model its weights are for: give --model (e.g. "
        "--model resnet18), or name the weights in full "
        "(torchvision:ResNet18_Weights.IMAGENET1K_V1)\n"
    )
    assert not (tmp_path / "x.safetensors").exists()


def _photo(shared_data: Path, path: Path, size: tuple[int, int]) -> Path:
    """A SIGNS photo at ``size`` (width, height), saved as ``path``: a real picture of
    another shape than the model's input (under twice 256 a side, so that libjpeg's
    reduced decoding, which torchvision does not do, stays out of it)."""
    signs = shared_data / "signs" / "64x64_SIGNS" / "test_signs" / "0_IMG_5942.jpg"
    Image.open(signs).resize(size, Image.BICUBIC).save(path, quality=95)
    return path


def test_a_converted_torchvision_model_sees_photos_as_torchvisions_transforms_do(
    torchvision18, tmp_path, monkeypatch, shared_data
):
    """torchvision evaluates its ImageNet weights at Resize(256) + CenterCrop(224): the
    model file records that share (224 / 256), and predict's probabilities are the ones
    torchvision's own weights.transforms() and model give for the same photo.

    Within 1e-4 (measured: 3e-6 at most): PIL scales the centre's region alone here
    (``decode.fit_image``) and the whole image there before the cut; the same source
    pixels are weighed, but PIL's fixed-point coefficients round differently for a
    window that starts between pixels, so a pixel here and there is one grey level off."""
    _put_in_hub_cache(monkeypatch, tmp_path, torchvision18.state_dict())
    out = tmp_path / "r18.safetensors"
    assert (
        main(["convert", "pretrained", "torchvision:ResNet18_Weights.IMAGENET1K_V1", str(out)]) == 0
    )
    meta = resnetlab.read_model_meta(out)
    assert (meta.input_size, meta.resize, meta.crop_fraction) == (224, "crop", 0.875)
    transform = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()
    assert (transform.resize_size, transform.crop_size) == ([256], [224])
    for size in ((301, 451), (480, 360)):  # portrait, landscape
        photo = _photo(shared_data, tmp_path / f"{size[0]}x{size[1]}.jpg", size)
        with torch.no_grad():
            theirs = torchvision18(transform(Image.open(photo))[None]).softmax(1)[0]
        (prediction,) = resnetlab.predict(out, [photo], top_k=1000, device="cpu")
        ours = torch.zeros(1000)
        for name, p in prediction.top:
            ours[meta.class_names.index(name)] = p
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)


def test_a_model_trained_from_converted_weights_records_the_fraction_its_validation_used(
    tmp_path,
):
    """Weights evaluated at 0.875 (ImageNet's 256 for 224) train on the whole decoded
    image, as the run validates: its model files record 1, so that eval sees what the
    run's validation saw."""
    converted = tmp_path / "converted.safetensors"
    source = resnetlab.create_model("resnet8", num_classes=10)
    resnetlab.save_model(source, converted, input_size=16, crop_fraction=0.875)
    started = resnetlab.create_model("resnet8", pretrained=converted)
    assert started.pretrained.crop_fraction == 0.875
    # Saved as it was loaded (convert pretrained's way), the weights keep their fraction.
    assert resnetlab.save_model(started, tmp_path / "kept.safetensors").crop_fraction == 0.875
    run = tmp_path / "run"
    args = ["train", "--data", "digits", "--pretrained", str(converted), "--out", str(run)]
    assert main([*args, "--max-steps", "2", "--batch-size", "16", "--device", "cpu"]) == 0
    assert resnetlab.read_model_meta(run / "best.safetensors").crop_fraction == 1.0
    # The run's record of its weights keeps how their source saw its images.
    record = json.loads((run / "pretrained.json").read_text())
    assert (record["resize"], record["crop_fraction"]) == ("crop", 0.875)


def test_convert_pretrained_refuses_weights_without_a_classifier(tmp_path, capsys):
    # The network alone (a transformers ResNetModel, a state dict saved without fc): the
    # model file would carry a classifier of random weights, and predict answer with it.
    state = {
        k: v
        for k, v in resnetlab.create_model("resnet20", num_classes=10).state_dict().items()
        if not k.startswith("fc.")
    }
    torch.save(state, tmp_path / "features.pth")
    out = tmp_path / "models" / "r20.safetensors"
    args = ["convert", "pretrained", str(tmp_path / "features.pth"), str(out)]
    assert main([*args, "--model", "resnet20"]) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'features.pth'} holds resnet20 without its classifier (the "
        "network alone), and a model file needs one: train one on them with resnetlab train "
        f"--pretrained {tmp_path / 'features.pth'} --data DATA, or convert the weights saved "
        "with their classifier\n"
    )
    assert not out.parent.exists()


def test_convert_pretrained_names_a_source_that_is_not_there(tmp_path, capsys):
    # A misspelt folder is not found, with the near name, as train --pretrained says: not
    # a source that "does not say which model its weights are for".
    (tmp_path / "resnet-18").mkdir()
    out = str(tmp_path / "r18.safetensors")
    assert main(["convert", "pretrained", str(tmp_path / "resnet-1B"), out]) == 2
    assert capsys.readouterr().err == (
        f"error: pretrained weights not found: {tmp_path / 'resnet-1B'}; did you mean "
        f"{tmp_path / 'resnet-18'}/?\n"
    )
    assert main(["convert", "pretrained", "imagenet", out]) == 2
    err = capsys.readouterr().err
    assert "ImageNet weights are torchvision's (torchvision) or timm's (timm)" in err  # as SOURCE


def test_convert_pretrained_says_what_a_source_of_no_model_holds(tmp_path, capsys):
    # Without --model, a file or folder that is no weights is named as train --pretrained
    # names it, not as weights that "do not say which model they are for".
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "photos").mkdir()
    out = str(tmp_path / "x.safetensors")
    assert main(["convert", "pretrained", str(tmp_path / "empty.pth"), out]) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'empty.pth'} is not a PyTorch file, or is cut short (torch.save "
        "writes a zip archive)\n"
    )
    assert main(["convert", "pretrained", str(tmp_path / "photos"), out]) == 2
    assert capsys.readouterr().err.startswith(
        f"error: {tmp_path / 'photos'} is a folder without best.safetensors"
    )
    # Weights that say nothing of their model still ask for it.
    torch.save(resnetlab.create_model("resnet20").state_dict(), tmp_path / "bare.pth")
    assert main(["convert", "pretrained", str(tmp_path / "bare.pth"), out]) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'bare.pth'} does not say which model its weights are for: give "
        "it, --model resnet50\n"
    )


def test_convert_pretrained_names_its_source_as_it_takes_it(tmp_path, capsys, monkeypatch):
    """convert pretrained takes SOURCE, not train's --pretrained; convert_pretrained source=."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "hub").mkdir()
    save_file({"w": torch.zeros(2)}, tmp_path / "hub" / "model.safetensors")
    args = ["--model", "resnet18"]
    assert main(["convert", "pretrained", "empty", "r.safetensors", *args]) == 2
    err = capsys.readouterr().err
    assert "; SOURCE takes torchvision, " in err and "--pretrained" not in err
    assert main(["convert", "pretrained", "hub", "r.safetensors", *args]) == 2
    assert capsys.readouterr().err.endswith(
        "for the weights file in it, give that file: hub/model.safetensors\n"
    )
    with pytest.raises(ResnetlabError, match="; source takes torchvision, "):
        resnetlab.convert.convert_pretrained("empty", "r.safetensors", model="resnet18")


def test_a_cached_torchvision_file_of_other_weights_is_refused(torchvision18, tmp_path, capsys):
    """A file copied into torch's cache under torchvision's name is checked against the
    hash that name carries, as torch checks a download: other weights, or a copy cut short,
    are refused with the address to copy the file from, before anything is trained."""
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    torch.save(torchvision18.state_dict(), cached)  # not torchvision's ImageNet weights
    whole = cached.read_bytes()
    run = tmp_path / "run"
    args = ["train", "--data", "digits", "--model", "resnet18", "--pretrained", "torchvision"]
    docs = (Path(__file__).parents[2] / "docs" / "finetuning.md").read_text(encoding="utf-8")
    for data in (whole, whole[: len(whole) // 2]):  # another file; one cut short
        cached.write_bytes(data)
        digest = pretrained_module.file_sha256(cached)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("TORCH_HOME", str(tmp_path / "torch"))
            assert main([*args, "--input-size", "32", "--max-steps", "1", "--out", str(run)]) == 2
        err = capsys.readouterr().err
        assert err == (
            f"error: the cached file {cached} is not torchvision's "
            f"ResNet18_Weights.IMAGENET1K_V1 (its sha256 starts {digest[:8]}, its name says "
            f"f37072fd: another file, or one cut short); delete it and copy it again from "
            f"{url} (with a network, deleting it is enough)\n"
        )
        assert not run.exists()
        # docs/finetuning.md quotes it, with <TORCH_HOME> for the cache and its own digest.
        quoted = err.replace(str(tmp_path / "torch"), "<TORCH_HOME>")
        assert quoted.replace(digest[:8], "8e2ec3c4") in docs


def test_a_cached_torchvision_file_that_torch_cannot_read_names_its_address(
    torchvision18, tmp_path, monkeypatch
):
    """Past the hash check (a file of the hash its name says) torch may still fail to read
    it: the message names the address to copy it from, as trying again offline cannot."""
    cached = _put_in_hub_cache(monkeypatch, tmp_path, torchvision18.state_dict())
    cached.write_bytes(cached.read_bytes()[:1000])
    url = f"https://example.invalid/resnet18-{pretrained_module.file_sha256(cached)[:8]}.pth"
    monkeypatch.setattr(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.value, "url", url)
    cached = cached.rename(cached.with_name(Path(url).name))
    with pytest.raises(ResnetlabError) as e:
        resnetlab.create_model("resnet18", pretrained="torchvision")
    assert str(e.value) == (
        f"the cached file {cached} is not torchvision's ResNet18_Weights.IMAGENET1K_V1 "
        f"(RuntimeError: another file, or one cut short); delete it and copy it again from "
        f"{url} (with a network, deleting it is enough)"
    )


def test_torchvision_weights_that_do_not_exist_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ResnetlabError, match="no weights 'IMAGENET1K_V2' for resnet18; choose"):
        resnetlab.create_model("resnet18", pretrained="torchvision:IMAGENET1K_V2")
    with pytest.raises(ResnetlabError, match="torchvision has no weights for resnet20") as e:
        resnetlab.create_model("resnet20", pretrained="torchvision")
    assert "torchvision is for resnet18, resnet34, " in str(e.value)
    assert ": name one with name=MODEL (other models: a file or a run folder)" in str(e.value)
    # timm's ResNet-D keys are not torchvision's: refused by name, not by a traceback.
    with pytest.raises(ResnetlabError, match=r"no weights for resnet50d; .*is for "):
        resnetlab.create_model("resnet50d", pretrained="torchvision")
    with pytest.raises(ResnetlabError, match="drop stride_in_1x1"):
        resnetlab.create_model("resnet50", stride_in_1x1=True, pretrained="torchvision")


def test_torchvision_without_a_network_is_one_line_and_leaves_no_file(tmp_path, monkeypatch):
    # A proxy on a port nobody listens on: every connection is refused, as offline.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for name in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{port}")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ResnetlabError) as e:
        resnetlab.create_model("resnet18", pretrained="torchvision")
    message = str(e.value)
    assert "\n" not in message and message.startswith("cannot download torchvision's")
    assert "resnet18-f37072fd.pth" in message and "pretrained='FILE.pth'" in message
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.iterdir())


# timm -----------------------------------------------------------------------------------------


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, offline."""
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hf"


def test_timm_source_reads_the_hugging_face_cache(hf_cache):
    timm = pytest.importorskip("timm")
    from timm.models import _hub

    if not _hub._has_hf_hub:  # e.g. timm 1.0.3 with huggingface_hub 2, which lacks its imports
        pytest.skip("this timm cannot import the installed huggingface_hub: upgrade timm")
    save_for_hf = _hub.save_for_hf  # (timm.models names it in later releases only)

    torch.manual_seed(2)
    net = timm.create_model("resnet18.a1_in1k", pretrained=False).eval()
    # What the hub serves, as timm writes it (model.safetensors and config.json), in the
    # cache's layout: snapshots/<commit>/, refs/main naming the commit.
    repo = hf_cache / "models--timm--resnet18.a1_in1k"
    save_for_hf(net, repo / "snapshots" / ("0" * 40), safe_serialization=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)

    model = resnetlab.create_model("resnet18", pretrained="timm:resnet18.a1_in1k")
    _same_outputs(model, net)
    report = model.pretrained
    assert report.head == "kept" and report.weights["description"] == "timm resnet18.a1_in1k"
    assert report.preprocessing["interpolation"] == "bicubic"
    assert report.preprocessing["crop_pct"] == 0.95 and report.crop_fraction == 0.95
    assert (report.mean, report.std) == (IMAGENET_MEAN, IMAGENET_STD)
    # `timm` alone, or with the model's name, is timm's default tag for the model, as
    # `torchvision` alone is torchvision's default weights.
    for source in ("timm", "timm:resnet18"):
        model = resnetlab.create_model("resnet18", pretrained=source)
        _same_outputs(model, net)
        assert model.pretrained.weights["description"] == "timm resnet18.a1_in1k"

    # The same weights as a bare safetensors file, with timm's keys.
    path = repo / "snapshots" / ("0" * 40) / "model.safetensors"
    model = resnetlab.create_model("resnet18", num_classes=3, pretrained=path)
    _same_features(model, net)
    assert model.pretrained.head == "replaced"
    # Its config.json beside it, as the hub keeps it, gives timm's preprocessing.
    assert model.pretrained.normalisation_note == (
        "the weights' mean/std (timm's config.json beside them)"
    )
    assert model.pretrained.mean == tuple(net.pretrained_cfg["mean"])
    assert model.pretrained.preprocessing["input_size"] == net.pretrained_cfg["input_size"][-1]


def test_a_damaged_file_in_the_hugging_face_cache_is_named_with_the_folder_to_delete(hf_cache):
    """It was 'cannot fetch' with the advice to download or copy a cache: the cached file,
    read again on every try (with a network too), went unnamed."""
    timm = pytest.importorskip("timm")
    from timm.models import _hub

    if not _hub._has_hf_hub:
        pytest.skip("this timm cannot import the installed huggingface_hub: upgrade timm")
    net = timm.create_model("resnet18.a1_in1k", pretrained=False)
    repo = hf_cache / "models--timm--resnet18.a1_in1k"
    snapshot = repo / "snapshots" / ("0" * 40)
    _hub.save_for_hf(net, snapshot, safe_serialization=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    cached = snapshot / "model.safetensors"
    cached.write_bytes(cached.read_bytes()[:1000])  # a download cut short
    with pytest.raises(ResnetlabError) as e:
        resnetlab.create_model("resnet18", pretrained="timm:resnet18.a1_in1k")
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(
        f"the cached file {cached} of timm's resnet18.a1_in1k cannot be read (SafetensorError: "
    )
    assert f"cut short or damaged; delete {repo} (with a network, it is downloaded again), " in (
        message
    )


def test_an_unreachable_hub_is_asked_nothing(tmp_path, monkeypatch):
    """Without a network, Hugging Face's offline mode: no minute of retried requests."""
    timm = pytest.importorskip("timm")
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def unreachable(address, timeout=None):
        assert address == ("huggingface.co", 443) and timeout <= 3
        raise OSError("Name or service not known")

    seen = []

    def create_model(name, pretrained):
        seen.append(constants.HF_HUB_OFFLINE)
        raise RuntimeError("not in the cache")

    monkeypatch.setattr(pretrained_module.socket, "create_connection", unreachable)
    monkeypatch.setattr(timm, "create_model", create_model)
    with pytest.raises(ResnetlabError, match=r"^cannot fetch timm's resnet18\.a1_in1k"):
        resnetlab.create_model("resnet18", pretrained="timm:resnet18.a1_in1k")
    assert seen == [True] and constants.HF_HUB_OFFLINE is False  # offline inside only


def test_a_long_hub_error_is_cut_after_a_sentence(tmp_path, monkeypatch):
    """Hugging Face's offline error (about 250 characters) was cut at 200, mid-sentence:
    '... try again or make sure your Internet connection)'."""
    timm = pytest.importorskip("timm")
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    said = (
        "An error happened while trying to locate the file on the Hub and we cannot find the "
        "requested files in the local cache. Please check your connection and try again or "
        "make sure your Internet connection is on."
    )

    def create_model(name, pretrained):
        raise RuntimeError(said)

    def unreachable(address, timeout=None):
        raise OSError("Name or service not known")

    monkeypatch.setattr(pretrained_module.socket, "create_connection", unreachable)
    monkeypatch.setattr(timm, "create_model", create_model)
    with pytest.raises(ResnetlabError) as e:
        resnetlab.create_model("resnet18", pretrained="timm:resnet18.a1_in1k")
    assert str(e.value).startswith(
        "cannot fetch timm's resnet18.a1_in1k (RuntimeError: An error happened while trying "
        "to locate the file on the Hub and we cannot find the requested files in the local "
        "cache.); without a network, download "
    )


def test_timm_without_the_weights_offline_is_one_line(hf_cache):
    pytest.importorskip("timm")
    with pytest.raises(ResnetlabError) as e:
        resnetlab.create_model("resnet18", pretrained="timm:resnet18.a1_in1k")
    assert "\n" not in str(e.value) and str(e.value).startswith("cannot fetch timm's resnet18")
    assert str(e.value).endswith(
        "; without a network, download https://huggingface.co/timm/resnet18.a1_in1k/resolve/"
        "main/model.safetensors and https://huggingface.co/timm/resnet18.a1_in1k/resolve/main/"
        "config.json into one folder on a machine that has one and pass it "
        f"(pretrained='model.safetensors'), or copy that machine's Hugging Face cache to {hf_cache}"
    )
    # docs/finetuning.md quotes the command line's, with <HF_HOME>/hub for the cache folder.
    docs = (Path(__file__).parents[2] / "docs" / "finetuning.md").read_text(encoding="utf-8")
    with command_line(), pytest.raises(ResnetlabError) as e:
        resnetlab.create_model("resnet18", pretrained="timm:resnet18.a1_in1k")
    advice = str(e.value).partition("; without a network")[2].replace(str(hf_cache), "")
    assert "(--pretrained model.safetensors)" in advice
    assert f"; without a network{advice}<HF_HOME>/hub\n" in docs
    # `timm` alone names the tag it would fetch: timm's default for the model.
    with pytest.raises(ResnetlabError, match=r"^cannot fetch timm's resnet18\.a1_in1k \("):
        resnetlab.create_model("resnet18", pretrained="timm")
    with pytest.raises(ResnetlabError, match="timm's resnet50d, not resnet50"):
        resnetlab.create_model("resnet50", pretrained="timm:resnet50d.ra2_in1k")
    with pytest.raises(ResnetlabError, match=re.escape("no pretrained weights 'resnet18.nope'")):
        resnetlab.create_model("resnet18", pretrained="timm:resnet18.nope")


def test_timm_source_without_timm_says_what_to_install(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "timm", None)
    with pytest.raises(ResnetlabError, match=r"needs timm: pip install 'resnetlab\[timm\]'"):
        resnetlab.create_model("resnet18", pretrained="timm:resnet18.a1_in1k")


# Local files ----------------------------------------------------------------------------------


def test_torch_state_dict_file(torchvision18, torchvision18_file):
    model = resnetlab.create_model("resnet18", pretrained=torchvision18_file)
    _same_outputs(model, torchvision18)
    assert model.pretrained.weights["sha256"] and model.pretrained.weights["kind"] == "state-dict"
    weights = resolve_pretrained(torchvision18_file, "resnet18")
    assert len(repr(weights)) < 1000 and len(weights.state_dict) == 122  # not every tensor
    # Saved from inside DistributedDataParallel, or as a training checkpoint.
    wrapped = {f"module.{k}": v for k, v in torchvision18.state_dict().items()}
    path = torchvision18_file.with_name("wrapped.pt")
    torch.save({"epoch": 3, "state_dict": wrapped}, path)
    _same_outputs(resnetlab.create_model("resnet18", pretrained=path), torchvision18)
    # Named as timm's train.py names its checkpoints: was 'unknown kind of weights file .tar'.
    path = torchvision18_file.with_name("model_best.pth.tar")
    torch.save({"epoch": 3, "arch": "resnet18", "state_dict": wrapped, "version": 2}, path)
    _same_outputs(resnetlab.create_model("resnet18", pretrained=path), torchvision18)


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"conv1.weight": _RunsCode(marker)}, f, protocol=2)
    torch.save({"conv1.weight": _RunsCode(marker)}, tmp_path / "evil.pt")
    for bad in (path, tmp_path / "evil.pt"):
        with pytest.raises(ResnetlabError, match="refused: it holds more than tensors"):
            resnetlab.create_model("resnet18", pretrained=bad)
    assert not marker.exists()


def test_a_checkpoint_with_options_names_them_and_how_to_keep_its_weights(tmp_path):
    """A training checkpoint as torchvision's reference scripts save it, its options an
    argparse.Namespace beside the weights: refused, naming what it holds, with the way to
    take the weights out of a file one trusts, which then loads."""
    weights = torchvision.models.resnet18().state_dict()
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": weights, "epoch": 3, "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(ResnetlabError) as e:
        resnetlab.create_model("resnet18", pretrained=path)
    assert str(e.value) == (
        f"{path} was refused: it holds more than tensors (argparse.Namespace), and unpickling "
        "it could run code; if you trust the file, save its weights alone and give that file: "
        f"torch.save(torch.load({str(path)!r}, weights_only=False).state_dict(), 'weights.pth') "
        "for a model saved whole, with ['model'] or ['state_dict'] in place of .state_dict() "
        "for a training checkpoint"
    )
    out = tmp_path / "weights.pth"
    torch.save(torch.load(path, weights_only=False)["model"], out)
    model = resnetlab.create_model("resnet18", pretrained=out)
    assert torch.equal(model.conv1.weight, weights["conv1.weight"])


def test_another_architecture_is_one_line_naming_the_key_and_both_shapes(tmp_path, capsys):
    path = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50().state_dict(), path)
    model = resnetlab.create_model("resnet18")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ResnetlabError) as e:
        load_pretrained(model, path)
    assert str(e.value) == (
        "resnet50.pth does not fit resnet18: layer1.0.conv1.weight is (64, 64, 1, 1) in them "
        "and (64, 64, 3, 3) in resnet18; they fit resnet50: give model='resnet50'"
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched
    # A missing tensor is named with its shape; the command line says it in one line.
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    with pytest.raises(
        ResnetlabError, match=r"resnet34's layer1.2.conv1.weight \(64, 64, 3, 3\) is"
    ):
        resnetlab.create_model("resnet34", pretrained=tmp_path / "r18.pth")
    args = ["train", "--model", "resnet50", "--pretrained", str(tmp_path / "r18.pth")]
    assert main([*args, "--data", "digits", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: r18.pth does not fit resnet50: ") and err.count("\n") == 1
    assert err.endswith("; they fit resnet18: give --model resnet18\n")
    assert not (tmp_path / "run").exists()
    # Weights that fit no model here say so.
    odd = torchvision.models.resnet18().state_dict()
    odd["conv1.weight"] = torch.zeros(64, 3, 5, 5)
    torch.save(odd, tmp_path / "odd.pth")
    with pytest.raises(ResnetlabError, match=r"another architecture \(choose the name they"):
        resnetlab.create_model("resnet18", pretrained=tmp_path / "odd.pth")
    # A training module's checkpoint (Lightning's): the network under net., beside its
    # loss's tensors, so no prefix is on every key; not another architecture.
    wrapped = {f"net.{k}": v for k, v in torchvision.models.resnet18().state_dict().items()}
    wrapped["loss_fn.weight"] = torch.ones(4)
    torch.save({"state_dict": wrapped, "epoch": 3}, tmp_path / "module.ckpt")
    with pytest.raises(ResnetlabError) as e:
        resnetlab.create_model("resnet18", pretrained=tmp_path / "module.ckpt")
    assert str(e.value) == (
        "module.ckpt does not fit resnet18: resnet18's conv1.weight (64, 3, 7, 7) is not in "
        "them; they hold a resnet18 under 'net.', beside other tensors (a training module's); "
        "save that part alone, its keys without 'net.', and give that file"
    )
    with pytest.raises(ResnetlabError) as e:  # given to another model: the one they hold
        resnetlab.create_model("resnet20", pretrained=tmp_path / "module.ckpt")
    assert str(e.value).endswith(
        "they hold a resnet18 under 'net.', beside other tensors (a training module's); save "
        "that part alone, its keys without 'net.', and give that file with name='resnet18'"
    )


def test_resnetlab_model_file_and_run_folder(tmp_path):
    source = resnetlab.create_model("resnet20", num_classes=4)
    with torch.no_grad():  # statistics of its own, as a trained model has
        for m in source.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2)
    mean, std = (0.1, 0.2, 0.3), (0.4, 0.5, 0.6)
    resnetlab.save_model(source, tmp_path / "m.safetensors", mean=mean, std=std, input_size=32)
    run = tmp_path / "run"
    resnetlab.save_model(source, run / "best.safetensors", mean=mean, std=std)
    for path, kind in ((tmp_path / "m.safetensors", "resnetlab"), (run, "run")):
        model = resnetlab.create_model("resnet20", pretrained=path)
        assert model.num_classes == 4  # the weights' own by default: the head is kept
        _same_outputs(model, source, size=32)
        report = model.pretrained
        assert report.weights["kind"] == kind and report.head == "kept"
        assert (report.mean, report.std) == (mean, std)
    # The same keys in a plain net compute something else: refused by name.
    with pytest.raises(ResnetlabError, match="holds a resnet20, not a plain20"):
        resnetlab.create_model("plain20", pretrained=run)
    # The folder of the runs (runs/ for runs/<run>) names the newest run in it.
    with pytest.raises(ResnetlabError) as e:
        resnetlab.create_model("resnet20", pretrained=tmp_path)
    assert str(e.value) == (
        f"{tmp_path} is a folder of 1 run folder, not one run: pretrained takes one "
        f"of them, e.g. the newest, {run}"
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResnetlabError) as e:
        resnetlab.create_model("resnet20", pretrained=tmp_path / "empty")
    assert str(e.value) == (
        f"{tmp_path / 'empty'} is a folder without best.safetensors (a run folder has one once its "
        "first epoch has finished); pretrained takes torchvision, torchvision:<WEIGHTS>, "
        "timm, timm:<model>.<tag>, a weights file "
        "(.pth/.pt/.bin/.ckpt/.safetensors/.h5/.hdf5/.keras), a Hugging Face model's folder "
        "(timm, or a transformers ResNet) or a run folder"
    )
    # TensorFlow's SavedModel folder and checkpoint prefix: how to make a Keras file of them.
    saved_model, prefix = tmp_path / "sm", tmp_path / "ckpt" / "weights"
    for name in (saved_model / "saved_model.pb", prefix.with_suffix(".index")):
        name.parent.mkdir()
        name.write_bytes(b"\x08\x01")
    (prefix.parent / "weights.data-00000-of-00001").write_bytes(b"\x08\x01")
    with pytest.raises(ResnetlabError, match=r"sm is a TensorFlow SavedModel \(tf.keras 2's "):
        resnetlab.create_model("resnet20", pretrained=saved_model)
    with pytest.raises(ResnetlabError, match=r"weights is a TensorFlow checkpoint \(tf.keras 2's "):
        resnetlab.create_model("resnet20", pretrained=prefix)
    # A Hugging Face model's folder: the weights file in it is named, as the one to give.
    hub = tmp_path / "resnet20-hub"
    hub.mkdir()
    (hub / "config.json").write_text("{}")
    save_file(resnetlab.create_model("resnet20").state_dict(), hub / "model.safetensors")
    with pytest.raises(ResnetlabError) as e:
        resnetlab.create_model("resnet20", pretrained=hub)
    assert str(e.value) == (
        f"{hub} is a folder without best.safetensors, so not a run folder; for the weights "
        f"file in it, give that file: pretrained='{hub / 'model.safetensors'}'"
    )


def test_weights_of_the_same_keys_built_otherwise_are_refused(tmp_path):
    # ResNet-50 v1 and v1.5 differ only in where the stride is: same keys, other numbers.
    v1 = resnetlab.create_model("resnet50", num_classes=2, stride_in_1x1=True)
    resnetlab.save_model(v1, tmp_path / "v1.safetensors")
    # Named without options, the model is built as the weights were.
    started = resnetlab.create_model("resnet50", pretrained=tmp_path / "v1.safetensors")
    assert started.model_kwargs["stride_in_1x1"] is True
    with pytest.raises(ResnetlabError) as e:
        resnetlab.create_model(
            "resnet50", pretrained=tmp_path / "v1.safetensors", stride_in_1x1=False
        )
    assert str(e.value).endswith(
        "is a resnet50 built with options stride_in_1x1=true, the model with options "
        "stride_in_1x1=false; build it with the weights' options "
        "(stride_in_1x1=True)"
    )
    plain = resnetlab.create_model("resnet50", num_classes=2)
    resnetlab.save_model(plain, tmp_path / "v15.safetensors")
    with pytest.raises(ResnetlabError) as e:
        resnetlab.create_model(
            "resnet50", pretrained=tmp_path / "v15.safetensors", stride_in_1x1=True, stem="deep"
        )
    assert str(e.value).endswith(
        "is a resnet50 built with no options, the model with options stride_in_1x1=true, "
        "stem=deep; build it with the weights' options (no options)"
    )


def test_a_named_source_says_its_model_so_a_run_without_model_trains_it(tmp_path):
    """timm:MODEL.TAG and torchvision:<Model>_Weights.<NAME> name their model: without
    --model the run builds it (not the default resnet20, which they cannot fit)."""
    from resnetlab.convert.pretrained import declared_model
    from resnetlab.engine.config import resolve_config

    named = {
        "timm:resnet50.a1_in1k": "resnet50",
        "timm:seresnext50_32x4d": "seresnext50_32x4d",
        "torchvision:ResNet18_Weights.IMAGENET1K_V1": "resnet18",
        "torchvision:Wide_ResNet50_2_Weights.DEFAULT": "wide_resnet50_2",
        "torchvision:ResNeXt101_64X4D_Weights": "resnext101_64x4d",
    }
    for source, model in named.items():
        assert declared_model(source) == (model, {}), source
        assert resolve_config(pretrained=source, data="digits").model == model, source
    for source in ("torchvision", "torchvision:IMAGENET1K_V1", "timm:efficientnet_b0.ra_in1k"):
        assert declared_model(source) is None, source
    assert resolve_config(pretrained="timm:resnet50", data="digits", model="resnet18").model == (
        "resnet18"  # a --model given stays, and the weights are then checked against it
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
def test_a_pipe_of_weights_is_not_read_for_the_model_its_tensors_fit(tmp_path):
    """Finding a bare state dict's model reads its shapes: from a named pipe (weights.pth),
    that waited for ever on a pipe without a writer, or took the bytes the weights' read
    that follows needs."""
    import threading

    from resnetlab.convert.pretrained import declared_model

    fifo = tmp_path / "weights.pth"
    os.mkfifo(fifo)
    got = []
    thread = threading.Thread(target=lambda: got.append(declared_model(fifo)), daemon=True)
    thread.start()
    thread.join(timeout=10)
    if thread.is_alive():  # opened to read: a writer that closes at once lets it go
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(timeout=10)
        pytest.fail("declared_model opened the pipe to read it")
    assert got == [None]


def test_a_model_file_of_a_model_this_version_lacks_is_named_with_the_file(tmp_path):
    from safetensors.torch import load_file, save_file

    from resnetlab.engine.config import resolve_config

    path = tmp_path / "newer.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=2), path)
    meta = resnetlab.read_model_meta(path)
    meta.model = "resnet9"
    save_file(load_file(str(path)), str(path), metadata={"resnetlab": meta.to_json()})
    # Not declared as the run's model (there is none to build), and read in one line.
    assert resolve_config(pretrained=path, data="digits").model == "resnet20"
    with pytest.raises(
        ResnetlabError,
        match=rf"^{re.escape(str(path))} holds a model this resnetlab cannot build "
        r"\(unknown model 'resnet9'.*\); a newer resnetlab wrote it, or the file was edited$",
    ):
        resolve_pretrained(path, "resnet8")


def test_unknown_and_missing_sources_are_one_line(tmp_path):
    with pytest.raises(ResnetlabError, match=r"pretrained weights not found: .*nope\.pth \("):
        resolve_pretrained(tmp_path / "nope.pth", "resnet18")
    # A misspelt source name, or a path one letter off a file that is there: the near name.
    with pytest.raises(ResnetlabError) as caught:
        resolve_pretrained("torchvison", "resnet18")
    assert (
        str(caught.value) == "pretrained weights not found: torchvison; did you mean torchvision?"
    )
    with pytest.raises(ResnetlabError) as caught:
        resolve_pretrained("tim:resnet18.a1_in1k", "resnet18")
    assert str(caught.value) == (
        "pretrained weights not found: tim:resnet18.a1_in1k; did you mean timm:resnet18.a1_in1k?"
    )
    # The prefix in capitals: its name is lower case; where what it meant is refused too (a
    # model named where torchvision's weights go), that refusal's fix at once.
    with pytest.raises(ResnetlabError) as caught:
        resolve_pretrained("Timm:resnet18.a1_in1k", "resnet18")
    assert str(caught.value) == (
        "pretrained weights not found: Timm:resnet18.a1_in1k; did you mean timm:resnet18.a1_in1k?"
    )
    with pytest.raises(ResnetlabError) as caught:
        resolve_pretrained("TORCHVISION:resnet18", "resnet18")
    assert str(caught.value) == (
        "pretrained weights not found: TORCHVISION:resnet18; pretrained='torchvision:resnet18' "
        "names a model, not torchvision's weights: give model='resnet18', "
        "pretrained='torchvision' (its default weights), or "
        "pretrained='torchvision:ResNet18_Weights.IMAGENET1K_V1'"
    )
    # Keras's weights="imagenet": where ImageNet weights come from here.
    with pytest.raises(ResnetlabError) as caught:
        resolve_pretrained("imagenet", "resnet50")
    assert str(caught.value) == (
        "pretrained weights not found: imagenet; ImageNet weights are torchvision's "
        "(pretrained='torchvision') or timm's (pretrained='timm'), for the models they have "
        "weights for"
    )
    (tmp_path / "best.safetensors").write_bytes(b"x")
    with pytest.raises(ResnetlabError) as caught:
        resolve_pretrained(tmp_path / "best.safetensor", "resnet18")
    assert str(caught.value) == (
        f"pretrained weights not found: {tmp_path / 'best.safetensor'}; did you mean "
        f"{tmp_path / 'best.safetensors'}?"
    )
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(ResnetlabError, match=re.escape("unknown kind of weights file .npz")):
        resolve_pretrained(tmp_path / "w.npz", "resnet18")
    # A run's other files given for the run: was "unknown kind of weights file .json".
    (tmp_path / "config.json").write_text("{}")
    for name in ("config.json", "summary.json", "metrics.csv"):
        (tmp_path / name).touch()
        with pytest.raises(ResnetlabError) as caught:
            resolve_pretrained(tmp_path / name, "resnet18")
        assert str(caught.value) == (
            f"{tmp_path / name} is a file of the run in {tmp_path}, not weights; pretrained "
            f"takes the run folder: pretrained={str(tmp_path)!r}"
        )
    for name in ("config.json", "summary.json", "metrics.csv"):
        (tmp_path / name).unlink()
    (tmp_path / "torn.pth").write_bytes(b"not a zip")
    with pytest.raises(ResnetlabError, match=re.escape("torn.pth is not a PyTorch file")):
        resolve_pretrained(tmp_path / "torn.pth", "resnet18")
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "cut.pth")
    with open(tmp_path / "cut.pth", "r+b") as f:
        f.truncate(f.seek(0, 2) // 2)
    with pytest.raises(ResnetlabError, match=re.escape("cut.pth is not a PyTorch file, or")):
        resolve_pretrained(tmp_path / "cut.pth", "resnet18")


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_an_export_or_a_checkpoint_is_refused_naming_what_to_give(tmp_path):
    """Exports hold an inference program (BN folded), not weights to train from, and a
    checkpoint lacks the normalisation: named as the commands that read model files name
    them, with what to give instead."""
    model = resnetlab.create_model("resnet8", num_classes=2).eval()
    x = torch.randn(1, 3, 32, 32)
    torch.jit.trace(model, x).save(str(tmp_path / "m.pt"))
    torch.export.save(torch.export.export(model, (x,)), tmp_path / "m.pt2")
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    kinds = {
        "m.pt": "a TorchScript export",
        "m.pt2": "a torch.export program (.pt2 export)",
        "m.onnx": "an ONNX export",
    }
    for name, kind in kinds.items():
        with pytest.raises(ResnetlabError) as e:
            resolve_pretrained(tmp_path / name, "resnet8")
        assert str(e.value) == (
            f"{tmp_path / name} is {kind}, for inference only (every BatchNorm folded into "
            "its convolution); pretrained takes the .safetensors model file it was "
            "exported from, or its run folder"
        )
    # A run's checkpoint.pt holds weights, but not the normalisation they were trained with.
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": model.state_dict(), "images_trained": 0}, run / "checkpoint.pt")
    with pytest.raises(ResnetlabError) as e:
        resolve_pretrained(run / "checkpoint.pt", "resnet8")
    assert str(e.value) == (
        f"{run / 'checkpoint.pt'} is a training checkpoint (for resume); pretrained takes "
        f"its run folder, {run}, whose model files record the model, its classes and its "
        "normalisation"
    )


def test_a_pre_activation_net_gets_a_new_head_for_another_class_count(tmp_path):
    # timm's ResNetV2 layout: the classifier is head.fc, a 1x1 convolution.
    source = resnetlab.create_model("preresnet20", num_classes=10)
    torch.save(source.state_dict(), tmp_path / "pre10.pth")
    six = resnetlab.create_model(
        "preresnet20", num_classes=6, pretrained=str(tmp_path / "pre10.pth")
    )
    assert six.pretrained.head == "replaced" and six.pretrained.new == [
        "head.fc.weight",
        "head.fc.bias",
    ]
    assert "the weights have 10 classes, the model 6" in six.pretrained.describe()
    kept = {k: v for k, v in six.state_dict().items() if not k.startswith("head.")}
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in kept.items())


def test_weights_that_name_their_model_say_which_when_given_to_another(tmp_path):
    path = tmp_path / "r8.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=3), path)
    with pytest.raises(ResnetlabError, match=r"holds a resnet8, not a resnet18; .*name='resnet8'"):
        resnetlab.create_model("resnet18", pretrained=str(path))


def test_a_classifier_for_the_same_classes_follows_the_datas_class_order(tmp_path):
    torch.manual_seed(3)
    source = resnetlab.create_model("resnet8", num_classes=4)
    names = ["cat", "dog", "emu", "fox"]
    path = tmp_path / "animals.safetensors"
    resnetlab.save_model(source, path, class_names=names)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = source.eval()(x)

    same = resnetlab.create_model("resnet8", num_classes=4)
    report = load_pretrained(same, path, class_names=names)
    assert report.head == "kept"
    assert "; classifier kept (the same 4 classes)" in report.describe()  # said, as a new one is
    with torch.no_grad():
        torch.testing.assert_close(same.eval()(x), expected)

    # The data lists the same classes in another order: each output keeps its class.
    order = ["fox", "cat", "emu", "dog"]
    shuffled = resnetlab.create_model("resnet8", num_classes=4)
    report = load_pretrained(shuffled, path, class_names=order)
    assert report.head == "kept" and "rows put in the data's class order" in report.describe()
    with torch.no_grad():
        got = shuffled.eval()(x)
    torch.testing.assert_close(got, expected[:, [names.index(c) for c in order]])

    # The same classes named in another case (folders Cat and Fox), as eval matches them:
    # each output keeps its class, named as the data names it.
    cased = ["Fox", "cat", "emu", "dog"]
    recased = resnetlab.create_model("resnet8", num_classes=4)
    report = load_pretrained(recased, path, class_names=cased)
    assert report.head == "kept" and report.class_names == cased
    assert "rows put in the data's class order; Fox as fox (case aside)" in report.describe()
    with torch.no_grad():
        torch.testing.assert_close(recased.eval()(x), expected[:, [3, 0, 2, 1]])
    report = load_pretrained(
        resnetlab.create_model("resnet8", num_classes=4),
        path,
        class_names=["Cat", "dog", "emu", "fox"],
    )
    assert report.head == "kept" and "classifier kept; Cat as cat (case aside)" in (
        report.describe()
    )

    # Four other classes: same shape, but the classifier means nothing for them.
    other = resnetlab.create_model("resnet8", num_classes=4)
    drawn = other.fc.weight.detach().clone()
    report = load_pretrained(other, path, class_names=["0", "1", "2", "3"])
    assert report.head == "replaced" and report.head_is_new
    assert report.new == ["fc.weight", "fc.bias"] and "fc.weight" not in report.loaded
    assert "the weights' classes are cat, dog, emu, fox, the data's 0, 1, 2, 3" in (
        report.describe()
    )
    assert torch.equal(other.fc.weight, drawn)
    assert torch.equal(other.conv1.weight, source.conv1.weight)


def test_a_model_started_from_weights_is_saved_at_their_input_size(tmp_path):
    """A model file (or a Keras file) records the size its weights were trained at: a model
    started from it and saved with no input_size takes that, not the registry's 224."""
    weights = tmp_path / "small.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet18", num_classes=2), weights, input_size=64)
    started = resnetlab.create_model("resnet18", pretrained=weights)
    resnetlab.save_model(started, tmp_path / "started.safetensors")
    assert resnetlab.read_model_meta(tmp_path / "started.safetensors").input_size == 64
    resnetlab.save_model(started, tmp_path / "given.safetensors", input_size=96)  # given wins
    assert resnetlab.read_model_meta(tmp_path / "given.safetensors").input_size == 96
    fresh = resnetlab.create_model("resnet18", num_classes=2)
    resnetlab.save_model(fresh, tmp_path / "fresh.safetensors")
    assert resnetlab.read_model_meta(tmp_path / "fresh.safetensors").input_size == 224


def test_a_model_started_from_a_model_file_is_saved_with_its_classes_and_resize(tmp_path):
    weights = tmp_path / "pets.safetensors"
    pets = resnetlab.create_model("resnet20", num_classes=3)
    names = ["cat", "dog", "fish"]
    resnetlab.save_model(pets, weights, class_names=names, resize="squash")
    started = resnetlab.create_model("resnet20", pretrained=weights)
    assert started.pretrained.class_names == names and started.pretrained.resize == "squash"
    meta = resnetlab.save_model(started, tmp_path / "again.safetensors")
    assert meta.class_names == names and meta.resize == "squash"
    # In another order, the rows follow the names given, and so do the names saved.
    reordered = resnetlab.create_model("resnet20", num_classes=3)
    load_pretrained(reordered, weights, class_names=["fish", "cat", "dog"])
    meta = resnetlab.save_model(reordered, tmp_path / "reordered.safetensors")
    assert meta.class_names == ["fish", "cat", "dog"]
    # Other classes get a new classifier, which no name describes; given ones win.
    other = resnetlab.create_model("resnet20", num_classes=2, pretrained=weights)
    assert other.pretrained.class_names is None
    assert resnetlab.save_model(other, tmp_path / "o.safetensors").class_names is None
    given = resnetlab.save_model(started, tmp_path / "g.safetensors", class_names=["a", "b", "c"])
    assert given.class_names == ["a", "b", "c"]


def test_a_classifier_from_weights_that_name_no_classes_says_it_takes_the_datas_order(tmp_path):
    """A Keras file, a state dict or a model file converted without --classes: the outputs
    cannot be matched by name, so the report says which class each one is now taken for."""
    torch.manual_seed(3)
    source = resnetlab.create_model("resnet8", num_classes=4)
    path = tmp_path / "unnamed.safetensors"
    resnetlab.save_model(source, path)
    model = resnetlab.create_model("resnet8", num_classes=4)
    report = load_pretrained(model, path, class_names=["fox", "cat", "emu", "dog"])
    assert report.head == "kept" and torch.equal(model.fc.weight, source.fc.weight)
    assert report.head_note == (
        "classifier kept, its outputs taken as the data's classes in order (fox, cat, emu, "
        "dog): the weights name no classes (a model file that names them, as convert keras "
        "--classes writes, is matched by name)"
    )
    assert load_pretrained(model, path).head_note == ""  # no classes on either side


def test_a_bare_state_dict_for_a_cifar_model_says_its_normalisation_is_not_known(tmp_path):
    """Outside a training run, nothing computes the data's statistics: the report says the
    file lacks them rather than naming statistics the model does not have; its repr is one
    line, not every key."""
    path = tmp_path / "sd.pt"
    torch.save(resnetlab.create_model("resnet20", num_classes=10).state_dict(), path)
    report = resnetlab.create_model("resnet20", num_classes=10, pretrained=path).pretrained
    assert (report.mean, report.std) == (None, None)
    assert report.describe().endswith(
        "normalisation: not in the file (training uses its data's mean/std)"
    )
    assert repr(report) == f"PretrainedReport({report.describe()!r})"
    assert "layer1.0.conv1.weight" not in repr(report)


def test_new_and_dropped_keys_are_listed_in_the_models_order(tmp_path):
    """A file that keeps its keys sorted (fc.bias before fc.weight, as some savers do) is
    reported in the model's order, so the new and dropped classifier read alike."""
    state = resnetlab.create_model("resnet20", num_classes=10).state_dict()
    path = tmp_path / "sorted.pt"
    torch.save(dict(sorted(state.items())), path)
    report = resnetlab.create_model("resnet20", num_classes=3, pretrained=path).pretrained
    assert report.new == report.dropped == ["fc.weight", "fc.bias"]


def test_a_replaced_classifier_is_said_once(tmp_path):
    """The pretrained: line says a replaced classifier in its note alone, not again as
    tensors initialised here and unused from the weights; tensors left out for another
    reason (a model without a classifier) are still listed."""
    path = tmp_path / "r20.pt"
    torch.save(resnetlab.create_model("resnet20", num_classes=10).state_dict(), path)
    report = resnetlab.create_model("resnet20", num_classes=3, pretrained=path).pretrained
    assert report.new == report.dropped == ["fc.weight", "fc.bias"]  # pretrained.json's
    assert report.describe() == (
        "resnet20 from r20.pt: 95 tensors loaded; classifier replaced (the weights have 10 "
        "classes, the model 3); normalisation: not in the file (training uses its data's "
        "mean/std)"
    )
    headless = resnetlab.create_model("resnet20", num_classes=0, pretrained=path).pretrained
    assert "; the model has no classifier; not used from the weights: fc.weight, fc.bias;" in (
        headless.describe()
    )


def test_a_cut_short_weights_file_is_said_to_be_cut_short(tmp_path):
    """--pretrained with a safetensors file whose copy stopped says so, as the commands that
    read model files do, rather than quoting the reader's header error."""
    from safetensors.torch import save_file

    whole = tmp_path / "whole.safetensors"
    save_file(resnetlab.create_model("resnet20", num_classes=10).state_dict(), str(whole))
    data = whole.read_bytes()
    for kept in (len(data) // 2, 60):  # in the tensors' bytes, in the header
        cut = tmp_path / f"cut{kept}.safetensors"
        cut.write_bytes(data[:kept])
        with pytest.raises(ResnetlabError) as caught:
            resnetlab.create_model("resnet20", num_classes=10, pretrained=cut)
        assert str(caught.value).startswith(f"{cut} is cut short ({kept:,} of ")
        assert str(caught.value).endswith("copy it again")
    empty = tmp_path / "empty.safetensors"  # a download that failed before its first byte
    empty.touch()
    with pytest.raises(ResnetlabError) as caught:
        resnetlab.create_model("resnet20", num_classes=10, pretrained=empty)
    assert str(caught.value) == (
        f"{empty} is empty (0 bytes), as a copy or download that failed leaves it; copy it again"
    )
    garbled = tmp_path / "garbled.safetensors"  # whole, but its header is no JSON
    garbled.write_bytes(data[:8] + b"#" * (len(data) - 8))
    with pytest.raises(ResnetlabError) as caught:
        resnetlab.create_model("resnet20", num_classes=10, pretrained=garbled)
    assert str(caught.value).startswith(f"{garbled} is not a readable safetensors file (")
    assert str(caught.value).endswith("; it is damaged: copy or download it again")


def test_a_weights_file_with_changed_bytes_is_refused_not_loaded(tmp_path):
    """torch.load does not check the CRC-32 that torch.save's zip archive keeps for each
    entry: bytes changed in a copy loaded as weights, silently other than the file's."""
    good = tmp_path / "good.pth"
    torch.save(resnetlab.create_model("resnet20", num_classes=10).state_dict(), good)
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside conv weights' bytes, away from the zip records
    bad = tmp_path / "bad.pth"
    bad.write_bytes(bytes(data))
    with pytest.raises(ResnetlabError) as caught:
        resnetlab.create_model("resnet20", num_classes=10, pretrained=bad)
    assert re.fullmatch(
        rf"{re.escape(str(bad))} is damaged: its entry good/data/\d+ fails the checksum the "
        r"file records for it \(a copy or download gone wrong\); copy it again",
        str(caught.value),
    ), str(caught.value)
    resnetlab.create_model("resnet20", num_classes=10, pretrained=good)  # the copy intact


def test_train_with_a_bare_hub_source_and_no_model_asks_for_one(tmp_path, capsys):
    """``--pretrained torchvision`` alone names no model: the error asks for --model instead
    of naming train's default (resnet20), which the user did not choose."""
    with pytest.raises(ResnetlabError, match=r"^pretrained=True does not say"):
        resnetlab.train(pretrained=True, data="digits", out=tmp_path / "run")
    for source in ("torchvision", "timm", "torchvision:IMAGENET1K_V1"):
        args = ["train", "--pretrained", source, "--data", "digits"]
        assert main([*args, "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --pretrained {source} does not say which model"), err
        assert "resnet20" not in err and "give --model" in err
        assert not (tmp_path / "run").exists()
        with pytest.raises(
            ResnetlabError,
            match=r"does not say which model .* give model \(e\.g\. model='resnet18'\)",
        ):
            resnetlab.train(pretrained=source, data="digits", out=tmp_path / "run")


def test_a_model_named_where_torchvision_weights_go_is_told_both_right_forms(
    tmp_path, capsys, monkeypatch
):
    """``torchvision:resnet18`` (as ``timm:resnet18`` names a model) was told it named no
    model, with --model, and with it that resnet18 had no weights 'resnet18'."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    fix = (
        "names a model, not torchvision's weights: give --model resnet18 --pretrained "
        "torchvision (its default weights), or --pretrained "
        "torchvision:ResNet18_Weights.IMAGENET1K_V1"
    )
    for model in ([], ["--model", "resnet18"]):
        args = ["train", "--pretrained", "torchvision:resnet18", *model, "--data", "digits"]
        code, err = main([*args, "--out", str(tmp_path / "run")]), capsys.readouterr().err
        assert (code, err) == (2, f"error: --pretrained torchvision:resnet18 {fix}\n")
    with pytest.raises(ResnetlabError, match="give name='resnet18', pretrained='torchvision' "):
        resnetlab.create_model("resnet18", pretrained="torchvision:ResNet18")


def test_convert_is_told_a_fix_of_flags_and_source_as_it_takes_them(tmp_path, capsys, monkeypatch):
    """``convert pretrained torchvision:resnet18 --model resnet18`` was told to give
    "--model resnet18 torchvision", SOURCE's value read as the flag's."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    out = tmp_path / "x.safetensors"
    args = ["convert", "pretrained", "torchvision:resnet18", str(out), "--model", "resnet18"]
    assert (main(args), capsys.readouterr().err) == (
        2,
        "error: torchvision:resnet18 names a model, not torchvision's weights: give --model "
        "resnet18 with torchvision as SOURCE (its default weights), or "
        "torchvision:ResNet18_Weights.IMAGENET1K_V1\n",
    )
    assert not out.exists()
    with pytest.raises(
        ResnetlabError,
        match=r"give model='resnet18', source='torchvision' \(its default weights\), or "
        r"source='torchvision:ResNet18_Weights\.IMAGENET1K_V1'$",
    ):
        resnetlab.convert.convert_pretrained("torchvision:resnet18", out, model="resnet18")


def test_convert_is_told_of_a_source_of_no_model_as_train_is(tmp_path, capsys, monkeypatch):
    """``convert pretrained torchvision:resnet18`` was told to give --model resnet50 or
    timm:resnet50.a1_in1k, and ``torchvision`` alone was shown timm's weights: a named
    source that names no model is told what train is told, its example its own source's."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    out = tmp_path / "x.safetensors"
    assert (
        main(["convert", "pretrained", "torchvision:resnet18", str(out)]),
        capsys.readouterr().err,
    ) == (
        2,
        "error: torchvision:resnet18 names a model, not torchvision's weights: give --model "
        "resnet18 with torchvision as SOURCE (its default weights), or "
        "torchvision:ResNet18_Weights.IMAGENET1K_V1\n",
    )
    for source, full in [
        ("torchvision", "torchvision:ResNet18_Weights.IMAGENET1K_V1"),
        ("torchvision:IMAGENET1K_V1", "torchvision:ResNet18_Weights.IMAGENET1K_V1"),
        ("timm", "timm:resnet18.a1_in1k"),
    ]:
        assert (main(["convert", "pretrained", source, str(out)]), capsys.readouterr().err) == (
            2,
            f"error: {source} does not say which model its weights are for: give --model "
            f"(e.g. --model resnet18), or name the weights in full ({full})\n",
        )
    assert not out.exists()
    with pytest.raises(ResnetlabError, match=r"in full \(pretrained='timm:resnet18\.a1_in1k'\)$"):
        resnetlab.train(pretrained="timm", data="digits", out=tmp_path / "run")


def test_the_command_line_is_told_its_flags_and_python_its_keywords(tmp_path, capsys):
    """The same mistake made with ``resnetlab train`` and with ``resnetlab.train``: each is
    told the fix as it gives settings (``--model resnet18``, ``model='resnet18'``)."""
    runs = tmp_path / "runs"
    r8 = resnetlab.create_model("resnet8", num_classes=3)
    resnetlab.save_model(r8, runs / "a" / "best.safetensors")
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    cases = [  # (settings, what the command line says, what Python says)
        (
            {"pretrained": runs},
            ": --pretrained takes one of them",
            ": pretrained takes one of them",
        ),
        (
            {"model": "resnet34", "pretrained": tmp_path / "r18.pth"},
            "they fit resnet18: give --model resnet18",
            "they fit resnet18: give model='resnet18'",
        ),
        (
            {"pretrained": "timm"},
            "--pretrained timm does not say which model its weights are for: give --model "
            "(e.g. --model resnet18)",
            "pretrained='timm' does not say which model its weights are for: give model "
            "(e.g. model='resnet18')",
        ),
        (
            {"model": "resnet20", "pretrained": runs / "a"},
            "or give --model resnet8",
            "or give model='resnet8'",
        ),
    ]
    out = tmp_path / "run"
    for settings, flag_form, keyword_form in cases:
        flags = [x for key, value in settings.items() for x in (f"--{key}", str(value))]
        assert main(["train", *flags, "--data", "digits", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert flag_form in err and keyword_form not in err, err
        with pytest.raises(ResnetlabError) as e:
            resnetlab.train(data="digits", out=out, **settings)
        assert keyword_form in str(e.value) and flag_form not in str(e.value), str(e.value)
        assert not out.exists()
    # Python is told keywords again once the command line's block has ended.
    with command_line(), pytest.raises(ResnetlabError, match="give --model resnet18"):
        resnetlab.create_model("resnet34", pretrained=tmp_path / "r18.pth")
    # create_model names the model by its argument name (model= is no keyword of it), and
    # says so only within the call: train after it is told model= again.
    with pytest.raises(ResnetlabError, match="give name='resnet18'"):
        resnetlab.create_model("resnet34", pretrained=tmp_path / "r18.pth")
    # Weights that name their model: was "or train name='resnet8'", no call of the API.
    with pytest.raises(ResnetlabError, match=r"from resnet20 weights, or give name='resnet8'$"):
        resnetlab.create_model("resnet20", pretrained=runs / "a")
    with pytest.raises(ResnetlabError, match="give model='resnet18'"):
        resnetlab.train(
            model="resnet34", pretrained=tmp_path / "r18.pth", data="digits", out=tmp_path / "b"
        )
    resnetlab.create_model(name="resnet18", pretrained=tmp_path / "r18.pth")  # the fix, as said


def test_a_timm_models_config_json_beside_its_weights_says_their_model_and_preprocessing(
    tmp_path,
):
    """A timm model from Hugging Face is a folder of model.safetensors (or pytorch_model.bin)
    and config.json: the weights keep its normalisation, input size, classes and model."""
    from resnetlab.convert.pretrained import declared_model
    from resnetlab.engine.config import resolve_config

    net = resnetlab.create_model("resnet18", num_classes=3)
    folder = tmp_path / "hub"
    folder.mkdir()
    weights = folder / "model.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, weights)
    config = {
        "architecture": "resnet18",
        "num_classes": 3,
        "label_names": ["ant", "bee", "cat"],
        "pretrained_cfg": {
            "input_size": [3, 160, 160],
            "crop_pct": 0.8,
            "interpolation": "bicubic",
            "mean": [0.5, 0.4, 0.3],
            "std": [0.2, 0.25, 0.3],
        },
    }
    (folder / "config.json").write_text(json.dumps(config))
    model = resnetlab.create_model("resnet18", num_classes=3, pretrained=weights)
    report = model.pretrained
    assert (report.mean, report.std) == ((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    assert report.class_names == ["ant", "bee", "cat"]
    assert report.preprocessing == {
        "resize": 200,
        "crop": 160,
        "crop_pct": 0.8,
        "interpolation": "bicubic",
        "input_size": 160,
    }
    saved = tmp_path / "saved.safetensors"
    resnetlab.save_model(model, saved)
    meta = resnetlab.read_model_meta(saved)
    assert (meta.input_size, meta.class_names, meta.mean) == (
        160,
        ["ant", "bee", "cat"],
        (0.5, 0.4, 0.3),
    )
    # Without --model, the run trains the model the config names.
    assert declared_model(weights) == ("resnet18", {})
    assert resolve_config(pretrained=str(weights), data="digits").model == "resnet18"
    # The folder itself, as `hf download` leaves it, gives the same (it said "give that file").
    assert declared_model(folder) == ("resnet18", {})
    assert resolve_config(pretrained=str(folder), data="digits").model == "resnet18"
    whole = resnetlab.create_model("resnet18", num_classes=3, pretrained=folder).pretrained
    assert (whole.mean, whole.class_names, whole.weights["location"]) == (
        (0.5, 0.4, 0.3),
        ["ant", "bee", "cat"],
        str(weights),
    )
    torch.save(net.state_dict(), folder / "pytorch_model.bin")
    assert resnetlab.create_model(
        "resnet18", pretrained=folder / "pytorch_model.bin"
    ).pretrained.mean == (0.5, 0.4, 0.3)
    # A crop_pct that is no share of the image (8.75 for 0.875) is refused, naming the file.
    config["pretrained_cfg"]["crop_pct"] = 8.75
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(resnetlab.ResnetlabError) as e:
        resnetlab.create_model("resnet18", num_classes=3, pretrained=weights)
    assert str(e.value) == (
        f"{folder / 'config.json'}: pretrained_cfg's crop_pct is 8.75, where it must be a "
        "number from 0.5 to 1; correct it (timm's default is 0.875)"
    )
    # A config.json of another kind (a transformers model's) is not timm's: not read.
    (folder / "config.json").write_text(json.dumps({"model_type": "resnet", "num_labels": 3}))
    plain = resnetlab.create_model("resnet18", num_classes=3, pretrained=weights).pretrained
    assert (plain.mean, plain.std) == (IMAGENET_MEAN, IMAGENET_STD)  # assumed, and said so
    assert declared_model(weights) == ("resnet18", {})  # the one model its tensors fit


def test_a_download_that_cannot_be_saved_blames_the_folder_not_a_cached_file(tmp_path, monkeypatch):
    # A full disk while torch downloaded was "the cached file ... is not torchvision's
    # weights ...: delete it", naming a file that was never there.
    def full_disk(url, dst, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", full_disk)
    with pytest.raises(ResnetlabError) as e:
        resnetlab.create_model("resnet18", pretrained="torchvision")
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(e.value) == (
        f"cannot save torchvision's ResNet18_Weights.IMAGENET1K_V1 to {cached} (No space left "
        "on device); free space there, or set TORCH_HOME to a folder you can write to"
    )
