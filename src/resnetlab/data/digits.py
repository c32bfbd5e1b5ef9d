"""``digits``: scikit-learn's bundled handwritten digits, the offline default.

1,797 real 8x8 grayscale scans of the digits 0-9 (the UCI optical digits test set), shipped
inside scikit-learn, so a demo can train without a download. Values 0..16 become 0..255.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import numpy as np
import torch

from .imageset import ImageSet

DIGITS = 1797


def load_digits_set(image_size: int | None = None, crop_fraction: float = 1.0) -> ImageSet:
    """All 1,797 digits as RGB uint8 (N, 8, 8, 3), or resized to ``image_size``
    (``crop_fraction``: ``decode.resize_plan``)."""
    scans, targets = read_bundled_digits() or _digits_through_scikit_learn()
    gray = np.round(scans * (255 / 16)).astype(np.uint8)  # (N, 8, 8), 0..16 -> 0..255
    images = torch.from_numpy(np.repeat(gray[..., None], 3, axis=3))
    labels = torch.from_numpy(targets.astype(np.int64))
    digits = ImageSet(images, labels, [str(i) for i in range(10)], "digits (scikit-learn)")
    return digits.resized(image_size, crop_fraction=crop_fraction) if image_size else digits


def read_bundled_digits() -> tuple[np.ndarray, np.ndarray] | None:
    """The scans (N, 8, 8) and targets (N,) from scikit-learn's ``digits.csv.gz``, read
    without importing scikit-learn (which takes a second or more at every start); None
    where the file is not where scikit-learn keeps it, or not as it writes it."""
    path = _bundled_digits_file()
    if path is None:
        return None
    try:
        rows = np.loadtxt(path, delimiter=",", ndmin=2)
    except (OSError, ValueError, EOFError):
        return None
    if rows.shape != (DIGITS, 65):
        return None
    return rows[:, :-1].reshape(-1, 8, 8), rows[:, -1]


def _bundled_digits_file() -> Path | None:
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)), "datasets", "data", "digits.csv.gz")


def _digits_through_scikit_learn() -> tuple[np.ndarray, np.ndarray]:
    state = random.getstate()
    from sklearn.datasets import load_digits

    random.setstate(state)  # importing scikit-learn's datasets draws from Python's generator
    bunch = load_digits()
    return bunch.images, bunch.target
