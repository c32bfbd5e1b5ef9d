"""The run folder's ``errors.png``: the validation images the model got wrong, with their CAMs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from ..analysis.fonts import any_script
from ..errors import readable
from ..storage import atomic_write
from .cam import class_activation_maps
from .render import render_overlay, shortened, tile

GALLERY_SIZE = 16  # the most confident mistakes are shown


class Mistakes:
    """The most confident misclassified images seen so far, up to ``limit``, kept on the
    device they come in on: adding a batch does not wait for it (one host-device sync,
    when they are read). A validation pass fills one as it goes, so that the gallery of a
    finished run needs no second pass over the validation images."""

    def __init__(self, limit: int = GALLERY_SIZE) -> None:
        self.limit = limit
        self.count: torch.Tensor | int = 0  # misclassified images in all
        self.seen = 0  # images added: the next one's place among them
        # (probability of the predicted class, image, true class, predicted class, place)
        self.kept: tuple[torch.Tensor, ...] | None = None

    @torch.no_grad()
    def add(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> None:
        p, predicted = logits.float().softmax(1).max(1)
        wrong = predicted != y
        self.count = self.count + wrong.sum()
        score = torch.where(wrong, p, -1.0)  # a right answer never ranks above a mistake
        place = torch.arange(self.seen, self.seen + len(y), device=y.device)
        self.seen += len(y)
        # The batch's own first: copies of ``limit`` images at most, never of the batch.
        kept = _most(score, self.limit, score, x, y, predicted, place)
        if self.kept is not None:
            both = [torch.cat(pair) for pair in zip(self.kept, kept, strict=True)]
            kept = _most(both[0], self.limit, *both)  # earlier images first among equals
        self.kept = kept

    def most_confident(self) -> tuple[list[Mistake], int]:
        """The kept mistakes, the most confident first, and how many images were
        misclassified in all."""
        if self.kept is None:
            return [], 0
        score, x, y, predicted, place = self.kept
        order = score.argsort(descending=True, stable=True)
        rows = [
            Mistake(p, x[i], t, q, n)
            for i, p, t, q, n in zip(
                order.tolist(),
                score[order].tolist(),
                y[order].tolist(),
                predicted[order].tolist(),
                place[order].tolist(),
                strict=True,
            )
            if p >= 0
        ]
        return rows, int(self.count)


class Mistake(NamedTuple):
    """One misclassified image: ``place`` is its position in the order the images came."""

    probability: float  # of the predicted class
    image: torch.Tensor
    true: int
    predicted: int
    place: int


def _most(score: torch.Tensor, limit: int, *rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The ``limit`` rows of highest ``score``, the highest first; ties keep their order (a
    stable sort, where ``topk`` may pick either of two equal scores), so which of several
    saturated mistakes is shown does not depend on the machine."""
    top = score.argsort(descending=True, stable=True)[:limit]
    return tuple(r[top] for r in rows)


@dataclass
class ErrorSource:
    """What the gallery needs from a run: the model and its validation batches.

    ``loader`` yields ``(x, y)`` normalised as ``(pixels / 255 - mean) / std``. ``seen``:
    the mistakes ``model`` made in a pass over ``loader`` already, when there was one.
    ``paths``: the file of each image, in the loader's order, where they came from files.
    ``epoch``: the training epoch ``model`` is of, for the caption.
    """

    model: nn.Module
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]]
    mean: Sequence[float]
    std: Sequence[float]
    seen: Mistakes | None = None
    paths: Sequence[str] | None = None
    epoch: int | None = None


def _pixels(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalised (B, 3, H, W) back to uint8 (B, H, W, 3)."""
    m = torch.tensor(mean, device=x.device)[:, None, None]
    s = torch.tensor(std, device=x.device)[:, None, None]
    return ((x.float() * s + m) * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


@torch.no_grad()
def _mistakes(source: ErrorSource, limit: int) -> Mistakes:
    """``source.seen``, else the mistakes of a pass of the model over the loader."""
    if source.seen is not None:
        return source.seen
    mistakes = Mistakes(limit)
    was_training = source.model.training
    source.model.eval()
    try:
        for x, y in source.loader:
            mistakes.add(x, y, source.model(x))
    finally:
        source.model.train(was_training)
    return mistakes


@any_script
def write_error_gallery(
    source: ErrorSource, class_names: Sequence[str], path: str | Path, *, title: str = ""
) -> int:
    """Write ``path`` (errors.png): the most confident validation mistakes, each with its
    Grad-CAM for the predicted class (what the model looked at when it got it wrong).

    Returns:
        How many validation images were misclassified; with none, nothing is written and
        an ``errors.png`` left from before is removed.
    """
    path = Path(path)
    kept, count = _mistakes(source, GALLERY_SIZE).most_confident()
    if not kept:
        path.unlink(missing_ok=True)
        return 0
    x = torch.stack([k.image for k in kept])
    predicted = torch.tensor([k.predicted for k in kept], device=x.device)
    cams = class_activation_maps(source.model, x, targets=predicted).maps.cpu()
    pixels = _pixels(x, source.mean, source.std).cpu()
    pictures = [
        render_overlay(
            pixels[i],
            cams[i],
            f"true {class_names[k.true]}\npredicted {class_names[k.predicted]} "
            f"{k.probability:.0%}{_file_line(source.paths, k.place, class_names[k.true])}",
            side=128,
        )
        for i, k in enumerate(kept)
    ]
    shown = f"the {len(kept)} most confident of " if len(kept) < count else ""
    heading = f"{shown}{count} misclassified validation images; Grad-CAM of the predicted class"
    sheet = tile(pictures, title=f"{title}: {heading}" if title else heading)
    atomic_write(path, lambda f: sheet.save(f, format="PNG"))
    return count


def _file_line(paths: Sequence[str] | None, place: int, class_name: str | None = None) -> str:
    """The caption's line naming the image's file (its class folder and name, and the
    folders between where it sits deeper, ``cat/2019/1.jpg``), so that a mislabelled photo
    can be found; nothing where the images came from no files."""
    if paths is None or not 0 <= place < len(paths):
        return ""
    path = Path(paths[place])
    name = f"{path.parent.name}/{path.name}" if path.parent.name else path.name
    folders = path.parent.parts
    for i in range(len(folders) - 1, -1, -1):  # the nearest folder named as its class
        if readable(folders[i]) == class_name:
            name = "/".join(path.parts[i:])
            break
    return "\n" + shortened(readable(name))  # bytes that are not UTF-8 shown, as class names
