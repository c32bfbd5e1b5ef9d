"""Weight import: the course's Keras files; pretrained torchvision, timm, Hugging Face, file
and run weights."""

from .keras import LAYOUTS, KerasImportReport, convert_keras, load_keras_h5, read_keras_model
from .pretrained import (
    PretrainedReport,
    PretrainedWeights,
    convert_pretrained,
    load_pretrained,
    resolve_pretrained,
)

__all__ = [
    "LAYOUTS",
    "KerasImportReport",
    "PretrainedReport",
    "PretrainedWeights",
    "convert_keras",
    "convert_pretrained",
    "load_keras_h5",
    "load_pretrained",
    "read_keras_model",
    "resolve_pretrained",
]
