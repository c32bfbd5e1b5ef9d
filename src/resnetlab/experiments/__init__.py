"""Experiments that reproduce the paper's claims: degradation and gradient flow."""

from ..options import QUICK, QUICK_DEPTHS
from .degradation import PAPER_TEST_ERROR, DegradationResult, run_degradation
from .gradients import GradientResult, gradient_norms, run_gradients, weight_layers

__all__ = [
    "PAPER_TEST_ERROR",
    "QUICK",
    "QUICK_DEPTHS",
    "DegradationResult",
    "GradientResult",
    "gradient_norms",
    "run_degradation",
    "run_gradients",
    "weight_layers",
]
