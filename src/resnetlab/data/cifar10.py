"""CIFAR-10 in its official binary format, and its download.

``cifar-10-batches-bin/`` holds ``data_batch_1.bin`` .. ``data_batch_5.bin`` (training,
10,000 images each), ``test_batch.bin`` and ``batches.meta.txt`` (class names, one a
line). Each record is 1 label byte followed by 3,072 pixel bytes: the red, green and blue
32x32 planes in turn. The format needs no unpickling, unlike the Python version.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .imageset import ImageSet
from .tables import listing

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
ARCHIVE_NAME = "cifar-10-binary.tar.gz"
FOLDER_NAME = "cifar-10-batches-bin"
CLASS_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
RECORD = 1 + 3 * 32 * 32
OFFICIAL_BATCH = 10_000  # images in each of the official batch files


def is_cifar10_folder(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    if (folder / "test_batch.bin").is_file():
        return True
    try:  # listed as the scan of an image folder lists it: once a load
        return any(fnmatch.fnmatchcase(e.name, "data_batch_*.bin") for e in listing(folder))
    except OSError:  # one that may not be listed, which that scan says
        return False


def read_batches(files: list[Path], class_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, 32, 32, 3) images and int64 (N,) labels from binary batch files."""
    images, labels = [], []
    for f in files:
        data = np.fromfile(f, dtype=np.uint8)
        if data.size == 0 or data.size % RECORD:
            raise DataError(
                f"{f}: {data.size:,} bytes is not a whole number of {RECORD}-byte CIFAR-10 "
                "records (1 label byte + 3,072 pixel bytes); the file is truncated or not CIFAR-10"
            )
        records = data.reshape(-1, RECORD)
        y = records[:, 0].astype(np.int64)
        if (bad := y[y >= len(class_names)]).size:
            raise DataError(
                f"{f}: labels outside the class list: found label {int(bad[0])} but there are "
                f"{len(class_names)} classes; this may be CIFAR-100, which is not supported"
            )
        # Channel-major planes (N, 3, 32, 32) -> (N, 32, 32, 3).
        images.append(records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(y)
    return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def _class_names(folder: Path) -> tuple[list[str], list[str]]:
    meta = folder / "batches.meta.txt"
    if not meta.is_file():
        return list(CLASS_NAMES), [f"no batches.meta.txt in {folder}: the standard class names"]
    names = [line.strip() for line in meta.read_text().splitlines() if line.strip()]
    if len(names) < 2:
        raise DataError(f"{meta}: expected one class name a line, found {len(names)}")
    return names, []


def _missing_batches_note(folder: Path, files: list[Path]) -> list[str]:
    """A note on the official training batches missing among ``files`` (an extraction that
    stopped early): the others train without a word, on a fifth fewer images each. Only
    where the batches there are the official ones, of 10,000 images each: a data set of
    another's own in this format may hold as many batches as it likes."""
    if any(f.stat().st_size != OFFICIAL_BATCH * RECORD for f in files):
        return []
    names = {f.name for f in files}
    missing = [f"data_batch_{i}.bin" for i in range(1, 6) if f"data_batch_{i}.bin" not in names]
    if not missing:
        return []
    what = f"{', '.join(missing[:-1])} and {missing[-1]} are" if missing[1:] else f"{missing[0]} is"
    read = f"the other {len(names)} are" if len(names) > 1 else f"{next(iter(names))} is"
    return [
        f"{what} missing from {folder}: {read} read alone; extract {ARCHIVE_NAME} again for "
        "all 50,000 training images"
    ]


def _load(
    folder: Path, files: list[Path], image_size: int | None, split: str, crop_fraction: float = 1.0
) -> ImageSet:
    class_names, notes = _class_names(folder)
    if split != "test":
        notes += _missing_batches_note(folder, files)
    x, y = read_batches(files, class_names)
    images = ImageSet(
        torch.from_numpy(x), torch.from_numpy(y), class_names, f"{folder}:{split}", notes
    )
    return images.resized(image_size, crop_fraction=crop_fraction) if image_size else images


def cifar10_splits(
    folder: Path, image_size: int | None = None, crop_fraction: float = 1.0
) -> dict[str, Callable[[], ImageSet]]:
    """``{"train": load, "test": load}`` (whichever exist) for a ``cifar-10-batches-bin`` folder,
    at ``image_size`` (``crop_fraction``: ``decode.resize_plan``)."""
    train = sorted(folder.glob("data_batch_*.bin"))
    test = folder / "test_batch.bin"
    splits: dict[str, Callable[[], ImageSet]] = {}
    if train:
        splits["train"] = partial(_load, folder, train, image_size, "train", crop_fraction)
    if test.is_file():
        splits["test"] = partial(_load, folder, [test], image_size, "test", crop_fraction)
    if len(splits) == 1:
        splits = {"all": next(iter(splits.values()))}
    return splits


def download(
    dest_folder: Path, *, url: str | None = None, md5: str | None = None, quiet: bool = False
) -> Path:
    """Fetch the official archive into ``dest_folder`` and verify its MD5 checksum.

    The file is downloaded under a temporary name and renamed only once its checksum
    matches, so a failed or corrupt download never looks like a finished one.

    Args:
        dest_folder: where ``cifar-10-binary.tar.gz`` is written.
        url: where to fetch it from (default: the official address, ``URL``).
        md5: the expected checksum (default: the official archive's, ``MD5``).
        quiet: no progress bar.

    Returns:
        The path of the verified archive.
    """
    url = URL if url is None else url
    md5 = MD5 if md5 is None else md5
    dest_folder.mkdir(parents=True, exist_ok=True)
    final = dest_folder / ARCHIVE_NAME
    tmp = final.with_name(f"{final.name}.{os.getpid()}.part")
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            for chunk in _chunks(response, total, quiet or not sys.stderr.isatty()):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5:
            raise DataError(
                f"downloaded {url}: MD5 checksum is {digest.hexdigest()}, expected {md5}; the "
                "download is corrupt or the address serves another file: try again, or download "
                f"it yourself and give path/to/{ARCHIVE_NAME} as the data, not cifar10"
            )
        os.replace(tmp, final)
    except (urllib.error.URLError, OSError) as e:
        raise DataError(
            f"could not download {url} ({e}); download it yourself and give "
            f"path/to/{ARCHIVE_NAME} as the data, not cifar10"
        ) from e
    finally:
        tmp.unlink(missing_ok=True)
    return final


def _chunks(response, total: int, quiet: bool):
    size = 1 << 20
    if quiet:
        while chunk := response.read(size):
            yield chunk
        return
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn()) as bar:
        task = bar.add_task(f"downloading {ARCHIVE_NAME}", total=total or None)
        while chunk := response.read(size):
            bar.advance(task, len(chunk))
            yield chunk
