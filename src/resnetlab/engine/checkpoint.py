"""Training checkpoints: model, optimizer, EMA, scaler, position and RNG, saved atomically.

A checkpoint is written to a temporary file, flushed to disk, and renamed over the old one,
so a kill at any moment leaves either the old checkpoint or the new one, never a torn file.
It is read with ``weights_only=True``: only tensors and plain containers are unpickled.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch

from ..errors import ResnetlabError, shown
from ..models.files import first_nonfinite
from ..storage import atomic_write, is_cut_short_zip, permission_problem

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
        if problem := permission_problem(path):  # from another account: not to restore
            raise ResnetlabError(problem) from None
        raise ResnetlabError(
            f"{path} is not a readable resnetlab checkpoint ({_unreadable(path, e)}); "
            f"{checkpoint_fix(path.parent)}"
        ) from None
    problem = _problem(state)
    if problem:
        raise ResnetlabError(
            f"{path} is damaged or not a resnetlab checkpoint ({problem}); "
            f"{checkpoint_fix(path.parent)}"
        )
    return state


def cuda_rng_state(device: torch.device) -> torch.Tensor | None:
    """The random state a checkpoint keeps of the run's GPU (dropout draws there), None off
    CUDA. Its GPU's alone, not every GPU's: the run may resume on a machine with fewer."""
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def restore_cuda_rng(saved: torch.Tensor | list[torch.Tensor] | None, device: torch.device) -> None:
    """Give the run's GPU the random state of ``cuda_rng_state`` (an older checkpoint holds
    every GPU's, in a list: this GPU's, where the list has it). A run on a CPU uses none."""
    if device.type != "cuda" or saved is None:
        return
    if isinstance(saved, list):
        if device.index >= len(saved):
            return
        saved = saved[device.index]
    torch.cuda.set_rng_state(saved, device)


def _unreadable(path: Path, error: Exception) -> str:
    """Why torch could not read ``path``: cut short, else the error's kind."""
    if is_cut_short_zip(path):
        return "it is cut short, as a copy or a write that stopped leaves it"
    return type(error).__name__


# How a run that cannot go on from its checkpoint is trained again, where not by a new run
# from its config.json (``started_over_with``: an experiment's runs).
_START_OVER: ContextVar[Callable[[Path], str] | None] = ContextVar("start_over", default=None)


@contextlib.contextmanager
def started_over_with(how: Callable[[Path], str]) -> Iterator[None]:
    """Within it, a run whose checkpoint cannot be used says to train it again as
    ``how(run_dir)`` says, instead of with ``--config RUN/config.json``."""
    token = _START_OVER.set(how)
    try:
        yield
    finally:
        _START_OVER.reset(token)


def start_over(run_dir: Path, new_run: str) -> str:
    """How to train the run of ``run_dir`` again: ``new_run``, or the way of the
    ``started_over_with`` around it."""
    how = _START_OVER.get()
    return how(run_dir) if how is not None else new_run


def checkpoint_fix(run_dir: Path) -> str:
    """What to do with a run whose checkpoint cannot be used. Not "start the run again":
    its folder holds a run, which a new run there would write over (and refuses to)."""
    new_run = f"start a new run with --config {run_dir / 'config.json'} and another --out"
    return f"restore the checkpoint from a copy, or {start_over(run_dir, new_run)}"


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
    if (bad := first_nonfinite(weights)) is not None:
        return f"NaN/inf in {bad}"
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
    last_metric = state.get("last_metric")  # absent in checkpoints written before it existed
    if last_metric is not None and not isinstance(last_metric, float):
        return f"last_metric is {last_metric!r}"
    sums = state.get("epoch_sums")  # absent in checkpoints written before it existed
    if sums is not None and not (
        isinstance(sums, (tuple, list))
        and len(sums) == 3
        and all(isinstance(v, float) for v in sums[:2])
        and _is_count(sums[2])
    ):
        return "epoch_sums is not a loss, a number of hits and a count"
    images = state.get("train_images")  # absent in checkpoints written before it existed
    if images is not None and not _is_count(images):
        return f"train_images is {shown(images)}, not a count"
    if not isinstance(state["train_time"], (int, float)) or not math.isfinite(state["train_time"]):
        return f"train_time is {state['train_time']!r}"
    rng = state["rng_cpu"]
    if not (isinstance(rng, torch.Tensor) and rng.dtype == torch.uint8):
        return "its random number generator state is not a byte tensor"
    return None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_eval_state(value: Any) -> bool:
    """An ``EvalResult`` as a dictionary: loss, accuracy, count, a (K, K) confusion and the
    top-5 accuracy (None, or absent in checkpoints written before it existed)."""
    required = {"loss", "accuracy", "count", "confusion"}
    if not isinstance(value, dict) or not required <= set(value) <= required | {"top5"}:
        return False
    confusion = value["confusion"]
    return (
        (value.get("top5") is None or isinstance(value["top5"], float))
        and isinstance(value["loss"], float)
        and isinstance(value["accuracy"], float)
        and _is_count(value["count"])
        and isinstance(confusion, torch.Tensor)
        and confusion.dtype == torch.int64
        and confusion.ndim == 2
        and confusion.shape[0] == confusion.shape[1]
    )


def optimizer_problem(optimizer: torch.optim.Optimizer, saved: Any) -> str | None:
    """What in a saved optimizer state does not fit ``optimizer``, or None.

    ``Optimizer.load_state_dict`` takes almost anything and fails at the next step; this
    checks first: the same parameter groups with the same settings (of the same types),
    and per-parameter state tensors (momentum, moments) of their parameter's shape and dtype.
    """
    current = optimizer.state_dict()
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not isinstance(groups, list) or len(groups) != len(current["param_groups"]):
        return "its optimizer has other parameter groups"
    for group, ref in zip(groups, current["param_groups"], strict=True):
        if (
            not isinstance(group, dict)
            or set(group) != set(ref)
            or group["params"] != ref["params"]
        ):
            return "its optimizer has other parameter groups"
        bad = next((k for k in ref if k != "params" and not _fits(group[k], ref[k])), None)
        if bad is not None:
            return f"its optimizer's {bad} is {group[bad]!r}"
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state = saved.get("state")
    if not isinstance(state, dict):
        return "its optimizer state is not a dictionary"
    for index, values in state.items():
        if not (_is_count(index) and index < len(params) and isinstance(values, dict)):
            return f"its optimizer state has an entry {index!r} for no parameter"
        p = params[index]
        for name, v in values.items():
            tensor = isinstance(v, torch.Tensor)
            if tensor and v.ndim and (v.shape != p.shape or v.dtype != p.dtype):
                return f"its optimizer's {name} of parameter {index} does not fit it"
            if not tensor and not _fits(v, 0.0):
                return f"its optimizer's {name} of parameter {index} is {v!r}"
    return None


def load_optimizer_state(
    optimizer: torch.optim.Optimizer, saved: dict[str, Any], anew: Sequence[str] = ()
) -> None:
    """Load a saved optimizer state (checked by ``optimizer_problem``) into ``optimizer``.

    The saved groups bring their settings along, but for those named in ``anew`` (given
    anew on resuming, as ``--lr`` is) and the kernels, which are the device's: a run saved
    on CUDA (fused, capturable in a CUDA graph) resumes on a CPU with the CPU's, and the
    reverse. They are loaded with those settings, not set after: PyTorch places each step
    count by the kernels of the groups it loads (fused or capturable ones on the
    parameters' device, others where they were saved), and CUDA's fused Adam reads the
    CPU counts of a run saved with foreach kernels as device memory. A learning rate saved
    by a step captured in a CUDA graph is a device tensor; an optimizer outside a graph
    takes numbers (AdamW refuses tensors), and a graph makes tensors of them again.
    """
    keep = [*anew, "foreach", "fused", "capturable"]
    groups = [
        {**group, **{k: built[k] for k in keep if k in built}, "lr": float(group["lr"])}
        for group, built in zip(saved["param_groups"], optimizer.param_groups, strict=True)
    ]
    optimizer.load_state_dict({**saved, "param_groups": groups})


def _fits(value: Any, like: Any) -> bool:
    """``value`` can stand where an optimizer setting ``like`` stands."""
    if isinstance(like, torch.Tensor):  # a learning rate made a tensor for CUDA graphs
        like = 0.0
    if isinstance(like, bool) or like is None:
        return value is None or isinstance(value, bool)
    if isinstance(like, (int, float)):
        if isinstance(value, torch.Tensor):  # learning rates as tensors (CUDA graphs)
            return value.numel() == 1 and value.is_floating_point()
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(like, (tuple, list)):
        return (
            isinstance(value, (tuple, list))
            and len(value) == len(like)
            and all(_fits(v, w) for v, w in zip(value, like, strict=True))
        )
    return type(value) is type(like)
