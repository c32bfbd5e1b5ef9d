"""Training checkpoints: model, optimizer, EMA, scaler, position and RNG, saved atomically.

A checkpoint is written to a temporary file, flushed to disk, and renamed over the old one,
so a kill at any moment leaves either the old checkpoint or the new one, never a torn file.
It is read with ``weights_only=True``: only tensors and plain containers are unpickled.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..errors import ResnetlabError

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ResnetlabError(f"no checkpoint at {path}; was the run started with this folder?")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a torn or foreign file: say which, not how unpickling failed
        raise ResnetlabError(
            f"{path} is not a readable resnetlab checkpoint ({type(e).__name__})"
        ) from None
