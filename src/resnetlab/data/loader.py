"""The in-memory device loader: a whole small data set on the training device.

The uint8 images live on the device once. Each epoch draws, from a generator seeded by
``(seed, epoch)``, a permutation and every image's augmentation (crop offset, flip,
scale/aspect crop box, cutout position); a batch is then one gather that crops and flips
all of its images at once, one resampling of all their crop boxes, one fused
normalisation, and a mask for cutout. There is no per-image Python work, and an epoch is
reproducible from its number alone, which is what exact resume needs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ResnetlabError, count_argument, shown

Batch = tuple[torch.Tensor, torch.Tensor]  # (B, 3, H, W) float images, (B,) int64 labels


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation, applied per image on the device.

    Args:
        crop_padding: zero-pad each side by this many pixels and take a random crop of
            the original size (the paper's CIFAR recipe uses 4).
        flip: mirror half of the images left to right. Off by default: for hand signs
            and digits a mirror image can mean something else.
        cutout: side of a square set to the mean colour at a random place (0: off).
        scale_jitter: scale and aspect jitter (0: off): each image is cut to a random box
            of between this fraction of its area and all of it, with an aspect ratio between
            3:4 and 4:3 (``JITTER_RATIOS``), and resized back, as torchvision's
            ``RandomResizedCrop`` does, but bilinear on the whole batch at once.
    """

    crop_padding: int = 0
    flip: bool = False
    cutout: int = 0
    scale_jitter: float = 0.0

    def __post_init__(self) -> None:
        # Checked here, not by torch at the first batch ("random_ expects 'from' to be less
        # than 'to'"); TrainConfig checks the same settings of a run.
        count_argument(self.crop_padding, "crop_padding", minimum=0)
        count_argument(self.cutout, "cutout", minimum=0)
        if not isinstance(self.flip, bool):
            raise ResnetlabError(f"flip must be True or False, got {shown(self.flip)}")
        jitter = self.scale_jitter
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter <= 1:
            raise ResnetlabError(
                "scale_jitter is the smallest crop's share of the area, in (0, 1] (0: off), "
                f"got {shown(jitter)}"
            )

    @property
    def active(self) -> bool:
        return bool(self.crop_padding or self.flip or self.cutout or self.scale_jitter)


JITTER_RATIOS = (3 / 4, 4 / 3)  # width / height of a jittered box, as torchvision's default


def resized_crops(images: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """Cut a box out of each image and resize it to the image's size, bilinear.

    Args:
        images: uint8 (B, 3, H, W).
        box: (B, 4) float: each box's centre x, centre y, width and height, as fractions
            of the image's width and height (a box inside the image).

    Returns:
        uint8 (B, 3, H, W). Rounded to whole pixel values, so that a batch made on the
        device and images made one at a time by streaming workers are the same.
    """
    b, _, h, w = images.shape
    box = box.to(images.device, torch.float32)
    # The sampling grid in [-1, 1] units (align_corners=False), element by element rather
    # than by affine_grid's matrix product: the same numbers for a batch of one or of many.
    xs = (torch.arange(w, device=images.device, dtype=torch.float32) * 2 + 1) / w - 1  # (W,)
    ys = (torch.arange(h, device=images.device, dtype=torch.float32) * 2 + 1) / h - 1  # (H,)
    gx = (box[:, 0, None] * 2 - 1) + box[:, 2, None] * xs  # (B, W)
    gy = (box[:, 1, None] * 2 - 1) + box[:, 3, None] * ys  # (B, H)
    grid = torch.stack(
        (gx[:, None, :].expand(b, h, w), gy[:, :, None].expand(b, h, w)), dim=-1
    )  # (B, H, W, 2)
    out = F.grid_sample(
        images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return out.round_().clamp_(0, 255).to(torch.uint8)


def channel_stats(
    images: torch.Tensor, chunk: int | None = None
) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 (N, H, W, 3) images, in [0, 1] units."""
    if not (
        isinstance(images, torch.Tensor)
        and images.dtype == torch.uint8
        and images.ndim == 4
        and images.shape[-1] == 3
    ):  # floats in [0, 1] were read as pixels of 0 to 255: a mean of 0.002
        got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else None
        raise ResnetlabError(
            f"channel_stats takes uint8 (N, H, W, 3) images, got {got or type(images).__name__}"
        )
    if not len(images):  # NaN for every channel
        raise ResnetlabError("channel_stats needs at least one image, got none")
    if chunk is None:  # about 128 MB of float64 at a time, whatever the image size
        chunk = max(1, 2**24 // max(1, images[0].numel() if len(images) else 1))
    total = torch.zeros(3, dtype=torch.float64)
    total_sq = torch.zeros(3, dtype=torch.float64)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].to(torch.float64).flatten(0, 2) / 255  # (n, 3)
        total += x.sum(0).cpu()
        total_sq += (x * x).sum(0).cpu()
    count = images[..., 0].numel()
    mean = total / count
    std = (total_sq / count - mean**2).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()


def epoch_plan(
    n: int,
    *,
    seed: int,
    epoch: int,
    shuffle: bool,
    augment: Augment,
    size: tuple[int, int],
    rank: int = 0,
    world_size: int = 1,
) -> dict[str, torch.Tensor]:
    """One epoch's image order and per-image augmentation, for one shard, on the CPU.

    Everything is drawn from one generator seeded by ``(seed, epoch)``, so an epoch is
    reproducible from its number alone, whichever loader (in memory or streaming) serves it.
    Keys: ``order`` (m,) always; ``dy``, ``dx`` crop offsets into the padded image; ``flip``
    (m,) bool; ``cy``, ``cx`` cutout centres; ``box`` (m, 4) scale/aspect crop boxes (centre
    x, centre y, width, height as fractions, see ``resized_crops``).
    """
    height, width = size
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    order = order[rank::world_size][: n // world_size]
    plan = {"order": order}
    a, m = augment, len(order)
    if a.crop_padding:
        plan["dy"] = torch.randint(0, 2 * a.crop_padding + 1, (m,), generator=generator)
        plan["dx"] = torch.randint(0, 2 * a.crop_padding + 1, (m,), generator=generator)
    if a.flip:
        plan["flip"] = torch.rand(m, generator=generator) < 0.5
    if a.cutout:
        plan["cy"] = torch.randint(0, height, (m,), generator=generator)
        plan["cx"] = torch.randint(0, width, (m,), generator=generator)
    if a.scale_jitter:  # drawn last: plans without it stay what they were
        plan["box"] = _jitter_boxes(m, a.scale_jitter, generator)
    return plan


def _jitter_boxes(m: int, min_area: float, generator: torch.Generator) -> torch.Tensor:
    """(m, 4) random boxes: area in [min_area, 1], log-uniform aspect ratio in JITTER_RATIOS."""
    area = min_area + (1 - min_area) * torch.rand(m, generator=generator, dtype=torch.float64)
    low, high = (math.log(r) for r in JITTER_RATIOS)
    ratio = torch.exp(low + (high - low) * torch.rand(m, generator=generator, dtype=torch.float64))
    width = (area * ratio).sqrt().clamp(max=1)
    height = (area / ratio).sqrt().clamp(max=1)
    cx = width / 2 + (1 - width) * torch.rand(m, generator=generator, dtype=torch.float64)
    cy = height / 2 + (1 - height) * torch.rand(m, generator=generator, dtype=torch.float64)
    return torch.stack([cx, cy, width, height], dim=1).float()


def cutout_mask(
    cy: torch.Tensor, cx: torch.Tensor, side: int, height: int, width: int
) -> torch.Tensor:
    """(B, H, W, 1) bool mask, False on each image's square (clipped at the border), else True."""
    top, left = cy - side // 2, cx - side // 2  # (B,)
    ys = torch.arange(height, device=cy.device)[None, :] - top[:, None]  # (B, H)
    xs = torch.arange(width, device=cx.device)[None, :] - left[:, None]  # (B, W)
    inside = ((ys >= 0) & (ys < side))[:, :, None] & ((xs >= 0) & (xs < side))[:, None, :]
    return ~inside[..., None]


def normalisation(
    mean: Sequence[float], std: Sequence[float], device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` per channel with ``(x / 255 - mean) / std == x * scale + shift``:
    normalising uint8 pixels is then one fused multiply-add."""
    std_t = torch.tensor(std, dtype=torch.float32, device=device)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device)
    return (1 / (255 * std_t)).to(dtype), (-mean_t / std_t).to(dtype)


def loader_options(
    batch_size: object,
    mean: object,
    std: object,
    augment: object,
    seed: object,
    rank: object,
    world_size: object,
    **switches: object,
) -> tuple[int, int, int, int]:
    """The checks of a loader's options, ``make_loader``'s and the loaders' own, each a line
    instead of an error at the first batch (torch's size mismatch for two means, a
    ZeroDivisionError for world_size 0, 'false' taken as True for a switch). Returns
    ``(batch_size, seed, rank, world_size)`` as ints."""
    batch_size = count_argument(batch_size, "batch_size")
    seed = count_argument(seed, "seed", minimum=0)  # not torch's manual_seed error
    world_size = count_argument(world_size, "world_size")  # 0 divided the split by zero
    rank = count_argument(rank, "rank", minimum=0)
    if rank >= world_size:  # a shard past the last would take another's images
        raise ResnetlabError(f"rank must be below world_size ({world_size}), got {rank}")
    for key, value in switches.items():
        if not isinstance(value, bool):  # "false" would be taken as True
            raise ResnetlabError(f"{key} is True or False, got {shown(value)}")
    for key, value in (("mean", mean), ("std", std)):
        try:
            values = [float(v) for v in value]
        except (TypeError, ValueError):  # a single number, or text
            values = []
        if len(values) != 3 or not all(map(math.isfinite, values)):
            raise ResnetlabError(
                f"{key} must be three numbers, one per RGB channel, got {shown(value)}"
            )
        if key == "std" and min(values) <= 0:  # every image would be inf or NaN
            raise ResnetlabError(f"std must be above 0 for each channel, got {shown(value)}")
    if augment is not None and not isinstance(augment, Augment):
        unpack = "; unpack it: Augment(**augment)" if isinstance(augment, dict) else ""
        raise ResnetlabError(
            f"augment must be an Augment (Augment(crop_padding=4, flip=True)), got "
            f"{type(augment).__name__}{unpack}"
        )
    return batch_size, seed, rank, world_size


class DeviceLoader:
    """Batches of normalised images from uint8 (N, H, W, 3) images held on one device.

    Args:
        images: uint8 (N, H, W, 3), on any device; copied to ``device`` once.
        labels: int64 (N,).
        batch_size: images per batch (per process when sharded).
        mean, std: per-channel normalisation in [0, 1] units: ``(x / 255 - mean) / std``.
        device: where the data and the batches live.
        shuffle: a new seeded order every epoch (training); else the stored order.
        augment: per-image augmentation (training only).
        drop_last: skip the last incomplete batch (keeps every batch the same shape).
        seed: the epoch ``e`` order and augmentation depend only on ``(seed, e)``.
        channels_last: yield batches in channels-last memory format (no copy: the data
            is stored that way).
        dtype: floating type of the yielded images.
        rank, world_size: for distributed training each process takes every
            ``world_size``-th image of the shared epoch order, starting at ``rank``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
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
    ) -> None:
        for key, value in (("images", images), ("labels", labels)):
            if not isinstance(value, torch.Tensor):  # an array's dtype reads as the tensor's
                raise ResnetlabError(
                    f"DeviceLoader's {key} must be a tensor, got {type(value).__name__}"
                )
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(
                f"expected uint8 (N, H, W, 3) images, got {images.dtype} {tuple(images.shape)}"
            )
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        batch_size, seed, rank, world_size = loader_options(
            batch_size, mean, std, augment, seed, rank, world_size,
            shuffle=shuffle, drop_last=drop_last, channels_last=channels_last,
        )  # fmt: skip
        self.device = torch.device(device)
        self.augment = augment or Augment()
        pad = self.augment.crop_padding
        images = images.to(self.device)
        if pad:  # pad once, crop by indexing
            images = torch.nn.functional.pad(images, (0, 0, pad, pad, pad, pad))
        self.images = images  # (N, H + 2p, W + 2p, 3) uint8
        self.labels = labels.to(self.device, torch.int64)
        self.height = images.shape[1] - 2 * pad
        self.width = images.shape[2] - 2 * pad
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.channels_last = channels_last
        self.dtype = dtype
        self.rank = rank
        self.world_size = world_size
        self.epoch, self.start = 0, 0  # (set_epoch)
        self.scale, self.shift = normalisation(mean, std, self.device, dtype)

    @property
    def num_samples(self) -> int:
        """Images this process sees per epoch: equal shards, so no process waits for another."""
        return len(self.labels) // self.world_size

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Choose the epoch whose order and augmentation the next iteration yields, from its
        batch ``start`` on (a resumed run's place in its epoch: the batches before it are
        not made)."""
        self.epoch = count_argument(epoch, "epoch", minimum=0)  # not an error when iterated
        self.start = count_argument(start, "start", minimum=0)

    def _epoch_plan(self) -> dict[str, torch.Tensor]:
        """This epoch's order and per-image augmentation parameters, for this shard."""
        plan = epoch_plan(
            len(self.labels),
            seed=self.seed,
            epoch=self.epoch,
            shuffle=self.shuffle,
            augment=self.augment,
            size=(self.height, self.width),
            rank=self.rank,
            world_size=self.world_size,
        )
        return {k: v.to(self.device) for k, v in plan.items()}

    def __iter__(self) -> Iterator[Batch]:
        plan = self._epoch_plan()
        rows_base = torch.arange(self.height, device=self.device)
        cols_base = torch.arange(self.width, device=self.device)
        b = self.batch_size
        for start in range(self.start * b, len(self) * b, b):
            part = {k: v[start : start + b] for k, v in plan.items()}
            yield self._batch(part, rows_base, cols_base)

    def _batch(
        self, part: dict[str, torch.Tensor], rows: torch.Tensor, cols: torch.Tensor
    ) -> Batch:
        idx = part["order"]  # (B,)
        if "dy" in part:
            rows = part["dy"][:, None] + rows  # (B, H)
            cols = part["dx"][:, None] + cols  # (B, W)
        else:
            rows, cols = rows.expand(len(idx), -1), cols.expand(len(idx), -1)
        if "flip" in part:
            cols = torch.where(part["flip"][:, None], cols.flip(1), cols)
        # One gather crops and flips every image: (B, H, W, 3) uint8.
        x = self.images[idx[:, None, None], rows[:, :, None], cols[:, None, :]]
        if "box" in part:
            x = resized_crops(x.permute(0, 3, 1, 2), part["box"]).permute(0, 2, 3, 1)
        x = torch.addcmul(self.shift, x.to(self.dtype), self.scale)  # normalise
        if "cy" in part:
            x = x * self._cutout_mask(part["cy"], part["cx"]).to(self.dtype)
        x = x.permute(0, 3, 1, 2)  # (B, 3, H, W), channels-last in memory
        if not self.channels_last:
            x = x.contiguous()
        return x, self.labels[idx]

    def _cutout_mask(self, cy: torch.Tensor, cx: torch.Tensor) -> torch.Tensor:
        return cutout_mask(cy, cx, self.augment.cutout, self.height, self.width)
