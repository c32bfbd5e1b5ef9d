"""A tiny trained model, images to send it, and `resnetlab serve` running as a real process."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra is not installed")
pytest.importorskip("uvicorn", reason="the serve extra is not installed")
httpx = pytest.importorskip("httpx", reason="httpx (dev extra) is not installed")

from resnetlab import ResnetlabError, create_model, save_model  # noqa: E402
from resnetlab.data import DeviceLoader  # noqa: E402
from resnetlab.serve.process import ServerProcess  # noqa: E402

COLOURS = ("blue", "green", "red")  # class names, in the model's output order
SIZE = 16
MEAN, STD = (0.45, 0.45, 0.45), (0.25, 0.25, 0.25)


def colour_image(rng: np.random.Generator, colour: str, height: int, width: int) -> np.ndarray:
    """Noise, with one RGB channel bright: a picture of `colour`."""
    pixels = rng.integers(0, 100, (height, width, 3), dtype=np.uint8)
    channel = {"red": 0, "green": 1, "blue": 2}[colour]
    pixels[..., channel] = rng.integers(150, 256, (height, width), dtype=np.uint8)
    return pixels


@pytest.fixture(scope="session")
def model_file(tmp_path_factory) -> Path:
    """ResNet-8 at 16x16 trained for a few steps to tell red, green and blue pictures apart."""
    rng = np.random.default_rng(0)
    images = torch.from_numpy(
        np.stack([colour_image(rng, c, SIZE, SIZE) for c in COLOURS for _ in range(16)])
    )
    labels = torch.arange(len(COLOURS)).repeat_interleave(16)
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=len(COLOURS))
    loader = DeviceLoader(images, labels, batch_size=24, mean=MEAN, std=STD, shuffle=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(6):
        loader.set_epoch(epoch)
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    path = tmp_path_factory.mktemp("model") / "colours.safetensors"
    save_model(model.eval(), path, class_names=list(COLOURS), input_size=SIZE, mean=MEAN, std=STD)
    return path


@pytest.fixture(scope="session")
def image_files(tmp_path_factory) -> dict[str, Path]:
    """Images of every kind the server should read: PNG, JPEG, grayscale, RGBA, odd sizes."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    files = {}
    for i, colour in enumerate(COLOURS):
        pixels = colour_image(rng, colour, 20 + 7 * i, 31 - 5 * i)
        files[f"{colour}.png"] = Image.fromarray(pixels)
        files[f"{colour}.jpg"] = Image.fromarray(colour_image(rng, colour, 40, 24))
    files["gray.png"] = Image.fromarray(rng.integers(0, 256, (18, 18), dtype=np.uint8))
    files["rgba.png"] = Image.fromarray(rng.integers(0, 256, (24, 24, 4), dtype=np.uint8))
    paths = {}
    for name, image in files.items():
        paths[name] = root / name
        image.save(paths[name], quality=90) if name.endswith(".jpg") else image.save(paths[name])
    return paths


@dataclass
class Server:
    """A `resnetlab serve` process, and requests to it."""

    running: ServerProcess

    @property
    def url(self) -> str:
        return self.running.url

    @property
    def process(self):
        return self.running.process

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(self.url + path, timeout=60, **kwargs)

    def head(self, path: str, **kwargs) -> httpx.Response:
        return httpx.head(self.url + path, timeout=60, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return httpx.post(self.url + path, timeout=60, **kwargs)

    def put(self, path: str, **kwargs) -> httpx.Response:
        return httpx.put(self.url + path, timeout=60, **kwargs)

    def stop(self) -> None:
        self.running.stop()


def start_server(model: Path, log_dir: Path, *args: str) -> Server:
    """`python -m resnetlab serve MODEL --port 0 ARGS` on a free port, once it answers
    /healthz; a server that does not come up fails the test with its output."""
    try:
        return Server(ServerProcess(model, *args, log_dir=log_dir).start())
    except ResnetlabError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="session")
def server(model_file, tmp_path_factory):
    """The model served with batching on and a 1 MB upload limit (keeps the big-upload test
    small)."""
    # A session's fixture runs before the conftest's CPU-only rule: it names the CPU.
    folder = tmp_path_factory.mktemp("server")
    running = start_server(model_file, folder, "--max-upload-mb", "1", "--device", "cpu")
    yield running
    running.stop()
