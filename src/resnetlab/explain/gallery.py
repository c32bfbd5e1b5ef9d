"""The run folder's ``errors.png``: the validation images the model got wrong, with their CAMs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..storage import atomic_write
from .cam import class_activation_maps
from .render import render_overlay, tile

GALLERY_SIZE = 16  # the most confident mistakes are shown


@dataclass
class ErrorSource:
    """What the gallery needs from a run: the model and its validation batches.

    ``loader`` yields ``(x, y)`` normalised as ``(pixels / 255 - mean) / std``.
    """

    model: nn.Module
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]]
    mean: Sequence[float]
    std: Sequence[float]


def _pixels(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalised (B, 3, H, W) back to uint8 (B, H, W, 3)."""
    m = torch.tensor(mean, device=x.device)[:, None, None]
    s = torch.tensor(std, device=x.device)[:, None, None]
    return ((x.float() * s + m) * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)


@torch.no_grad()
def _most_confident_errors(source: ErrorSource, limit: int):
    """(images, true, predicted, probability) of up to ``limit`` misclassified images, the
    most confident first, and how many were misclassified in all."""
    was_training = source.model.training
    source.model.eval()
    kept = []  # (probability, x, y, predicted), at most `limit`
    count = 0
    try:
        for x, y in source.loader:
            probs = source.model(x).float().softmax(1)
            p, pred = probs.max(1)
            wrong = torch.nonzero(pred != y).flatten()
            count += len(wrong)
            kept += [(float(p[i]), x[i].clone(), int(y[i]), int(pred[i])) for i in wrong.tolist()]
            kept = sorted(kept, key=lambda k: -k[0])[:limit]
    finally:
        source.model.train(was_training)
    return kept, count


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
    kept, count = _most_confident_errors(source, GALLERY_SIZE)
    if not kept:
        path.unlink(missing_ok=True)
        return 0
    x = torch.stack([k[1] for k in kept])
    predicted = torch.tensor([k[3] for k in kept], device=x.device)
    cams = class_activation_maps(source.model, x, targets=predicted).maps.cpu()
    pixels = _pixels(x, source.mean, source.std).cpu()
    pictures = [
        render_overlay(
            pixels[i],
            cams[i],
            f"true {class_names[y]}\npredicted {class_names[pred]} {p:.0%}",
            side=128,
        )
        for i, (p, _, y, pred) in enumerate(kept)
    ]
    shown = f"the {len(kept)} most confident of " if len(kept) < count else ""
    heading = f"{shown}{count} misclassified validation images; Grad-CAM of the predicted class"
    sheet = tile(pictures, title=f"{title}: {heading}" if title else heading)
    atomic_write(path, lambda f: sheet.save(f, format="PNG"))
    return count
