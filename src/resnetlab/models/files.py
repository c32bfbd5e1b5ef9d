"""Model files: one ``.safetensors`` file that can rebuild and use its own model.

The weights are the model's ``state_dict``; the safetensors metadata holds one JSON entry,
``resnetlab``, with what is needed to rebuild the model (registry name and options) and to
use it (class names, input size, normalisation) plus a short training summary. Nothing is
unpickled on load.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import ResnetlabError
from .registry import create_model, model_info

FORMAT = "resnetlab.model/1"
META_KEY = "resnetlab"


@dataclass
class ModelMeta:
    """What a model file says about its model.

    Images are fed to the model as ``(pixels / 255 - mean) / std`` per RGB channel, at
    ``input_size`` x ``input_size``.
    """

    model: str
    model_kwargs: dict[str, Any]
    num_classes: int
    input_size: int
    class_names: list[str] | None = None
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    training: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT

    def __post_init__(self) -> None:
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ResnetlabError(
                f"{len(self.class_names)} class names for a model with {self.num_classes} outputs"
            )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ModelMeta:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def save_model(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    class_names: list[str] | None = None,
    input_size: int | None = None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    training: dict[str, Any] | None = None,
) -> ModelMeta:
    """Write ``model`` (made by ``create_model``) and how to use it to one safetensors file.

    ``mean`` and ``std`` default to those of the pretrained weights the model started from
    (``model.pretrained``), else to 0 and 1 (``pixels / 255``). The file is written to a
    temporary name and renamed, so a crash never leaves a torn file.
    """
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    name = getattr(model, "model_name", None)
    if name is None:
        raise ResnetlabError("save_model needs a model made by resnetlab.create_model")
    pretrained = getattr(model, "pretrained", None)
    if mean is None and std is None and pretrained is not None and pretrained.mean is not None:
        mean, std = pretrained.mean, pretrained.std
    mean = (0.0, 0.0, 0.0) if mean is None else mean
    std = (1.0, 1.0, 1.0) if std is None else std
    kwargs = dict(getattr(model, "model_kwargs", {}))
    if input_size is None:
        input_size = getattr(model, "input_size", None) or model_info(name).input_size
    meta = ModelMeta(
        model=name,
        model_kwargs=kwargs,
        num_classes=model.num_classes,
        input_size=int(input_size),
        class_names=list(class_names) if class_names is not None else None,
        mean=mean,
        std=std,
        training=dict(training or {}),
    )
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file(tensors, str(tmp), metadata={META_KEY: meta.to_json()})
        os.chmod(tmp, 0o666 & ~_umask())  # safetensors creates files readable by the owner only
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return meta


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_model_meta(path: str | os.PathLike) -> ModelMeta:
    """The metadata of a model file, without reading its weights."""
    path = Path(path)
    run_files = "a run folder's model files are best.safetensors and last.safetensors"
    if path.is_dir():
        raise ResnetlabError(f"{path} is a folder, not a model file; {run_files}")
    if not path.is_file():
        raise ResnetlabError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        hint = f"; {run_files} (checkpoint.pt is for --resume)" if path.suffix == ".pt" else ""
        raise ResnetlabError(f"{path} is not a safetensors model file ({e}){hint}") from None
    if META_KEY not in metadata:
        raise ResnetlabError(
            f"{path} has no resnetlab metadata; for a bare state dict, build the model with "
            f"create_model and call load_state_dict"
        )
    try:
        return ModelMeta.from_json(metadata[META_KEY])
    except (json.JSONDecodeError, TypeError) as e:
        raise ResnetlabError(f"{path} has unreadable resnetlab metadata ({e})") from None


def load_model(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model from its file, in eval mode, with its ``ModelMeta`` as ``model.meta``."""
    meta = read_model_meta(path)
    model = create_model(meta.model, num_classes=meta.num_classes, **meta.model_kwargs)
    state = load_file(str(path), device=str(device))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1].strip()
        raise ResnetlabError(f"{path} does not match its model {meta.model}: {first}") from None
    model.meta = meta
    return model.to(device).eval()
