"""A task a CAM can be checked on: where the evidence is, is known.

Each image is noise with one coloured square at a random place; the square's colour is
the class. A model that learned the task must look at the square.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import resnetlab

CLASSES = ["blue", "green", "red"]  # sorted, as an image folder's classes are
CHANNEL = [2, 1, 0]  # the RGB channel of each class's square


def squares(n: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (n, size, size, 3) images and their int64 labels."""
    rng = np.random.default_rng(seed)
    images = rng.integers(60, 140, (n, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, len(CLASSES), n)
    side = size // 4
    for image, label in zip(images, labels, strict=True):
        y, x = rng.integers(0, size - side, 2)
        image[y : y + side, x : x + side] = 30
        image[y : y + side, x : x + side, CHANNEL[label]] = 230
    return torch.from_numpy(images), torch.from_numpy(labels)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> (N, 3, H, W) as a model with mean 0 and std 1 takes it."""
    return images.permute(0, 3, 1, 2).float() / 255


def fit(name: str, *, size: int = 32, steps: int = 60, batch: int = 32, seed: int = 0, **kwargs):
    """``name`` trained on squares for ``steps`` Adam steps, in eval mode."""
    torch.manual_seed(seed)
    model = resnetlab.create_model(name, num_classes=len(CLASSES), **kwargs)
    images, labels = squares(steps * batch // 4, size, seed)  # each image seen about 4 times
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(images), (batch,), generator=generator)
        loss = torch.nn.functional.cross_entropy(model(normalise(images[idx])), labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="session")
def trained_resnet8():
    """ResNet-8 that has learned the squares (all of 300 new images right)."""
    return fit("resnet8", steps=40)


@pytest.fixture(scope="session")
def model_file(trained_resnet8, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "squares.safetensors"
    resnetlab.save_model(trained_resnet8, path, class_names=CLASSES, input_size=32)
    return path
