from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch) -> Path:
    """No test writes to the user's cache folder, even one that forgets ``cache_dir``."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("RESNETLAB_CACHE", str(cache))
    return cache


def solid(value: int | tuple[int, int, int], size=(8, 8)) -> Image.Image:
    """An RGB image of one colour, ``size`` as (width, height)."""
    colour = (value,) * 3 if isinstance(value, int) else value
    return Image.new("RGB", size, colour)


def write_tree(root: Path, classes: dict[str, list[Image.Image]], suffix: str = ".png") -> Path:
    """``root/<class>/<i><suffix>`` for each image; returns ``root``."""
    for name, images in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, im in enumerate(images):
            im.save(root / name / f"{i:03d}{suffix}")
    return root


def noise(seed: int, size=(8, 8)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def write_signs_pair(folder: Path, sizes=(("train", 12), ("test", 6))) -> Path:
    """The course's pair of files in small: ``train_signs.h5`` and ``test_signs.h5`` of 8x8
    noise in two classes, in ``folder`` (made)."""
    import h5py

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in sizes:
        with h5py.File(folder / f"{split}_signs.h5", "w") as f:
            f[f"{split}_set_x"] = rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)
            f[f"{split}_set_y"] = np.arange(n) % 2
            f["list_classes"] = np.arange(2)
    return folder
