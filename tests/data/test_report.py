import json
import warnings
import zipfile

from PIL import Image

from resnetlab.analysis import fonts
from resnetlab.cli import main
from resnetlab.data.report import contact_sheet, describe
from resnetlab.errors import DataWarning

from .conftest import noise, write_tree


def test_inspect_json_counts_sizes_and_sheet(tmp_path, capsys):
    for split, n in (("train", 3), ("test", 1)):
        write_tree(
            tmp_path / "pets" / split,
            {"cat": [noise(i) for i in range(n)], "dog": [noise(i, (12, 8)) for i in range(n + 1)]},
        )
    sheet = tmp_path / "out" / "sheet.png"
    assert main(["data", "inspect", str(tmp_path / "pets"), "--out", str(sheet), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["format"] == "image-folder" and summary["class_names"] == ["cat", "dog"]
    assert list(summary["splits"]) == ["train", "test"]
    train = summary["splits"]["train"]
    assert train["images"] == 7 and train["class_counts"] == {"cat": 3, "dog": 4}
    assert train["image_size"] == [8, 12] and train["streamed"] is False  # dog's size wins 4:3
    assert any("mixed image sizes: 12x8 (4), 8x8 (3)" in n for n in train["notes"])
    assert summary["splits"]["test"]["class_counts"] == {"cat": 1, "dog": 2}
    assert summary["sheet"] == str(sheet)
    with Image.open(sheet) as im:
        assert im.format == "PNG" and im.width > 300 and im.height > 100


def test_class_names_no_font_has_are_one_warning_naming_the_fix(
    tmp_path, monkeypatch, utf8_file_names
):
    monkeypatch.setattr(fonts, "installed_families", set)  # DejaVu Sans alone: no CJK
    monkeypatch.setattr(fonts, "_told", False)  # said once per process: as in a new one
    root = write_tree(tmp_path / "pets", {"猫": [noise(0)], "犬": [noise(1)]})
    _, splits = describe(str(root))
    (split,) = splits.values()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        contact_sheet(split, tmp_path / "sheet.png", per_class=1, title="pets")
    # Not matplotlib's "Glyph ... missing from font(s)", one per character (older matplotlib
    # adds pyparsing's deprecation warnings, which are no concern here).
    (warning,) = [w for w in caught if not issubclass(w.category, DeprecationWarning)]
    assert warning.category is DataWarning
    assert str(warning.message).startswith("some characters in the figure's text (")
    assert "猫" in str(warning.message) and "犬" in str(warning.message)
    assert "fonts-noto-cjk" in str(warning.message)
    assert (tmp_path / "sheet.png").is_file()


def test_inspect_table_on_the_real_signs_file(shared_data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = shared_data / "signs" / "test_signs.h5"
    assert main(["data", "inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "signs-h5, 6 classes" in out and "120" in out and "64x64" in out
    assert "│ test  │" in out  # the file's one split is its test_set_*, and is called so
    assert "contact sheet: runs/test_signs.h5-samples.png" in out
    assert (tmp_path / "runs" / "test_signs.h5-samples.png").is_file()


def test_inspect_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["data", "inspect", str(tmp_path / "missing"), "--no-sheet"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path / 'missing'}: no such file or folder\n"


def test_inspect_counts_one_class_in_the_singular(tmp_path, capsys):
    root = write_tree(tmp_path / "cats", {"cat": [noise(i) for i in range(3)]})
    assert main(["data", "inspect", str(root), "--no-sheet"]) == 0
    assert capsys.readouterr().out.startswith(f"{root}: image-folder, 1 class\n")


def test_inspect_out_a_folder_is_refused_before_the_images_are_read(tmp_path, capsys, monkeypatch):
    root = write_tree(tmp_path / "pets", {"cat": [noise(0)], "dog": [noise(1)]})
    folder = tmp_path / "sheets"
    folder.mkdir()

    def read(*args, **kwargs):
        raise AssertionError("the images were read before --out was checked")

    monkeypatch.setattr("resnetlab.data.report.describe", read)
    assert main(["data", "inspect", str(root), "--out", str(folder)]) == 2
    assert capsys.readouterr().err == (
        f"error: --out {folder} names a folder; give a file name, e.g. {folder}/out.png\n"
    )


def test_inspect_prints_warnings_as_lines(tmp_path, capsys):
    root = write_tree(
        tmp_path / "d", {"a": [noise(i) for i in range(10)], "b": [noise(i) for i in range(10, 20)]}
    )
    (root / "b" / "bad.png").write_bytes(b"\x89PNG broken")
    assert main(["data", "inspect", str(root), "--no-sheet", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["sheet"] is None  # there, as null, with --no-sheet
    err = err.splitlines()
    assert err[0].startswith(f"warning: {root / 'b' / 'bad.png'}: skipped, cannot read it")
    assert err[1] == f"warning: {root}: skipped 1 of 21 images that could not be read"


def test_inspect_json_names_each_skipped_file_decoded_and_cached(tmp_path, capsys, monkeypatch):
    root = write_tree(
        tmp_path / "d", {"a": [noise(i) for i in range(10)], "b": [noise(i) for i in range(10, 20)]}
    )
    bad = root / "b" / "bad.png"
    bad.write_text("not an image")

    def inspect() -> dict:
        assert main(["data", "inspect", str(root), "--no-sheet", "--json"]) == 0
        (split,) = json.loads(capsys.readouterr().out)["splits"].values()
        return split

    decoded = inspect()
    (skipped,) = decoded["skipped"]
    assert (
        skipped["path"] == str(bad) and skipped["reason"] == "not an image format Pillow can read"
    )

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again: the second run must come from the cache")

    monkeypatch.setattr("resnetlab.data.folders.decode_files", no_decoding)
    cached = inspect()
    assert cached["skipped"] == decoded["skipped"] and cached["images"] == 20


def test_inspect_json_names_a_skipped_file_of_an_archive_by_the_archive(tmp_path, capsys):
    # As the warning names it (photos.zip/photos/b/bad.png), not by its extracted copy.
    root = write_tree(
        tmp_path / "d", {"a": [noise(i) for i in range(10)], "b": [noise(i) for i in range(10, 20)]}
    )
    (root / "b" / "bad.png").write_text("not an image")
    archive = tmp_path / "d.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(root.rglob("*.png")):
            zf.write(path, path.relative_to(tmp_path))
    assert main(["data", "inspect", str(archive), "--no-sheet", "--json"]) == 0
    (split,) = json.loads(capsys.readouterr().out)["splits"].values()
    assert [s["path"] for s in split["skipped"]] == [str(archive / "d" / "b" / "bad.png")]


def test_a_folder_and_an_archive_of_it_get_a_contact_sheet_each(tmp_path, capsys, monkeypatch):
    """Both were runs/photos-samples.png: inspecting one overwrote the other's sheet."""
    monkeypatch.chdir(tmp_path)
    root = write_tree(tmp_path / "photos", {"cat": [noise(0)], "dog": [noise(1)]})
    with zipfile.ZipFile(tmp_path / "photos.zip", "w") as zf:
        for path in sorted(root.rglob("*.png")):
            zf.write(path, path.relative_to(tmp_path))
    sheets = []
    for spec in ("photos", "photos.zip"):
        assert main(["data", "inspect", spec, "--json"]) == 0
        sheets.append(json.loads(capsys.readouterr().out)["sheet"])
    assert sheets == ["runs/photos-samples.png", "runs/photos.zip-samples.png"]
    assert all((tmp_path / sheet).is_file() for sheet in sheets)


def test_inspect_says_the_unreadable_count_once(tmp_path, capsys):
    root = write_tree(
        tmp_path / "d", {"a": [noise(i) for i in range(10)], "b": [noise(i) for i in range(10, 20)]}
    )
    (root / "b" / "bad.png").write_bytes(b"\x89PNG broken")
    assert main(["data", "inspect", str(root), "--no-sheet"]) == 0
    captured = capsys.readouterr()
    both = captured.out + captured.err
    assert both.count("skipped 1 of 21 images") == 1


def test_inspect_names_a_class_far_smaller_than_the_others(tmp_path, capsys):
    root = write_tree(tmp_path / "d", {"a": [noise(i) for i in range(10)], "b": [noise(10)]})
    assert main(["data", "inspect", str(root), "--no-sheet", "--json"]) == 0
    (split,) = json.loads(capsys.readouterr().out)["splits"].values()
    assert split["notes"] == [
        "class 'b' has 1 image, 'a' 10: a class this small is barely learnt; add images of it, "
        "weigh the classes equally (train --class-weights balanced), or check that its images "
        "are sorted or named right"
    ]
    write_tree(tmp_path / "d", {"c": [noise(20)], "d": [noise(21), noise(22)]})  # each named
    assert main(["data", "inspect", str(root), "--no-sheet", "--json"]) == 0
    (split,) = json.loads(capsys.readouterr().out)["splits"].values()
    assert split["notes"] == [
        "2 classes have a tenth of the images of 'a' (10) or fewer: 'b' 1, 'c' 1; a class "
        "this small is barely learnt; add images of them, weigh the classes equally (train "
        "--class-weights balanced), or check that their images are sorted or named right"
    ]
    for name in "cd":
        for file in (root / name).iterdir():
            file.unlink()
        (root / name).rmdir()
    write_tree(tmp_path / "d", {"b": [noise(i) for i in range(11, 13)]})  # 2 of 10: no note
    assert main(["data", "inspect", str(root), "--no-sheet", "--json"]) == 0
    (split,) = json.loads(capsys.readouterr().out)["splits"].values()
    assert split["notes"] == []


def test_inspect_counts_test_images_that_are_copies_of_training_images(tmp_path, capsys):
    write_tree(tmp_path / "d" / "train", {"a": [noise(i) for i in range(3)], "b": [noise(3)]})
    write_tree(tmp_path / "d" / "test", {"a": [noise(2), noise(9)], "b": [noise(8)]})
    assert main(["data", "inspect", str(tmp_path / "d"), "--no-sheet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["notes"] == [
        "1 of the 3 test images is a copy of a training image (the same pixels; by class: "
        "a 1): scored as unseen though the model trains on it, which flatters the test "
        "accuracy; remove the copies from one side"
    ]


def test_inspect_loads_large_photos_scaled_down_and_still_finds_unreadable_ones(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr("resnetlab.data.report.INSPECT_MAX_SIDE", 32)  # as for 4032x3024 at 512
    root = write_tree(
        tmp_path / "d",
        {
            "a": [noise(i, (80, 60)) for i in range(10)],
            "b": [noise(i, (80, 60)) for i in range(10, 19)] + [noise(19, (100, 50))],
        },
    )
    (root / "b" / "bad.png").write_bytes(b"\x89PNG broken")
    assert main(["data", "inspect", str(root), "--no-sheet", "--json"]) == 0
    captured = capsys.readouterr()
    (split,) = json.loads(captured.out)["splits"].values()
    assert split["image_size"] == [24, 32] and split["images"] == 20  # 80x60 scaled to 32x24
    assert split["notes"][0] == (  # one note: the size loaded at, and why
        "mixed image sizes: 80x60 (19), 100x50 (1) (from a sample); all loaded at 32x24, "
        "scaled down from the most common, 80x60 (centre-cropped where the shape differs: "
        "--resize; --input-size loads them at another size)"
    )
    assert not any("80x60" in note for note in split["notes"][1:])
    assert "skipped 1 of 21 images that could not be read" in captured.err
    # Small images are loaded at their own size, and --input-size at the size it gives.
    assert main(["data", "inspect", str(root), "--no-sheet", "--json", "--input-size", "40"]) == 0
    (split,) = json.loads(capsys.readouterr().out)["splits"].values()
    assert split["image_size"] == [40, 40]
    monkeypatch.setattr("resnetlab.data.report.INSPECT_MAX_SIDE", 80)
    assert main(["data", "inspect", str(root), "--no-sheet", "--json"]) == 0
    (split,) = json.loads(capsys.readouterr().out)["splits"].values()
    assert split["image_size"] == [60, 80]


def test_inspect_loads_photos_of_both_orientations_square_and_says_so_once(tmp_path, capsys):
    """Phone photos, some held upright and some not: the most common shape (portrait) would
    turn every landscape one into a portrait crop of its middle in the contact sheet; loaded
    square, each is cut alike, and one note says at which size."""
    root = write_tree(
        tmp_path / "photos",
        {
            "a": [noise(i, (1200, 1600)) for i in range(3)] + [noise(3, (1600, 1200))],
            "b": [noise(4, (1200, 1600)), noise(5, (1600, 1200)), noise(6, (1600, 1200))],
        },
        suffix=".jpg",
    )
    sheet = tmp_path / "sheet.png"
    assert main(["data", "inspect", str(root), "--out", str(sheet), "--json"]) == 0
    (split,) = json.loads(capsys.readouterr().out)["splits"].values()
    assert split["image_size"] == [512, 512]
    assert split["notes"] == [
        "mixed image sizes: 1200x1600 (4), 1600x1200 (3) (from a sample), portrait and "
        "landscape: all loaded square, at 512x512 (centre-cropped; --input-size loads them "
        "at another size)"
    ]
    with Image.open(sheet) as im:
        assert im.format == "PNG"
    # Small ones too: at the most common size's shorter side, not enlarged.
    small = write_tree(tmp_path / "small", {"a": [noise(7, (40, 30)), noise(8, (30, 40))]})
    assert main(["data", "inspect", str(small), "--no-sheet", "--json"]) == 0
    (split,) = json.loads(capsys.readouterr().out)["splits"].values()
    assert split["image_size"] == [30, 30]


def test_inspect_shows_classes_that_only_some_splits_have(tmp_path, capsys):
    # A test folder with a class training lacks, a val folder without one of training's
    # and one named in another case: every class gets a row, counted case aside as
    # training matches them, and the notes name the classes.
    root = tmp_path / "photos"
    write_tree(root / "train", {c: [noise(i) for i in range(3)] for c in ("bird", "cat", "dog")})
    write_tree(root / "val", {"Cat": [noise(5)], "dog": [noise(6)]})
    write_tree(root / "test", {c: [noise(7), noise(8)] for c in ("bird", "cat", "dog", "fish")})
    assert main(["data", "inspect", str(root), "--no-sheet"]) == 0
    out = capsys.readouterr().out
    rows = table_rows(out, columns=4)
    assert rows["bird"] == ["3", "0", "2"] and rows["cat"] == ["3", "1", "2"]
    assert rows["fish"] == ["0", "0", "2"] and "Cat" not in rows
    assert "note: the val split has no images of bird (classes of the train split)" in out
    assert "note: the test split has classes the train split lacks (fish)" in out


def test_inspect_counts_a_split_s_classes_as_training_matches_them(tmp_path, capsys):
    # Training's Cat and cat are two classes, and so are val's CAT and cat: cat is counted
    # as cat, and CAT, which training cannot match to one of them, is a class of its own
    # (it was counted under Cat and cat both, 6 validation images in a split of 4).
    root = tmp_path / "photos"
    write_tree(root / "train", {c: [noise(i)] * 2 for i, c in enumerate(["Cat", "cat", "dog"])})
    write_tree(root / "val", {"CAT": [noise(5)], "cat": [noise(6)] * 2, "dog": [noise(7)]})
    assert main(["data", "inspect", str(root), "--no-sheet"]) == 0
    out = capsys.readouterr().out
    rows = table_rows(out, columns=3)
    assert rows["Cat"] == ["2", "0"] and rows["cat"] == ["2", "2"]
    assert rows["dog"] == ["2", "1"] and rows["CAT"] == ["0", "1"]
    assert (
        "note: the val split has no images of Cat (classes of the train split); and classes "
        "the train split lacks (CAT): a model trained on it cannot score them"
    ) in out


def test_inspect_finds_copies_of_training_images_in_splits_of_another_size(tmp_path, capsys):
    # Without --input-size each split loads at its own size: training photos square at 30
    # px, validation ones at 50, so a photo copied from train/ into val/ went unsaid (train
    # warns of it); and a test/ without one of training's classes was not compared at all.
    root = tmp_path / "photos"
    shapes = [(40, 30), (30, 40)]  # portrait and landscape: loaded square
    write_tree(
        root / "train",
        {c: [noise(i + 2 * k, shapes[i]) for i in range(2)] for k, c in enumerate(["cat", "dog"])},
    )
    write_tree(
        root / "val",
        {
            c: [noise(10 + i + 2 * k, (60, 50)) for i in range(2)]
            for k, c in enumerate(["cat", "dog"])
        },
    )
    noise(11, (50, 60)).save(root / "val" / "dog" / "portrait.png")
    noise(2, shapes[0]).save(root / "val" / "dog" / "copy.png")  # train/dog/000.png
    write_tree(root / "test", {"cat": [noise(1, shapes[1])]})  # train/cat/001.png
    assert main(["data", "inspect", str(root), "--no-sheet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"]["train"]["image_size"] == [30, 30]
    assert summary["splits"]["val"]["image_size"] == [50, 50]
    assert summary["notes"][-2:] == [
        "1 of the 6 validation images is a copy of a training image (the same pixels; by "
        "class: dog 1): scored as unseen though the model trains on it, which flatters the "
        "validation accuracy; remove the copies from one side",
        "1 of the 1 test images is a copy of a training image (the same pixels; by class: cat "
        "1): scored as unseen though the model trains on it, which flatters the test accuracy; "
        "remove the copies from one side",
    ]
    # Training's images all landscape, at 40x30: val's, at 60x50, are not loaded again at a
    # size that is not square; the note says so, and how to compare them.
    for path in (root / "train").rglob("001.png"):
        noise(int(path.parent.name == "dog") * 2 + 1, shapes[0]).save(path)
    (root / "test" / "cat" / "000.png").unlink()
    (root / "test" / "cat").rmdir()
    (root / "test").rmdir()
    assert main(["data", "inspect", str(root), "--no-sheet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["notes"][-1] == (
        "copies of training images are not looked for in the val split, loaded at another "
        "size than the train split's 40x30; --input-size N loads every split at one size, and "
        "compares them"
    )


def test_inspect_refuses_to_write_its_contact_sheet_into_the_data_folder(
    tmp_path, monkeypatch, capsys
):
    # `resnetlab data inspect .` in the photo folder would write runs/<name>-samples.png
    # there, and the next run would read it as an image of a class "runs".
    root = write_tree(tmp_path / "photos", {"cat": [noise(0)], "dog": [noise(1)]})
    monkeypatch.chdir(root)
    assert main(["data", "inspect", "."]) == 2
    assert capsys.readouterr().err == (
        "error: the contact sheet runs/photos-samples.png would be inside the data folder ., "
        "where the next run would read it as an image: give --out outside it, or --no-sheet\n"
    )
    assert sorted(p.name for p in root.iterdir()) == ["cat", "dog"]
    assert main(["data", "inspect", ".", "--out", str(tmp_path / "sheet.png")]) == 0
    assert main(["data", "inspect", ".", "--no-sheet"]) == 0
    assert sorted(p.name for p in root.iterdir()) == ["cat", "dog"]
    # Run in one of its class folders, the likelier mistake is named first.
    monkeypatch.chdir(root / "cat")
    capsys.readouterr()
    assert main(["data", "inspect", "."]) == 2
    assert capsys.readouterr().err == (
        "error: cat/ looks like one of the class folders in .. (cat, dog); if it is, give the "
        "folder that holds them: ../; else the contact sheet runs/cat-samples.png would be "
        "inside the data folder ., where the next run would read it as an image: give --out "
        "outside it, or --no-sheet\n"
    )
    assert sorted(p.name for p in (root / "cat").iterdir()) == ["000.png"]


def table_rows(out: str, *, columns: int) -> dict[str, list[str]]:
    """The rows of the class table printed in ``out``, by class: each split's count."""
    return {
        cells[0]: cells[1:]
        for line in out.splitlines()
        if len(cells := [c.strip() for c in line.strip("│┃ ").split("│")]) == columns
    }


def test_inspect_of_a_run_folder_names_the_run_folder(tmp_path, monkeypatch, capsys):
    # `resnetlab data inspect .` in a run folder: the mistake is the data, not the place the
    # contact sheet would go (inside it, as for any data folder).
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "best.safetensors").write_bytes(b"")
    monkeypatch.chdir(run)
    assert main(["data", "inspect", "."]) == 2
    assert capsys.readouterr().err == (
        "error: . is a training run's folder, not a data set; give the images it trained on "
        "(its config.json names them), or start from its weights: train --pretrained .\n"
    )
    assert sorted(p.name for p in run.iterdir()) == ["best.safetensors", "config.json"]
