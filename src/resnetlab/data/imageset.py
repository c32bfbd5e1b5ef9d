"""``ImageSet``: the decoded images of one split, held in memory as uint8."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError, ResnetlabError, shown
from .decode import as_size, crop_fraction_argument, resize_argument, resize_plan


def pixel_digests(images: Iterable[np.ndarray]) -> list[bytes]:
    """A 16-byte digest of each image's pixels: two images with one digest are copies."""
    return [hashlib.blake2b(image.tobytes(), digest_size=16).digest() for image in images]


def subset_positions(indices: object, n: int) -> torch.Tensor:
    """``indices`` of a split of ``n`` images (a tensor, array or list of positions, or a
    mask of ``n``) as int64 positions; one line for anything else, or a position past the
    end (a list's 'index out of range' or an AttributeError before)."""
    try:
        positions = torch.as_tensor(indices).flatten()  # as_tensor([]) is float
        positions = positions.long() if not len(positions) else positions
    except (TypeError, ValueError, RuntimeError):
        positions = None
    if positions is not None and positions.dtype == torch.bool and len(positions) == n:
        return positions.nonzero().flatten()  # a mask: the places it holds
    if positions is None or positions.is_floating_point() or positions.dtype == torch.bool:
        raise ResnetlabError(
            f"subset takes the positions of images (a tensor or list of whole numbers) or a "
            f"mask of all {n:,}, got {shown(indices)}"
        )
    if len(positions) and not -n <= int(positions.min()) <= int(positions.max()) < n:
        raise ResnetlabError(
            f"subset's positions must be from 0 to {n - 1:,} (the images there are), got "
            f"{int(positions.min()):,} to {int(positions.max()):,}"
        )
    return positions


def _tensor_fix(value: object) -> str:
    return "torch.from_numpy" if isinstance(value, np.ndarray) else "torch.tensor"


def check_labels(labels: object, what: str, classes: int | None = None) -> None:
    """The one check of a split's labels (``ImageSet``'s, ``StreamingSet``'s): a tensor of
    class indices, int64 (N,), each from 0 to ``classes`` - 1 where ``classes`` is given;
    else a ``DataError`` naming ``what``, the split, and the fix."""
    if not isinstance(labels, torch.Tensor):
        raise DataError(
            f"{what}: labels must be a tensor, int64 (N,), got {type(labels).__name__}; "
            f"convert it with {_tensor_fix(labels)}"
        )
    if labels.ndim != 1 or labels.is_floating_point() or labels.is_complex():
        raise DataError(
            f"{what}: labels must be class indices, int64 (N,), got "
            f"{labels.dtype} {tuple(labels.shape)}"
        )
    if classes is not None and len(labels):
        low, high = int(labels.min()), int(labels.max())
        if not 0 <= low <= high < classes:
            # training would stop at its first batch with cross entropy's 'Target is out of bounds'
            raise DataError(
                f"{what}: labels must be from 0 to {classes - 1}, one per class name, got "
                f"{low} to {high}"
            )


@dataclass
class ImageSet:
    """Images, labels and class names of one split.

    Attributes:
        images: uint8 (N, H, W, 3), RGB.
        labels: int64 (N,), indices into ``class_names``.
        class_names: one name per class.
        source: where the images came from, for messages.
        notes: what loading adjusted or skipped.
        skipped: ``(path, reason)`` of each file that could not be read and was left out.
        paths: the file each image was read from, where the images came from files.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    source: str = ""
    notes: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    paths: list[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor):  # an array's dtype reads as the tensor's
            raise ValueError(
                f"{self.source or 'ImageSet'}: images must be a tensor, uint8 (N, H, W, 3), got "
                f"{type(self.images).__name__}; convert it with {_tensor_fix(self.images)}"
            )
        check_labels(self.labels, self.source or "ImageSet", len(self.class_names))
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError(
                f"{self.source or 'images'}: expected uint8 (N, H, W, 3), "
                f"got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if len(self.images) != len(self.labels):
            raise ValueError(
                f"{self.source}: {len(self.images)} images but {len(self.labels)} labels"
            )
        if self.paths is not None and len(self.paths) != len(self.labels):
            raise ValueError(
                f"{self.source}: {len(self.labels)} images but {len(self.paths)} paths"
            )

    def __repr__(self) -> str:  # not the pixels
        h, w = self.image_size
        return (
            f"ImageSet({len(self):,} images of {w}x{h}, {len(self.class_names)} classes, "
            f"source={self.source!r})"
        )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width)."""
        return int(self.images.shape[1]), int(self.images.shape[2])

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=len(self.class_names)).tolist()

    def subset(self, indices: torch.Tensor) -> ImageSet:
        indices = subset_positions(indices, len(self))
        paths = None if self.paths is None else [self.paths[i] for i in indices.tolist()]
        return dataclasses.replace(
            self, images=self.images[indices], labels=self.labels[indices], paths=paths
        )

    def resized(
        self,
        size: int | tuple[int, int],
        chunk: int = 1024,
        resize: str = "squash",
        crop_fraction: float = 1.0,
    ) -> ImageSet:
        """The images resized to ``size`` x ``size`` or ``(height, width)``, bilinear:
        squashed, or with ``resize="crop"`` scaled to cover it and centre-cropped; with a
        ``crop_fraction`` below 1, to that much more first, then the centre
        (``decode.resize_plan``)."""
        height, width = as_size(size)  # not torch's error for a side of 0
        resize_argument(resize)
        crop_fraction = crop_fraction_argument(crop_fraction)
        if self.image_size == (height, width) and crop_fraction == 1:
            return self
        scaled, (top, left) = resize_plan(self.image_size, (height, width), resize, crop_fraction)
        out = torch.empty(
            (len(self), height, width, 3), dtype=torch.uint8, device=self.images.device
        )
        for start in range(0, len(self), chunk):
            x = self.images[start : start + chunk].permute(0, 3, 1, 2).float()
            x = F.interpolate(x, size=scaled, mode="bilinear", antialias=True, align_corners=False)
            x = x[:, :, top : top + height, left : left + width]
            out[start : start + chunk] = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        return dataclasses.replace(self, images=out)
