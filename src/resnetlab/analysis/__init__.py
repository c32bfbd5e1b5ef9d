"""Looking inside models: summaries, FLOPs, plots."""

from .summary import (
    ModelSummary,
    count_parameters,
    keras_summary,
    print_summary,
    summarize,
    training_flops,
)

__all__ = [
    "ModelSummary",
    "count_parameters",
    "keras_summary",
    "print_summary",
    "summarize",
    "training_flops",
]
