import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from resnetlab.data import (
    ImageSet,
    load_dataset,
    load_eval_split,
    make_loader,
    split_stats,
    stratified_sample,
    stratified_split,
)
from resnetlab.data.sources import VALIDATED_SCORED_NOTE, sample_counts
from resnetlab.engine.distributed import resolve_device
from resnetlab.errors import DataError, DataWarning, ResnetlabError, command_line

from .conftest import noise, write_signs_pair, write_tree


def test_digits_offline_default():
    data = load_dataset("digits", val_split=0.2, seed=0)
    assert data.class_names == [str(i) for i in range(10)]
    assert len(data.train) + len(data.val) == 1797
    assert data.train.image_size == (8, 8) and data.train.images.dtype == torch.uint8
    assert data.train.images.max() == 255 and data.train.images.min() == 0  # 0..16 scaled
    assert torch.equal(data.train.images[..., 0], data.train.images[..., 2])  # gray as RGB
    counts = data.val.class_counts()
    assert sum(counts) == 359 and min(counts) >= 35  # stratified: about 36 a class


def test_digits_upscaled_to_the_model_input():
    split = load_eval_split("digits", image_size=32)
    assert split.images.shape == (1797, 32, 32, 3)


def test_unused_val_split_is_said(tmp_path):
    for split in ("train", "test"):
        write_tree(tmp_path / "d" / split, {"a": [noise(0)] * 2, "b": [noise(1)] * 2})
    with pytest.warns(DataWarning, match=r"val_split=0.5 not used: validating on the test split"):
        data = load_dataset(str(tmp_path / "d"), val_split=0.5)
    assert len(data.val) == 4
    # Pointing at the training folder alone splits it.
    data = load_dataset(str(tmp_path / "d" / "train"), val_split=0.5)
    assert len(data.train) == len(data.val) == 2


def test_unused_val_split_names_the_fix_that_fits_the_data(tmp_path):
    # A file's own test split has no training folder to point at, and --val-data given is
    # what to leave out: neither was told to point --data at the training folder.
    import h5py

    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "both.h5", "w") as f:
        f["train_set_x"] = rng.integers(0, 255, (8, 8, 8, 3), dtype=np.uint8)
        f["train_set_y"] = np.arange(8) % 2
        f["test_set_x"] = rng.integers(0, 255, (4, 8, 8, 3), dtype=np.uint8)
        f["test_set_y"] = np.arange(4) % 2
        f["list_classes"] = np.arange(2)
    with command_line(), pytest.warns(DataWarning) as caught:
        load_dataset(str(tmp_path / "both.h5"), val_split=0.5)
    said = [str(w.message) for w in caught if "not used" in str(w.message)]
    assert said == [
        f"--val-split 0.5 not used: validating on the test split of {tmp_path / 'both.h5'} "
        "(its own held-out split; leave out --val-split)"
    ]
    write_tree(tmp_path / "val", {"0": [noise(0)], "1": [noise(1)]})
    with command_line(), pytest.warns(DataWarning) as caught:
        load_dataset(str(tmp_path / "both.h5"), val_data=str(tmp_path / "val"), val_split=0.5)
    said = [str(w.message) for w in caught if "not used" in str(w.message)]
    assert said == [
        f"--val-split 0.5 not used: validating on the validation data {tmp_path / 'val'} "
        "(leave out --val-data to hold out training images instead)"
    ]


def test_a_validation_class_spelled_unlike_its_training_class_is_hinted_at(tmp_path):
    # --data photos --val-data caps2, where caps2/Horses holds photos/horse: the near name
    # is hinted at, as eval hints at a folder spelled unlike the model's class.
    photos = write_tree(tmp_path / "photos", {"cat": [noise(0)], "horse": [noise(1)]})
    caps2 = write_tree(tmp_path / "caps2", {"cat": [noise(2)], "Horses": [noise(3)]})
    with pytest.raises(DataError) as caught:
        load_dataset(str(photos), val_data=str(caps2))
    assert (
        "(only in training: horse; only in validation: Horses; did you mean horse?); validation "
        f"needs classes the training data has: rename the folders as training names them, move "
        f"the others out of {caps2}, or "
    ) in str(caught.value)
    write_tree(caps2, {"dgo": [noise(4)]})  # two names unknown: each named with its near one
    with pytest.raises(
        DataError, match=r"validation: Horses, dgo; did you mean horse for Horses\?\)"
    ):
        load_dataset(str(photos), val_data=str(caps2))


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_val_split_outside_zero_one(fraction):
    with pytest.raises(DataError, match=r"^val_split must be between 0 and 1"):
        load_dataset("digits", val_split=fraction)


def test_val_split_given_as_text_says_it_is_no_number():
    # '0.2' lies between 0 and 1 as read: "must be between 0 and 1, got '0.2'" misled.
    with pytest.raises(DataError) as caught:
        load_dataset("digits", val_split="0.2")
    assert str(caught.value) == (
        "val_split must be a number (int or float) between 0 and 1, got '0.2' (str)"
    )


def test_val_split_given_as_a_percentage_says_the_fraction():
    with pytest.raises(DataError) as caught:
        load_dataset("digits", val_split=20)
    assert str(caught.value) == (
        "val_split must be between 0 and 1 (exclusive), got 20; a fraction: for 20% give "
        "val_split=0.2"
    )
    with command_line(), pytest.raises(DataError, match=r"for 20% give --val-split 0.2$"):
        load_dataset("digits", val_split=20)
    with pytest.raises(DataError, match=r"got 1.5$"):  # no percentage: a val split of 1.5%?
        load_dataset("digits", val_split=1.5)


def test_no_validation_unless_asked():
    assert load_dataset("digits").val is None


@pytest.mark.parametrize(
    ("size", "says"),
    [
        (0, "from 8 to 2,048 pixels, got 0"),
        (3, "from 8 to 2,048 pixels, got 3"),  # --input-size's rule, not images of 3x3
        ("32", "a whole number, got '32'"),
    ],
)
def test_bad_image_size(size, says):
    # Out of range or no number at all: a DataError (a ValueError), as the data's other
    # bad arguments are.
    for function in (load_dataset, load_eval_split):
        with pytest.raises(DataError, match=f"^image_size must be {says}$"):
            function("digits", image_size=size)
    assert len(load_dataset("digits", image_size=8).train) == 1797  # the smallest side taken


def test_data_from_a_pipe_is_named_as_one(tmp_path):
    # `--data <(cat test_signs.h5)`: a pipe, which was "Not a directory".
    pipe = tmp_path / "signs.h5"
    os.mkfifo(pipe)  # never opened: nothing blocks
    with pytest.raises(DataError) as caught:
        load_dataset(str(pipe))
    assert str(caught.value) == (
        f"{pipe} is a pipe or a device, not a data set: save the data to a file (an .h5 file, "
        "a .tar.gz/.zip of a folder) or a folder and give its path"
    )


def test_a_missing_path_names_a_close_one_beside_it(tmp_path):
    (tmp_path / "my_photos").mkdir()
    near = re.escape(f"{tmp_path / 'my_photos'}{os.sep}")
    with pytest.raises(DataError, match=rf"no such file or folder; did you mean {near}\?$"):
        load_dataset(str(tmp_path / "my_photo"))
    with pytest.raises(DataError, match=r"no such file or folder$"):
        load_dataset(str(tmp_path / "holiday"))


@pytest.mark.parametrize("spec", ["", " "])
def test_an_empty_data_name_is_refused_not_read_as_the_current_folder(tmp_path, monkeypatch, spec):
    write_tree(tmp_path, {"a": [noise(0)] * 2, "b": [noise(1)] * 2})  # would load, if read
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ResnetlabError, match=r"^the data .*: an empty value; give one \(\. for the current"
    ):
        load_dataset(spec)
    with pytest.raises(ResnetlabError, match=r"^the validation data .*: an empty value"):
        load_dataset("digits", val_data=spec)


def test_data_that_is_not_a_name_or_path_is_one_line():
    with pytest.raises(
        ResnetlabError, match=r"^the data \(digits, .*\) must be a path .*, got int$"
    ):
        load_dataset(5)


def test_a_run_folder_given_as_data_is_named_as_one(tmp_path):
    # train's output, given as --data in place of --pretrained: its figures are no data set.
    run = tmp_path / "runs" / "pets"
    run.mkdir(parents=True)
    for name in ("curves.png", "confusion.png"):
        noise(0).save(run / name)
    (run / "config.json").write_text("{}")
    (run / "checkpoint.pt").write_bytes(b"")
    for load in (load_dataset, load_eval_split):
        with pytest.raises(DataError) as caught:
            load(str(run))
        assert str(caught.value) == (
            f"{run} is a training run's folder, not a data set; give the images it trained on "
            f"(its config.json names them), or start from its weights: train pretrained='{run}'"
        )


def test_named_source_hint_for_a_missing_path():
    with pytest.raises(
        DataError, match=r"^cifar: no such file or folder \(named data sets: digits, cifar10\)$"
    ):
        load_dataset("cifar")


def test_a_class_of_one_image_is_said_never_validated(tmp_path):
    write_tree(tmp_path / "d", {"a": [noise(0), noise(1)], "b": [noise(2)], "c": [noise(3)] * 2})
    with pytest.warns(DataWarning, match=r"^1 class with one image, trained on and never "):
        data = load_dataset(str(tmp_path / "d"), val_split=0.5)
    assert data.val.class_counts() == [1, 0, 1] and data.train.class_counts() == [1, 1, 1]
    # One image of every class: nothing to validate on, so no validation set (not an empty
    # one, which training would score as NaN).
    write_tree(tmp_path / "e", {"a": [noise(4)], "b": [noise(5)]})
    with pytest.warns(DataWarning, match=r"^2 classes with one image, trained on and never "):
        data = load_dataset(str(tmp_path / "e"), val_split=0.5)
    assert data.val is None and data.train.class_counts() == [1, 1]


def test_holding_out_more_than_is_trained_on_is_said(tmp_path):
    write_tree(
        tmp_path / "d", {"a": [noise(i) for i in range(10)], "b": [noise(i) for i in range(10, 20)]}
    )
    with pytest.warns(DataWarning, match=r"val_split=0.8 holds out more .* \(16 validated, 4 "):
        load_dataset(str(tmp_path / "d"), val_split=0.8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_dataset(str(tmp_path / "d"), val_split=0.5)  # half and half: no warning
    assert len(data.val) == len(data.train) == 10


def test_holding_out_far_more_than_asked_for_classes_of_few_images_is_said(tmp_path):
    # Ten classes of two images: one of each validates, half the images, where 0.2 asked
    # for a fifth; said, with the way to train on them all.
    write_tree(tmp_path / "d", {f"c{i}": [noise(2 * i), noise(2 * i + 1)] for i in range(10)})
    data = load_dataset(str(tmp_path / "d"), val_split=0.2)
    assert len(data.val) == len(data.train) == 10
    assert data.val.notes[-1] == (
        "val_split=0.2 held out 10 of 20 images (50%, not 20%): each class gives one image at "
        "least, more than its share in a class of fewer than 5 images (10 of the 10 classes); "
        "to train on all of them, validate on other images (val_data)"
    )
    # Five of each: a fifth is one image, as asked; no note.
    write_tree(tmp_path / "e", {f"c{i}": [noise(5 * i + j) for j in range(5)] for i in range(4)})
    data = load_dataset(str(tmp_path / "e"), val_split=0.2)
    assert len(data.val) == 4 and not any("held out" in n for n in data.val.notes)


@pytest.mark.parametrize(
    ("name", "role"),
    [("test", "test"), ("Validation", "val"), ("photos_test", "test"), ("test-2026", "test")],
)
def test_a_folder_named_for_a_split_is_scored_as_that_split(tmp_path, name, role):
    root = write_tree(tmp_path / name, {"a": [noise(0), noise(1)], "b": [noise(2), noise(3)]})
    assert load_eval_split(str(root)).notes == [f"scored: the {role} split of {root}"]
    other = write_tree(tmp_path / "photos", {"a": [noise(0), noise(1)], "b": [noise(2), noise(3)]})
    (note,) = load_eval_split(str(other)).notes
    assert note.startswith(f"{other} has no held-out split: all 4 images are scored")


def test_eval_of_a_val_split_says_it_is_one_and_what_that_may_mean(tmp_path):
    # photos/train and photos/val, no test/: the val split is scored, and said to be, as it
    # may be the split the model's best epoch was picked on.
    root = tmp_path / "photos"
    for split, seed in (("train", 0), ("val", 10)):
        write_tree(root / split, {"a": [noise(seed), noise(seed + 1)], "b": [noise(seed + 2)]})
    split = load_eval_split(str(root))
    assert split.source == str(root / "val") and len(split) == 3
    assert split.notes == [
        f"scored: the val split of {root}, which has no test split (if the model validated "
        "on it, its best epoch was picked on these images, which flatters the score)"
    ]


def test_eval_of_a_folder_with_a_test_split_says_it_scored_that_split(tmp_path):
    # photos/train and photos/test: the score is of photos/test's images alone, said so, as
    # for a test file or a test/ folder given itself.
    root = tmp_path / "photos"
    for split, seed in (("train", 0), ("test", 10)):
        write_tree(root / split, {"a": [noise(seed), noise(seed + 1)], "b": [noise(seed + 2)]})
    split = load_eval_split(str(root))
    assert split.source == str(root / "test") and len(split) == 3
    assert split.notes == [f"scored: the test split of {root}"]


def test_only_the_split_a_run_validated_on_is_said_to_be_it(tmp_path):
    # --val-data held validated on held/val; an eval of held scores held/test, as many
    # images, which the run never saw.
    root = tmp_path / "held"
    for split, seed in (("val", 0), ("test", 10)):
        write_tree(root / split, {"a": [noise(seed), noise(seed + 1)], "b": [noise(seed + 2)]})
    validated = {"data": "held", "images": 3}
    test = load_eval_split(str(root), validated_on=validated)
    assert test.source == str(root / "test")
    assert not any("validated on (--val-data)" in note for note in test.notes)
    (root / "test").rename(tmp_path / "elsewhere")
    val = load_eval_split(str(root), validated_on=validated)
    assert val.notes[-1].startswith("these are the images the model's training run validated")


def test_the_test_file_next_to_a_training_file_is_said_to_be_the_val_data_it_was(tmp_path):
    # The course's run: --data train_signs.h5 --val-data test_signs.h5. An eval of
    # train_signs.h5 scores test_signs.h5, found next to it: the images the run validated on.
    folder = write_signs_pair(tmp_path / "signs")
    validated = {"data": "test_signs.h5", "images": 6}
    split = load_eval_split(str(folder / "train_signs.h5"), validated_on=validated)
    assert any("found next to" in note for note in split.notes)
    assert split.notes[-1] == VALIDATED_SCORED_NOTE
    direct = load_eval_split(str(folder / "test_signs.h5"), validated_on=validated)
    assert direct.notes[-1] == VALIDATED_SCORED_NOTE


@pytest.mark.parametrize(
    ("counts", "n", "take"),
    [
        ([5000] * 10, 500, [50] * 10),  # shares that are whole numbers
        ([50, 50, 50], 100, [34, 33, 33]),  # a tie: the first class rounds up
        ([60, 30, 10], 7, [4, 2, 1]),  # 4.2, 2.1, 0.7: the largest remainder rounds up
        ([100, 100, 1], 10, [5, 4, 1]),  # the class of one image kept, a larger one gives back
        ([1, 1, 1, 97], 3, [0, 0, 0, 3]),  # fewer images asked for than classes
        ([0, 20, 20], 4, [0, 2, 2]),  # a class without images takes none
    ],
)
def test_a_sample_takes_each_class_share_and_adds_up(counts, n, take):
    assert sample_counts(counts, n) == take


def test_a_sample_of_n_images_has_n_images_and_is_seeded():
    labels = torch.tensor([0] * 7 + [1] * 13 + [2] * 3)
    split = ImageSet(
        torch.arange(23, dtype=torch.uint8).view(23, 1, 1, 1).expand(23, 2, 2, 3),
        labels,
        ["a", "b", "c"],
    )
    sample = stratified_sample(split, 10, seed=1)
    assert len(sample) == 10 and sample.class_counts() == [3, 6, 1]
    assert torch.equal(stratified_sample(split, 10, seed=1).images, sample.images)
    assert not torch.equal(stratified_sample(split, 10, seed=2).images, sample.images)


def test_a_data_spec_is_named_by_its_last_part_without_a_data_suffix(tmp_path, monkeypatch):
    from resnetlab.data.sources import data_name

    monkeypatch.chdir(tmp_path)
    assert [data_name(s) for s in ("digits", "photos/", ".", "x/train_signs.h5")] == [
        "digits",
        "photos",
        tmp_path.name,
        "train_signs",
    ]
    assert data_name("photos.v1") != data_name("photos.v2")
    # In file names, a folder named as a split keeps the folder above it: two test sets, two
    # names (eval's default image, a run folder's name); a data file keeps its suffix, so a
    # folder and an archive of it get two too (inspect's contact sheet, an experiment's folder).
    from resnetlab.engine.report import data_tag

    specs = ("a/test", "b/test/", "x/test_signs.h5", "digits", "photos/", "photos.zip", "test.zip")
    assert [data_tag(s) for s in specs] == [
        "a-test",
        "b-test",
        "test_signs.h5",
        "digits",
        "photos",
        "photos.zip",
        f"{tmp_path.name}-test.zip",
    ]
    # Letters of any script are kept: eval's images of two data sets never share a name. A
    # tag is a file name: its UTF-8 bytes in the file system's encoding (in an ASCII locale,
    # escaped bytes; elsewhere the letters themselves).
    tags = ["写真", "画像", "été", "हिन्दी", "a_b_1_"]
    assert [data_tag(s) for s in ("写真/", "画像", "été", "हिन्दी", "a b[1]")] == [
        os.fsdecode(tag.encode("utf-8")) for tag in tags
    ]


def test_scoring_a_whole_set_warns_unless_it_is_named_apart_from_the_training_data():
    from resnetlab.data.sources import _scored_whole_note

    held_out = _scored_whole_note("held_out", 60, "photos")
    assert held_out == (
        "all 60 images of held_out are scored (the model was trained on photos; any of its "
        "images in held_out flatter the score)"
    )
    for data in ("photos", "/elsewhere/photos/", "photos/train"):  # the set, or inside it
        assert "including any the model was trained on" in _scored_whole_note(data, 60, "photos")
    assert "including any" in _scored_whole_note("held_out", 60, None)  # trained on unknown


def test_a_data_set_or_its_name_where_a_split_goes_is_one_line():
    data = load_dataset("digits")
    for given, kind in ((data, "Dataset"), ("digits", "str")):
        says = r"one split of a data set \(load_dataset\(\.\.\.\)\.train, or \.val\), "
        says += f"not a {kind}$"
        with pytest.raises(ResnetlabError, match=f"^split_stats takes {says}"):
            split_stats(given)
        with pytest.raises(ResnetlabError, match=f"^make_loader takes {says}"):
            make_loader(given, train=True, batch_size=8, device="cpu", mean=(0,) * 3, std=(1,) * 3)


def test_make_loader_takes_device_names_as_the_model_functions_do():
    data = load_dataset("digits")
    kw = dict(train=False, batch_size=8, mean=(0,) * 3, std=(1,) * 3)
    x, y = next(iter(make_loader(data.train, device="auto", **kw)))
    assert x.device == y.device == resolve_device("auto")
    with pytest.raises(ResnetlabError, match=r"^unknown device 'gpu'; use auto, cpu, cuda"):
        make_loader(data.train, device="gpu", **kw)


@pytest.mark.parametrize("through_scikit_learn", [False, True], ids=["file", "scikit-learn"])
def test_loading_digits_leaves_pythons_random_state_alone(through_scikit_learn):
    # Importing scikit-learn's datasets draws from Python's generator: only a process that
    # has not imported them yet shows it. Read from scikit-learn's file, digits import none
    # of it (a second or more at every start).
    code = (
        "import random, sys; import resnetlab.data.digits as d; "
        "from resnetlab.data import load_dataset; random.seed(5); "
        f"{'d.read_bundled_digits = lambda: None; ' * through_scikit_learn}"
        "load_dataset('digits'); print(random.random() == random.Random(5).random(), "
        "'sklearn' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["True", str(through_scikit_learn)], done.stderr


def test_digits_read_from_the_file_are_scikit_learns(tmp_path, monkeypatch):
    from sklearn.datasets import load_digits

    import resnetlab.data.digits as digits

    reference = load_digits()
    scans, targets = digits.read_bundled_digits()
    assert np.array_equal(scans, reference.images) and np.array_equal(targets, reference.target)
    # Where the file is not as scikit-learn writes it, scikit-learn reads it.
    from_file = digits.load_digits_set()
    short = tmp_path / "digits.csv.gz"
    np.savetxt(short, np.zeros((3, 65)), delimiter=",")
    for path in (short, tmp_path / "missing.csv.gz", None):
        monkeypatch.setattr(digits, "_bundled_digits_file", lambda path=path: path)
        assert digits.read_bundled_digits() is None
        again = digits.load_digits_set()
        assert torch.equal(again.images, from_file.images)
        assert torch.equal(again.labels, from_file.labels)


def test_a_model_or_an_image_given_as_data_is_named_as_what_it_is(tmp_path):
    import zipfile

    from PIL import Image

    keras_file = tmp_path / "model.keras"
    with zipfile.ZipFile(keras_file, "w") as archive:
        archive.writestr("config.json", "{}")
        archive.writestr("model.weights.h5", b"")
    weights = tmp_path / "weights.pth"
    torch.save({"w": torch.zeros(1)}, weights)
    image = tmp_path / "photo.png"
    Image.new("RGB", (4, 4)).save(image)
    run = tmp_path / "run"  # a training run's folder: its figures are no training images
    run.mkdir()
    (run / "config.json").write_text("{}")
    Image.new("RGB", (4, 4)).save(run / "curves.png")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(run / "best.safetensors"))
    with pytest.raises(DataError, match=r"model.keras is a Keras model file, not a data set; "):
        load_dataset(str(keras_file))  # (tests/data/test_signs.py: the whole line)
    for path, kind in [
        (weights, "a PyTorch weights file (torch.save), which pretrained takes"),
        (image, "an image"),
        (run / "best.safetensors", "a model file, which pretrained takes"),
    ]:
        with pytest.raises(
            DataError,
            match=rf"^{re.escape(str(path))} is {re.escape(kind)}, not a data set: expected an "
            r"\.h5 file, an image folder",
        ):
            load_dataset(str(path))
    with pytest.raises(DataError) as caught:
        load_dataset(str(run))
    assert str(caught.value) == (
        f"{run} is a training run's folder, not a data set; give the images it trained on (its "
        f"config.json names them), or start from its weights: train pretrained='{run}'"
    )


@pytest.mark.parametrize("name", ["X_train.npy", "signs.npz"])
def test_numpy_arrays_given_as_data_say_how_to_write_them_as_a_data_set(tmp_path, name):
    """np.save(X_train), as a Keras user keeps the course's arrays: was only "not a data
    set: expected an .h5 file, ...", without the way there."""
    path = tmp_path / name
    images = np.zeros((2, 4, 4, 3), np.uint8)
    if name.endswith(".npy"):
        np.save(path, images)
    else:
        np.savez(path, x=images, y=[0, 1])
    with pytest.raises(DataError) as caught:
        load_dataset(str(path))
    assert str(caught.value) == (
        f"{path} holds NumPy arrays, not a data set; write the arrays to an HDF5 file as the "
        "course's: train_set_x uint8 (N, H, W, 3), train_set_y (N,) class indices, and give "
        "its path"
    )


def test_the_held_out_digits_are_scored_without_a_word_of_test_folders():
    # digits, a data set of no folders, has no test/ folder to put instead.
    from resnetlab.data.sources import load_eval_split

    record = load_dataset("digits", default_val_split=0.2).held_out
    again = load_eval_split("digits", trained_on="digits", held_out=record)
    assert len(again) == 359 and again.notes[-1] == (
        "scored: the 359 images of digits that the model's training run held out for "
        "validation (its best epoch was picked on them, which flatters the score a little)"
    )


def test_a_copy_of_the_training_folder_is_scored_on_the_images_held_out(tmp_path):
    from resnetlab.data.sources import load_eval_split

    classes = {c: [noise(i + 20 * k) for i in range(10)] for k, c in enumerate("ab")}
    root = write_tree(tmp_path / "photos", classes)
    data = load_dataset(str(root), default_val_split=0.2)
    backup = tmp_path / "photos_backup"
    shutil.copytree(root, backup)
    again = load_eval_split(str(backup), trained_on="photos", held_out=data.held_out)
    assert torch.equal(again.images, data.val.images)
    assert again.notes[-1].endswith(
        f"; {backup} holds the same files as photos, which it was trained on"
    )
    # Files of the same names and counts but other contents (sizes) are other images.
    bigger = {c: [noise(i + 20 * k, size=(12, 12)) for i in range(10)] for k, c in enumerate("ab")}
    other = write_tree(tmp_path / "other", bigger)
    whole = load_eval_split(str(other), trained_on="photos", held_out=data.held_out)
    assert len(whole) == 20 and whole.notes[-1].startswith(f"all 20 images of {other}")

    # Nor are files of one size (BMPs of one image size) with other pixels under those names.
    def bmps(tree, seed):
        classes = {c: [noise(i + 10 * k + seed) for i in range(10)] for k, c in enumerate("ab")}
        return write_tree(tmp_path / tree, classes, ".bmp")

    trained = load_dataset(str(bmps("bmp", 0)), default_val_split=0.2)
    test = bmps("more_bmp", 100)
    whole = load_eval_split(str(test), trained_on="bmp", held_out=trained.held_out)
    assert len(whole) == 20 and whole.notes[-1].startswith(f"all 20 images of {test}")


def test_a_copy_whose_names_are_in_the_other_unicode_form_is_the_same_files(
    tmp_path, utf8_file_names
):
    # As macOS spells "café" (e and a combining accent) against a copy made elsewhere: the
    # same classes, so the same files; the record of a run made before says the same.
    from resnetlab.data import sources
    from resnetlab.data.sources import load_eval_split

    classes = {c: [noise(i + 20 * k) for i in range(10)] for k, c in enumerate(["cafe\u0301", "b"])}
    root = write_tree(tmp_path / "photos", classes)
    data = load_dataset(str(root), default_val_split=0.2)
    composed = tmp_path / "photos_copy"
    shutil.copytree(root / "cafe\u0301", composed / "caf\u00e9")
    shutil.copytree(root / "b", composed / "b")
    again = load_eval_split(str(composed), trained_on="photos", held_out=data.held_out)
    assert torch.equal(again.images, data.val.images)
    whole = load_dataset(str(root)).train  # not split: all the files the record is of
    before = {**data.held_out, "files": sources._files_digest(whole, composed=False)}
    again = load_eval_split(str(root), trained_on="photos", held_out=before)
    assert torch.equal(again.images, data.val.images)


def test_the_images_a_run_held_out_are_found_again_only_in_the_same_files(tmp_path, monkeypatch):
    from resnetlab.data.sources import load_eval_split

    root = write_tree(
        tmp_path / "photos", {c: [noise(i + 20 * k) for i in range(10)] for k, c in enumerate("ab")}
    )
    (root / "b" / "bad.png").write_bytes(b"damaged")  # skipped, in the cache's record too
    with pytest.warns(DataWarning, match="skipped"):
        data = load_dataset(str(root), default_val_split=0.2)
    record = data.held_out
    assert set(record) == {"fraction", "seed", "per_class", "files"} and record["per_class"] == [
        10,
        10,
    ]
    again = load_eval_split(str(tmp_path / "photos" / "."), trained_on="photos", held_out=record)
    assert torch.equal(again.images, data.val.images) and again.paths == data.val.paths
    assert any(note.startswith("scored: the 4 images of") for note in again.notes)
    # Another spelling of the folder reads the decoding cache: its files are still known.
    monkeypatch.chdir(tmp_path)
    paths = load_eval_split("photos", held_out=record, trained_on="photos").paths
    assert [os.path.abspath(p) for p in paths] == data.val.paths
    # One photo of a class replaced by another: the counts hold, but not the files.
    (root / "a" / "000.png").unlink()
    noise(99).save(root / "a" / "new.png")
    whole = load_eval_split(str(root), trained_on="photos", held_out=record)
    assert len(whole) == 20
    assert any("as its images changed since" in note for note in whole.notes)
    # A streamed split counts its unreadable file, which drops out only when read: its
    # images are found again among the decoded folder's files, less the one it skips.
    streamed = load_dataset(str(root), default_val_split=0.2, stream=True)
    assert streamed.held_out["per_class"] == [10, 11]
    again = load_eval_split(str(root), trained_on="photos", held_out=streamed.held_out)
    assert again.paths == [p for p in streamed.val.paths if not p.endswith("bad.png")]
    assert any(note.startswith(f"scored: the {len(again)} images of") for note in again.notes)
    # Data with a validation split of its own records no held-out part.
    split = write_tree(
        tmp_path / "split" / "train", {c: [noise(i) for i in range(3)] for c in "ab"}
    )
    write_tree(split.parent / "val", {c: [noise(5)] for c in "ab"})
    assert load_dataset(str(split.parent), default_val_split=0.2).held_out is None
    # A mask keeps the images' files with them.
    masked = data.train.subset(data.train.labels == 1)
    assert masked.paths == [
        p for p, y in zip(data.train.paths, data.train.labels.tolist(), strict=True) if y == 1
    ]


@pytest.mark.parametrize(
    ("cache_dir", "says"),
    [
        ("", "the cache folder: an empty value; give one, or leave it out"),
        (" ", "the cache folder: an empty value; give one, or leave it out"),
        (3, "the cache folder must be a path (str or pathlib.Path), got int"),
    ],
)
def test_a_cache_folder_that_is_no_path_is_refused_in_one_line(
    tmp_path, monkeypatch, cache_dir, says
):
    """An empty one was the current folder, filled with decoded/*.npy; a number pathlib's
    TypeError."""
    data = write_tree(tmp_path / "photos", {c: [noise(i) for i in range(3)] for c in "ab"})
    monkeypatch.chdir(tmp_path)
    for function in (load_dataset, load_eval_split):
        with pytest.raises(ResnetlabError, match=f"^{re.escape(says)}$"):
            function(str(data), cache_dir=cache_dir)
    assert sorted(os.listdir(tmp_path)) == ["photos"]
    assert len(load_dataset(str(data), cache_dir=tmp_path / "cache").train) == 6


def test_an_image_size_beyond_what_models_take_is_refused_in_one_line():
    """Not an allocation of 1,797 images at 100,000 x 100,000 (54 TB): the allocator's error."""
    for function in (load_dataset, load_eval_split):
        refused = r"^image_size must be from 8 to 2,048 pixels, got 100,000$"
        with pytest.raises(DataError, match=refused):
            function("digits", image_size=100_000)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"n": -1}, "the sample's size n must be at least 1, got -1"),
        ({"n": 0}, "the sample's size n must be at least 1, got 0"),
        ({"n": "3"}, "the sample's size n must be a whole number, got '3'"),
        ({"n": 3.0}, "the sample's size n must be a whole number, got 3.0"),
        ({"n": 3, "seed": "1"}, "seed must be a whole number, got '1'"),
        ({"n": 3, "seed": 1.5}, "seed must be a whole number, got 1.5"),
    ],
)
def test_stratified_sample_refuses_a_size_or_seed_that_is_no_count(options, says):
    """n=-1 was taken as a sample of all but the last image of each class, '3' a
    comparison's TypeError, and a seed of 1.5 torch's manual_seed error."""
    images = torch.zeros(20, 4, 4, 3, dtype=torch.uint8)
    split = ImageSet(images, torch.tensor([0, 1] * 10), ["a", "b"])
    with pytest.raises(ResnetlabError, match=f"^{re.escape(says)}$"):
        stratified_sample(split, **options)
    assert len(stratified_sample(split, 10, seed=1)) == 10


def test_stratified_split_refuses_a_seed_that_is_no_count():
    from resnetlab.data import stratified_split

    labels = torch.tensor([0, 1] * 5)
    with pytest.raises(ResnetlabError, match=r"^seed must be a whole number, got '1'$"):
        stratified_split(labels, 0.2, seed="1")
    with pytest.raises(ResnetlabError, match=r"^seed must be a whole number, got 1\.5$"):
        load_dataset("digits", val_split=0.2, seed=1.5)
    train, val = stratified_split(labels, 0.2, seed=1)
    assert len(train) == 8 and len(val) == 2


def test_eval_reads_a_label_table_once_to_find_what_a_streamed_run_held_out(tmp_path, monkeypatch):
    # A streamed run held out the file it could not read too: eval scans the folder again
    # to find its images among the decoded ones, by the table it loaded them by.
    root = tmp_path / "photos"
    root.mkdir()
    rows = [(f"{i:03d}", "ab"[i % 2]) for i in range(20)]
    for i, (name, _) in enumerate(rows):
        noise(i).save(root / f"{name}.png")
    (root / "bad.png").write_bytes(b"damaged")
    lines = [f"{name}.png {label}" for name, label in [*rows, ("bad", "b")]]
    (root / "labels.txt").write_text("\n".join(lines) + "\n")
    streamed = load_dataset(str(root), default_val_split=0.2, stream=True)
    assert streamed.held_out["per_class"] == [10, 11]
    reads = []
    read_bytes = Path.read_bytes

    def counted(path):
        if path.name == "labels.txt":
            reads.append(path.name)
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", counted)
    with pytest.warns(DataWarning, match="skipped"):
        again = load_eval_split(str(root), trained_on="photos", held_out=streamed.held_out)
    assert again.paths == [p for p in streamed.val.paths if not p.endswith("bad.png")]
    assert reads == ["labels.txt"]


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"stream": "false"}, "stream is True, False or None (as the size decides), got 'false'"),
        ({"stream": 0}, "stream is True, False or None (as the size decides), got 0"),
        ({"download": "no"}, "download is True or False, got 'no'"),
    ],
)
def test_stream_and_download_given_as_text_are_refused(tmp_path, options, says):
    """stream='false' streamed the folder, as any text is true."""
    data = write_tree(tmp_path / "photos", {c: [noise(i) for i in range(3)] for c in "ab"})
    for function in (load_dataset, load_eval_split):
        if "stream" in options and function is load_eval_split:
            continue
        with pytest.raises(DataError, match=f"^{re.escape(says)}$"):
            function(str(data), cache_dir=tmp_path / "cache", **options)
    assert isinstance(load_dataset(str(data), stream=False, cache_dir=tmp_path).train, ImageSet)


@pytest.mark.parametrize("trained_on", [3, ["digits"]])
def test_eval_data_trained_on_what_is_no_data_set_is_one_line(trained_on):
    """It was TypeError 'expected str, bytes or os.PathLike object, not int'."""
    with pytest.raises(DataError) as error:
        load_eval_split("digits", trained_on=trained_on)
    assert str(error.value) == (
        "trained_on must be the data the model was trained on (a data set name or a path) "
        f"or None, got {trained_on!r}"
    )


def test_eval_data_trained_on_a_path_names_it():
    (note,) = load_eval_split("digits", trained_on=Path("photos")).notes
    assert note.startswith(
        "all 1,797 images of digits are scored (the model was trained on photos;"
    )


def test_a_stratified_split_takes_a_list_or_array_as_a_tensor():
    labels = [0, 1, 0, 1, 0, 1, 2, 2]
    expected = stratified_split(torch.tensor(labels), 0.5, seed=1)
    for given in (labels, tuple(labels), np.array(labels)):
        got = stratified_split(given, 0.5, seed=1)
        assert all(torch.equal(g, e) for g, e in zip(got, expected, strict=True))


@pytest.mark.parametrize(
    ("labels", "says"),
    [
        ([], "stratified_split: no labels given; give the class index of each image"),
        (torch.tensor([], dtype=torch.long), "stratified_split: no labels given;"),
        (
            ["cat", "dog"],
            "stratified_split: labels must be class indices (a tensor, array or list of whole "
            "numbers, one per image), got ['cat', 'dog']",
        ),
        (
            [0.5, 1.0],
            "stratified_split: labels must be class indices, int64 (N,), got torch.float32 (2,)",
        ),
    ],
)
def test_a_stratified_split_of_no_labels_or_no_class_indices_is_one_line(labels, says):
    """torch's 'expected a non-empty list of Tensors' for none; '_unique2(): argument
    'input' must be Tensor, not list' for a list."""
    with pytest.raises(DataError) as error:
        stratified_split(labels, 0.2)
    assert str(error.value).startswith(says)


def test_download_asked_for_data_that_cannot_be_downloaded_is_warned_of(tmp_path):
    """Only cifar10 is fetched: --download with other data reads it as it is, and says so;
    with cifar10 among the data (as validation data, say) nothing is said."""
    from resnetlab.data.report import describe
    from resnetlab.data.sources import warn_of_download_unused
    from resnetlab.errors import SettingWarning

    says = r"^--download fetches cifar10 only; digits is read as it is \(drop the flag\)$"
    for load in (
        lambda: load_dataset("digits", download=True),
        lambda: load_eval_split("digits", download=True),
        lambda: describe("digits", download=True),
    ):
        with command_line(), pytest.warns(SettingWarning, match=says):
            load()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset("digits", download=False)
        warn_of_download_unused(True, "digits", "cifar10")
        warn_of_download_unused(False, "digits")


def test_data_without_a_training_split_says_what_to_give(tmp_path):
    # It said "no train/ folder", with no fix, of an HDF5 file too.
    for split in ("val", "test"):
        write_tree(tmp_path / "d" / split, {"a": [noise(0)], "b": [noise(1)]})
    with pytest.raises(DataError) as caught:
        load_dataset(str(tmp_path / "d"))
    assert str(caught.value) == (
        f"{tmp_path / 'd'}: no training split: has test, val but no train/ folder; add one "
        "beside them (a folder per class), or give the folder of one of them as data to train "
        "on it"
    )
    import h5py

    with h5py.File(tmp_path / "vt.h5", "w") as f:
        for split in ("val", "test"):
            f[f"{split}_set_x"] = np.zeros((2, 8, 8, 3), np.uint8)
            f[f"{split}_set_y"] = np.arange(2)
    with pytest.raises(DataError) as caught:
        load_dataset(str(tmp_path / "vt.h5"))
    assert str(caught.value) == (
        f"{tmp_path / 'vt.h5'}: no training split: has val, test but no train split "
        "(train_set_x, train_set_y); give the file that has it"
    )
