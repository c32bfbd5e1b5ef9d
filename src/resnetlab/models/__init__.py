"""Model zoo: every family registers its builders on import."""

from . import cifar, keras_resnet50, resnet, variants  # noqa: F401  (registers the models)
from .blocks import (
    BasicBlock,
    Bottleneck,
    PadShortcut,
    PreActBasicBlock,
    PreActBottleneck,
    SqueezeExcite,
)
from .files import ModelMeta, load_model, read_model_meta, save_model
from .keras_resnet50 import KerasBatchNorm2d, KerasResNet50
from .preact import PreActResNet
from .registry import ModelInfo, create_model, list_models, model_info, register_model
from .resnet import ResNet

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "KerasBatchNorm2d",
    "KerasResNet50",
    "ModelInfo",
    "ModelMeta",
    "PadShortcut",
    "PreActBasicBlock",
    "PreActBottleneck",
    "PreActResNet",
    "ResNet",
    "SqueezeExcite",
    "create_model",
    "list_models",
    "load_model",
    "model_info",
    "read_model_meta",
    "register_model",
    "save_model",
]
