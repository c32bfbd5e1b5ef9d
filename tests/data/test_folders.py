import io
import os
import re
import shutil
import struct
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnetlab.data import (
    ImageSet,
    StreamingSet,
    load_dataset,
    load_eval_split,
    read_image,
    stratified_split,
)
from resnetlab.data import decode as decode_module
from resnetlab.data import folders as folders_module
from resnetlab.data.decode import READ_ERRORS, read_error_reason, read_header_size
from resnetlab.data.sources import open_source
from resnetlab.errors import DataError, DataWarning, ResnetlabError

from .conftest import noise, solid, write_tree


def _mixed_tree(root):
    a, b = root / "apple", root / "banana"
    a.mkdir(parents=True)
    b.mkdir()
    solid((200, 10, 10)).save(a / "1.jpg", quality=95)
    Image.new("L", (8, 8), 100).save(a / "2.png")  # grayscale
    solid((1, 2, 3)).save(a / "3.bmp")
    rgba = Image.new("RGBA", (8, 8), (50, 60, 70, 255))
    rgba.paste((255, 255, 255, 0), (0, 0, 4, 8))  # left half fully transparent
    rgba.save(b / "1.png")
    deep = np.full((8, 8), 32896, dtype=np.uint16)  # 16-bit: 32896 / 257 = 128
    Image.fromarray(deep).save(b / "2.png")
    solid((0, 128, 255)).convert("P", palette=Image.ADAPTIVE).save(b / "3.gif")
    (root / "README.md").write_text("not an image")
    (a / ".DS_Store").write_bytes(b"\0")
    return root


def test_mixed_formats_and_modes_load_as_rgb(tmp_path):
    root = _mixed_tree(tmp_path / "fruit")
    data = load_dataset(str(root), stream=False)
    s = data.train
    assert isinstance(s, ImageSet) and data.val is None
    assert s.images.shape == (6, 8, 8, 3) and s.images.dtype == torch.uint8
    assert s.class_names == ["apple", "banana"] and s.labels.tolist() == [0, 0, 0, 1, 1, 1]
    px = s.images[:, 4, 6].tolist()  # one pixel of each image, in file order
    assert np.allclose(px[0], [200, 10, 10], atol=4)  # JPEG is lossy
    assert px[1] == [100, 100, 100] and px[2] == [1, 2, 3]
    assert px[3] == [50, 60, 70] and s.images[3, 4, 1].tolist() == [0, 0, 0]  # alpha over black
    assert px[4] == [128, 128, 128]  # 16-bit scaled, not clipped to white
    assert px[5] == [0, 128, 255]


def test_read_image_resizes_to_the_requested_size(tmp_path):
    noise(0, size=(40, 30)).save(tmp_path / "x.png")
    assert read_image(tmp_path / "x.png").shape == (30, 40, 3)
    assert read_image(tmp_path / "x.png", 16).shape == (16, 16, 3)
    assert read_image(tmp_path / "x.png", (12, 20)).shape == (12, 20, 3)


@pytest.mark.parametrize(
    ("path", "options", "says"),
    [
        (
            None,
            {},
            "read_image takes an image file (a path or an open binary file) or a PIL "
            "image, not NoneType",
        ),
        (
            b"\x89PNG",
            {},
            "read_image takes an image file (a path or an open binary file) or a "
            "PIL image, not bytes; give io.BytesIO(data) for an image's bytes",
        ),
        ("", {}, "the image file: an empty value; give one"),
        ("x.png", {"size": 0}, "size's height must be at least 1, got 0"),
        ("x.png", {"size": "16"}, "size's height must be a whole number, got '16'"),
        ("x.png", {"size": (16, 8.5)}, "size's width must be a whole number, got 8.5"),
        ("x.png", {"size": (16, 8, 3)}, "size must be a side or (height, width), got (16, 8, 3)"),
        (
            "x.png",
            {"size": 16, "resize": "stretch"},
            "unknown resize 'stretch'; choose squash, crop",
        ),
    ],
)
def test_read_image_names_a_wrong_argument_in_one_line(tmp_path, monkeypatch, path, options, says):
    """Not PIL's AttributeError for None, 'embedded null byte' for bytes, 'height and width
    must be > 0' or a TypeError for the size, nor a squash for a resize it does not know."""
    noise(0, size=(40, 30)).save(tmp_path / "x.png")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ResnetlabError, match=f"^{re.escape(says)}$") as caught:
        read_image(path, **options)
    assert not isinstance(caught.value, READ_ERRORS)  # not a file to skip as unreadable
    assert read_image("x.png", [12, 20], resize="crop").shape == (12, 20, 3)


def test_a_crop_scales_the_centre_alone(tmp_path, monkeypatch):
    """``resize="crop"`` gives what scaling the whole image and cutting its centre gives (to
    a level of rounding) without making the scaled whole: for a long strip that would be
    gigabytes."""
    pixels = np.random.default_rng(0).integers(0, 256, (48, 300, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "strip.png")
    whole = Image.fromarray(pixels).resize((200, 32), Image.BILINEAR)  # shorter side 32
    expected = np.asarray(whole.crop((84, 0, 116, 32)), dtype=int)
    made = []
    resize = Image.Image.resize

    def recording(im, size, *args, **kwargs):
        made.append(size)
        return resize(im, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", recording)
    got = read_image(tmp_path / "strip.png", 32, "crop")
    assert np.abs(got.astype(int) - expected).max() <= 1
    assert made == [(32, 32)]
    Image.new("RGB", (100_000, 1), "red").save(tmp_path / "line.png")  # 22 GB scaled whole
    assert (read_image(tmp_path / "line.png", 224, "crop") == (255, 0, 0)).all()


def test_a_jpeg_with_more_pictures_decodes_as_a_jpeg(tmp_path):
    # Pillow opens a JPEG that carries more pictures after the first (MPO: many phones'
    # photos) as format "MPO"; its first picture is decoded as any JPEG is, at the reduced
    # scale libjpeg offers for a small target, so that the same photo gives the same pixels.
    y, x = np.mgrid[0:240, 0:320]
    photo = Image.fromarray(np.stack([x % 256, y, (x + y) % 256], -1).astype(np.uint8))
    photo.save(tmp_path / "plain.jpg")
    photo.save(tmp_path / "multi.jpg", format="MPO", save_all=True, append_images=[photo])
    assert Image.open(tmp_path / "multi.jpg").format == "MPO"
    for resize in ("squash", "crop"):
        plain = read_image(tmp_path / "plain.jpg", 32, resize)
        assert np.array_equal(read_image(tmp_path / "multi.jpg", 32, resize), plain)


def _truncated_jpeg(path):
    noise(1, size=(64, 64)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def test_truncated_jpeg_is_skipped_named_and_counted(tmp_path, monkeypatch):
    root = write_tree(
        tmp_path / "t", {"a": [noise(i) for i in range(10)], "b": [noise(i) for i in range(10, 20)]}
    )
    _truncated_jpeg(root / "b" / "bad.jpg")
    with pytest.warns(DataWarning) as record:
        data = load_dataset(str(root))
    messages = [str(w.message) for w in record]
    assert any("bad.jpg: skipped, cannot read it" in m and "truncated" in m for m in messages)
    assert any("skipped 1 of 21 images" in m for m in messages)
    assert len(data.train) == 20 and data.train.class_counts() == [10, 10]
    assert "skipped 1 of 21 images that could not be read" in data.train.notes
    with warnings.catch_warnings():  # loaded again by the same process: named once
        warnings.simplefilter("error")
        load_dataset(str(root))
    monkeypatch.setattr(folders_module, "_NAMED_UNREADABLE", set())  # as a new process
    with pytest.warns(DataWarning) as record:  # from the decoding cache: still named
        load_dataset(str(root))
    messages = [str(w.message) for w in record]
    assert any("bad.jpg: skipped, cannot read it" in m and "truncated" in m for m in messages)
    assert any("skipped 1 of 21 images" in m and "cached since" in m for m in messages)


def test_unreadable_files_from_the_cache_are_named_as_the_folder_is_given_now(
    tmp_path, monkeypatch
):
    # Decoded as photos from tmp_path, loaded again as ../photos from a folder beside it.
    root = write_tree(
        tmp_path / "photos", {c: [noise(i + 9 * k) for i in range(4)] for k, c in enumerate("ab")}
    )
    (root / "a" / "bad.png").write_bytes(b"damaged")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.warns(DataWarning):
        load_dataset("photos", default_val_split=0.25, cache_dir=tmp_path / "cache")
    monkeypatch.chdir(tmp_path / "elsewhere")
    monkeypatch.setattr(folders_module, "_NAMED_UNREADABLE", set())  # as a new process
    with pytest.warns(DataWarning) as record:
        data = load_dataset("../photos", default_val_split=0.25, cache_dir=tmp_path / "cache")
    assert str(record[0].message).startswith(
        f"{os.path.join('..', 'photos', 'a', 'bad.png')}: skipped, cannot read it"
    )
    assert data.train.skipped[0][0] == os.path.join("..", "photos", "a", "bad.png")


def test_unreadable_files_are_listed_with_the_split_held_out_from(tmp_path):
    root = write_tree(
        tmp_path / "t", {"a": [noise(i) for i in range(10)], "b": [noise(i) for i in range(10, 20)]}
    )
    _truncated_jpeg(root / "b" / "bad.jpg")
    with pytest.warns(DataWarning):
        data = load_dataset(str(root), val_split=0.2)
    assert [path for path, _ in data.train.skipped] == [str(root / "b" / "bad.jpg")]
    assert data.val.skipped == [] and len(data.train) + len(data.val) == 20


def test_an_empty_file_is_skipped_as_empty(tmp_path):
    root = write_tree(
        tmp_path / "t", {"a": [noise(i) for i in range(10)], "b": [noise(i) for i in range(10, 20)]}
    )
    (root / "a" / "empty.jpg").write_bytes(b"")
    with pytest.warns(DataWarning) as record:
        data = load_dataset(str(root))
    messages = [str(w.message) for w in record]
    assert any(
        "empty.jpg: skipped, cannot read it" in m and "empty (0 bytes)" in m for m in messages
    )
    assert len(data.train) == 20


def test_a_link_to_a_missing_photo_is_skipped_as_unreadable(tmp_path):
    # A photo moved away from under its link: an image that cannot be read, named as one,
    # not "a file that is not an image".
    root = write_tree(
        tmp_path / "t", {"a": [noise(i) for i in range(10)], "b": [noise(i) for i in range(10, 20)]}
    )
    (root / "a" / "moved.jpg").symlink_to(tmp_path / "elsewhere" / "moved.jpg")
    with pytest.warns(DataWarning) as record:
        data = load_dataset(str(root))
    messages = [str(w.message) for w in record]
    assert any(
        "moved.jpg: skipped, cannot read it" in m
        and "elsewhere/moved.jpg, which does not exist" in m
        for m in messages
    )
    assert [path for path, _ in data.train.skipped] == [str(root / "a" / "moved.jpg")]
    assert not [n for n in data.train.notes if "not an image" in n]
    assert len(data.train) == 20


def test_a_web_page_saved_as_jpg_is_named_as_one(tmp_path):
    # "Save link as" on a picture, or a scraper that kept the error page: HTML named .jpg.
    root = write_tree(
        tmp_path / "t", {"a": [noise(i) for i in range(10)], "b": [noise(i) for i in range(10, 20)]}
    )
    page = b"\xef\xbb\xbf\n  <!DOCTYPE html>\n<html><head><title>Photo</title></head></html>"
    (root / "a" / "cat.jpg").write_bytes(page)
    with pytest.warns(DataWarning) as record:
        data = load_dataset(str(root))
    assert any(
        "cat.jpg: skipped, cannot read it (it is a web page (HTML), not an image: saved from a "
        "link or a page rather than the picture itself; save the image again)" in str(w.message)
        for w in record
    )
    assert len(data.train) == 20
    with pytest.raises(OSError, match=r"it is a web page \(HTML\)"):
        read_image(io.BytesIO(b"<html><body>403 Forbidden</body></html>"))


def test_a_heic_photo_named_jpg_is_named_as_heic(tmp_path):
    # An iPhone's HEIC photo exported or renamed as .jpg: Pillow cannot identify it, and
    # the warning says what it is and what to do, not only that it is unreadable.
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200)
    root = write_tree(
        tmp_path / "t", {"a": [noise(i) for i in range(10)], "b": [noise(i) for i in range(10, 20)]}
    )
    (root / "a" / "IMG_4032.JPG").write_bytes(heic)
    with pytest.warns(DataWarning) as record:
        data = load_dataset(str(root))
    assert any(
        "IMG_4032.JPG: skipped" in str(w.message)
        and "holds a HEIC photo" in str(w.message)
        and "convert it to JPEG or PNG first" in str(w.message)
        for w in record
    )
    assert len(data.train) == 20
    with pytest.raises(OSError, match="holds a HEIC photo"):
        read_image(io.BytesIO(heic))
    (root / "a" / "noise.jpg").write_bytes(bytes(range(200)))  # no image at all: as before
    # (Pillow 10.1 takes these bytes for a truncated image of some format)
    with pytest.raises(OSError, match=r"cannot identify image file|image file is truncated"):
        read_image(root / "a" / "noise.jpg")


class _Pipe(io.RawIOBase):
    """A stream that can only be read forward, as a pipe or a socket."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._data.readinto(buffer)

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        raise io.UnsupportedOperation("tell")


def test_an_image_read_from_a_stream_that_cannot_seek(tmp_path):
    # Pillow reads such streams by copying them; looking for a HEIC photo in an image it
    # cannot identify must not ask them where they are first.
    noise(0, size=(12, 10)).save(tmp_path / "x.png")
    pixels = read_image(_Pipe((tmp_path / "x.png").read_bytes()))
    assert np.array_equal(pixels, read_image(tmp_path / "x.png"))


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tiff"])
def test_a_turned_images_header_size_is_the_size_it_is_read_at(tmp_path, suffix):
    # Stored 16 wide and 8 high, shown a quarter turn round (EXIF orientation 6): 8 wide.
    # Pillow turns a TIFF itself, its size too; the header's size is not turned again.
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / f"turned{suffix}"
    noise(1, size=(16, 8)).save(path, exif=exif)
    assert read_image(path).shape[:2] == (16, 8)
    assert read_header_size(path) == (16, 8)


def test_damaged_exif_data_is_one_warning_that_names_the_file(tmp_path):
    # Pillow skips EXIF data that points past its end with a warning naming no file; a
    # folder of such photos would print dozens of them. One warning per file names it, and
    # the image is read.
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Camera"  # stored outside its IFD entry: its offset is what breaks
    data = exif.tobytes()
    entry = struct.pack(">HHL", 0x010F, 2, 7)
    assert data.startswith(b"Exif\x00\x00MM") and entry in data  # big-endian
    at = data.index(entry) + len(entry)
    data = data[:at] + struct.pack(">L", 60_000) + data[at + 4 :]
    root = write_tree(
        tmp_path / "t", {"a": [noise(i) for i in range(3)], "b": [noise(i) for i in range(9, 12)]}
    )
    noise(20, size=(16, 8)).save(root / "a" / "camera.jpg", exif=data, quality=95)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = read_image(root / "a" / "camera.jpg")
        data = load_dataset(str(root))
    assert sorted(image.shape) == [3, 8, 16]  # read, turned as far as Pillow read the tags
    messages = [(w.category, str(w.message)) for w in caught]
    assert len(messages) == 2 and all(category is DataWarning for category, _ in messages)
    assert all(
        m.startswith(f"{root / 'a' / 'camera.jpg'}: part of its metadata is damaged")
        and "(Pillow: " in m
        and "the image is kept" in m
        for _, m in messages
    )
    assert len(data.train) == 7


def test_other_warnings_while_decoding_are_sent_on_once_per_place(tmp_path, monkeypatch):
    from resnetlab.data import decode

    def to_rgb(im):
        warnings.warn("a library's note", RuntimeWarning, stacklevel=1)
        return im.convert("RGB")

    monkeypatch.setattr(decode, "_to_rgb", to_rgb)
    noise(0).save(tmp_path / "a.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # Python's own: once per place
        for _ in range(3):
            read_image(tmp_path / "a.png")
    assert [(w.category, str(w.message)) for w in caught] == [(RuntimeWarning, "a library's note")]


def test_too_many_unreadable_images_is_fatal(tmp_path):
    root = write_tree(tmp_path / "t", {"a": [noise(0), noise(1)], "b": [noise(2), noise(3)]})
    _truncated_jpeg(root / "b" / "bad.jpg")
    # One damaged file is skipped however few the others (here 20% of the folder).
    with pytest.warns(DataWarning, match=r"skipped 1 of 5 images that could not be read"):
        assert len(load_dataset(str(root)).train) == 4
    _truncated_jpeg(root / "a" / "bad.jpg")
    with pytest.warns(DataWarning), pytest.raises(DataError, match=r"2 of 6 images cannot be read"):
        load_dataset(str(root))
    with (
        pytest.warns(DataWarning),
        pytest.raises(
            DataError, match=r"remove or replace the files the warnings name, or point data at"
        ),
    ):
        load_dataset(str(root))
    assert decode_module.MAX_UNREADABLE_FRACTION == 0.05


def test_mixed_sizes_take_the_most_common_with_a_note(tmp_path):
    root = write_tree(
        tmp_path / "t", {"a": [noise(0), noise(1)], "b": [noise(2), noise(3, (12, 10))]}
    )
    data = load_dataset(str(root))
    assert data.train.image_size == (8, 8)
    assert any(
        "mixed image sizes: 8x8 (3), 12x10 (1); all resized to the most common, 8x8 "
        "(centre-cropped where the shape differs: --resize)" in n
        for n in data.train.notes
    )
    squashed = load_dataset(str(root), resize="squash").train.notes
    assert any("8x8 (squashed where the shape differs: --resize)" in n for n in squashed)


def test_split_folders_train_val_test(tmp_path):
    for split, n in (("train", 3), ("val", 2), ("test", 1)):
        write_tree(
            tmp_path / "d" / split,
            {"cat": [noise(i) for i in range(n)], "dog": [noise(9) for _ in range(n)]},
        )
    data = load_dataset(str(tmp_path / "d"))
    assert len(data.train) == 6 and len(data.val) == 4  # val/ preferred over test/
    assert data.class_names == ["cat", "dog"]
    assert len(load_eval_split(str(tmp_path / "d"))) == 2  # test/ for evaluation


def test_a_split_folder_that_holds_no_classes_is_named_with_why_it_was_ignored(tmp_path):
    # An empty val/ was listed as a folder "other than the splits", beside the note that
    # the run validates on images held out of train/ and that a val/ folder would do better.
    root = write_tree(
        tmp_path / "d",
        {f"train/{c}": [noise(i + 9 * k) for i in range(5)] for k, c in enumerate("ab")},
    )
    (root / "val").mkdir()
    (root / "test").mkdir()
    noise(40).save(root / "test" / "1.png")
    (root / "extra").mkdir()
    data = load_dataset(str(root), val_split=0.2)
    assert (len(data.train), len(data.val)) == (8, 2)  # held out of train/
    assert (
        f"folders in {root} other than the splits ignored: extra, test (images in no class "
        "folder), val (no images in it)"
    ) in data.train.notes


def test_split_folders_named_by_their_last_word_and_wrapped_in_their_own_name(tmp_path):
    # Kaggle's Intel Image Classification: seg_train/seg_train/<class>, seg_test/seg_test/
    # <class> and seg_pred/seg_pred/ of unlabelled images. Not three classes, seg_pred,
    # seg_test and seg_train: a training and a test split, looked through to their classes.
    root = tmp_path / "intel"
    for split, n, seed in (("train", 3, 0), ("test", 1, 50)):
        write_tree(
            root / f"seg_{split}" / f"seg_{split}",
            {
                "forest": [noise(seed + i) for i in range(n)],
                "sea": [noise(seed + 10 + i) for i in range(n)],
            },
        )
    (root / "seg_pred" / "seg_pred").mkdir(parents=True)
    noise(20).save(root / "seg_pred" / "seg_pred" / "1.jpg")
    data = load_dataset(str(root))
    assert data.class_names == ["forest", "sea"] and (len(data.train), len(data.val)) == (6, 2)
    assert data.train.source == str(root / "seg_train" / "seg_train")
    assert f"folders in {root} other than the splits ignored: seg_pred" in data.train.notes
    assert load_eval_split(str(root)).source == str(root / "seg_test" / "seg_test")
    # One folder so named is not enough: a class may be called "bullet_train".
    trains = write_tree(tmp_path / "trains", {"bullet_train": [noise(0)], "tram": [noise(1)]})
    (trains / "bullet_train" / "old").mkdir()
    noise(2).save(trains / "bullet_train" / "old" / "1.png")
    assert load_dataset(str(trains)).class_names == ["bullet_train", "tram"]


def test_images_beside_the_split_folders_are_said_to_be_ignored(tmp_path):
    # photos/train, photos/test and two photos beside them, in no split: left out, and said
    # so, as images beside class folders are.
    root = tmp_path / "photos"
    for split, seed in (("train", 0), ("test", 10)):
        write_tree(root / split, {"cat": [noise(seed)], "dog": [noise(seed + 1)]})
    for i in range(2):
        noise(20 + i).save(root / f"stray{i}.jpg")
    data = load_dataset(str(root))
    assert (len(data.train), len(data.val)) == (2, 2)
    assert (
        f"2 images directly in {root} ignored (stray0.jpg, stray1.jpg): not in a split's "
        "class folder" in data.train.notes
    )


def test_an_image_beside_the_class_folders_is_named_as_left_out(tmp_path):
    root = write_tree(tmp_path / "pets", {"cat": [noise(0), noise(1)], "dog": [noise(2), noise(3)]})
    noise(4).save(root / "stray.jpg")
    data = load_dataset(str(root), val_split=0.5)
    assert len(data.train) + len(data.val) == 4
    assert f"1 image directly in {root} ignored (stray.jpg): not in a class folder" in (
        data.train.notes
    )


def test_class_folder_named_train_is_a_class(tmp_path):
    root = write_tree(tmp_path / "vehicles", {"train": [noise(0)], "tram": [noise(1)]})
    data = load_dataset(str(root))
    assert data.class_names == ["train", "tram"] and data.val is None


def test_validation_classes_are_matched_to_the_training_classes_by_name(tmp_path):
    write_tree(tmp_path / "d" / "train", {"a": [noise(0)], "b": [noise(1)], "c": [noise(2)]})
    write_tree(tmp_path / "d" / "val", {"B": [noise(3)], "c": [noise(4)] * 2})
    with pytest.warns(DataWarning, match=r"val has no images of 1 training class \(a\): trained"):
        data = load_dataset(str(tmp_path / "d"))
    assert data.val.class_names == ["a", "b", "c"] and data.val.labels.tolist() == [1, 2, 2]
    assert "classes matched to the training classes by name (B as b: case aside)" in (
        data.val.notes
    )


def test_validation_classes_match_training_classes_that_differ_only_in_case_as_eval_does(
    tmp_path,
):
    # Training's Cat and cat are two classes; a val/ with cat and dog matches them by their
    # names (Cat never validated, warned), as eval matches a data set's to a model's; a
    # val/ with CAT as well is refused: CAT would be either.
    classes = {c: [noise(i)] for i, c in enumerate(["Cat", "cat", "dog"])}
    write_tree(tmp_path / "d" / "train", classes)
    write_tree(tmp_path / "d" / "val", {"cat": [noise(3)], "dog": [noise(4)]})
    with pytest.warns(DataWarning, match=r"val has no images of 1 training class \(Cat\)"):
        data = load_dataset(str(tmp_path / "d"))
    assert data.val.class_names == ["Cat", "cat", "dog"] and data.val.labels.tolist() == [1, 2]
    write_tree(tmp_path / "d" / "val", {"CAT": [noise(5)]})
    with pytest.raises(
        DataError, match=r"only in training: Cat; only in validation: CAT; did you mean Cat\?\)"
    ):
        load_dataset(str(tmp_path / "d"))


def test_a_validation_class_that_training_lacks_is_refused(tmp_path):
    write_tree(tmp_path / "d" / "train", {"a": [noise(0)], "b": [noise(1)]})
    write_tree(tmp_path / "d" / "val", {"a": [noise(0)], "b": [noise(1)], "z": [noise(2)]})
    with pytest.raises(
        DataError,
        match=r"class lists differ: .*train has 2 classes, .*val has 3 "
        r"\(only in validation: z\); validation needs classes the training data has: move "
        r"the others out of .*val, or validate on other images \(val_data, or data="
        r"'.*train', val_split=0\.2\)$",
    ):
        load_dataset(str(tmp_path / "d"))


def test_a_class_folder_given_as_validation_data_is_said_to_be_one(tmp_path):
    # --val-data photos/cat: one class of files named IMG_..., "only in validation: IMG",
    # with the advice to move classes out of it; a class folder of the training data or of
    # another folder is now said to be one.
    photos = write_tree(tmp_path / "photos", {"cat": [noise(0), noise(1)], "dog": [noise(2)]})
    other = write_tree(tmp_path / "other", {"cat": [noise(3)], "dog": [noise(4)]})
    for folder in (photos, other):
        for i, image in enumerate((folder / "cat").iterdir()):
            image.rename(folder / "cat" / f"IMG_{i:04d}.png")
    with pytest.raises(DataError) as inside:
        load_dataset(str(photos), val_data=str(photos / "cat"))
    assert str(inside.value) == (
        f"val_data='{photos / 'cat'}' is inside the training data {photos}: its images are "
        "trained on, and validation needs images the model does not train on; give a folder "
        "apart, or leave val_data out to hold some of the training images out (val_split)"
    )
    # So is one of plain names, which failed before as a folder of no class folders whose
    # fix, the folder that holds it, was the training data itself.
    (photos / "dog" / "more").mkdir()
    noise(5).save(photos / "dog" / "more" / "0.png")
    with pytest.raises(DataError, match=r"^val_data='.*more' is inside the training data "):
        load_dataset(str(photos), val_data=str(photos / "dog" / "more"))
    with pytest.raises(DataError) as beside:
        load_dataset(str(photos), val_data=str(other / "cat"))
    assert (
        f"the training data has: cat/ looks like one of the class folders in {other} (cat, "
        f"dog); if it is, give the folder that holds them: {other}/; else move the others out"
    ) in str(beside.value)


def test_val_data_from_another_folder(tmp_path):
    train = write_tree(tmp_path / "tr", {"a": [noise(0)] * 2, "b": [noise(1)] * 2})
    val = write_tree(tmp_path / "va", {"a": [noise(0, (16, 16))], "b": [noise(1, (16, 16))]})
    data = load_dataset(str(train), str(val))
    assert len(data.val) == 2 and data.val.image_size == (8, 8)  # resized to the training size
    assert any("resized from 16x16" in n for n in data.val.notes)


def test_empty_class_folder(tmp_path):
    root = write_tree(tmp_path / "d", {"a": [noise(0)], "b": [noise(1)]})
    (root / "c").mkdir()
    (root / "c" / ".DS_Store").write_bytes(b"\0")  # hidden: still empty
    with pytest.raises(DataError, match=r"d/c: empty class folder, no images in it"):
        load_dataset(str(root))
    # Not empty, but no images either: the same fix.
    (root / "c" / "notes.txt").write_text("no images")
    with pytest.raises(DataError) as caught:
        load_dataset(str(root))
    assert str(caught.value) == (
        f"{root / 'c'}: no images in this class folder, only 1 file that is not an image "
        "(notes.txt); add images or remove the folder"
    )
    # A class of an iPhone's HEIC photos is named as such, with the fix.
    (root / "c" / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    with pytest.raises(DataError) as caught:
        load_dataset(str(root))
    assert str(caught.value) == (
        f"{root / 'c'}: no images in this class folder, only 2 files that are not images "
        "(IMG_0001.HEIC, notes.txt); HEIC photos need converting to JPEG or PNG first"
    )

    # A folder of nothing but such photos, given as the data, says so too.
    (tmp_path / "phone").mkdir()
    (tmp_path / "phone" / "IMG_0002.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (tmp_path / "phone" / ".DS_Store").write_bytes(b"\0")  # hidden: not named
    with pytest.raises(DataError) as caught:
        load_dataset(str(tmp_path / "phone"))
    assert str(caught.value) == (
        f"{tmp_path / 'phone'}: no class folders and no images in it, only 1 file that is "
        "not an image (IMG_0002.HEIC); HEIC photos need converting to JPEG or PNG first"
    )


def test_one_class_only(tmp_path):
    root = write_tree(tmp_path / "d", {"only": [noise(0), noise(1)]})
    with pytest.raises(DataError, match=r"d: every training image is of one class \(only\)"):
        load_dataset(str(root))
    # To evaluate on, one class folder is a set of one class (scored against a model's own).
    assert load_eval_split(str(root)).class_names == ["only"]
    # Images beside the one class folder are named: the user may have meant them as a class.
    noise(2).save(root / "loose.png")
    noise(3).save(root / "loose2.png")
    with pytest.raises(
        DataError, match=r"\(only\), and 2 images directly in the folder, which belong to no class"
    ):
        load_dataset(str(root))


def test_one_folder_of_files_named_by_class_says_to_point_at_it(tmp_path):
    # photos/signs/3_IMG_1.jpg, as an archive of the course's folder unpacks: the one
    # folder is a class here; the error says that the names carry classes, and where to point.
    inner = tmp_path / "photos" / "signs"
    inner.mkdir(parents=True)
    for i in range(6):
        noise(i).save(inner / f"{i % 3}_IMG_{i}.png")
    with pytest.raises(DataError) as caught:
        load_dataset(str(tmp_path / "photos"))
    assert str(caught.value) == (
        f"{tmp_path / 'photos'}: every training image is of one class (signs); a classifier "
        "needs images of two classes at least: the file names in signs/ carry classes "
        f"(0, 1, 2), but as the only folder here it is one class; --data {inner} reads the "
        "classes from the names"
    )
    assert load_dataset(str(inner), val_split=0.5).class_names == ["0", "1", "2"]
    # One class folder of photos named otherwise is a set of one class, without the note.
    (inner / "0_IMG_0.png").rename(inner / "IMG0.png")
    assert not any(
        note.startswith("the file names in") for note in load_eval_split(str(inner.parent)).notes
    )


def test_images_without_class_folders(tmp_path):
    (tmp_path / "flat").mkdir()
    for i in range(3):
        noise(i).save(tmp_path / "flat" / f"photo{i}.png")
    with pytest.raises(DataError, match=r"flat: 3 image files but no class folders; .* or name e"):
        load_dataset(str(tmp_path / "flat"))


def test_a_class_folder_given_as_the_data_points_at_its_parent(tmp_path):
    # photos/cat given for photos/: its images have no class folders, but its parent holds
    # it beside other folders of images, the classes.
    photos = write_tree(tmp_path / "photos", {n: [noise(i) for i in range(2)] for n in "abc"})
    with pytest.raises(DataError) as caught:
        load_dataset(str(photos / "b"))
    assert str(caught.value) == (
        f"{photos / 'b'}: 2 image files but no class folders; if it is one of the class "
        f"folders in {photos} (a, b, c), give the folder that holds them: {photos}{os.sep}; "
        "else put each class's images in a sub-folder named after the class, or name every "
        "file <class>_<anything> (3_IMG_5864.jpg)"
    )


def test_folders_resnetlab_wrote_beside_a_folder_given_are_named_as_no_classes(tmp_path):
    # `resnetlab explain` run in photos/ wrote cams/ (overlays beside maps.npz), a run
    # folder was copied there: neither is a class the folder given could be one of.
    photos = write_tree(tmp_path / "photos", {n: [noise(i) for i in range(2)] for n in "ab"})
    write_tree(photos, {"cams": [noise(5)], "run": [noise(6)]})
    np.savez(photos / "cams" / "maps.npz", maps=np.zeros((1, 4, 4), np.float32))
    for name in ("config.json", "best.safetensors"):
        (photos / "run" / name).write_text("{}")
    with pytest.raises(DataError, match=re.escape(f"folders in {photos} (a, b), give")):
        load_dataset(str(photos / "b"))
    shutil.rmtree(photos / "a")  # new/ beside explain's output alone: no class folder hint
    with pytest.raises(DataError) as caught:
        load_dataset(str(photos / "b"))
    assert "class folders in" not in str(caught.value)


def test_the_class_folder_one_is_in_given_as_dot_points_at_its_parent(tmp_path, monkeypatch):
    # cd photos/b, then --data .: Path(".").parent is ".", which holds no folders beside it.
    photos = write_tree(tmp_path / "photos", {n: [noise(i) for i in range(2)] for n in "abc"})
    monkeypatch.chdir(photos / "b")
    with pytest.raises(DataError) as caught:
        load_dataset(".")
    assert str(caught.value).startswith(
        ".: 2 image files but no class folders; if it is one of the class folders in .. "
        f"(a, b, c), give the folder that holds them: ..{os.sep}; else "
    )
    for i, image in enumerate(sorted((photos / "b").iterdir())):  # a phone's names: class IMG
        image.rename(photos / "b" / f"IMG_000{i}.png")
    with pytest.raises(DataError, match=r"b/ looks like one of the class folders in \.\. \(a"):
        load_dataset(".")


def test_a_camera_prefix_read_as_a_class_beside_another_is_named(tmp_path):
    # photos/b of a phone's IMG_0001.jpg... and one screenshot renamed by hand: the names
    # give two classes, IMG and notes, which train; the notes say IMG is a camera's prefix
    # and that b/ looks like one of the class folders beside it. Names of classes say neither.
    photos = write_tree(tmp_path / "photos", {n: [noise(i) for i in range(2)] for n in "ac"})
    (photos / "b").mkdir()
    for i in range(3):
        noise(i).save(photos / "b" / f"IMG_000{i}.jpg")
    noise(5).save(photos / "b" / "my_screenshot.png")
    data = load_dataset(str(photos / "b"), val_split=0.5)
    assert data.class_names == ["IMG", "my"]
    assert (
        "IMG (3): the start of the names cameras and phones give their files (IMG_0001.jpg), "
        "read as a class here; the class of a file comes from a class folder it is in, or "
        "from the text before the first '_' of its name (3_IMG_5864.jpg)"
    ) in data.train.notes
    assert (
        f"b/ looks like one of the class folders in {photos} (a, b, c); if it is, give the "
        f"folder that holds them: {photos}{os.sep}"
    ) in data.train.notes
    for word in ("dog", "photo"):  # photo_1.jpg beside drawing_1.jpg: a class, as dog is
        for i, f in enumerate(sorted((photos / "b").iterdir())):
            f.rename(photos / "b" / f"{'drawing' if i % 2 else word}_{i}.png")
        notes = load_dataset(str(photos / "b"), val_split=0.5).train.notes
        assert not [n for n in notes if "cameras and phones" in n or "looks like one of" in n]


def test_a_class_folder_of_camera_names_given_as_the_data_points_at_its_parent(tmp_path):
    # photos/cat of a phone's IMG_0001.jpg...: the names read as one class, IMG, which
    # training refuses; the folders beside it are the classes, which the error points at.
    photos = write_tree(tmp_path / "photos", {n: [noise(i) for i in range(2)] for n in "ac"})
    (photos / "b").mkdir()
    for i in range(3):
        noise(i).save(photos / "b" / f"IMG_000{i}.jpg")
    fix = (
        f"b/ looks like one of the class folders in {photos} (a, b, c); if it is, give the "
        f"folder that holds them: {photos}{os.sep}"
    )
    with pytest.raises(DataError) as caught:
        load_dataset(str(photos / "b"))
    assert str(caught.value) == (
        f"{photos / 'b'}: every training image is of one class (IMG); a classifier needs "
        f"images of two classes at least: {fix}; else the class is read from the file names, "
        "all IMG_...; put each class's images in a sub-folder named after the class, or name "
        "every file <class>_<anything> (3_IMG_5864.jpg)"
    )
    assert fix in load_eval_split(str(photos / "b")).notes  # data inspect shows it
    # Alone in its folder, it is a folder of one class by name, without the note.
    alone = tmp_path / "alone"
    (photos / "b").rename(alone)
    assert not any("class folders in" in note for note in load_eval_split(str(alone)).notes)


def test_images_named_with_their_class_before_a_dot_are_told_how_to_name_them(tmp_path):
    # Kaggle's dogs-vs-cats: train/cat.0.jpg, train/dog.0.jpg. The class before a '.' is
    # not read; the error says that it is there, and how to name the files instead.
    (tmp_path / "train").mkdir()
    for i in range(2):
        for name in ("cat", "dog"):
            noise(i).save(tmp_path / "train" / f"{name}.{i}.jpg")
    with pytest.raises(DataError) as caught:
        load_dataset(str(tmp_path / "train"))
    assert str(caught.value) == (
        f"{tmp_path / 'train'}: 4 image files but no class folders, and their names put the "
        "class before a '.' (cat.0.jpg), which is not read as one; put each class's images "
        "in a sub-folder named after the class, or name every file <class>_<anything> "
        "(3_IMG_5864.jpg)"
    )


def test_a_split_folder_of_names_with_the_class_before_a_dot_is_not_read_as_a_class(tmp_path):
    # Kaggle's dogs-vs-cats unpacks to train/ (cat.0.jpg, dog.0.jpg, ...) beside test1/ (1.jpg,
    # unlabelled): read as class folders, they trained two classes, 'test1' and 'train'.
    root = tmp_path / "dogs-vs-cats"
    (root / "train").mkdir(parents=True)
    (root / "test1").mkdir()
    for i in range(2):
        for name in ("cat", "dog"):
            noise(i).save(root / "train" / f"{name}.{i}.jpg")
        noise(9 + i).save(root / "test1" / f"{i + 1}.jpg")
    message = (
        f"{root / 'train'}: a folder named as a split, of images whose names put the class "
        "before a '.' (cat.0.jpg), which is not read as one: it would be one class, 'train'; "
        "put each class's images in a sub-folder named after the class (train/cat/cat.0.jpg), "
        "or name every file <class>_<anything> (cat_0.jpg)"
    )
    with pytest.raises(DataError) as caught:
        load_dataset(str(root))
    assert str(caught.value) == message
    # The same, alone in its folder (the zip's train.zip unpacked by itself).
    (root / "test1" / "1.jpg").unlink()
    (root / "test1" / "2.jpg").unlink()
    (root / "test1").rmdir()
    with pytest.raises(DataError) as caught:
        load_dataset(str(root))
    assert str(caught.value) == message
    # A class of trains beside others, its photos numbered so, is still a class.
    vehicles = tmp_path / "vehicles"
    for name in ("bus", "train"):
        (vehicles / name).mkdir(parents=True)
        for i in range(2):
            noise(i).save(vehicles / name / f"{name}.{i}.jpg")
    assert load_dataset(str(vehicles)).class_names == ["bus", "train"]


def _flat(folder, names):
    """Tiny images under ``names`` in ``folder``, and a text file named ``x.jpg`` beside them;
    ``folder`` is made inside a folder of its own: beside other folders of images, it would
    read as one class of their parent's data set, which the error would point at."""
    folder = folder.parent / f"{folder.name}-alone" / folder.name
    folder.mkdir(parents=True)
    for i, name in enumerate(names):
        noise(i).save(folder / name)
    (folder / "x.jpg").write_text("not an image")
    return str(folder)


def _message(folder):
    with pytest.raises(DataError) as e:
        load_dataset(folder)
    return str(e.value)


def test_stray_file_among_photos_without_classes(tmp_path):
    # A folder of photos and a text file named as a JPEG: the folder has no classes, and the
    # stray (counted by its suffix, as nothing is opened yet) is not what is wrong. Each
    # folder is alone in its parent (_flat), not one of a parent's class folders.
    cats = _flat(tmp_path / "cats", ["a.jpg", "b.jpg", "c.jpg"])
    plain = _message(cats)
    assert plain.startswith(f"{cats}: 4 image files but no class folders; put ")
    assert "x.jpg" not in plain
    # A camera's names read as one class (IMG), which is not two.
    camera = _message(_flat(tmp_path / "phone", [f"IMG_000{i}.jpg" for i in range(3)]))
    assert (
        "phone: 4 image files but no class folders, and their names give one class only "
        "(3 of them named IMG_...); a classifier needs two; put each class's images in a "
        "sub-folder named after the class, or name every file <class>_<anything>"
    ) in camera
    assert "x.jpg" not in camera
    named = _flat(tmp_path / "named", ["cat_1.jpg", "cat_2.jpg", "cat_3.jpg"])
    one = _message(named)
    assert "named: 4 image files but no class folders, and their names give one class " in one
    assert "(3 of them named cat_...); a classifier needs two;" in one
    # Without the stray every name carries the class: one class, which training refuses
    # saying how names give classes (a test set of one class is scored: test_eval).
    (Path(named) / "x.jpg").unlink()
    assert _message(named) == (
        f"{named}: every training image is of one class (cat); a classifier "
        "needs images of two classes at least: the class is read from the file names, all "
        "cat_...; put each class's images in a sub-folder named after the class, or name "
        "every file <class>_<anything> (3_IMG_5864.jpg)"
    )
    # Names of two classes, but only two of five: the folder has no classes, not three strays.
    few = _message(_flat(tmp_path / "few", ["cat_1.jpg", "dog_1.jpg", "a.jpg", "b.jpg"]))
    assert "few: 5 image files but no class folders; put " in few


def test_stray_file_among_files_named_by_class(tmp_path):
    # Most names carry one of two classes: the one that does not is the problem, by name.
    folder = _flat(tmp_path / "pets", ["cat_1.jpg", "cat_2.jpg", "dog_1.jpg", "dog_2.jpg"])
    assert "pets: 5 image files but the names of 1 of them carry no class (x.jpg); " in (
        _message(folder)
    )


def test_classes_from_file_names(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    # Grey level 10 for cats, 200 for dogs; everything after the first "_" is not the class.
    for name in ("cat_1.png", "cat_2_b.png", "dog_1.png", "dog_x_y.png"):
        solid(10 if name.startswith("cat") else 200).save(flat / name)
    data = load_dataset(str(flat))
    assert data.class_names == ["cat", "dog"] and data.val is None
    assert data.train.labels.tolist() == [0, 0, 1, 1]
    assert data.train.images[:, 0, 0, 0].tolist() == [10, 10, 200, 200]
    assert any("classes from the file names" in n for n in data.train.notes)


def test_classes_from_file_names_that_gather_several_names_are_noted(tmp_path):
    # Oxford-IIIT Pet's flat folder: the class before the first "_" makes two breeds one
    # class, american; a way of naming used by one file only (a camera's prefix) is not
    # noted, nor is a class named one way.
    flat = tmp_path / "pets"
    flat.mkdir()
    names = ["Abyssinian_1", "Abyssinian_2", "american_bulldog_1", "american_bulldog_10"]
    names += ["american_pit_bull_terrier_1", "american_pit_bull_terrier_2 (1)"]
    names += ["beagle_DSC_1", "beagle_DSC_2", "beagle_IMG_3"]
    names += [
        "boxer_2019_05_01_1",
        "boxer_2019_05_01_2",
        "boxer_2020_01_07_1",
        "boxer_2020_01_07_2",
    ]
    for i, name in enumerate(names):
        noise(i).save(flat / f"{name}.jpg")
    data = load_dataset(str(flat))
    assert data.class_names == ["Abyssinian", "american", "beagle", "boxer"]
    [note] = [n for n in data.train.notes if "several ways" in n]
    assert "american (american_bulldog_*, american_pit_bull_terrier_*);" in note
    assert note.startswith("a class read from the file names")  # not beagle, nor boxer's dates
    assert "beagle" not in note and "boxer" not in note
    assert "put each one's images in a sub-folder named after it" in note


def test_a_folder_looked_through_to_its_one_folder_says_whose_folders_are_the_classes(tmp_path):
    # photos/ holds one class folder, cats/, of photos by year: looked through as an archive's
    # wrapper folder is, so its years are the classes; the note says so and what to do if
    # cats is a class. A wrapper of split folders, or no wrapper, says nothing.
    photos = tmp_path / "photos"
    write_tree(photos / "cats", {"2019": [noise(0), noise(1)], "2020": [noise(2), noise(3)]})
    data = load_dataset(str(photos))
    assert data.class_names == ["2019", "2020"]
    assert data.train.notes[0] == (
        f"the classes are the folders in cats/ (2019, 2020), the only folder in {photos}; if "
        "cats is a class itself, put the other classes' folders beside it"
    )
    split = tmp_path / "test" / "wrapped"
    write_tree(split / "train", {"a": [noise(4), noise(5)], "b": [noise(6), noise(7)]})
    assert not any("the only folder" in n for n in load_dataset(str(split)).train.notes)
    kaggle = tmp_path / "seg_train"  # as Kaggle's archives unpack: seg_train/seg_train/<class>
    write_tree(kaggle / "seg_train", {"a": [noise(4), noise(5)], "b": [noise(6), noise(7)]})
    assert not any("the only folder" in n for n in load_dataset(str(kaggle)).train.notes)
    assert not any("the only folder" in n for n in load_dataset(str(photos / "cats")).train.notes)


def test_a_split_folder_found_inside_is_not_looked_through_to_its_one_class(tmp_path):
    # photos/ holds train/ alone, which holds one class folder, cats/, of photos by year:
    # a training set of one class, said so, not one of the classes 2019 and 2020.
    photos = tmp_path / "photos"
    write_tree(photos / "train" / "cats", {"2019": [noise(0)], "2020": [noise(1)]})
    with pytest.raises(DataError, match=r"train: every training image is of one class \(cats\)"):
        load_dataset(str(photos))
    # As Kaggle's archives unpack, a split inside a folder of its own name is looked through.
    kaggle = tmp_path / "kaggle"
    write_tree(kaggle / "seg_train" / "seg_train", {"a": [noise(2)], "b": [noise(3)]})
    assert load_dataset(str(kaggle)).class_names == ["a", "b"]


def _pixels(path):
    return torch.from_numpy(read_image(path))


def test_some_file_names_without_a_class(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("a_1.png", "b_1.png", "photo.png"):
        noise(0).save(flat / name)
    with pytest.raises(
        DataError, match=r"flat: 3 image files but the names of 1 of them carry no c"
    ):
        load_dataset(str(flat))


def test_split_named_folders_without_classes(tmp_path):
    for split in ("train", "val"):
        (tmp_path / "d" / split).mkdir(parents=True)
        noise(0).save(tmp_path / "d" / split / "photo.png")
    with pytest.raises(DataError, match=r"d: train, val look like splits, not classes"):
        load_dataset(str(tmp_path / "d"))
    # Kaggle's layout: one train/ of images, their labels in a table beside it.
    (tmp_path / "d" / "val" / "photo.png").unlink()
    (tmp_path / "d" / "val").rmdir()
    (tmp_path / "d" / "annotations.csv").write_text("id,label\nphoto.png,cat\n")
    (tmp_path / "d" / "meta.csv").write_text("id,author\nphoto.png,ann\n")  # which is it?
    with pytest.raises(DataError) as caught:
        load_dataset(str(tmp_path / "d"))
    assert str(caught.value) == (
        f"{tmp_path / 'd'}: train looks like a split, not a class, but holds no class folders; "
        "put each split's images in one sub-folder per class (train/<class>/*.jpg) (the labels "
        "in annotations.csv are not read: a table of labels is read as train.csv beside "
        "train/, or as the only table in train/ or here)"
    )
    (tmp_path / "d" / "meta.csv").unlink()
    # train.csv is read (tests/data/test_tables.py), and one that does not fit says why.
    (tmp_path / "d" / "annotations.csv").rename(tmp_path / "d" / "train.csv")
    (tmp_path / "d" / "train.csv").write_text("id,label\nother.png,cat\n")
    with pytest.raises(DataError, match=r"train.csv: none of its columns names the images in "):
        load_dataset(str(tmp_path / "d"))


def test_signs_jpeg_splits_with_classes_in_file_names(shared_data):
    # The course's JPEG copy: {train,val,test}_signs/<digit>_IMG_<n>.jpg.
    root = shared_data / "signs" / "64x64_SIGNS"
    data = load_dataset(str(root))
    assert data.class_names == [str(i) for i in range(6)]
    assert (len(data.train), len(data.val)) == (864, 216)
    assert data.train.image_size == (64, 64)
    name = sorted(os.listdir(root / "train_signs"))[0]
    first = data.train.images[0]
    assert torch.equal(first, _pixels(root / "train_signs" / name))
    assert data.train.labels[0].item() == int(name.split("_")[0])
    test = load_eval_split(str(root))
    assert len(test) == 120 and torch.bincount(test.labels).tolist() == [20] * 6


def test_missing_path():
    with pytest.raises(DataError, match=r"^no/such/folder: no such file or folder$"):
        load_dataset("no/such/folder")


def test_stratified_split_is_seeded_and_keeps_class_shares():
    labels = torch.tensor([0] * 10 + [1] * 20 + [2] * 5)
    train, val = stratified_split(labels, 0.2, seed=3)
    again_train, again_val = stratified_split(labels, 0.2, seed=3)
    assert torch.equal(val, again_val) and torch.equal(train, again_train)
    assert torch.bincount(labels[val]).tolist() == [2, 4, 1]
    assert sorted(torch.cat([train, val]).tolist()) == list(range(35))
    assert not torch.equal(stratified_split(labels, 0.2, seed=4)[1], val)


def test_val_split_of_a_folder_is_identical_across_runs(tmp_path):
    root = write_tree(
        tmp_path / "d", {"a": [noise(i) for i in range(10)], "b": [noise(i) for i in range(10, 15)]}
    )
    runs = [load_dataset(str(root), val_split=0.4, seed=7) for _ in range(2)]
    assert runs[0].val.class_counts() == [4, 2] and runs[0].train.class_counts() == [6, 3]
    assert torch.equal(runs[0].val.images, runs[1].val.images)
    assert torch.equal(runs[0].train.labels, runs[1].train.labels)


def test_second_load_reads_the_cache_instead_of_decoding(tmp_path, monkeypatch):
    root = write_tree(tmp_path / "d", {"a": [noise(0), noise(1)], "b": [noise(2)]})
    first = load_dataset(str(root), cache_dir=tmp_path / "c").train
    assert list((tmp_path / "c" / "decoded").glob("*.images.npy"))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(folders_module, "decode_files", no_decoding)
    second = load_dataset(str(root), cache_dir=tmp_path / "c").train
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    # A changed file changes the key: decoded again.
    noise(5).save(root / "a" / "000.png")
    os.utime(root / "a" / "000.png", ns=(1, 1))
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset(str(root), cache_dir=tmp_path / "c")
    # Another image size is another entry.
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset(str(root), cache_dir=tmp_path / "c", image_size=16)


def test_a_new_crop_plan_decodes_cropped_folders_again_and_keeps_squashed_ones(
    tmp_path, monkeypatch
):
    root = write_tree(tmp_path / "d", {"a": [noise(0), noise(1)], "b": [noise(2)]})
    for resize in ("squash", "crop"):
        load_dataset(str(root), cache_dir=tmp_path / "c", image_size=8, resize=resize)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(folders_module, "decode_files", no_decoding)
    monkeypatch.setattr(folders_module, "CROP_VERSION", folders_module.CROP_VERSION + 1)
    load_dataset(str(root), cache_dir=tmp_path / "c", image_size=8, resize="squash")
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset(str(root), cache_dir=tmp_path / "c", image_size=8, resize="crop")


def test_parallel_decoding_matches_serial(tmp_path, monkeypatch):
    paths = []
    for i in range(12):
        paths.append(str(tmp_path / f"{i}.png"))
        noise(i, (8 + i % 2, 8)).save(paths[-1])
    serial = decode_module.decode_files(paths, workers=1)
    monkeypatch.setattr(decode_module, "PARALLEL_MIN_FILES", 1)
    monkeypatch.setattr(decode_module, "_CHUNK", 5)
    parallel = decode_module.decode_files(paths, workers=2)
    assert np.array_equal(serial[0], parallel[0]) and np.array_equal(serial[1], parallel[1])
    assert serial[3] == parallel[3] and dict(serial[3]) == {(8, 8): 6, (8, 9): 6}


def test_streaming_forced_or_chosen_by_size(tmp_path, monkeypatch):
    root = write_tree(tmp_path / "d", {"a": [noise(0), noise(1)], "b": [noise(2, (10, 12))]})
    forced = load_dataset(str(root), stream=True).train
    assert isinstance(forced, StreamingSet) and forced.image_size == (8, 8)
    assert forced.labels.tolist() == [0, 0, 1] and forced.paths[2].endswith("b/000.png")
    assert isinstance(load_dataset(str(root)).train, ImageSet)
    monkeypatch.setattr(folders_module, "STREAM_ABOVE_BYTES", 3 * 8 * 8 * 3 - 1)
    auto = load_dataset(str(root), image_size=8).train
    assert isinstance(auto, StreamingSet)
    assert any("streamed from disk" in n for n in auto.notes)


def test_stream_refused_for_in_memory_formats():
    with pytest.raises(DataError, match=r"digits: streaming reads image files"):
        load_dataset("digits", stream=True)


def test_a_class_name_in_either_unicode_form_is_one_class(tmp_path, utf8_file_names):
    # macOS writes "café" as "cafe" + a combining accent; typed elsewhere it is one character.
    decomposed, composed = "cafe\u0301", "caf\u00e9"
    root = tmp_path / "split"
    for split, cafe in (("train", decomposed), ("val", composed)):
        for name in (cafe, "tea"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(4):
                solid(10 if name == "tea" else 200).save(folder / f"{i}.png")
    data = load_dataset(str(root))
    assert data.class_names == [composed, "tea"]
    assert data.train.class_names == data.val.class_names == [composed, "tea"]
    assert data.val.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_class_folders_that_differ_only_in_case_are_named(tmp_path):
    # Cats/ and cats/ side by side (a folder copied twice on Linux): two classes, said so.
    classes = ["Cats", "cats", "dogs"]
    tree = {name: [noise(10 * k + i) for i in range(3)] for k, name in enumerate(classes)}
    data = load_dataset(str(write_tree(tmp_path / "t", tree)))
    assert data.class_names == ["Cats", "cats", "dogs"]
    assert (
        "class folders whose names differ only in case are separate classes: Cats and cats; "
        "merge each into one folder if they hold one class"
    ) in data.train.notes
    del tree["cats"]
    data = load_dataset(str(write_tree(tmp_path / "u", tree)))
    assert not [note for note in data.train.notes if "differ only in case" in note]


def test_classes_in_a_label_table_that_differ_only_in_case_are_named(tmp_path):
    # labels.csv typed by hand: "Red Leaf" in most rows, "red leaf" in some; two classes,
    # said so (a trailing space is no difference: cells are stripped).
    flat = tmp_path / "flat"
    flat.mkdir()
    rows = ["file,label"]
    for i, name in enumerate(["Red Leaf", "red leaf", "Red Leaf ", "Red Leaf", "dog", "dog"]):
        noise(i).save(flat / f"{i}.png")
        rows.append(f"{i}.png,{name}")
    (flat / "labels.csv").write_text("\n".join(rows) + "\n")
    data = load_dataset(str(flat), val_split=0.5)
    assert data.class_names == ["Red Leaf", "dog", "red leaf"]
    assert (
        "classes in labels.csv that differ only in case are separate classes: Red Leaf and "
        "red leaf; write each in one spelling in the table if they hold one class"
    ) in data.train.notes
    (flat / "labels.csv").write_text("\n".join(rows).replace("red leaf", "Red Leaf") + "\n")
    data = load_dataset(str(flat), val_split=0.5)
    assert not [note for note in data.train.notes if "differ only in case" in note]


def test_classes_from_file_names_that_differ_only_in_case_are_named(tmp_path):
    # Cat_1.jpg beside cat_2.jpg (two cameras, or a rename by hand): two classes, said so.
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, name in enumerate(["Cat", "cat", "cat", "Cat", "dog", "dog"]):
        noise(i).save(flat / f"{name}_{i}.png")
    data = load_dataset(str(flat), val_split=0.5)
    assert data.class_names == ["Cat", "cat", "dog"]
    assert (
        "classes read from the file names that differ only in case are separate classes: "
        "Cat and cat; rename the files to one spelling if they hold one class"
    ) in data.train.notes
    (flat / "Cat_0.png").rename(flat / "cat_0.png")
    (flat / "Cat_3.png").rename(flat / "cat_3.png")
    data = load_dataset(str(flat), val_split=0.5)
    assert not [note for note in data.train.notes if "differ only in case" in note]


def test_a_link_to_a_folder_above_it_is_named(tmp_path):
    # photos/cats/backup -> photos: without a check the scan goes round until its depth
    # limit, and the error shows a path of 32 folders instead of the link to remove.
    root = write_tree(
        tmp_path / "photos", {"cats": [noise(i) for i in range(3)], "dogs": [noise(9)] * 3}
    )
    (root / "cats" / "backup").symlink_to(root)
    with pytest.raises(DataError) as caught:
        load_dataset(str(root))
    assert str(caught.value).startswith(
        f"{root / 'cats' / 'backup'}: a link to {root.resolve()}, which holds the link itself"
    )
    (root / "cats" / "backup").unlink()
    more = write_tree(tmp_path / "more", {"x": [noise(5), noise(6)]})
    (root / "cats" / "more").symlink_to(more / "x")  # elsewhere: followed
    assert len(load_dataset(str(root)).train) == 8


def test_a_loop_of_links_is_read_as_a_broken_link(tmp_path):
    """a.jpg -> b.jpg -> a.jpg stopped the scan ("Too many levels of symbolic links; check
    the disk and the folder"), and a data path that is such a link was "no such file or
    folder; did you mean loop?", its own name."""
    root = write_tree(
        tmp_path / "photos", {"cats": [noise(i) for i in range(20)], "dogs": [noise(9)] * 20}
    )
    (root / "cats" / "a.jpg").symlink_to("b.jpg")
    (root / "cats" / "b.jpg").symlink_to("a.jpg")
    (root / "dogs" / "loop").symlink_to("loop")  # no image: a file that is not one
    (root / "birds").symlink_to("birds")  # no class folder
    with pytest.warns(DataWarning) as record:
        data = load_dataset(str(root))
    assert data.class_names == ["cats", "dogs"]
    skipped = [str(root / "cats" / name) for name in ("a.jpg", "b.jpg")]
    assert [path for path, _ in data.train.skipped] == skipped
    loop = "a link to b.jpg, one of a loop of links that never reaches a file"
    assert any(f"a.jpg: skipped, cannot read it ({loop})" in str(w.message) for w in record)
    assert "2 files that are not images ignored (birds, loop)" in data.train.notes
    with pytest.raises(DataError) as caught:
        load_dataset(str(root / "birds"))
    assert str(caught.value) == (
        f"{root / 'birds'}: a link to birds, one of a loop of links that never reaches a file; "
        "point the link at the data, or give the data's path"
    )


def test_a_class_folder_link_to_nothing_is_refused(tmp_path):
    # A class kept on a drive that is not mounted: the link leads nowhere, and its class was
    # left out as "a file that is not an image", the model trained without it.
    root = write_tree(tmp_path / "photos", {"cats": [noise(0)] * 2, "dogs": [noise(1)] * 2})
    (root / "birds").symlink_to(tmp_path / "usb" / "birds")
    with pytest.raises(DataError) as caught:
        load_dataset(str(root))
    assert str(caught.value) == (
        f"{root / 'birds'}: a link to {tmp_path / 'usb' / 'birds'}, which does not exist, beside "
        "the folders cats, dogs: 'birds' would be left out of the data; mount or restore what "
        "it leads to, or remove the link"
    )
    # Through a second link (photos/birds -> birds-link -> the drive): the same
    (root / "birds").unlink()
    (tmp_path / "birds-link").symlink_to(tmp_path / "usb" / "birds")
    (root / "birds").symlink_to(tmp_path / "birds-link")
    with pytest.raises(
        DataError, match=r"birds: a link to .*birds-link, a link that leads to nothing"
    ):
        load_dataset(str(root))
    (root / "birds").unlink()
    (root / "birds.jpg").symlink_to(tmp_path / "usb" / "birds.jpg")  # an image's name: loose
    assert load_dataset(str(root)).class_names == ["cats", "dogs"]
    # A split folder so linked, beside the one split there, was not even noted.
    write_tree(tmp_path / "d" / "train", {"cats": [noise(0)] * 2, "dogs": [noise(1)] * 2})
    (tmp_path / "d" / "val").symlink_to(tmp_path / "usb" / "val")
    with pytest.raises(DataError, match=r"d/val: a link to .*, beside the folder train: 'val' "):
        load_dataset(str(tmp_path / "d"))


def test_a_nas_thumbnail_folder_is_left_out(tmp_path):
    # A Synology NAS keeps thumbnails of each photo in @eaDir/<photo>/ beside it: JPEGs,
    # but copies of the class's photos at other sizes, which would train as more photos.
    root = write_tree(
        tmp_path / "t", {"a": [noise(i) for i in range(3)], "b": [noise(i) for i in range(9, 12)]}
    )
    thumbs = root / "a" / "@eaDir" / "000.png"  # a folder named as the photo
    thumbs.mkdir(parents=True)
    noise(0, size=(4, 4)).save(thumbs / "SYNOPHOTO_THUMB_S.jpg")
    (root / "@eaDir" / "a").mkdir(parents=True)  # and one beside the class folders
    noise(1).save(root / "@eaDir" / "a" / "SYNOPHOTO_THUMB_S.jpg")
    data = load_dataset(str(root))
    assert data.class_names == ["a", "b"] and len(data.train) == 6
    assert data.train.notes == []


def test_the_folders_a_system_keeps_at_the_top_of_a_drive_are_left_out(tmp_path):
    # A USB drive of class folders: Windows's recycle bin (deleted photos among its files)
    # and restore points, and Linux's lost+found, are not classes.
    root = write_tree(
        tmp_path / "usb", {"a": [noise(i) for i in range(3)], "b": [noise(i) for i in range(9, 12)]}
    )
    (root / "$RECYCLE.BIN" / "S-1-5-21").mkdir(parents=True)
    noise(20).save(root / "$RECYCLE.BIN" / "S-1-5-21" / "$R0A1B2C.jpg")
    (root / "System Volume Information").mkdir()
    (root / "System Volume Information" / "IndexerVolumeGuid").write_text("{guid}")
    (root / "lost+found").mkdir()
    data = load_dataset(str(root))
    assert data.class_names == ["a", "b"] and len(data.train) == 6
    assert data.train.notes == []


def test_images_enlarged_to_twice_their_size_or_more_are_noted(tmp_path):
    root = write_tree(tmp_path / "t", {"a": [noise(i) for i in range(4)], "b": [noise(9)] * 4})
    size = tuple(read_image(next((root / "a").iterdir())).shape[:2])
    side = max(size)
    for image_size, noted in ((4 * side, True), (2 * side, True), (2 * side - 1, False)):
        for stream in (False, True):
            notes = load_dataset(str(root), image_size=image_size, stream=stream).train.notes
            enlarged = [n for n in notes if n.startswith("most images are")]
            assert bool(enlarged) == noted, (image_size, stream)
    assert f"enlarged to {4 * side}x{4 * side}" in " ".join(
        load_dataset(str(root), image_size=4 * side).train.notes
    )


def test_a_split_folder_beside_class_folders_holding_them_is_refused(tmp_path):
    """photos/{cat,dog,test/{cat,dog}}: test/ would be a third class of cats and dogs."""
    root = write_tree(tmp_path / "photos", {"cat": [noise(0)] * 2, "dog": [noise(1)] * 2})
    write_tree(root / "test", {"cat": [noise(2)], "dog": [noise(3)]})
    with pytest.raises(DataError) as e:
        load_dataset(str(root))
    assert str(e.value) == (
        f"{root}: test/ holds folders named as the classes beside it (cat, dog), so it would "
        f"train as a class 'test'; to keep it as the test split, move the class folders into "
        f"{root / 'train'}, or move test/ out of the folder"
    )
    # A class named like a split whose sub-folders are no other class's is a class.
    (root / "test" / "cat").rename(root / "test" / "2019")
    (root / "test" / "dog").rename(root / "test" / "2020")
    assert load_dataset(str(root)).class_names == ["cat", "dog", "test"]


def test_a_crop_of_long_images_says_how_little_it_keeps(tmp_path):
    """Panoramas (4:1) lose three quarters to the square crop: said, with the way to keep
    them whole. Photos of 3:2 are not noted, nor anything squashed."""
    wide = {"a": [noise(i, (128, 32)) for i in range(4)], "b": [noise(9, (128, 32))] * 3}
    wide["b"].append(noise(10, (48, 32)))
    root = write_tree(tmp_path / "panoramas", wide)
    note = (
        "the crop keeps the centre square of most images, which are 2 or more times as long "
        "as they are wide (128x32: 25% of it); --resize squash keeps them whole"
    )
    for stream in (False, True):
        assert note in load_dataset(str(root), image_size=32, stream=stream).train.notes
    assert note in load_dataset(str(root), image_size=32).train.notes  # from the cache too
    # A model's crop fraction (eval of converted ImageNet weights) keeps less of each.
    closer = open_source(str(root), image_size=32, resize="crop", crop_fraction=0.75)
    assert note.replace("25%", "19%") in closer.splits["all"]().notes
    squashed = load_dataset(str(root), image_size=32, resize="squash").train.notes
    assert not [n for n in squashed if "crop keeps" in n]
    photos = {"a": [noise(i, (48, 32)) for i in range(4)], "b": [noise(9, (48, 32))] * 4}
    notes = load_dataset(str(write_tree(tmp_path / "photos", photos)), image_size=32).train.notes
    assert not [n for n in notes if "crop keeps" in n]


def test_a_size_note_counts_every_size_not_the_most_common_alone(tmp_path):
    """Mixed sizes: the most common (16x16, 3 of 8 images) is small, but most images are
    not: no note. Most of them small, in several sizes: the note says what they share."""
    sizes = [(16, 16)] * 3 + [(40, 30), (30, 40), (50, 50), (40, 44), (36, 48)]
    root = write_tree(
        tmp_path / "few",
        {"a": [noise(i, s) for i, s in enumerate(sizes)]} | {"b": [noise(9, (40, 40))] * 2},
    )
    for stream in (False, True):
        notes = load_dataset(str(root), image_size=32, stream=stream).train.notes
        assert not [n for n in notes if "enlarged" in n], stream
    sizes = [(16, 16)] * 2 + [(12, 16), (16, 10), (14, 14), (40, 40)]
    root = write_tree(
        tmp_path / "many",
        {"a": [noise(i, s) for i, s in enumerate(sizes)]} | {"b": [noise(9, (8, 8))] * 4},
    )
    notes = load_dataset(str(root), image_size=32).train.notes
    assert "most images are at most 16 px a side, enlarged to 32x32 (the input size)" in notes


def test_the_size_note_says_where_images_are_scaled_past_the_input_size_and_cut(tmp_path):
    """Evaluated for a model with a crop fraction below 1, small square images are enlarged
    past the input size (to 36 for 32 at 0.875) and their centre kept: the note says so, as
    predict's does; at a fraction of 1 they go straight to the input size."""
    root = write_tree(tmp_path / "t", {k: [noise(i, (8, 8)) for i in range(3)] for k in "ab"})
    for fraction, how in ((1.0, "enlarged to"), (0.875, "enlarged and centre-cropped to")):
        split = load_eval_split(root, image_size=32, crop_fraction=fraction)
        assert f"most images are 8x8, {how} 32x32 (the input size)" in split.notes


def test_images_six_times_the_input_size_or_more_are_noted(tmp_path):
    # 64 wide and 48 high: the shorter side decides.
    photos = {"a": [noise(i, (64, 48)) for i in range(4)], "b": [noise(9, (64, 48))] * 4}
    root = write_tree(tmp_path / "t", photos)
    for image_size, noted in ((8, True), (9, False)):
        for stream in (False, True):
            notes = load_dataset(str(root), image_size=image_size, stream=stream).train.notes
            shrunk = [n for n in notes if n.startswith("the images are mostly")]
            assert bool(shrunk) == noted, (image_size, stream)
    (note,) = [n for n in load_dataset(str(root), image_size=8).train.notes if "shrunk" in n]
    assert note == "the images are mostly 64x48, shrunk and centre-cropped to 8x8 (the input size)"


def test_a_folder_of_hdf5_files_points_at_them(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no class folders and no images in it$"):
        load_dataset(str(tmp_path / "empty"))
    (tmp_path / "empty" / "train_signs.h5").write_bytes(b"\x89HDF")
    with pytest.raises(DataError, match=r"it holds train_signs\.h5: give that file as data$"):
        load_dataset(str(tmp_path / "empty"))
    (tmp_path / "empty" / "test_signs.h5").write_bytes(b"\x89HDF")  # the course's two files
    with pytest.raises(DataError, match=r"holds test_signs\.h5, train_signs\.h5: give one of "):
        load_dataset(str(tmp_path / "empty"))


def test_files_that_are_not_images_are_named_with_the_fix_for_phone_photos(tmp_path):
    root = write_tree(
        tmp_path / "t", {"a": [noise(i) for i in range(4)], "b": [noise(i) for i in range(9, 13)]}
    )
    (root / "a" / "notes.txt").write_text("taken on holiday")
    (root / "b" / "deeper").mkdir()
    (root / "b" / "deeper" / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (root / "b" / ".DS_Store").write_bytes(b"\x00")  # hidden: not worth a word
    (root / "a" / "Thumbs.db").write_bytes(b"\x00")  # nor Windows's thumbnail cache
    notes = load_dataset(str(root)).train.notes
    assert (
        "2 files that are not images ignored (notes.txt, IMG_0001.HEIC); HEIC photos need "
        "converting to JPEG or PNG first"
    ) in notes
    # Gone again: the folder is read anew, though its images come from the decoding cache.
    (root / "a" / "notes.txt").unlink()
    assert load_dataset(str(root)).train.notes == [
        "1 file that is not an image ignored (IMG_0001.HEIC); HEIC photos need converting to "
        "JPEG or PNG first"
    ]


def test_files_beside_the_class_or_split_folders_are_named_too(tmp_path):
    # photos/notes.txt beside the class folders is left out as one in a class folder is.
    root = write_tree(
        tmp_path / "t", {"a": [noise(i) for i in range(4)], "b": [noise(i) for i in range(9, 13)]}
    )
    (root / "notes.txt").write_text("taken on holiday")
    (root / "a" / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (root / "desktop.ini").write_text("[.ShellClassInfo]")  # a system's file: not named
    assert load_dataset(str(root)).train.notes == [
        "2 files that are not images ignored (notes.txt, IMG_0001.HEIC); HEIC photos need "
        "converting to JPEG or PNG first"
    ]
    # Beside split folders: photos/labels.csv next to photos/train and photos/val.
    splits = tmp_path / "splits"
    for split in ("train", "val"):
        write_tree(splits / split, {"a": [noise(1), noise(2)], "b": [noise(3), noise(4)]})
    (splits / "labels.csv").write_text("file,label")
    assert (
        "1 file that is not an image ignored (labels.csv)" in load_dataset(str(splits)).train.notes
    )


def test_a_class_folder_of_camera_raw_files_is_told_to_convert_them(tmp_path):
    # A photographer's class folder of raw files only (Canon's .CR2, Nikon's .NEF): the
    # error names them with the fix, as it does an iPhone's HEIC photos.
    root = write_tree(tmp_path / "t", {"a": [noise(0), noise(1)]})
    (root / "b").mkdir()
    for name in ("IMG_0001.CR2", "DSC_0002.NEF"):
        (root / "b" / name).write_bytes(b"II*\x00" + bytes(60))
    with pytest.raises(DataError) as caught:
        load_dataset(str(root))
    assert str(caught.value) == (
        f"{root / 'b'}: no images in this class folder, only 2 files that are not images "
        "(DSC_0002.NEF, IMG_0001.CR2); camera raw photos need converting to JPEG or PNG first"
    )


def test_jpegs_named_jfif_or_jpe_are_images(tmp_path):
    # What a browser on Windows calls the photos it saves: JPEGs, not files to ignore.
    root = write_tree(
        tmp_path / "t", {"a": [noise(i) for i in range(3)], "b": [noise(i) for i in range(9, 12)]}
    )
    noise(20).save(root / "a" / "saved from the web.jfif", format="JPEG")
    noise(21).save(root / "b" / "photo.JPE", format="JPEG")
    data = load_dataset(str(root))
    assert len(data.train) == 8
    assert not [n for n in data.train.notes if "not an image" in n]
    assert data.train.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_validation_images_that_are_copies_of_training_images_are_warned_about(tmp_path):
    root = tmp_path / "t"
    write_tree(root / "train", {"cats": [noise(i) for i in range(4)], "dogs": [noise(4)]})
    write_tree(root / "val", {"cats": [noise(0), noise(1), noise(20)], "dogs": [noise(4)]})
    with pytest.warns(DataWarning) as caught:
        load_dataset(str(root))
    assert [str(w.message) for w in caught if "copies of training" in str(w.message)] == [
        "3 of the 4 validation images are copies of training images (the same pixels; by "
        "class: cats 2, dogs 1): scored as unseen though the model trains on them, which "
        "flatters the validation accuracy; remove the copies from one side"
    ]
    for name in ("000.png", "001.png"):
        (root / "val" / "cats" / name).unlink()
    noise(21).save(root / "val" / "dogs" / "000.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset(str(root))


def test_a_class_folder_inside_another_is_named(tmp_path):
    root = write_tree(
        tmp_path / "t", {"Squares": [noise(i) for i in range(3)], "Circles": [noise(5)]}
    )
    write_tree(root / "Squares", {"circles": [noise(6), noise(7)], "more": [noise(8)]})
    split = load_dataset(str(root)).train
    assert split.class_counts() == [1, 6]  # counted as the outer class, as before
    assert (
        "images in a class folder's sub-folder named as another class count as the outer "
        "class: Squares/circles/ (2); move them if they belong to the inner one"
    ) in split.notes


def test_copies_of_an_image_are_named_with_their_twins(tmp_path):
    root = write_tree(tmp_path / "t", {"cats": [noise(i) for i in range(4)], "dogs": [noise(9)]})
    for i in range(3):
        noise(i).save(root / "cats" / f"00{i} (1).png")  # saved twice
    noise(3).save(root / "dogs" / "stray.png")  # and a copy filed under another class
    split = load_dataset(str(root)).train
    # The copy in another class, which contradicts its twin, is named first.
    assert (
        "4 images are copies of another (the same pixels): dogs/stray.png = cats/003.png, "
        "cats/000.png = cats/000 (1).png, cats/001.png = cats/001 (1).png and 1 more; copies "
        "count twice, and a held-out split can put a copy in validation while its twin trains; "
        "1 in another class than its twin: delete the copies"
    ) in split.notes
    assert len(split) == 9  # noted, not dropped
    for i in range(1, 3):
        (root / "cats" / f"00{i} (1).png").unlink()
    (root / "cats" / "000 (1).png").unlink()
    (root / "dogs" / "stray.png").unlink()
    assert not any("copies" in n or "copy" in n for n in load_dataset(str(root)).train.notes)


def test_unreadable_files_are_said_why_in_words(tmp_path):
    """The reason a file is skipped names what the user can act on, not an exception."""
    noise(1, size=(64, 64)).save(tmp_path / "whole.png")
    _truncated_jpeg(tmp_path / "cut.jpg")
    (tmp_path / "notes.jpg").write_text("not an image")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "folder.jpg").mkdir()
    cases = {
        "cut.jpg": "the file is truncated, as a copy or download that stopped leaves it",
        "notes.jpg": "not an image format Pillow can read",
        "empty.jpg": "the file is empty (0 bytes)",
        "folder.jpg": "it is a folder",
        "missing.jpg": "no such file",
    }
    for name, reason in cases.items():
        with pytest.raises(READ_ERRORS) as caught:
            read_image(tmp_path / name, 16)
        assert read_error_reason(caught.value) == reason, name
    assert read_error_reason(ValueError("odd")) == "ValueError: odd"


def test_a_link_into_another_class_folder_is_refused(tmp_path):
    """cats/more -> ../dogs would train dogs as cats: refused, naming the link; a link to
    images outside the data set is followed as before."""
    root = write_tree(
        tmp_path / "t",
        {"cats": [noise(i) for i in range(4)], "dogs": [noise(i + 9) for i in range(4)]},
    )
    (root / "cats" / "more").symlink_to(root / "dogs")
    with pytest.raises(DataError) as caught:
        load_dataset(str(root))
    assert str(caught.value) == (
        f"{root / 'cats' / 'more'}: a link to {(root / 'dogs').resolve()}, in the class folder "
        "dogs, so its images would be read as cats; remove the link, or copy the images "
        "that belong to cats"
    )
    (root / "cats" / "more").unlink()
    (root / "cats" / "one.png").symlink_to(root / "dogs" / "000.png")  # one image, too
    with pytest.raises(DataError, match=r"one.png: a link to .*in the class folder dogs"):
        load_dataset(str(root))
    (root / "cats" / "one.png").unlink()
    (root / "wolves").symlink_to(root / "dogs")  # a class folder that is the link
    with pytest.raises(DataError) as caught:
        load_dataset(str(root))
    assert str(caught.value) == (
        f"{root / 'wolves'}: a link to {(root / 'dogs').resolve()}, in the class folder dogs, "
        "so its images would be read as wolves; remove the link, or copy the images that "
        "belong to wolves"
    )
    (root / "wolves").unlink()
    outside = write_tree(tmp_path / "elsewhere", {"x": [noise(20), noise(21)]})
    (root / "cats" / "extra").symlink_to(outside / "x")
    assert load_dataset(str(root)).train.class_counts() == [6, 4]
    (root / "cats" / "extra").unlink()
    (root / "wolves").symlink_to(outside / "x")  # a class kept elsewhere: followed, but
    (root / "dogs" / "more").symlink_to(root / "wolves")  # not also read as dogs
    with pytest.raises(DataError, match=r"more: a link to .*, in the class folder wolves"):
        load_dataset(str(root))


def test_links_are_checked_once_each_however_many_class_folders(tmp_path, monkeypatch):
    """A data set made of links (``ln -s`` into a shared store, as split scripts do) with
    many classes: each link and each class folder is resolved once, not once per pair of
    class folders, which made a scan of a thousand classes take minutes."""
    store = tmp_path / "store"
    store.mkdir()
    noise(0).save(store / "0.png")
    root = tmp_path / "linked"
    classes = [f"c{i:02d}" for i in range(30)]
    for name in classes:
        (root / name).mkdir(parents=True)
        for j in range(2):
            (root / name / f"{j}.png").symlink_to(store / "0.png")
    resolved = []
    real = Path.resolve
    monkeypatch.setattr(Path, "resolve", lambda self, *a: resolved.append(self) or real(self, *a))
    split = folders_module.scan_classes(root)
    assert split.class_names == classes and len(split.paths) == 60
    assert len(resolved) <= len(classes) + len(split.paths)


@pytest.mark.parametrize("denied", ["dog", "photos"])
def test_a_folder_that_may_not_be_listed_is_one_line_saying_so(tmp_path, monkeypatch, denied):
    # A class folder (or the data folder) copied from another account (chmod 700), or a
    # drive's lost+found: not the write error ("choose a folder you can write to") the
    # command line would give. The kernel refuses both the folder's listing and a look at
    # any file in it (a run's config.json, explain's maps.npz).
    root = write_tree(tmp_path / "photos", {"cat": [noise(0)], "dog": [noise(1)]})
    folder = str(root if denied == "photos" else root / denied)
    listing, stat = os.scandir, os.stat

    def scandir(path):
        if os.fspath(path) == folder:
            raise PermissionError(13, "Permission denied", folder)
        return listing(path)

    def stat_inside(path, *args, **kwargs):
        if os.fspath(path).startswith(folder + os.sep):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "stat", stat_inside)
    with pytest.raises(DataError) as caught:
        load_dataset(str(root))
    assert str(caught.value).startswith(
        f"{folder}: no permission to list this folder (Permission denied); give yourself "
        "read access to it (chmod -R u+rX)"
    )


def test_a_warning_is_shown_at_the_line_that_called_resnetlab(tmp_path):
    # Python shows a warning's file and line: the script's call, not a line inside the package.
    root = write_tree(
        tmp_path / "photos", {c: [noise(i + 9 * k) for i in range(4)] for k, c in enumerate("ab")}
    )
    (root / "a" / "bad.png").write_bytes(b"damaged")
    with pytest.warns(DataWarning) as caught:
        line = sys._getframe().f_lineno + 1
        load_dataset(str(root), default_val_split=0.25, cache_dir=tmp_path / "cache")
    assert {(w.filename, w.lineno) for w in caught} == {(__file__, line)}


def test_the_data_set_around_images_is_looked_for_once_per_folder_and_never_blocks(
    tmp_path, monkeypatch
):
    from resnetlab.data import folders

    root = write_tree(
        tmp_path / "photos", {"cat": [noise(i) for i in range(30)], "dog": [noise(9)]}
    )
    files = [str(p) for p in sorted((root / "cat").iterdir())]
    looked = []
    is_set = folders._is_class_folder_set
    monkeypatch.setattr(folders, "_is_class_folder_set", lambda f: looked.append(f) or is_set(f))
    assert folders.data_sets_around([*files, str(root / "dog" / "000.png")]) == [str(root)]
    assert looked == [root]  # one look, for thirty photos of two folders beside each other
    # A folder above them that cannot be listed (a home folder of mode 711) is no data set.
    listing = folders._listing

    def refused(folder):
        if Path(folder) == root:
            raise DataError(f"{folder}: no permission to list this folder")
        return listing(folder)

    monkeypatch.setattr(folders, "_listing", refused)
    assert folders.data_sets_around(files) == []
    assert folders.class_folder_note(root / "cat") is None


def test_a_folder_of_one_class_with_a_sub_folder_is_not_looked_through(tmp_path):
    from resnetlab.data.folders import find_root

    # onecls/cat/{six images, more/{two}}: one class folder, given with the folder above it.
    one = write_tree(tmp_path / "onecls", {"cat": [noise(i) for i in range(6)]})
    write_tree(one / "cat", {"more": [noise(7), noise(8)]})
    assert find_root(one) == one
    # wrapper/photos/{cat/{six}, stray.png}: photos holds the classes; the stray is told.
    wrapper = tmp_path / "wrapper"
    write_tree(wrapper / "photos", {"cat": [noise(i) for i in range(6)]})
    noise(9).save(wrapper / "photos" / "stray.png")
    assert find_root(wrapper) == wrapper / "photos"
    # wrapper/photos/{cover.png, cat/2019/{six}, dog/2020/{six}}: classes of nested folders.
    nested = tmp_path / "nested"
    write_tree(nested / "photos" / "cat", {"2019": [noise(i) for i in range(6)]})
    write_tree(nested / "photos" / "dog", {"2020": [noise(i) for i in range(6)]})
    noise(9).save(nested / "photos" / "cover.png")
    assert find_root(nested) == nested / "photos"


def test_file_names_are_read_as_utf8_whatever_the_locale_and_as_latin1_failing_that():
    from resnetlab.data.folders import readable

    ascii_locale = "".join(chr(0xDC00 + b) if b > 127 else chr(b) for b in "été".encode())
    assert readable(ascii_locale) == "été"  # LC_ALL=C, Python's UTF-8 mode off
    assert readable(os.fsdecode(b"caf\xe9")) == "café"  # Latin-1 bytes


def test_a_folder_beside_that_cannot_be_listed_leaves_the_error_as_it_is(tmp_path):
    # /tmp/photos of IMG0.png...: the hint looks at the folders beside it, where /tmp holds
    # other users' folders and links that loop; those are passed over, not raised instead.
    photos = write_tree(tmp_path / "photos", {n: [noise(i) for i in range(2)] for n in "ac"})
    (photos / "b").mkdir()
    for i in range(2):
        noise(i).save(photos / "b" / f"photo{i}.png")
    (photos / "loops").mkdir()
    (photos / "loops" / "lp").symlink_to("lp")
    with pytest.raises(DataError) as caught:
        load_dataset(str(photos / "b"))
    assert str(caught.value).startswith(
        f"{photos / 'b'}: 2 image files but no class folders; if it is one of the class "
        f"folders in {photos} (a, b, c), give the folder that holds them: {photos}{os.sep}; "
    )
    (tmp_path / "flat").mkdir()  # a link that loops beside the folder itself
    for i in range(2):
        noise(i).save(tmp_path / "flat" / f"photo{i}.png")
    (tmp_path / "lp").symlink_to("lp")
    with pytest.raises(DataError, match=r"flat: 2 image files but no class folders; put each"):
        load_dataset(str(tmp_path / "flat"))


def test_folders_resnetlab_wrote_among_the_classes_are_left_out_and_named(tmp_path):
    # `resnetlab explain` run from the data folder writes cams/ there; a run's folder copied
    # in brings its figures: neither is a class of photos.
    root = write_tree(
        tmp_path / "photos", {c: [noise(k * 3 + i) for i in range(3)] for k, c in enumerate("ab")}
    )
    write_tree(root, {"cams": [noise(20), noise(21)], "run1": [noise(22)]})
    np.savez(root / "cams" / "maps.npz", maps=np.zeros((2, 4, 4)))
    (root / "run1" / "config.json").write_text("{}")
    (root / "run1" / "best.safetensors").write_bytes(b"weights")
    data = load_dataset(str(root))
    assert data.class_names == ["a", "b"] and len(data.train) == 6
    assert data.train.notes[:2] == [
        "cams left out: it holds the maps resnetlab explain wrote (maps.npz), not a class's "
        "images; move it out of the data folder",
        "run1 left out: it is a training run's folder (config.json, its figures), not a "
        "class's images; move it out of the data folder",
    ]
    for d in ("a", "b"):
        shutil.rmtree(root / d)
    with pytest.raises(
        DataError, match=r"photos: no class folders in it; cams left out: it holds the maps"
    ):
        load_dataset(str(root))


def test_folders_resnetlab_wrote_inside_a_class_or_beside_named_images_are_left_out(tmp_path):
    # `resnetlab explain` run from inside a class folder writes cams/ there; from a folder of
    # images named by class, or labelled by a table, cams/ beside them: its overlays are no
    # photos of the class, so they are left out and named, not counted as the class's.
    root = write_tree(
        tmp_path / "photos", {c: [noise(k * 3 + i) for i in range(3)] for k, c in enumerate("ab")}
    )
    write_tree(root / "b", {"cams": [noise(20)]})
    np.savez(root / "b" / "cams" / "maps.npz", maps=np.zeros((1, 4, 4)))
    data = load_dataset(str(root))
    assert len(data.train) == 6
    assert (
        f"{os.path.join('b', 'cams')} left out: it holds the maps resnetlab explain wrote "
        "(maps.npz), not a class's images; move it out of the data folder"
    ) in data.train.notes
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(6):
        noise(i).save(flat / f"{'ab'[i % 2]}_{i}.png")
    write_tree(flat, {"cams": [noise(20)]})
    (flat / "cams" / "000.png").rename(flat / "cams" / "a_9.png")  # as explain names it
    np.savez(flat / "cams" / "maps.npz", maps=np.zeros((1, 4, 4)))
    data = load_dataset(str(flat), val_split=0.5)
    assert len(data.train) + len(data.val) == 6
    assert "cams left out: it holds the maps resnetlab explain wrote" in data.train.notes[1]
    (flat / "labels.csv").write_text(
        "file,label\n" + "".join(f"{'ab'[i % 2]}_{i}.png,{'xy'[i % 2]}\n" for i in range(6))
    )
    data = load_dataset(str(flat), val_split=0.5)
    assert data.class_names == ["x", "y"] and len(data.train) + len(data.val) == 6
    assert any(n.startswith("cams left out: it holds the maps") for n in data.train.notes)


def test_files_that_are_not_images_are_named_once_each_in_the_note(tmp_path):
    # notes.txt in every class folder: "3 files ... (notes.txt, notes.txt, notes.txt)".
    root = write_tree(
        tmp_path / "photos", {c: [noise(k * 3 + i) for i in range(3)] for k, c in enumerate("abc")}
    )
    for c in "abc":
        (root / c / "notes.txt").write_text("taken in May")
    (root / "a" / "readme.md").write_text("")
    data = load_dataset(str(root))
    assert "4 files that are not images ignored (notes.txt, readme.md)" in data.train.notes


def test_a_hidden_folder_of_images_beside_the_class_folders_is_named(tmp_path):
    # A class whose name starts with a dot is hidden, and left out: said, so that no class
    # goes missing unsaid. A hidden folder without images (.git) is not worth a word.
    root = write_tree(
        tmp_path / "t",
        {"a": [noise(i) for i in range(3)], "b": [noise(i) for i in range(9, 12)]},
    )
    (root / ".net").mkdir()
    for i in range(2):
        noise(20 + i).save(root / ".net" / f"{i}.png")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / ".thumbnails").mkdir()  # a phone's small copies: no class either
    noise(30).save(root / ".thumbnails" / "0.png")
    data = load_dataset(str(root))
    assert data.class_names == ["a", "b"] and len(data.train) == 6
    assert data.train.notes == [
        ".net (2 images) left out: a hidden folder (its name starts with a dot), not read "
        "as a class; rename it without the dot to train on its images"
    ]


def test_a_hidden_folder_beside_the_one_class_folder_is_named_in_the_one_class_error(
    tmp_path,
):
    # Two classes, one of them hidden: the error said to add a folder of another class's
    # images, where the user has one, left out for its dot; the note never showed.
    root = write_tree(tmp_path / "t", {"cats": [noise(i) for i in range(3)]})
    (root / ".net").mkdir()
    for i in range(2):
        noise(20 + i).save(root / ".net" / f"{i}.png")
    with pytest.raises(DataError) as error:
        load_dataset(str(root))
    assert str(error.value) == (
        f"{root}: every training image is of one class (cats); a classifier needs images of "
        "two classes at least: .net (2 images) left out: a hidden folder (its name starts "
        "with a dot), not read as a class; rename it without the dot to train on its images; "
        "else add a folder of another class's images"
    )


def test_a_class_folder_of_photos_by_date_given_as_the_data_says_its_classes_are_days(tmp_path):
    # photos/<class>/<date>/*.jpg, as a phone's photos are sorted, with photos/Red Leaf given:
    # its dates read as classes, which the note says, pointing at photos/; eval's error on
    # such a folder repeats it (with_folder_notes). Alone, the note says what a data set
    # needs; folders named as classes, or splits, say nothing.
    photos = tmp_path / "photos"
    for name in ("Red Leaf", "green_leaf"):
        write_tree(photos / name, {d: [noise(0), noise(1)] for d in ("2024-01-10", "2024-02-11")})
    notes = load_dataset(str(photos / "Red Leaf")).train.notes
    note = (
        "the 2 classes are folders named as dates (2024-01-10, 2024-02-11): days, not classes; "
        f"Red Leaf/ looks like one of the class folders in {photos} (Red Leaf, green_leaf); if "
        f"it is, give the folder that holds them: {photos}{os.sep}"
    )
    assert note in notes
    assert folders_module.with_folder_notes(notes, "the fix") == f"{note}; else the fix"
    alone = write_tree(tmp_path / "alone" / "leaves", {"2019": [noise(2)], "20200110": [noise(3)]})
    note = (
        "the 2 classes are folders named as dates (2019, 20200110): days, not classes, where "
        "photos are sorted by when they were taken; give a folder that holds a folder per class "
        "(photos/<class>/, its images in any sub-folders: photos/<class>/2019/)"
    )
    notes = load_dataset(str(alone)).train.notes
    assert note in notes
    # eval's error on it, which has no fix of its own for data of none of a model's classes
    assert folders_module.with_folder_notes(notes, None) == note
    assert not any("named as dates" in n for n in load_dataset(str(photos)).train.notes)
    mixed = write_tree(tmp_path / "mixed", {"2019": [noise(4)], "cats": [noise(5)]})
    assert not any("named as dates" in n for n in load_dataset(str(mixed)).train.notes)
