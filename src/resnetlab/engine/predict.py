"""Prediction on image files, preprocessed exactly as the model's training data was:
decoded, resized to the input size as the model file's ``resize`` and ``crop_fraction``
say (squashed or centre-cropped, from that much more where the fraction is below 1:
``data.decode.resize_plan``), normalised with its mean and standard deviation."""

from __future__ import annotations

import glob
import io
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..data import DeviceLoader, read_image
from ..data.archive import is_archive
from ..data.decode import (
    PARALLEL_MIN_FILES,
    READ_ERRORS,
    Size,
    UnreadableImage,
    convert_first,
    format_size,
    format_to_convert,
    read_error_reason,
    read_header_size,
    read_images,
    resize_plan,
    skipped_unreadable,
)
from ..data.folders import (
    DRIVE_FOLDERS,
    SYSTEM_FILES,
    SYSTEM_FOLDERS,
    enlarged,
    image_files,
    is_explain_output,
    is_run_folder,
)
from ..data.signs import is_keras_h5
from ..data.sources import H5_SUFFIXES
from ..errors import (
    DataError,
    DataWarning,
    ResnetlabError,
    count_argument,
    near_name,
    on_command_line,
    option,
    path_argument,
    shell_word,
    warn,
)
from ..models import ModelMeta
from ..models.files import EXPORT_KINDS, checkpoint_kind, other_format
from ..storage import is_special
from .distributed import resolve_device
from .inference import (
    inference_model,
    is_channels_last,
    load_model_file,
    model_file_meta,
    nonfinite_outputs_cause,
)

# Images predict decodes before it classifies them: its memory, not the folder's size, sets
# how much it holds (1,024 at 224x224: 154 MB).
DECODED_PART = 1024


@dataclass
class Prediction:
    """One image's answer from ``resnetlab.predict``: the image (its path, else
    ``image <i>``, its place in the list) and its ``top_k`` classes; ``label`` is the
    first."""

    source: str
    top: list[tuple[str, float]]  # (class name, probability), most probable first

    @property
    def label(self) -> str:
        return self.top[0][0]

    def to_dict(self) -> dict:
        return {
            "image": self.source,
            "top": [{"class": name, "probability": p} for name, p in self.top],
        }


# What ``predict`` and ``explain`` take as images: paths of files and folders, and images
# already open (PIL).
Inputs = Sequence[str | os.PathLike | Image.Image] | str | os.PathLike | Image.Image


def _pixels_hint(given: Any) -> str:
    """How to make a PIL image of what was given in its place: of an array of pixels
    (``fromarray`` takes uint8, and the course's images are floats in [0, 1], ``X / 255``),
    of an open file, or of a file's bytes (an upload's)."""
    if isinstance(given, bytes | bytearray | memoryview):
        return "; for an image file's bytes, PIL.Image.open(io.BytesIO(data))"
    if hasattr(given, "read"):
        return "; for an open image file, PIL.Image.open(file), or its path"
    if not isinstance(given, np.ndarray | torch.Tensor):
        return ""
    array = "pixels.numpy()" if isinstance(given, torch.Tensor) else "pixels"
    floating = (
        given.is_floating_point() if isinstance(given, torch.Tensor) else given.dtype.kind == "f"
    )
    if floating:
        return (
            "; for (H, W, 3) pixels in [0, 1] (the course's X / 255), "
            f"PIL.Image.fromarray(({array} * 255).round().astype('uint8'))"
        )
    return f"; for uint8 (H, W, 3) pixels, PIL.Image.fromarray({array})"


def expand_inputs(inputs: Inputs) -> list[tuple[Path | Image.Image, bool]]:
    """Image files named directly, the images inside named folders (sorted), and open
    images, each with whether it was named directly. One alone stands for a list of it."""
    if isinstance(inputs, (str, os.PathLike, Image.Image)):  # not the characters of a path
        inputs = [inputs]
    elif (
        not isinstance(inputs, Iterable)
        or isinstance(inputs, bytes | bytearray | memoryview | Mapping)
        or hasattr(inputs, "read")  # an open file iterates over its lines of bytes
    ):
        raise ResnetlabError(
            "the images must be a path (str or pathlib.Path), a PIL image or a "
            f"list of them, got {type(inputs).__name__}{_pixels_hint(inputs)}"
        )
    paths: list[tuple[Path | Image.Image, bool]] = []
    named = False  # anything at all: a Thumbs.db alone leaves nothing, said so
    for given in inputs:
        named = True
        if isinstance(given, Image.Image):
            paths.append((given, True))
            continue
        if not isinstance(given, str | os.PathLike):
            raise ResnetlabError(
                "each image must be a path (str or pathlib.Path) or a PIL image, "
                f"got {type(given).__name__}{_pixels_hint(given)}"
            )
        give = "an image file or a folder (. for the current folder)"
        item = Path(path_argument(given, "an image path", give))
        if item.exists() or item.is_symlink() or not glob.has_magic(str(item)):
            paths += _expand_path(item)
            continue
        # A pattern the shell left as it was (quoted, or a Windows shell, which expands
        # none): its matches, as a shell would name them.
        matches = sorted(glob.glob(str(item), recursive=True))
        if not matches:
            raise DataError(f"image not found: {item} (no file matches it as a pattern)")
        for match in matches:
            paths += _expand_path(Path(match))
    if named and not paths:  # Thumbs.db alone, or a NAS's @eaDir: each skipped with a warning
        raise DataError(
            "no images left to read: what was given was skipped, as said above; give image "
            "files or folders of them"
        )
    return paths


def _expand_path(item: Path) -> list[tuple[Path | Image.Image, bool]]:
    """The image file ``item`` names, or the images in the folder it names (``expand_inputs``)."""
    paths: list[tuple[Path | Image.Image, bool]] = []
    if item.name in SYSTEM_FOLDERS and item.is_dir():
        # A shell's `photos/*` names these too; their thumbnails are not the user's images.
        what = (
            "a folder a system keeps at the top of a drive"
            if item.name in DRIVE_FOLDERS
            else "a folder of copies or thumbnails that tools leave beside photos"
        )
        warn(f"{item}: {what}, not images; skipped", DataWarning)
    elif item.is_dir() and is_run_folder(item):
        raise DataError(
            f"{item} is a training run's folder, whose images are its figures (curves.png...), "
            "not images to classify; give the image files or folders"
        )
    elif item.is_dir() and is_explain_output(item):
        raise DataError(
            f"{item} is a folder resnetlab explain wrote, whose images are its overlays, not "
            "images to classify; give the images it explained"
        )
    elif item.is_dir():
        found = image_files(item)
        if not found:
            raise DataError(f"no images in folder {item}")
        paths += [(p, False) for p in found]
    elif item.name.lower() in SYSTEM_FILES and item.is_file():
        # Named by a shell's `photos/*` as often as by hand: left out, as a folder does.
        warn(f"{item}: a file Windows keeps in image folders, not an image; skipped", DataWarning)
    elif is_special(item):  # `cat x.jpg | resnetlab predict m /dev/stdin`: a pipe, read once
        raise DataError(
            f"images are read from files, not from a pipe or a device ({item}): save the image "
            "to a file and give its path, or send it to `resnetlab serve`"
        )
    elif item.is_file() or item.is_symlink():  # a broken link: reading it says so
        paths.append((item, True))
    elif str(item) == "-":  # a shell's way to say standard input, not a file here
        raise DataError(
            "images are read from files, not from standard input (-): save the image to a "
            "file and give its path, or send it to `resnetlab serve`"
        )
    else:
        hint = f"; did you mean {near}?" if (near := near_name(item)) else ""
        raise DataError(f"image not found: {item}{hint}")
    return paths


@torch.no_grad()
def predict(
    model: nn.Module | str | Path,
    inputs: Inputs,
    *,
    top_k: int = 3,
    device: str = "auto",
    batch_size: int = 64,
    precision: str = "fp32",
) -> list[Prediction]:
    """Classify images with a trained model.

    Args:
        model: a model file written by resnetlab (``.safetensors``, or ``.onnx`` from
            ``resnetlab export``), or a model returned by ``load_model``.
        inputs: image files, folders of images, and PIL images (or one of them); an open
            image is read as its file would be (EXIF orientation applied, resized as the
            model file's ``resize`` and ``crop_fraction`` say), except that a large JPEG
            is decoded at full size, where from its file it is decoded at the scale libjpeg
            offers for the size.
        top_k: how many classes to report per image.
        device: ``auto``, ``cpu``, ``cuda``...
        batch_size: images per forward pass.
        precision: ``fp32``, or ``bf16``/``fp16`` autocast: faster on hardware with that
            arithmetic, probabilities within a few thousandths, a few hundredths at worst.

    Returns:
        One ``Prediction`` per image, in input order. An image named in ``inputs`` must be
        readable; one inside a folder that is not is skipped with a warning.
    """
    top_k = count_argument(top_k, option("top_k"))
    batch_size = count_argument(batch_size, option("batch_size"))
    device_ = resolve_device(device)
    loaded = not isinstance(model, nn.Module)  # here, for this call only: run as it is
    if loaded:
        model = load_model_file(model, device=device)
    meta = model_file_meta(model, "predict")
    model = inference_model(
        model, device_, input_size=meta.input_size, precision=precision, copy=not loaded
    )
    predictions, small = [], []
    # A part of the images at a time: a folder of any size takes the memory of one part.
    for names, images, sizes in decoded_parts(inputs, meta, DECODED_PART):
        small += [(n, s) for n, s in zip(names, sizes, strict=True) if enlarged(s, meta.input_size)]
        probs = class_probabilities(model, images, meta, device=device_, batch_size=batch_size)
        broken = (~probs.isfinite().all(1)).nonzero().flatten().tolist()
        if broken:
            raise ResnetlabError(
                f"the model's outputs are NaN or inf for {names[broken[0]]}; "
                + nonfinite_outputs_cause(precision)
            )
        ranked = top_classes(probs, class_names(meta), top_k)
        predictions += [Prediction(name, top) for name, top in zip(names, ranked, strict=True)]
    if small:
        warn(_enlarged_note(small, len(predictions), meta), DataWarning)
    return predictions


def _enlarged_note(small: list[tuple[str, Size]], total: int, meta: ModelMeta) -> str:
    """The note on images enlarged to the input size from at most half of it (``small``:
    their names and sizes as stored), as train and eval note them: what the model sees of
    them is their few pixels, blown up. Where ``resize_plan`` scales an image past the
    input size (a crop fraction below 1, or ``crop`` on an image that is not square), the
    note says so, with the first image's scaled size, and that its centre is kept."""
    side = meta.input_size
    scaled = [resize_plan(s, (side, side), meta.resize, meta.crop_fraction)[0] for _, s in small]
    target = f"{side}x{side} (the model's input size)"
    (name, size), first_scaled = small[0], scaled[0]
    if total == 1:
        cut = (
            ""
            if first_scaled == (side, side)
            else f"{format_size(first_scaled)} and centre-cropped to "
        )
        return f"{name} is {format_size(size)}, enlarged to {cut}{target}"
    first = f"{name}, {format_size(size)}"
    if first_scaled != (side, side):
        first += f", scaled to {format_size(first_scaled)}"
    cropped = any(s != (side, side) for s in scaled)
    return (
        f"{len(small)} of {total} images {'is' if len(small) == 1 else 'are'} at most "
        f"{side // 2} px a side (first: {first}), "
        f"{'enlarged and centre-cropped' if cropped else 'enlarged'} to {target}"
    )


def read_input(source: str | os.PathLike | BinaryIO | Image.Image, meta: ModelMeta) -> np.ndarray:
    """Decode one image file (a path, an open binary file or a PIL image) to the uint8
    (H, W, 3) pixels that ``meta``'s model takes: decoded and resized as a training folder
    is.

    Raises:
        DataError: the file is not a readable image.
    """
    if not isinstance(meta, ModelMeta):  # the model itself, say, rather than its model.meta
        raise ResnetlabError(
            f"read_input takes the model file's metadata (model.meta), got {type(meta).__name__}"
        )
    if not isinstance(source, str | os.PathLike | Image.Image) and not hasattr(source, "read"):
        fix = (
            "; for an image file's bytes, io.BytesIO(data)"
            if isinstance(source, bytes | bytearray | memoryview)
            else _pixels_hint(source)
        )
        raise ResnetlabError(
            "read_input takes a path (str or pathlib.Path), an open binary file or a PIL "
            f"image, got {type(source).__name__}{fix}"
        )
    if isinstance(source, io.TextIOBase):  # open(path): its bytes decoded as UTF-8 text
        name = getattr(source, "name", "the file")
        raise ResnetlabError(
            f"read_input takes an open binary file; {name} was opened as text: give "
            f"open({name!r}, 'rb'), or its path"
        )
    if isinstance(source, Image.Image) and _closed(source):
        raise DataError(
            f"{source.filename or 'an image'} was closed before it was read (a with "
            "Image.open(...) block closes its image at the block's end): read it inside the "
            "block (im.load()), or give its path"
        )
    try:
        return read_image(source, meta.input_size, meta.resize, meta.crop_fraction)
    except READ_ERRORS as e:
        name = source if isinstance(source, str | os.PathLike) else getattr(source, "name", "image")
        if isinstance(name, str | os.PathLike) and (problem := _other_file(name)):
            raise DataError(problem) from None
        if (photo := format_to_convert(name)) is not None:  # not damage: a format to convert
            raise DataError(convert_first(name, photo)) from None
        raise UnreadableImage(name, read_error_reason(e)) from None


def _closed(im: Image.Image) -> bool:
    """Whether PIL closed ``im`` before its pixels were read: by ``im.close()``, or at the end
    of the ``with Image.open(...)`` block it was opened in, unread (PIL then fails to read it
    with a bare AssertionError)."""
    if getattr(im, "fp", None) is not None:  # its file still open: readable, or damaged
        return False
    try:
        im.load()
    except (AssertionError, AttributeError, ValueError):
        return True
    return False


def _other_file(name: str | os.PathLike) -> str | None:
    """What to say of a file that is no image but another kind of file (a model, a data set
    file, an archive), with where to give it, or None."""
    path = Path(name)
    if is_keras_h5(path) or other_format(path) == "a Keras model (.keras)":
        # predict model.safetensors ResNet50.h5, meaning to compare the two
        return (
            f"{name} is a Keras model file, not an image; convert it (resnetlab convert "
            f"keras {name} {path.stem}.safetensors) and give that model file first, the images "
            "after it"
        )
    if kind := _model_kind(path):  # predict a.safetensors b.safetensors photo.jpg
        return (
            f"{name} is {kind}, not an image; give one model file first and the images after "
            "it (to compare models, run once with each)"
        )
    if path.suffix.lower() in H5_SUFFIXES:  # SIGNS's file, say
        return (
            f"{name} is an HDF5 file, not an image; the images of a data set file are scored "
            f"with: {_evaluation_of(name)}"
        )
    if is_archive(path):  # photos.zip
        return (
            f"{name} is an archive, not an image; extract it and give its folder, or score the "
            f"images of a data set's archive with: {_evaluation_of(name)}"
        )
    return None


def _evaluation_of(data: str | os.PathLike) -> str:
    """The call that scores a data set file's images, as the caller writes it: the command
    line's ``eval``, or Python's ``evaluate``."""
    if on_command_line():
        return f"resnetlab eval MODEL_FILE --data {shell_word(data)}"
    return f"resnetlab.evaluate(model_file, {os.fspath(data)!r})"


def _model_kind(path: Path) -> str | None:
    """What ``path`` is where it is a model file, an export or a checkpoint: a file that
    predict and explain take first, if at all, not among the images; else None."""
    kind = other_format(path)
    if kind is None and path.suffix.lower() == ".safetensors":
        return "a model file"
    return kind if kind in (*EXPORT_KINDS, checkpoint_kind()) else None


def load_inputs(inputs: Inputs, meta: ModelMeta) -> tuple[list[str], torch.Tensor]:
    """The images named by ``inputs`` (files, folders, PIL images) as ``meta``'s model
    takes them.

    An image named directly must be readable; one found in a folder is skipped with a
    warning if not.

    Returns:
        The names of the images read (their paths; an open image its file's name, else
        ``image <i>``, its position in ``inputs``), and their pixels: uint8 (N, H, W, 3).
    """
    [(names, images, _)] = decoded_parts(inputs, meta)  # one part: all of them
    return names, images


def decoded_parts(
    inputs: Inputs, meta: ModelMeta, size: int | None = None
) -> Iterator[tuple[list[str], torch.Tensor, list[Size]]]:
    """``load_inputs``' names and pixels, ``size`` images at a time (all at once: None),
    with the (height, width) of each image as stored."""
    items = expand_inputs(inputs)
    if not items:
        raise DataError("no images given: pass image files, folders or PIL images")
    read = 0
    step = size or len(items)
    for start in range(0, len(items), step):
        part = items[start : start + step]
        names, decoded, sizes = [], [], []
        pooled = _decode_part(part, meta)
        for i, ((item, named), pixels) in enumerate(zip(part, pooled, strict=True), start):
            name = str(item) if isinstance(item, Path) else getattr(item, "filename", "")
            if pixels is None:  # read here: an open image, or a file the workers could not
                try:
                    pixels = read_input(item, meta)
                except ResnetlabError as e:
                    # photos/* of a HEIC; not a model file or a data set's, said as what it is
                    if (
                        named
                        and isinstance(item, Path)
                        and len(items) > 1
                        and not _other_file(item)
                    ):
                        raise DataError(
                            f"{e}; leave it out, or give its folder ({item.parent}{os.sep}): a "
                            "folder's unreadable files are skipped with a warning"
                        ) from None
                    if named:
                        raise
                    if isinstance(e, UnreadableImage):  # as eval and train say it
                        warn(skipped_unreadable(e.path, e.reason), DataWarning)
                    else:
                        warn(f"{e}; skipped", DataWarning)
                    continue
            decoded.append(torch.from_numpy(pixels))
            names.append(name or f"image {i}")
            sizes.append(_stored_size(item))
        if decoded:
            read += len(decoded)
            yield names, torch.stack(decoded), sizes
    if not read:
        raise DataError("none of the images could be read")


def _stored_size(item: Path | Image.Image) -> Size:
    """An image's (height, width) as stored: its file header's (read, it was), or an open
    image's own."""
    return read_header_size(item) if isinstance(item, Path) else (item.height, item.width)


def _decode_part(items: list[tuple[Path | Image.Image, bool]], meta: ModelMeta) -> list:
    """The pixels of a part of the files, decoded by worker processes when there are many
    (as a training folder is); None for each image left to ``read_input``: all of them when
    the part is small or holds open images, and every file the workers could not read (its
    error is then ``read_input``'s own)."""
    paths = [str(item) for item, _ in items if isinstance(item, Path)]
    if len(paths) < len(items) or len(paths) < PARALLEL_MIN_FILES:
        return [None] * len(items)
    return [
        p if isinstance(p, np.ndarray) else None
        for p in read_images(paths, meta.input_size, meta.resize, crop_fraction=meta.crop_fraction)
    ]


def model_batches(
    images: torch.Tensor,
    meta: ModelMeta,
    *,
    device: torch.device,
    batch_size: int = 64,
    channels_last: bool = False,
) -> DeviceLoader:
    """Batches of ``images`` (uint8 (N, H, W, 3)) normalised with ``meta``'s statistics, in
    order; the labels it yields are zeros."""
    labels = torch.zeros(len(images), dtype=torch.int64)
    return DeviceLoader(
        images,
        labels,
        batch_size=batch_size,
        mean=meta.mean,
        std=meta.std,
        device=device,
        channels_last=channels_last,
    )


@torch.no_grad()
def class_probabilities(
    model: nn.Module,
    images: torch.Tensor,
    meta: ModelMeta,
    *,
    device: torch.device,
    batch_size: int = 64,
) -> torch.Tensor:
    """Softmax probabilities, float32 (N, K) on the CPU, of ``model`` (as ``inference_model``
    returns it) on uint8 (N, H, W, 3) images at ``meta``'s input size."""
    loader = model_batches(
        images, meta, device=device, batch_size=batch_size, channels_last=is_channels_last(model)
    )
    return torch.cat([model(x).float().softmax(1).cpu() for x, _ in loader])


def class_names(meta: ModelMeta) -> list[str]:
    """The model's class names; ``"0"``, ``"1"``... when its file has none."""
    return meta.class_names or [str(i) for i in range(meta.num_classes)]


def top_classes(
    probs: torch.Tensor, names: Sequence[str], top_k: int
) -> list[list[tuple[str, float]]]:
    """For each row of (N, K) probabilities, the ``top_k`` most probable ``(class, p)``."""
    values, indices = probs.topk(min(top_k, probs.shape[1]), dim=1)
    return [
        [(names[i], p) for i, p in zip(idx.tolist(), val.tolist(), strict=True)]
        for val, idx in zip(values, indices, strict=True)
    ]
