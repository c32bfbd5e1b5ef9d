"""resnetlab: residual networks in PyTorch, from the course's Keras model to the paper."""

import os as _os
import sys as _sys

from .errors import ResnetlabError  # (imports no torch)

# PyTorch's CPU threads (GNU OpenMP) spin at every barrier by default. When other processes
# hold some of the cores, each op then waits for a descheduled thread: on 2 cores with one
# busy, ResNet-20 trained at 91-94 img/s instead of 164-166 (benchmarks/omp-wait/). Passive
# waiting avoids that, for about 6% on an idle machine. OpenMP reads the setting when torch
# loads it, so it is made here, before torch is imported, unless torch is already loaded or
# the user chose how threads wait: these settings, which the CPU calibration is also kept
# per (the thread count that trains fastest depends on them).
OMP_WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
if "torch" not in _sys.modules and not _os.environ.keys() & set(OMP_WAIT_SETTINGS):
    _os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

__version__ = "0.1.0"

# Everything else is loaded on first use, so that the command line starts without importing
# PyTorch (``resnetlab --version`` and ``--help`` stay instant) and ``import resnetlab`` is
# quick for model-only users: name -> the submodule that defines it.
_LAZY = {
    "ModelMeta": "models",
    "create_model": "models",
    "list_models": "models",
    "load_model": "models",
    "model_info": "models",
    "read_model_meta": "models",
    "register_model": "models",
    "save_model": "models",
    "train": "engine",
    "TrainConfig": "engine",
    "evaluate": "engine",
    "predict": "engine.predict",
}
_SUBMODULES = (
    "analysis",
    "bench",
    "convert",
    "data",
    "engine",
    "experiments",
    "explain",
    "export",
    "models",
    "serve",  # with the serve extra; without it, one line saying what to install
)


def __getattr__(name: str):
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'resnetlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY, *_SUBMODULES])


__all__ = [
    "ModelMeta",
    "ResnetlabError",
    "TrainConfig",
    "__version__",
    "convert",
    "create_model",
    "evaluate",
    "list_models",
    "load_model",
    "model_info",
    "predict",
    "read_model_meta",
    "register_model",
    "save_model",
    "train",
]
