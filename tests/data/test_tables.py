"""Image folders labelled by a table (a CSV of file names and classes), not by class folders."""

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from resnetlab.cli import main
from resnetlab.data import load_dataset
from resnetlab.errors import DataError, DataWarning

from .conftest import solid

COLOURS = {"bird": 40, "cat": 120, "dog": 200}  # each class's images are this grey


def _images(folder, names_and_classes, suffix=".png"):
    """``folder/<name><suffix>`` for each (name, class), of its class's grey."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, label in names_and_classes:
        solid(COLOURS.get(label, 7 * int(label) if label.isdigit() else 0)).save(
            folder / f"{name}{suffix}"
        )


def _classes_by_pixels(split):
    """Each image's class as its pixels say, beside the class its label names."""
    by_grey = {grey: name for name, grey in COLOURS.items()}
    return [
        (by_grey[int(image[0, 0, 0])], split.class_names[int(label)])
        for image, label in zip(split.images, split.labels, strict=True)
    ]


def _kaggle(root, rows, header="id,label"):
    """Kaggle's layout: root/train/<id>.png, their classes in root/train.csv, and a test/
    of unlabelled images."""
    _images(root / "train", rows)
    _images(root / "test", [(f"t{i}", "") for i in range(3)])
    (root / "train.csv").write_text(header + "\n" + "".join(f"{n},{c}\n" for n, c in rows))
    return root


ROWS = [(f"{i:04x}", ["cat", "dog", "bird"][i % 3]) for i in range(12)]


def test_a_folder_of_images_and_the_table_beside_it_is_read_by_the_table(tmp_path):
    root = _kaggle(tmp_path / "data", ROWS)
    s = load_dataset(str(root), stream=False).train
    assert s.class_names == ["bird", "cat", "dog"] and len(s.labels) == 12
    assert all(seen == named for seen, named in _classes_by_pixels(s))
    notes = " ".join(s.notes)
    assert "classes from train.csv: column 'label', the files in 'id'" in notes
    # The unlabelled test/ is no split; train.csv is not a stray file beside them.
    assert f"{root} other than the splits ignored: test (images in no class folder)" in notes
    assert "ignored (train.csv)" not in notes


def test_the_table_inside_the_folder_by_its_class_header_with_paths_as_written(tmp_path):
    # photos/labels.csv naming photos/images/<file>.png (one folder of images), as
    # images/x.png or with Windows separators, among other columns.
    photos = tmp_path / "photos"
    _images(photos / "images", ROWS)
    lines = ["file;photographer;Category"] + [
        f"{'images/' if i % 2 else 'images' + chr(92)}{n}.png;ann;{c}"
        for i, (n, c) in enumerate(ROWS)
    ]
    (photos / "labels.csv").write_text("\n".join(lines) + "\n")
    s = load_dataset(str(photos), stream=False).train
    assert s.class_names == ["bird", "cat", "dog"] and len(s.labels) == 12
    assert all(seen == named for seen, named in _classes_by_pixels(s))


def test_numbered_classes_are_in_the_order_of_their_numbers(tmp_path):
    rows = [(f"img{i}", str(i % 11)) for i in range(22)]
    root = _kaggle(tmp_path / "data", rows)
    s = load_dataset(str(root), stream=False).train
    assert s.class_names == [str(k) for k in range(11)]  # 10 after 9, not after 1
    pairs = zip(s.images, s.labels, strict=True)
    greys = {int(label): int(image[0, 0, 0]) for image, label in pairs}
    assert greys == {k: 7 * k for k in range(11)}


def test_one_hot_columns_name_the_classes(tmp_path):
    root = tmp_path / "data"
    _images(root / "train", ROWS)
    lines = ["image_id,bird,cat,dog"] + [
        f"{n},{int(c == 'bird')},{int(c == 'cat')},{int(c == 'dog')}" for n, c in ROWS
    ]
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    s = load_dataset(str(root), stream=False).train
    assert all(seen == named for seen, named in _classes_by_pixels(s))


def test_what_the_table_leaves_out_is_noted(tmp_path):
    root = _kaggle(tmp_path / "data", ROWS)
    _images(root / "train", [("extra", "cat"), ("unsure", "cat")])  # extra is not listed
    table = root / "train.csv"
    table.write_text(table.read_text() + "gone,cat\nunsure,\n0000,dog\n")
    s = load_dataset(str(root), stream=False).train
    assert len(s.labels) == 12  # not unsure, of no class; 0000 keeps its first row's
    assert all(seen == named for seen, named in _classes_by_pixels(s))
    notes = " ".join(s.notes)
    assert "1 rows of train.csv name no image in train/ (the first: 'gone'): left out" in notes
    assert "1 images of train.csv are given no class: left out" in notes
    assert "1 images listed more than once in train.csv: the first row's class taken" in notes
    assert "1 images in train/ that train.csv does not list: left out" in notes


@pytest.mark.parametrize(
    "header, rows, says",
    [
        (
            "id,a,b",
            [(n, f"{c},x") for n, c in ROWS],
            "which column holds the classes? its columns besides the files are 'a', 'b'; "
            "head that one label",
        ),
        (  # no header row: its columns named by their places
            None,
            [(n, f"{c},x") for n, c in ROWS],
            "which column holds the classes? its columns besides the files are column 2, "
            "column 3; add a header row, heading that one label",
        ),
        (
            "id",
            [(n, "") for n, _ in ROWS],
            "it names the images but gives no class; add a column of classes",
        ),
    ],
)
def test_a_table_without_one_column_of_classes_is_refused_in_one_line(tmp_path, header, rows, says):
    root = tmp_path / "data"
    _images(root / "train", ROWS)
    lines = [header] * (header is not None) + [f"{n},{c}".rstrip(",") for n, c in rows]
    (root / "train" / "labels.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as e:
        load_dataset(str(root / "train"), stream=False)
    assert str(e.value) == f"{root / 'train' / 'labels.csv'}: {says}"


def test_a_table_of_other_images_is_refused_in_one_line(tmp_path):
    root = _kaggle(tmp_path / "data", ROWS)
    table = root / "train.csv"
    table.write_text(table.read_text() + "".join(f"other{i},cat\n" for i in range(20)))
    with pytest.raises(DataError, match=r"20 of its 32 rows name no image in .*train \(the "):
        load_dataset(str(root / "train"), stream=False)


def test_images_named_by_class_keep_their_names_beside_a_table_that_does_not_fit(tmp_path):
    folder = tmp_path / "signs"
    _images(folder, [(f"{c}_{i}", c) for i in range(3) for c in ("cat", "dog")])
    (folder / "notes.csv").write_text("author,year\nann,2024\n")
    s = load_dataset(str(folder), stream=False).train
    assert s.class_names == ["cat", "dog"]
    assert "labels taken from the file names, not from notes.csv" in " ".join(s.notes)


def test_a_changed_table_is_read_again_not_taken_from_the_cache(tmp_path):
    root = _kaggle(tmp_path / "data", ROWS)
    first = load_dataset(str(root), stream=False).train
    assert first.class_names == ["bird", "cat", "dog"]
    table = root / "train.csv"
    table.write_text(table.read_text().replace(",bird", ",cat"))
    again = load_dataset(str(root), stream=False).train
    assert again.class_names == ["cat", "dog"] and len(again.labels) == 12


def test_train_and_predict_on_a_labelled_folder(tmp_path, capsys, monkeypatch):
    root = _kaggle(tmp_path / "data", ROWS)
    monkeypatch.chdir(tmp_path)
    args = ["--model", "resnet8", "--input-size", "8", "--max-steps", "2", "--out", "run"]
    assert main(["train", "--data", str(root), *args]) == 0
    assert "classes from train.csv" in capsys.readouterr().err
    assert main(["predict", "run/best.safetensors", str(root / "train" / "0000.png")]) == 0
    assert capsys.readouterr().out.split(":")[1].split()[0] in COLOURS


def test_a_table_named_for_the_split_labels_its_folder_of_images(tmp_path):
    # Kaggle's cassava and plant-pathology: train_images/ beside train.csv, test_images/.
    root = tmp_path / "cassava"
    _images(root / "train_images", ROWS)
    _images(root / "test_images", [("t0", "")])
    (root / "train.csv").write_text("image_id,label\n" + "".join(f"{n}.png,{c}\n" for n, c in ROWS))
    s = load_dataset(str(root), stream=False).train
    assert s.class_names == ["bird", "cat", "dog"] and len(s.labels) == 12
    assert all(seen == named for seen, named in _classes_by_pixels(s))
    assert "ignored: test_images (images in no class folder)" in " ".join(s.notes)


def test_images_named_by_class_beside_a_table_of_a_few_of_them_keep_their_names(tmp_path):
    folder = tmp_path / "signs"
    _images(folder, [(f"{c}_{i}", c) for i in range(3) for c in ("cat", "dog")])
    (folder / "sizes.csv").write_text("file,width\ncat_0.png,8\n")  # one image's width
    s = load_dataset(str(folder), stream=False).train
    assert s.class_names == ["cat", "dog"] and len(s.labels) == 6
    assert all(seen == named for seen, named in _classes_by_pixels(s))
    assert (
        f"labels taken from the file names, not from sizes.csv: {folder / 'sizes.csv'}: it "
        "gives the class of 1 of the 6 images"
    ) in s.notes


def test_a_table_beside_a_folder_of_folders_of_images_labels_them_not_the_folders(tmp_path):
    # A labelling tool's export: images/<batch>/<file>, annotations.csv naming them by path.
    root = tmp_path / "export"
    for i, (n, c) in enumerate(ROWS):
        _images(root / "images" / f"batch{i % 2}", [(n, c)])
    lines = [f"images/batch{i % 2}/{n}.png,{c}" for i, (n, c) in enumerate(ROWS)]
    (root / "annotations.csv").write_text("filename,class\n" + "\n".join(lines) + "\n")
    s = load_dataset(str(root), stream=False).train
    assert s.class_names == ["bird", "cat", "dog"] and len(s.labels) == 12
    assert all(seen == named for seen, named in _classes_by_pixels(s))
    assert "classes from annotations.csv: column 'class'" in " ".join(s.notes)


def test_a_table_labels_images_across_folders_that_are_no_classes(tmp_path):
    # HAM10000: two folders of images, their diagnoses in the table beside them.
    root = tmp_path / "ham"
    for i, (n, c) in enumerate(ROWS):
        _images(root / f"HAM10000_images_part_{1 + i // 6}", [(f"ISIC_{n}", c)])
    lines = [f"HAM_{i // 2},ISIC_{n},{c},histo,45.0" for i, (n, c) in enumerate(ROWS)]
    (root / "HAM10000_metadata.csv").write_text(
        "lesion_id,image_id,dx,dx_type,age\n" + "\n".join(lines) + "\n"
    )
    s = load_dataset(str(root), stream=False).train
    assert s.class_names == ["bird", "cat", "dog"] and len(s.labels) == 12
    assert all(seen == named for seen, named in _classes_by_pixels(s))
    assert (
        "the folders HAM10000_images_part_1, HAM10000_images_part_2 are not read as classes: "
        "HAM10000_metadata.csv labels their images"
    ) in s.notes


@pytest.mark.parametrize(
    "table",
    [
        "file,label\n" + "".join(f"{c}/{i}.png,{c}\n" for c in ("cat", "dog") for i in range(3)),
        "file,author\n" + "".join(f"{c}/{i}.png,ann\n" for c in ("cat", "dog") for i in range(3)),
    ],
)
def test_class_folders_beside_a_table_of_their_own_classes_or_of_no_classes_stay(tmp_path, table):
    root = tmp_path / "photos"
    for c in ("cat", "dog"):
        _images(root / c, [(str(i), c) for i in range(3)])
    (root / "info.csv").write_text(table)
    s = load_dataset(str(root), stream=False).train
    assert s.class_names == ["cat", "dog"]
    assert all(seen == named for seen, named in _classes_by_pixels(s))


def test_of_several_tables_the_one_named_for_training_labels_the_images(tmp_path):
    # Plant Pathology 2020: images/ of Train_<i> and Test_<i>, train.csv one-hot, test.csv
    # and sample_submission.csv of the test images.
    root = tmp_path / "plant"
    _images(root / "images", [(f"Train_{n}", c) for n, c in ROWS] + [("Test_0", "")])
    lines = [f"Train_{n},{int(c == 'bird')},{int(c == 'cat')},{int(c == 'dog')}" for n, c in ROWS]
    (root / "train.csv").write_text("image_id,bird,cat,dog\n" + "\n".join(lines) + "\n")
    (root / "test.csv").write_text("image_id\nTest_0\n")
    (root / "sample_submission.csv").write_text("image_id,bird,cat,dog\nTest_0,0.3,0.3,0.4\n")
    s = load_dataset(str(root), stream=False).train
    assert s.class_names == ["bird", "cat", "dog"] and len(s.labels) == 12
    assert all(seen == named for seen, named in _classes_by_pixels(s))
    assert "1 images in plant/ that train.csv does not list: left out" in s.notes


def test_a_table_saved_as_utf16_unicode_text_is_read(tmp_path):
    root = tmp_path / "data"
    _images(root / "train", ROWS)
    text = "id\tlabel\r\n" + "".join(f"{n}\t{c}\r\n" for n, c in ROWS)
    (root / "train.csv").write_bytes(text.encode("utf-16"))  # with its byte order mark
    s = load_dataset(str(root), stream=False).train
    assert s.class_names == ["bird", "cat", "dog"] and len(s.labels) == 12
    assert all(seen == named for seen, named in _classes_by_pixels(s))


def test_a_table_whose_lines_end_in_a_carriage_return_alone_is_read(tmp_path):
    root = tmp_path / "data"
    _images(root / "train", ROWS)
    (root / "train.csv").write_text("id,label\r" + "".join(f"{n},{c}\r" for n, c in ROWS))
    s = load_dataset(str(root), stream=False).train
    assert s.class_names == ["bird", "cat", "dog"] and len(s.labels) == 12
    assert all(seen == named for seen, named in _classes_by_pixels(s))


def test_a_quote_left_open_is_refused_in_one_line_not_read_as_one_class(tmp_path):
    root = _kaggle(tmp_path / "data", ROWS)
    table = root / "train.csv"
    table.write_text(table.read_text().replace("0000,cat", '0000,"cat'))
    with pytest.raises(DataError) as e:
        load_dataset(str(root), stream=False)
    assert str(e.value).startswith(f"{table}: the class of '0000' runs over 12 lines ('cat\\n")
    assert str(e.value).endswith('from a quote (") that is not closed; close it or remove it')


def test_classes_that_are_one_number_written_two_ways_are_noted(tmp_path):
    rows = [(f"img{i}", ["01", "1", "2"][i % 3]) for i in range(6)]
    root = _kaggle(tmp_path / "data", rows)
    s = load_dataset(str(root), stream=False).train
    assert s.class_names == ["01", "1", "2"]
    assert (
        "classes that are one number written in two ways are two classes: 01 and 1; write "
        "them alike if they are one"
    ) in s.notes


def test_a_table_of_several_labels_an_image_is_noted(tmp_path):
    rows = [*ROWS[:6], ("0000", "dog"), ("0000", "cat"), ("0001", "dog")]  # 0000: a cat
    rows += [("0006", "cat dog"), ("0007", "bird")]
    root = _kaggle(tmp_path / "data", rows)
    s = load_dataset(str(root), stream=False).train
    assert len(s.labels) == 8 and s.class_names == ["bird", "cat", "cat dog", "dog"]
    assert (
        "2 images listed more than once in train.csv: the first row's class taken, 1 of them "
        "with another class there (a table of several labels an image: here each image is of "
        "one class)"
    ) in s.notes
    assert (
        "classes that join others with spaces are classes of their own: 'cat dog' (each image "
        "is of one class, not of each it names)"
    ) in s.notes


def test_excels_line_naming_the_separator_is_no_header(tmp_path):
    root = tmp_path / "data"
    _images(root / "train", ROWS)
    (root / "train.csv").write_text("sep=;\nid;label\n" + "".join(f"{n};{c}\n" for n, c in ROWS))
    s = load_dataset(str(root), stream=False).train
    assert s.class_names == ["bird", "cat", "dog"] and len(s.labels) == 12
    assert all(seen == named for seen, named in _classes_by_pixels(s))
    assert s.notes[0] == "classes from train.csv: column 'label', the files in 'id'"
    assert not [n for n in s.notes if "name no image" in n]


def test_a_table_naming_the_images_in_another_case_labels_them(tmp_path):
    # A table made on Windows: IMG_0000.PNG for img_0000.png; img_0001 and IMG_0001 both
    # there are two images, each named exactly.
    rows = [(f"img_{n}", c) for n, c in ROWS] + [("IMG_0001", "bird")]
    root = tmp_path / "data"
    _images(root / "train", rows)
    lines = [f"{n.upper()}.PNG,{c}" for n, c in rows[2:12]] + ["img_0001.png,dog", "IMG_0001,bird"]
    (root / "train.csv").write_text("id,label\n" + "\n".join(lines) + "\n")
    s = load_dataset(str(root), stream=False).train
    assert len(s.labels) == 12 and s.class_names == ["bird", "cat", "dog"]
    assert all(seen == named for seen, named in _classes_by_pixels(s))


def test_a_table_not_read_beside_splits_is_told_the_training_splits_name(tmp_path):
    root = _kaggle(tmp_path / "data", ROWS)
    (root / "train.csv").rename(root / "annotations.csv")
    (root / "extra.csv").write_text("id,author\n0000,ann\n")  # which table is it?
    with pytest.raises(DataError) as e:
        load_dataset(str(root), stream=False)
    assert str(e.value).endswith(
        "(the labels in annotations.csv are not read: a table of labels is read as train.csv "
        "beside train/, or as the only table in train/ or here)"
    )


@pytest.mark.parametrize("sep", [",", " "])
def test_a_txt_table_not_read_beside_splits_is_named_and_prose_is_not(tmp_path, sep):
    root = _kaggle(tmp_path / "data", ROWS)
    (root / "train.csv").unlink()
    (root / "annotations.txt").write_text("".join(f"{n}.png{sep}{c}\n" for n, c in ROWS))
    (root / "README.txt").write_text("Photos of pets, 2019.\nBy Ann, Bo and Cy.\n")
    with pytest.raises(DataError) as e:
        load_dataset(str(root), stream=False)
    assert str(e.value).endswith(
        "(the labels in annotations.txt are not read: a table of labels is read as train.txt "
        "beside train/, or as the only table in train/ or here)"
    )


def test_a_folder_named_images_takes_the_training_table_beside_it(tmp_path):
    # Plant Pathology 2020's images/ given itself: Train_<i> and Test_<i> are no classes.
    root = tmp_path / "plant"
    _images(root / "images", [(f"Train_{n}", c) for n, c in ROWS] + [("Test_0", "")])
    (root / "train.csv").write_text(
        "image_id,label\n" + "".join(f"Train_{n},{c}\n" for n, c in ROWS)
    )
    (root / "test.csv").write_text("image_id\nTest_0\n")
    s = load_dataset(str(root / "images"), stream=False).train
    assert s.class_names == ["bird", "cat", "dog"] and len(s.labels) == 12
    assert all(seen == named for seen, named in _classes_by_pixels(s))


def test_a_table_read_for_a_column_headed_as_classes_says_it_has_none(tmp_path):
    from resnetlab.data.tables import read_label_table

    _images(tmp_path / "photos", ROWS[:2])
    table = tmp_path / "photos" / "info.csv"
    table.write_text("file,author\n0000.png,ann\n0001.png,bo\n")
    paths = sorted(str(p) for p in (tmp_path / "photos").glob("*.png"))
    with pytest.raises(DataError) as e:
        read_label_table(tmp_path / "photos", table, paths, headed=True)
    assert str(e.value) == f"{table}: no column of it is headed as classes are (label, class...)"


def test_an_image_given_no_class_in_one_row_and_a_class_in_another_is_kept_unnoted(tmp_path):
    root = _kaggle(tmp_path / "data", ROWS)
    table = root / "train.csv"
    table.write_text(table.read_text() + "0000,\n0001,\n")
    s = load_dataset(str(root), stream=False).train
    assert len(s.labels) == 12
    assert not [n for n in s.notes if "given no class" in n or "does not list" in n]


def test_a_table_of_the_images_under_another_suffix_says_so(tmp_path):
    # The photos converted from JPEG to PNG after the table was written: not "names none".
    root = tmp_path / "data"
    _images(root / "train", ROWS)
    lines = ["file,label"] + [f"{n}.jpg,{c}" for n, c in ROWS]
    (root / "train" / "labels.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as e:
        load_dataset(str(root / "train"), stream=False)
    assert str(e.value) == (
        f"{root / 'train' / 'labels.csv'}: it names the images with another suffix (0000.jpg "
        f"for 0000.png); write their names as they are in {root / 'train'}"
    )


def test_a_table_in_a_folder_of_its_own_name_is_read_and_the_folder_is_no_split(tmp_path):
    # Windows's "Extract All" of Kaggle's train.csv.zip: train.csv/train.csv beside train/.
    root = _kaggle(tmp_path / "data", ROWS)
    (root / "train.csv").rename(root / "table")
    (root / "train.csv").mkdir()
    (root / "table").rename(root / "train.csv" / "train.csv")
    s = load_dataset(str(root), stream=False).train
    assert s.class_names == ["bird", "cat", "dog"] and len(s.labels) == 12
    assert all(seen == named for seen, named in _classes_by_pixels(s))
    ignored = f"folders in {root} other than the splits ignored: test (images in no class folder)"
    assert ignored in s.notes
    # Without the table in it, it is no split either: a folder of no images, named so.
    (root / "train.csv" / "train.csv").unlink()
    with pytest.raises(DataError) as e:
        load_dataset(str(root), stream=False)
    assert "look like splits" not in str(e.value)
    assert str(e.value).startswith(f"{root / 'train.csv'}: ")


def test_a_table_not_read_beside_splits_is_the_labels_one_never_a_submission(tmp_path):
    # Kaggle's sample_submission.csv comes first by name, but holds the test images' ids.
    root = _kaggle(tmp_path / "data", ROWS)
    (root / "train.csv").rename(root / "y_train.csv")
    (root / "sample_submission.csv").write_text("id,label\nt0,cat\n")
    (root / "about.csv").write_text("author,year\nann,2024\n")
    with pytest.raises(DataError) as e:
        load_dataset(str(root), stream=False)
    assert str(e.value).endswith(
        "(the labels in y_train.csv are not read: a table of labels is read as train.csv "
        "beside train/, or as the only table in train/ or here)"
    )
    (root / "y_train.csv").unlink()
    (root / "about.csv").unlink()
    with pytest.raises(DataError) as e:
        load_dataset(str(root), stream=False)
    assert "sample_submission" not in str(e.value)
    # Nor does one label the images it is beside, as the only table there.
    (root / "sample_submission.csv").rename(root / "test" / "sample_submission.csv")
    with pytest.raises(DataError) as e:
        load_dataset(str(root / "test"), stream=False)
    assert "sample_submission" not in str(e.value)


@pytest.mark.parametrize(
    "name, text, encoding",
    [
        ("train/labels.txt", "id\tlabel\r\n{rows}", "utf-16"),  # Excel's "Unicode Text"
        ("train.txt", "{rows}", "utf-8"),  # comma-separated, no header
    ],
)
def test_a_txt_table_that_names_the_images_labels_them(tmp_path, name, text, encoding):
    root = tmp_path / "data"
    _images(root / "train", ROWS)
    sep = "\t" if "\t" in text else ","
    rows = "".join(f"{n}{sep}{c}\r\n" for n, c in ROWS)
    (root / name).write_bytes(text.format(rows=rows).encode(encoding))
    (root / "README.txt").write_text("Photos of pets, 2019.\nBy Ann, Bo and Cy.\n")
    s = load_dataset(str(root), stream=False).train
    assert s.class_names == ["bird", "cat", "dog"] and len(s.labels) == 12
    assert all(seen == named for seen, named in _classes_by_pixels(s))
    assert f"classes from {name.split('/')[-1]}: column " in " ".join(s.notes)
    assert [n for n in s.notes if "README" in n] == [
        "1 file that is not an image ignored (README.txt)"
    ]


@pytest.mark.parametrize(
    "name, header, sep",
    [
        ("train.txt", "", " "),  # `name label` a line, as many data sets' labels are
        ("train.txt", "filename label\n", "   "),  # a header, the cells aligned by spaces
        ("train/labels.csv", "", " "),  # a .csv of spaces reads as a table of commas does
    ],
)
def test_a_table_of_cells_separated_by_spaces_labels_the_images(tmp_path, name, header, sep):
    root = tmp_path / "data"
    _images(root / "train", ROWS)
    rows = "".join(f"{n}.png{sep}{c}\n" for n, c in ROWS)
    (root / name).write_text(header + rows)
    s = load_dataset(str(root), stream=False).train
    assert s.class_names == ["bird", "cat", "dog"] and len(s.labels) == 12
    assert all(seen == named for seen, named in _classes_by_pixels(s))
    said = "column 2, the files in column 1" if not header else "column 'label', the files in"
    assert f"classes from {name.split('/')[-1]}: {said}" in " ".join(s.notes)


def test_a_table_of_spaces_whose_classes_are_of_several_words_splits_at_the_first(tmp_path):
    folder = tmp_path / "pets"
    _images(folder, [(f"{i}", "") for i in range(6)])
    breeds = ["golden retriever", "pug", "cairn terrier"]
    (folder / "labels.txt").write_text("".join(f"{i}.png {breeds[i % 3]}\n" for i in range(6)))
    s = load_dataset(str(folder), stream=False).train
    assert s.class_names == ["cairn terrier", "golden retriever", "pug"]
    assert s.labels.tolist() == [1, 2, 0, 1, 2, 0]


def _cub(root: Path) -> Path:
    """CUB-200-2011 in small: images/<class>/<file>.jpg, its .txt tables of ids beside it
    (images.txt, image_class_labels.txt, classes.txt, train_test_split.txt), and folders of
    other files (parts/, attributes/)."""
    classes = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
    lines = []
    for name in classes:
        _images(root / "images" / name, [(f"{name[4:]}_{i:04d}", "") for i in range(3)], ".jpg")
        lines += [f"{name}/{name[4:]}_{i:04d}.jpg" for i in range(3)]
    ids = range(1, len(lines) + 1)
    tables = {
        "images.txt": [f"{i} {line}" for i, line in zip(ids, lines, strict=True)],
        "image_class_labels.txt": [f"{i} {(i - 1) // 3 + 1}" for i in ids],
        "classes.txt": [f"{c + 1} {name}" for c, name in enumerate(classes)],
        "train_test_split.txt": [f"{i} {int(i % 3 != 0)}" for i in ids],
        "bounding_boxes.txt": [f"{i} 1.0 2.0 5.0 6.0" for i in ids],
        "parts/parts.txt": ["1 back", "2 beak"],
        "attributes/certainties.txt": ["1 not visible", "2 guessing"],
    }
    for name, rows in tables.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("\n".join(rows) + "\n")
    (root / "README").write_text("CUB-200-2011\n")
    return root


def test_cub_200_2011s_images_are_read_by_their_class_folders(tmp_path):
    root = _cub(tmp_path / "CUB_200_2011")
    s = load_dataset(str(root / "images"), stream=False).train
    assert s.class_names == [
        "001.Black_footed_Albatross",
        "002.Laysan_Albatross",
        "003.Sooty_Albatross",
    ]
    assert s.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # Given its top folder, of tables by ids and folders of other files, it says to give
    # images/, whose folders are the classes.
    with pytest.raises(DataError) as e:
        load_dataset(str(root), stream=False)
    assert str(e.value).endswith(
        f"the class folders are in images/ beside it, a data set's folder of its images: give "
        f"{root / 'images'} as data"
    )


@pytest.mark.parametrize(
    "prose",
    [
        "Photos of pets, 2019.\nBy Ann, Bo and Cy.\n",
        "name\tnote\ncat_0\tthe first, 2019\n",  # a table of one image of six
        "\ufffe\x00binary",
        "",
    ],
)
def test_a_txt_file_that_is_no_table_of_the_images_is_neither_read_nor_refused(tmp_path, prose):
    folder = tmp_path / "signs"
    _images(folder, [(f"{c}_{i}", c) for i in range(3) for c in ("cat", "dog")])
    (folder / "README.txt").write_text(prose)
    s = load_dataset(str(folder), stream=False).train
    assert s.class_names == ["cat", "dog"] and len(s.labels) == 6
    assert s.notes[:2] == [
        "classes from the file names (the text before the first '_')",
        "1 file that is not an image ignored (README.txt)",
    ]
    # Beside a table in the folder, it is no second table: labels.csv is the only one.
    (folder / "labels.csv").write_text(
        "".join(f"{c}_{i}.png,{c}\n" for i in range(3) for c in ("cat", "dog"))
    )
    s = load_dataset(str(folder), stream=False).train
    assert s.class_names == ["cat", "dog"] and "classes from labels.csv" in " ".join(s.notes)


def test_each_table_is_read_once_a_load(tmp_path, monkeypatch):
    # Kaggle's layout, where train.csv tells a split of train/ and then labels it; and a
    # labelling tool's export, where annotations.csv is what makes images/ no class.
    kaggle = _kaggle(tmp_path / "data", ROWS)
    export = tmp_path / "export"
    for i, (n, c) in enumerate(ROWS):
        _images(export / "images" / f"batch{i % 2}", [(n, c)])
    lines = [f"images/batch{i % 2}/{n}.png,{c}" for i, (n, c) in enumerate(ROWS)]
    (export / "annotations.csv").write_text("filename,class\n" + "\n".join(lines) + "\n")
    reads = []
    read_bytes = Path.read_bytes

    def counted(path):
        if path.suffix == ".csv":
            reads.append(path.name)
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", counted)
    load_dataset(str(kaggle), stream=False)
    load_dataset(str(export), stream=False)
    assert reads == ["train.csv", "annotations.csv"]
    # Loaded again, it is read again: an edited table is seen.
    load_dataset(str(kaggle), stream=False)
    assert reads == ["train.csv", "annotations.csv", "train.csv"]


def _splits_of_classes(root, rows):
    """root/train|val|test/<class>/<id>.png, no table."""
    for split in ("train", "val", "test"):
        for n, c in rows:
            _images(root / split / c, [(n, c)])
    return root


@pytest.mark.parametrize("layout", [_kaggle, _splits_of_classes])
def test_each_folder_is_listed_once_a_load(tmp_path, monkeypatch, layout):
    # Which folders are splits, which table labels them, the classes it gives, the split's
    # images: each looks at the same folders, listed once for all of them (a folder of
    # thousands of images on a network drive is slow to list).
    root = layout(tmp_path / "data", ROWS)
    listings = Counter()
    scandir = os.scandir

    def counted(path="."):
        listings[os.fspath(path)] += 1
        return scandir(path)

    monkeypatch.setattr(os, "scandir", counted)
    d = load_dataset(str(root), stream=False, warn_copies=False)
    assert d.train.class_names == ["bird", "cat", "dog"] and len(d.train.labels) == 12
    assert str(root / "train") in listings
    assert {f: n for f, n in listings.items() if n > 1} == {}


def test_a_second_load_lists_the_folder_again(tmp_path):
    root = _kaggle(tmp_path / "data", ROWS)
    assert len(load_dataset(str(root), stream=False).train.labels) == 12
    _images(root / "train", [("added", "cat")])
    with (root / "train.csv").open("a") as table:
        table.write("added,cat\n")
    assert len(load_dataset(str(root), stream=False).train.labels) == 13


NUMBERS = {"bird": "0", "cat": "1", "dog": "2"}


@pytest.mark.parametrize(
    "header, row, says",
    [
        # Stanford-dogs-like: a label numbering the breed names; the names are read.
        (
            "id,label,breed",
            "{n},{k},{c}",
            "column 'breed' (also headed as classes: 'label', which classes them alike)",
        ),
        # A column given twice (a join that repeated it): the first is read, and said.
        (
            "id,label,label",
            "{n},{c},{c}",
            "column 'label' (column 2) (also headed as classes: 'label' (column 3), which "
            "classes them alike)",
        ),
    ],
)
def test_of_columns_headed_as_classes_that_class_alike_one_is_read_and_both_named(
    tmp_path, header, row, says
):
    root = _kaggle(tmp_path / "data", ROWS)
    lines = [row.format(n=n, c=c, k=NUMBERS[c]) for n, c in ROWS]
    (root / "train.csv").write_text(header + "\n" + "\n".join(lines) + "\n")
    s = load_dataset(str(root), stream=False).train
    assert s.class_names == ["bird", "cat", "dog"]
    assert all(seen == named for seen, named in _classes_by_pixels(s))
    assert f"classes from train.csv: {says}, the files in 'id'" in s.notes


@pytest.mark.parametrize(
    "header, shown",
    [
        ("image_name,diagnosis,target", "'diagnosis' and 'target'"),  # ISIC 2020's
        ("image_name,label,label", "'label' (column 2) and 'label' (column 3)"),
    ],
)
def test_columns_headed_as_classes_that_class_differently_are_refused_naming_them(
    tmp_path, header, shown
):
    root = _kaggle(tmp_path / "data", ROWS)
    lines = [f"{n},{c},{int(c == 'cat')}" for n, c in ROWS]
    (root / "train.csv").write_text(header + "\n" + "\n".join(lines) + "\n")
    with pytest.raises(DataError) as e:
        load_dataset(str(root), stream=False)
    assert str(e.value) == (
        f"{root / 'train.csv'}: columns {shown} are both headed as classes are, and class the "
        "images differently; rename the header of each one not to train on"
    )


def test_across_folders_columns_that_class_differently_are_refused_not_left_for_folders(
    tmp_path,
):
    # HAM10000's two folders: they are no classes, whichever column the table's are in.
    root = tmp_path / "ham"
    for i, (n, c) in enumerate(ROWS):
        _images(root / f"HAM10000_images_part_{1 + i // 6}", [(f"ISIC_{n}", c)])
    lines = [f"ISIC_{n},{c},{int(c == 'cat')}" for n, c in ROWS]
    (root / "metadata.csv").write_text("image_id,dx,target\n" + "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"columns 'dx' and 'target' are both headed as classes"):
        load_dataset(str(root), stream=False)


def test_numbered_classes_take_their_names_from_a_map_beside_the_table(tmp_path):
    # Kaggle's cassava: train.csv of 0..4, label_num_to_disease_map.json naming them.
    rows = [(n, NUMBERS[c]) for n, c in ROWS]
    root = tmp_path / "cassava"
    _images(root / "train_images", ROWS)
    (root / "train.csv").write_text("image_id,label\n" + "".join(f"{n}.png,{k}\n" for n, k in rows))
    names = {"0": "Bird (B)", "1": "Cat (C)", "2": "Dog (D)"}
    (root / "label_num_to_disease_map.json").write_text(json.dumps(names))
    (root / "config.json").write_text('{"lr": 0.1}')  # no map: noted as a stray file
    s = load_dataset(str(root), stream=False).train
    assert s.class_names == ["Bird (B)", "Cat (C)", "Dog (D)"]  # in the order of the numbers
    kind = dict(zip(names.values(), ["bird", "cat", "dog"], strict=True))
    assert all(seen == kind[named] for seen, named in _classes_by_pixels(s))
    assert (
        "class names from label_num_to_disease_map.json: 0 Bird (B), 1 Cat (C), 2 Dog (D), in "
        "that order"
    ) in s.notes
    assert "1 file that is not an image ignored (config.json)" in s.notes
    # A map of more numbers names the table's, and says which it has no images of.
    (root / "label_num_to_disease_map.json").write_text(json.dumps({**names, "3": "Eel"}))
    s = load_dataset(str(root), stream=False).train
    assert s.class_names == ["Bird (B)", "Cat (C)", "Dog (D)"]
    assert (
        "class names from label_num_to_disease_map.json: 0 Bird (B), 1 Cat (C), 2 Dog (D), in "
        "that order; it also names 3 Eel, of which train.csv lists no image"
    ) in s.notes
    # A map without one of the table's numbers is not taken, and said so.
    (root / "label_num_to_disease_map.json").write_text(json.dumps({"0": "Bird", "1": "Cat"}))
    s = load_dataset(str(root), stream=False).train
    assert s.class_names == ["0", "1", "2"]
    assert (
        "label_num_to_disease_map.json not taken for the class names: its numbers are 0, 1, "
        "the table's 0, 1, 2"
    ) in s.notes


def test_a_number_has_the_maps_name_in_a_split_without_images_of_some_numbers(tmp_path):
    # cassava with a val/ split of its own, val.csv beside train.csv: no images of class 2
    root = tmp_path / "cassava"
    val_rows = [(n, c) for n, c in ROWS if c != "dog"]
    for split, rows in (("train", ROWS), ("val", val_rows)):
        _images(root / split, rows)
        lines = "".join(f"{n}.png,{NUMBERS[c]}\n" for n, c in rows)
        (root / f"{split}.csv").write_text("image_id,label\n" + lines)
    names = {"0": "Bird (B)", "1": "Cat (C)", "2": "Dog (D)"}
    (root / "label_num_to_disease_map.json").write_text(json.dumps(names))
    with pytest.warns(DataWarning, match=r"no images of 1 training class \(Dog \(D\)\)"):
        data = load_dataset(str(root), stream=False, warn_copies=False)
    assert data.train.class_names == data.val.class_names == ["Bird (B)", "Cat (C)", "Dog (D)"]
    kind = dict(zip(names.values(), ["bird", "cat", "dog"], strict=True))
    assert all(seen == kind[named] for seen, named in _classes_by_pixels(data.val))
    assert (
        "class names from label_num_to_disease_map.json: 0 Bird (B), 1 Cat (C), in that order; "
        "it also names 2 Dog (D), of which val.csv lists no image"
    ) in data.val.notes


@pytest.mark.parametrize(
    "train_table, val_table, map_in, val_note",
    [
        # the map beside train.csv at the top, val/ holding its own labels.csv
        ("train.csv", "val/labels.csv", ".", "cassava/label_map.json"),
        # each split's labels.csv inside it, the map at the top
        ("train/labels.csv", "val/labels.csv", ".", "cassava/label_map.json"),
        # the map beside train/'s own labels.csv, val.csv at the top
        ("train/labels.csv", "val.csv", "train", "train/label_map.json"),
    ],
)
def test_one_map_names_the_numbers_of_every_split_wherever_its_table_is(
    tmp_path, train_table, val_table, map_in, val_note
):
    root = tmp_path / "cassava"
    tables = {"train": train_table, "val": val_table}
    for split, rows in (("train", ROWS), ("val", [(f"v{n}", c) for n, c in ROWS])):
        _images(root / split, rows)
        lines = "".join(f"{n}.png,{NUMBERS[c]}\n" for n, c in rows)
        (root / tables[split]).write_text("image_id,label\n" + lines)
    names = {"0": "Bird (B)", "1": "Cat (C)", "2": "Dog (D)"}
    (root / map_in / "label_map.json").write_text(json.dumps(names))
    data = load_dataset(str(root), stream=False, warn_copies=False)
    assert data.train.class_names == data.val.class_names == ["Bird (B)", "Cat (C)", "Dog (D)"]
    kind = dict(zip(names.values(), ["bird", "cat", "dog"], strict=True))
    assert all(seen == kind[named] for seen, named in _classes_by_pixels(data.val))
    said = f"class names from {val_note}: 0 Bird (B), 1 Cat (C), 2 Dog (D), in that order"
    assert said in data.val.notes
    notes = [*data.train.notes, *data.val.notes]
    assert not [n for n in notes if "ignored" in n and "label_map.json" in n]


def test_a_map_above_a_split_of_its_own_table_names_its_numbers(tmp_path):
    # cassava/train/labels.csv, no other split, the map at the top of the data set
    root = tmp_path / "cassava"
    _images(root / "train", ROWS)
    lines = "".join(f"{n}.png,{NUMBERS[c]}\n" for n, c in ROWS)
    (root / "train" / "labels.csv").write_text("image_id,label\n" + lines)
    (root / "label_map.json").write_text(json.dumps({"0": "Bird", "1": "Cat", "2": "Dog"}))
    s = load_dataset(str(root), stream=False, warn_copies=False).train
    assert s.class_names == ["Bird", "Cat", "Dog"]
    assert "class names from cassava/label_map.json: 0 Bird, 1 Cat, 2 Dog, in that order" in (
        s.notes
    )


@pytest.mark.parametrize(
    "table, text",
    [
        ("labels.csv", "id,label\n" + "".join(f"{n},{c}\n" for n, c in ROWS)),  # train's
        ("test.csv", "id\nt0\nt1\nt2\n"),  # Kaggle's test.csv: the test images' ids alone
        ("train.csv", None),  # Kaggle's train.csv, named for train/, alone beside test/
    ],
)
def test_eval_on_a_test_folder_the_table_beside_it_does_not_label_says_it_is_unlabelled(
    tmp_path, capsys, table, text
):
    import resnetlab

    root = _kaggle(tmp_path / "data", ROWS)
    if text is not None:
        (root / "train.csv").unlink()
        (root / table).write_text(text)
    model = tmp_path / "m.safetensors"
    resnetlab.save_model(
        resnetlab.create_model("resnet8", num_classes=3),
        model,
        input_size=8,
        class_names=["bird", "cat", "dog"],
    )
    assert main(["eval", str(model), "--data", str(root / "test")]) != 0
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            f"{root / 'test'}: its images are not labelled by {root / table} (an unlabelled test "
            f"set, of no classes to score or train on); resnetlab predict MODEL {root / 'test'} "
            "labels such images"
        )
    )


def test_a_txt_file_beside_the_folder_is_read_only_where_named_as_its_table(tmp_path, monkeypatch):
    # --data ~/photos: the .txt files in ~ are no tables of photos/ unless named for them.
    folder = tmp_path / "photos"
    _images(folder, [(f"{c}_{i}", c) for i in range(3) for c in ("cat", "dog")])
    (tmp_path / "diary.txt").write_text("cat_0.png,cat\n" * 3)
    (folder / "README.txt").write_text("Photos of pets, 2019.\n")  # read: it could be one
    reads = []
    read_bytes = Path.read_bytes

    def counted(path):
        if path.suffix == ".txt":
            reads.append(path.name)
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", counted)
    assert load_dataset(str(folder), stream=False).train.class_names == ["cat", "dog"]
    assert reads == ["README.txt"]
