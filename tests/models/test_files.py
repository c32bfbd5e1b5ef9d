import dataclasses
import errno
import json
import os
import re
import stat

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import resnetlab
from resnetlab import ResnetlabError
from resnetlab.cli import main
from resnetlab.engine.distributed import ACCELERATORS
from resnetlab.errors import command_line


def test_round_trip_rebuilds_the_same_model(tmp_path):
    model = resnetlab.create_model("resnet20", num_classes=4, shortcut="B").eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
    path = tmp_path / "m.safetensors"
    resnetlab.save_model(
        model,
        path,
        class_names=["a", "b", "c", "d"],
        mean=(0.5, 0.4, 0.3),
        std=(0.2, 0.2, 0.2),
        training={"best_val_acc": 0.9},
    )
    loaded = resnetlab.load_model(path)
    assert not loaded.training
    assert loaded.meta.class_names == ["a", "b", "c", "d"]
    assert loaded.meta.mean == (0.5, 0.4, 0.3)
    assert loaded.meta.input_size == 32
    assert loaded.meta.training == {"best_val_acc": 0.9}
    assert loaded.model_kwargs == {"shortcut": "B"}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert not list(tmp_path.glob(".*tmp"))


def test_a_loaded_model_saved_again_keeps_how_its_images_are_prepared(tmp_path):
    model = resnetlab.create_model("resnet20", num_classes=3)
    first = resnetlab.save_model(
        model,
        tmp_path / "first.safetensors",
        input_size=24,
        class_names=["a", "b", "c"],
        mean=(0.5, 0.4, 0.3),
        std=(0.2, 0.2, 0.2),
        resize="squash",
        training={"best_val_acc": 0.9},
    )
    loaded = resnetlab.load_model(tmp_path / "first.safetensors")
    again = resnetlab.save_model(loaded, tmp_path / "again.safetensors")
    assert again == first
    # Given values win; class names that no longer fit the head are left out.
    loaded.reset_classifier(2)
    other = resnetlab.save_model(loaded, tmp_path / "other.safetensors", mean=(0.1,) * 3)
    assert other.class_names is None and other.mean == (0.1,) * 3 and other.std == (1.0,) * 3
    assert (other.input_size, other.resize) == (24, "squash")
    assert other.training == {"weights_changed": True}  # its score was of the old weights
    given = resnetlab.save_model(loaded, tmp_path / "given.safetensors", training={})
    assert given.training == {}


@pytest.fixture(scope="module")
def trained_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    resnetlab.train(
        model="resnet8", data="digits", input_size=8, max_steps=2, device="cpu", out=str(out)
    )
    return out / "best.safetensors"


def _metadata(path) -> dict:
    with safe_open(path, "pt") as f:
        return f.metadata()


def test_a_trained_model_loaded_and_saved_again_keeps_its_whole_record(trained_file, tmp_path):
    """save_model wrote an empty training record for a loaded model: the copy lost what it
    was trained on and how its validation images were held out, so eval scored it on all
    of its data, the images it trained on too."""
    again = tmp_path / "again.safetensors"
    resnetlab.save_model(resnetlab.load_model(trained_file), again)
    assert _metadata(again) == _metadata(trained_file)
    twice = tmp_path / "twice.safetensors"
    resnetlab.save_model(resnetlab.load_model(again), twice)
    assert _metadata(twice) == _metadata(trained_file)
    assert load_file(twice).keys() == load_file(trained_file).keys()
    assert all(torch.equal(v, load_file(trained_file)[k]) for k, v in load_file(twice).items())
    scored = resnetlab.evaluate(again, "digits").result.count
    assert scored == resnetlab.evaluate(trained_file, "digits").result.count == 359


def test_a_model_trained_further_after_loading_keeps_its_record_but_not_its_scores(
    trained_file, tmp_path
):
    model = resnetlab.load_model(trained_file).to(memory_format=torch.channels_last)
    path = tmp_path / "same.safetensors"
    resnetlab.save_model(model, path)  # the same values in another layout: not a change
    assert _metadata(path) == _metadata(trained_file)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 8, 8))  # BatchNorm's running statistics move
        model.fc.bias.add_(1.0)
    path = tmp_path / "changed.safetensors"
    resnetlab.save_model(model, path)
    before = resnetlab.read_model_meta(trained_file).training
    assert {"best_val_acc", "best_epoch", "held_out"} <= before.keys()
    after = resnetlab.load_model(path)
    assert after.meta.training == {
        **{k: v for k, v in before.items() if k not in ("best_val_acc", "best_epoch")},
        "weights_changed": True,
    }
    assert after.meta == dataclasses.replace(model.meta, training=after.meta.training)
    for key, value in model.state_dict().items():
        assert torch.equal(after.state_dict()[key], value), key


def test_a_training_runs_model_saved_keeps_its_record(tmp_path):
    run = resnetlab.train(
        model="resnet8", data="digits", input_size=8, max_steps=1, out=str(tmp_path / "run")
    )
    meta = resnetlab.save_model(run.model, tmp_path / "copy.safetensors")
    assert meta == resnetlab.read_model_meta(run.run_dir / "last.safetensors")
    assert "best_val_acc" in meta.training


@pytest.mark.parametrize(
    ("name", "kwargs"), [("wrn16_8", {"drop_rate": 0.3}), ("resnet18d", {"residual": False})]
)
def test_pre_activation_and_variant_models_round_trip(tmp_path, name, kwargs):
    model = resnetlab.create_model(name, num_classes=3, **kwargs).eval()
    path = tmp_path / "m.safetensors"
    resnetlab.save_model(model, path, class_names=["a", "b", "c"])
    loaded = resnetlab.load_model(path)
    assert loaded.model_kwargs == kwargs and type(loaded) is type(model)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_keras_model_keeps_its_input_size(tmp_path):
    model = resnetlab.create_model("resnet50_keras", input_size=96)
    resnetlab.save_model(model, tmp_path / "k.safetensors")
    loaded = resnetlab.load_model(tmp_path / "k.safetensors")
    assert loaded.meta.input_size == 96 and loaded.fc.in_features == 8192


def test_a_keras_model_is_not_written_for_an_input_size_its_classifier_cannot_take(tmp_path):
    """The file's input size is the one predict resizes to: at 128 the course's model,
    built for 64, would fail on every image. A size with features of the same shape (62:
    1x1 after the last pooling, as 64) is one it takes."""
    model = resnetlab.create_model("resnet50_keras", num_classes=2)
    with pytest.raises(ResnetlabError) as caught:
        resnetlab.save_model(model, tmp_path / "k.safetensors", input_size=128)
    assert str(caught.value) == (
        f"{tmp_path / 'k.safetensors'}: not written: resnet50_keras is built for 64x64 images "
        "(its classifier takes the features of that size), and input_size=128 would have "
        "predict feed it 128x128 ones; leave input_size out"
    )
    assert not (tmp_path / "k.safetensors").exists()
    resnetlab.save_model(model, tmp_path / "k.safetensors", input_size=62)
    with torch.no_grad():
        assert resnetlab.load_model(tmp_path / "k.safetensors")(
            torch.zeros(1, 3, 62, 62)
        ).shape == (1, 2)


def test_channels_last_models_save(tmp_path):
    model = resnetlab.create_model("resnet20").to(memory_format=torch.channels_last)
    resnetlab.save_model(model, tmp_path / "m.safetensors")
    assert resnetlab.load_model(tmp_path / "m.safetensors").num_classes == 10


def test_class_names_must_match_the_head(tmp_path):
    model = resnetlab.create_model("resnet20")
    with pytest.raises(ResnetlabError, match="3 class names for a model with 10 outputs"):
        resnetlab.save_model(model, tmp_path / "m.safetensors", class_names=["a", "b", "c"])
    names = [str(i) for i in range(9)] + ["3"]  # predictions by name need one class a name
    with pytest.raises(ResnetlabError, match=r"^class names repeated: 3; give each class a name"):
        resnetlab.save_model(model, tmp_path / "m.safetensors", class_names=names)
    assert not (tmp_path / "m.safetensors").exists()


def test_a_model_file_from_a_pipe_is_named_as_one(tmp_path):
    # `resnetlab predict <(cat m.safetensors) x.jpg`: a pipe, which was "not found".
    pipe = tmp_path / "m.safetensors"
    os.mkfifo(pipe)  # never opened: nothing blocks
    with pytest.raises(ResnetlabError) as caught:
        resnetlab.load_model(pipe)
    assert str(caught.value) == (
        f"{pipe} is a pipe or a device, not a model file: save the model to a file and give "
        "its path"
    )


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(ResnetlabError, match="model file not found"):
        resnetlab.load_model(tmp_path / "missing.safetensors")
    (tmp_path / "best.safetensors").write_bytes(b"x")  # a name one letter off: the hint
    with pytest.raises(ResnetlabError) as caught:
        resnetlab.load_model(tmp_path / "best.safetensor")
    assert str(caught.value) == (
        f"model file not found: {tmp_path / 'best.safetensor'}; did you mean "
        f"{tmp_path / 'best.safetensors'}?"
    )
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"this is not a model")
    with pytest.raises(ResnetlabError, match="is not a safetensors model file"):
        resnetlab.load_model(junk)
    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(2)}, str(bare))
    with pytest.raises(ResnetlabError) as caught:
        resnetlab.load_model(bare)
    assert str(caught.value) == (
        f"{bare} has no resnetlab metadata: it holds bare weights, which train --pretrained takes "
        "(or, in Python, create_model(...).load_state_dict)"
    )


def test_a_model_without_a_classifier_is_not_written_and_says_how_to_give_it_one(tmp_path):
    # It said "its metadata would be invalid (num_classes 0 is not an integer in 1..100,000)".
    model = resnetlab.create_model("resnet8", num_classes=0)
    path = tmp_path / "m.safetensors"
    with pytest.raises(ResnetlabError) as caught:
        resnetlab.save_model(model, path)
    assert str(caught.value) == (
        f"{path}: not written: resnet8 has no classifier (num_classes=0), and a model file "
        "holds a classifier; give it one first: model.reset_classifier(N)"
    )
    assert not path.exists()
    model.reset_classifier(3)
    resnetlab.save_model(model, path)
    assert resnetlab.load_model(path).meta.num_classes == 3


def test_a_file_that_is_no_safetensors_file_says_what_to_do(tmp_path):
    # It said only "is not a safetensors model file (Error while deserializing header: ...)".
    for name, fix in [
        ("junk.safetensors", "the file is damaged: copy it again, or save the model again"),
        ("junk.npy", "give the .safetensors file that train or save_model wrote"),
    ]:
        (tmp_path / name).write_bytes(b"this is not a model")
        with pytest.raises(ResnetlabError) as caught:
            resnetlab.load_model(tmp_path / name)
        assert str(caught.value).startswith(f"{tmp_path / name} is not a safetensors model file (")
        assert str(caught.value).endswith(f"); {fix}")


def not_readable_here(monkeypatch, path):
    """``path`` copied from another account (chmod 600): this user may not read it, and
    safetensors, which cannot open it, says "No such file or directory" (root reads it, so
    the refusal is made here, as the kernel makes it)."""
    from resnetlab.convert import pretrained
    from resnetlab.models import files

    access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode, **kw: os.fspath(p) != str(path) and access(p, mode, **kw)
    )
    for module in (files, pretrained):
        opener = module.safe_open

        def refused(name, *args, opener=opener, **kwargs):
            if name == str(path):
                raise FileNotFoundError(f"No such file or directory: {name}")
            return opener(name, *args, **kwargs)

        monkeypatch.setattr(module, "safe_open", refused)


def test_a_model_file_this_user_may_not_read_is_not_called_damaged_nor_missing(
    tmp_path, monkeypatch
):
    # It was "is not a safetensors model file (No such file or directory: m.safetensors);
    # the file is damaged: copy it again" (eval, export, serve, predict, --pretrained).
    from resnetlab.convert.pretrained import resolve_pretrained

    path = tmp_path / "m.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=2), path)
    not_readable_here(monkeypatch, path)
    said = f"{path}: no permission to read it; give yourself read access to it (chmod u+r)"
    for read in (resnetlab.load_model, lambda p: resolve_pretrained(p, "resnet8")):
        with pytest.raises(ResnetlabError) as caught:
            read(path)
        assert str(caught.value) == said


def test_a_missing_file_is_not_said_to_be_one_that_shares_only_its_suffix(tmp_path):
    # nosuch.safetensors was "did you mean hf.safetensors?": the shared ".safetensors" made
    # any short name close. A name close in its stem is still given.
    (tmp_path / "hf.safetensors").write_bytes(b"x")
    (tmp_path / "model.safetensors").write_bytes(b"x")
    with pytest.raises(ResnetlabError) as caught:
        resnetlab.load_model(tmp_path / "nosuch.safetensors")
    assert str(caught.value) == f"model file not found: {tmp_path / 'nosuch.safetensors'}"
    with pytest.raises(ResnetlabError) as caught:
        resnetlab.load_model(tmp_path / "modle.safetensors")
    assert str(caught.value).endswith(f"; did you mean {tmp_path / 'model.safetensors'}?")


def test_an_archive_given_as_a_model_file_is_named_as_one(tmp_path, capsys):
    # `resnetlab predict cifar10.tar.gz x.jpg` was "is not a safetensors model file (Error
    # while deserializing header: invalid UTF-8 in header...)".
    import tarfile

    archive = tmp_path / "photos.tar.gz"
    (tmp_path / "a.txt").write_text("a")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "a.txt", arcname="photos/a.txt")
    with pytest.raises(ResnetlabError) as caught:
        resnetlab.load_model(archive)
    assert str(caught.value) == (
        f"{archive} is an archive, not a model file: give a data set in it as the data: "
        f"resnetlab.evaluate(model_file, {str(archive)!r}), or extract a model file from it first"
    )
    assert main(["summary", str(archive)]) == 2
    assert capsys.readouterr().err == (
        f"error: {archive} is an archive, not a model file: give a data set in it after "
        f"--data: resnetlab eval MODEL_FILE --data {archive}, or extract a model file from it "
        "first\n"
    )


def test_a_link_to_no_file_is_named_with_where_it_leads(tmp_path):
    # It was "model file not found: m.safetensors", a name ls lists.
    link = tmp_path / "m.safetensors"
    link.symlink_to("gone.safetensors")
    with pytest.raises(ResnetlabError) as caught:
        resnetlab.load_model(link)
    assert str(caught.value) == (
        f"model file not found: {link} is a link to gone.safetensors, which does not exist; "
        "point the link at the model file, or give the file's path"
    )


def test_a_file_cut_short_says_so_and_how_far(tmp_path):
    whole = tmp_path / "m.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=2), whole)
    data = whole.read_bytes()
    header = 8 + int.from_bytes(data[:8], "little")
    cut = tmp_path / "cut.safetensors"
    for keep, of in [(header + 100, f"of {len(data):,} bytes"), (50, f"of at least {header:,}")]:
        cut.write_bytes(data[:keep])  # in the tensors, then in the header
        with pytest.raises(ResnetlabError, match=rf"is cut short \({keep:,} {of}.*copy it again"):
            resnetlab.load_model(cut)
    cut.write_bytes(b"")  # a download that failed, not a file of another format
    for read in (resnetlab.load_model, resnetlab.read_model_meta):
        with pytest.raises(ResnetlabError) as caught:
            read(cut)
        assert str(caught.value) == (
            f"{cut} is empty (0 bytes), as a copy or download that failed leaves it; copy it again"
        )


def test_metadata_naming_the_model_or_its_weights_among_its_options_is_refused(tmp_path):
    # create_model takes these itself: an edited file must not reach it with them twice.
    path = tmp_path / "m.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=2), path)
    from safetensors.torch import load_file

    weights = load_file(str(path))
    for options in ({"name": "resnet20"}, {"pretrained": "torchvision"}):
        meta = resnetlab.read_model_meta(path)
        meta.model_kwargs = options
        edited = tmp_path / "edited.safetensors"
        save_file(weights, str(edited), metadata={"resnetlab": meta.to_json()})
        with pytest.raises(ResnetlabError) as caught:
            resnetlab.load_model(edited)
        assert str(caught.value) == (
            f"{edited} has invalid resnetlab metadata (model_kwargs sets the model's name or "
            "pretrained weights, which no file holds); the file is damaged or was edited: save "
            "the model again"
        )


def test_metadata_naming_a_class_twice_is_refused_naming_the_file(tmp_path):
    # It said "class names repeated: a; give each class a name of its own", naming no
    # file, and a fix for save_model's caller, not for a file read back.
    path = tmp_path / "m.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=3), path)
    from safetensors.torch import load_file

    meta = json.loads(resnetlab.read_model_meta(path).to_json())
    meta["class_names"] = ["a", "a", "b"]
    save_file(load_file(str(path)), str(path), metadata={"resnetlab": json.dumps(meta)})
    for read in (resnetlab.load_model, resnetlab.read_model_meta):
        with pytest.raises(ResnetlabError) as caught:
            read(path)
        assert str(caught.value) == (
            f"{path} has invalid resnetlab metadata (class names repeated: a); the file is "
            "damaged or was edited: save the model again"
        )


def test_weights_that_do_not_fit_the_model_are_a_clear_error(tmp_path):
    path = tmp_path / "m.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet20"), path)
    meta = resnetlab.read_model_meta(path)
    meta.model = "resnet32"
    from safetensors.torch import load_file

    save_file(load_file(str(path)), str(path), metadata={"resnetlab": meta.to_json()})
    with pytest.raises(ResnetlabError, match="does not match its model resnet32"):
        resnetlab.load_model(path)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"model": "resnet9"}, r"unknown model 'resnet9'"),
        ({"model_kwargs": {"shortcut": "Z"}}, r"resnet20: unknown shortcut 'Z'"),
    ],
    ids=["model", "option"],
)
def test_a_model_or_option_this_version_lacks_names_the_file(tmp_path, change, says):
    path = tmp_path / "m.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet20"), path)
    meta = resnetlab.read_model_meta(path)
    for key, value in change.items():
        setattr(meta, key, value)
    from safetensors.torch import load_file

    save_file(load_file(str(path)), str(path), metadata={"resnetlab": meta.to_json()})
    with pytest.raises(
        ResnetlabError,
        match=rf"^{re.escape(str(path))} holds a model this resnetlab cannot build "
        rf"\({says}.*\); a newer resnetlab wrote it, or the file was edited$",
    ):
        resnetlab.load_model(path)


def test_a_file_of_a_newer_format_says_to_upgrade_not_to_save_again(tmp_path):
    # It said "(a newer resnetlab wrote it?); the file is damaged or was edited: save the
    # model again", which cannot be done without loading it. The export runtime reads its
    # files' metadata so too.
    from resnetlab.export.runtime import read_deploy_meta

    path = tmp_path / "m.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=2), path)
    text = json.dumps(
        {**json.loads(resnetlab.read_model_meta(path).to_json()), "format": "resnetlab.model/2"}
    )
    save_file(load_file(str(path)), str(path), metadata={"resnetlab": text})
    says = (
        "was written by a newer resnetlab (format 'resnetlab.model/2'; resnetlab "
        f"{resnetlab.__version__} reads 'resnetlab.model/1'); upgrade resnetlab to load it"
    )
    with pytest.raises(ResnetlabError) as caught:
        resnetlab.load_model(path)
    assert str(caught.value) == f"{path} {says}"
    with pytest.raises(ResnetlabError) as caught:
        read_deploy_meta({"resnetlab": text}, "m.onnx")
    assert str(caught.value) == f"m.onnx {says}"
    for other in ("resnetlab.model/0", "other/2"):  # no newer resnetlab's: damaged or edited
        text = json.dumps({**json.loads(text), "format": other})
        save_file(load_file(str(path)), str(path), metadata={"resnetlab": text})
        with pytest.raises(ResnetlabError, match=r"the file is damaged or was edited: save"):
            resnetlab.load_model(path)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".onnx", ".pt2", ".h5", ".keras"])
def test_a_path_with_another_formats_suffix_is_not_written(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    with pytest.raises(
        ResnetlabError,
        match=rf"^{re.escape(str(path))}: not written: a model file is a \.safetensors file, "
        rf"and {re.escape(suffix)} names another format .*; write "
        rf"{re.escape(str(tmp_path / 'model.safetensors'))}$",
    ):
        resnetlab.save_model(resnetlab.create_model("resnet8"), path)
    assert not path.exists()
    resnetlab.save_model(resnetlab.create_model("resnet8"), tmp_path / "model")  # no suffix
    assert resnetlab.load_model(tmp_path / "model").meta.model == "resnet8"
    doubled = tmp_path / f"model.safetensors{suffix}"  # the fix is one suffix less
    with pytest.raises(ResnetlabError) as refused:
        resnetlab.save_model(resnetlab.create_model("resnet8"), doubled)
    assert str(refused.value).endswith(f"; write {tmp_path / 'model.safetensors'}")


@pytest.mark.parametrize(
    ("name", "instead"),
    [
        ("model.bin", "model.safetensors"),
        ("model.safetensors.ckpt", "model.safetensors"),
        ("acc0.91", "acc0.91.safetensors"),  # a part of the name, kept
    ],
)
def test_a_path_with_an_unknown_suffix_is_not_written(tmp_path, name, instead):
    path = tmp_path / name
    with pytest.raises(ResnetlabError) as refused:
        resnetlab.save_model(resnetlab.create_model("resnet8"), path)
    suffix = path.suffix
    assert str(refused.value) == (
        f"{path}: not written: a model file is a .safetensors file, not {suffix}; "
        f"write {tmp_path / instead}"
    )
    assert list(tmp_path.iterdir()) == []
    resnetlab.save_model(resnetlab.create_model("resnet8"), tmp_path / "m.SafeTensors")


def test_a_folder_is_not_written_as_a_model_file(tmp_path):
    model = resnetlab.create_model("resnet8")
    # "out/" names a folder: Path would drop the slash and write a file named out.
    with pytest.raises(ResnetlabError) as refused:
        resnetlab.save_model(model, f"{tmp_path}/out/")
    assert str(refused.value) == (
        f"{tmp_path}/out/ names a folder; give a file name, e.g. {tmp_path}/out/model.safetensors"
    )
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "models").mkdir()
    with pytest.raises(ResnetlabError, match=r"models names a folder; give a file name, e\.g\. "):
        resnetlab.save_model(model, tmp_path / "models")
    assert list((tmp_path / "models").iterdir()) == []


def test_model_files_get_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        path = tmp_path / "m.safetensors"
        resnetlab.save_model(resnetlab.create_model("resnet8"), path)
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_keras_model_folder_given_as_a_model_file_says_to_convert_it(tmp_path):
    """model.save('flowers', zipped=False) writes a folder, as the Hugging Face Hub holds it."""
    folder = tmp_path / "flowers"
    folder.mkdir()
    for name in ("config.json", "metadata.json", "model.weights.h5"):
        (folder / name).write_bytes(b"{}")
    with pytest.raises(ResnetlabError) as caught:
        resnetlab.load_model(folder)
    assert str(caught.value) == (
        f"{folder} is a Keras model (a folder, model.save(..., zipped=False)), not a model file; "
        f"a Keras model converts to one: resnetlab convert keras {folder} flowers.safetensors"
    )


def test_a_run_folder_or_checkpoint_given_as_a_model_file_points_to_the_model_files(tmp_path):
    with pytest.raises(ResnetlabError, match="is a folder, not a model file; a run folder's"):
        resnetlab.load_model(tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"\x80\x02not safetensors")
    with pytest.raises(ResnetlabError, match=r"\(checkpoint.pt is for resume\)$"):
        resnetlab.load_model(tmp_path / "checkpoint.pt")


@pytest.mark.parametrize("name", ["config.json", "metrics.csv", "summary.json"])
def test_another_file_of_a_run_given_as_a_model_file_names_the_runs_model_files(tmp_path, name):
    # It said "not a safetensors model file (Error while deserializing header: header too
    # large)", as `explain runs/a/config.json hand.jpg` showed.
    resnetlab.save_model(resnetlab.create_model("resnet8"), tmp_path / "best.safetensors")
    (tmp_path / name).write_text('{"model": "resnet8"}\n' if name.endswith("json") else "epoch\n")
    with pytest.raises(ResnetlabError) as info:
        resnetlab.load_model(tmp_path / name)
    assert str(info.value) == (
        f"{tmp_path / name} is a file of the run in {tmp_path}, not a model file; give "
        f"{tmp_path / 'best.safetensors'} (the best epoch's model) or last.safetensors (the "
        "last epoch's)"
    )


def test_a_keras_file_given_as_a_model_file_says_how_to_convert_it(tmp_path):
    import zipfile

    import h5py

    h5 = tmp_path / "ResNet50.h5"
    with h5py.File(h5, "w") as f:
        f.create_group("model_weights")
    keras_archive = tmp_path / "ResNet50.keras"
    with zipfile.ZipFile(keras_archive, "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("model.weights.h5", b"")
    for path, kind in ((h5, "an HDF5 file"), (keras_archive, "a Keras model (.keras)")):
        with pytest.raises(ResnetlabError) as info:
            resnetlab.load_model(path)
        assert str(info.value) == (
            f"{path} is {kind}, not a model file; a Keras model converts to one: "
            f"resnetlab convert keras {path} ResNet50.safetensors"
        )


def test_a_data_set_given_as_a_model_file_says_to_give_it_as_the_data(tmp_path):
    import h5py

    data = tmp_path / "test_signs.h5"  # as the course's: the images and labels of one split
    with h5py.File(data, "w") as f:
        f["test_set_x"] = np.zeros((2, 8, 8, 3), np.uint8)
        f["test_set_y"] = np.zeros(2, np.int64)
        f["list_classes"] = np.arange(6)
    with command_line(), pytest.raises(ResnetlabError) as info:
        resnetlab.load_model(data)
    assert str(info.value) == (
        f"{data} is a data set (test_set_x, test_set_y), not a model; give it after --data: "
        f"resnetlab eval MODEL_FILE --data {data}, or resnetlab train --data {data}"
    )
    for call in (resnetlab.load_model, lambda path: resnetlab.evaluate(path, "digits")):
        with pytest.raises(ResnetlabError) as info:  # from Python, as Python writes it
            call(data)
        assert str(info.value) == (
            f"{data} is a data set (test_set_x, test_set_y), not a model; give it as the "
            f"data: resnetlab.evaluate(model_file, '{data}'), or resnetlab.train(data='{data}')"
        )


@pytest.mark.parametrize(
    ("path", "options", "says"),
    [
        ("", {}, "the model file to write: an empty value; give one"),
        (None, {}, "the model file to write must be a path (str or pathlib.Path), got NoneType"),
        ("m.safetensors", {"mean": 0.5}, "mean must be three numbers, one per RGB channel"),
        ("m.safetensors", {"std": "0.2"}, "std must be three numbers, one per RGB channel"),
        ("m.safetensors", {"input_size": "32"}, "input_size must be a whole number, got '32'"),
        ("m.safetensors", {"input_size": 32.5}, "input_size must be a whole number, got 32.5"),
        # the argument given, not "unknown resize 'stretch' in the model file's metadata"
        ("m.safetensors", {"resize": "stretch"}, "unknown resize 'stretch'; choose squash, crop"),
    ],
)
def test_save_model_names_a_wrong_argument_in_one_line(tmp_path, monkeypatch, path, options, says):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ResnetlabError) as error:
        resnetlab.save_model(resnetlab.create_model("resnet8"), path, **options)
    assert str(error.value).startswith(says)
    assert not list(tmp_path.iterdir())


def test_class_names_from_numpy_are_kept_as_the_text_a_loaded_file_gives(tmp_path):
    path = tmp_path / "m.safetensors"
    names = np.array(["cat", "dog", "fox"])  # np.unique(labels), say: np.str_ each
    meta = resnetlab.save_model(
        resnetlab.create_model("resnet8", num_classes=3), path, class_names=names
    )
    assert meta == resnetlab.read_model_meta(path)
    assert [type(n) for n in meta.class_names] == [str, str, str]


@pytest.mark.parametrize(
    ("names", "says"),
    [
        (["a", "", "c"], "class_names[1] '' is empty; give each class a name of one line"),
        (["a", "b", " "], "class_names[2] ' ' is empty; give each class a name of one line"),
        (
            ["a", "b\nx", "c"],
            "class_names[1] 'b\\nx' holds a control character; give each class a name of one line",
        ),
        (
            ["a\tb", "c", "d"],
            "class_names[0] 'a\\tb' holds a control character; give each class a name of one line",
        ),
        (
            [0, 1, 2],
            "class_names[0] 0 is not text; give the names as strings ([str(n) for n in names])",
        ),
        (3, "class_names must be a list of names, got 3; give [name, ...]"),
    ],
)
def test_class_names_a_model_file_cannot_hold_are_refused_by_position(tmp_path, names, says):
    """They were written (an empty name, a newline splitting predict's line) or refused as
    'class_names is not a list of strings', without saying which."""
    with pytest.raises(ResnetlabError) as error:
        resnetlab.save_model(
            resnetlab.create_model("resnet8", num_classes=3),
            tmp_path / "m.safetensors",
            class_names=names,
        )
    assert str(error.value) == says
    assert not list(tmp_path.iterdir())


def test_a_file_written_with_an_empty_class_name_still_loads(tmp_path):
    path = tmp_path / "m.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=2), path)
    meta = resnetlab.read_model_meta(path)
    meta.class_names = ["", "b\nx"]  # as an earlier version wrote
    tensors = load_file(path)
    save_file(tensors, path, metadata={"resnetlab": meta.to_json()})
    loaded = resnetlab.load_model(path)
    assert loaded.meta.class_names == ["", "b\nx"]
    resnetlab.save_model(loaded, tmp_path / "again.safetensors")  # its own names, kept
    assert resnetlab.read_model_meta(tmp_path / "again.safetensors").class_names == ["", "b\nx"]


def test_a_device_that_does_not_exist_or_is_not_here_is_one_line(tmp_path, monkeypatch):
    """Not "its weights cannot be read (device gpu is invalid)", which blames the file, nor
    a driver's RuntimeError from inside safetensors."""
    path = tmp_path / "m.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8"), path)
    with pytest.raises(ResnetlabError, match=r"^unknown device 'gpu'; use auto, cpu, cuda"):
        resnetlab.load_model(path, device="gpu")
    monkeypatch.setitem(ACCELERATORS, "cuda", ("CUDA", lambda: False))
    says = r"^device 'cuda': CUDA is not available on this machine; use auto or cpu$"
    with pytest.raises(ResnetlabError, match=says):
        resnetlab.load_model(path, device="cuda")
    model = resnetlab.load_model(path, device=torch.device("cpu"))
    assert next(model.parameters()).device.type == "cpu"


def test_loading_a_model_leaves_the_callers_random_draws_as_they_were(tmp_path):
    path = tmp_path / "m.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8"), path)
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    resnetlab.load_model(path)
    assert torch.equal(torch.rand(3), expected)


def test_model_meta_repr_is_one_line_that_names_the_first_classes(tmp_path):
    names = [f"class {i}" for i in range(1000)]
    path = tmp_path / "m.safetensors"
    resnetlab.save_model(
        resnetlab.create_model("resnet8", num_classes=1000), path, class_names=names
    )
    text = repr(resnetlab.read_model_meta(path))
    assert "\n" not in text and "class 5'" not in text
    assert (
        "class_names=['class 0', 'class 1', 'class 2', 'class 3', 'class 4', ... 1000 in all]"
        in text
    )
    assert text.startswith("ModelMeta(model='resnet8', num_classes=1000, input_size=")


def test_an_option_a_model_file_cannot_hold_is_refused_in_one_line(tmp_path):
    """A module class (act_layer=nn.SiLU) is no JSON value: saving it stopped with json's
    TypeError; a tuple is written as a list and rebuilds the same model."""
    path = tmp_path / "m.safetensors"
    model = resnetlab.create_model("resnet20", num_classes=2, act_layer=torch.nn.SiLU)
    with pytest.raises(ResnetlabError, match=r"not written: resnet20's option act_layer=<class"):
        resnetlab.save_model(model, path)
    assert not path.exists()
    model = resnetlab.create_model("resnet20", num_classes=2, widths=(8, 16, 32))
    resnetlab.save_model(model, path)
    assert resnetlab.load_model(path).model_kwargs == {"widths": [8, 16, 32]}


def test_a_model_whose_classifier_was_replaced_by_hand_is_not_written(tmp_path):
    """model.fc = nn.Linear(64, 5), as torchvision's tutorials do, left a file that
    load_model refused (its metadata still said 10 classes)."""
    path = tmp_path / "m.safetensors"
    model = resnetlab.create_model("resnet8", num_classes=10)
    model.fc = torch.nn.Linear(64, 5)
    with pytest.raises(ResnetlabError) as error:
        resnetlab.save_model(model, path)
    assert str(error.value) == (
        f"{path}: not written: its weights are not those of resnet8 with num_classes=10, "
        "which load_model would rebuild (fc.weight has shape [5, 64], the model's is "
        "[10, 64]); change the classes with model.reset_classifier(N) rather than a new layer"
    )
    assert not list(tmp_path.iterdir())
    model.reset_classifier(5)
    resnetlab.save_model(model, path)
    assert resnetlab.load_model(path).num_classes == 5


def test_a_model_file_that_cannot_be_written_is_one_line_and_leaves_no_folder(
    tmp_path, monkeypatch
):
    model = resnetlab.create_model("resnet8")
    (tmp_path / "a.safetensors").write_bytes(b"mine")
    with pytest.raises(ResnetlabError) as error:  # was FileExistsError, naming a.safetensors
        resnetlab.save_model(model, tmp_path / "a.safetensors" / "m.safetensors")
    assert str(error.value).startswith(f"cannot write {tmp_path}/a.safetensors/m.safetensors: ")
    assert "a file stands where a folder is needed" in str(error.value)
    assert (tmp_path / "a.safetensors").read_bytes() == b"mine"

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("resnetlab.storage.os.fsync", full)
    with pytest.raises(ResnetlabError, match=r"No space left on device; free some space"):
        resnetlab.save_model(model, tmp_path / "new" / "deeper" / "m.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors"]


def test_a_training_record_of_numpy_and_torch_numbers_is_written_as_json(tmp_path):
    """An accuracy computed as a tensor or a NumPy number was json's TypeError ('Object of
    type Tensor is not JSON serializable'); a value JSON has no form for is one line."""
    path = tmp_path / "m.safetensors"
    model = resnetlab.create_model("resnet8")
    record = {"acc": torch.tensor(0.5), "top5": np.float32(0.75), "per_class": np.arange(2)}
    resnetlab.save_model(model, path, training=record)
    assert resnetlab.read_model_meta(path).training == {
        "acc": 0.5,
        "top5": 0.75,
        "per_class": [0, 1],
    }
    with pytest.raises(ResnetlabError) as error:
        resnetlab.save_model(model, tmp_path / "n.safetensors", training={"when": dataclasses})
    assert str(error.value) == (
        f"{tmp_path / 'n.safetensors'}: not written: training holds a module, which a model "
        "file cannot hold (numbers, text, true/false, and lists and dicts of them)"
    )
    with pytest.raises(ResnetlabError, match=r"^training must be a dict of what to keep"):
        resnetlab.save_model(model, tmp_path / "n.safetensors", training=[1, 2])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_a_training_record_holding_nan_or_inf_is_written_as_json_null(tmp_path):
    """json.dumps wrote NaN and Infinity, which JSON does not have (a strict reader of the
    metadata fails on them), where a run's summary.json writes null."""
    path = tmp_path / "m.safetensors"
    record = {"val_loss": float("nan"), "losses": [1.5, float("inf")], "acc": np.float32("nan")}
    resnetlab.save_model(resnetlab.create_model("resnet8"), path, training=record)
    with safe_open(path, "pt") as f:
        text = f.metadata()["resnetlab"]
    training = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the metadata"))
    assert training["training"] == {"val_loss": None, "losses": [1.5, None], "acc": None}
    assert resnetlab.read_model_meta(path).training == training["training"]


def test_a_model_on_the_meta_device_is_not_written(tmp_path):
    """Built under torch.device("meta") (as for counting FLOPs), it has no values to save:
    NotImplementedError 'Cannot copy out of meta tensor; no data!'."""
    with torch.device("meta"):
        model = resnetlab.create_model("resnet8")
    path = tmp_path / "m.safetensors"
    with pytest.raises(ResnetlabError) as error:
        resnetlab.save_model(model, path)
    assert str(error.value).startswith(
        f"{path}: not written: the model's conv1.weight is on the meta device, which holds "
        "shapes and no values; "
    )
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64]
)
def test_first_nonfinite_finds_nan_and_inf_in_every_kind_of_tensor(dtype):
    from resnetlab.models.files import first_nonfinite

    fine = torch.arange(24, dtype=dtype).reshape(2, 3, 4)
    views = {
        "plain": fine,
        "transposed": fine.permute(2, 0, 1),
        "negated view": torch._neg_view(fine),
        "trained": fine.clone().requires_grad_(dtype.is_floating_point),
    }
    for name, value in views.items():
        assert first_nonfinite({"a": fine, name: value}) is None, name
    if not dtype.is_floating_point:  # integers hold no NaN, and are not looked at
        return
    for bad in (float("nan"), float("inf"), -float("inf")):
        for name, value in views.items():
            value = value.detach().clone()
            value[-1, -1, -1] = bad
            assert first_nonfinite({"a": fine, name: value, "c": fine}) == name, (name, bad)
            # the same values in a layout that is no copy of them
            strided = value.permute(2, 0, 1).contiguous().permute(1, 2, 0)
            assert first_nonfinite({"strided": strided}) == "strided", (name, bad)
            assert first_nonfinite({"negated": torch._neg_view(value)}) == "negated"
