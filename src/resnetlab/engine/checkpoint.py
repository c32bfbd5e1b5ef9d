"""Training checkpoints: model, optimizer, EMA, scaler, position and RNG, saved atomically.

A checkpoint is written to a temporary file, flushed to disk, and renamed over the old one,
so a kill at any moment leaves either the old checkpoint or the new one, never a torn file.
It is read with ``weights_only=True``: only tensors and plain containers are unpickled.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import torch

from ..errors import ResnetlabError
from ..storage import atomic_write

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically (see ``storage.atomic_write``); a failed write raises
    ``WriteError`` and leaves the previous checkpoint as it was."""
    buffer = io.BytesIO()  # torch.save reports a full disk as a RuntimeError; a file write
    torch.save(state, buffer)  # reports it as the OSError that atomic_write turns into one line
    atomic_write(path, buffer.getbuffer())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The state saved by ``save_checkpoint``, checked: a damaged or tampered file raises
    ``ResnetlabError`` here rather than a traceback halfway through restoring it."""
    path = Path(path)
    if not path.is_file():
        raise ResnetlabError(f"no checkpoint at {path}; was the run started with this folder?")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a torn or foreign file: say which, not how unpickling failed
        raise ResnetlabError(
            f"{path} is not a readable resnetlab checkpoint ({type(e).__name__})"
        ) from None
    problem = _problem(state)
    if problem:
        raise ResnetlabError(
            f"{path} is damaged or not a resnetlab checkpoint ({problem}); start the run "
            "again, or restore the file from a copy"
        )
    return state


# What a training checkpoint holds (see Trainer._save_checkpoint).
_COUNTERS = ("epoch", "batch", "step", "images_trained")
_REQUIRED = (*_COUNTERS, "model", "optimizer", "best", "train_time", "rng_cpu")


def _problem(state: Any) -> str | None:
    """What is wrong with a loaded checkpoint, or None."""
    if not isinstance(state, dict):
        return f"holds a {type(state).__name__}, not a dictionary"
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        return f"no {', '.join(missing)}"
    for key in _COUNTERS:
        if not _is_count(state[key]):
            return f"{key} is {state[key]!r}, not a count"
    weights = state["model"]
    if not isinstance(weights, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()
    ):
        return "its model entry is not a state dict"
    bad = [k for k, v in weights.items() if v.is_floating_point() and not v.isfinite().all()]
    if bad:
        return f"NaN/inf in {bad[0]}"
    if not isinstance(state["optimizer"], dict):
        return "its optimizer entry is not a dictionary"
    best = state["best"]
    if not (
        isinstance(best, dict)
        and isinstance(best.get("metric"), float)
        and (best.get("epoch") is None or _is_count(best["epoch"]))
    ):
        return f"best is {best!r}"
    last_train, last_val = state.get("last_train"), state.get("last_val")
    if last_train is not None and not (
        isinstance(last_train, dict)
        and all(isinstance(k, str) and isinstance(v, float) for k, v in last_train.items())
    ):
        return "last_train is not a dictionary of numbers"
    if last_val is not None and not _is_eval_state(last_val):
        return "last_val is not an evaluation result"
    if not isinstance(state["train_time"], (int, float)) or not math.isfinite(state["train_time"]):
        return f"train_time is {state['train_time']!r}"
    rng = state["rng_cpu"]
    if not (isinstance(rng, torch.Tensor) and rng.dtype == torch.uint8):
        return "its random number generator state is not a byte tensor"
    return None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_eval_state(value: Any) -> bool:
    """An ``EvalResult`` as a dictionary: loss, accuracy, count and a (K, K) confusion."""
    if not isinstance(value, dict) or set(value) != {"loss", "accuracy", "count", "confusion"}:
        return False
    confusion = value["confusion"]
    return (
        isinstance(value["loss"], float)
        and isinstance(value["accuracy"], float)
        and _is_count(value["count"])
        and isinstance(confusion, torch.Tensor)
        and confusion.dtype == torch.int64
        and confusion.ndim == 2
        and confusion.shape[0] == confusion.shape[1]
    )
