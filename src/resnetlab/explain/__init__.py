"""Why a model predicts what it does: class activation maps, their faithfulness, galleries.

``explain(model, images)`` gives each image's map for its predicted (or a chosen) class;
``render_overlay`` draws one as a PIL image; ``run_checks`` measures whether the maps
depend on the model (sanity check) and point at what the prediction depends on
(deletion check); ``write_error_gallery`` draws a run's misclassified validation images.
"""

from .api import Explanation, explain
from .cam import (
    METHODS,
    CamResult,
    class_activation_maps,
    default_layer,
    find_layer,
    layer_choices,
)
from .faithfulness import (
    CheckRow,
    check_model,
    deletion_check,
    randomized_copy,
    rank_correlation,
    run_checks,
    sanity_check,
)
from .gallery import ErrorSource, write_error_gallery
from .render import render_overlay, tile

__all__ = [
    "METHODS",
    "CamResult",
    "CheckRow",
    "ErrorSource",
    "Explanation",
    "check_model",
    "class_activation_maps",
    "default_layer",
    "deletion_check",
    "explain",
    "find_layer",
    "layer_choices",
    "randomized_copy",
    "rank_correlation",
    "render_overlay",
    "run_checks",
    "sanity_check",
    "tile",
    "write_error_gallery",
]
