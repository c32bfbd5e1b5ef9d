"""resnetlab: residual networks in PyTorch, from the Keras seed to the paper's experiments."""

from . import convert
from .errors import ResnetlabError
from .models import (
    ModelMeta,
    create_model,
    list_models,
    load_model,
    model_info,
    read_model_meta,
    register_model,
    save_model,
)

__version__ = "0.1.0"

__all__ = [
    "ModelMeta",
    "ResnetlabError",
    "__version__",
    "convert",
    "create_model",
    "list_models",
    "load_model",
    "model_info",
    "read_model_meta",
    "register_model",
    "save_model",
]
