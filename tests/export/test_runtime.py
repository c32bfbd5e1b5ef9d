import json
import os
import threading

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

import resnetlab
from resnetlab.cli import main
from resnetlab.engine.predict import read_input
from resnetlab.export import OnnxModel, export_model, in_batches

from .conftest import CLASSES


@pytest.fixture(scope="module")
def onnx_files(exported):
    """The CIFAR model exported plain (dynamic batch) and with preprocessing (batch 1)."""
    return {
        "plain": exported()[0],
        "pixels": exported(with_preprocessing=True, batch=1)[0],
    }


@pytest.fixture(scope="module")
def cropped_files(cifar_file, tmp_path_factory):
    """The CIFAR model saved to resize to 18 px and keep the centre 16 (crop fraction
    0.875), and that file exported with preprocessing."""
    folder = tmp_path_factory.mktemp("cropped")
    model_file = folder / "cropped.safetensors"
    resnetlab.save_model(resnetlab.load_model(cifar_file), model_file, crop_fraction=0.875)
    export_model(model_file, folder / "cropped.onnx", with_preprocessing=True, batch=1)
    return model_file, folder / "cropped.onnx"


@pytest.fixture(scope="module")
def folder_data(photos, tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for i, path in enumerate(photos * 2):
        (root / CLASSES[i % 3]).mkdir(exist_ok=True)
        (root / CLASSES[i % 3] / f"{i}{path.suffix}").write_bytes(path.read_bytes())
    return root


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((None,), "the ONNX file must be a path (str or pathlib.Path), got NoneType"),
        (("plain", "2"), "threads must be a whole number, got '2'"),
        (("plain", -1), "threads must be at least 0, got -1"),
    ],
)
def test_onnx_model_names_a_wrong_argument_in_one_line(onnx_files, args, says):
    # Not pathlib's or onnxruntime's TypeError ("incompatible function arguments").
    path, *threads = args
    with pytest.raises(resnetlab.ResnetlabError) as caught:
        OnnxModel(onnx_files.get(path, path), threads=threads[0] if threads else None)
    assert str(caught.value) == says


@pytest.mark.parametrize("kind", ["plain", "pixels"])
def test_onnx_model_is_used_as_a_loaded_model_file(onnx_files, cifar_file, kind):
    model = OnnxModel(onnx_files[kind])
    reference = resnetlab.load_model(cifar_file)
    assert model.meta == reference.meta
    assert model.takes_pixels == (kind == "pixels")
    assert model.batch == (1 if kind == "pixels" else None)
    # Normalised inputs, as the loaders make them from pixels, back to pixels inside.
    pixels = torch.randint(0, 256, (7, 16, 16, 3), dtype=torch.uint8)
    mean, std = torch.tensor(reference.meta.mean), torch.tensor(reference.meta.std)
    x = ((pixels / 255 - mean) / std).permute(0, 3, 1, 2)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=1e-4)
    for wrong, got in [
        (x.permute(0, 2, 3, 1), r"torch.float32 \(7, 16, 16, 3\)"),  # not onnxruntime's error
        (x[:, :, :8, :8], r"torch.float32 \(7, 3, 8, 8\)"),
        (pixels, r"torch.uint8 \(7, 16, 16, 3\)"),
        (x.numpy(), r"ndarray \(a tensor of it: torch.from_numpy\(x\)\)"),  # AttributeError
    ]:
        says = rf"^{onnx_files[kind]} takes normalised float \(N, 3, 16, 16\) images, got {got}; "
        with pytest.raises(resnetlab.ResnetlabError, match=says):
            model(wrong)
    # run() takes the graph's own form: anything else is said so, not in onnxruntime's words.
    own = pixels.numpy() if kind == "pixels" else x.numpy()
    assert model.run(own[:1]).shape == (1, len(reference.meta.class_names))
    form = (
        "uint8 arrays of shape (1, 16, 16, 3)"
        if kind == "pixels"
        else "float32 arrays of shape (N, 3, 16, 16)"
    )
    for wrong in (
        own.astype(np.float64),
        own[0],
        x.permute(0, 2, 3, 1).numpy()[:1] if kind == "plain" else own[:1, :8],
    ):
        with pytest.raises(resnetlab.ResnetlabError) as caught:
            model.run(wrong)
        assert str(caught.value) == (
            f"{onnx_files[kind]} takes {form}, got {wrong.dtype} {wrong.shape}; forward() takes "
            "normalised float tensors, resnetlab.predict image files"
        )


@pytest.mark.figures
@pytest.mark.parametrize("kind", ["plain", "pixels"])
def test_predict_and_eval_of_the_onnx_file_match_the_model_file(
    onnx_files, cifar_file, photos, folder_data, kind, tmp_path, capsys
):
    outputs = {}
    for path in (cifar_file, onnx_files[kind]):
        assert main(["predict", str(path), *map(str, photos), "--top-k", "3"]) == 0
        outputs[path.suffix] = capsys.readouterr().out
    # The same classes, probabilities within the printed rounding (onnxruntime and PyTorch
    # round differently, and a value can fall either side of a 0.05% boundary).
    onnx, torch_ = _predictions(outputs[".onnx"]), _predictions(outputs[".safetensors"])
    assert onnx.keys() == torch_.keys() and len(onnx) == len(photos)
    for image, probabilities in onnx.items():
        assert probabilities.keys() == torch_[image].keys()
        assert sum(probabilities.values()) == pytest.approx(100, abs=0.2)  # all 3 classes
        for name, percent in probabilities.items():
            assert percent == pytest.approx(torch_[image][name], abs=0.1 + 1e-9)
    onnx_report = resnetlab.evaluate(onnx_files[kind], str(folder_data), device="cpu")
    torch_report = resnetlab.evaluate(cifar_file, str(folder_data), device="cpu")
    assert onnx_report.result.count == 14
    assert torch.equal(onnx_report.result.confusion, torch_report.result.confusion)
    assert onnx_report.result.loss == pytest.approx(torch_report.result.loss, abs=1e-5)
    png = tmp_path / "confusion.png"
    args = ["eval", str(onnx_files[kind]), "--data", str(folder_data), "--png", str(png)]
    assert main([*args, "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 14 and png.is_file()


def _predictions(out: str) -> dict[str, dict[str, float]]:
    """``predict``'s lines, ``IMAGE: NAME P%, NAME P%...``, as {image: {name: percent}}."""
    parsed = {}
    for line in out.splitlines():
        image, _, ranked = line.rpartition(": ")
        pairs = (item.rsplit(" ", 1) for item in ranked.split(", "))
        parsed[image] = {name: float(percent.rstrip("%")) for name, percent in pairs}
    return parsed


def test_an_onnx_file_of_another_name_is_run_as_one(onnx_files, cifar_file, photos, tmp_path):
    """`export --format onnx` writes any name; predict took such a file for a model file
    ("model is not a safetensors model file (... header too large)")."""
    renamed = tmp_path / "model"
    renamed.write_bytes(onnx_files["plain"].read_bytes())
    got = resnetlab.predict(renamed, photos[:2])
    expected = resnetlab.predict(onnx_files["plain"], photos[:2])
    assert [p.top for p in got] == [p.top for p in expected]
    with pytest.raises(resnetlab.ResnetlabError, match=rf"^{renamed} is an ONNX export, which"):
        resnetlab.load_model(renamed)  # as export and convert take it


def test_a_folder_named_onnx_is_said_to_be_a_folder(onnx_files, photos, tmp_path, capsys):
    """It was 'model file not found: out.onnx', with a near name to try."""
    folder = tmp_path / "out.onnx"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(onnx_files["plain"].read_bytes())
    assert main(["predict", str(folder), str(photos[0])]) == 2
    assert capsys.readouterr().err == (
        f"error: {folder} is a folder, not an ONNX file; give the file, e.g. "
        f"{folder / 'model.onnx'}\n"
    )


def test_a_pipe_given_as_the_model_file_is_not_waited_on(photos, tmp_path):
    """Looking at its first bytes for ONNX's would wait for a writer that never comes."""
    fifo = tmp_path / "model"
    os.mkfifo(fifo)
    failed = []
    thread = threading.Thread(target=_failure, args=(fifo, photos[0], failed), daemon=True)
    thread.start()
    thread.join(timeout=20)
    if thread.is_alive():  # let it go: a writer opens the pipe and closes it at once
        os.close(os.open(fifo, os.O_WRONLY))
    assert failed and "is a pipe or a device, not a model file" in failed[0]


def _failure(model, image, failed):
    try:
        resnetlab.predict(model, [image])
    except resnetlab.ResnetlabError as e:
        failed.append(str(e))


def test_a_model_file_or_torch_file_given_as_onnx_says_what_it_is(
    cifar_file, photos, tmp_path, capsys
):
    """onnxruntime's own words ("Protobuf parsing failed") would not say that the file is
    a model file, renamed or given to OnnxModel, nor what to do."""
    renamed = tmp_path / "model.onnx"
    renamed.write_bytes(cifar_file.read_bytes())
    for command in (["predict", str(renamed), str(photos[0])], ["serve", str(renamed)]):
        assert main(command) == 2
        assert capsys.readouterr().err == (
            f"error: {renamed} is a safetensors file named .onnx, not an ONNX export: name it "
            f"model.safetensors and give it as the model file, or export that to ONNX: "
            f"resnetlab export {tmp_path / 'model.safetensors'} {renamed}\n"
        )
    with pytest.raises(resnetlab.ResnetlabError) as caught:
        OnnxModel(cifar_file)
    assert str(caught.value) == (
        f"{cifar_file} is a safetensors file, not an ONNX export: load it with "
        "resnetlab.load_model (predict, eval and serve take it as it is), or export it to "
        f"ONNX first: resnetlab export {cifar_file} {cifar_file.with_suffix('.onnx')}"
    )
    weights = tmp_path / "weights.onnx"
    torch.save(resnetlab.load_model(cifar_file).state_dict(), weights)
    assert main(["eval", str(weights), "--data", "digits"]) == 2
    assert capsys.readouterr().err == (
        f"error: {weights} is a PyTorch weights file (torch.save), which --pretrained takes, "
        "not an ONNX export; predict, eval and serve take a model file (.safetensors) or its "
        f"ONNX export: resnetlab export MODEL_FILE {weights}\n"
    )


def test_an_onnx_file_this_user_may_not_read_is_named_so(
    onnx_files, photos, tmp_path, monkeypatch, capsys
):
    # An export copied from another account (chmod 600): it was "is not an ONNX model
    # onnxruntime can load ([ONNXRuntimeError] : 1 : FAIL : Load model from m.onnx
    # failed:system error number 13)". Root reads it, so the kernel's refusal is made here.
    import onnxruntime

    path = tmp_path / "m.onnx"
    path.write_bytes(onnx_files["plain"].read_bytes())
    access, session = os.access, onnxruntime.InferenceSession
    monkeypatch.setattr(
        os, "access", lambda p, mode, **kw: str(p) != str(path) and access(p, mode, **kw)
    )

    def refused(source, *args, **kwargs):
        if source == str(path):
            failed = f"Load model from {source} failed:system error number 13"
            raise RuntimeError(f"[ONNXRuntimeError] : 1 : FAIL : {failed}")
        return session(source, *args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", refused)
    assert main(["predict", str(path), str(photos[0])]) == 2
    assert capsys.readouterr().err == (
        f"error: {path}: no permission to read it; give yourself read access to it (chmod u+r)\n"
    )


def test_bad_onnx_files_are_one_line_errors(onnx_files, photos, tmp_path, capsys):
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a graph")
    assert main(["predict", str(junk), str(photos[0])]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {junk} is not an ONNX model onnxruntime can load (")
    assert err.count("\n") == 1
    bare = onnx.load(str(onnx_files["plain"]))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    assert main(["predict", str(tmp_path / "bare.onnx"), str(photos[0])]) == 2
    assert capsys.readouterr().err == (
        f"error: {tmp_path / 'bare.onnx'} has no resnetlab metadata; export the model file "
        "with `resnetlab export`\n"
    )
    edited = onnx.load(str(onnx_files["plain"]))
    for prop in edited.metadata_props:
        if prop.key == "resnetlab":
            prop.value = '{"model": "resnet20"}'
    onnx.save(edited, str(tmp_path / "edited.onnx"))
    for command in (
        ["predict", str(tmp_path / "edited.onnx"), str(photos[0])],
        ["eval", str(tmp_path / "edited.onnx"), "--data", "digits"],
    ):
        assert main(command) == 2
        assert capsys.readouterr().err == (
            f"error: {tmp_path / 'edited.onnx'} has invalid resnetlab metadata (no "
            "num_classes, input_size); the file is damaged or was edited: export the model "
            "file again\n"
        )
    assert main(["predict", str(tmp_path / "missing.onnx"), str(photos[0])]) == 2
    assert capsys.readouterr().err == f"error: model file not found: {tmp_path / 'missing.onnx'}\n"
    assert main(["predict", str(tmp_path / "bare.onx"), str(photos[0])]) == 2
    assert capsys.readouterr().err == (
        f"error: model file not found: {tmp_path / 'bare.onx'}; did you mean "
        f"{tmp_path / 'bare.onnx'}?\n"
    )
    empty = tmp_path / "empty.onnx"  # a failed download, or a redirect that wrote nothing
    empty.touch()
    assert main(["predict", str(empty), str(photos[0])]) == 2
    assert capsys.readouterr().err == (
        f"error: {empty} is empty (0 bytes), as a copy or download that failed leaves it; copy "
        "it again, or export it again\n"
    )


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"input_size": 64}, "its graph takes 16x16 images, its metadata says 64x64"),
        (
            {"num_classes": 4, "class_names": ["a", "b", "c", "d"]},
            "its graph gives 3 classes, its metadata says 4",
        ),
    ],
)
def test_an_onnx_file_whose_metadata_contradicts_its_graph_is_refused(
    onnx_files, photos, tmp_path, capsys, change, says
):
    edited = onnx.load(str(onnx_files["plain"]))
    for prop in edited.metadata_props:  # the JSON and the keys spelled out alike
        if prop.key == "resnetlab":
            prop.value = json.dumps({**json.loads(prop.value), **change})
        elif prop.key in change:
            prop.value = json.dumps(change[prop.key])
    path = tmp_path / "edited.onnx"
    onnx.save(edited, str(path))
    assert main(["predict", str(path), str(photos[0])]) == 2
    assert capsys.readouterr().err == (
        f"error: {path} has invalid resnetlab metadata ({says}); the file is damaged or was "
        "edited: export the model file again\n"
    )


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("crop_fraction", "0.8", "its crop_fraction says 0.8, its resnetlab JSON 0.875"),
        ("resize", "squash", 'its resize says squash, its resnetlab JSON "crop"'),
        ("input_size", "18", "its input_size says 18, its resnetlab JSON 16"),
    ],
)
def test_an_onnx_file_whose_client_keys_contradict_its_json_is_refused(
    cropped_files, photos, tmp_path, capsys, key, value, says
):
    """The README's client reads crop_fraction (and the other keys) on their own, the
    runtime the JSON: a file edited to make them disagree is refused, not run one way here
    and another there. A file without the key (exported before it) reads as ever."""
    _, onnx_file = cropped_files
    edited = onnx.load(str(onnx_file))
    for prop in edited.metadata_props:
        if prop.key == key:
            prop.value = value
    path = tmp_path / "edited.onnx"
    onnx.save(edited, str(path))
    assert main(["predict", str(path), str(photos[0])]) == 2
    assert capsys.readouterr().err == (
        f"error: {path} has invalid resnetlab metadata ({says}); the file is damaged or was "
        "edited: export the model file again\n"
    )


def test_an_onnx_file_without_the_crop_fraction_key_must_mean_one(onnx_files, cropped_files):
    """Files exported before crop_fraction lack the key and the JSON's (both 1, as the
    README's client reads a missing key); one whose JSON alone says 0.875 was edited."""
    for source in (onnx_files["plain"], cropped_files[1]):
        older = onnx.load(str(source))
        kept = [p for p in older.metadata_props if p.key != "crop_fraction"]
        for prop in kept:
            if prop.key == "resnetlab" and source == onnx_files["plain"]:
                data = json.loads(prop.value)
                del data["crop_fraction"]
                prop.value = json.dumps(data)
        del older.metadata_props[:]
        older.metadata_props.extend(kept)
        onnx.save(older, str(source.with_name("older.onnx")))
    assert OnnxModel(onnx_files["plain"].with_name("older.onnx")).meta.crop_fraction == 1
    edited = cropped_files[1].with_name("older.onnx")
    with pytest.raises(resnetlab.ResnetlabError) as caught:
        OnnxModel(edited)
    assert str(caught.value).startswith(
        f"{edited} has invalid resnetlab metadata (its crop_fraction says 1.0 (no key), its "
        "resnetlab JSON 0.875);"
    )


def test_predict_cam_needs_the_pytorch_weights(onnx_files, photos, tmp_path, capsys):
    onnx_file = onnx_files["plain"]
    assert main(["predict", str(onnx_file), str(photos[0]), "--cam", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"error: --cam needs the model's PyTorch weights, which {onnx_file} does not hold; "
        "give the .safetensors model file it was exported from\n"
    )


def test_running_an_onnx_file_without_onnxruntime_says_what_to_install(
    onnx_files, photos, capsys, monkeypatch
):
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    assert main(["predict", str(onnx_files["plain"]), str(photos[0])]) == 2
    assert capsys.readouterr().err == (
        f"error: running {onnx_files['plain'].name} needs onnxruntime, which is not installed: "
        "pip install 'resnetlab[export]'\n"
    )


def test_an_onnx_file_says_its_crop_fraction_and_predicts_as_its_model_file(cropped_files, photos):
    model_file, onnx_file = cropped_files
    props = {p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}
    assert props["crop_fraction"] == "0.875" and props["resize"] == "crop"
    assert json.loads(props["resnetlab"])["crop_fraction"] == 0.875
    assert OnnxModel(onnx_file).meta == resnetlab.read_model_meta(model_file)
    for ours, theirs in zip(
        resnetlab.predict(onnx_file, photos), resnetlab.predict(model_file, photos), strict=True
    ):
        assert [name for name, _ in ours.top] == [name for name, _ in theirs.top]
        assert [p for _, p in ours.top] == pytest.approx([p for _, p in theirs.top], abs=1e-4)


@pytest.mark.parametrize("cropped", [False, True], ids=["whole", "crop-fraction"])
def test_the_readme_client_example_gives_what_predict_gives(
    onnx_files, cropped_files, cropped, tmp_path, capsys, monkeypatch
):
    from ..conftest import PROJECT_ROOT

    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    blocks = readme.split("```python\n")[1:]
    (client,) = [b.split("```")[0] for b in blocks if "import onnxruntime as ort" in b]
    assert "resnetlab" not in client and "torch" not in client  # onnxruntime, numpy, Pillow
    monkeypatch.chdir(tmp_path)
    onnx_file = cropped_files[1] if cropped else onnx_files["pixels"]
    (tmp_path / "model.onnx").write_bytes(onnx_file.read_bytes())
    rng = np.random.default_rng(1)
    photo = Image.fromarray(rng.integers(0, 256, (8, 6, 3), dtype=np.uint8)).resize((90, 120))
    photo.save(tmp_path / "photo.jpg")
    scope = {}
    exec(compile(client, "README client", "exec"), scope)
    printed = capsys.readouterr().out.split()
    # The pixels are predict's, to the grey level, whole or cropped from more.
    meta = OnnxModel(tmp_path / "model.onnx").meta
    assert meta.crop_fraction == (0.875 if cropped else 1.0)
    assert np.array_equal(np.asarray(scope["image"]), read_input(tmp_path / "photo.jpg", meta))
    (prediction,) = resnetlab.predict(tmp_path / "model.onnx", [tmp_path / "photo.jpg"])
    assert printed[0::2] == [name for name, _ in prediction.top]
    assert [float(p.rstrip("%")) for p in printed[1::2]] == pytest.approx(
        [round(100 * p, 1) for _, p in prediction.top], abs=0.1
    )


def test_in_batches_fills_up_the_last_batch_of_a_fixed_size():
    seen = []

    def run(batch):
        seen.append(batch.copy())
        return batch * 10

    inputs = np.arange(7)[:, None]
    np.testing.assert_array_equal(in_batches(run, inputs, 3), inputs * 10)
    assert [b[:, 0].tolist() for b in seen] == [[0, 1, 2], [3, 4, 5], [6, 6, 6]]
    np.testing.assert_array_equal(in_batches(run, inputs, None), inputs * 10)


def test_serve_answers_for_the_onnx_file_as_for_the_model_file(onnx_files, cifar_file, photos):
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from resnetlab.serve import RequestError, load_predictor

    onnx_predictor = load_predictor(onnx_files["pixels"], device="cpu")
    torch_predictor = load_predictor(cifar_file, device="cpu")
    assert onnx_predictor.describe()["classes"] == CLASSES
    pixels = torch.stack(
        [torch.from_numpy(onnx_predictor.decode(p.read_bytes(), p.name)) for p in photos]
    )
    torch.testing.assert_close(onnx_predictor(pixels), torch_predictor(pixels), atol=1e-5, rtol=0)
    with pytest.raises(RequestError, match="PyTorch weights"):
        onnx_predictor.require_cam()
