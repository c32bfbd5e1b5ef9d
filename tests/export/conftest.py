"""Small model files of every family, with BatchNorm statistics that are not the identity
(so that folding them into the convolutions is exercised), written once per test module."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import resnetlab
from resnetlab.export import export_model

CLASSES = ["paper", "rock", "scissors"]
MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)

# family -> (registered name, options, input size): each as small as the family allows.
FAMILIES = {
    "cifar": ("resnet8", {}, 16),
    "imagenet": ("resnet18", {"widths": [8, 8, 16, 16]}, 32),
    "plain": ("plain8", {}, 16),
    "keras": ("resnet50_keras", {"input_size": 32}, 32),
}


def write_model_file(path: Path, family: str, seed: int = 0) -> Path:
    name, options, size = FAMILIES[family]
    torch.manual_seed(seed)
    model = resnetlab.create_model(name, num_classes=len(CLASSES), **options)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    resnetlab.save_model(
        model.eval(), path, class_names=CLASSES, input_size=size, mean=MEAN, std=STD
    )
    return path


@pytest.fixture(scope="session")
def cifar_file(tmp_path_factory) -> Path:
    return write_model_file(tmp_path_factory.mktemp("model") / "cifar.safetensors", "cifar")


@pytest.fixture(scope="session")
def exported(cifar_file, tmp_path_factory):
    """``exported(**options)``: the CIFAR model file exported to ONNX with those options,
    once per test session (an ONNX export takes seconds)."""
    folder = tmp_path_factory.mktemp("exported")
    cache = {}

    def get(**options):
        key = tuple(sorted(options.items()))
        if key not in cache:
            out = folder / f"{len(cache)}.onnx"
            cache[key] = (out, export_model(cifar_file, out, **options))
        return cache[key]

    return get


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> list[Path]:
    """Seven images of other sizes and formats than the model's input, as a user has them."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate(
        [(40, 60), (16, 16), (100, 30), (33, 47), (64, 64), (20, 80), (9, 9)]
    ):
        coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((w, h), Image.BILINEAR)
        path = folder / f"{i}.{'jpg' if i % 2 else 'png'}"
        image.save(path)
        paths.append(path)
    return paths
