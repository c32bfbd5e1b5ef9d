"""``predict`` on a large folder of photos: decoded by worker processes, or one by one.

``predict`` decodes a folder ``DECODED_PART`` images at a time; from ``PARALLEL_MIN_FILES``
images a part is decoded by a pool of worker processes, as a training folder is. Here the
same ``resnetlab.predict`` call runs both ways in one process, alternating ``--repeats``
times: with the pool, and with it turned off (the threshold raised above the folder's
size). The photos are made for the run: ``--images`` JPEGs of ``--photo-size`` (smooth
colours, shapes and grain, quality 90, as a phone's), classified by a ResNet at
``--input-size`` (random weights: the time does not depend on them). Appends one JSON line
per run to ``benchmarks/predict-decode/<machine>.jsonl`` and prints the ratio.

    PYTHONPATH=src python benchmarks/predict-decode/run.py
    PYTHONPATH=src python benchmarks/predict-decode/run.py --images 4096 --model resnet50
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

import resnetlab
from resnetlab import create_model, save_model
from resnetlab.bench.records import environment, load_average

HERE = Path(__file__).resolve().parent
PREDICT = sys.modules[resnetlab.predict.__module__]


def make_photos(folder: Path, count: int, size: tuple[int, int], seed: int = 0) -> None:
    """``count`` JPEGs of ``size`` (width, height): a colour gradient, a few shapes, grain."""
    rng = np.random.default_rng(seed)
    width, height = size
    ramp = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    for i in range(count):
        start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        pixels = start + (end - start) * ramp + np.zeros((height, 1, 1), np.float32)
        pixels += rng.normal(0, 6, (height, width, 3))
        image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(5):
            x, y = rng.uniform(0, width), rng.uniform(0, height)
            r = rng.uniform(0.05, 0.25) * min(width, height)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.integers(0, 256, 3)))
        image.save(folder / f"IMG_{i:05d}.jpg", quality=90)


def timed_predict(model_file: Path, folder: Path, pooled: bool) -> float:
    """Seconds of one ``predict`` over the folder, with the pool or without."""
    threshold = PREDICT.PARALLEL_MIN_FILES
    PREDICT.PARALLEL_MIN_FILES = threshold if pooled else sys.maxsize
    try:
        start = time.perf_counter()
        resnetlab.predict(model_file, [folder], top_k=1)
        return time.perf_counter() - start
    finally:
        PREDICT.PARALLEL_MIN_FILES = threshold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--photo-size", type=int, nargs=2, default=(1600, 1200), metavar="W H")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        make_photos(folder, args.images, tuple(args.photo_size))
        model_file = Path(tmp) / "model.safetensors"
        classes = [f"class {k}" for k in range(10)]
        save_model(
            create_model(args.model, num_classes=len(classes)),
            model_file,
            class_names=classes,
            input_size=args.input_size,
        )
        timed_predict(model_file, folder, pooled=True)  # warm: file cache, threads
        times: dict[str, list[float]] = {"pooled": [], "serial": []}
        loads = [load_average()]
        for _ in range(args.repeats):
            for side in ("serial", "pooled"):
                times[side].append(timed_predict(model_file, folder, pooled=side == "pooled"))
                loads.append(load_average())
    serial, pooled = (statistics.median(times[s]) for s in ("serial", "pooled"))
    record = {
        **environment(device),
        "model": args.model,
        "input_size": args.input_size,
        "images": args.images,
        "photo_size": list(args.photo_size),
        "decoded_part": PREDICT.DECODED_PART,
        "serial_s": [round(t, 2) for t in times["serial"]],
        "pooled_s": [round(t, 2) for t in times["pooled"]],
        "serial_images_per_s": round(args.images / serial, 1),
        "pooled_images_per_s": round(args.images / pooled, 1),
        "ratio": round(serial / pooled, 3),
        "load_average": loads,
    }
    path = HERE / f"{record['machine']}.jsonl"
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps(record, indent=1))
    print(
        f"predict, {args.images:,} photos of {args.photo_size[0]}x{args.photo_size[1]} with "
        f"{args.model} at {args.input_size}: {record['serial_images_per_s']:,} img/s one by "
        f"one, {record['pooled_images_per_s']:,} img/s with worker processes "
        f"({record['ratio']:.2f}x); appended to {path}"
    )


if __name__ == "__main__":
    main()
