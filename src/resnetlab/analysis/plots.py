"""Figures of a run: training curves and the confusion matrix (PNG, via matplotlib's Agg)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt
import torch


def plot_curves(epoch_rows: Sequence[dict], path: str | Path, title: str = "") -> None:
    """Loss and accuracy per epoch, train and validation, side by side."""
    epochs = [r["epoch"] for r in epoch_rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for split, style in (("train", "-"), ("val", "--")):
        loss = [r.get(f"{split}_loss") for r in epoch_rows]
        acc = [r.get(f"{split}_acc") for r in epoch_rows]
        if any(v is not None for v in loss):
            ax_loss.plot(epochs, _nan(loss), style, marker=".", label=split)
            ax_acc.plot(epochs, _nan(acc), style, marker=".", label=split)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.01))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_confusion(
    confusion: torch.Tensor, class_names: Sequence[str], path: str | Path, title: str = ""
) -> None:
    """The confusion matrix with counts in the cells (rows: true class, columns: predicted)."""
    k = len(class_names)
    size = max(4.0, 0.45 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(confusion.numpy(), cmap="Blues")
    if k <= 30:
        ax.set_xticks(range(k), class_names, rotation=90 if k > 10 else 0)
        ax.set_yticks(range(k), class_names)
        top = confusion.max().item() or 1
        for i in range(k):
            for j in range(k):
                value = int(confusion[i, j])
                if value:
                    color = "white" if value > top / 2 else "black"
                    ax.text(j, i, str(value), ha="center", va="center", color=color, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _nan(values: Sequence[float | None]) -> list[float]:
    return [float("nan") if v is None else v for v in values]
