"""``export_model``: a model file to ONNX, TorchScript or an exported program, checked in the
runtime that will run it before it is put in place.

What is written is the model with every BatchNorm folded into its convolution
(``engine.inference.fold_batchnorm``, as ``predict`` runs it), optionally in fp16 and
optionally preceded by ``predict``'s preprocessing. It goes to a temporary file next to the
destination; that file is loaded in its own runtime (onnxruntime on the CPU,
``torch.jit.load``, ``torch.export.load``), run on real images from ``--data`` (else on
generated ones) and compared with the PyTorch model; only when the logits agree within the
tolerance is it renamed to the destination. A failed check leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import io
import json
import logging
import math
import operator
import os
import signal
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.decode import unwarned
from ..data.loader import normalisation
from ..engine.auto import count_of
from ..engine.inference import fold_batchnorm
from ..engine.train import run_file_problem
from ..errors import (
    ResnetlabError,
    as_given,
    count_argument,
    folder_problem,
    option,
    path_argument,
    shown,
)
from ..models import ModelMeta, load_model
from ..storage import (
    missing_folders,
    own_temp,
    removed_on_failure,
    write_error,
    write_into,
    written_into,
)
from .runtime import (
    EXTRA_FILE,
    OnnxModel,
    as_strings,
    deploy_metadata,
    import_extra,
    in_batches,
    read_deploy_meta,
)

FORMATS = {
    "onnx": (".onnx",),
    "torchscript": (".pt", ".torchscript"),
    "exported-program": (".pt2",),
}
# Largest logit difference allowed, as a fraction of the largest logit (at least 1).
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}
# An int8 file is judged by its accuracy on the held-out split instead: at most this far
# below the fp32 model's, and at least one image (``allowed_int8_loss``).
MAX_INT8_DROP = 0.02
STDOUT = "/dev/stdout"  # what OUT "-" stands for
CHECK_IMAGES = 32  # images from --data for the check (fewer are generated without it)
GENERATED_IMAGES = 8


class DeployedModel(nn.Module):
    """The graph an export writes: ``model`` with BN folded, in fp32 or fp16, optionally
    preceded by ``predict``'s preprocessing.

    Args:
        model: a loaded model file (left unchanged).
        meta: its ``ModelMeta`` (the normalisation).
        pixels: take uint8 (N, H, W, 3) RGB pixels and normalise them inside; else take
            normalised float32 (N, 3, H, W) images, as resnetlab models do.
        fp16: weights and arithmetic in float16; inputs and logits stay as they were.
    """

    def __init__(self, model: nn.Module, meta: ModelMeta, *, pixels: bool, fp16: bool) -> None:
        super().__init__()
        self.net = fold_batchnorm(copy.deepcopy(model).float().eval())
        if fp16:
            self.net = self.net.half()
        self.pixels = pixels
        self.fp16 = fp16
        scale, shift = normalisation(meta.mean, meta.std, torch.device("cpu"), torch.float32)
        self.register_buffer("scale", scale)  # (3,)
        self.register_buffer("shift", shift)
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        if self.pixels:
            # What DeviceLoader does to a batch: one multiply-add per pixel, then (N, 3, H, W).
            x = torch.addcmul(self.shift, images.float(), self.scale).permute(0, 3, 1, 2)
        if self.fp16:
            x = x.half()
        return self.net(x).float()


@dataclass
class Check:
    """How the written file compared with the PyTorch model."""

    runtime: str
    images: str  # which images, in words
    batches: list[int]  # the batch sizes it ran at
    max_difference: float
    tolerance: float | None  # the largest difference allowed; None: int8, judged by accuracy
    agreement: int  # images whose top-1 class matched
    count: int


@dataclass
class ExportReport:
    """What ``export_model`` wrote and how it checked it."""

    source: str
    path: str
    format: str
    model: str
    precision: str
    batch: int | None
    pixels: bool
    opset: int | None
    size_bytes: int
    check: Check
    # What the file's metadata says, class names included (a thousand for an ImageNet
    # model): left out of the repr, which is then a line.
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)
    int8_accuracy: dict[str, Any] | None = None  # data, count, fp32, int8

    def describe(self) -> list[str]:
        """Lines for the terminal."""
        c = self.check
        kind = {"onnx": f"ONNX opset {self.opset}", "torchscript": "TorchScript (traced)"}.get(
            self.format, "torch.export program"
        )
        batch = "dynamic" if self.batch is None else str(self.batch)
        lines = [
            f"exported {self.source} ({self.model}) to {self.path}: {kind}, batch {batch}, "
            f"{self.precision}, input {self.metadata['input']}",
        ]
        allowed = f" (allowed {c.tolerance:.1e})" if c.tolerance is not None else ""
        lines.append(
            f"checked with {c.runtime} on {c.images}, batch size{'s' * (len(c.batches) > 1)} "
            f"{' and '.join(map(str, c.batches))}: largest logit difference "
            f"{c.max_difference:.2e}{allowed}, top-1 agreement {c.agreement}/{c.count}"
        )
        if self.int8_accuracy:
            a = self.int8_accuracy
            lines += [f"note: {note}" for note in unwarned(a["notes"])]
            lines.append(
                f"accuracy on the {a['count']:,} images that eval scores for {a['data']}: int8 "
                f"{a['int8']:.2%}, fp32 {a['fp32']:.2%} ({(a['int8'] - a['fp32']) * 100:+.2f} "
                f"points)"
            )
        lines.append(f"wrote {self.path} ({self.size_bytes / 2**20:.1f} MiB)")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_format(out: Path, format: str | None) -> str:
    """The format named, else the one ``out``'s suffix stands for."""
    by_suffix = {s: f for f, suffixes in FORMATS.items() for s in suffixes}
    implied = by_suffix.get(out.suffix.lower())
    if out.suffix.lower() == ".safetensors":  # read by predict and load_model as a model file
        named = out.with_suffix(FORMATS.get(format or "onnx", (".onnx",))[0]).name
        raise ResnetlabError(
            f"{out}: .safetensors is the suffix of resnetlab's own model files, which export "
            f"does not write (resnetlab.save_model does); name it {named}"
        )
    if format is None:
        if implied is None:
            known = ", ".join(f"{s} ({f})" for s, f in by_suffix.items())
            raise ResnetlabError(
                f"cannot tell the format from {out}'s suffix; name it {known}, or pass "
                f"{option('format')}"
            )
        return implied
    if format not in FORMATS:
        raise ResnetlabError(f"unknown format {format!r}; choose {', '.join(FORMATS)}")
    if implied is not None and implied != format:
        raise ResnetlabError(
            f"{out} has the suffix of {implied} but {option('format')} is {format}; "
            f"name it {FORMATS[format][0]}"
        )
    return format


def parse_batch(batch: str | int) -> int | None:
    """``dynamic`` -> None; a positive whole number (or its digits) -> itself. Not a bool
    nor a float: ``int`` made True a batch of 1 and 4.5 one of 4."""
    if batch == "dynamic":
        return None
    if isinstance(batch, str):
        text = batch.strip()
        digits = text.lstrip("0")
        if text.isdecimal() and len(digits) > 18:  # not int()'s ValueError from 4,300
            raise ResnetlabError(
                f"{option('batch')} of {len(digits):,} digits is more images than any export "
                "runs at once; give a batch size such as 1 or 32, or 'dynamic'"
            )
        value = int(text) if text.isdecimal() else 0
    else:
        try:
            value = 0 if isinstance(batch, bool) else operator.index(batch)
        except TypeError:
            value = 0
    if value < 1:
        raise ResnetlabError(
            f"{option('batch')} must be 'dynamic' or a positive number, got {batch!r}"
        )
    return value


def export_model(
    model_file: str | os.PathLike,
    out: str | os.PathLike,
    *,
    format: str | None = None,
    batch: str | int = "dynamic",
    opset: int | None = None,
    fp16: bool = False,
    with_preprocessing: bool = False,
    data: str | None = None,
    quantize: str | None = None,
) -> ExportReport:
    """Export a model file, check the result in its runtime, and only then write ``out``.

    Args:
        model_file: a ``.safetensors`` model file written by resnetlab.
        out: the file to write; its suffix gives the format unless ``format`` is named.
        format: ``onnx``, ``torchscript`` or ``exported-program``.
        batch: ``dynamic`` (any batch size) or a fixed number of images per call.
        opset: ONNX opset (default: the exporter's).
        fp16: float16 weights and arithmetic; inputs and outputs keep their types.
        with_preprocessing: the graph takes uint8 (N, H, W, 3) RGB pixels at the model's
            input size and normalises them itself.
        data: a data spec whose held-out images the check runs on (and, with
            ``quantize``, whose training images calibrate the int8 model).
        quantize: ``int8``: static INT8 quantization with onnxruntime's tools (ONNX only).

    Returns:
        What was written and how the check went.

    Raises:
        ResnetlabError: a bad option or input, or a written file whose outputs differ from
            the PyTorch model's beyond the tolerance (nothing is then written).
    """
    request = _checked_request(
        model_file, out, format, batch, opset, fp16, with_preprocessing, data, quantize
    )
    model = load_model(request.model_file)  # a file that is not a model file stops here
    meta = model.meta
    metadata = deploy_metadata(
        meta, pixels=request.pixels, precision=request.precision, batch=request.batch
    )
    images, described = check_images(meta, request.data, calibrated=request.quantize is not None)
    graph = DeployedModel(model, meta, pixels=request.pixels, fp16=request.fp16)
    example = _example(meta, request.pixels, request.batch)
    with _temporary_kept_as(request.out, request.fmt) as tmp:
        opset_used = _write_graph(tmp, graph, example, request, meta, metadata)
        check, int8_accuracy = _check_written(tmp, request, model, images, described)
        size_bytes = tmp.stat().st_size
    return _report(request, meta.model, metadata, opset_used, size_bytes, check, int8_accuracy)


@dataclass(frozen=True)
class _Request:
    """``export_model``'s arguments, checked (``_checked_request``)."""

    model_file: str | os.PathLike
    out: Path
    fmt: str
    batch: int | None  # None: dynamic
    opset: int | None
    fp16: bool
    pixels: bool  # with_preprocessing: the graph takes uint8 pixels
    data: str | None
    quantize: str | None

    @property
    def precision(self) -> str:
        return "int8" if self.quantize else "fp16" if self.fp16 else "fp32"


def _checked_request(
    model_file: object,
    out: str | os.PathLike,
    format: str | None,
    batch: str | int,
    opset: int | None,
    fp16: bool,
    with_preprocessing: bool,
    data: str | None,
    quantize: str | None,
) -> _Request:
    """``export_model``'s arguments checked before any work, in this order: the model file,
    the file to write and its format, then the options; and for ONNX, that its packages
    are installed."""
    model_file = _model_file_argument(model_file)
    out = _file_to_write(out)
    fmt = _output_format(out, model_file, format)
    batch_ = parse_batch(batch)
    opset = None if opset is None else count_argument(opset, option("opset"))
    for name, value in (("fp16", fp16), ("with_preprocessing", with_preprocessing)):
        if not isinstance(value, bool):  # "no" would be taken as True
            raise ResnetlabError(f"{name} is True or False, got {shown(value)}")
    _check_options(fmt, opset, fp16, data, quantize)
    if fmt == "onnx":
        for module in ("onnx", "onnxscript", "onnxruntime"):
            import_extra(module, "ONNX export")
    return _Request(model_file, out, fmt, batch_, opset, fp16, with_preprocessing, data, quantize)


def _model_file_argument(model_file: object) -> str | os.PathLike:
    """``model_file`` as a path (``path_argument``); a model itself is refused with how to
    make it a file."""
    if isinstance(model_file, nn.Module):  # predict and evaluate take one; export checks a file
        raise ResnetlabError(
            f"export_model takes a model file, not a {type(model_file).__name__}: write it with "
            "resnetlab.save_model(model, 'model.safetensors') (a loaded model keeps its class "
            "names and normalisation) and export that file"
        )
    return path_argument(model_file, "the model file")


def _file_to_write(out: object) -> Path:
    """``out`` as the path of a file to write: ``-`` is standard output, and a folder is
    refused (``folder_problem``)."""
    out = path_argument(out, "the file to write", reading=False)
    if str(out) == "-":  # a shell's way to say standard output, not a file named "-"
        out = _standard_output()
    if problem := folder_problem(out, "model.onnx"):
        raise ResnetlabError(problem)
    return Path(out)


@contextlib.contextmanager
def _temporary_kept_as(out: Path, fmt: str) -> Iterator[Path]:
    """A temporary file (``_temporary_file``) for the block to write and check: renamed to
    ``out`` (or copied into it, where ``out`` is ``written_into``) once the block is done;
    removed, with the folders made for ``out``, if the block fails, so that a failed export
    leaves nothing behind. An ``OSError`` becomes one line naming ``out`` (``write_error``)."""
    # Folders made for OUT go again when the export fails: it leaves nothing behind.
    made = [] if written_into(out) else missing_folders(out.parent)
    with removed_on_failure(made):
        tmp, held = _temporary_file(out, fmt)
        renamed = False
        try:
            yield tmp
            if written_into(out):  # /dev/null, /dev/stdout: the checked file then removed
                write_into(out, tmp.read_bytes())
            else:
                os.replace(tmp, out)
                renamed = True
        except OSError as e:  # a file the writer or the check could not write or read back
            raise write_error(out, e) from None
        except Exception as e:
            if _interrupted(e):  # Ctrl-C, which torch's ONNX exporter reports as its own failure
                raise KeyboardInterrupt from None
            raise
        finally:
            with contextlib.suppress(OSError):  # a read-only folder refuses even this
                if not renamed:  # (once renamed, the name may be another export's file)
                    tmp.unlink(missing_ok=True)
            if held is not None:
                os.close(held)


def _write_graph(
    path: Path,
    graph: nn.Module,
    example: torch.Tensor,
    request: _Request,
    meta: ModelMeta,
    metadata: dict[str, Any],
) -> int | None:
    """Write ``graph`` to ``path`` in the format asked for, with ``metadata``; with
    ``quantize``, the ONNX file is then quantized to int8 in place, calibrated on training
    images of ``data``. Returns the ONNX opset (None for the other formats)."""
    opset = WRITERS[request.fmt](graph, path, example, request.batch, request.opset, metadata)
    if request.quantize:
        from .quantize import quantize_int8

        calibration = _as_inputs(calibration_images(meta, request.data), meta, request.pixels)
        quantize_int8(path, path, calibration, batch=request.batch)
        _set_onnx_metadata(path, metadata)
    return opset


def _check_written(
    path: Path, request: _Request, model: nn.Module, images: torch.Tensor, described: str
) -> tuple[Check, dict[str, Any] | None]:
    """The written file compared with ``model`` on ``images`` (``_check``) and, for an int8
    file, its accuracy on the held-out images of ``data`` (``_int8_accuracy``, else None);
    either raises when the file falls short."""
    check = _check(
        request.fmt,
        path,
        model,
        model.meta,
        images,
        described,
        request.pixels,
        request.batch,
        request.precision,
    )
    if not request.quantize:
        return check, None
    int8_accuracy = _int8_accuracy(model, path, request.data)
    _judge_int8(int8_accuracy)
    return check, int8_accuracy


def _report(
    request: _Request,
    model_name: str,
    metadata: dict[str, Any],
    opset: int | None,
    size_bytes: int,
    check: Check,
    int8_accuracy: dict[str, Any] | None,
) -> ExportReport:
    """What ``export_model`` returns: the file written, how, and how its check went."""
    return ExportReport(
        source=str(request.model_file),
        path=str(request.out),
        format=request.fmt,
        model=model_name,
        precision=request.precision,
        batch=request.batch,
        pixels=request.pixels,
        opset=opset,
        size_bytes=size_bytes,
        check=check,
        metadata={k: v for k, v in metadata.items() if k != "resnetlab"},
        int8_accuracy=int8_accuracy,
    )


def _output_format(out: Path, model_file: str | os.PathLike, format: str | None) -> str:
    """The format to write ``out`` in, once ``out`` is known to be a file name that is not
    the model file itself, nor another file of a run (``run_file_problem``), nor a folder
    (``folder_problem``)."""
    if out.exists() and out.resolve() == Path(model_file).resolve():
        suffix = FORMATS[format if format in FORMATS else "onnx"][0]
        raise ResnetlabError(
            f"{out} is the model file being exported; name another file to write, e.g. "
            f"{out.with_suffix(suffix)}"
        )
    fmt = resolve_format(out, format)
    instead = out.with_name(Path(model_file).stem + FORMATS[fmt][0])
    if problem := run_file_problem(out, instead):
        raise ResnetlabError(problem)
    return fmt


def _standard_output() -> str:
    """The name of standard output, written into (``written_into``) as the file to write."""
    if not os.path.exists(STDOUT):  # Windows
        raise ResnetlabError(
            "export writes a file, not standard output (-) on this system; give a file name"
        )
    return STDOUT


def _interrupted(error: BaseException) -> bool:
    """Whether ``error`` was raised while handling a ``KeyboardInterrupt``: torch's ONNX
    exporter catches what its steps raise, Ctrl-C too, and raises its own error from it
    ("Failed to export the model with torch.export")."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _temporary_file(out: Path, fmt: str) -> tuple[Path, int | None]:
    """The hidden file beside ``out`` that the export is written to and checked in, made
    now: a folder that cannot take it is found before the export's work. It ends in the
    format's suffix whatever ``out`` is named (torch.export logs warnings when it saves or
    loads a program whose name does not end in .pt2); another export to ``out`` under way
    meanwhile has its own (``own_temp``, which gives the descriptor that holds it). An
    ``out`` written into (``/dev/stdout``, a pipe: ``written_into``) has it in the temporary
    folder: ``/dev`` and ``/proc`` take no files (``/dev`` does as root, which it should not)."""
    name = f".{out.stem}.tmp{FORMATS[fmt][0]}"
    try:
        if written_into(out):
            return own_temp(Path(tempfile.gettempdir()) / name)
        out.parent.mkdir(parents=True, exist_ok=True)
        return own_temp(out.with_name(name))
    except OSError as e:
        raise write_error(out, e) from None


def _check_options(
    fmt: str, opset: int | None, fp16: bool, data: str | None, quantize: str | None
) -> None:
    if opset is not None and fmt != "onnx":
        raise ResnetlabError(f"{option('opset')} applies to ONNX files, not to {fmt}")
    if quantize is None:
        return
    if quantize != "int8":
        raise ResnetlabError(f"unknown quantization {quantize!r}; the one offered is int8")
    if fmt != "onnx":
        raise ResnetlabError(
            f"{option('quantize', 'int8')} uses onnxruntime's tools: write .onnx, not {fmt}"
        )
    if fp16:
        raise ResnetlabError(
            f"{option('quantize', 'int8')} and {option('fp16', True)} exclude each other; "
            "choose one"
        )
    if data is None:
        raise ResnetlabError(
            f"{option('quantize', 'int8')} calibrates on real images: pass {option('data')}, "
            "e.g. the training data"
        )


def _example(meta: ModelMeta, pixels: bool, batch: int | None) -> torch.Tensor:
    """An input of the graph's shape; 2 images for a dynamic batch, since torch.export
    takes a size of 1 for a constant."""
    n, s = batch or 2, meta.input_size
    return torch.zeros(n, s, s, 3, dtype=torch.uint8) if pixels else torch.zeros(n, 3, s, s)


@contextlib.contextmanager
def _ctrl_c_kept() -> Iterator[None]:
    """A Ctrl-C during the block ends it as an interruption, whatever the block made of it:
    torch's ONNX exporter captures the model one way, then, where that fails, another, so a
    Ctrl-C that the first way failed on was lost where the next succeeded (the file
    written, exit status 0). Python's own handler only, in the main thread, as it is set."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    noted: list[int] = []

    def note(signum: int, frame: object) -> None:
        noted.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, note)
    try:
        yield
    except Exception:
        if noted:
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if noted:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _quiet_torchscript() -> Iterator[None]:
    """TorchScript is deprecated in favour of torch.export (FutureWarning; the README says
    which format to choose), and tracing turns resnet50_keras's input-size check into a
    constant (TracerWarning), which holds for the one input size the file takes. torch
    2.4's ONNX exporter traces too, and cannot constant-fold option A's strided slice
    (``x[:, :, ::2, ::2]``); it says so at every pass (UserWarning), and the graph is
    checked all the same."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "Constant folding - Only steps=1", UserWarning)
        yield


def write_onnx(
    graph: nn.Module,
    path: Path,
    example: torch.Tensor,
    batch: int | None,
    opset: int | None,
    metadata: dict[str, Any],
) -> int:
    """Write ``graph`` to ``path`` as one ONNX file (weights inside) with ``metadata``;
    returns the opset. The input is named ``images``, the output ``logits``."""
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if opset is not None and opset > newest:  # else the exporter writes its own and says nothing
        raise ResnetlabError(
            f"{option('opset', opset)} is newer than the onnx {onnx.__version__} installed here "
            f"knows (its newest is {newest}); ask for {newest} or earlier, or leave "
            f"{option('opset')} out"
        )
    names = dict(input_names=["images"], output_names=["logits"], opset_version=opset)
    # the outcome is checked below
    with _quiet_loggers("torch.onnx", "onnxscript"), _ctrl_c_kept():
        options = inspect.signature(torch.onnx.export).parameters.keys()
        if {"dynamic_shapes", "external_data"} <= options:  # torch 2.5 on (2.4: dynamo= only)
            shapes = ({0: torch.export.Dim("batch")},) if batch is None else None
            torch.onnx.export(
                graph,
                (example,),
                str(path),
                dynamo=True,
                external_data=False,  # one file, weights inside
                dynamic_shapes=shapes,
                verbose=False,
                **names,
            )
        else:  # torch 2.4: the TorchScript-based exporter
            axes = {"images": {0: "batch"}, "logits": {0: "batch"}} if batch is None else None
            # Into memory, then written by Python: its C++ side cannot take a path that is
            # not valid text in the locale (a name with é in LC_ALL=C).
            buffer = io.BytesIO()
            try:
                with _quiet_torchscript():
                    torch.onnx.export(graph, (example,), buffer, dynamic_axes=axes, **names)
                path.write_bytes(buffer.getvalue())
            except torch.onnx.errors.OnnxExporterError:
                if opset is None:
                    raise
                # It has no op for some layer at that opset (opset 9: no strided Slice).
                raise ResnetlabError(
                    f"the ONNX exporter of torch {torch.__version__} cannot write opset {opset} "
                    f"for this model; ask for a later opset, or leave {option('opset')} out"
                ) from None
    proto = _set_onnx_metadata(path, metadata)
    written = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if opset is not None and written != opset:
        # The exporter writes its lowest opset when it cannot convert down to the one asked.
        raise ResnetlabError(
            f"the ONNX exporter of torch {torch.__version__} cannot write opset {opset} for "
            f"this model (it wrote {written}); ask for {written} or later, or leave "
            f"{option('opset')} out"
        )
    return written


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """Only errors from these loggers while the block runs: the exporters log progress and
    failed conversion attempts (with tracebacks) that the caller checks for itself."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _set_onnx_metadata(path: Path, metadata: dict[str, Any]) -> Any:  # an onnx.ModelProto
    onnx = import_extra("onnx", "ONNX export")
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, as_strings(metadata))
    onnx.save(proto, str(path))
    return proto


def _write_torchscript(
    graph: nn.Module,
    path: Path,
    example: torch.Tensor,
    batch: int | None,
    opset: int | None,
    metadata: dict[str, Any],
) -> None:
    program = io.BytesIO()
    with _quiet_torchscript(), torch.no_grad():
        traced = torch.jit.trace(graph, (example,), check_trace=False)  # checked after writing
        torch.jit.save(traced, program, _extra_files={EXTRA_FILE: json.dumps(metadata)})
    path.write_bytes(program.getbuffer())  # see _write_exported_program


def _write_exported_program(
    graph: nn.Module,
    path: Path,
    example: torch.Tensor,
    batch: int | None,
    opset: int | None,
    metadata: dict[str, Any],
) -> None:
    shapes = ({0: torch.export.Dim("batch")},) if batch is None else None
    program = torch.export.export(graph, (example,), dynamic_shapes=shapes)
    # Saved in memory, then written: PyTorch's zip writer, writing to a full disk itself,
    # aborts the process ('terminate called after throwing an instance of c10::Error'),
    # where a write from Python raises the OSError that export_model reports in one line.
    saved = io.BytesIO()
    torch.export.save(program, saved, extra_files={EXTRA_FILE: json.dumps(metadata)})
    path.write_bytes(saved.getbuffer())


WRITERS: dict[str, Callable[..., int | None]] = {
    "onnx": write_onnx,
    "torchscript": _write_torchscript,
    "exported-program": _write_exported_program,
}


def write_unchecked_onnx(
    model: nn.Module, meta: ModelMeta, path: Path, *, int8: bool = False
) -> None:
    """``model`` as ``export_model`` writes it to ONNX with a dynamic batch, unchecked; for
    ``bench infer --runtime onnxruntime``. ``int8`` calibrates on generated images, which
    gives the int8 file its speed but not the accuracy that real images would."""
    precision = "int8" if int8 else "fp32"
    metadata = deploy_metadata(meta, pixels=False, precision=precision, batch=None)
    graph = DeployedModel(model, meta, pixels=False, fp16=False)
    write_onnx(graph, path, _example(meta, False, None), None, None, metadata)
    if int8:
        from .quantize import quantize_int8

        quantize_int8(path, path, _as_inputs(check_images(meta, None)[0], meta, pixels=False))
        _set_onnx_metadata(path, metadata)


def _load_runner(fmt: str, path: Path) -> tuple[Callable[[np.ndarray], np.ndarray], dict, str]:
    """``(run, metadata, runtime)``: the written file loaded by its own runtime."""
    if fmt == "onnx":
        ort = import_extra("onnxruntime", "ONNX export")
        onnx_model = OnnxModel(path)
        return onnx_model.run, onnx_model.metadata, f"onnxruntime {ort.__version__} (CPU)"
    extra = {EXTRA_FILE: ""}
    if fmt == "torchscript":
        with _quiet_torchscript():
            module = torch.jit.load(str(path), _extra_files=extra)
        runtime = f"torch.jit.load (torch {torch.__version__})"
    else:
        with warnings.catch_warnings():
            # torch 2.4 reads a .pt2 with torch.load's old default, weights_only=False, and
            # warns that unpickling can run code; this file is the one just written here.
            warnings.filterwarnings("ignore", "You are using `torch.load`", FutureWarning)
            module = torch.export.load(str(path), extra_files=extra).module()
        runtime = f"torch.export.load (torch {torch.__version__})"

    def run(inputs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(inputs)).numpy()

    return run, json.loads(extra[EXTRA_FILE]), runtime


def _check(
    fmt: str,
    path: Path,
    model: nn.Module,
    meta: ModelMeta,
    images: torch.Tensor,
    described: str,
    pixels: bool,
    batch: int | None,
    precision: str,
) -> Check:
    """Run the written file on ``images`` and compare it with the PyTorch model."""
    run, metadata, runtime = _load_runner(fmt, path)
    if read_deploy_meta(metadata, path).class_names != meta.class_names:
        raise ResnetlabError(f"{path.name}: the class names did not survive the export")
    inputs = _as_inputs(images, meta, pixels)
    with torch.no_grad():
        reference = model(_normalised(images, meta)).numpy()
    outputs = in_batches(run, inputs, batch)
    batches = [len(inputs) if batch is None else batch]
    difference = float(np.abs(outputs - reference).max())
    if batch is None:  # and one image alone
        alone = float(np.abs(run(inputs[:1]) - reference[:1]).max())
        difference = float(np.max([difference, alone]))  # a NaN stays a NaN
        batches.insert(0, 1)
    agreement = int((outputs.argmax(1) == reference.argmax(1)).sum())
    fraction = TOLERANCE.get(precision)
    allowed = None if fraction is None else fraction * max(1.0, float(np.abs(reference).max()))
    check = Check(runtime, described, batches, difference, allowed, agreement, len(images))
    if allowed is not None and not difference <= allowed:  # NaN fails too
        raise ResnetlabError(
            f"the exported {fmt} file's logits differ from the PyTorch model's by up to "
            f"{difference:.2e} on {described} (allowed {allowed:.1e}); nothing written"
        )
    return check


def _normalised(images: torch.Tensor, meta: ModelMeta) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> (N, 3, H, W) float32 as ``predict`` feeds the model."""
    from ..engine.predict import model_batches

    batches = model_batches(images, meta, device=torch.device("cpu"), batch_size=len(images))
    return next(iter(batches))[0]


def _as_inputs(images: torch.Tensor, meta: ModelMeta, pixels: bool) -> np.ndarray:
    """The images as the exported graph takes them."""
    return images.numpy() if pixels else _normalised(images, meta).numpy()


def check_images(
    meta: ModelMeta, data: str | None, *, calibrated: bool = False
) -> tuple[torch.Tensor, str]:
    """uint8 (N, S, S, 3) images to check an export on, and what they are, in words.

    Up to ``CHECK_IMAGES`` of the held-out images of ``data`` (an even spread over it), or
    ``GENERATED_IMAGES`` smooth random images when there is no data. ``calibrated``: the
    int8 model is calibrated on ``data`` too, so it cannot be left out.
    """
    size = meta.input_size
    if data is None:
        generator = torch.Generator().manual_seed(0)
        coarse = torch.rand(GENERATED_IMAGES, 3, 4, 4, generator=generator) * 255
        fine = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
        images = fine.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        return images, f"{GENERATED_IMAGES} generated images"
    from ..engine.evaluate import held_out_split

    split = held_out_split(data, meta, fix=_data_fix(calibrated))
    images = split_pixels(split, CHECK_IMAGES)
    # An archive's images named by the archive, not by its copy extracted into the cache.
    return images, as_given(f"{len(images)} images of {split.source or data}")


def _data_fix(calibrated: bool) -> str:
    """What to do about export data of classes the model lacks: it only checks (and
    calibrates) the export, so other data, or none."""
    data = option("data")
    if calibrated:
        return (
            f"{option('quantize', 'int8')} calibrates and checks the file on {data}: give data "
            "of the model's classes (its training data, say)"
        )
    return (
        f"the export is only checked on {data}: give data of the model's classes (its training "
        f"data, say), or leave {data} out to check it on generated images"
    )


def calibration_images(meta: ModelMeta, data: str, count: int = 256) -> torch.Tensor:
    """Up to ``count`` training images of ``data``: its train split, else the images the
    model's run did not hold out of it (the check scores those), else all of it."""
    from ..data.sources import open_source
    from ..engine.evaluate import held_out_split

    source = open_source(
        data, image_size=meta.input_size, resize=meta.resize, crop_fraction=meta.crop_fraction
    )
    key = source.key("train", "all", "val", "test")
    split = source.splits[key]()
    if key == "all" and split.paths is not None:
        held = held_out_split(data, meta, fix=_data_fix(True))
        if len(held) < len(split) and held.paths is not None:
            scored = set(held.paths)
            split = split.subset(
                torch.tensor([i for i, p in enumerate(split.paths) if p not in scored])
            )
    return split_pixels(split, count)


def split_pixels(split: Any, count: int) -> torch.Tensor:  # an ImageSet or a StreamingSet
    """uint8 (n, H, W, 3) pixels of up to ``count`` images spread evenly over ``split``."""
    from ..data import ImageSet
    from ..data.decode import decode_files

    n = len(split)
    if n == 0:
        raise ResnetlabError(f"{split.source}: no images")
    index = torch.linspace(0, n - 1, min(count, n)).round().long().unique()
    if isinstance(split, ImageSet):
        return split.images[index].contiguous()
    paths = [split.paths[i] for i in index.tolist()]
    images, _, _, _ = decode_files(
        paths, split.image_size, resize=split.resize, crop_fraction=split.crop_fraction
    )
    return torch.from_numpy(images)


def _int8_accuracy(model: nn.Module, path: Path, data: str) -> dict[str, Any]:
    """Accuracy of the PyTorch model and of the int8 file on the held-out split of ``data``."""
    from ..engine import evaluate

    fp32 = evaluate(model, data, device="cpu")
    int8 = evaluate(OnnxModel(path), data, device="cpu")
    return {
        "data": data,
        "count": fp32.result.count,
        "fp32": fp32.result.accuracy,
        "int8": int8.result.accuracy,
        "notes": fp32.notes,
    }


def allowed_int8_loss(count: int) -> int:
    """Held-out images the int8 file may get right fewer of than the fp32 model: 2 points of
    ``count``, and at least one (under 50 images, 2 points are less than one image, and one
    image of a few dozen moves with the calibration images drawn, not with a broken file)."""
    return max(1, math.floor(MAX_INT8_DROP * count + 1e-9))


def _judge_int8(accuracy: dict[str, Any]) -> None:
    n = accuracy["count"]
    allowed = allowed_int8_loss(n)
    if not (accuracy["fp32"] - accuracy["int8"]) * n <= allowed + 1e-6:  # NaN: refused
        right = {k: f"{accuracy[k] * n:.0f}" for k in ("int8", "fp32")}  # NaN shown as nan
        raise ResnetlabError(
            f"the int8 file scores {accuracy['int8']:.2%} ({right['int8']} of {n:,} images) on "
            f"{accuracy['data']} against {accuracy['fp32']:.2%} ({right['fp32']}) for fp32 "
            f"(allowed: {count_of(allowed, 'image')} fewer, {MAX_INT8_DROP * 100:.0f} points "
            "and at least one); nothing written, export fp32 instead"
        )
