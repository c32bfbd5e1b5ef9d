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
from ..data.decode import usable_cpus
from ..data.folders import NAMED_CLASSES_NOTE
from ..engine.config import resolve_config
from ..engine.distributed import resolve_device
from ..engine.optim import set_lr
from ..engine.step import (
    GRAPH_WARMUP_STEPS,
    build_training,
    configure_backends,
    precision_name,
    resolve_channels_last,
)
from ..engine.timing import Clock
from ..errors import DataWarning, ResnetlabError, count_argument, warn
from .records import environment, load_average, seed_cache
from .sides import use_threads

AUGMENT = Augment(crop_padding=4, flip=True)


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
    batch_size = count_argument(batch_size, "--batch-size")
    steps = count_argument(steps, "--steps")
    if workers is not None and workers < 0:
        raise ResnetlabError(
            f"--workers must be at least 0 (0: load in this process), got {workers}"
        )
    use_threads(threads)
    workers = workers if workers is not None else min(usable_cpus(), 8)
    device_ = resolve_device(device)
    configure_backends(device_, deterministic=False)
    env = environment(device_)
    record: dict[str, Any] = {"kind": "data", "data": data, "batch_size": batch_size}
    with tempfile.TemporaryDirectory(prefix="resnetlab-bench-") as cache:
        train = _load(data, input_size, cache, record)
        record.update(images=len(train), image_size=list(train.image_size), workers=workers)
        mean, std = split_stats(train)
        loader = make_loader(
            train,
            train=True,
            batch_size=batch_size,
            device=device_,
            mean=mean,
            std=std,
            augment=AUGMENT,
            channels_last=resolve_channels_last(None, device_),  # the train command's default
        )
        record.update(_loader_epochs(loader, train, batch_size, mean, std, workers, device_))
        if Path(train.source).is_dir() and NAMED_CLASSES_NOTE in train.notes:
            warn(
                f"{train.source}: no epoch read from the files is timed against ImageFolder, "
                f"which reads one sub-folder per class ({NAMED_CLASSES_NOTE} here)",
                DataWarning,
            )
        elif Path(train.source).is_dir():
            folder = Path(train.source)
            record["files"] = _file_epochs(data, folder, batch_size, mean, std, workers, cache)
        record["epoch_share"] = _epoch_share(
            model, loader, batch_size, steps, train.image_size, len(train.class_names), device_
        )
    record.update(env)
    record["load_after"] = load_average()
    return record


def _load(data: str, input_size: int | None, cache: str, record: dict[str, Any]) -> ImageSet:
    """Decode ``data`` into an empty cache, then again from it; the times go into ``record``."""
    seed_cache(data, cache)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        loaded = load_dataset(data, image_size=input_size, cache_dir=cache, stream=False)
        times.append(time.perf_counter() - start)
    record["load_cold_s"], record["load_cached_s"] = times
    if not isinstance(loaded.train, ImageSet):
        raise ResnetlabError(f"{data}: expected images in memory, got a streamed set")
    return loaded.train


def _loader_epochs(
    loader,
    train: ImageSet,
    batch_size: int,
    mean: list[float],
    std: list[float],
    workers: int,
    device: torch.device,
) -> dict[str, Any]:
    """One augmented epoch of the device loader, and one the usual way."""
    clock = Clock(device)
    clock.start()
    seen = sum(len(y) for _, y in loader)
    seconds = clock.stop()
    usual_s = _usual_epoch(train, batch_size, mean, std, workers, device)
    return {
        "device_loader": {
            "what": "DeviceLoader: the data on the device, crop and flip in batches",
            "epoch_s": seconds,
            "images_per_s": seen / seconds,
        },
        "usual_way": {
            "what": f"PIL image per item, torchvision transforms, DataLoader, {workers} workers",
            "epoch_s": usual_s,
            "images_per_s": seen / usual_s,
        },
        "ratio": usual_s / seconds,
    }


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
    clock = Clock("cpu")
    clock.start()
    n = sum(len(y) for _, y in peer)
    peer_s = clock.stop()
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
    clock.start()
    sum(len(y) for _, y in loader)
    ours_s = clock.stop()
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
    loader.channels_last = parts.channels_last  # the layout the (calibrated) model runs in
    data_time, clock = Clock(device), Clock(device)

    def batches():
        epoch = 0
        while True:
            loader.set_epoch(epoch)
            yield from loader
            epoch += 1

    stream = batches()
    # Warm-up: first-call costs (and, in a CUDA graph, the eager steps and the capture)
    # belong to neither side.
    for _ in range(GRAPH_WARMUP_STEPS + 2 if parts.step.cuda_graphs else 1):
        x, y = next(stream)
        parts.step(x, y)
    clock.start()
    for _ in range(steps):
        data_time.start()
        x, y = next(stream)
        data_time.pause()
        set_lr(parts.optimizer, config.lr)
        parts.step(x, y)
    total = clock.stop()
    waiting = data_time.read()
    return {
        "model": model,
        "steps": steps,
        "precision": precision_name(parts.amp_dtype),
        "cuda_graphs": parts.step.cuda_graphs,
        "total_s": total,
        "data_s": waiting,
        "share": waiting / total,
    }
