"""The server's model: a model file turned into a function from image bytes to probabilities.

A ``Predictor`` decodes uploads exactly as ``resnetlab predict`` reads files (``read_input``)
and classifies a batch of decoded images on ``predict``'s inference path
(``class_probabilities`` on the BN-folded ``inference_model``), so the server answers with
the numbers ``predict`` prints. The web app only needs ``decode``, ``__call__``,
``describe`` and ``cam_png``: another kind of model file joins by building a ``Predictor``
from a model that takes normalised images and returns logits (``load_predictor``), as an
exported ``.onnx`` file does through ``export.OnnxModel``.
"""

from __future__ import annotations

import importlib.util
import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn

from ..data.decode import (
    NOT_AN_IMAGE,
    convert_first,
    format_to_convert,
    read_error_reason,
    read_header_size,
    resize_plan,
    unreadable_image,
)
from ..engine.distributed import resolve_device
from ..engine.inference import inference_model, load_model_file, model_file_meta
from ..engine.predict import class_names, class_probabilities, read_input
from ..errors import ResnetlabError
from ..models import ModelMeta

# The module that draws class activation maps; a build without it answers ?cam=1 with 501.
EXPLAIN_MODULE = "resnetlab.explain"
# Formats Pillow reads by running another program on the file: refused in uploads (415).
RUN_BY_ANOTHER_PROGRAM = {"EPS": "a PostScript (EPS) file"}


class RequestError(ResnetlabError):
    """An upload or request the server refuses, with the HTTP status to answer with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def cam_available() -> bool:
    """Whether this build of resnetlab can draw class activation maps."""
    return importlib.util.find_spec(EXPLAIN_MODULE) is not None


class Predictor:
    """A loaded model file, ready to classify decoded images.

    Args:
        model: a model with ``model.meta`` (``load_model``): normalised (N, 3, H, W)
            images in, (N, K) logits out.
        device: where it runs.
        source: the file it came from, for ``/metadata``.
        precision: ``fp32``, or ``bf16``/``fp16`` autocast (``inference_model``).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device = "cpu",
        source: str = "",
        precision: str = "fp32",
    ):
        self.meta = model_file_meta(model, "Predictor")  # not an AttributeError for 'meta'
        self.names = class_names(self.meta)
        self.device = resolve_device(device)
        self.source = source
        self.model = model  # as loaded: what class activation maps are drawn from
        self.precision = precision
        self.fast = inference_model(
            model, self.device, input_size=self.meta.input_size, precision=precision
        )

    def decode(self, data: bytes, name: str | None = None) -> np.ndarray:
        """The uint8 (H, W, 3) pixels the model takes, from an uploaded file's bytes (``name``:
        its file name, if it came with one).

        Raises:
            RequestError: 400 nothing sent (or a file of 0 bytes), 415 not an image format
                PIL reads, 413 more pixels than PIL's decompression-bomb limit (checked from
                the header, before decoding), 422 a damaged or truncated image.
        """
        if not data and name:  # a form's file field that holds nothing
            raise RequestError(
                f"the upload {name} is empty (0 bytes); send a file that holds an image", 400
            )
        if not data:
            raise RequestError(
                "no image in the request: send an image file as the body or as a multipart "
                "file field",
                400,
            )
        what = f"the upload {name}" if name else "the upload"
        _check_header(data, what, name)
        buffer = io.BytesIO(data)
        buffer.name = what  # read_input names the file in its message
        try:
            return read_input(buffer, self.meta)
        except ResnetlabError as e:  # "the upload is not a readable image (<why>)"
            raise RequestError(str(e), 422) from None
        except Exception as e:  # PIL raises other kinds of error on some malformed files
            raise RequestError(unreadable_image(what, e), 422) from None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities, float32 (N, K), of uint8 (N, H, W, 3) decoded images."""
        return class_probabilities(
            self.fast, images, self.meta, device=self.device, batch_size=len(images)
        )

    def describe(self) -> dict:
        """What ``/metadata`` says about the model and how it reads images."""
        meta = self.meta
        return {
            "model": meta.model,
            "file": Path(self.source).name,
            "classes": self.names,
            "num_classes": meta.num_classes,
            "input_size": [meta.input_size, meta.input_size],
            "preprocessing": {
                "decode": "RGB; EXIF orientation applied; transparency over black",
                "resize": _resize_words(meta),
                "crop_fraction": meta.crop_fraction,
                "normalize": "(pixels / 255 - mean) / std per channel",
                "mean": list(meta.mean),
                "std": list(meta.std),
            },
            "device": str(self.device),
            "precision": self.precision,
            "training": meta.training,
        }

    def cam_problem(self) -> str | None:
        """Why ``cam_png`` cannot draw maps, or None: it needs ``resnetlab.explain`` and a
        model with PyTorch weights (not one run by another runtime) to take gradients of."""
        if next(self.model.parameters(), None) is None:
            return (
                "class activation maps need the model's PyTorch weights: serve its "
                ".safetensors model file to get them"
            )
        if not cam_available():
            return (
                "class activation maps are not available in this build of resnetlab "
                "(no resnetlab.explain); ask without cam=1"
            )
        return None

    def require_cam(self) -> None:
        """Raise ``RequestError`` 501 unless ``cam_png`` can draw maps (``cam_problem``)."""
        if problem := self.cam_problem():
            raise RequestError(problem, 501)

    def cam_png(self, pixels: np.ndarray) -> tuple[bytes, str | None]:
        """A PNG of the image (uint8 (H, W, 3), from ``decode``) beside its class activation
        map for the predicted class, drawn by ``resnetlab.explain``, and the note on a map
        too coarse to point at a place (``explain.cam.coarse_map_note``, without the
        command line's advice), or None."""
        self.require_cam()
        from ..explain import explain

        result = explain(self.model, pixels[None], device=str(self.device))
        out = io.BytesIO()
        result.overlay(0).save(out, format="PNG")
        return out.getvalue(), (result.notes[0].split(";")[0] if result.notes else None)


def _check_header(data: bytes, what: str, name: str | None = None) -> None:
    """Refuse what is no image (415) or too many pixels to decode (413), from the header
    (``name``: the upload's file name, if it came with one)."""
    try:
        read_header_size(io.BytesIO(data))
    except Image.DecompressionBombError as e:  # in predict's words, which give the fix
        raise RequestError(unreadable_image(what, e), 413) from None
    except UnidentifiedImageError as e:
        if name and (photo := format_to_convert(name)) is not None:  # IMG_1.HEIC, as named
            raise RequestError(convert_first(what, photo), 415) from None
        if (reason := read_error_reason(e)) != NOT_AN_IMAGE:  # a HEIC photo named .jpg...
            raise RequestError(f"{what}: {reason}", 415) from None
        raise RequestError(
            f"{what} is not an image file that can be read (JPEG, PNG, WebP, GIF, BMP, TIFF...)",
            415,
        ) from None
    except Exception as e:  # PIL raises many kinds of error on malformed headers
        raise RequestError(unreadable_image(what, e), 422) from None
    with Image.open(io.BytesIO(data)) as im:  # the header again, read as it was just now
        kind = im.format
    if kind in RUN_BY_ANOTHER_PROGRAM:
        raise RequestError(
            f"{what} is {RUN_BY_ANOTHER_PROGRAM[kind]}, which the server does not read (Pillow "
            "would run Ghostscript on it); convert it to PNG or JPEG first",
            415,
        )


def load_predictor(
    path: str | os.PathLike, *, device: str = "auto", precision: str = "fp32"
) -> Predictor:
    """A ``Predictor`` for a model file written by resnetlab: ``.safetensors``, or ``.onnx``
    from ``resnetlab export`` (run by onnxruntime on the CPU; no class activation maps).

    Raises:
        ResnetlabError: the file is missing or not a model file.
    """
    device_ = resolve_device(device)
    model = load_model_file(path, device=device)
    return Predictor(model, device=device_, source=str(path), precision=precision)


def _resize_words(meta: ModelMeta) -> str:
    """How an image is brought to the model's input size, as ``predict`` does it."""
    size = meta.input_size
    how = "bilinear (antialiased when shrinking)"
    (scaled, _), _ = resize_plan((size, size), (size, size), meta.resize, meta.crop_fraction)
    if meta.resize == "crop":
        return f"crop: the shorter side to {scaled}, {how}, then the centre {size}x{size}"
    if scaled != size:
        return f"squash: the whole image to {scaled}x{scaled}, {how}, then the centre {size}x{size}"
    return f"squash: the whole image to {size}x{size}, {how}"
