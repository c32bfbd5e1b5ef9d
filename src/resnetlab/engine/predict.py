"""Prediction on image files, preprocessed exactly as the model's training data was:
decoded, resized to the input size as the model file's ``resize`` says (squashed or
centre-cropped), normalised with its mean and standard deviation."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..data import DeviceLoader, read_image
from ..data.decode import IMAGE_EXTENSIONS
from ..errors import DataWarning, ResnetlabError
from ..models import load_model
from .distributed import resolve_device
from .inference import inference_model, is_channels_last


@dataclass
class Prediction:
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


def expand_inputs(inputs: Sequence[str | Path]) -> list[tuple[Path, bool]]:
    """Image files named directly, and the images inside named folders (sorted), each with
    whether it was named directly."""
    paths: list[tuple[Path, bool]] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise ResnetlabError(f"no images in folder {item}")
            paths += [(p, False) for p in found]
        elif item.is_file():
            paths.append((item, True))
        else:
            raise ResnetlabError(f"image not found: {item}")
    return paths


@torch.no_grad()
def predict(
    model: nn.Module | str | Path,
    inputs: Sequence[str | Path],
    *,
    top_k: int = 3,
    device: str = "auto",
    batch_size: int = 64,
) -> list[Prediction]:
    """Classify images with a trained model.

    Args:
        model: a model file written by resnetlab, or a model returned by ``load_model``.
        inputs: image files and folders of images.
        top_k: how many classes to report per image.
        device: ``auto``, ``cpu``, ``cuda``...
        batch_size: images per forward pass.

    Returns:
        One ``Prediction`` per image, in input order. An image named in ``inputs`` must be
        readable; one inside a folder that is not is skipped with a warning.
    """
    device_ = resolve_device(device)
    if not isinstance(model, nn.Module):
        model = load_model(model, device=device_)
    meta = model.meta
    names = meta.class_names or [str(i) for i in range(meta.num_classes)]
    size = meta.input_size
    # The training path: decode and resize as a folder is decoded, normalise in the loader.
    # An image named directly must be readable; one found in a folder is skipped if not.
    paths, decoded = [], []
    for path, named in expand_inputs(inputs):
        try:
            decoded.append(torch.from_numpy(_read(path, size, meta.resize)))
            paths.append(path)
        except ResnetlabError as e:
            if named:
                raise
            warnings.warn(f"{e}; skipped", DataWarning, stacklevel=2)
    if not paths:
        raise ResnetlabError("none of the images could be read")
    images = torch.stack(decoded)  # (N, H, W, 3)
    labels = torch.zeros(len(paths), dtype=torch.int64)
    model = inference_model(model, device_, input_size=size)
    loader = DeviceLoader(
        images,
        labels,
        batch_size=batch_size,
        mean=meta.mean,
        std=meta.std,
        device=device_,
        channels_last=is_channels_last(model),
    )
    probs = torch.cat([model(x).float().softmax(1).cpu() for x, _ in loader])
    k = min(top_k, meta.num_classes)
    values, indices = probs.topk(k, dim=1)
    return [
        Prediction(
            str(path), [(names[i], p) for i, p in zip(idx.tolist(), val.tolist(), strict=True)]
        )
        for path, val, idx in zip(paths, values, indices, strict=True)
    ]


def _read(path: Path, size: int, resize: str):
    try:
        return read_image(path, size, resize)
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ResnetlabError(f"{path} is not a readable image ({type(e).__name__}: {e})") from None
