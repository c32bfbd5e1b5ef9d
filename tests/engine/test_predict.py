import importlib
import json
import os
import re
import shutil
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

import resnetlab
from resnetlab.cli import main
from resnetlab.errors import DataError, DataWarning, ResnetlabError


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory):
    """300 of scikit-learn's digits as 8x8 grayscale PNGs in one folder per class."""
    root = tmp_path_factory.mktemp("digits")
    digits = load_digits()
    for i in range(300):
        folder = root / str(digits.target[i])
        folder.mkdir(exist_ok=True)
        pixels = (digits.images[i] * 255 / 16).round().astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def model_file(digit_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    resnetlab.train(
        model="resnet8",
        data=str(digit_folder),
        input_size=8,
        crop_padding=1,
        batch_size=32,
        epochs=10,
        device="cpu",  # a module's fixture runs before the conftest's CPU-only rule
        out=str(out),
    )
    return out / "best.safetensors"


def test_eval_finds_the_images_a_streamed_run_held_out(digit_folder, tmp_path):
    run = resnetlab.train(
        model="resnet8",
        data=str(digit_folder),
        input_size=8,
        stream=True,
        max_steps=2,
        out=str(tmp_path / "run"),
    )
    report = resnetlab.evaluate(run.run_dir / "best.safetensors", str(digit_folder))
    assert report.result.count == run.summary["val_images"] == 60
    assert report.notes[0].startswith(f"scored: the 60 images of {digit_folder} that the")


def test_eval_finds_them_where_the_folder_holds_a_file_it_cannot_read(digit_folder, tmp_path):
    # The streamed run split every file, the unreadable one too; eval decodes and skips it.
    photos = shutil.copytree(digit_folder, tmp_path / "photos")
    for label in "0123":
        (photos / label / f"broken-{label}.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    run = resnetlab.train(
        model="resnet8",
        data=str(photos),
        input_size=8,
        stream=True,
        max_steps=2,
        out=str(tmp_path / "run"),
    )
    with pytest.warns(DataWarning, match="cannot read it"):
        report = resnetlab.evaluate(run.run_dir / "best.safetensors", str(photos))
    assert report.notes[0].startswith(f"scored: the {report.result.count} images of {photos}")
    assert run.summary["val_images"] - 4 <= report.result.count <= run.summary["val_images"]
    assert report.result.accuracy == run.summary["best_val_acc"]  # the images it validated on


def test_a_data_set_given_as_a_path_is_reported_as_text(digit_folder, model_file):
    report = resnetlab.evaluate(model_file, digit_folder)  # a pathlib.Path
    assert report.data == str(digit_folder)
    assert json.loads(json.dumps(report.to_dict()))["data"] == str(digit_folder)


def another_set(folder: Path, dest: Path) -> Path:
    """A copy of ``folder`` with one file renamed: the same images, but not the training
    folder's files (a copy of those is scored on the images its run held out)."""
    copy = shutil.copytree(folder, dest)
    first = min((copy / "3").iterdir())
    first.rename(first.with_name(f"renamed-{first.name}"))
    return copy


def test_predict_agrees_with_eval_image_by_image(digit_folder, model_file, tmp_path):
    copy = another_set(digit_folder, tmp_path / "copy")  # scored whole
    report = resnetlab.evaluate(model_file, str(copy))
    assert report.result.count == 300
    predictions = resnetlab.predict(model_file, [copy], top_k=1)
    assert len(predictions) == 300
    names = report.class_names
    confusion = torch.zeros_like(report.result.confusion)
    for p in predictions:
        truth = names.index(p.source.split("/")[-2])
        confusion[truth, names.index(p.label)] += 1
    assert torch.equal(confusion, report.result.confusion)
    assert report.result.accuracy > 0.5  # chance is 0.1


def test_one_path_alone_is_one_input_not_its_characters(digit_folder, model_file):
    image = sorted((digit_folder / "3").iterdir())[0]
    (listed,) = resnetlab.predict(model_file, [image])
    for alone in (str(image), image):
        (single,) = resnetlab.predict(model_file, alone)
        assert (single.source, single.top) == (listed.source, listed.top)
    folder = resnetlab.predict(model_file, str(digit_folder / "3"))
    assert len(folder) == len(list((digit_folder / "3").iterdir()))
    assert resnetlab.explain.explain(model_file, str(image)).sources == [str(image)]


def test_cli_predict_json(digit_folder, model_file, capsys):
    image = sorted((digit_folder / "3").iterdir())[0]
    assert main(["predict", str(model_file), str(image), "--top-k", "3", "--json"]) == 0
    (item,) = json.loads(capsys.readouterr().out)
    probs = [t["probability"] for t in item["top"]]
    assert item["image"] == str(image) and len(probs) == 3
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
    assert main(["predict", str(model_file), str(image)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{image}: ") and line.count("%") == 3


def test_eval_of_the_training_folder_scores_the_images_the_run_held_out(
    digit_folder, model_file, tmp_path
):
    summary = json.loads((model_file.parent / "summary.json").read_text())
    report = resnetlab.evaluate(model_file, f"{digit_folder}/")  # the folder, however spelled
    assert report.result.count == summary["val_images"] == 60
    assert report.result.accuracy == summary["best_val_acc"]  # best.safetensors, same images
    assert report.notes == [
        f"scored: the 60 images of {digit_folder}/ that the model's training run held out for "
        "validation (its best epoch was picked on them, which flatters the score a little; a "
        "test/ folder is scored instead where there is one)"
    ]
    # A link to the folder, named otherwise, is the same folder.
    link = tmp_path / "my-photos"
    link.symlink_to(digit_folder, target_is_directory=True)
    linked = resnetlab.evaluate(model_file, str(link))
    assert (linked.result.count, linked.result.accuracy) == (60, summary["best_val_acc"])
    # The folder changed since (an image more): those images cannot be found again, so all
    # of it is scored, and the report says why.
    copy = shutil.copytree(digit_folder, tmp_path / digit_folder.name)
    mirrored = Image.open(next((copy / "3").iterdir())).transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    mirrored.save(copy / "3" / "extra.png")
    report = resnetlab.evaluate(model_file, str(copy))
    assert report.result.count == 301
    assert report.notes == [
        f"{copy} has no held-out split: all 301 images are scored, including any the model was "
        "trained on (a folder named test/ or *_test/ is taken for test images); the images it "
        "held out for validation cannot be found again, as its images changed since (files "
        "added, removed or changed, or a file it streamed now skipped as unreadable)"
    ]


@pytest.mark.figures
def test_cli_eval_json_and_png(digit_folder, model_file, tmp_path, capsys):
    png = tmp_path / "confusion.png"
    folder = another_set(digit_folder, tmp_path / "copy")  # not the training folder
    assert main(["eval", str(model_file), "--data", str(folder), "--png", str(png), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["count"] == 300 and len(data["per_class"]) == 10
    assert sum(row["support"] for row in data["per_class"]) == 300
    assert sum(map(sum, data["confusion"])) == 300
    # A folder without a test split: all of it is scored, and the report says so.
    assert data["notes"] == [
        f"all 300 images of {folder} are scored (the model was trained on {digit_folder.name}; "
        "any of its images in " + str(folder) + " flatter the score)"
    ]
    assert Image.open(png).size[0] > 100
    # A folder that does not exist yet is made, as export and train make theirs.
    nested = tmp_path / "figures" / "eval" / "confusion.png"
    assert main(["eval", str(model_file), "--data", "digits", "--png", str(nested)]) == 0
    assert Image.open(nested).size[0] > 100
    capsys.readouterr()
    # Below a file there is no folder to make: refused before the evaluation.
    assert main(["eval", str(model_file), "--data", "digits", "--png", f"{png}/x.png"]) == 2
    assert capsys.readouterr().err == (
        f"error: --png {png}/x.png: {png} is a file, not a folder; choose another\n"
    )
    # A path ending in a slash names a folder (Path would drop the slash: a file "figs").
    assert main(["eval", str(model_file), "--data", "digits", "--png", f"{tmp_path}/figs/"]) == 2
    assert capsys.readouterr().err == (
        f"error: --png {tmp_path}/figs/ names a folder; give a file name, e.g. "
        f"{tmp_path}/figs/out.png\n"
    )
    assert not (tmp_path / "figs").exists()
    assert main(["eval", str(model_file), "--data", str(digit_folder), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "precision" in out
    # Without --png, beside the model file and named after the data: two sets, two images.
    model = tmp_path / "best.safetensors"
    shutil.copy(model_file, model)
    assert main(["eval", str(model), "--data", "digits"]) == 0
    assert main(["eval", str(model), "--data", f"{digit_folder}/"]) == 0
    assert sorted(p.name for p in tmp_path.glob("best.*.png")) == sorted(
        [f"best.{digit_folder.name}.confusion.png", "best.digits.confusion.png"]
    )


def test_an_image_from_a_pipe_is_refused_before_it_is_read(model_file, tmp_path, capsys):
    # `cat photo.jpg | resnetlab predict m /dev/stdin`, or a named pipe: the image would be
    # read twice (its size, then its pixels), and a pipe gives its bytes once.
    pipe = tmp_path / "photo.jpg"
    os.mkfifo(pipe)  # never opened: nothing blocks
    link = tmp_path / "stdin"
    link.symlink_to(pipe)  # as /dev/stdin links to the pipe it reads
    for given in (pipe, link):
        assert main(["predict", str(model_file), str(given)]) == 2
        assert capsys.readouterr().err == (
            f"error: images are read from files, not from a pipe or a device ({given}): save "
            "the image to a file and give its path, or send it to `resnetlab serve`\n"
        )


def test_bad_prediction_inputs_are_one_line_errors(model_file, tmp_path, capsys):
    assert main(["predict", str(model_file), str(tmp_path / "nope.jpg")]) == 2
    assert capsys.readouterr().err.strip() == f"error: image not found: {tmp_path / 'nope.jpg'}"
    (tmp_path / "IMG_0001.JPG").write_bytes(b"")  # as a camera names it
    assert main(["predict", str(model_file), str(tmp_path / "IMG_0001.jpg")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: image not found: {tmp_path / 'IMG_0001.jpg'}; did you mean "
        f"{tmp_path / 'IMG_0001.JPG'}?"
    )
    (tmp_path / "IMG_0001.JPG").unlink()
    assert main(["predict", str(model_file), "-"]) == 2  # standard input, as some tools read
    assert capsys.readouterr().err.strip() == (
        "error: images are read from files, not from standard input (-): save the image to a "
        "file and give its path, or send it to `resnetlab serve`"
    )
    (tmp_path / "moved.jpg").symlink_to(tmp_path / "elsewhere.jpg")  # a link left behind
    assert main(["predict", str(model_file), str(tmp_path / "moved.jpg")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path / 'moved.jpg'} is not a readable image (a link to "
        f"{tmp_path / 'elsewhere.jpg'}, which does not exist)"
    )
    for command in ("predict", "explain"):  # not the whole current folder
        with pytest.raises(SystemExit):
            main([command, str(model_file), ""])
        assert (
            capsys.readouterr()
            .err.strip()
            .endswith("error: argument IMAGE_OR_FOLDER: an empty value; give one")
        )
    with pytest.raises(ResnetlabError) as caught:  # the same from Python
        resnetlab.predict(model_file, "")
    assert str(caught.value) == (
        "an image path: an empty value; give an image file or a folder (. for the current folder)"
    )
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    assert main(["predict", str(model_file), str(text)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {text} is not a readable image (not an image format Pillow can read)"
    heic = tmp_path / "IMG_0001.HEIC"  # an iPhone's photo: a format to convert, not damage
    heic.write_bytes(b"\x00\x00\x00\x18ftypheic")
    assert main(["predict", str(model_file), str(heic)]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"error: {heic}: HEIC photos cannot be read here; convert it to JPEG or PNG first\n"
    )
    # Among other images (photos/*, as a shell names them), it is still an error, which
    # says how to classify the others.
    good = tmp_path / "good.png"
    Image.new("RGB", (8, 8), "red").save(good)
    assert main(["predict", str(model_file), str(good), str(heic)]) == 2
    assert capsys.readouterr().err == (
        f"error: {heic}: HEIC photos cannot be read here; convert it to JPEG or PNG first; leave "
        f"it out, or give its folder ({tmp_path}{os.sep}): a folder's unreadable files are "
        "skipped with a warning\n"
    )
    assert main(["predict", str(tmp_path / "missing.safetensors"), str(text)]) == 2
    assert "model file not found" in capsys.readouterr().err
    # A URL, named whole (a path would read https:/...) with what to do instead.
    url = "https://example.com/cat.jpg"
    assert main(["predict", str(model_file), url]) == 2
    assert capsys.readouterr().err == (
        f"error: an image path: {url} is a URL, and resnetlab works on local files; download it "
        f"first (curl -O {url})\n"
    )
    assert main(["predict", "https://example.com/model.safetensors", str(text)]) == 2
    assert "error: the model file: https://example.com/model.safetensors is a URL" in (
        capsys.readouterr().err
    )
    # Cloud storage, which curl does not fetch: its own tool, or a copy of one's own
    for url, fix in [
        ("s3://bucket/cat.jpg", "download it first (aws s3 cp s3://bucket/cat.jpg .)"),
        ("gs://bucket/cat.jpg", "download it first (gcloud storage cp gs://bucket/cat.jpg .)"),
        ("hf://datasets/me/cats/cat.jpg", "copy it to a local file first"),
    ]:
        assert main(["predict", str(model_file), url]) == 2
        assert capsys.readouterr().err.endswith(f"works on local files; {fix}\n")


def test_eval_refuses_data_with_other_classes(model_file, tmp_path, capsys):
    for name in ("cat", "dog"):
        (tmp_path / "pets" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / "pets" / name / f"{i}.png")
    # None of them is the model's: data for another model, not folders to move out.
    assert main(["eval", str(model_file), "--data", str(tmp_path / "pets")]) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'pets'} has 2 classes [cat, dog], and the model was trained on 10 "
        "other classes: [0, 1, 2, 3, 4, 5, ...]; score it with a model trained on its classes, "
        "or score this model on images of its own classes\n"
    )


def test_data_problems_of_predict_and_eval_raise_data_error(model_file, tmp_path):
    """From Python, images that cannot be used raise DataError, as the README says; the
    CLI prints the same line (test_bad_prediction_inputs_are_one_line_errors)."""
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)  # a JPEG's start, then nothing
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    good = tmp_path / "good.png"
    Image.new("RGB", (8, 8), "red").save(good)
    heic = tmp_path / "IMG_0001.HEIC"
    heic.write_bytes(b"\x00\x00\x00\x18ftypheic")
    (tmp_path / "empty").mkdir()
    cases = {
        corrupt: f"{corrupt} is not a readable image",
        text: f"{text} is not a readable image (not an image format Pillow can read)",
        tmp_path / "missing.jpg": f"image not found: {tmp_path / 'missing.jpg'}",
        tmp_path / "empty": f"no images in folder {tmp_path / 'empty'}",
        heic: f"{heic}: HEIC photos cannot be read here",
        tmp_path / "*.gif": "image not found: ",
    }
    for given, message in cases.items():
        with pytest.raises(DataError, match=re.escape(message)):
            resnetlab.predict(model_file, [given])
    with pytest.raises(DataError, match="leave it out, or give its folder"):
        resnetlab.predict(model_file, [good, text])  # among others, with the fix
    for name in ("cat", "dog"):  # classes the model does not have
        (tmp_path / "pets" / name).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / "pets" / name / f"{i}.png")
    with pytest.raises(DataError, match="has 2 classes"):
        resnetlab.evaluate(model_file, str(tmp_path / "pets"))
    unnamed = tmp_path / "unnamed.safetensors"  # a model that names no classes: counted
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=4), unnamed)
    with pytest.raises(DataError, match="has 2 classes but the model has 4 outputs") as e:
        resnetlab.evaluate(unnamed, str(tmp_path / "pets"))
    assert str(e.value).endswith(  # and the ways out: pretrained weights are to train on them
        "names no classes to match them by: score it on data of the model's 4 classes; to "
        f"classify these 2, train a model on them from its weights (resnetlab train --pretrained "
        f"{unnamed} --data {tmp_path / 'pets'}); or, for a converted Keras model, convert it "
        'again with --classes "a,b,..." naming its outputs in order'
    )


def test_an_image_pil_closed_before_predict_read_it_says_so(model_file, tmp_path):
    # [im for p in paths: with Image.open(p) as im: ...]: each closed at its block's end,
    # which PIL met with a bare AssertionError, or 'image is not a readable image'.
    photo = tmp_path / "photo.png"
    Image.new("RGB", (8, 8), "red").save(photo)
    with Image.open(photo) as unread:
        pass
    read = Image.open(photo)
    read.load()
    read.close()
    for closed in (unread, read):
        with pytest.raises(DataError) as caught:
            resnetlab.predict(model_file, [closed])
        assert str(caught.value) == (
            f"{photo} was closed before it was read (a with Image.open(...) block closes its "
            "image at the block's end): read it inside the block (im.load()), or give its path"
        )
    with Image.open(photo) as loaded:
        loaded.load()  # read inside the block: its pixels outlive it
    assert len(resnetlab.predict(model_file, [loaded, Image.new("RGB", (8, 8))])) == 2


def test_predict_notes_an_image_far_smaller_than_the_input_size(model_file, tmp_path, capsys):
    """As train and eval note images enlarged from at most half the input size (8 px here),
    predict does: the model sees a few pixels blown up."""
    tiny, small, fits = tmp_path / "tiny.png", tmp_path / "small.png", tmp_path / "fits.png"
    Image.new("RGB", (1, 1), "red").save(tiny)
    Image.new("RGB", (4, 3), "red").save(small)
    Image.new("RGB", (5, 8), "red").save(fits)
    assert main(["predict", str(model_file), str(tiny)]) == 0
    out = capsys.readouterr()
    assert out.err == f"warning: {tiny} is 1x1, enlarged to 8x8 (the model's input size)\n"
    assert out.out.startswith(f"{tiny}: ")
    with pytest.warns(DataWarning) as caught:
        predictions = resnetlab.predict(model_file, [fits, small, Image.open(tiny)])
    assert len(predictions) == 3 and [str(w.message) for w in caught] == [
        f"2 of 3 images are at most 4 px a side (first: {small}, 4x3, scaled to 10x8), "
        "enlarged and centre-cropped to 8x8 (the model's input size)"  # crop: 8 px high
    ]
    with pytest.warns(DataWarning) as caught:  # one of several: "is", not "are"
        resnetlab.predict(model_file, [fits, small])
    assert str(caught[0].message).startswith("1 of 2 images is at most 4 px a side (first: ")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resnetlab.predict(model_file, fits)


def test_eval_hints_at_the_model_class_a_folder_name_is_near(tmp_path, capsys):
    model = tmp_path / "m.safetensors"
    names = ["airplane", "automobile", "cat", "ship"]
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=4), model, class_names=names)
    photos = tmp_path / "photos"
    for k, name in enumerate(("airplane", "cat", "ships")):
        (photos / name).mkdir(parents=True)
        Image.new("RGB", (32, 32), (k * 90, 0, 0)).save(photos / name / "0.png")
    assert main(["eval", str(model), "--data", str(photos)]) == 2
    assert capsys.readouterr().err == (
        f"error: {photos} has 3 classes [airplane, cat, ships] but the model was trained on "
        "4: [airplane, automobile, cat, ship]; [ships] is not among them (did you mean ship?); "
        "rename the folder to the model's class name, score it without that class (move the "
        "folders out), or with a model trained on them\n"
    )
    # None of the data's classes is the model's, but each is near one: rename, not move out.
    shutil.rmtree(photos / "airplane")
    (photos / "cat").rename(photos / "cats")
    assert main(["eval", str(model), "--data", str(photos)]) == 2
    assert capsys.readouterr().err == (
        f"error: {photos} has 2 classes [cats, ships] but the model was trained on 4: "
        "[airplane, automobile, cat, ship]; [cats, ships] are not among them (did you mean cat "
        "for cats, ship for ships?); rename the folders to the model's class names, or score it "
        "with a model trained on these classes\n"
    )
    # Class names match in any letter case, and so do the near ones: Ships is near ship.
    (photos / "ships").rename(photos / "Ships")
    assert main(["eval", str(model), "--data", str(photos)]) == 2
    assert "(did you mean ship for Ships, cat for cats?)" in capsys.readouterr().err


def test_eval_of_data_without_folders_says_no_folders_to_move_out(tmp_path, capsys):
    # digits' classes are not read from folders: none to move out or rename.
    model = tmp_path / "m.safetensors"
    names = [str(i) for i in range(6)]
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=6), model, class_names=names)
    assert main(["eval", str(model), "--data", "digits"]) == 2
    assert capsys.readouterr().err == (
        "error: digits has 10 classes [0, 1, 2, 3, 4, 5, ...] but the model was trained on 6: "
        "[0, 1, 2, 3, 4, 5]; [6, 7, 8, 9] are not among them; score it with a model trained on "
        "all of its classes\n"
    )


def test_eval_titles_its_tables_on_one_line_whatever_their_width(tmp_path, capsys):
    """Two classes of one letter make tables narrower than their titles: the titles are
    printed whole, not wrapped to the table's width."""
    model = tmp_path / "m.safetensors"
    resnetlab.save_model(
        resnetlab.create_model("resnet8", num_classes=2), model, class_names=["a", "b"]
    )
    for name in ("a", "b"):
        (tmp_path / "ab" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (32, 32), (i * 90, 0, 0)).save(tmp_path / "ab" / name / f"{i}.png")
    assert main(["eval", str(model), "--data", str(tmp_path / "ab")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "per class" in lines and "confusion (rows: true, columns: predicted)" in lines


def test_eval_names_the_split_folder_that_holds_a_class_the_model_lacks(tmp_path, capsys):
    # photos/test holds a class, fish, that the model was not trained on: the error names
    # photos/test, where the folder to move out is, not photos alone.
    model = tmp_path / "m.safetensors"
    resnetlab.save_model(
        resnetlab.create_model("resnet8", num_classes=2), model, class_names=["cat", "dog"]
    )
    photos = tmp_path / "photos"
    for split, names in (("train", ("cat", "dog")), ("test", ("cat", "dog", "fish"))):
        for k, name in enumerate(names):
            (photos / split / name).mkdir(parents=True)
            Image.new("RGB", (32, 32), (k * 90, 0, 0)).save(photos / split / name / "0.png")
    assert main(["eval", str(model), "--data", str(photos)]) == 2
    assert capsys.readouterr().err.startswith(
        f"error: {photos / 'test'} has 3 classes [cat, dog, fish] but the model was trained "
        "on 2: [cat, dog]; [fish] is not among them; score it without that class (move the "
        "folders out)"
    )


def test_eval_refuses_a_png_inside_the_data_folder(digit_folder, model_file, capsys):
    # photos/7/confusion.png would be a seven the next time photos/ is read.
    png = digit_folder / "7" / "confusion.png"
    assert main(["eval", str(model_file), "--data", str(digit_folder), "--png", str(png)]) == 2
    assert capsys.readouterr().err == (
        f"error: the confusion matrix image {png} would be inside the data folder "
        f"{digit_folder}, where the next run would read it as an image: give --png outside it\n"
    )
    assert not png.exists()


def test_eval_png_that_cannot_be_written_is_refused_before_scoring(
    model_file, tmp_path, monkeypatch, capsys
):
    # A long evaluation is not run only to fail at its last step; the folders made for the
    # image are removed again when the evaluation fails.
    png = tmp_path / "figures" / "cm.png"
    with monkeypatch.context() as patch:

        def cannot_write(*args, dir, **kwargs):
            raise PermissionError(13, "Permission denied", dir)

        patch.setattr("tempfile.TemporaryFile", cannot_write)
        patch.setattr(
            "resnetlab.engine.evaluate",
            lambda *a, **k: pytest.fail("the images were scored before --png was checked"),
        )
        assert main(["eval", str(model_file), "--data", "digits", "--png", str(png)]) == 2
    assert capsys.readouterr().err == (
        f"error: cannot write {png}: Permission denied; give --png a file in a folder you can "
        "write to\n"
    )
    assert list(tmp_path.iterdir()) == []
    missing = tmp_path / "missing"
    assert main(["eval", str(model_file), "--data", str(missing), "--png", str(png)]) == 2
    assert capsys.readouterr().err == f"error: {missing}: no such file or folder\n"
    assert list(tmp_path.iterdir()) == []


def test_eval_of_a_run_folder_as_data_names_the_run_folder(model_file, capsys):
    # The image's default place, beside the model file, is inside the run folder given as
    # data: the mistake is the data, which is said, not the image's place.
    run = model_file.parent
    assert main(["eval", str(model_file), "--data", str(run)]) == 2
    assert capsys.readouterr().err == (
        f"error: {run} is a training run's folder, not a data set; give the images it trained "
        f"on (its config.json names them), or start from its weights: train --pretrained {run}\n"
    )
    assert not list(run.glob("*.confusion.png"))


def test_eval_scores_a_set_with_some_of_the_models_classes(digit_folder, model_file, tmp_path):
    # A test folder without most classes: scored on the model's own outputs, by class name.
    some = tmp_path / "three-sevens-and-fives"
    for name in ("3", "5", "7"):
        shutil.copytree(digit_folder / name, some / name)
    shutil.copytree(digit_folder / "7", tmp_path / "sevens" / "7")
    whole = resnetlab.evaluate(model_file, str(another_set(digit_folder, tmp_path / "all")))
    part = resnetlab.evaluate(model_file, str(some))
    rows = [whole.class_names.index(n) for n in ("3", "5", "7")]
    assert part.class_names == whole.class_names  # the model's ten, in its order
    # The same images give the same predictions: their confusion rows are the whole set's.
    assert torch.equal(part.result.confusion[rows], whole.result.confusion[rows])
    others = [i for i in range(10) if i not in rows]
    assert part.result.confusion[others].sum() == 0
    assert part.result.count == sum(len(list((some / n).iterdir())) for n in ("3", "5", "7"))
    assert any("scored on 3 of the model's 10 classes" in note for note in part.notes)
    # A set of another name than the training data's is taken as held out, and says what
    # the model was trained on.
    assert (
        f"all {part.result.count} images of {some} are scored (the model was trained on "
        f"{digit_folder.name}; any of its images in {some} flatter the score)" in part.notes
    )
    assert not any("including any the model was trained on" in note for note in part.notes)
    # One class alone (a folder of sevens) is scored the same way.
    sevens = resnetlab.evaluate(model_file, str(tmp_path / "sevens"))
    seven = whole.class_names.index("7")
    assert torch.equal(sevens.result.confusion[seven], whole.result.confusion[seven])
    assert any("scored on 1 of the model's 10 classes" in note for note in sevens.notes)
    # So is a flat folder whose file names all give one class (7_0.png, 7_1.png, ...).
    flat = tmp_path / "flat-sevens"
    flat.mkdir()
    for path in sorted((digit_folder / "7").iterdir()):
        shutil.copy(path, flat / f"7_{path.name}")
    by_name = resnetlab.evaluate(model_file, str(flat))
    assert torch.equal(by_name.result.confusion, sevens.result.confusion)
    # A camera's names read as one class (IMG), which the model lacks: how names give
    # classes is said, not "move the folders out".
    camera = tmp_path / "alone" / "camera"
    camera.mkdir(parents=True)
    for i, path in enumerate(sorted((digit_folder / "7").iterdir())[:3]):
        shutil.copy(path, camera / f"IMG_{i:04d}.png")
    with pytest.raises(ResnetlabError) as caught:
        resnetlab.evaluate(model_file, str(camera))
    assert str(caught.value).startswith(f"{camera} has 1 class [IMG] but the model was trained")
    assert str(caught.value).endswith(
        "[IMG] is not among them; classes here come from the file names (the text before the "
        "first '_'): name each file <class>_<anything> with one of the model's classes, or put "
        "the images in class folders"
    )
    # File names that are classes, some of them the model's: their files are to move out,
    # not to be renamed (the names are right).
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for i, path in enumerate(sorted((digit_folder / "7").iterdir())[:4]):
        shutil.copy(path, mixed / f"{'7' if i % 2 else 'cat'}_{i}.png")
    with pytest.raises(ResnetlabError) as caught:
        resnetlab.evaluate(model_file, str(mixed))
    assert str(caught.value).endswith(
        "[cat] is not among them; score it without that class (move their files out), or with "
        "a model trained on them"
    )
    # Beside other folders of images, it is likely one of their classes: the error says so.
    shutil.copytree(digit_folder / "3", tmp_path / "beside" / "3")
    shutil.copytree(camera, tmp_path / "beside" / "7")
    with pytest.raises(ResnetlabError) as caught:
        resnetlab.evaluate(model_file, str(tmp_path / "beside" / "7"))
    assert (
        f"[IMG] is not among them; 7/ looks like one of the class folders in "
        f"{tmp_path / 'beside'} (3, 7); if it is, give the folder that holds them: "
        f"{tmp_path / 'beside'}{os.sep}; else classes here come from the file names"
    ) in str(caught.value)
    # A folder holding one folder of files named by class is one class, named for the
    # folder; the error says where the names are read as classes.
    named = tmp_path / "named" / "sevens"
    named.mkdir(parents=True)
    for path in (
        sorted((digit_folder / "7").iterdir())[:2] + sorted((digit_folder / "3").iterdir())[:2]
    ):
        shutil.copy(path, named / f"{path.parent.name}_{path.name}")
    with pytest.raises(ResnetlabError) as caught:
        resnetlab.evaluate(model_file, str(named.parent))
    assert str(caught.value).endswith(
        "[sevens] is not among them; the file names in sevens/ carry classes (3, 7), but as the "
        f"only folder here it is one class; --data {named} reads the classes from the names"
    )


def test_a_keras_model_given_as_an_image_says_to_convert_it(model_file, tmp_path, capsys):
    import h5py

    saved = tmp_path / "ResNet50.h5"  # model.save('ResNet50.h5'): no images in it
    with h5py.File(saved, "w") as f:
        f.create_group("model_weights")
    archive = tmp_path / "ResNet50.keras"  # model.save('ResNet50.keras')
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("config.json", "{}")
        z.writestr("model.weights.h5", b"")
    for keras_file in (saved, archive):
        assert main(["predict", str(model_file), str(keras_file)]) == 2
        assert capsys.readouterr().err == (
            f"error: {keras_file} is a Keras model file, not an image; convert it (resnetlab "
            f"convert keras {keras_file} ResNet50.safetensors) and give that model file first, "
            "the images after it\n"
        )


def test_a_model_file_given_as_an_image_says_to_give_one_model_first(model_file, tmp_path, capsys):
    # predict a.safetensors b.safetensors photo.jpg, meaning to compare the two models.
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"\x08\x07")  # named by its suffix, never read as an image
    for other, kind in [
        (model_file, "a model file"),
        (onnx, "an ONNX export"),
        (model_file.parent / "checkpoint.pt", "a training checkpoint (for --resume)"),
    ]:
        said = (
            f"error: {other} is {kind}, not an image; give one model file first and the "
            "images after it (to compare models, run once with each)\n"
        )
        assert main(["predict", str(model_file), str(other)]) == 2
        assert capsys.readouterr().err == said
        # Among the photos, as it is when meant to compare: not "or give its folder", which
        # for a run folder is refused, and holds no photos to give.
        photo = tmp_path / "photo.png"
        Image.new("RGB", (8, 8), "red").save(photo)
        assert main(["predict", str(model_file), str(other), str(photo)]) == 2
        assert capsys.readouterr().err == said


def test_a_run_folder_given_as_images_is_refused(model_file, capsys):
    # Its images are the run's curves and confusion matrices: none is a photo.
    run = model_file.parent
    assert any(run.glob("*.png"))
    assert main(["predict", str(model_file), str(run)]) == 2
    assert capsys.readouterr().err == (
        f"error: {run} is a training run's folder, whose images are its figures "
        "(curves.png...), not images to classify; give the image files or folders\n"
    )


def test_run_folders_inside_a_folder_of_images_are_skipped_with_a_warning(
    model_file, tmp_path, capsys
):
    # `resnetlab predict m.safetensors work/`, where work/ holds the photos and runs/ of runs.
    import shutil

    from PIL import Image

    work = tmp_path / "work"
    runs = work / "runs"
    for name in ("a", "b"):
        shutil.copytree(model_file.parent, runs / name)
    (work / "new").mkdir()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(work / "new" / "x.png")
    assert main(["predict", str(model_file), str(work)]) == 0
    out, err = capsys.readouterr()
    assert [line.split(":")[0] for line in out.splitlines()] == [str(work / "new" / "x.png")]
    assert err == (
        f"warning: 2 training run folders skipped ({runs / 'a'}, {runs / 'b'}): their images "
        "are the runs' figures\n"
    )


def test_explain_output_folders_inside_a_folder_of_images_are_skipped_with_a_warning(
    model_file, tmp_path, capsys
):
    # `resnetlab predict m.safetensors .` in a folder where `resnetlab explain` wrote cams/.
    import numpy as np
    from PIL import Image

    work = tmp_path / "work"
    for name in ("cams", "cams-2"):
        (work / name).mkdir(parents=True)
        Image.new("RGB", (8, 8), (10, 200, 10)).save(work / name / "x.png")
        np.savez(work / name / "maps.npz", maps=np.zeros((1, 8, 8), np.float32))
    Image.new("RGB", (8, 8), (200, 10, 10)).save(work / "x.png")
    assert main(["predict", str(model_file), str(work)]) == 0
    out, err = capsys.readouterr()
    assert [line.split(":")[0] for line in out.splitlines()] == [str(work / "x.png")]
    assert err == (
        f"warning: 2 explain output folders skipped ({work / 'cams'}, {work / 'cams-2'}): "
        "their images are explain's overlays (beside its maps.npz)\n"
    )
    # Named itself, as a run folder named itself is: refused, in one line.
    assert main(["predict", str(model_file), str(work / "cams")]) == 2
    assert capsys.readouterr().err == (
        f"error: {work / 'cams'} is a folder resnetlab explain wrote, whose images are its "
        "overlays, not images to classify; give the images it explained\n"
    )


def test_a_data_set_file_or_archive_given_as_an_image_points_to_eval(model_file, tmp_path, capsys):
    import h5py

    signs = tmp_path / "test_signs.h5"
    with h5py.File(signs, "w") as f:
        f["test_set_x"] = np.zeros((2, 8, 8, 3), np.uint8)
    said = (
        f"error: {signs} is an HDF5 file, not an image; the images of a data set file are "
        f"scored with: resnetlab eval MODEL_FILE --data {signs}\n"
    )
    assert main(["predict", str(model_file), str(signs)]) == 2
    assert capsys.readouterr().err == said
    photo = tmp_path / "photo.png"  # among photos too: no folder of them to give
    Image.new("RGB", (8, 8), "red").save(photo)
    assert main(["predict", str(model_file), str(photo), str(signs)]) == 2
    assert capsys.readouterr().err == said
    # So is an archive of photos, which predict does not open.
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("cat/1.png", b"")
    assert main(["predict", str(model_file), str(archive)]) == 2
    assert capsys.readouterr().err == (
        f"error: {archive} is an archive, not an image; extract it and give its folder, or score "
        f"the images of a data set's archive with: resnetlab eval MODEL_FILE --data {archive}\n"
    )
    # From Python, as Python calls it.
    for given, says in [
        (signs, "the images of a data set file are scored with: "),
        (archive, "score the images of a data set's archive with: "),
    ]:
        with pytest.raises(DataError) as caught:
            resnetlab.predict(model_file, [given])
        assert str(caught.value).endswith(f"{says}resnetlab.evaluate(model_file, '{given}')")


def test_an_unreadable_image_in_a_folder_is_skipped_with_a_warning(
    model_file, digit_folder, tmp_path, capsys
):
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = sorted((digit_folder / "3").glob("*.png"))[:2]
    for path in good:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "broken.png").write_text("not an image")
    assert main(["predict", str(model_file), str(folder), "--json"]) == 0
    out = capsys.readouterr()
    assert [p["image"] for p in json.loads(out.out)] == [str(folder / p.name) for p in good]
    # In the words of eval and train, which read a folder's images as predict does.
    assert out.err == (
        f"warning: {folder / 'broken.png'}: skipped, cannot read it (not an image format "
        "Pillow can read)\n"
    )


def test_a_large_folder_is_decoded_and_classified_a_part_at_a_time(
    model_file, digit_folder, tmp_path, monkeypatch
):
    folder = tmp_path / "mixed"
    shutil.copytree(digit_folder / "3", folder)
    (folder / "0010-broken.png").write_text("not an image")
    with pytest.warns(DataWarning, match="0010-broken.png: skipped, cannot read it"):
        whole = resnetlab.predict(model_file, [folder], top_k=2)
    predict_module = sys.modules[resnetlab.predict.__module__]
    seen = []
    real = predict_module.class_probabilities
    monkeypatch.setattr(predict_module, "DECODED_PART", 4)
    monkeypatch.setattr(
        predict_module,
        "class_probabilities",
        lambda model, images, *a, **k: seen.append(len(images)) or real(model, images, *a, **k),
    )
    with pytest.warns(DataWarning, match="0010-broken.png: skipped, cannot read it"):
        parts = resnetlab.predict(model_file, [folder], top_k=2)
    assert max(seen) == 4 and sum(seen) == len(whole)  # never more than a part decoded
    assert [(p.source, p.label) for p in parts] == [(p.source, p.label) for p in whole]
    for a, b in zip(parts, whole, strict=True):
        assert [q for _, q in a.top] == pytest.approx([q for _, q in b.top], abs=1e-6)


def test_a_large_folder_is_decoded_by_worker_processes_to_the_same_predictions(
    model_file, digit_folder, tmp_path, monkeypatch
):
    folder = tmp_path / "mixed"
    shutil.copytree(digit_folder / "3", folder)
    (folder / "0010-broken.png").write_text("not an image")
    with pytest.warns(DataWarning) as serial_warnings:
        serial = resnetlab.predict(model_file, [folder], top_k=2)
    predict_module = sys.modules[resnetlab.predict.__module__]
    pooled = []
    real = predict_module.read_images
    monkeypatch.setattr(predict_module, "PARALLEL_MIN_FILES", 8)  # the folder: 30 files
    monkeypatch.setattr(predict_module, "DECODED_PART", 16)  # two parts: 16 and 14 files
    monkeypatch.setattr(
        predict_module,
        "read_images",
        lambda paths, *a, **k: pooled.append(len(paths)) or real(paths, *a, workers=2, **k),
    )
    with pytest.warns(DataWarning) as pooled_warnings:
        parts = resnetlab.predict(model_file, [folder], top_k=2)
    assert pooled == [16, 14]
    assert [(p.source, p.label) for p in parts] == [(p.source, p.label) for p in serial]
    for a, b in zip(parts, serial, strict=True):
        assert [q for _, q in a.top] == pytest.approx([q for _, q in b.top], abs=1e-6)
    # The files the workers could not read get the same warnings as when read one by one.
    assert [str(w.message) for w in pooled_warnings] == [str(w.message) for w in serial_warnings]
    assert "0010-broken.png: skipped, cannot read it" in str(pooled_warnings[-1].message)


def test_windows_files_named_by_a_shell_glob_are_skipped(
    model_file, digit_folder, tmp_path, capsys
):
    # `resnetlab predict best.safetensors photos/*` in a folder copied from Windows names
    # its Thumbs.db too: left out with a warning, as a folder scan leaves it out, instead of
    # failing the whole command as an unreadable image named on the command line.
    good = sorted((digit_folder / "3").glob("*.png"))[:2]
    thumbs = tmp_path / "Thumbs.db"
    thumbs.write_bytes(b"\xd0\xcf\x11\xe0" + bytes(60))
    assert main(["predict", str(model_file), *map(str, good), str(thumbs), "--json"]) == 0
    out = capsys.readouterr()
    assert [p["image"] for p in json.loads(out.out)] == list(map(str, good))
    assert out.err == (
        f"warning: {thumbs}: a file Windows keeps in image folders, not an image; skipped\n"
    )
    # Given alone, it leaves nothing: said so, not that no images were given.
    assert main(["predict", str(model_file), str(thumbs)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: no images left to read: what was given was skipped, as said above; give image "
        "files or folders of them"
    )


def test_predict_on_a_shell_glob_skips_a_nas_thumbnail_folder(model_file, digit_folder, tmp_path):
    # `photos/*` on a Synology share names @eaDir too, which holds several thumbnails of
    # each photo: left out with a warning, as a folder scan leaves it out.
    photos = tmp_path / "photos"
    (photos / "@eaDir" / "a.png").mkdir(parents=True)
    good = sorted((digit_folder / "3").glob("*.png"))[0]
    (photos / "a.png").write_bytes(good.read_bytes())
    (photos / "@eaDir" / "a.png" / "SYNOFILE_THUMB_S.png").write_bytes(good.read_bytes())
    with pytest.warns(DataWarning, match=r"@eaDir: a folder of copies or thumbnails"):
        results = resnetlab.predict(model_file, sorted(photos.iterdir()))
    assert [r.source for r in results] == [str(photos / "a.png")]


def test_predict_on_a_folder_names_the_files_it_cannot_read_as_images(model_file, tmp_path):
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (8, 8), (200, 0, 0)).save(tmp_path / "photos" / "red.png")
    (tmp_path / "photos" / "IMG_0002.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    with pytest.warns(DataWarning, match=r"1 file that is not an image ignored \(IMG_0002\.HEIC\)"):
        (only,) = resnetlab.predict(model_file, tmp_path / "photos")
    assert only.source.endswith("red.png")


def test_eval_matches_class_folders_that_differ_only_in_case(tmp_path):
    model = tmp_path / "m.safetensors"
    net = resnetlab.create_model("resnet8", num_classes=2)
    resnetlab.save_model(net, model, class_names=["Circles", "Squares"], input_size=8)
    for name in ("circles", "Squares"):  # typed by hand, or from another machine
        (tmp_path / "test" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (i * 90, 0, 0)).save(tmp_path / "test" / name / f"{i}.png")
    report = resnetlab.evaluate(model, str(tmp_path / "test"))
    assert report.result.count == 4
    assert "circles as Circles (case aside)" in report.notes[-1]
    # A refusal lists the classes as the folders name them.
    (tmp_path / "test" / "Triangles").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "test" / "Triangles" / "0.png")
    with pytest.raises(ResnetlabError, match=r"has 3 classes \[Squares, Triangles, circles\]"):
        resnetlab.evaluate(model, str(tmp_path / "test"))


def test_eval_of_a_model_that_names_no_classes_says_it_takes_the_datas_order(tmp_path):
    """A Keras model converted without --classes: nothing can be matched by name, and the
    score depends on the data's order being the model's, so the report says it."""
    model = tmp_path / "m.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=2), model, input_size=8)
    for name in ("squares", "circles"):
        (tmp_path / "test" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "test" / name / "0.png")
    report = resnetlab.evaluate(model, str(tmp_path / "test"))
    assert report.notes[-1] == (
        "the model names no classes: its outputs are taken as the data's classes in order "
        "[circles, squares]"
    )
    # Classes 0, 1, ... are the model's own numbering: nothing to say.
    for i, name in enumerate(("circles", "squares")):
        (tmp_path / "test" / name).rename(tmp_path / "test" / str(i))
    notes = resnetlab.evaluate(model, str(tmp_path / "test")).notes
    assert not any("names no classes" in note for note in notes)


def test_a_class_named_in_another_case_is_only_matched_when_that_is_unambiguous():
    from resnetlab.models.files import case_matches

    assert case_matches(["circles", "Squares"], ["Circles", "Squares"]) == {"circles": "Circles"}
    assert case_matches(["a"], ["A", "a"]) == {}  # the model has it as it is
    assert case_matches(["b"], ["B", "b2"]) == {"b": "B"}
    assert case_matches(["x", "X"], ["X"]) == {}  # X is there as it is: x is another class


def test_a_pattern_the_shell_left_is_expanded_as_a_shell_would(tmp_path):
    # `resnetlab predict model "photos/*.jpg"` (quoted, or from a Windows shell, which
    # expands nothing) names the files that match, in order, folders among them read as
    # folders; a pattern that matches nothing is one line saying so. A file whose name holds
    # a pattern's characters is that file.
    from resnetlab.engine.predict import expand_inputs

    photos = tmp_path / "photos"
    (photos / "more").mkdir(parents=True)
    for name in ("b.jpg", "a.jpg", "more/c.jpg", "notes.txt", "[1].jpg"):
        Image.new("RGB", (8, 8)).save(photos / name, format="JPEG")
    found = expand_inputs([str(photos / "*.jpg")])
    assert found == [(photos / "[1].jpg", True), (photos / "a.jpg", True), (photos / "b.jpg", True)]
    assert expand_inputs(str(photos / "[1].jpg")) == [(photos / "[1].jpg", True)]
    assert [p.name for p, _ in expand_inputs([str(photos / "m*")])] == ["c.jpg"]
    with pytest.raises(ResnetlabError) as caught:
        expand_inputs([str(photos / "*.png")])
    assert str(caught.value) == (
        f"image not found: {photos / '*.png'} (no file matches it as a pattern)"
    )


def test_a_shell_glob_over_a_drive_skips_the_folders_its_system_keeps(tmp_path):
    # `resnetlab predict model /media/usb/*` names the drive's recycle bin too.
    from resnetlab.engine.predict import expand_inputs

    (tmp_path / "$RECYCLE.BIN").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "$RECYCLE.BIN" / "$R0A1B2C.jpg")
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    with pytest.warns(DataWarning, match=r"RECYCLE\.BIN: a folder a system keeps at the top of"):
        found = expand_inputs(sorted(tmp_path.iterdir()))
    assert found == [(tmp_path / "a.jpg", True)]


def test_predict_and_eval_in_bf16_agree_with_float32(digit_folder, model_file, tmp_path, capsys):
    exact = resnetlab.predict(model_file, [digit_folder / "3"], top_k=10)
    folder = another_set(digit_folder, tmp_path / "copy")  # scored whole
    reduced = resnetlab.predict(model_file, [digit_folder / "3"], top_k=10, precision="bf16")
    for a, b in zip(exact, reduced, strict=True):
        a_probs, b_probs = dict(a.top), dict(b.top)
        assert max(abs(a_probs[name] - b_probs[name]) for name in a_probs) < 0.02
    assert [a.top for a in exact] != [b.top for b in reduced]  # bf16 did run
    report = resnetlab.evaluate(model_file, str(folder), precision="bf16")
    exact_accuracy = resnetlab.evaluate(model_file, str(folder)).result.accuracy
    assert report.result.count == 300
    assert abs(report.result.accuracy - exact_accuracy) <= 3 / 300
    png = str(model_file.parent / "cm.png")
    command = ["eval", str(model_file), "--data", str(folder), "--json", "--png", png]
    assert main([*command, "--precision", "bf16"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 300
    image = str(sorted((digit_folder / "3").iterdir())[0])
    assert main(["predict", str(model_file), image, "--precision", "fp16", "--json"]) == 0
    (answer,) = json.loads(capsys.readouterr().out)
    by_class = {row["class"]: row["probability"] for row in answer["top"]}
    (alone,) = [p for p in exact if p.source == image]
    assert abs(by_class[alone.label] - dict(alone.top)[alone.label]) < 0.02


def test_cli_json_writes_class_names_as_they_are(tmp_path, capsys):
    model = tmp_path / "m.safetensors"
    net = resnetlab.create_model("resnet8", num_classes=2)
    resnetlab.save_model(net, model, class_names=["café", "naïve"], input_size=8)
    Image.new("RGB", (8, 8), (200, 0, 0)).save(tmp_path / "a.png")
    assert main(["predict", str(model), str(tmp_path / "a.png"), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"café"' in out and '"naïve"' in out and "\\u00" not in out
    assert {t["class"] for t in json.loads(out)[0]["top"]} == {"café", "naïve"}


def test_evaluate_refuses_a_precision_before_reading_the_data(model_file, monkeypatch):
    evaluation = importlib.import_module("resnetlab.engine.evaluate")  # (the module)
    read = []
    monkeypatch.setattr(evaluation, "held_out_split", lambda *args: read.append(args))
    with pytest.raises(ResnetlabError, match=r"precision 'bf' is not one of fp32, bf16, fp16"):
        resnetlab.evaluate(model_file, "digits", precision="bf")
    assert read == []


def test_a_test_set_given_as_validation_data_is_said_to_flatter_its_eval(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for name in ("photos", "photos_test"):
        for label in ("a", "b"):
            (tmp_path / name / label).mkdir(parents=True)
            for i in range(6):
                pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / name / label / f"{i}.png")
    test = tmp_path / "photos_test"
    args = ["train", "--model", "resnet8", "--data", str(tmp_path / "photos")]
    args += ["--val-data", str(test), "--input-size", "8", "--max-steps", "1"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    captured = capsys.readouterr()
    assert (
        f"--val-data {test} is a test set: the best epoch is picked on it, so an eval on it "
        "afterwards flatters the model; validate on other images (a val split, or "
        "--val-split) to keep it unseen"
    ) in " ".join((captured.out + captured.err).split())
    report = resnetlab.evaluate(tmp_path / "run" / "best.safetensors", str(test))
    assert report.notes[-1] == (
        "these are the images the model's training run validated on (--val-data): its best "
        "epoch was picked on them, which flatters the score"
    )
    # Scored on other images of that name (here fewer), it is not said.
    shutil.rmtree(test / "b")
    shutil.copytree(test / "a", test / "b")
    (test / "b" / "0.png").unlink()
    notes = resnetlab.evaluate(tmp_path / "run" / "best.safetensors", str(test)).notes
    assert not any("validated on" in note for note in notes)
    # A run that validated on a sample of it (--val-subset) says so when it is scored whole.
    assert main([*args, "--val-subset", "4", "--out", str(tmp_path / "sampled")]) == 0
    report = resnetlab.evaluate(tmp_path / "sampled" / "best.safetensors", str(test))
    assert report.notes[-1] == (
        "the model's training run validated on 4 of these images (--val-data, --val-subset): "
        "its best epoch was picked on them, which flatters the score"
    )


def test_an_eval_of_the_test_split_that_validated_says_so(tmp_path):
    """Without a val split, a run validates on the test split; an eval of it later says its
    best epoch was picked there (photos/{train,test}, and the course's two HDF5 files)."""
    import h5py

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label in ("a", "b"):
            (tmp_path / "photos" / split / label).mkdir(parents=True)
            for i in range(6):
                pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / "photos" / split / label / f"{i}.png")
    signs = tmp_path / "signs"
    signs.mkdir()
    for prefix, n in (("train", 24), ("test", 12)):
        with h5py.File(signs / f"{prefix}_signs.h5", "w") as f:
            f[f"{prefix}_set_x"] = rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)
            f[f"{prefix}_set_y"] = np.arange(n) % 2
    said = (
        "these are the images the model's training run validated on (the test split, as the "
        "data has no val split): its best epoch was picked on {them}, which flatters the score"
    )
    args = ["train", "--model", "resnet8", "--input-size", "8", "--max-steps", "1"]
    for data, scored in (
        (tmp_path / "photos", [tmp_path / "photos", tmp_path / "photos" / "test"]),
        (signs / "train_signs.h5", [signs / "test_signs.h5", signs / "train_signs.h5"]),
    ):
        run = tmp_path / f"run-{data.name}"
        assert main([*args, "--data", str(data), "--out", str(run)]) == 0
        for each in scored:  # the same images, however they are named
            notes = resnetlab.evaluate(run / "best.safetensors", str(each)).notes
            assert notes[-1] == said.format(them="them")
    sampled, photos = tmp_path / "sampled", str(tmp_path / "photos")
    assert main([*args, "--data", photos, "--val-subset", "4", "--out", str(sampled)]) == 0
    notes = resnetlab.evaluate(sampled / "best.safetensors", str(tmp_path / "photos")).notes
    assert notes[-1] == said.format(them="4 of them (--val-subset)")
    # A run that split the training images validated on a sample of those it held out.
    shutil.rmtree(tmp_path / "photos" / "test")
    folder = tmp_path / "photos" / "train"
    held = ["--val-split", "0.5", "--val-subset", "2", "--out", str(tmp_path / "held")]
    assert main([*args, "--data", str(folder), *held]) == 0
    notes = resnetlab.evaluate(tmp_path / "held" / "best.safetensors", str(folder)).notes
    assert notes[-1] == (
        f"scored: the 6 images of {folder} that the model's training run held out for "
        "validation (its best epoch was picked on 2 of them (--val-subset), which flatters the "
        "score a little; a test/ folder is scored instead where there is one)"
    )


def test_a_file_name_with_a_line_break_is_one_line_of_output(
    model_file, digit_folder, tmp_path, capsys
):
    image = tmp_path / "new\nline.png"
    shutil.copy(next((digit_folder / "3").iterdir()), image)
    assert main(["predict", str(model_file), str(image)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(f"{tmp_path}/new\\nline.png: ")
    assert main(["predict", str(model_file), str(image), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["image"] == str(image)  # as it is


def test_outputs_that_overflow_float16_are_said_to_and_not_blamed_on_the_weights(tmp_path, capsys):
    """Logits past float16's 65,504 came out inf under --precision fp16, and predict and eval
    said the model's 'weights or normalisation are damaged': they are finite (checked at
    load), and fp32 answers."""
    model = tmp_path / "large.safetensors"
    net = resnetlab.create_model("resnet8", num_classes=2)
    with torch.no_grad():
        net.fc.weight.mul_(1e6)  # logits of about a million
    resnetlab.save_model(net, model, class_names=["a", "b"], input_size=8)
    for label in ("a", "b"):
        (tmp_path / "data" / label).mkdir(parents=True)
        Image.new("RGB", (8, 8), (200, 0, 90)).save(tmp_path / "data" / label / "0.png")
    image = str(tmp_path / "data" / "a" / "0.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fp16 on a CPU without it: emulated, said so
        assert main(["predict", str(model), image, "--device", "cpu"]) == 0
        assert main(["predict", str(model), image, "--device", "cpu", "--precision", "fp16"]) == 2
        overflow = (
            "in fp16 its activations overflowed (float16 holds at most 65,504); give "
            "--precision fp32, or bf16, which has float32's range\n"
        )
        assert capsys.readouterr().err.endswith(f"for {image}; {overflow}")
        data = ["--data", str(tmp_path / "data"), "--device", "cpu", "--precision", "fp16"]
        assert main(["eval", str(model), *data]) == 2
        assert capsys.readouterr().err.endswith(f"; {overflow}")


def _shaped_photos(root: Path) -> Path:
    """Six photos of two classes, none of them square, with detail up to their edges: what
    the centre crop keeps shows in the outputs."""
    rng = np.random.default_rng(5)
    for i, (h, w) in enumerate([(40, 60), (50, 34), (45, 70), (60, 41), (38, 52), (66, 44)]):
        folder = root / "ab"[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def _fractions_files(tmp_path: Path) -> dict[float, Path]:
    """One resnet8 of classes a and b at 16 px, saved with crop fractions 1 and 0.875."""
    torch.manual_seed(4)
    model = resnetlab.create_model("resnet8", num_classes=2)
    files = {}
    for fraction in (1.0, 0.875):
        files[fraction] = tmp_path / f"{fraction}.safetensors"
        resnetlab.save_model(
            model, files[fraction], class_names=["a", "b"], input_size=16, crop_fraction=fraction
        )
    return files


def _loss_of_predictions(model_file: Path, folder: Path) -> float:
    """Eval's loss as predict's probabilities give it: the mean of -log p(true class)."""
    predictions = resnetlab.predict(model_file, [folder], top_k=2)
    losses = [-np.log(dict(p.top)[Path(p.source).parent.name]) for p in predictions]
    return float(np.mean(losses))


def test_predict_and_eval_resize_as_the_model_files_crop_fraction_says(tmp_path, monkeypatch):
    """0.875 at 16 px: the shorter side to 18 (floor(16 / 0.875)), then the centre 16x16,
    as torchvision's Resize(18) + CenterCrop(16); eval, decoded into memory (the second
    file's folder not taken from the first's cache) and streamed, scores the pixels
    predict classifies."""
    import torchvision.transforms.functional as TF

    from resnetlab.data import folders
    from resnetlab.engine.predict import read_input

    photos = _shaped_photos(tmp_path / "photos")
    files = _fractions_files(tmp_path)
    photo = photos / "a" / "0.png"  # 60x40
    meta = resnetlab.read_model_meta(files[0.875])
    theirs = TF.center_crop(TF.resize(Image.open(photo), 18), 16)
    ours = read_input(photo, meta).astype(int)
    assert np.abs(ours - np.asarray(theirs, dtype=int)).max() <= 1  # PIL's rounding, see convert
    whole = read_input(photo, resnetlab.read_model_meta(files[1.0])).astype(int)
    assert np.abs(ours - whole).mean() > 10  # another part of the photo, at another scale
    # Both files on one folder, one cache: the fraction is part of what the cache is keyed by.
    losses = {}
    for fraction, path in files.items():
        report = resnetlab.evaluate(path, str(photos), device="cpu")
        assert report.result.count == 6
        losses[fraction] = report.result.loss
        assert losses[fraction] == pytest.approx(_loss_of_predictions(path, photos), abs=1e-5)
    assert losses[0.875] != pytest.approx(losses[1.0], abs=1e-4)
    monkeypatch.setattr(folders, "STREAM_ABOVE_BYTES", 0)  # decoded by the loader's workers
    copy = shutil.copytree(photos, tmp_path / "copy")  # cached under another key
    streamed = resnetlab.evaluate(files[0.875], str(copy), device="cpu")
    assert any(note.startswith("streamed from disk") for note in streamed.notes)
    assert streamed.result.loss == pytest.approx(losses[0.875], abs=1e-5)


def test_the_note_on_small_images_says_how_the_model_file_resizes_them(tmp_path):
    """At 0.875 an image goes to 18 px at 16 (``resize_plan``), then its centre is cut: the
    note says so, squashed or cropped; at 1 a square image goes straight to 16x16."""
    files = _fractions_files(tmp_path)
    squashed = tmp_path / "squash.safetensors"
    model = resnetlab.load_model(files[0.875])
    resnetlab.save_model(model, squashed, resize="squash", crop_fraction=0.875)
    tiny, wide = tmp_path / "tiny.png", tmp_path / "wide.png"
    Image.new("RGB", (1, 1), "red").save(tiny)
    Image.new("RGB", (6, 4), "red").save(wide)

    def notes(path: Path, images: list[Path]) -> list[str]:
        with pytest.warns(DataWarning) as caught:
            resnetlab.predict(path, images)
        return [str(w.message) for w in caught]

    size = "(the model's input size)"
    assert notes(files[1.0], [tiny]) == [f"{tiny} is 1x1, enlarged to 16x16 {size}"]
    for path in (files[0.875], squashed):
        assert notes(path, [tiny]) == [
            f"{tiny} is 1x1, enlarged to 18x18 and centre-cropped to 16x16 {size}"
        ]
    assert notes(files[0.875], [wide, tiny]) == [
        f"2 of 2 images are at most 8 px a side (first: {wide}, 6x4, scaled to 27x18), "
        f"enlarged and centre-cropped to 16x16 {size}"
    ]
    assert notes(squashed, [wide]) == [
        f"{wide} is 6x4, enlarged to 18x18 and centre-cropped to 16x16 {size}"
    ]


def test_a_model_file_from_before_crop_fractions_reads_as_one(tmp_path):
    """Files written before the key existed resize straight to the input size, as they
    always did; a value out of range is one line naming it."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    photos = _shaped_photos(tmp_path / "photos")
    path = _fractions_files(tmp_path)[1.0]
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (no __iter__)
        text = f.metadata()["resnetlab"]
    data = json.loads(text)
    del data["crop_fraction"]
    old = tmp_path / "old.safetensors"
    save_file(tensors, old, metadata={"resnetlab": json.dumps(data)})
    assert resnetlab.read_model_meta(old).crop_fraction == 1.0
    assert resnetlab.load_model(old).meta.crop_fraction == 1.0
    before = resnetlab.predict(old, [photos], top_k=2)
    assert [p.top for p in before] == [p.top for p in resnetlab.predict(path, [photos], top_k=2)]
    # 1e-320 once overflowed to an infinite side, 0.0875 (a typo) asked eval for 12 GB
    for bad in (1.5, 0, "0.875", None, 1e-320, 0.0875):
        edited = tmp_path / "edited.safetensors"
        save_file(
            tensors, edited, metadata={"resnetlab": json.dumps({**data, "crop_fraction": bad})}
        )
        with pytest.raises(ResnetlabError) as caught:
            resnetlab.read_model_meta(edited)
        assert str(caught.value) == (
            f"{edited} has invalid resnetlab metadata (crop_fraction {bad!r} is not a number "
            "from 0.5 to 1); the file is damaged or was edited: save the model again"
        )
    with pytest.raises(ResnetlabError, match=r"^crop_fraction must be a number from 0.5 to 1, "):
        resnetlab.save_model(
            resnetlab.load_model(path), tmp_path / "x.safetensors", crop_fraction=2
        )
