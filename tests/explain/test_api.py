import io
import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import resnetlab
from resnetlab.analysis import fonts
from resnetlab.cli import main
from resnetlab.engine.predict import read_input
from resnetlab.errors import DataWarning
from resnetlab.explain import class_activation_maps, explain, render_overlay

from .conftest import CLASSES, squares


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Four squares images, two of them with the same file name in different folders."""
    root = tmp_path_factory.mktemp("images")
    pixels, _ = squares(4, seed=31)
    for i, image in enumerate(pixels.numpy()):
        folder = root / ("a" if i < 2 else "b")
        folder.mkdir(exist_ok=True)
        Image.fromarray(image).save(folder / f"{i % 2}.png")
    return root


def test_cli_writes_an_overlay_per_image_the_maps_and_a_sheet(
    model_file, image_folder, tmp_path, capsys
):
    out = tmp_path / "cams"
    assert main(["explain", str(model_file), str(image_folder), "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    overlays = [item["overlay"] for item in report["images"]]
    # Two files of each name, in two folders: the folder's name goes in front.
    assert [p.split("/")[-1] for p in overlays] == ["a-0.png", "a-1.png", "b-0.png", "b-1.png"]
    for path in overlays:
        with Image.open(path) as im:
            assert im.format == "PNG" and im.width == 2 * 256 + 4 and im.height > 256
    with np.load(out / "maps.npz", allow_pickle=False) as saved:
        assert saved["maps"].shape == (4, 32, 32) and saved["maps"].dtype == np.float32
        assert list(saved["class_names"]) == CLASSES and str(saved["method"]) == "gradcam"
        assert str(saved["layer"]) == "layer3"
        assert list(saved["sources"]) == [item["image"] for item in report["images"]]
        expected = explain(model_file, [image_folder])
        np.testing.assert_allclose(saved["maps"], expected.maps.numpy(), atol=1e-6)
        assert saved["predicted"].tolist() == expected.predicted.tolist()
    with Image.open(out / "sheet.png") as sheet:
        assert sheet.width > 2 * 2 * 128  # 4 columns of 128-pixel overlays
    # One image: no sheet, the file named after the image.
    single = tmp_path / "one"
    image = image_folder / "a" / "0.png"
    assert (
        main(["explain", str(model_file), str(image), "--out", str(single), "--class", "blue"]) == 0
    )
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith(f"{image}: ") and line.endswith(f"-> {single / '0.png'}")
    assert sorted(p.name for p in single.iterdir()) == ["0.png", "maps.npz"]
    with np.load(single / "maps.npz") as saved:
        assert saved["target"].tolist() == [0]
    # One image into the folder of four: the four's overlays stay, as cp leaves them, but
    # not their sheet, which would show other images than maps.npz holds.
    assert main(["explain", str(model_file), str(image), "--out", str(out)]) == 0
    assert not (out / "sheet.png").exists() and (out / "b-1.png").is_file()
    with np.load(out / "maps.npz") as saved:
        assert saved["maps"].shape == (1, 32, 32)
    # A folder of one's photos, which holds no maps.npz: refused, its photos untouched (a
    # photo named 0.png would be replaced, one named sheet.png removed).
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("0.png", "sheet.png"):
        shutil.copy(image, photos / name)
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    capsys.readouterr()
    assert main(["explain", str(model_file), str(image), "--out", str(photos)]) == 2
    assert capsys.readouterr().err == (
        f"error: {photos} holds images (0.png, sheet.png) and no maps.npz of earlier "
        "explanations: the overlays would join them, replacing any of the same name; write "
        "the explanations into a new or empty folder\n"
    )
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before


def test_cli_without_out_never_writes_over_an_earlier_run(
    model_file, image_folder, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    image = str(image_folder / "a" / "0.png")
    assert main(["explain", str(model_file), image]) == 0
    first = (tmp_path / "cams" / "maps.npz").read_bytes()
    assert main(["explain", str(model_file), image, "--class", "blue"]) == 0
    line = capsys.readouterr().out.splitlines()[-2]
    assert line.endswith("-> cams-2/0.png")
    assert (tmp_path / "cams" / "maps.npz").read_bytes() == first  # the first run's, as it was
    assert sorted(p.name for p in (tmp_path / "cams-2").iterdir()) == ["0.png", "maps.npz"]


@pytest.mark.parametrize("command", ["explain", "predict"])
def test_an_out_that_names_an_image_file_is_refused_before_the_work(
    model_file, image_folder, tmp_path, capsys, command
):
    # `explain --out cam.png` for one image made a folder named cam.png holding the overlay.
    image, out = str(image_folder / "a" / "0.png"), tmp_path / "cam.png"
    flag = "--out" if command == "explain" else "--cam"
    assert main([command, str(model_file), image, flag, str(out)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {out} names a file; the explanations (an overlay per image, maps.npz and, "
        f"for several images, sheet.png) are written into a folder: name one, e.g. "
        f"{tmp_path / 'cam'}"
    )
    assert not out.exists()
    result = explain(model_file, [image])
    with pytest.raises(resnetlab.ResnetlabError, match="names a file"):
        result.save(out)
    out.mkdir()  # a folder of that name already there is one
    assert [p.name for p in result.save(out)] == ["0.png", "maps.npz"]


def test_overlays_are_never_written_inside_the_folder_explained(
    model_file, image_folder, tmp_path, monkeypatch, capsys
):
    folder = tmp_path / "photos"
    shutil.copytree(image_folder, folder)
    before = sorted(folder.rglob("*"))
    monkeypatch.chdir(folder)  # the default ./cams would be one of its folders
    says = "the folder of images explained: the overlays would be read as its images next time"
    assert main(["explain", str(model_file), "."]) == 2
    assert f"the default --out cams is inside ., {says}; give --out outside it" in (
        capsys.readouterr().err
    )
    assert main(["explain", str(model_file), str(folder), "--out", str(folder / "a" / "x")]) == 2
    assert says in capsys.readouterr().err
    assert main(["predict", str(model_file), str(folder), "--cam", str(folder / "cams")]) == 2
    assert f"{says}; give a folder outside it" in capsys.readouterr().err
    assert sorted(folder.rglob("*")) == before  # nothing written
    # One image of a class folder explained into the data set beside it (a class "cams" next
    # time), or from a class folder into its default ./cams: written, with a warning.
    image = str(folder / "a" / "0.png")
    capsys.readouterr()
    assert main(["explain", str(model_file), image, "--out", str(folder / "cams")]) == 0
    assert (
        f"warning: --out {folder / 'cams'} is inside {folder}, which looks like a data set of "
        f"class folders (the images explained are in one): a run on {folder} would read the "
        "overlays as its images; give --out outside it to keep them apart\n"
    ) in capsys.readouterr().err
    monkeypatch.chdir(folder / "a")
    assert main(["explain", str(model_file), "0.png"]) == 0
    assert "warning: the default --out cams is inside .., which looks like" in (
        capsys.readouterr().err
    )
    # Photos from elsewhere explained into the data set, or into one of its class folders.
    shutil.copy(image, tmp_path / "new.png")
    for out in (folder / "cams-new", folder / "b" / "cams"):
        assert main(["explain", str(model_file), str(tmp_path / "new.png"), "--out", str(out)]) == 0
        assert (
            f"warning: --out {out} is inside {folder}, which looks like a data set of class "
            f"folders: a run on {folder} would read the overlays as its images; give --out "
            "outside it to keep them apart\n"
        ) in capsys.readouterr().err
    # Beside a loose photo, or with earlier overlays beside the photos, nothing is said.
    monkeypatch.chdir(tmp_path)
    shutil.copy(image, tmp_path / "photo.png")
    assert main(["explain", str(model_file), "photo.png"]) == 0
    assert (tmp_path / "cams" / "photo.png").is_file()
    assert main(["explain", str(model_file), image, "--out", str(tmp_path / "c")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_overlays_into_the_runs_folder_are_not_warned_of(
    model_file, image_folder, tmp_path, capsys
):
    """runs/ holds run folders, each with its figures (curves.png, confusion.png) beside its
    config.json: not a data set of class folders, so --out runs/cams is not warned of."""
    for run in ("resnet18-a", "resnet18-b"):
        (tmp_path / "runs" / run).mkdir(parents=True)
        (tmp_path / "runs" / run / "config.json").write_text("{}")
        for figure in ("curves.png", "confusion.png"):
            Image.new("RGB", (4, 4)).save(tmp_path / "runs" / run / figure)
    image = str(image_folder / "a" / "0.png")
    for args in (
        ["explain", str(model_file), image, "--out"],
        ["predict", str(model_file), image, "--cam"],
    ):
        assert main([*args, str(tmp_path / "runs" / "cams")]) == 0
        assert "looks like a data set" not in capsys.readouterr().err
    # The same folders without a run's config.json are classes, and warned of.
    for run in ("resnet18-a", "resnet18-b"):
        (tmp_path / "runs" / run / "config.json").unlink()
    assert main(["explain", str(model_file), image, "--out", str(tmp_path / "runs" / "c2")]) == 0
    assert "looks like a data set of class folders" in capsys.readouterr().err


def test_overlays_do_not_replace_the_figures_of_a_run_folder(model_file, image_folder, tmp_path):
    # A photo named curves.jpg explained into a run folder would replace the run's curves.png.
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    Image.new("RGB", (4, 4)).save(run / "curves.png")
    before = (run / "curves.png").read_bytes()
    photo = tmp_path / "curves.jpg"
    photo.write_bytes((image_folder / "a" / "0.png").read_bytes())
    with pytest.raises(resnetlab.ResnetlabError, match=r"curves.png is a file of the run in "):
        explain(model_file, [photo]).save(run)
    assert (run / "curves.png").read_bytes() == before and sorted(run.iterdir()) == [
        run / "config.json",
        run / "curves.png",
    ]


def test_cli_user_mistakes_are_one_line(model_file, image_folder, tmp_path, capsys):
    image = str(image_folder / "a" / "0.png")
    cases = [
        (["--layer", "layer9"], "no layer 'layer9' in resnet8; choose one of conv1, bn1"),
        (["--class", "purple"], "no class 'purple'; the model's classes: blue, green, red"),
        (["--check"], "--check takes one data set: resnetlab explain MODEL DATA --check"),
        (["--method", "gradcam", "--method", "layercam"], "one --method at a time"),
    ]
    for extra, message in cases:
        images = [image, image] if extra == ["--check"] else [image]
        assert main(["explain", str(model_file), *images, "--out", str(tmp_path), *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err
    assert main(["explain", str(model_file), str(tmp_path / "missing.png")]) == 2
    assert "image not found" in capsys.readouterr().err


def test_a_class_named_in_another_case_is_the_models_as_eval_takes_it():
    from resnetlab.explain.api import _targets

    assert _targets("BLUE", ["blue", "green", "red"], 2).tolist() == [0, 0]
    assert _targets(["red", "Red"], ["Red", "red"], 2).tolist() == [1, 0]  # as named first
    with pytest.raises(resnetlab.ResnetlabError) as caught:
        _targets("RED", ["Red", "red"], 1)  # two classes it could be: neither, and why
    assert str(caught.value) == (
        "'RED' is 'Red' and 'red' but for case, two classes of the model: give one as it is written"
    )


def test_a_class_name_in_either_unicode_form_is_the_models():
    # Pasted from macOS's Finder, "café" comes decomposed: e and a combining accent.
    from resnetlab.explain.api import _targets

    names = ["café", "thé"]
    assert _targets("cafe\u0301", names, 1).tolist() == [0]
    assert _targets("THE\u0301", names, 1).tolist() == [1]


def test_a_target_class_that_is_neither_a_name_nor_an_index_is_one_line():
    from resnetlab.explain.api import _targets

    assert _targets(np.int64(2), ["a", "b", "c"], 2).tolist() == [2, 2]
    assert _targets(torch.tensor([2, 0]), ["a", "b", "c"], 2).tolist() == [2, 0]
    # One class as a 0-d tensor or array (logits.argmax()): not 'iteration over a 0-d tensor'
    assert _targets(torch.tensor(1), ["a", "b", "c"], 2).tolist() == [1, 1]
    assert _targets(np.array(2), ["a", "b", "c"], 1).tolist() == [2]
    for target in (1.5, [0, 1.5]):
        with pytest.raises(
            resnetlab.ResnetlabError, match=r"^a target class is a class name or index, got 1.5"
        ):
            _targets(target, ["a", "b", "c"], 2)


def test_predict_cam_writes_the_same_overlays(model_file, image_folder, tmp_path, capsys):
    assert main(["predict", str(model_file), str(image_folder), "--cam", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count("%") == 4 * 3
    assert len(list(tmp_path.glob("[ab]-*.png"))) == 4 and (tmp_path / "sheet.png").is_file()
    with np.load(tmp_path / "maps.npz") as saved:
        expected = explain(model_file, [image_folder])
        np.testing.assert_allclose(saved["maps"], expected.maps.numpy(), atol=1e-6)


def test_predict_cam_warns_once_of_an_unreadable_image(model_file, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    pixels, _ = squares(2, seed=5)
    for i, image in enumerate(pixels.numpy()):
        Image.fromarray(image).save(folder / f"{i}.png")
    (folder / "x.jpg").write_text("not an image")
    out = tmp_path / "cams"
    assert main(["predict", str(model_file), str(folder), "--cam", str(out)]) == 0
    captured = capsys.readouterr()
    assert [line.split(":")[0] for line in captured.out.splitlines()] == [
        str(folder / "0.png"),
        str(folder / "1.png"),
    ]
    warned = [line for line in captured.err.splitlines() if "x.jpg" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: ")
    assert warned[0].startswith(f"warning: {folder / 'x.jpg'}: skipped, cannot read it (")
    assert sorted(p.name for p in out.iterdir()) == ["0.png", "1.png", "maps.npz", "sheet.png"]


def test_one_uploaded_image_to_a_png(model_file, image_folder):
    """What a web server does: bytes in, the predict path's decoding, a PNG out."""
    model = resnetlab.load_model(model_file)
    data = (image_folder / "b" / "1.png").read_bytes()
    pixels = read_input(io.BytesIO(data), model.meta)
    result = explain(model, pixels, method="gradcam++")
    assert result.maps.shape == (1, 32, 32) and result.sources == ["image 0"]
    png = io.BytesIO()
    result.overlay(0).save(png, format="PNG")
    for side, says in (
        ("256", "a whole number, got '256'"),
        (0, "at least 1, got 0"),
        (100_000, "at most 8,192 pixels, got 100,000"),
    ):
        with pytest.raises(resnetlab.ResnetlabError, match=f"^side must be {says}$"):
            result.overlay(0, side=side)  # was a TypeError; 0 drew the image at 1 px a pixel
    assert Image.open(io.BytesIO(png.getvalue())).size == result.overlay(0).size
    from_file = explain(model, [image_folder / "b" / "1.png"], method="gradcam++")
    assert torch.equal(result.maps, from_file.maps)
    with pytest.raises(resnetlab.ResnetlabError, match=r"uint8 \(N, 32, 32, 3\) for this model"):
        explain(model, np.zeros((64, 64, 3), dtype=np.uint8))
    # No images was an UnboundLocalError; a mirrored view, torch's negative-strides ValueError.
    with pytest.raises(resnetlab.ResnetlabError, match=r"^no images given: the pixels are \(0, 32"):
        explain(model, np.zeros((0, 32, 32, 3), dtype=np.uint8))
    mirrored = explain(model, pixels[:, ::-1], method="gradcam++")
    assert torch.equal(mirrored.images[0], torch.from_numpy(pixels[:, ::-1].copy()))
    with pytest.raises(resnetlab.ResnetlabError, match="not a readable image"):
        read_input(io.BytesIO(b"not an image"), model.meta)


def test_a_batch_size_below_one_is_one_line(model_file, image_folder):
    with pytest.raises(resnetlab.ResnetlabError, match="batch_size must be at least 1, got 0"):
        explain(model_file, [image_folder], batch_size=0)


def test_float_pixels_in_0_1_say_how_to_make_them_uint8(model_file):
    meta = resnetlab.read_model_meta(model_file)
    side = meta.input_size
    fix = "for floats in [0, 1] (the course's X / 255), give"
    with pytest.raises(resnetlab.ResnetlabError) as info:
        explain(model_file, np.zeros((2, side, side, 3)) / 255)
    assert str(info.value).endswith(f"{fix} (X * 255).round().astype('uint8')")
    with pytest.raises(resnetlab.ResnetlabError) as info:
        explain(model_file, torch.zeros(2, side, side, 3))
    assert str(info.value).endswith(f"{fix} X.mul(255).round().byte()")
    with pytest.raises(resnetlab.ResnetlabError) as info:  # uint8 of another size: no floats
        explain(model_file, np.zeros((2, side + 1, side + 1, 3), np.uint8))
    assert str(info.value).endswith("read_input decodes and resizes a file")

    # What was given, as given: not torch's dtype for a NumPy array, nor a batch of one.
    with pytest.raises(resnetlab.ResnetlabError) as info:
        explain(model_file, np.zeros((side + 1, side + 1, 3), np.float32))
    assert f", got float32 ({side + 1}, {side + 1}, 3); read_input" in str(info.value)
    with pytest.raises(resnetlab.ResnetlabError) as info:
        explain(model_file, torch.zeros(side, side, dtype=torch.uint8))
    assert f", got torch.uint8 ({side}, {side}); read_input" in str(info.value)


def test_a_list_of_pixel_arrays_is_named_with_the_stack_that_explain_takes(model_file):
    side = resnetlab.read_model_meta(model_file).input_size
    pixels = np.zeros((side, side, 3), np.uint8)
    says = "explain takes pixels as one uint8 (N, H, W, 3) array, not a list of arrays: give "
    with pytest.raises(resnetlab.ResnetlabError) as info:  # was "each image to predict"
        explain(model_file, [pixels, pixels])
    assert str(info.value) == says + "np.stack(images)"
    with pytest.raises(resnetlab.ResnetlabError) as info:
        explain(model_file, [torch.from_numpy(pixels)])
    assert str(info.value) == says + "torch.stack(images)"
    assert explain(model_file, np.stack([pixels, pixels])).maps.shape == (2, side, side)


def test_channels_first_pixels_say_how_to_move_the_channels_last(model_file):
    """A torchvision user's (B, 3, H, W) tensor (ToTensor's floats) was told to scale to
    uint8, after which it was refused again, its channels still first."""
    side = resnetlab.read_model_meta(model_file).input_size
    x = torch.rand(2, 3, side, side)
    with pytest.raises(resnetlab.ResnetlabError) as info:
        explain(model_file, x)
    fix = "X.mul(255).round().byte().permute(0, 2, 3, 1)"
    assert f"give {fix}; a normalised (B, 3, H, W) batch goes to class_activation_maps" in str(
        info.value
    )
    maps = explain(model_file, x.mul(255).round().byte().permute(0, 2, 3, 1)).maps
    assert maps.shape == (2, side, side)  # the fix given works
    for given, fix in [
        (x.mul(255).byte(), "X.permute(0, 2, 3, 1)"),
        (x[0].mul(255).byte(), "X.permute(1, 2, 0)"),
        (x[0].mul(255).byte().numpy(), "X.transpose(1, 2, 0)"),
    ]:
        with pytest.raises(resnetlab.ResnetlabError) as info:
            explain(model_file, given)
        assert str(info.value).endswith(f"; with the channels first, give {fix}")


def test_a_loaded_models_device_is_checked_and_taken_as_predict_takes_it(model_file, image_folder):
    model = resnetlab.load_model(model_file)
    with pytest.raises(resnetlab.ResnetlabError, match="unknown device 'gpu'"):
        explain(model, [image_folder / "a" / "0.png"], device="gpu")
    named = explain(model, [image_folder / "a" / "0.png"], device="cpu")
    assert torch.equal(named.maps, explain(model, [image_folder / "a" / "0.png"]).maps)


class Compiled(torch.nn.Module):
    """What torch.compile returns (an OptimizedModule: the model as _orig_mod, its
    attributes passed through), without the seconds that importing the compiler takes."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self._orig_mod = model

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._orig_mod, name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._orig_mod(x)


def test_a_compiled_model_is_explained_as_the_model_inside_it(model_file, image_folder):
    """torch.compile's wrapper names its layers _orig_mod.<name>: the default layer was
    'no layer 'layer3' in resnet8; choose one of _orig_mod, _orig_mod.conv1, ...'."""
    image = image_folder / "a" / "0.png"
    model = resnetlab.load_model(model_file)
    expected = explain(model, [image])
    got = explain(Compiled(model), [image])
    assert got.layer == expected.layer and torch.equal(got.maps, expected.maps)
    x = torch.zeros(1, 3, 32, 32)
    named = class_activation_maps(Compiled(model), x, layer="layer2")
    assert torch.equal(named.maps, class_activation_maps(model, x, layer="layer2").maps)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_a_model_in_another_dtype_is_explained_in_float32(model_file, image_folder, dtype):
    """explain(model.half(), ...) stopped in a convolution: 'expected scalar type Float but
    found Half'."""
    image = image_folder / "a" / "0.png"
    expected = explain(model_file, [image])
    model = resnetlab.load_model(model_file).to(dtype)
    got = explain(model, [image])
    assert next(model.parameters()).dtype == dtype  # the caller's model is left as it was
    assert torch.equal(got.targets, expected.targets)
    torch.testing.assert_close(got.maps, expected.maps, atol=0.05, rtol=0)


def test_overlay_shows_the_map_in_jet_colours():
    image = np.full((16, 16, 3), 128, dtype=np.uint8)
    cam = np.zeros((16, 16), dtype=np.float32)
    cam[:, 8:] = 1.0  # right half: hot
    picture = np.asarray(render_overlay(image, cam, "caption\nsecond line", side=64))
    assert picture.shape[1] == 2 * 64 + 4 and picture.shape[0] > 64
    left = picture[:64, :64]
    assert (left == 128).all()  # the image itself, enlarged
    overlay = picture[:64, 68:].astype(int)
    cold, hot = overlay[32, 4], overlay[32, 60]
    assert cold[2] > cold[0] and hot[0] > hot[2]  # blue where the map is 0, red where 1
    with pytest.raises(ValueError, match="differ in size"):
        render_overlay(image, cam[:8])


@pytest.mark.parametrize(
    ("image", "said"),
    [
        (np.full((16, 16, 3), 0.5), "float64 (16, 16, 3); for floats in [0, 1], give (X * 255)"),
        (
            torch.rand(3, 16, 16),
            "float32 (3, 16, 16); for floats in [0, 1], give X.mul(255).round().byte(); with "
            "the channels first, give X.permute(1, 2, 0)",
        ),
        (np.zeros((16, 16), np.uint8), "uint8 (16, 16)"),
        (Image.new("RGB", (16, 16)), "a PIL image; give np.asarray(image.convert('RGB'))"),
    ],
)
def test_an_overlay_of_what_are_not_uint8_pixels_is_one_line(image, said):
    # PIL's 'Cannot handle this data type: (1, 1, 3), <f8' and NumPy's broadcasting error
    # named neither the image nor what it should be.
    with pytest.raises(resnetlab.ResnetlabError, match=r"^image must be uint8 ") as e:
        render_overlay(image, np.zeros((16, 16), np.float32), "caption")
    assert said in str(e.value)


def test_the_sheet_names_each_image_and_the_overlay_its_method(model_file, image_folder, tmp_path):
    result = explain(model_file, [image_folder])
    assert result.caption(2).splitlines()[1] == "gradcam, layer3"
    assert result.caption(2, on_sheet=True).splitlines()[1] == "b/0.png"  # a/0.png too
    long = "a-very-long-photo-name-from-a-phone-camera-2026-12-03.jpg"
    result.sources[2] = f"/photos/{long}"
    shown = result.caption(2, on_sheet=True).splitlines()[1]
    assert len(shown) == 32 and shown.startswith("a-very-long-pho") and shown.endswith("03.jpg")
    assert "…" in shown
    # A name that repeats (IMG_0001.jpg of the cat and of the dog folder) keeps its folder.
    result.sources[0], result.sources[1] = "/photos/cat/IMG_0001.jpg", "/photos/dog/IMG_0001.jpg"
    assert result.caption(1, on_sheet=True).splitlines()[1] == "dog/IMG_0001.jpg"
    # ...and where that repeats too (two cat folders), the folder above as well
    result.sources[1] = "/more/cat/IMG_0001.jpg"
    captions = [result.caption(i, on_sheet=True).splitlines()[1] for i in (0, 1)]
    assert captions == ["photos/cat/IMG_0001.jpg", "more/cat/IMG_0001.jpg"]
    assert result.save(tmp_path / "cams")[:2] == [
        tmp_path / "cams" / "photos-cat-IMG_0001.png",
        tmp_path / "cams" / "more-cat-IMG_0001.png",
    ]
    # ...and where the whole path repeats (one photo twice), the number its overlay file has
    result.sources[1] = "/photos/cat/IMG_0001.jpg"
    captions = [result.caption(i, on_sheet=True).splitlines()[1] for i in (0, 1)]
    assert captions == ["0000-IMG_0001.jpg", "0001-IMG_0001.jpg"]
    assert result.save(tmp_path / "cams2")[:2] == [
        tmp_path / "cams2" / "0000-IMG_0001.png",
        tmp_path / "cams2" / "0001-IMG_0001.png",
    ]
    result.sources[1] = "/photos/dog/IMG_0001.jpg"
    result.sources[3] = "/photos/café-日本.png"  # any script draws
    assert result.overlay(3, side=128, on_sheet=True).height > 128
    n = len(result.sources)
    assert result.overlay(np.int64(-1)).size == result.overlay(n - 1).size  # numpy's ints too
    for wrong in (n, -n - 1, "0", 1.0, True):
        with pytest.raises(resnetlab.ResnetlabError) as e:
            result.overlay(wrong)
        message = f"no image {wrong!r} in this explanation of {n}: give an index from 0 to {n - 1}"
        assert str(e.value) == message


def test_names_no_font_has_are_one_warning_naming_the_fix(
    model_file, tmp_path, monkeypatch, utf8_file_names
):
    monkeypatch.setattr(fonts, "installed_families", set)  # DejaVu Sans alone: no CJK
    monkeypatch.setattr(fonts, "_told", False)  # said once per process: as in a new one
    pixels, _ = squares(2, seed=7)
    for i, image in enumerate(pixels.numpy()):
        Image.fromarray(image).save(tmp_path / f"猫{i}.png")
    result = explain(model_file, [tmp_path / "猫0.png", tmp_path / "猫1.png"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = result.save(tmp_path / "cams")
    (warning,) = caught  # not one per character and picture
    assert warning.category is DataWarning
    assert str(warning.message).startswith("some characters in the figure's text (猫)")
    assert "fonts-noto-cjk" in str(warning.message)
    assert [p.name for p in written] == ["猫0.png", "猫1.png", "maps.npz", "sheet.png"]


def test_an_explanation_of_a_folder_is_one_short_line(model_file, image_folder):
    result = explain(model_file, [image_folder])
    assert repr(result) == (
        f"Explanation(sources=[{str(image_folder / 'a' / '0.png')!r}, "
        f"{str(image_folder / 'a' / '1.png')!r}, {str(image_folder / 'b' / '0.png')!r}, "
        "... 4 in all], method='gradcam', layer='layer3', maps=(4, 32, 32))"
    )


def test_explanations_written_beside_their_images_never_replace_one(model_file, tmp_path, capsys):
    pixels, _ = squares(2, seed=5)
    photos = []
    for i, image in enumerate(pixels.numpy()):
        photos.append(tmp_path / f"photo{i}.png")
        Image.fromarray(image).save(photos[-1])
    before = [p.read_bytes() for p in photos]
    result = explain(model_file, photos)
    with pytest.raises(resnetlab.ResnetlabError) as error:
        result.save(tmp_path)
    assert str(error.value) == (
        f"{tmp_path / 'photo0.png'} is one of the images explained, which its overlay would "
        "replace; write the explanations into another folder"
    )
    assert main(["explain", str(model_file), *map(str, photos), "--out", str(tmp_path)]) == 2
    assert "which its overlay would replace" in capsys.readouterr().err
    assert [p.read_bytes() for p in photos] == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo0.png", "photo1.png"]
    with pytest.raises(resnetlab.ResnetlabError, match=r"folder to write .*: an empty value"):
        result.save("")  # not the current folder
    assert len(result.save(tmp_path / "cams")) == 4  # two overlays, maps.npz, sheet.png
    # Photos of other names (photos/cats/1.jpg): no overlay would replace one, but written
    # beside them the overlays would be read as more photos by the next run on the folder.
    cats = tmp_path / "photos" / "cats"
    cats.mkdir(parents=True)
    Image.fromarray(pixels.numpy()[0]).save(cats / "1.jpg")
    with pytest.raises(resnetlab.ResnetlabError) as error:
        explain(model_file, [cats / "1.jpg"]).save(cats)
    assert str(error.value) == (
        f"{cats} holds 1.jpg, one of the images explained: the overlays would be read as "
        "images beside it next time; write the explanations into another folder"
    )
    image = str(cats / "1.jpg")
    assert main(["predict", str(model_file), image, "--cam", str(cats)]) == 2
    assert "holds 1.jpg, one of the images explained" in capsys.readouterr().err
    assert [p.name for p in cats.iterdir()] == ["1.jpg"]


@pytest.mark.parametrize(
    ("name", "side", "note"),
    [
        (
            "resnet18",
            32,
            "layer4's feature map is 1x1 for images of 32x32 pixels: one cell points "
            "at no place, so every map is blank; take layer='layer3', or train at a larger "
            "input_size",
        ),
        (
            "resnet18",
            64,
            "layer4's feature map is 2x2 for images of 64x64 pixels: each cell "
            "covers a quarter of the image or more; layer='layer3' draws a finer map",
        ),
        ("resnet18", 128, None),  # 4x4
        (
            "preresnet20",
            8,
            "act's feature map is 2x2 for images of 8x8 pixels: each cell "
            "covers a quarter of the image or more; layer='stages.1' draws a finer map",
        ),
    ],
)
def test_a_feature_map_too_coarse_to_point_at_a_place_is_noted(name, side, note):
    model = resnetlab.create_model(name, num_classes=3)
    result = explain(model, torch.zeros(1, side, side, 3, dtype=torch.uint8))
    assert result.notes == ([note] if note else [])
    if side == 32:  # one cell: the maps are blank indeed
        assert not result.maps.any()


def test_the_course_models_keras_layer_names_get_the_earlier_stage():
    model = resnetlab.create_model("resnet50_keras", num_classes=3)
    images = torch.zeros(1, 64, 64, 3, dtype=torch.uint8)
    assert explain(model, images, layer="res4f_branch2c").notes == []  # layer3 at 64 px: 4x4
    (note,) = explain(model, images, layer="res5c_branch2c").notes
    assert note == (
        "res5c_branch2c's feature map is 2x2 for images of 64x64 pixels: each cell covers a "
        "quarter of the image or more; layer='layer3' draws a finer map"
    )


def test_explain_and_predict_cam_print_the_note(tmp_path, capsys):
    model_file = tmp_path / "r18.safetensors"
    model = resnetlab.create_model("resnet18", num_classes=3)
    resnetlab.save_model(model, model_file, class_names=CLASSES, input_size=32)
    image = tmp_path / "photos" / "0.png"
    image.parent.mkdir()
    Image.fromarray(squares(1, seed=3)[0][0].numpy()).save(image)
    note = "note: layer4's feature map is 1x1 for images of 32x32 pixels: one cell points"
    assert main(["explain", str(model_file), str(image), "--out", str(tmp_path / "c")]) == 0
    assert note in capsys.readouterr().err
    assert main(["predict", str(model_file), str(image), "--cam", str(tmp_path / "p")]) == 0
    assert note in capsys.readouterr().err
    # The layer the note offers, --layer layer3, is a flag predict takes with --cam (it
    # was refused as an unrecognized argument).
    cam = ["predict", str(model_file), str(image), "--cam", str(tmp_path / "p")]
    assert main([*cam, "--layer", "layer3"]) == 0
    assert "--layer layer2 draws a finer map" in capsys.readouterr().err
    with np.load(tmp_path / "p" / "maps.npz", allow_pickle=False) as maps:
        assert str(maps["layer"]) == "layer3"
    assert main(["predict", str(model_file), str(image), "--layer", "layer3"]) == 2
    assert capsys.readouterr().err == (
        "error: --layer sets the layer of the --cam overlays: add --cam DIR, or drop it\n"
    )


def test_overlay_names_keep_the_class_folder_and_the_sheet_spreads_over_the_classes():
    from resnetlab.explain.api import SHEET_LIMIT, _file_names, _on_sheet

    sources = ["p/cat/1.jpg", "p/dog/1.jpg", "p/dog/2.jpg", "q/dog/1.png", "image 4"]
    # Unique stems keep their name; as many folders' names as tell repeats apart do.
    assert _file_names(sources) == ["cat-1", "p-dog-1", "2", "q-dog-1", "image 4"]
    # Class folders of date folders of a phone's photos: the class is kept in the name.
    dated = ["photos/Red Leaf/2024-03-12/IMG_1.jpg", "photos/green/2024-03-12/IMG_1.jpg"]
    assert _file_names([*dated, "photos/green/2024-03-13/IMG_1.jpg", dated[0]]) == [
        "0000-Red Leaf-2024-03-12-IMG_1",  # the same file twice: numbered
        "green-2024-03-12-IMG_1",
        "2024-03-13-IMG_1",
        "0003-Red Leaf-2024-03-12-IMG_1",
    ]
    # A stem that reads as another's folder and stem gets a number, never the same file.
    assert _file_names(["p/cat/1.jpg", "q/dog/1.jpg", "cat-1.png"]) == [
        "0000-cat-1",
        "dog-1",
        "0002-cat-1",
    ]
    # 402 images of 4 classes in folder order: the sheet's come from all of them.
    assert _on_sheet(3) == [0, 1, 2]
    picked = _on_sheet(402)
    assert len(picked) == SHEET_LIMIT and picked[0] == 0 and picked[-1] == 401
    assert len(set(picked)) == SHEET_LIMIT and {i // 100 for i in picked} == {0, 1, 2, 3, 4}


def test_a_photo_named_sheet_keeps_its_overlay_beside_the_contact_sheet(
    model_file, tmp_path, capsys
):
    from resnetlab.explain.api import _file_names

    # Its overlay would be sheet.png: replaced by the contact sheet of several images,
    # removed as an earlier call's sheet for one.
    names = ["p/cat/sheet.jpg", "p/dog/Sheet.png", "sheet.jpg", "p/1.jpg"]
    assert _file_names(names) == ["cat-sheet", "dog-Sheet", "0002-sheet", "1"]
    folder = tmp_path / "photos"
    folder.mkdir()
    pixels, _ = squares(2, seed=5)
    for name, image in zip(["sheet.png", "b.png"], pixels.numpy(), strict=True):
        Image.fromarray(image).save(folder / name)
    for sources, out in [([folder], tmp_path / "two"), ([folder / "sheet.png"], tmp_path / "one")]:
        assert main(["explain", str(model_file), *map(str, sources), "--out", str(out)]) == 0
        printed = capsys.readouterr().out
        assert "sheet.png: " in printed and f"-> {out / 'photos-sheet.png'}\n" in printed
        with Image.open(out / "photos-sheet.png") as overlay:
            assert overlay.width == 2 * 256 + 4  # the image and its map, not a sheet
    assert (tmp_path / "two" / "sheet.png").exists()
    assert not (tmp_path / "one" / "sheet.png").exists()


@pytest.mark.parametrize(("command", "flag"), [("explain", "--out"), ("predict", "--cam")])
def test_an_overlay_folder_that_cannot_be_written_is_refused_before_the_work(
    model_file, image_folder, tmp_path, monkeypatch, capsys, command, flag
):
    # A folder of thousands of photos is not classified and explained only to fail at the
    # first overlay; the folders made for them are removed again.
    out = tmp_path / "figures" / "cams"
    with monkeypatch.context() as patch:

        def cannot_write(*args, dir, **kwargs):
            raise PermissionError(13, "Permission denied", dir)

        def work(*args, **kwargs):
            pytest.fail(f"the images were read before {flag} was checked")

        patch.setattr("tempfile.TemporaryFile", cannot_write)
        patch.setattr("resnetlab.engine.predict.predict", work)
        patch.setattr("resnetlab.explain.explain", work)
        assert main([command, str(model_file), str(image_folder), flag, str(out)]) == 2
    assert capsys.readouterr().err == (
        f"error: cannot write {out}: Permission denied; choose another {flag}, a folder you "
        "can write to\n"
    )
    assert list(tmp_path.iterdir()) == []
    missing = tmp_path / "missing.png"
    assert main([command, str(model_file), str(missing), flag, str(out)]) == 2
    assert capsys.readouterr().err == f"error: image not found: {missing}\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("command", "flag"), [("explain", "--out"), ("predict", "--cam")])
def test_an_overlay_folder_of_other_images_is_refused_before_the_work(
    model_file, image_folder, tmp_path, monkeypatch, capsys, command, flag
):
    # A run folder or a folder of photos, or one that holds an image named: refused after
    # every image was classified and explained (minutes of Score-CAM), not before.
    run = tmp_path / "run"
    run.mkdir()
    Image.new("RGB", (8, 8)).save(run / "curves.png")
    image = image_folder / "a" / "0.png"
    monkeypatch.setattr("resnetlab.engine.predict.predict", lambda *a, **k: pytest.fail("work"))
    monkeypatch.setattr("resnetlab.explain.explain", lambda *a, **k: pytest.fail("work"))
    assert main([command, str(model_file), str(image_folder), flag, str(run)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {run} holds images (curves.png) and no ")
    assert main([command, str(model_file), str(image), flag, str(image.parent)]) == 2
    assert f"error: {image} is one of the images explained, which its overlay" in (
        capsys.readouterr().err
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_predict_cam_with_an_unknown_layer_is_refused_before_the_images_are_classified(
    model_file, image_folder, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "cams"
    monkeypatch.setattr(
        "resnetlab.engine.predict.predict",
        lambda *a, **k: pytest.fail("the images were classified before --layer was checked"),
    )
    args = ["predict", str(model_file), str(image_folder), "--cam", str(out), "--layer", "layr3"]
    assert main(args) == 2
    assert capsys.readouterr().err.startswith("error: no layer 'layr3' in ")
    assert not out.exists()


@pytest.mark.parametrize("check", [False, True], ids=["explain", "explain --check"])
def test_a_misspelt_layer_class_or_method_is_said_before_the_images_are_read(
    model_file, image_folder, monkeypatch, capsys, check
):
    # A folder of thousands of photos, or a data set, was decoded before the name was looked
    # at; predict --cam says it first, as --check says stages the model lacks.
    import importlib

    def read(*args, **kwargs):
        pytest.fail("the images were read before the settings were checked")

    monkeypatch.setattr(importlib.import_module("resnetlab.explain.api"), "load_inputs", read)
    evaluate_module = importlib.import_module("resnetlab.engine.evaluate")  # not the function
    monkeypatch.setattr(evaluate_module, "held_out_split", read)
    given = ["explain", str(model_file), str(image_folder), *(["--check"] * check)]
    assert main([*given, "--layer", "layer9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no layer 'layer9' in resnet8; choose one of conv1,")
    if check:  # a layer that runs twice, too: --check runs a blank image first
        assert main([*given, "--layer", "layer1.0.relu"]) == 2
        assert "runs 2 times in one forward pass" in capsys.readouterr().err
    if not check:  # nor a class the model lacks
        assert main([*given, "--class", "purple"]) == 2
        assert capsys.readouterr().err == (
            "error: no class 'purple'; the model's classes: blue, green, red\n"
        )
    with pytest.raises(resnetlab.ResnetlabError, match="unknown CAM method 'GradCAM'"):
        if check:
            from resnetlab.explain import check_model

            check_model(model_file, str(image_folder), methods=["GradCAM"])
        else:
            explain(model_file, [image_folder], method="GradCAM")


def test_a_data_set_file_among_the_images_points_to_the_check(model_file, tmp_path, capsys):
    """explain MODEL test_signs.h5 was told to score it with eval, which draws no maps."""
    data = tmp_path / "test_signs.h5"
    data.write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(resnetlab.ResnetlabError) as caught:
        explain(model_file, [str(data)])
    assert str(caught.value) == (
        f"{data} is an HDF5 data set, not an image: explain draws maps of image files; how "
        "well the maps point at what the model uses on its images is measured with: "
        f"resnetlab.explain.check_model(model, {str(data)!r})"
    )
    assert main(["explain", str(model_file), str(data)]) == 2
    assert capsys.readouterr().err.endswith(
        f"measured with: resnetlab explain MODEL_FILE {data} --check\n"
    )


def test_the_map_lies_over_the_part_of_the_photo_the_model_saw(model_file, tmp_path):
    """A model whose file keeps the centre 32 of 36 (crop fraction 0.875, as converted
    ImageNet weights keep 224 of 256) is explained on that centre: the overlay's image is
    what predict feeds it, and the map is of that image, not of the whole photo."""
    from resnetlab.data import read_image

    cropped = tmp_path / "cropped.safetensors"
    resnetlab.save_model(resnetlab.load_model(model_file), cropped, crop_fraction=0.875)
    pixels, _ = squares(1, size=48, seed=7)
    photo = tmp_path / "photo.png"
    Image.fromarray(pixels[0].numpy()[:, 4:]).save(photo)  # 44x48: not square
    explanation = explain(cropped, [photo], device="cpu")
    seen = read_image(photo, 32, "crop", 0.875)
    assert np.array_equal(explanation.images[0].numpy(), seen)
    assert not np.array_equal(seen, read_image(photo, 32, "crop"))  # the whole photo's
    model = resnetlab.load_model(cropped)
    x = (torch.from_numpy(seen).permute(2, 0, 1).float() / 255)[None]  # mean 0, std 1
    expected = class_activation_maps(model, x, targets=explanation.targets).maps[0]
    torch.testing.assert_close(explanation.maps[0], expected)


def test_a_model_fresh_from_converted_weights_is_explained_on_the_images_its_file_would_say(
    model_file, tmp_path
):
    """create_model(pretrained=...) before save_model: explain feeds it what predict will
    once it is saved (the weights' mean, std, resize and crop fraction), not squashed
    whole photos at mean 0, std 1."""
    weights = tmp_path / "imagenet-like.safetensors"
    resnetlab.save_model(
        resnetlab.load_model(model_file),
        weights,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        resize="crop",
        crop_fraction=0.875,
    )
    meta = resnetlab.read_model_meta(weights)
    fresh = resnetlab.create_model(meta.model, num_classes=meta.num_classes, pretrained=weights)
    pixels, _ = squares(1, size=48, seed=7)
    photo = tmp_path / "photo.png"
    Image.fromarray(pixels[0].numpy()[:, 4:]).save(photo)  # 44x48: not square
    explanation = explain(fresh, [photo], device="cpu")
    assert np.array_equal(explanation.images[0].numpy(), read_input(photo, meta))
    saved = explain(weights, [photo], device="cpu")
    torch.testing.assert_close(explanation.maps, saved.maps)
