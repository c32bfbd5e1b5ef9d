"""Data pipeline timings on an image-folder archive (default: the CIFAR-10 JPEG copy).

Times, in one process: extracting the archive into a fresh cache, decoding the training
folder into memory (``load_dataset``) and loading it again from the decoding cache; one
pass over the folder with torchvision's ``ImageFolder`` and a ``DataLoader`` (the peer)
against one epoch of our ``StreamingLoader``, with the same workers and batch size; and
one augmented epoch of the in-memory ``DeviceLoader``. Prints JSON; ``--out`` saves it.

    PYTHONPATH=src python benchmarks/bench_data.py --workers 2
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from resnetlab.data import Augment, load_dataset, make_loader
from resnetlab.data.archive import extracted_folder
from resnetlab.data.decode import available_cpus

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpg.tar.gz"


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def torchvision_pass(folder: Path, batch_size: int, workers: int) -> tuple[int, float]:
    from torchvision import datasets
    from torchvision.transforms import v2

    transform = v2.Compose(
        [v2.PILToTensor(), v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()]
    )
    ds = datasets.ImageFolder(str(folder), transform=transform)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch_size, shuffle=True, num_workers=workers
    )
    start = time.perf_counter()
    n = sum(len(y) for _, y in loader)
    return n, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT)
    parser.add_argument("--workers", type=int, default=min(available_cpus(), 8))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    results: dict[str, object] = {
        "data": str(args.data),
        "workers": args.workers,
        "cpus": available_cpus(),
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
        "torch": torch.__version__,
    }
    with tempfile.TemporaryDirectory() as cache:
        _, results["extract_s"] = timed(lambda: extracted_folder(args.data, Path(cache)))
        data, results["decode_s"] = timed(lambda: load_dataset(str(args.data), cache_dir=cache))
        results["images"] = len(data.train) + (len(data.val) if data.val is not None else 0)
        _, results["cached_load_s"] = timed(lambda: load_dataset(str(args.data), cache_dir=cache))

        train_folder = Path(data.train.source)
        n, results["torchvision_imagefolder_epoch_s"] = torchvision_pass(
            train_folder, args.batch_size, args.workers
        )
        streamed = load_dataset(str(args.data), cache_dir=cache, stream=True).train
        aug = Augment(crop_padding=4, flip=True)
        loader = make_loader(
            streamed,
            train=True,
            batch_size=args.batch_size,
            device="cpu",
            mean=(0.5,) * 3,
            std=(0.25,) * 3,
            augment=aug,
            num_workers=args.workers,
        )
        _, results["streaming_epoch_s"] = timed(lambda: sum(len(y) for _, y in loader))
        results["streaming_vs_torchvision"] = round(
            results["torchvision_imagefolder_epoch_s"] / results["streaming_epoch_s"], 2
        )
        device = make_loader(
            data.train,
            train=True,
            batch_size=args.batch_size,
            device="cpu",
            mean=(0.5,) * 3,
            std=(0.25,) * 3,
            augment=aug,
        )
        _, results["device_loader_epoch_s"] = timed(lambda: sum(len(y) for _, y in device))
        results["train_images"] = n
    for k, v in results.items():
        if isinstance(v, float):
            results[k] = round(v, 2)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
