"""Figures, as PNG files via matplotlib's Agg: a run's curves and confusion matrix, and the
experiments' curves, errors against depth and gradient norms."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import MaxNLocator

from ..storage import atomic_write
from .fonts import any_script

# A loss that spans more than this factor is drawn on a log axis, so that one early spike
# does not flatten the rest of the curve.
LOG_LOSS_RANGE = 20.0


COUNTED_CLASSES = 30  # a confusion matrix shows counts in its cells up to this many classes
NAMED_CLASSES = 100  # and names its rows and columns up to this many


def save_figure(fig: plt.Figure, path: str | Path, dpi: int = 120) -> None:
    """Write ``fig`` to ``path`` (PNG unless the suffix names another format) atomically,
    then close it. A failed write raises ``WriteError`` and leaves no partial image."""
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    try:
        atomic_write(path, lambda f: fig.savefig(f, dpi=dpi, format=fmt))
    finally:
        plt.close(fig)


@any_script
def plot_curves(epoch_rows: Sequence[dict], path: str | Path, title: str = "") -> None:
    """Loss and accuracy per epoch, train and validation, side by side; validation at the
    epochs that were validated (every ``val_every``), joined by lines."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4.3))
    losses = []
    for split, style in (("train", "-"), ("val", "--")):
        rows = [r for r in epoch_rows if r.get(f"{split}_loss") is not None]
        if rows:
            epochs = [r["epoch"] for r in rows]
            loss = [r[f"{split}_loss"] for r in rows]
            ax_loss.plot(epochs, loss, style, marker=".", label=split)
            ax_acc.plot(
                epochs, _nan([r.get(f"{split}_acc") for r in rows]), style, marker=".", label=split
            )
            losses += [v for v in loss if v > 0 and v == v]
    if losses and max(losses) > LOG_LOSS_RANGE * min(losses):
        ax_loss.set_yscale("log")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy", ylim=(0, 1.01))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    # One legend for both panels, above them, where it hides no curve.
    handles, labels = ax_loss.get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False)
    fig.suptitle(_wrap(title), x=0.02, ha="left", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    save_figure(fig, path)


@any_script
def plot_confusion(
    confusion: torch.Tensor, class_names: Sequence[str], path: str | Path, title: str = ""
) -> None:
    """The confusion matrix (rows: true class, columns: predicted), its classes named up to
    ``NAMED_CLASSES`` and its cells counted up to ``COUNTED_CLASSES`` classes."""
    k = len(class_names)
    counted = k <= COUNTED_CLASSES
    size = max(4.0, 0.45 * k + 2) if counted else min(0.2 * k + 8, 30.0)
    named = k <= NAMED_CLASSES
    # The names' length (about 0.09 in. a character at the default size, 0.055 at 6 pt)
    # beyond a short name's, added to the figure beside and under the matrix, so that
    # long names do not take the matrix's room nor push its title off the figure.
    longest = max(map(len, class_names), default=0) if named else 0
    char = 0.09 if counted else 0.055
    label = min(char * max(longest - 6, 0), 30.0 - size)  # a picture that still opens
    # Upright where the longest name fits its column, else turned to read upwards.
    upright = named and k <= 10 and 0.09 * longest < 0.8 * (size - 2) / k
    fig, ax = plt.subplots(figsize=(size + label, size + (0 if upright else label)))
    ax.imshow(confusion.numpy(), cmap="Blues")
    if named:
        font = {} if counted else {"fontsize": 6}
        ax.set_xticks(range(k), class_names, rotation=0 if upright else 90, **font)
        ax.set_yticks(range(k), class_names, **font)
    if counted:
        top = confusion.max().item() or 1
        for i in range(k):
            for j in range(k):
                value = int(confusion[i, j])
                if value:
                    color = "white" if value > top / 2 else "black"
                    ax.text(j, i, str(value), ha="center", va="center", color=color, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true")
    ax.set_title(_wrap(title or "confusion matrix", width=int(size * 9)), fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def _wrap(title: str, width: int = 90) -> str:
    """A title broken into lines that fit the figure instead of running off its edges."""
    import textwrap

    return "\n".join(textwrap.wrap(title, width, break_on_hyphens=False)) if title else ""


def _nan(values: Sequence[float | None]) -> list[float]:
    return [float("nan") if v is None else v for v in values]


@dataclass
class ErrorCurve:
    """One model's error against the training iteration, in percent.

    With several seeds the values are the mean over seeds at each logged step, and
    ``train_low``/``train_high`` the lowest and highest seed. ``changed`` tells which of an
    experiment's two nets it is: the ResNet of a plain/ResNet pair, the pre-activation net
    of a ResNet/pre-activation pair.
    """

    depth: int
    changed: bool
    train_steps: list[int]
    train_error: list[float]
    test_steps: list[int]
    test_error: list[float]
    train_low: list[float] | None = None
    train_high: list[float] | None = None


def plot_degradation(
    curves: Sequence[ErrorCurve],
    path: str | Path,
    title: str = "",
    names: tuple[str, str] = ("plain", "ResNet"),
    panels: tuple[str, str] = ("plain nets", "ResNets"),
) -> None:
    """He et al.'s Fig. 6 layout: plain nets left, ResNets right, one colour per depth.

    Plain nets (the baseline, ``changed=False``) are dashed and ResNets solid; thin lines
    are training error, thick lines with dots test error. ``names`` name the two nets in
    the legends, ``panels`` title the two panels.
    """
    depths = sorted({c.depth for c in curves})
    colours = {d: plt.get_cmap("tab10")(i % 10) for i, d in enumerate(depths)}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    top = 0.0
    for ax, changed in zip(axes, (False, True), strict=True):
        style = "-" if changed else "--"
        for c in sorted((c for c in curves if c.changed == changed), key=lambda c: c.depth):
            name = f"{names[changed]}-{c.depth}"
            colour = colours[c.depth]
            ax.plot(c.train_steps, c.train_error, style, color=colour, lw=1, label=f"{name} train")
            if c.train_low is not None and c.train_high is not None:
                ax.fill_between(c.train_steps, c.train_low, c.train_high, color=colour, alpha=0.15)
            if c.test_steps:
                ax.plot(
                    c.test_steps,
                    c.test_error,
                    style,
                    color=colour,
                    lw=2.5,
                    marker=".",
                    label=f"{name} test",
                )
            # (a run that diverged before its first logged step has no points)
            top = max([top, *c.train_error, *c.test_error])
        ax.set(xlabel="iteration", title=panels[changed])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2)
    axes[0].set_ylabel("error (%)")
    axes[0].set_ylim(0, min(100.0, top * 1.05 + 1))
    fig.suptitle(title or "training (thin) and test (thick) error")
    fig.tight_layout()
    save_figure(fig, path)


def plot_error_vs_depth(
    rows: Sequence[dict],
    path: str | Path,
    title: str = "",
    names: tuple[str, str] = ("plain", "ResNet"),
) -> None:
    """Final training and test error against depth, plain dashed and ResNets solid.

    Each row has ``depth``, ``changed`` (False: the plain net, or the family's baseline)
    and, for ``train`` and ``test``, ``<split>_error`` (mean, percent) and
    ``<split>_error_std`` (spread over seeds, or None).
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for ax, split in zip(axes, ("train", "test"), strict=True):
        for changed, style, colour in ((False, "--o", "tab:red"), (True, "-o", "tab:blue")):
            points = sorted(
                (r for r in rows if r["changed"] == changed and r[f"{split}_error"] is not None),
                key=lambda r: r["depth"],
            )
            if not points:
                continue
            ax.errorbar(
                [r["depth"] for r in points],
                [r[f"{split}_error"] for r in points],
                yerr=[r[f"{split}_error_std"] or 0.0 for r in points],
                fmt=style,
                color=colour,
                capsize=3,
                label=names[changed],
            )
        ax.set(xlabel="depth (weighted layers)", ylabel=f"final {split} error (%)", title=split)
        ax.set_xticks(sorted({r["depth"] for r in rows}))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # none where every run diverged
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def plot_gradient_norms(
    models: Sequence[dict],
    path: str | Path,
    title: str = "",
    names: tuple[str, str] = ("plain", "ResNet"),
) -> None:
    """Gradient norm of each weight layer against its index, log scale, at each stage.

    Each model is a dict with ``depth``, ``changed`` (False: the plain net, or the family's
    baseline; dashed, named ``names[0]``) and ``stages``: ``{label: norms}``
    with one norm per weight layer in input-to-output order (e.g. ``"initialisation"``
    and ``"after 100 steps"``), one panel per label.
    """
    labels = list(dict.fromkeys(label for m in models for label in m["stages"]))
    depths = sorted({m["depth"] for m in models})
    colours = {d: plt.get_cmap("tab10")(i % 10) for i, d in enumerate(depths)}
    fig, axes = plt.subplots(1, len(labels), figsize=(6 * len(labels), 4.5), squeeze=False)
    for ax, label in zip(axes[0], labels, strict=True):
        for m in sorted(models, key=lambda m: (m["depth"], m["changed"])):
            norms = m["stages"].get(label)
            if norms is None:
                continue
            name = f"{names[m['changed']]}-{m['depth']}"
            ax.plot(
                range(1, len(norms) + 1),
                norms,
                "-" if m["changed"] else "--",
                color=colours[m["depth"]],
                label=name,
            )
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="weight layer (1 = first conv, last = fc)", ylabel="gradient norm")
        ax.set_title(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, ncol=2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
