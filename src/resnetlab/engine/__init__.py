"""Training, evaluation and prediction."""

from ..options import CHOICES
from .config import RECIPES, TrainConfig, resolve_config
from .evaluate import EvalResult, evaluate
from .optim import lr_at
from .step import initial_model
from .train import RunResult, TrainingDiverged, train

__all__ = [
    "CHOICES",
    "RECIPES",
    "EvalResult",
    "RunResult",
    "TrainConfig",
    "TrainingDiverged",
    "evaluate",
    "initial_model",
    "lr_at",
    "resolve_config",
    "train",
]
