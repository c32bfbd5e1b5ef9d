"""Streaming: image folders too large to decode into memory, read file by file each epoch.

A ``StreamingLoader`` has the interface of ``DeviceLoader`` and draws the same epoch plan
(order, crop offsets, flips, cutout) from the same seeded generator; only where the work
happens differs. Worker processes decode, resize, crop with padding, flip and cut the
scale/aspect box of each image as uint8 (torch operations and the device loader's own
``resized_crops``); the main process moves the uint8 batch to the device, where
normalisation and cutout run on the whole batch.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial

import torch

from ..errors import DataError, DataWarning, count_argument, warn
from .decode import (
    MAX_UNREADABLE_FRACTION,
    READ_ERRORS,
    as_size,
    leave_if_starting_a_worker,
    read_error_reason,
    read_image,
    skipped_unreadable,
    unreadable_allowed,
    unreadable_fix,
    usable_cpus,
    workers_stopped,
)
from .imageset import check_labels, subset_positions
from .loader import (
    Augment,
    Batch,
    cutout_mask,
    epoch_plan,
    loader_options,
    normalisation,
    resized_crops,
)

# Warnings this process has given about files: each once, not every epoch nor once per
# loader worker (the workers hand theirs to the main process; see ``_Files``).
_WARNED: set[str] = set()


@dataclass
class StreamingSet:
    """Image files, labels and class names of one split, decoded only when iterated.

    Attributes:
        paths: one image file per example.
        labels: int64 (N,), indices into ``class_names``.
        class_names: one name per class.
        image_size: (height, width) every image is resized to when decoded.
        source: where the files came from, for messages.
        notes: what loading adjusted or skipped.
        resize: how an image of another shape meets ``image_size``: ``squash`` or
            ``crop`` (see ``options.RESIZE_MODES``).
        crop_fraction: the share of the resized side kept around the centre
            (``decode.resize_plan``; a model file's, for eval).
        scanned: the files of the folder a held-out part was taken from (0: this split's
            own): the share of unreadable files is judged over the folder, as when it is
            decoded into memory, not over a small validation part of it.
    """

    paths: list[str]
    labels: torch.Tensor
    class_names: list[str]
    image_size: tuple[int, int]
    source: str = ""
    notes: list[str] = field(default_factory=list)
    resize: str = "squash"
    scanned: int = 0
    crop_fraction: float = 1.0

    def __post_init__(self) -> None:
        check_labels(self.labels, self.source or "StreamingSet", len(self.class_names))
        if len(self.paths) != len(self.labels):
            raise ValueError(
                f"{self.source or 'StreamingSet'}: {len(self.paths)} files but "
                f"{len(self.labels)} labels"
            )

    def __repr__(self) -> str:  # not every path
        h, w = self.image_size
        return (
            f"StreamingSet({len(self):,} image files decoded at {w}x{h}, "
            f"{len(self.class_names)} classes, source={self.source!r})"
        )

    def __len__(self) -> int:
        return len(self.paths)

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=len(self.class_names)).tolist()

    def subset(self, indices: torch.Tensor) -> StreamingSet:
        indices = subset_positions(indices, len(self))
        return dataclasses.replace(
            self,
            paths=[self.paths[i] for i in indices.tolist()],
            labels=self.labels[indices],
            scanned=max(self.scanned, len(self)),
        )

    def resized(self, size: int | tuple[int, int]) -> StreamingSet:
        """The same files, to be decoded at ``size`` x ``size`` or ``(height, width)``."""
        return dataclasses.replace(self, image_size=as_size(size))  # checked, not when read


class _Files(torch.utils.data.Dataset):
    """Map-style dataset whose items are plan rows: ``(index, dy, dx, flip, box)``."""

    def __init__(self, split: StreamingSet, padding: int) -> None:
        self.paths = split.paths
        self.labels = split.labels.tolist()
        self.height, self.width = split.image_size
        self.resize = split.resize
        self.crop_fraction = split.crop_fraction
        self.padding = padding

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(
        self, item: tuple[int, int, int, bool, list[float] | None]
    ) -> tuple[torch.Tensor, int, str]:
        """(image, label, what to warn about); label -1 for a file that cannot be read.

        Warnings are handed to the main process, one per line of the text, rather than
        given here: each worker process would give its own, and again every epoch.
        """
        index, dy, dx, flip, box = item
        path = self.paths[index]
        with warnings.catch_warnings(record=True) as caught:  # a worker's main thread
            warnings.simplefilter("always")
            try:
                hwc = read_image(path, (self.height, self.width), self.resize, self.crop_fraction)
            except READ_ERRORS as e:
                hwc = None
                warnings.warn(skipped_unreadable(path, read_error_reason(e)), stacklevel=1)
        said = "\n".join(str(w.message) for w in caught)
        if hwc is None:
            return torch.zeros(3, self.height, self.width, dtype=torch.uint8), -1, said
        img = torch.from_numpy(hwc).permute(2, 0, 1)  # (3, H, W) uint8
        if self.padding:
            # Zero-padded on every side, then the window at (dy, dx): as DeviceLoader crops.
            p = self.padding
            img = torch.nn.functional.pad(img, (p, p, p, p))
            img = img[:, dy : dy + self.height, dx : dx + self.width]
        if flip:
            img = img.flip(-1)
        if box is not None:
            img = resized_crops(img[None], torch.tensor([box]))[0]
        return img.contiguous(), self.labels[index], said


def _warn_once(said: Sequence[str]) -> None:
    """Warn about each line of ``said`` (the items' warnings) once in this process."""
    for line in (line for text in said if text for line in text.split("\n")):
        if line not in _WARNED:
            _WARNED.add(line)
            warn(line, DataWarning)


class _PlanBatches(torch.utils.data.Sampler):
    """Batches of plan rows for the current epoch (drawn in the main process).

    It keeps its own copy of the plan's parameters rather than a reference to its loader:
    a loader -> DataLoader -> sampler -> loader cycle would leave the worker processes to
    the cyclic garbage collector, whose shutdown of them stalls for seconds.
    """

    def __init__(
        self, plan: Callable[[int], dict[str, torch.Tensor]], batch_size: int, num_batches: int
    ) -> None:
        self.plan = plan
        self.batch_size = batch_size
        self.num_batches = num_batches
        self.epoch, self.start = 0, 0  # (StreamingLoader.set_epoch)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[tuple[int, int, int, bool, list[float] | None]]]:
        plan = self.plan(self.epoch)
        m = len(plan["order"])
        zeros = torch.zeros(m, dtype=torch.int64)
        rows = list(
            zip(
                plan["order"].tolist(),
                plan.get("dy", zeros).tolist(),
                plan.get("dx", zeros).tolist(),
                plan.get("flip", zeros.bool()).tolist(),
                plan["box"].tolist() if "box" in plan else [None] * m,
                strict=True,
            )
        )
        b = self.batch_size
        for start in range(self.start * b, self.num_batches * b, b):
            yield rows[start : start + b]


class StreamingLoader:
    """Batches of normalised images decoded from files by worker processes.

    Takes the arguments of ``DeviceLoader`` (see there), with a ``StreamingSet`` in place of
    the images and labels, plus ``num_workers`` (default: the CPU cores available, up to
    8, shared among ``world_size`` processes; 0 decodes in the main process).

    An unreadable file is dropped from its batch with a warning naming it; when more than
    ``MAX_UNREADABLE_FRACTION`` of an epoch's images fail, iteration stops with a
    ``DataError``.
    """

    def __init__(
        self,
        split: StreamingSet,
        *,
        batch_size: int,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        device: str | torch.device = "cpu",
        shuffle: bool = False,
        augment: Augment | None = None,
        drop_last: bool = False,
        seed: int = 0,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int | None = None,
    ) -> None:
        batch_size, seed, rank, world_size = loader_options(
            batch_size, mean, std, augment, seed, rank, world_size,
            shuffle=shuffle, drop_last=drop_last, channels_last=channels_last,
        )  # fmt: skip
        if num_workers is not None:
            num_workers = count_argument(num_workers, "num_workers", minimum=0)
        self.split = split
        self._failed_before = 0  # unreadable images in the last epoch that had any
        self.device = torch.device(device)
        self.augment = augment or Augment()
        self.height, self.width = split.image_size
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.channels_last = channels_last
        self.dtype = dtype
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        if num_workers is None:
            num_workers = max(1, min(8, usable_cpus() // max(world_size, 1)))
        self.num_workers = num_workers
        scale, shift = normalisation(mean, std, self.device, dtype)
        self.scale, self.shift = scale[:, None, None], shift[:, None, None]  # (3, 1, 1)
        plan = partial(
            epoch_plan,
            len(split),
            seed=seed,
            shuffle=shuffle,
            augment=self.augment,
            size=split.image_size,
            rank=rank,
            world_size=world_size,
        )
        self._plan = lambda epoch: plan(epoch=epoch)
        self._batches = _PlanBatches(self._plan, batch_size, len(self))
        if num_workers > 0:
            leave_if_starting_a_worker()
        self._loader = torch.utils.data.DataLoader(
            _Files(split, self.augment.crop_padding),
            batch_sampler=self._batches,
            num_workers=num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=num_workers > 0,
        )

    @property
    def num_samples(self) -> int:
        """Images this process sees per epoch (equal shards, as in ``DeviceLoader``)."""
        return len(self.split) // self.world_size

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Choose the epoch whose order and augmentation the next iteration yields, from its
        batch ``start`` on (a resumed run's place in its epoch: the images of the batches
        before it are not decoded)."""
        self.epoch = count_argument(epoch, "epoch", minimum=0)  # not an error when iterated
        self._batches.epoch = self.epoch
        self._batches.start = count_argument(start, "start", minimum=0)

    def __iter__(self) -> Iterator[Batch]:
        # The sampler draws the same plan inside the DataLoader; cutout needs its own copy here.
        plan = self._plan(self.epoch) if self.augment.cutout else None
        failed, start = 0, self._batches.start * self.batch_size
        for x, y, said in _answered(self._loader):  # (B, 3, H, W) uint8, (B,) int64, B texts
            _warn_once(said)
            unread = int((y < 0).sum())  # labels still on the host: no wait for the device
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            end = start + len(y)
            x = torch.addcmul(self.shift, x.to(self.dtype), self.scale)  # normalise
            if plan is not None:
                cy = plan["cy"][start:end].to(self.device)
                cx = plan["cx"][start:end].to(self.device)
                mask = cutout_mask(cy, cx, self.augment.cutout, self.height, self.width)
                x = x * mask.permute(0, 3, 1, 2).to(self.dtype)
            start = end
            if unread:
                failed += unread
                # Judged over the folder a part was taken from, but never past half the part.
                files = max(self.num_samples, self.split.scanned // self.world_size)
                half = self.num_samples / 2
                if failed > min(unreadable_allowed(files), half):
                    share = (
                        f"of {files:,} images could not be read so far this epoch; more than "
                        f"{MAX_UNREADABLE_FRACTION:.0%} unreadable"
                        if unreadable_allowed(files) <= half
                        else f"of the part's {self.num_samples:,} images could not be read so "
                        "far this epoch; more than half unreadable"
                    )
                    raise DataError(f"{self.split.source}: {failed} {share} {unreadable_fix()}")
                ok = y >= 0
                x, y = x[ok], y[ok]
                if not len(y):
                    continue
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y
        if failed and failed != self._failed_before:  # said again only when it changes
            self._failed_before = failed
            warn(
                f"{self.split.source}: skipped {failed} unreadable "
                f"{'image' if failed == 1 else 'images'} this epoch",
                DataWarning,
            )


def _answered(loader: torch.utils.data.DataLoader) -> Iterator:
    """The loader's batches; its workers stopping is a ``DataError`` saying why."""
    batches = iter(loader)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except RuntimeError as e:
            if "exited unexpectedly" not in str(e):
                raise
            raise workers_stopped("the data loader's worker processes") from None
        except ConnectionError:
            # A worker hands a batch's memory over a connection of its own, which it closes
            # as it dies: killed while the batch is taken, before PyTorch's SIGCHLD says so.
            raise workers_stopped("the data loader's worker processes") from None
        yield batch
