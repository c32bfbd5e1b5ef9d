"""Running exported files: what they say about themselves, and ``OnnxModel``.

Every exported file carries the model file's metadata: the full ``ModelMeta`` as JSON under
``resnetlab``, and the keys a client needs spelled out on their own (``class_names``,
``input_size``, ``resize``, ``crop_fraction``, ``mean``, ``std``, ``input``, ``output``,
``precision``, ``batch``). An ONNX file holds them as ``metadata_props``; a TorchScript
file or an exported program as one extra file, ``resnetlab.json``. The keys on their own
must say what the JSON says (``read_deploy_meta`` refuses a file where they do not).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from ..data.loader import normalisation
from ..engine.inference import ExternalModel
from ..errors import ResnetlabError, count_argument, near_name, path_argument, shell_word
from ..models.files import (
    META_KEY,
    SAFETENSORS_KIND,
    ModelMeta,
    empty_file_problem,
    newer_format_problem,
    other_format,
)
from ..storage import permission_problem

INSTALL_EXPORT = "pip install 'resnetlab[export]'"
EXTRA_FILE = "resnetlab.json"  # the metadata inside a TorchScript file or an exported program


def import_extra(module: str, purpose: str) -> ModuleType:
    """``module`` from the ``export`` extra, or a one-line error that says what to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        raise ResnetlabError(
            f"{purpose} needs {top}, which is not installed: {INSTALL_EXPORT}"
        ) from None


def deploy_metadata(
    meta: ModelMeta, *, pixels: bool, precision: str, batch: int | None
) -> dict[str, Any]:
    """What an exported file says about itself (see the module docstring)."""
    size, k = meta.input_size, meta.num_classes
    n = "N" if batch is None else batch  # a fixed batch is the only one the file takes
    if pixels:
        takes = f"uint8 ({n}, {size}, {size}, 3) RGB pixels"
    else:
        takes = f"float32 ({n}, 3, {size}, {size}) RGB, (pixels / 255 - mean) / std per channel"
    return {
        META_KEY: meta.to_json(),
        "model": meta.model,
        **_client_keys(meta),
        "input": takes,
        "output": f"float32 ({n}, {k}) logits, in class_names order",
        "precision": precision,
        "batch": "dynamic" if batch is None else batch,
    }


def _client_keys(meta: ModelMeta) -> dict[str, Any]:
    """The keys of ``meta`` an exported file spells out on their own, for a client that
    reads no JSON (the README's): copies of the ``resnetlab`` JSON's, which must agree."""
    return {
        "class_names": meta.class_names or [str(i) for i in range(meta.num_classes)],
        "input_size": meta.input_size,
        "resize": meta.resize,
        "crop_fraction": meta.crop_fraction,
        "mean": list(meta.mean),
        "std": list(meta.std),
    }


# What the README's client reads in a file exported before the key existed.
_CLIENT_DEFAULTS = {"crop_fraction": 1.0}


def as_strings(metadata: dict[str, Any]) -> dict[str, str]:
    """The metadata as ONNX ``metadata_props`` hold it: strings, JSON for lists."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}


def read_deploy_meta(metadata: dict[str, Any], path: str | os.PathLike) -> ModelMeta:
    """The ``ModelMeta`` inside an exported file's metadata."""
    if META_KEY not in metadata:
        raise ResnetlabError(
            f"{path} has no resnetlab metadata; export the model file with `resnetlab export`"
        )
    try:
        meta = ModelMeta.from_json(metadata[META_KEY])
    except (ValueError, TypeError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise ResnetlabError(
            newer_format_problem(path, metadata[META_KEY])
            or f"{path} has invalid resnetlab metadata ({e}); the file is damaged or was "
            "edited: export the model file again"
        ) from None
    if problem := _client_key_problem(metadata, meta):
        raise ResnetlabError(
            f"{path} has invalid resnetlab metadata ({problem}); the file is damaged or was "
            "edited: export the model file again"
        )
    return meta


def _client_key_problem(metadata: dict[str, Any], meta: ModelMeta) -> str | None:
    """Where a key the file spells out on its own (read by a client, the README's) says
    other than its ``resnetlab`` JSON (read here): a file edited by hand, which would be
    preprocessed one way here and another there; None where they agree."""
    for key, ours in _client_keys(meta).items():
        if key not in metadata and key not in _CLIENT_DEFAULTS:
            continue
        raw = metadata.get(key, _CLIENT_DEFAULTS.get(key))
        theirs = raw
        if isinstance(raw, str) and not isinstance(ours, str):  # ONNX holds JSON text
            with contextlib.suppress(ValueError):
                theirs = json.loads(raw)
        if theirs != ours:
            shown = raw if isinstance(raw, str) else json.dumps(raw)
            missing = "" if key in metadata else " (no key)"
            return f"its {key} says {shown}{missing}, its {META_KEY} JSON {json.dumps(ours)}"
    return None


def in_batches(
    run: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray, batch: int | None
) -> np.ndarray:
    """``run`` over ``inputs`` in batches of exactly ``batch`` (all at once when ``None``).

    A graph exported with a fixed batch takes only that many images, so the last batch is
    filled up with copies of its last image and their outputs dropped.
    """
    if batch is None:
        return run(inputs)
    outputs = []
    for start in range(0, len(inputs), batch):
        part = inputs[start : start + batch]
        n = len(part)
        if n < batch:
            part = np.concatenate([part, np.repeat(part[-1:], batch - n, axis=0)])
        outputs.append(run(part)[:n])
    return np.concatenate(outputs)


def _check_graph_meta(path: Path, takes: list[Any], gives: list[Any], model: OnnxModel) -> None:
    """Refuse a file whose metadata says another input size or class count than its graph
    has: it was edited, and running it would fail in onnxruntime or name wrong classes."""
    meta = model.meta
    side = takes[1:3] if model.takes_pixels else takes[2:4]
    size = meta.input_size
    if len(side) == 2 and all(isinstance(n, int) for n in side) and side != [size, size]:
        problem = f"its graph takes {side[0]}x{side[1]} images, its metadata says {size}x{size}"
    elif isinstance(gives[-1], int) and gives[-1] != meta.num_classes:
        problem = f"its graph gives {gives[-1]} classes, its metadata says {meta.num_classes}"
    else:
        return
    raise ResnetlabError(
        f"{path} has invalid resnetlab metadata ({problem}); the file is damaged or was "
        "edited: export the model file again"
    )


def _not_onnx_problem(path: Path, reason: str) -> str:
    """Why onnxruntime could not load ``path``: what the file is, where it is a model file
    or another export (by its bytes, whatever its name), and what to do; else onnxruntime's
    ``reason``."""
    if problem := permission_problem(path):  # onnxruntime: "system error number 13"
        return problem
    kind = other_format(path, by_content=True)
    onnx = path.with_suffix(".onnx")
    if kind == SAFETENSORS_KIND and path.suffix.lower() == ".onnx":
        named = path.with_suffix(".safetensors")
        return (
            f"{path} is {kind} named .onnx, not an ONNX export: name it {named.name} and "
            f"give it as the model file, or export that to ONNX: resnetlab export "
            f"{shell_word(named)} {shell_word(onnx)}"
        )
    if kind == SAFETENSORS_KIND:
        return (
            f"{path} is {kind}, not an ONNX export: load it with resnetlab.load_model "
            f"(predict, eval and serve take it as it is), or export it to ONNX first: "
            f"resnetlab export {shell_word(path)} {shell_word(onnx)}"
        )
    if kind is not None:
        return (
            f"{path} is {kind}, not an ONNX export; predict, eval and serve take a model file "
            f"(.safetensors) or its ONNX export: resnetlab export MODEL_FILE {onnx}"
        )
    return f"{path} is not an ONNX model onnxruntime can load ({reason})"


# onnxruntime's names of the input types an exported graph takes.
_GRAPH_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(uint8)": np.uint8,
}


class OnnxModel(ExternalModel):
    """An ONNX file written by ``resnetlab export``, run by onnxruntime on the CPU.

    It is used as a loaded model file is: ``model(x)`` on normalised (N, 3, H, W) images
    gives (N, K) logits and ``model.meta`` is the model file's ``ModelMeta``, so whatever
    takes a loaded model (``predict``, ``evaluate``) takes it; ``engine.inference.
    load_model_file`` opens either kind of file. ``run`` feeds the graph in its own input
    form, which for a file exported with ``--with-preprocessing`` is uint8 (N, H, W, 3)
    pixels.

    Args:
        path: the ``.onnx`` file.
        threads: onnxruntime's intra-op threads (default: its own choice).
    """

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None) -> None:
        super().__init__()
        path = Path(path_argument(path, "the ONNX file"))  # not Path's TypeError
        if threads is not None:  # 0: onnxruntime's choice; not its pybind TypeError
            threads = count_argument(threads, "threads", minimum=0)
        ort = import_extra("onnxruntime", f"running {path.name}")
        if path.is_dir():  # not "not found; did you mean ...?"
            inside = sorted(path.glob("*.onnx"))
            named = f", e.g. {inside[0]}" if inside else ""
            raise ResnetlabError(f"{path} is a folder, not an ONNX file; give the file{named}")
        if not path.is_file():
            hint = f"; did you mean {near}?" if (near := near_name(path)) else ""
            raise ResnetlabError(f"model file not found: {path}{hint}")
        if path.stat().st_size == 0:  # onnxruntime: "No graph was found in the protobuf"
            raise ResnetlabError(empty_file_problem(path, "copy it again, or export it again"))
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            # onnxruntime takes a path as UTF-8 text: one Python holds as undecodable bytes
            # (an ASCII locale's "日本") is given as the file's contents instead.
            undecoded = any("\udc80" <= c <= "\udcff" for c in str(path))
            source = path.read_bytes() if undecoded else str(path)
            session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime has its own exception types, one per failure
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ResnetlabError(_not_onnx_problem(path, reason)) from None
        self.path = path
        self.session = session
        self.metadata = session.get_modelmeta().custom_metadata_map
        self.meta = read_deploy_meta(self.metadata, path)
        (graph_input,) = session.get_inputs()
        self.input_name = graph_input.name
        self.takes_pixels = graph_input.type == "tensor(uint8)"
        self._input = (graph_input.type, list(graph_input.shape))  # for run's check
        first = graph_input.shape[0]
        self.batch = first if isinstance(first, int) else None
        _check_graph_meta(path, graph_input.shape, session.get_outputs()[0].shape, self)
        self._scale, self._shift = normalisation(
            self.meta.mean, self.meta.std, torch.device("cpu"), torch.float32
        )

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """(N, K) logits for inputs in the graph's own form, in its batch size if fixed."""
        kind, shape = self._input
        dtype = _GRAPH_TYPES.get(kind)
        fits = isinstance(inputs, np.ndarray) and inputs.ndim == len(shape)
        fits = fits and all(
            not isinstance(want, int) or i == 0 or want == got
            for i, (want, got) in enumerate(zip(shape, inputs.shape, strict=True))
        )
        if not fits or (dtype is not None and inputs.dtype != dtype):
            got = (
                f"{inputs.dtype} {inputs.shape}"
                if isinstance(inputs, np.ndarray)
                else type(inputs).__name__
            )
            dims = ", ".join(str(d) if isinstance(d, int) else "N" for d in shape)
            raise ResnetlabError(  # not onnxruntime's INVALID_ARGUMENT
                f"{self.path} takes {np.dtype(dtype).name if dtype else kind} arrays of shape "
                f"({dims}), got {got}; forward() takes normalised float tensors, "
                "resnetlab.predict image files"
            )

        def once(batch: np.ndarray) -> np.ndarray:
            return self.session.run(None, {self.input_name: batch})[0]

        return in_batches(once, inputs, self.batch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised (N, 3, H, W) images -> (N, K) float32 logits, on ``x``'s device."""
        size = self.meta.input_size
        tensor = isinstance(x, torch.Tensor)
        if not (tensor and x.is_floating_point() and tuple(x.shape[1:]) == (3, size, size)):
            got = f"{x.dtype} {tuple(x.shape)}" if tensor else type(x).__name__
            if isinstance(x, np.ndarray):
                got += " (a tensor of it: torch.from_numpy(x))"
            raise ResnetlabError(  # not onnxruntime's INVALID_ARGUMENT, nor an AttributeError
                f"{self.path} takes normalised float (N, 3, {size}, {size}) images, got {got}; "
                "resnetlab.predict takes image files and PIL images"
            )
        x_cpu = x.detach().float().cpu()
        if self.takes_pixels:
            # Back to the pixels the normalisation came from: exact, since pixels are whole
            # numbers and the round trip is off by far less than a half.
            pixels = (x_cpu.permute(0, 2, 3, 1) - self._shift) / self._scale
            inputs = pixels.round().clamp(0, 255).to(torch.uint8).contiguous().numpy()
        else:
            inputs = x_cpu.contiguous().numpy()
        return torch.from_numpy(self.run(inputs)).to(x.device)
