"""``digits``: scikit-learn's bundled handwritten digits, the offline default.

1,797 real 8x8 grayscale scans of the digits 0-9 (the UCI optical digits test set), shipped
inside scikit-learn, so a demo can train without a download. Values 0..16 become 0..255.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from .imageset import ImageSet


def load_digits_set(image_size: int | None = None) -> ImageSet:
    """All 1,797 digits as RGB uint8 (N, 8, 8, 3), or resized to ``image_size``."""
    state = random.getstate()
    from sklearn.datasets import load_digits

    random.setstate(state)  # importing scikit-learn's datasets draws from Python's generator
    bunch = load_digits()
    gray = np.round(bunch.images * (255 / 16)).astype(np.uint8)  # (N, 8, 8), 0..16 -> 0..255
    images = torch.from_numpy(np.repeat(gray[..., None], 3, axis=3))
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    digits = ImageSet(images, labels, [str(i) for i in range(10)], "digits (scikit-learn)")
    return digits.resized(image_size) if image_size else digits
