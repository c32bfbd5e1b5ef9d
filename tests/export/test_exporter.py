import errno
import functools
import io
import json
import os
import signal
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import resnetlab
from resnetlab.cli import main
from resnetlab.engine.predict import read_input
from resnetlab.errors import ResnetlabError
from resnetlab.export import EXTRA_FILE, export_model
from resnetlab.export.exporter import DeployedModel

from .conftest import CLASSES, FAMILIES, write_model_file

# TorchScript is deprecated upstream; loading it here is the point.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")

SUFFIX = {"onnx": ".onnx", "torchscript": ".pt", "exported-program": ".pt2"}


def load_in_runtime(path, fmt):
    """The exported file loaded by its own runtime, as a function of a numpy batch."""
    if fmt == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: session.run(None, {"images": x})[0]
    if fmt == "torchscript":
        module = torch.jit.load(str(path))
    else:
        module = torch.export.load(str(path)).module()
    return lambda x: module(torch.from_numpy(x)).detach().numpy()


# The CIFAR net in every format runs by default; the other families, bigger or slower to
# export (resnet50_keras has 23.5 million parameters), with -m slow.
CASES = [
    pytest.param(family, fmt, marks=() if family == "cifar" else pytest.mark.slow)
    for family in FAMILIES
    for fmt in SUFFIX
]


@pytest.mark.parametrize(("family", "fmt"), CASES)
def test_every_family_in_every_format_gives_the_pytorch_logits(
    family, fmt, tmp_path, cifar_file, exported
):
    if (family, fmt) == ("cifar", "onnx"):
        model_file, (out, report) = cifar_file, exported()
    else:
        model_file = write_model_file(tmp_path / "m.safetensors", family)
        out = tmp_path / f"m{SUFFIX[fmt]}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = export_model(model_file, out)
        assert [str(w.message) for w in caught] == []  # the CLI would print each one
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.safetensors", out.name])
    assert report.format == fmt and report.check.batches == [1, 8]
    assert report.check.max_difference <= 1e-4 and report.check.agreement == 8
    model = resnetlab.load_model(model_file)
    size = model.meta.input_size
    run = load_in_runtime(out, fmt)
    for batch in (1, 7):
        x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = model(x).numpy()
        logits = run(x.numpy())
        assert logits.shape == (batch, len(CLASSES))
        np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4)


def test_with_preprocessing_on_uint8_pixels_equals_predict(cifar_file, photos, exported):
    out, report = exported(with_preprocessing=True, batch=1)
    assert report.metadata["input"] == "uint8 (1, 16, 16, 3) RGB pixels"  # its one batch size
    assert report.metadata["output"] == "float32 (1, 3) logits, in class_names order"
    assert report.check.batches == [1] and report.metadata["batch"] == 1
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (graph_input,) = session.get_inputs()
    assert graph_input.type == "tensor(uint8)" and graph_input.shape == [1, 16, 16, 3]
    meta = resnetlab.read_model_meta(cifar_file)
    pixels = np.stack([read_input(p, meta) for p in photos])  # what predict decodes
    logits = np.concatenate([session.run(None, {"images": x[None]})[0] for x in pixels])
    probabilities = torch.from_numpy(logits).softmax(1)
    predictions = resnetlab.predict(cifar_file, photos, top_k=3, device="cpu")
    for p, probs in zip(predictions, probabilities, strict=True):
        assert [name for name, _ in p.top] == [CLASSES[i] for i in probs.argsort(descending=True)]
        assert [prob for _, prob in p.top] == pytest.approx(sorted(probs.tolist())[::-1], abs=1e-5)


def test_onnx_metadata_gives_the_class_names_and_preprocessing_back(exported):
    out, _ = exported()
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["class_names"]) == CLASSES
    assert props["input_size"] == "16" and props["resize"] == "crop"
    assert json.loads(props["mean"]) == pytest.approx([0.5, 0.4, 0.3])
    assert json.loads(props["std"]) == pytest.approx([0.25, 0.2, 0.3])
    assert props["precision"] == "fp32" and props["batch"] == "dynamic"
    assert props["input"].startswith("float32 (N, 3, 16, 16) RGB")  # any batch size
    assert json.loads(props["resnetlab"])["model"] == "resnet8"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map == props  # what a client reads


def test_torch_formats_carry_the_metadata_as_an_extra_file(cifar_file, tmp_path):
    # A fixed batch of 3: the check's 8 images run as 3 + 3 + 2 filled up to 3.
    report = export_model(cifar_file, tmp_path / "m.pt2", fp16=True, batch=3)
    assert report.check.batches == [3] and report.check.count == 8
    extra = {EXTRA_FILE: ""}
    program = torch.export.load(str(tmp_path / "m.pt2"), extra_files=extra)
    metadata = json.loads(extra[EXTRA_FILE])
    assert metadata["class_names"] == CLASSES and metadata["precision"] == "fp16"
    assert metadata["input_size"] == 16 and metadata["resize"] == "crop"
    assert metadata["batch"] == 3
    assert json.loads(metadata["resnetlab"]) == json.loads(
        resnetlab.read_model_meta(cifar_file).to_json()
    )
    with pytest.raises(Exception, match="3"):  # the batch is part of the program
        program.module()(torch.zeros(2, 3, 16, 16))


def test_fp16_keeps_float32_inputs_and_outputs_within_its_tolerance(cifar_file, tmp_path):
    report = export_model(cifar_file, tmp_path / "half.pt", fp16=True)
    assert report.precision == "fp16"
    # The limit as applied: 1% of the largest logit (of at least 1), shown as a number.
    assert report.check.tolerance >= 1e-2 and report.check.max_difference <= report.check.tolerance
    extra = {EXTRA_FILE: ""}  # torch.jit.load's name for it: _extra_files (README)
    module = torch.jit.load(str(tmp_path / "half.pt"), _extra_files=extra)
    assert json.loads(extra[EXTRA_FILE])["precision"] == "fp16"
    weights = [p for p in module.parameters() if p.ndim == 4]
    assert weights and all(p.dtype == torch.float16 for p in weights)
    x = torch.randn(7, 3, 16, 16)
    with torch.no_grad():
        logits, expected = module(x), resnetlab.load_model(cifar_file)(x)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-2)


@pytest.mark.slow
def test_onnx_fp16_at_a_chosen_opset(cifar_file, tmp_path):
    out = tmp_path / "half.onnx"
    report = export_model(cifar_file, out, fp16=True, opset=18)
    proto = onnx.load(str(out))
    assert report.opset == 18 and [o.version for o in proto.opset_import if o.domain == ""] == [18]
    conv_weights = [t for t in proto.graph.initializer if len(t.dims) == 4]
    assert conv_weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in conv_weights)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == session.get_outputs()[0].type == "tensor(float)"
    x = torch.randn(7, 3, 16, 16)
    with torch.no_grad():
        expected = resnetlab.load_model(cifar_file)(x).numpy()
    np.testing.assert_allclose(session.run(None, {"images": x.numpy()})[0], expected, atol=1e-2)
    # Below the exporter's own opsets it converts down when it can; when it cannot, the file
    # it fell back to is not passed off as the one asked for (torch 2.5 on), and a layer the
    # opset has no op for is named as the same refusal (torch 2.4: no strided Slice in 9).
    with pytest.raises(resnetlab.ResnetlabError, match="cannot write opset 9 for this model"):
        export_model(cifar_file, tmp_path / "old.onnx", opset=9)
    # Above what the installed onnx knows, the advice is an earlier opset, not "or later".
    newest = onnx.defs.onnx_opset_version()
    with pytest.raises(resnetlab.ResnetlabError, match=rf"\(its newest is {newest}\); ask for"):
        export_model(cifar_file, tmp_path / "new.onnx", opset=newest + 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half.onnx"]


def test_an_export_whose_check_fails_leaves_nothing_behind(cifar_file, tmp_path, monkeypatch):
    out = tmp_path / "m.pt"
    out.write_text("an earlier export")
    forward = DeployedModel.forward
    monkeypatch.setattr(DeployedModel, "forward", lambda self, x: forward(self, x) + 1.0)
    assert main(["export", str(cifar_file), str(out)]) == 2
    assert out.read_text() == "an earlier export"  # kept, and no temporary file left
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_a_failed_export_removes_the_folders_it_made(cifar_file, tmp_path, monkeypatch):
    """They were left behind, empty, by an export that said it wrote nothing."""
    forward = DeployedModel.forward
    monkeypatch.setattr(DeployedModel, "forward", lambda self, x: forward(self, x) + 1.0)
    assert main(["export", str(cifar_file), str(tmp_path / "new" / "sub" / "m.pt")]) == 2
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_that_the_onnx_exporter_reports_as_its_failure_is_an_interruption(
    cifar_file, tmp_path, monkeypatch, capsys
):
    def interrupted_export(*args, **kwargs):
        # As torch's exporter does: Ctrl-C in one of its steps, its handler failing on it,
        # and its own error raised from that.
        try:
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt:
                raise AttributeError("module 'torch._dynamo' has no attribute 'exc'") from None
        except AttributeError as e:
            raise RuntimeError("Failed to export the model with torch.export.") from e

    monkeypatch.setattr(torch.onnx, "export", interrupted_export)
    _export_is_interrupted_and_the_earlier_file_kept(cifar_file, tmp_path, capsys)


def _export_is_interrupted_and_the_earlier_file_kept(cifar_file, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    out.write_text("an earlier export")
    assert main(["export", str(cifar_file), str(out)]) == 130
    assert capsys.readouterr().err == "interrupted\n"
    assert out.read_text() == "an earlier export"  # kept, and no temporary file left
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_ctrl_c_that_the_onnx_exporter_gets_past_is_an_interruption(
    cifar_file, tmp_path, monkeypatch, capsys
):
    """torch's exporter tries one way of capturing the model, then the next: a Ctrl-C that
    its first way fails on and its second gets past was lost, the file written, status 0."""
    export = torch.onnx.export

    @functools.wraps(export)  # its signature: the options of this torch's exporter
    def export_past_ctrl_c(*args, **kwargs):
        try:  # its first way, stopped by Ctrl-C, and its handler failing on it
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)  # until the signal's handler runs
            except KeyboardInterrupt:
                raise AttributeError("module 'torch._dynamo' has no attribute 'exc'") from None
        except Exception:
            pass
        return export(*args, **kwargs)  # its next way

    monkeypatch.setattr(torch.onnx, "export", export_past_ctrl_c)
    _export_is_interrupted_and_the_earlier_file_kept(cifar_file, tmp_path, capsys)


def test_a_folder_that_cannot_take_the_file_fails_first_in_one_line(
    cifar_file, tmp_path, monkeypatch
):
    def read_only(path, *args, **kwargs):
        if Path(path).parent == tmp_path:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *args, **kwargs)

    real_open = os.open
    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(ResnetlabError, match=r"cannot write .*m.onnx: Read-only file system"):
        export_model(cifar_file, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".pt", ".pt2"])
def test_a_full_disk_is_one_line_and_leaves_nothing_behind(
    cifar_file, tmp_path, monkeypatch, suffix
):
    """torch.jit.save and torch.export.save, writing the file themselves, aborted the
    process on a full disk ('terminate called after throwing an instance of c10::Error')."""
    write_bytes = Path.write_bytes

    def full(self, data):
        if self.parent == tmp_path:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    out = tmp_path / f"m{suffix}"
    with pytest.raises(ResnetlabError, match=rf"^cannot write {out}: No space left on device; "):
        export_model(cifar_file, out)
    assert list(tmp_path.iterdir()) == []


def test_an_export_to_a_pipe_is_written_into_it(cifar_file, tmp_path):
    """The checked file was renamed over the pipe (as root, over /dev/null too)."""
    from ..test_storage import read_fifo

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    thread, got = read_fifo(fifo)
    report = export_model(cifar_file, fifo, format="torchscript")
    thread.join(timeout=10)
    assert report.size_bytes == len(got[0]) > 0
    assert zipfile.is_zipfile(io.BytesIO(got[0]))  # a TorchScript file is a zip archive
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="no /proc")
def test_an_export_to_dev_stdout_is_written_into_the_file_it_names(cifar_file, tmp_path):
    """`export m /dev/stdout --format torchscript > m.pt`: /dev/stdout, /dev/fd/N and
    /proc/self/fd/N are links to the file the shell opened, and the checked file was renamed
    over the link (run as root, the system's /dev/stdout became a file) or made beside it in
    /proc, which failed ('cannot write /proc/self/fd/N')."""
    target = tmp_path / "m.pt"
    with target.open("wb") as opened:
        report = export_model(cifar_file, f"/proc/self/fd/{opened.fileno()}", format="torchscript")
    assert target.stat().st_size == report.size_bytes > 0
    assert zipfile.is_zipfile(target)  # a TorchScript file is a zip archive
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="no /proc")
def test_an_export_to_stdout_prints_its_report_on_stderr(cifar_file, tmp_path, monkeypatch, capsys):
    """The report was printed into the exported file, over its first bytes."""
    target = tmp_path / "m.pt"
    with target.open("w") as stdout:
        monkeypatch.setattr("sys.stdout", stdout)
        out = f"/proc/self/fd/{stdout.fileno()}"  # what /dev/stdout links to
        assert main(["export", str(cifar_file), out, "--format", "torchscript"]) == 0
    assert target.read_bytes()[:4] == b"PK\x03\x04"  # a TorchScript file is a zip archive
    torch.jit.load(str(target))
    assert capsys.readouterr().err.splitlines()[-1].startswith(f"wrote {out} (")


@pytest.mark.skipif(not Path("/dev/stdout").exists(), reason="no /dev/stdout")
def test_an_export_to_dash_goes_to_stdout(cifar_file, tmp_path, monkeypatch, capfdbinary):
    """A file named '-' was written in the current folder."""
    from resnetlab.storage import written_into

    assert written_into("/dev/stdout")  # (else, run as root, the export would replace it)
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(cifar_file), "-", "--format", "torchscript"]) == 0
    written = capfdbinary.readouterr()
    torch.jit.load(io.BytesIO(written.out))
    assert written.err.decode().splitlines()[-1].startswith("wrote /dev/stdout (")
    assert list(tmp_path.iterdir()) == []


def test_an_export_to_stdout_on_a_terminal_is_refused(cifar_file, tmp_path, monkeypatch, capsys):
    """It wrote the file's bytes onto the screen."""
    from resnetlab.storage import written_into

    assert written_into("/dev/stdout")  # (else, run as root, the export would replace it)

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdout", Terminal())
    assert main(["export", str(cifar_file), "-", "--format", "onnx"]) == 2
    assert capsys.readouterr().err == (
        "error: OUT - is the terminal, which would show the exported file's bytes; pipe it "
        "into a command, or give a file name\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_an_export_to_a_pipe_in_a_folder_that_takes_no_files_is_written_into_it(
    cifar_file, tmp_path, monkeypatch
):
    """/dev/null for a user who is not root: the file to check was made beside it, in a
    folder that takes none ('cannot write /dev/null: Permission denied')."""
    from ..test_storage import read_fifo

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    real_open = os.open

    def no_new_files(path, flags, *args, **kwargs):
        if Path(path).parent == tmp_path and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_new_files)
    thread, got = read_fifo(fifo)
    report = export_model(cifar_file, fifo, format="torchscript")
    thread.join(timeout=10)
    assert report.size_bytes == len(got[0]) > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_two_exports_to_one_file_at_once_each_write_a_whole_file(cifar_file, tmp_path, monkeypatch):
    """Both wrote and checked .m.tmp.pt: the second's rename took the first's file away
    before its check ('cannot write m.pt: No such file or directory')."""
    from resnetlab.export import exporter

    other = write_model_file(tmp_path / "other.safetensors", "plain")
    out = tmp_path / "m.pt"
    check = exporter._check

    def another_export_meanwhile(*args, **kwargs):
        monkeypatch.setattr(exporter, "_check", check)
        assert export_model(other, out).model == "plain8"
        return check(*args, **kwargs)

    monkeypatch.setattr(exporter, "_check", another_export_meanwhile)
    assert export_model(cifar_file, out).model == "resnet8"
    extra = {EXTRA_FILE: ""}
    torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(json.loads(extra[EXTRA_FILE])["resnetlab"])["model"] == "resnet8"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "other.safetensors"]


@pytest.mark.parametrize(
    ("fmt", "described"),
    [("torchscript", "TorchScript"), ("onnx", "ONNX"), ("exported-program", "torch.export")],
)
def test_export_cli_reports_the_check(cifar_file, tmp_path, capsys, fmt, described):
    out = tmp_path / "exported" / "model"
    assert main(["export", str(cifar_file), str(out), "--format", fmt]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0].startswith(f"exported {cifar_file} (resnet8) to {out}: {described}")
    assert "on 8 generated images, batch sizes 1 and 8: largest logit difference" in lines[1]
    assert lines[1].endswith("top-1 agreement 8/8") and lines[2].startswith(f"wrote {out}")
    assert captured.err == ""  # no warning from the exporter or the runtime that checks
    assert sorted(p.name for p in out.parent.iterdir()) == ["model"]


def test_export_checks_on_the_held_out_images_of_data(cifar_file, photos, tmp_path, capsys):
    folder = tmp_path / "data"
    for i, path in enumerate(photos):
        (folder / CLASSES[i % 3]).mkdir(parents=True, exist_ok=True)
        (folder / CLASSES[i % 3] / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "m.pt2"
    assert main(["export", str(cifar_file), str(out), "--data", str(folder), "--json"]) == 0
    check = json.loads(capsys.readouterr().out)["check"]
    assert check["images"] == f"7 images of {folder}" and check["count"] == 7
    # An archive of it is named as given, not by its copy extracted into the cache.
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*.*")):
            zf.write(path, path.relative_to(tmp_path))
    assert main(["export", str(cifar_file), str(out), "--data", str(archive), "--json"]) == 0
    check = json.loads(capsys.readouterr().out)["check"]
    assert check["images"] == f"7 images of {archive}{os.sep}data"


def test_export_data_of_other_classes_says_to_give_other_data_or_none(
    cifar_file, photos, tmp_path, capsys
):
    """--data only checks (and calibrates) the export: the fix is data of the model's
    classes, or none, not eval's "score it without those classes"."""
    folder = tmp_path / "data"
    for i, path in enumerate(photos):
        name = ("paper", "rock", "lizard")[i % 3]
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "m.onnx"
    said = (
        f"error: {folder} has 3 classes [lizard, paper, rock] but the model was trained on 3: "
        "[paper, rock, scissors]; [lizard] is not among them; "
    )
    assert main(["export", str(cifar_file), str(out), "--data", str(folder)]) == 2
    assert capsys.readouterr().err == said + (
        "the export is only checked on --data: give data of the model's classes (its training "
        "data, say), or leave --data out to check it on generated images\n"
    )
    assert main(["export", str(cifar_file), str(out), "--data", str(folder), "--quantize", "int8"])
    assert capsys.readouterr().err == said + (
        "--quantize int8 calibrates and checks the file on --data: give data of the model's "
        "classes (its training data, say)\n"
    )
    with pytest.raises(ResnetlabError) as caught:  # digits: no folders, none of its classes
        export_model(cifar_file, out, data="digits")
    assert str(caught.value).endswith(
        "are not among them; the export is only checked on data: give data of the model's "
        "classes (its training data, say), or leave data out to check it on generated images"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["m.txt"], "cannot tell the format from {tmp}/m.txt's suffix; name it .onnx (onnx)"),
        (["m.pt2", "--format", "onnx"], "{tmp}/m.pt2 has the suffix of exported-program but"),
        (
            ["m.safetensors", "--format", "torchscript"],
            "{tmp}/m.safetensors: .safetensors is the suffix of resnetlab's own model files, "
            "which export does not write (resnetlab.save_model does); name it m.pt",
        ),
        (["m.safetensors"], "{tmp}/m.safetensors: .safetensors is the suffix of resnetlab's"),
        (["m.pt", "--opset", "17"], "--opset applies to ONNX files, not to torchscript"),
        (["m.pt", "--batch", "0"], "--batch must be 'dynamic' or a positive number, got '0'"),
        (["m.pt", "--batch", "some"], "--batch must be 'dynamic' or a positive number"),
        (["m.pt", "--batch", "9" * 5000], "--batch of 5,000 digits is more images than any"),
        (
            ["m.onnx", "--quantize", "int8"],
            "--quantize int8 calibrates on real images: pass --data",
        ),
        (["m.pt", "--quantize", "int8", "--data", "digits"], "--quantize int8 uses onnxruntime"),
        (["m.onnx", "--quantize", "int8", "--fp16"], "--quantize int8 and --fp16 exclude"),
        (["."], "{tmp} names a folder; give a file name, e.g. {tmp}/model.onnx"),
    ],
)
def test_bad_export_options_are_one_line_errors(cifar_file, tmp_path, capsys, args, message):
    out, *flags = args
    assert main(["export", str(cifar_file), str(tmp_path / out), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message.format(tmp=tmp_path)}") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("opset", "message"), [("17", "got '17'"), (0, "at least 1, got 0")])
def test_an_opset_that_is_not_a_number_is_one_line(cifar_file, tmp_path, opset, message):
    with pytest.raises(resnetlab.ResnetlabError, match=f"^opset must be .*{message}"):
        export_model(cifar_file, tmp_path / "m.onnx", opset=opset)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("batch", [True, 4.5, "4.5", None])
def test_a_batch_that_is_not_a_whole_number_is_one_line(cifar_file, tmp_path, batch):
    """True was a batch of 1 and 4.5 one of 4 (int() of either)."""
    says = rf"^batch must be 'dynamic' or a positive number, got {batch!r}$"
    with pytest.raises(resnetlab.ResnetlabError, match=says.replace(".", r"\.")):
        export_model(cifar_file, tmp_path / "m.onnx", batch=batch)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flag", ["fp16", "with_preprocessing"])
def test_a_switch_that_is_not_true_or_false_is_one_line(cifar_file, tmp_path, flag):
    with pytest.raises(resnetlab.ResnetlabError, match=f"^{flag} is True or False, got 'no'$"):
        export_model(cifar_file, tmp_path / "m.onnx", **{flag: "no"})
    assert list(tmp_path.iterdir()) == []


def test_a_path_ending_in_a_separator_names_a_folder_not_a_file(cifar_file, tmp_path, capsys):
    out = f"{tmp_path}/new/"  # Path would drop the slash and write a file named new
    assert main(["export", str(cifar_file), out]) == 2
    assert capsys.readouterr().err == (
        f"error: {out} names a folder; give a file name, e.g. {out}model.onnx\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_url_to_write_to_is_told_to_be_a_local_path(cifar_file, capsys):
    assert main(["export", str(cifar_file), "s3://bucket/m.onnx"]) == 2
    assert capsys.readouterr().err == (
        "error: the file to write: s3://bucket/m.onnx is a URL, and resnetlab works on local "
        "files; give a local path\n"
    )


def test_a_file_that_is_not_a_model_file_is_a_one_line_error(tmp_path, capsys):
    notes = tmp_path / "notes.safetensors"
    notes.write_text("not a model")
    assert main(["export", str(notes), str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"error: {notes} is not a safetensors model file") and err.count("\n") == 1
    )
    assert main(["export", str(tmp_path / "missing.safetensors"), str(tmp_path / "m.pt")]) == 2
    assert capsys.readouterr().err.startswith("error: model file not found")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.safetensors"]


def test_onnx_export_without_the_extra_says_what_to_install(
    cifar_file, tmp_path, capsys, monkeypatch
):
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)  # as if not installed
    assert main(["export", str(cifar_file), str(tmp_path / "m.onnx")]) == 2
    assert capsys.readouterr().err == (
        "error: ONNX export needs onnxruntime, which is not installed: "
        "pip install 'resnetlab[export]'\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_model_or_nothing_where_a_path_goes_is_one_line(cifar_file, tmp_path):
    model = resnetlab.load_model(cifar_file)
    cases = [
        (
            (model, tmp_path / "m.onnx"),
            "export_model takes a model file, not a ResNet: write it with resnetlab.save_model(",
        ),
        ((cifar_file, None), "the file to write must be a path (str or pathlib.Path), got"),
        ((cifar_file, ""), "the file to write: an empty value; give one"),
    ]
    for args, says in cases:
        with pytest.raises(ResnetlabError) as error:
            export_model(*args)
        assert str(error.value).startswith(says)
    assert not list(tmp_path.iterdir())


def test_a_report_prints_as_one_line_without_the_class_names(exported):
    _, report = exported()
    text = repr(report)
    assert "\n" not in text and "paper" not in text and "check=Check(" in text
    assert report.metadata["class_names"] == ["paper", "rock", "scissors"]
