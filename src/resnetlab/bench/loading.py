"""``resnetlab bench data``: how fast images reach the model, and what a training epoch waits.

In one process, for one data set:

1. Loading: decoding into memory with an empty cache (archives extracted, files decoded),
   then again from the decoding cache.
2. One augmented epoch (pad-4 crop and flip) of the in-memory device loader alone, against
   the usual way: torchvision's CIFAR-10 dataset style, a PIL image per item through
   ``RandomCrop``, ``RandomHorizontalFlip``, ``ToTensor`` and ``Normalize`` in a
   ``DataLoader`` with worker processes.
3. For image folders, one epoch read from the files: torchvision's ``ImageFolder`` with the
   same per-image transforms, against our ``StreamingLoader``.
4. The share of training time spent waiting for data: ``steps`` real training steps
   (``engine.step``) fed by the device loader, with the loader's time measured between the
   steps (CUDA events on a GPU). Target: under 5%.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ..data import Augment, ImageSet, load_dataset, make_loader, split_stats
from ..data.decode import available_cpus
from ..engine.config import resolve_config
from ..engine.distributed import resolve_device
from ..engine.optim import set_lr
from ..engine.step import (
    build_training,
    configure_backends,
    precision_name,
    resolve_channels_last,
)
from ..errors import ResnetlabError
from .records import environment, load_average, seed_cache
from .timing import Clock

AUGMENT = Augment(crop_padding=4, flip=True)


class _Intervals:
    """Summed durations of marked intervals of device work, read with one wait at the end."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.pairs: list = []
        self.seconds = 0.0

    def begin(self) -> None:
        if self.cuda:
            self._begin = torch.cuda.Event(enable_timing=True)
            self._begin.record()
        else:
            self._t0 = time.perf_counter()

    def end(self) -> None:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self.pairs.append((self._begin, end))
        else:
            self.seconds += time.perf_counter() - self._t0

    def total(self) -> float:
        if self.cuda:
            if self.pairs:
                self.pairs[-1][1].synchronize()
            return sum(a.elapsed_time(b) for a, b in self.pairs) / 1000
        return self.seconds


def bench_data(
    data: str = "digits",
    *,
    batch_size: int = 256,
    model: str = "resnet20",
    input_size: int | None = None,
    device: str = "auto",
    steps: int = 20,
    workers: int | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Measure data loading; returns the record (see ``records``) without saving it.

    Args:
        data: a data spec as for ``resnetlab train --data``.
        batch_size: images per batch.
        model: the model trained for the epoch-share figure.
        input_size: resize images to this when decoding (default: their own size).
        device: where the device loader keeps the data and the model trains.
        steps: training steps for the epoch-share figure.
        workers: DataLoader worker processes for the usual-way and streaming epochs
            (default: the available cores, at most 8).
        threads: CPU threads for PyTorch (default: its own choice).
    """
    if min(batch_size, steps) < 1:
        raise ResnetlabError("--batch-size and --steps must be at least 1")
    if threads is not None:
        torch.set_num_threads(threads)
    workers = workers if workers is not None else min(available_cpus(), 8)
    device_ = resolve_device(device)
    configure_backends(device_, deterministic=False)
    env = environment(device_)
    clock = Clock(device_)
    record: dict[str, Any] = {"kind": "data", "data": data, "batch_size": batch_size}

    with tempfile.TemporaryDirectory(prefix="resnetlab-bench-") as cache:
        seed_cache(data, cache)
        start = time.perf_counter()
        loaded = load_dataset(data, image_size=input_size, cache_dir=cache, stream=False)
        record["load_cold_s"] = round(time.perf_counter() - start, 2)
        start = time.perf_counter()
        load_dataset(data, image_size=input_size, cache_dir=cache, stream=False)
        record["load_cached_s"] = round(time.perf_counter() - start, 2)
        train = loaded.train
        if not isinstance(train, ImageSet):
            raise ResnetlabError(f"{data}: expected images in memory, got a streamed set")
        height, width = train.image_size
        record.update(images=len(train), image_size=[height, width], workers=workers)
        mean, std = split_stats(train)
        channels_last = resolve_channels_last(resolve_config(recipe="modern", model=model), device_)

        loader = make_loader(
            train,
            train=True,
            batch_size=batch_size,
            device=device_,
            mean=mean,
            std=std,
            augment=AUGMENT,
            channels_last=channels_last,
        )
        clock.start()
        seen = sum(len(y) for _, y in loader)
        seconds = clock.stop()
        ours = seen / seconds
        record["device_loader"] = {
            "what": "DeviceLoader: the data on the device, crop and flip in batches",
            "epoch_s": round(seconds, 3),
            "images_per_s": round(ours),
        }
        usual_s = _usual_epoch(train, batch_size, mean, std, workers, device_)
        record["usual_way"] = {
            "what": f"PIL image per item, torchvision transforms, DataLoader, {workers} workers",
            "epoch_s": round(usual_s, 3),
            "images_per_s": round(seen / usual_s),
        }
        record["ratio"] = round(usual_s / seconds, 2)

        folder = Path(train.source)
        if folder.is_dir():
            record["files"] = _file_epochs(data, folder, batch_size, mean, std, workers, cache)

        record["epoch_share"] = _epoch_share(
            model, loader, batch_size, steps, (height, width), len(train.class_names), device_
        )
    record.update(env)
    record["load_after"] = load_average()
    return record


def _usual_epoch(
    train: ImageSet,
    batch_size: int,
    mean: list[float],
    std: list[float],
    workers: int,
    device: torch.device,
) -> float:
    """Seconds for one epoch the usual way, as torchvision's CIFAR10 dataset serves it."""
    from torchvision import transforms

    height, width = train.image_size
    transform = transforms.Compose(
        [
            transforms.RandomCrop((height, width), padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
    dataset = _PilDataset(train.images.cpu().numpy(), train.labels.cpu(), transform)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    clock = Clock(device)
    clock.start()
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
    return clock.stop()


class _PilDataset(torch.utils.data.Dataset):
    def __init__(self, images, labels: torch.Tensor, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def _file_epochs(
    data: str,
    folder: Path,
    batch_size: int,
    mean: list[float],
    std: list[float],
    workers: int,
    cache: str,
) -> dict[str, Any]:
    """One epoch decoded from the files: ImageFolder + DataLoader against StreamingLoader."""
    from torchvision import datasets
    from torchvision.transforms import v2

    streamed = load_dataset(data, cache_dir=cache, stream=True).train
    height, width = streamed.image_size
    transform = v2.Compose(
        [
            v2.PILToTensor(),
            v2.Resize((height, width), antialias=True),
            v2.RandomCrop((height, width), padding=4),
            v2.RandomHorizontalFlip(),
        ]
    )
    folder_set = datasets.ImageFolder(str(folder), transform=transform)
    peer = torch.utils.data.DataLoader(
        folder_set, batch_size=batch_size, shuffle=True, num_workers=workers
    )
    start = time.perf_counter()
    n = sum(len(y) for _, y in peer)
    peer_s = time.perf_counter() - start
    loader = make_loader(
        streamed,
        train=True,
        batch_size=batch_size,
        device="cpu",
        mean=mean,
        std=std,
        augment=AUGMENT,
        num_workers=workers,
    )
    start = time.perf_counter()
    sum(len(y) for _, y in loader)
    ours_s = time.perf_counter() - start
    return {
        "images": n,
        "imagefolder_epoch_s": peer_s,
        "streaming_epoch_s": ours_s,
        "ratio": peer_s / ours_s,
    }


def _epoch_share(
    model: str,
    loader,
    batch_size: int,
    steps: int,
    size: tuple[int, int],
    num_classes: int,
    device: torch.device,
) -> dict[str, Any]:
    """Real training steps fed by ``loader``; the share of their time spent in the loader."""
    config = resolve_config(recipe="modern", model=model, batch_size=batch_size, device=str(device))
    parts = build_training(config, device, num_classes=num_classes, input_size=size[0])
    data_time, clock = _Intervals(device), Clock(device)

    def batches():
        epoch = 0
        while True:
            loader.set_epoch(epoch)
            yield from loader
            epoch += 1

    stream = batches()
    x, y = next(stream)
    parts.step(x, y)  # warm-up: first-call costs belong to neither side
    clock.start()
    for _ in range(steps):
        data_time.begin()
        x, y = next(stream)
        data_time.end()
        set_lr(parts.optimizer, config.lr)
        parts.step(x, y)
    total = clock.stop()
    waiting = data_time.total()
    return {
        "model": model,
        "steps": steps,
        "precision": precision_name(parts.amp_dtype),
        "total_s": round(total, 3),
        "data_s": round(waiting, 4),
        "share": round(waiting / total, 4),
    }
