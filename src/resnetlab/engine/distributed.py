"""Distributed data parallel training under ``torchrun``, and device selection.

The same ``resnetlab train`` command runs on one process or, under
``torchrun --nproc-per-node N``, on N: each process takes its shard of every epoch, DDP
averages the gradients, and only rank 0 writes files and prints.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..errors import ResnetlabError, option, shown
from .auto import count_of

# Seconds a process waits for the others to join before it says what it waits for (the
# process group waits up to 30 minutes, silently).
JOIN_NOTE_AFTER_S = 15.0


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def _xpu_available() -> bool:
    return hasattr(torch, "xpu") and torch.xpu.is_available()


# Accelerators a device name may ask for: what they are called, and whether this machine has one.
ACCELERATORS: dict[str, tuple[str, Callable[[], bool]]] = {
    "cuda": ("CUDA", torch.cuda.is_available),
    "mps": ("Apple's MPS", _mps_available),
    "xpu": ("Intel's XPU", _xpu_available),
}


def resolve_device(name: str | int | torch.device, local_rank: int | None = None) -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then CPU; a named accelerator this machine
    lacks is a ``ResnetlabError``. Also takes what ``torch.device`` takes: a ``torch.device``
    and a CUDA index. ``cuda`` (and ``auto``) without an index is, as in PyTorch, the current
    GPU (``torch.cuda.set_device``), or under torchrun (``local_rank`` given) the GPU of the
    process's local rank."""
    if isinstance(name, torch.device):
        name = str(name)  # named in messages as 'cuda:1', not device(type='cuda', index=1)
    if name == "auto":
        if torch.cuda.is_available():
            return _cuda_device(name, None, local_rank)
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:  # (torch would take True as index 1)
        device = None if isinstance(name, bool) else torch.device(name)
    except (RuntimeError, TypeError):  # TypeError: None, 1.5, a list
        device = None
    if device is None or (device.type != "cpu" and device.type not in ACCELERATORS):
        raise ResnetlabError(
            f"unknown device {shown(name)}; use auto, cpu, cuda, cuda:N, mps or xpu"
        )
    if device.type in ACCELERATORS:
        label, available = ACCELERATORS[device.type]
        if not available():
            raise ResnetlabError(
                f"device {name!r}: {label} is not available on this machine; use auto or cpu"
            )
    if device.type == "cuda":
        return _cuda_device(name, device.index, local_rank)
    if device.type == "cpu":  # 'cpu:0' is the one CPU, and safetensors refuses the index
        device = torch.device("cpu")
    return device


def _cuda_device(name: str | int, index: int | None, local_rank: int | None) -> torch.device:
    """CUDA device ``index`` (None: the local rank's under torchrun, else the current GPU),
    refused in one line where this machine has no such GPU: torch makes the device, and the
    first tensor sent there fails ('invalid device ordinal')."""
    count = torch.cuda.device_count()
    if index is not None:
        chosen = index
    else:
        chosen = local_rank if local_rank is not None else torch.cuda.current_device()
    if chosen < count:
        return torch.device("cuda", chosen)
    gpus = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
    if index is None:
        raise ResnetlabError(
            f"device {shown(name)}: torchrun's process {local_rank} on this machine has no GPU "
            f"of its own (there are {gpus}); start at most {count} per machine "
            f"(--nproc-per-node {count})"
        )
    raise ResnetlabError(
        f"device {shown(name)}: this machine has {count_of(count, 'CUDA device')}; "
        f"use {gpus} or auto"
    )


def init_distributed(device_name: str) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun; return this process's place and device."""
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return DistInfo(), _made_current(resolve_device(device_name))
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ResnetlabError(
            f"WORLD_SIZE={world_size} but {', '.join(missing)} not set; start the processes "
            "with torchrun (torchrun --nproc-per-node N -m resnetlab train ...), or unset "
            "WORLD_SIZE to train in one process"
        )
    info = DistInfo(
        rank=_env_int("RANK", 0),
        world_size=world_size,
        local_rank=_env_int("LOCAL_RANK", 0),
    )
    if not 0 <= info.rank < world_size:
        raise ResnetlabError(f"RANK={info.rank} is not in 0..{world_size - 1} (WORLD_SIZE)")
    device = resolve_device(device_name, info.local_rank)
    on_this_machine = _env_int("LOCAL_WORLD_SIZE", 1)
    if device.type == "cuda" and on_this_machine > 1 and device.index != info.local_rank:
        # NCCL refuses two processes on one GPU, with a traceback as DDP starts.
        raise ResnetlabError(
            f"{option('device', device_name)} under torchrun puts this machine's "
            f"{on_this_machine} processes on one GPU; give {option('device', 'cuda')} (or "
            "auto): each process takes the GPU of its local rank"
        )
    _made_current(device)
    if not dist.is_initialized():
        _join("nccl" if device.type == "cuda" else "gloo", info)
    return info, device


def _made_current(device: torch.device) -> torch.device:
    """``device``, made the current GPU where it is one: DataLoader's pin-memory thread and
    CUDA's context go to the current GPU, which is GPU 0 for a run on cuda:1 otherwise
    (``step.global_state_kept`` puts the one before back after a run)."""
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def _join(backend: str, info: DistInfo) -> None:
    """Join the process group, saying what it waits for when the others are slow to come
    (WORLD_SIZE set by hand, or a peer that failed to start): one line a machine, from its
    first process."""
    address = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    # The wait blocks inside PyTorch, where Python never sees Ctrl-C: while it lasts, Ctrl-C
    # ends the process at once (nothing is saved yet to lose). Only the main thread can
    # set that.
    main_thread = threading.current_thread() is threading.main_thread()
    # None: a handler set outside Python, left as it is.
    on_ctrl_c = signal.getsignal(signal.SIGINT) if main_thread else None
    line = (
        f"rank {info.rank}: not all WORLD_SIZE={info.world_size} processes have joined at "
        f"{address}; torchrun starts them all" + (" (Ctrl-C stops)" if on_ctrl_c else "")
    )
    waiting = threading.Timer(JOIN_NOTE_AFTER_S, _say, [line])
    waiting.daemon = True
    if on_ctrl_c is not None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    if info.local_rank == 0:
        waiting.start()
    try:
        dist.init_process_group(backend)
    finally:
        waiting.cancel()
        if on_ctrl_c is not None:
            signal.signal(signal.SIGINT, on_ctrl_c)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _env_int(name: str, default: int) -> int:
    """A whole number from the environment (set by torchrun), or one line naming it."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ResnetlabError(f"{name}={text!r} is not a whole number; torchrun sets it") from None


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank (e.g. the run folder's name)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
