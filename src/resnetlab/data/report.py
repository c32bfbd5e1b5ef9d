"""What a data set holds: splits, counts per class, image sizes, and a contact sheet."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..analysis.fonts import any_script
from ..errors import as_given
from ..models.files import case_matches
from ..options import DEFAULT_RESIZE, is_input_size
from ..storage import atomic_write, write_error
from .decode import READ_ERRORS, read_image
from .imageset import ImageSet
from .sources import (
    Source,
    Split,
    class_balance_note,
    copies_of_training_images,
    open_source,
    warn_of_download_unused,
)

# Without an image size, the longest side an image folder is loaded at: photos at their own
# size (a phone's 4032x3024: 36 MB an image decoded) would fill the memory to no purpose.
INSPECT_MAX_SIDE = 512


def describe(
    data: str,
    *,
    image_size: int | None = None,
    resize: str = DEFAULT_RESIZE,
    download: bool = False,
    cache_dir: str | Path | None = None,
) -> tuple[dict[str, Any], dict[str, Split]]:
    """Load every split of ``data`` and summarise it (at ``image_size``, reached as
    ``resize`` says when given; without it at the images' most common size, scaled down to
    ``INSPECT_MAX_SIDE`` where larger).

    Returns:
        A JSON-ready summary (``data``, ``format``, ``class_names``, ``splits``: per split
        ``images``, ``image_size`` [height, width], ``streamed``, ``class_counts``,
        ``notes``, ``skipped``: ``{"path", "reason"}`` of each unreadable file left out,
        empty for a streamed split, whose files are read only when iterated; and ``notes``
        about the whole source) and the loaded splits.
    """
    warn_of_download_unused(download, data)
    source = open_source(
        data,
        image_size=image_size,
        resize=resize,
        download=download,
        cache_dir=cache_dir,
        max_side=INSPECT_MAX_SIDE,
    )
    order = ["train", "val", "test", "all"]
    # A file whose one split says what it is (test_signs.h5: test_set_*) shows that name.
    shown = {"all": source.all_role} if source.all_role else {}
    splits = {shown.get(k, k): source.splits[k]() for k in sorted(source.splits, key=order.index)}
    first_name, first = next(iter(splits.items()))
    notes = list(source.notes)
    notes += [
        f"the {k} split is read from a file next to it: {splits[k].source}"
        for k in sorted(source.borrowed)
    ]
    for name, split in splits.items():
        if split.class_names != first.class_names:
            notes.append(_other_classes_note(name, split, first_name, first))
    notes += _copies_notes(
        splits,
        lambda side: open_source(
            data,
            image_size=side,
            resize=resize,
            download=download,
            cache_dir=cache_dir,
            max_side=INSPECT_MAX_SIDE,
        ),
    )
    summary = {
        "data": data,
        "format": source.kind,
        "class_names": list(first.class_names),
        "splits": {
            name: {
                "images": len(split),
                "image_size": list(split.image_size),
                "streamed": not isinstance(split, ImageSet),
                "class_counts": dict(zip(split.class_names, split.class_counts(), strict=True)),
                "notes": [*split.notes, *filter(None, [class_balance_note(split, "image")])],
                "skipped": [  # an archive's files named in it, as the warnings name them
                    {"path": as_given(path), "reason": reason}
                    for path, reason in (split.skipped if isinstance(split, ImageSet) else [])
                ],
            }
            for name, split in splits.items()
        },
        "notes": notes,
    }
    return summary, splits


def _copies_notes(splits: dict[str, Split], reopen: Callable[[int], Source]) -> list[str]:
    """Notes on the val and test images that are copies of training images, as ``train``
    warns of them. Without an image size each split loads at its own most common size; one
    at another size than the training split's is loaded again at that size where it is
    square (as a mixed folder of photos loads), else a note says it was not compared."""
    train = splits.get("train")
    notes: list[str] = []
    apart: list[str] = []
    for name in ("val", "test"):
        split = splits.get(name)
        if train is None or split is None:
            continue
        in_memory = isinstance(train, ImageSet) and isinstance(split, ImageSet)
        if in_memory and split.image_size != train.image_size:
            height, width = train.image_size
            if height != width or not is_input_size(height):  # a side load_dataset refuses
                apart.append(name)
                continue
            with warnings.catch_warnings():  # its unreadable files are named already
                warnings.simplefilter("ignore")
                split = reopen(height).splits[name]()
        what = "validation" if name == "val" else "test"
        notes += filter(None, [copies_of_training_images(train, split, what)])
    if apart:
        height, width = train.image_size
        notes.append(
            f"copies of training images are not looked for in the {' and '.join(apart)} "
            f"split{'s' if len(apart) > 1 else ''}, loaded at another size than the train "
            f"split's {width}x{height}; --input-size N loads every split at one size, and "
            "compares them"
        )
    return notes


def class_table(summary: dict[str, Any]) -> list[tuple[str, list[int]]]:
    """Each class of a ``describe`` summary with its count in each split: the first split's
    classes, then those only other splits have (a test folder's class that training lacks),
    sorted; a split's class is counted under the first split's that training matches it to
    (``case_matches``: the same name, or one in another case)."""
    first = list(summary["class_names"])
    splits = [s["class_counts"] for s in summary["splits"].values()]
    # Each split's class names as the first split's where they match one.
    renames = [case_matches(list(counts), first) for counts in splits]
    as_first = [{c: r.get(c, c) for c in counts} for counts, r in zip(splits, renames, strict=True)]
    others = sorted({c for names in as_first for c in names.values() if c not in first})

    def count(counts: dict[str, int], names: dict[str, str], name: str) -> int:
        return sum(n for c, n in counts.items() if names[c] == name)

    return [
        (name, [count(c, n, name) for c, n in zip(splits, as_first, strict=True)])
        for name in first + others
    ]


def _other_classes_note(name: str, split: Split, first_name: str, first: Split) -> str:
    """Which classes ``split`` has that ``first`` lacks, and the other way, matched by name
    as training matches a validation split's classes to its own (``case_matches``)."""
    renamed_as = case_matches(list(split.class_names), list(first.class_names))
    extra = [c for c in split.class_names if c not in first.class_names and c not in renamed_as]
    matched = {renamed_as.get(c, c) for c in split.class_names}
    missing = [c for c in first.class_names if c not in matched]
    said = []
    if missing:
        said.append(f"no images of {_listed(missing)} (classes of the {first_name} split)")
    if extra:
        why = ": a model trained on it cannot score them" if first_name == "train" else ""
        said.append(f"classes the {first_name} split lacks ({_listed(extra)}){why}")
    if not said:
        return f"the {name} split names its classes in another case than the {first_name} split"
    return f"the {name} split has {'; and '.join(said)}"


def _listed(names: list[str], shown: int = 10) -> str:
    more = f" and {len(names) - shown:,} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _sample_images(split: Split, indices: list[int]) -> list[np.ndarray]:
    if isinstance(split, ImageSet):
        return [split.images[i].numpy() for i in indices]
    out = []
    for i in indices:
        try:
            pixels = read_image(split.paths[i], split.image_size, split.resize, split.crop_fraction)
            out.append(pixels)
        except READ_ERRORS:
            out.append(np.zeros((*split.image_size, 3), dtype=np.uint8))
    return out


@any_script
def contact_sheet(
    split: Split,
    path: str | Path,
    *,
    per_class: int = 8,
    max_classes: int = 20,
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """Write a PNG grid of sample images: one row per class, ``per_class`` seeded picks each,
    class names in any script the installed fonts have.

    Returns:
        The path written.
    """
    # A bare Figure, not pyplot: no global backend switch, no figure left open.
    from matplotlib.figure import Figure

    path = Path(path)
    names = split.class_names[:max_classes]
    generator = torch.Generator().manual_seed(seed)
    fig = Figure(figsize=(per_class * 1.1 + 1.5, len(names) * 1.1 + 0.6))
    axes = fig.subplots(len(names), per_class, squeeze=False)
    for row, name in enumerate(names):
        members = torch.nonzero(split.labels == row).flatten()
        picks = members[torch.randperm(len(members), generator=generator)[:per_class]]
        images = _sample_images(split, picks.tolist())
        for col in range(per_class):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col < len(images):
                ax.imshow(images[col], interpolation="nearest")
        axes[row][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    shown = (
        f" (first {len(names)} of {len(split.class_names)} classes)"
        if len(names) < len(split.class_names)
        else ""
    )
    fig.suptitle((title or split.source) + shown, fontsize=10)
    fig.tight_layout()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(path.parent, e) from None
    fmt = path.suffix.lstrip(".").lower() or "png"
    atomic_write(path, lambda f: fig.savefig(f, dpi=100, format=fmt))
    return path
