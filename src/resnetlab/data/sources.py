"""Data set specs (``--data``, ``--val-data``) to splits, and splits to loaders.

A spec is ``digits``, ``cifar10`` or a path: a SIGNS-style ``.h5`` file, an image-folder
tree, a ``cifar-10-batches-bin`` folder, or a ``.tar.gz``/``.tgz``/``.tar``/``.zip`` of
either (extracted once into the cache folder). Each source offers some of the splits
``train``, ``val``, ``test``, or just ``all``, loaded only when asked for.
"""

from __future__ import annotations

import hashlib
import math
import os
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from ..errors import (
    DataError,
    DataWarning,
    ResnetlabError,
    SettingWarning,
    as_given,
    count_argument,
    name_as_given,
    near_name,
    option,
    options,
    path_argument,
    readable,
    shown,
    warn,
)
from ..models.files import case_matches, did_you_mean, near_classes, other_format
from ..options import DEFAULT_RESIZE, INPUT_SIZES, NAMED_SOURCES, RESIZE_MODES, is_input_size
from ..storage import is_special
from . import cifar10
from .archive import extracted_folder, extraction_folder, is_archive
from .cache import cache_root
from .decode import crop_fraction_argument, dead_link, decode_files, format_size
from .digits import load_digits_set
from .folders import (
    NAMED_CLASSES_NOTE,
    find_root,
    folder_splits,
    is_run_folder,
    looked_through_note,
    named_role,
    scan_classes,
    with_folder_notes,
)
from .imageset import ImageSet, check_labels, pixel_digests
from .loader import Augment, DeviceLoader, channel_stats, loader_options
from .signs import (
    SPLIT_ALIASES,
    arrays_as_h5,
    h5_prefixes,
    h5_splits,
    keras_model_as_data,
    sibling_test_file,
)
from .streaming import StreamingLoader, StreamingSet
from .tables import read_once

Split = ImageSet | StreamingSet
H5_SUFFIXES = (".h5", ".hdf5", ".he5")


def stored_spec(spec: str) -> str:
    """``spec`` as a run's config.json keeps it: a local file or folder by its absolute
    path, so that ``--resume`` and ``--config`` find it from any working folder; a named
    data set (and anything that does not exist here) as given."""
    path = os.path.expanduser(spec)
    if spec in NAMED_SOURCES or not os.path.exists(path):
        return spec
    return os.path.abspath(path)


@dataclass
class Source:
    """What one spec offers: lazily loaded splits, keyed ``train``/``val``/``test``/``all``."""

    spec: str
    kind: str  # "digits", "cifar10-binary", "signs-h5", "image-folder"
    splits: dict[str, Callable[[], Split]]
    notes: list[str] = field(default_factory=list)
    # Splits found next to the spec rather than in it (test_X.h5 beside train_X.h5): they
    # validate only when nothing else was asked for.
    borrowed: set[str] = field(default_factory=set)
    # What a source's only split ("all") is when it says so: "test" for test_signs.h5, whose
    # one split is test_set_*. Scoring all of such a file scores no training image.
    all_role: str | None = None

    def key(self, *preference: str, own: bool = False) -> str | None:
        """The first of ``preference`` this source has; ``own``: not one it borrowed from
        a file beside it (``train_signs.h5`` given as validation data is itself, not the
        ``test_signs.h5`` next to it)."""
        return next(
            (k for k in preference if k in self.splits and not (own and k in self.borrowed)),
            None,
        )


@dataclass
class Dataset:
    """The training split, the validation split (or ``None``) and the class names."""

    train: Split
    val: Split | None
    class_names: list[str]
    # How ``val`` was held out of the training images, where it was (``held_out_record``):
    # model files keep it, so that ``eval`` scores the same images.
    held_out: dict[str, Any] | None = None
    # The data whose test split validates, for want of a val split (``photos`` of
    # photos/{train,test}, the test_signs.h5 beside train_signs.h5): model files name it,
    # so that ``eval`` of that split says the best epoch was picked on it.
    validated_test: str | None = None


def open_source(
    spec: str | os.PathLike,
    *,
    image_size: int | None = None,
    download: bool = False,
    stream: bool | None = None,
    cache_dir: str | Path | None = None,
    resize: str = "squash",
    max_side: int | None = None,
    what: str = "the data",
    crop_fraction: float = 1.0,
) -> Source:
    """Find out what ``spec`` names and which splits it offers, without loading them.

    ``resize`` (``squash`` or ``crop``, see ``options.RESIZE_MODES``) is how images that are
    not square meet ``image_size``; digits and CIFAR-10 are square, so it changes nothing there.
    ``crop_fraction``: below 1, images are resized to ``image_size / crop_fraction`` and the
    centre kept (a model file's, for eval: ``decode.resize_plan``).
    ``max_side``: without ``image_size``, the longest side an image folder is loaded at
    (``folders.load_folder``). ``what``: how a message names ``spec``.
    """
    what = f"{what} (digits, cifar10, or a file or folder)"
    spec = os.fspath(path_argument(spec, what, "one (. for the current folder)"))
    root = cache_root(cache_dir)
    if image_size is not None:
        image_size = count_argument(image_size, "image_size", None, DataError)  # Python's name
        # --input-size's rule: a side the models take (not an allocation of terabytes)
        if not is_input_size(image_size):
            raise DataError(f"image_size must be {INPUT_SIZES}, got {image_size:,}")
    if resize not in RESIZE_MODES:
        raise DataError(f"unknown resize {resize!r}; choose {', '.join(RESIZE_MODES)}")
    crop_fraction = crop_fraction_argument(crop_fraction)
    if stream is not None and not isinstance(stream, bool):  # "false" would stream
        raise DataError(f"stream is True, False or None (as the size decides), got {shown(stream)}")
    if not isinstance(download, bool):
        raise DataError(f"download is True or False, got {shown(download)}")
    if spec == "digits":
        load = partial(load_digits_set, image_size, crop_fraction)
        source = Source(spec, "digits", {"all": load})
    elif spec == "cifar10":
        folder = _cifar10_folder(root, download)
        splits = cifar10.cifar10_splits(folder, image_size, crop_fraction)
        source = Source(spec, "cifar10-binary", splits)
    else:
        source = _open_path(
            spec,
            image_size=image_size,
            stream=stream,
            root=root,
            resize=resize,
            max_side=max_side,
            crop_fraction=crop_fraction,
        )
    if stream and source.kind != "image-folder":
        raise DataError(
            f"{spec}: streaming reads image files one by one, but this is {source.kind} data, "
            "which is always loaded into memory; do not ask for streaming"
        )
    return source


def warn_of_download_unused(download: object, *specs: object) -> None:
    """A warning where ``download`` is asked for data of which none can be downloaded (only
    ``cifar10`` can): ``--data photos/ --download`` reads the folder as it is."""
    named = [os.fspath(s) for s in specs if isinstance(s, str | os.PathLike)]
    if download is True and "cifar10" not in named:
        warn(
            f"{option('download', True)} fetches cifar10 only; {', '.join(named)} is read as it "
            "is (drop the flag)",
            SettingWarning,
        )


def missing_data(spec: str) -> str | None:
    """Why the data ``spec`` names is not there (a path that does not exist, a dead link), in
    one line with the fix, or None: what commands that open the data later (an experiment's
    first run) check before they start."""
    if spec in NAMED_SOURCES:
        return None
    path = Path(spec).expanduser()
    if why := dead_link(path):
        return f"{spec}: {why}; point the link at the data, or give the data's path"
    if not path.exists():
        hint = f" (named data sets: {', '.join(NAMED_SOURCES)})" if "/" not in spec else ""
        if near := near_name(path):
            hint = f"; did you mean {near}?"
        return f"{spec}: no such file or folder{hint}"
    return None


def run_folder_as_data(path: str | os.PathLike) -> str | None:
    """The line refusing ``path`` as data where it is a training run's folder (a config.json
    beside its checkpoint or model file), else None. Commands that write a figure beside the
    data ask first, so that the run folder is named as the mistake, not the figure's place."""
    path = Path(path).expanduser()
    if is_run_folder(path):
        return (
            f"{path} is a training run's folder, not a data set; give the images it trained on "
            "(its config.json names them), or start from its weights: "
            f"train {option('pretrained', path)}"
        )
    return None


def _open_path(
    spec: str,
    *,
    image_size: int | None,
    stream: bool | None,
    root: Path,
    resize: str,
    max_side: int | None = None,
    crop_fraction: float = 1.0,
) -> Source:
    if problem := missing_data(spec):
        raise DataError(problem)
    path = Path(spec).expanduser()
    if is_special(path):  # `--data <(cat x.h5)`: a pipe, which is neither file nor folder
        raise DataError(
            f"{spec} is a pipe or a device, not a data set: save the data to a file (an .h5 "
            "file, a .tar.gz/.zip of a folder) or a folder and give its path"
        )
    if path.is_file() and path.suffix.lower() in H5_SUFFIXES:
        splits, borrowed = h5_splits(path, image_size, resize, crop_fraction)
        roles = {SPLIT_ALIASES.get(p.lower()) for p in h5_prefixes(path)} if "all" in splits else ()
        role = next(iter(roles)) if len(roles) == 1 else None
        return Source(spec, "signs-h5", splits, borrowed=borrowed, all_role=role)
    # Its figures would read as images of no class folder, which misnames the mistake.
    if problem := run_folder_as_data(path):
        raise DataError(problem)
    notes = []
    given: Path | None = path  # the user's own folder; an archive's copy is not
    if path.is_file():
        if not is_archive(path):
            kind = other_format(path)  # a model, an export or a checkpoint given as data
            if kind == "a Keras model (.keras)":
                raise DataError(keras_model_as_data(path))
            if kind is None and path.suffix.lower() == ".safetensors":
                kind = f"a model file, which {option('pretrained')} takes"
            if kind is None and path.suffix.lower() in (".npy", ".npz"):  # np.save(X_train)
                raise DataError(
                    f"{path} holds NumPy arrays, not a data set; {arrays_as_h5('train')}"
                )
            raise DataError(
                f"{f'{path} is {kind}, not a data set' if kind else f'{path}: not a data set'}"
                ": expected an .h5 file, an image folder, a cifar-10-batches-bin folder, or a "
                ".tar.gz/.zip of a folder"
            )
        done = extraction_folder(path, root).is_dir()
        notes.append(
            f"{path.name} read from its copy extracted into the cache"
            if done
            else f"{path.name} extracted into the cache, once: later runs read that copy"
        )
        archive, path, given = path, extracted_folder(path, root), None
        name_as_given(path, archive)  # its files are named in messages as in the archive
    with read_once():  # a table find_root reads, a folder it lists: folder_splits does no more
        folder = find_root(path)
        for candidate in (folder, folder / cifar10.FOLDER_NAME):
            if cifar10.is_cifar10_folder(candidate):
                return Source(
                    spec,
                    "cifar10-binary",
                    cifar10.cifar10_splits(candidate, image_size, crop_fraction),
                    notes,
                )
        splits, more = folder_splits(
            folder,
            image_size,
            stream=stream,
            cache_root=root,
            resize=resize,
            max_side=max_side,
            crop_fraction=crop_fraction,
        )
    # A folder of class folders named test/ (photos_test/...) or val/ says what it is, as
    # test_signs.h5 does.
    role = named_role(folder.name) if list(splits) == ["all"] else None
    role = role if role in ("test", "val") else None
    if list(splits) == ["all"] and given is not None:
        more += looked_through_note(given, folder)
    return Source(spec, "image-folder", splits, notes + more, all_role=role)


def _cifar10_folder(root: Path, download: bool) -> Path:
    folder = root / cifar10.FOLDER_NAME
    if cifar10.is_cifar10_folder(folder):
        return folder
    archive = root / cifar10.ARCHIVE_NAME
    if not archive.is_file():
        if not download:
            raise DataError(
                f"cifar10: not found in {root}; add {option('download', True)} to fetch it "
                f"(163 MB), or give path/to/{cifar10.ARCHIVE_NAME} or a {cifar10.FOLDER_NAME} "
                "folder as the data"
            )
        archive = cifar10.download(root)
    found = find_root(extracted_folder(archive, root))
    for candidate in (found, found / cifar10.FOLDER_NAME):
        if cifar10.is_cifar10_folder(candidate):
            return candidate
    raise DataError(f"{archive}: holds no CIFAR-10 batch files (data_batch_*.bin, test_batch.bin)")


def check_val_split(fraction: object, name: str | None = None) -> None:
    """The one range check of a held-out fraction: a number strictly between 0 and 1.
    ``name``: what it is called (default: the ``val_split`` option)."""
    number = isinstance(fraction, (int, float)) and not isinstance(fraction, bool)
    if not number:  # '0.2' is no number, though it reads as one between 0 and 1
        raise DataError(
            f"{name or option('val_split')} must be a number (int or float) between 0 and 1, "
            f"got {fraction!r} ({type(fraction).__name__})"
        )
    if not 0 < fraction < 1:
        hint = ""
        if fraction == 0 and name is None:
            hint = (
                "; a run always validates on images it does not train on: to train on all "
                f"of these, give others to validate on with {option('val_data')}"
            )
        elif 2 <= fraction < 100:  # a percentage: --val-split 20 for a fifth
            share = f"{fraction / 100:g}"
            given = share if name else option("val_split", text=share)
            hint = f"; a fraction: for {fraction:g}% give {given}"
        raise DataError(
            f"{name or option('val_split')} must be between 0 and 1 (exclusive), "
            f"got {fraction!r}{hint}"
        )


def stratified_split(
    labels: torch.Tensor | Sequence[int], fraction: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of a seeded split that keeps each class's share, ``fraction`` of it held out.

    Each class with at least two images gives ``round(fraction * count)`` of them (at least
    one, never all) to the held-out part. The same labels, fraction and seed always give
    the same split.

    Args:
        labels: the class index of each image: a tensor, NumPy array or list.

    Returns:
        ``(train_indices, val_indices)``, each sorted.
    """
    try:  # a list or array too, as scikit-learn takes
        tensor = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError):  # text, ragged lists
        raise DataError(
            "stratified_split: labels must be class indices (a tensor, array or list of whole "
            f"numbers, one per image), got {shown(labels)}"
        ) from None
    if not tensor.numel():  # (an empty list is a float tensor)
        raise DataError("stratified_split: no labels given; give the class index of each image")
    check_labels(tensor, "stratified_split")
    labels = tensor
    check_val_split(fraction, "a held-out fraction")
    seed = count_argument(seed, "seed", minimum=0)  # not torch's manual_seed error
    generator = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        k = min(max(round(fraction * len(idx)), 1), len(idx) - 1) if len(idx) > 1 else 0
        val.append(idx[:k])
        train.append(idx[k:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values


def stratified_sample(split: Split, n: int, seed: int = 0) -> Split:
    """``n`` images of ``split`` (an ``ImageSet`` or ``StreamingSet``), each class keeping
    its share (``sample_counts``); the same ``n`` and seed always give the same images."""
    n = count_argument(n, "the sample's size n")  # -1 took all but one image of each class
    seed = count_argument(seed, "seed", minimum=0)
    if n >= len(split):
        return split
    take = sample_counts(torch.bincount(split.labels).tolist(), n)
    generator = torch.Generator().manual_seed(seed)
    kept = []
    for c in torch.unique(split.labels).tolist():  # shuffled as stratified_split does
        idx = torch.nonzero(split.labels == c).flatten()
        kept.append(idx[torch.randperm(len(idx), generator=generator)][: take[c]])
    return split.subset(torch.cat(kept).sort().values)


def subset_all_note(name: str, n: int, images: Split, what: str) -> str | None:
    """A note when a subset of ``n`` (the option ``name``) asks for more than the ``what``
    images there are (after those held out for validation): all of them are used."""
    if n <= len(images):
        return None
    return f"{option(name, n)} is more than the {len(images):,} {what} images: all of them are used"


def subset_note(name: str, n: int, before: Split, after: Split, what: str) -> str | None:
    """A note when a subset of ``n`` (asked for by the option ``name``: ``subset``) took no
    image of some classes that have images: fewer images than classes, so the fix is a
    larger subset, not more images (as ``class_balance_note`` would advise)."""
    had, has = before.class_counts(), after.class_counts()
    emptied = [after.class_names[c] for c, k in enumerate(had) if k and not has[c]]
    if not emptied:
        return None
    classes = sum(1 for k in had if k)
    if len(emptied) == 1:
        which = f"class {emptied[0]!r} without {what} images"
    else:
        shown = ", ".join(map(repr, emptied[:5])) + (", ..." if len(emptied) > 5 else "")
        which = f"{len(emptied)} classes without {what} images ({shown})"
    return (
        f"{option(name, n)} leaves {which}: it takes fewer images than the {classes} classes; "
        f"give {option(name, classes)} or more to keep one image of each class at least"
    )


def sample_counts(counts: list[int], n: int) -> list[int]:
    """How many images of each class a sample of ``n`` takes: each class its share of
    ``n``, rounded so that they add up to ``n`` (the largest remainders round up), and
    at least one of every class that has images while ``n`` allows."""
    total = sum(counts)
    shares = [count * n / total for count in counts]
    take = [int(share) for share in shares]
    if n >= sum(count > 0 for count in counts):
        take = [max(t, 1) if count else 0 for t, count in zip(take, counts, strict=True)]
    by_remainder = sorted(range(len(counts)), key=lambda c: (take[c] - shares[c], c))
    while sum(take) < n:  # the largest remainders round up
        c = next(c for c in by_remainder if take[c] < counts[c])
        take[c] += 1
        by_remainder.remove(c)
    while sum(take) > n:  # a class raised to one: the largest classes give one back
        take[max(range(len(take)), key=lambda c: (take[c], -c))] -= 1
    return take


def validating_test_note() -> str:
    """The note on a test split that validates, for want of a val split."""
    return (
        "the test images validate (there is no val split): the best epoch is picked on them, "
        f"so an eval on them afterwards flatters the model; add a val/ folder or give "
        f"{option('val_data')} to keep them unseen"
    )


def given_test_set_note(val_data: str | os.PathLike) -> str:
    """The note on validation data that is a test set."""
    return (
        f"{option('val_data', val_data)} is a test set: the best epoch is picked on it, so an "
        "eval on it afterwards flatters the model; validate on other images (a val split, or "
        f"{option('val_split')}) to keep it unseen"
    )


# The split of --val-data that validates: its own val, else test split, else all of it.
VAL_DATA_SPLITS = ("val", "test", "all", "train")
# The note on an eval of the images the model's run validated on (--val-data).
VALIDATED_SCORED_NOTE = (
    "these are the images the model's training run validated on (--val-data): its best "
    "epoch was picked on them, which flatters the score"
)
VALIDATED_SAMPLE_NOTE = (
    "the model's training run validated on {n:,} of these images (--val-data, --val-subset): "
    "its best epoch was picked on them, which flatters the score"
)
# The same, for a test split that validated for want of a val split.
VALIDATED_TEST_NOTE = (
    "these are the images the model's training run validated on (the test split, as the "
    "data has no val split): its best epoch was picked on {them}, which flatters the score"
)


def _test_split_only(data: str) -> str | None:
    """A warning for training on an HDF5 file that holds a test split alone (the course's
    test_signs.h5 given for train_signs.h5): nothing unseen is left to test the model on."""
    path = Path(data).expanduser()
    if path.suffix.lower() not in H5_SUFFIXES or not path.is_file():
        return None
    prefixes = h5_prefixes(path)
    if len(prefixes) != 1 or SPLIT_ALIASES.get(prefixes[0].lower()) != "test":
        return None
    train = (
        path.with_name(f"train{path.name[4:]}") if path.name.lower().startswith("test") else None
    )
    instead = (
        f"train on {train} and score the model on this file with eval"
        if train is not None and train.is_file()
        else "train on the training images and score the model on this file with eval"
    )
    return (
        f"{path} holds a test split only ({prefixes[0]}_set_x): a model trained on it has no "
        f"unseen images left to be tested on; {instead}"
    )


def load_dataset(
    data: str | os.PathLike,
    val_data: str | os.PathLike | None = None,
    *,
    val_split: float | None = None,
    image_size: int | None = None,
    seed: int = 0,
    download: bool = False,
    stream: bool | None = None,
    cache_dir: str | Path | None = None,
    default_val_split: float | None = None,
    resize: str = DEFAULT_RESIZE,
    warn_copies: bool = True,
) -> Dataset:
    """Load a training split and a validation split from data set specs.

    Args:
        data: ``digits``, ``cifar10`` or a path (see the module docstring).
        val_data: a spec for the validation data; its held-out split (val, else test) if
            it has one, else all of it.
        val_split: when there is no ``val_data`` and ``data`` has no held-out split of its
            own (a ``val/`` or ``test/`` folder, CIFAR-10's test batch, a ``test_`` HDF5
            split), hold out this fraction of the training images, stratified by class.
        image_size: resize every image to ``image_size`` x ``image_size`` when decoded;
            ``None`` keeps the native size (the most common one when sizes are mixed; a
            validation set of another size is resized to the training size).
        seed: seeds ``val_split``.
        default_val_split: the fraction to hold out when nothing above gives a
            validation set (no ``val_data``, no held-out split, no ``val_split``); unlike
            ``val_split`` it neither warns when unused nor stops a test file beside an
            HDF5 training file from being used.
        download: fetch ``cifar10`` into the cache folder if it is not there.
        stream: ``True`` streams image folders from disk, ``False`` decodes them into
            memory, ``None`` streams only folders whose decoded images would take more
            than ``STREAM_ABOVE_BYTES`` (4 GiB).
        cache_dir: decoded images, extracted archives and downloads go here (default
            ``$RESNETLAB_CACHE`` or ``~/.cache/resnetlab``).
        resize: how an image of another shape meets the size: ``squash`` to it, or
            ``crop`` (scale the shorter side to it, cut the centre).
        warn_copies: warn of validation images that are copies of training images
            (``copies_of_training_images``); ``train`` does after taking its subsets.

    Raises:
        DataError: a missing or unreadable source, or train and validation classes that
            differ.
    """
    if val_split is not None:
        check_val_split(val_split)
    warn_of_download_unused(download, data, val_data)
    opts = dict(
        image_size=image_size, download=download, stream=stream, cache_dir=cache_dir, resize=resize
    )
    source = open_source(data, **opts)
    train_key = source.key("train", "all")
    if train_key is None:
        raise _no_training_split(data, source)
    if train_key == "all" and (test_only := _test_split_only(data)):
        warn(test_only, DataWarning)
    train = _with_notes(source.splits[train_key](), source.notes)
    _check_two_classes(train)
    held_out = source.key("val", "test") if train_key == "train" else None
    if held_out in source.borrowed and val_split is not None:
        held_out = None  # asked to split the training file: do that, not the file beside it
    record = None  # how validation is held out of the training images, where it is
    validated_test = None
    if val_data is not None:
        val = _validation_data(val_data, train, data, opts)
        used = f"the validation data {val_data}"
    elif held_out is not None:
        val = source.splits[held_out]()
        if held_out in source.borrowed:
            val = _found_next_to(val, data)
        if held_out == "test":
            val = _with_notes(val, [validating_test_note()])
            borrowed = held_out in source.borrowed and sibling_test_file(Path(data).expanduser())
            validated_test = os.fspath(borrowed or data)
        used = f"the {held_out} split of {data}"
    elif val_split is not None or default_val_split is not None:
        fraction = val_split if val_split is not None else default_val_split
        record = held_out_record(train, fraction, seed)
        train, val = _hold_out(train, fraction, seed, given=val_split is not None)
        if not len(val):  # one image of every class: none to hold out (_hold_out says so)
            val, record = None, None
        used = None
    else:
        val, used = None, None
    if val_split is not None and used is not None:
        warn(_val_split_unused(val_split, used, val_data, source), DataWarning)
    if val is not None:
        val = _matched_to_training(val, train, image_size, resize, warn_copies, data=data)
    return Dataset(train, val, list(train.class_names), record, validated_test)


def _no_training_split(data: str | os.PathLike, source: Source) -> DataError:
    """The error for data with held-out splits alone, with what to give: a train/ folder
    beside a folder's, the file that has the split for an HDF5 file's."""
    has = ", ".join(source.splits)
    if source.kind == "image-folder":
        fix = (
            "but no train/ folder; add one beside them (a folder per class), or give the "
            f"folder of one of them as {option('data')} to train on it"
        )
    else:  # an HDF5 file of val_set_* and test_set_*
        fix = "but no train split (train_set_x, train_set_y); give the file that has it"
    return DataError(f"{data}: no training split: has {has} {fix}")


def _val_split_unused(
    val_split: float, used: str, val_data: str | os.PathLike | None, source: Source
) -> str:
    """The warning for a ``val_split`` given where the data's own validation images (or
    ``val_data``'s, named ``used``) validate, with the fix that fits the data."""
    if val_data is not None:
        instead = f"leave out {option('val_data')} to hold out training images instead"
    elif source.kind == "image-folder":
        instead = (
            f"to split the training images instead, point {option('data')} at the training "
            "folder alone"
        )
    else:  # a file's or CIFAR-10's own held-out split: no folder of training images
        instead = f"its own held-out split; leave out {option('val_split')}"
    return f"{option('val_split', val_split)} not used: validating on {used} ({instead})"


def held_out_record(split: Split, fraction: float, seed: int) -> dict[str, Any]:
    """What ``stratified_split`` needs to hold out the same images of ``split`` again, with
    the images per class and, for files, a digest of them (``_files_digest``: a folder
    that changed since gives another one). A streamed split counts the files it will find
    unreadable, which a decoded one leaves out: the counts then differ, and the split is
    not taken for the same."""
    per_class = torch.bincount(split.labels, minlength=len(split.class_names)).tolist()
    record: dict[str, Any] = {"fraction": fraction, "seed": seed, "per_class": per_class}
    if split.paths is not None and (files := _files_digest(split)) is not None:
        record["files"] = files
    return record


DIGEST_FILES = 8  # of a held-out record's files, read whole into its digest


def _files_digest(split: Split, *, composed: bool = True) -> str | None:
    """A digest of ``split``'s files in order, each by its class, the last two parts of its
    path (``cat/1.jpg``) and its size in bytes, and of the contents of a few of them (files
    of one size, BMPs say, hold other images under the same names), however the folder
    above them is spelled (a copy of the folder, or a link to it, gives the same); None
    where a file is gone. The names are taken in Unicode's composed form (NFC), as class
    names are (``readable``): a copy of a macOS folder made elsewhere gives the same;
    ``composed=False``: as they are spelled, as records made before that were."""
    assert split.paths is not None

    def spelled(name: str) -> str:
        return unicodedata.normalize("NFC", name) if composed else name

    try:
        rows = [
            f"{split.class_names[label]}\t{spelled(Path(path).parent.name)}/"
            f"{spelled(Path(path).name)}\t{os.path.getsize(path)}"
            for label, path in zip(split.labels.tolist(), split.paths, strict=True)
        ]
        text = "\n".join(rows).encode(errors="surrogateescape")  # names that are not UTF-8 too
        digest = hashlib.sha256(text)
        for path in split.paths[:: max(1, len(split.paths) // DIGEST_FILES)][:DIGEST_FILES]:
            digest.update(Path(path).read_bytes())
    except OSError:
        return None
    return digest.hexdigest()[:16]


def _held_out_again(split: Split, record: Any) -> Split | None:
    """The images of ``split`` that a run holding out ``record`` validated on, or None
    where the record does not fit it (another folder, or one whose images changed)."""
    try:
        fraction, seed = float(record["fraction"]), int(record["seed"])
        per_class = [int(n) for n in record["per_class"]]
        files = record.get("files")
    except (AttributeError, TypeError, KeyError, ValueError):
        return None
    if not 0 < fraction < 1:
        return None
    if torch.bincount(split.labels, minlength=len(split.class_names)).tolist() != per_class:
        return _streamed_held_out_again(split, record)
    if files is not None and (split.paths is None or not _same_files(split, files)):
        return None
    return split.subset(stratified_split(split.labels, fraction, seed)[1])


def _streamed_held_out_again(split: Split, record: Any) -> Split | None:
    """The images of a decoded ``split`` that a streamed run held out: it split every file
    of the folder, the ones it could not read among them (it reads a file only as it
    trains), so the split is taken again over the folder's files, less the skipped ones."""
    if not (isinstance(split, ImageSet) and split.skipped and split.paths is not None):
        return None
    with read_once():  # the scope around it where there is one: a table loaded is not read
        scan = scan_classes(Path(split.source))
    every = StreamingSet(
        scan.paths, torch.tensor(scan.labels, dtype=torch.int64), scan.class_names, (1, 1)
    )
    if every.class_names != split.class_names or len(every) <= len(split):
        return None
    held = _held_out_again(every, record)
    if held is None:
        return None
    kept = set(held.paths)
    return split.subset(torch.tensor([i for i, p in enumerate(split.paths) if p in kept]))


def _same_files(split: Split, files: str) -> bool:
    """Whether ``split`` holds the files of the digest ``files``: of their names composed,
    or as they are spelled (a record made before names were composed)."""
    return _files_digest(split) == files or _files_digest(split, composed=False) == files


def _matched_to_training(
    val: Split,
    train: Split,
    image_size: int | None,
    resize: str,
    warn_copies: bool = True,
    data: str | os.PathLike | None = None,
) -> Split:
    """``val`` made to score a model trained on ``train`` (of the spec ``data``): its classes
    in the training order, at the training size where no size was asked for; its copies of
    training images warned of."""
    val = _aligned_classes(train, val, data)
    if image_size is None and _size(val) != _size(train):
        note = f"resized from {format_size(_size(val))} to the training size"
        val = _resize(val, _size(train), resize)
        val.notes = [*val.notes, note]
    if warn_copies and (copies := copies_of_training_images(train, val, "validation")):
        warn(copies, DataWarning)
    return val


def load_eval_split(
    data: str | os.PathLike,
    *,
    image_size: int | None = None,
    download: bool = False,
    cache_dir: str | Path | None = None,
    resize: str = DEFAULT_RESIZE,
    trained_on: str | os.PathLike | None = None,
    held_out: dict[str, Any] | None = None,
    validated_on: dict[str, Any] | None = None,
    crop_fraction: float = 1.0,
) -> Split:
    """The split to evaluate a model on: the held-out split (test, else val), else the
    images its training run held out of it for validation, else all of it; its images
    brought to ``image_size`` as ``resize`` and ``crop_fraction`` say (``decode.resize_plan``).

    ``trained_on``: the data the model was trained on, where known; a set of another name
    scored whole is not said to hold the training images. ``held_out``: how the run held
    its validation images out of that data (``held_out_record``). ``validated_on``: the
    ``--val-data`` it validated on (``data``, a name, ``images``, and ``sample``, the
    number validated on where ``--val-subset`` took fewer), said when scored.
    """
    if trained_on is not None and not isinstance(trained_on, str | os.PathLike):
        raise DataError(
            "trained_on must be the data the model was trained on (a data set name or a "
            f"path) or None, got {shown(trained_on)}"
        )
    warn_of_download_unused(download, data)
    # One scope: the label table the split is loaded by is not read again where its folder
    # is scanned again for the images a streamed run held out (_streamed_held_out_again).
    with read_once():
        source = open_source(
            data,
            image_size=image_size,
            download=download,
            cache_dir=cache_dir,
            resize=resize,
            crop_fraction=crop_fraction,
        )
        key = source.key("test", "val", "all", "train")
        split = _with_notes(source.splits[key](), source.notes)
        if key in source.borrowed:
            split = _found_next_to(split, data)
        elif key == "test":  # photos/{train,test}: which of its images the score is of
            split = _with_notes(split, [f"scored: the test split of {data}"])
        elif key == "all" and source.all_role in ("test", "val"):
            split = _with_notes(split, [f"scored: the {source.all_role} split of {data}"])
        elif key in ("all", "train"):
            split = _whole_or_held_out(split, data, trained_on, held_out)
    if (
        isinstance(validated_on, dict)
        and validated_on.get("data") is not None
        and data_name(str(validated_on["data"]))
        in _names_of_split(data, source, key, test=validated_on.get("split") == "test")
        and validated_on.get("images") == len(split)
    ):
        sample = validated_on.get("sample")
        if validated_on.get("split") == "test":
            them = f"{sample:,} of them (--val-subset)" if sample else "them"
            note = VALIDATED_TEST_NOTE.format(them=them)
        else:
            note = VALIDATED_SAMPLE_NOTE.format(n=sample) if sample else VALIDATED_SCORED_NOTE
        split.notes = [*split.notes, note]
    elif key == "val":
        split = _with_notes(split, [VAL_SCORED_NOTE.format(data=data)])
    return split


def _names_of_split(data: str | os.PathLike, source: Source, key: str, *, test: bool) -> set[str]:
    """The names the split ``key`` of ``data`` goes by, for a model file's ``validated_on``
    to be matched: the data's, where it is the split that would validate (not a test/
    beside a val/); and for a test split that validated (``test``), the file it was found
    next to (test_signs.h5 for train_signs.h5) and the folder above a split folder given
    alone (photos for photos/test). The file found next to it is that file whichever way
    it validated: for the course's --val-data test_signs.h5 too."""
    names = set()
    if source.key(*VAL_DATA_SPLITS, own=True) == key:
        names.add(data_name(data))
    if key in source.borrowed and (beside := sibling_test_file(Path(data).expanduser())):
        names.add(data_name(beside))
    if not test:
        return names
    if key == "all" and source.all_role == "test" and Path(data).expanduser().is_dir():
        names.add(data_name(data, above=1))
    return names


def _whole_or_held_out(split: Split, data: str, trained_on: str | None, held_out: Any) -> Split:
    """A data set without a held-out split: the images a training run held out of it where
    it is that run's data (by name, through a link, or a copy found by its files' names,
    sizes and contents), else all of it; with a note saying which."""
    same_data = trained_on is not None and data_name(trained_on) in (
        data_name(data),
        data_name(os.path.realpath(data)),  # a link to the training folder is that folder
    )
    by_files = isinstance(held_out, dict) and held_out.get("files") is not None
    again = _held_out_again(split, held_out) if same_data or by_files else None
    if again is not None:
        sample = held_out.get("sample")  # --val-subset: validated on some of them
        them = f"{sample:,} of them (--val-subset)" if isinstance(sample, int) else "them"
        # digits has no folders: a test/ folder is no choice there
        instead = "" if os.fspath(data) in NAMED_SOURCES else HELD_OUT_TEST_FOLDER
        note = HELD_OUT_SCORED_NOTE.format(data=data, n=len(again), them=them, instead=instead)
        if not same_data:
            note += f"; {data} holds the same files as {trained_on}, which it was trained on"
        return _with_notes(again, [note])
    whole = _scored_whole_note(data, len(split), trained_on)
    if same_data and held_out is not None:
        whole += f"; {HELD_OUT_LOST}"
    return _with_notes(split, [whole])


# The notes on an eval of the images a training run held out of the same data set.
HELD_OUT_SCORED_NOTE = (
    "scored: the {n:,} images of {data} that the model's training run held out for "
    "validation (its best epoch was picked on {them}, which flatters the score a little"
    "{instead})"
)
HELD_OUT_TEST_FOLDER = "; a test/ folder is scored instead where there is one"
HELD_OUT_LOST = (
    "the images it held out for validation cannot be found again, as its images changed since "
    "(files added, removed or changed, or a file it streamed now skipped as unreadable)"
)

# The note on an eval of a data set's val split, for want of a test split.
VAL_SCORED_NOTE = (
    "scored: the val split of {data}, which has no test split (if the model validated on it, "
    "its best epoch was picked on these images, which flatters the score)"
)


def _scored_whole_note(data: str | os.PathLike, count: int, trained_on: str | None) -> str:
    """What scoring all of ``data`` means: a set named otherwise than the training data
    (and not a folder inside it) is likely held out; any other may hold training images."""
    if trained_on and data_name(trained_on) not in (data_name(data), data_name(data, above=1)):
        return (
            f"all {count:,} images of {data} are scored (the model was trained on "
            f"{trained_on}; any of its images in {data} flatter the score)"
        )
    return (
        f"{data} has no held-out split: all {count:,} images are scored, including any the "
        "model was trained on (a folder named test/ or *_test/ is taken for test images)"
    )


DATA_SUFFIXES = (".tar.gz", ".tgz", ".zip", ".h5", ".hdf5")


def data_name(spec: str | os.PathLike, *, above: int = 0, suffix: bool = False) -> str:
    """What a data spec is called in messages and file names: the folder or file it names,
    without the folders above it or a data file's suffix (``../data/photos/`` -> ``photos``,
    ``.`` -> the current folder's name, ``train_signs.h5`` -> ``train_signs``); with
    ``above``, the name of the folder that many levels above it; with ``suffix``, a data
    file's suffix kept (``photos.zip``), as file names made from it need (``data_tag``):
    a folder and an archive of it are two data sets. The name is ``readable`` text, which
    figure titles can draw in any locale."""
    text = os.fspath(spec)
    if text in NAMED_SOURCES:
        return text
    path = Path(os.path.abspath(os.path.expanduser(text)))
    name = readable((path.parents[above - 1] if above else path).name or text)
    ending = "" if suffix else next((s for s in DATA_SUFFIXES if name.lower().endswith(s)), "")
    return name[: len(name) - len(ending)] or name


def _hold_out(train: Split, fraction: float, seed: int, *, given: bool) -> tuple[Split, Split]:
    """``train`` split in two by ``stratified_split``, with notes where the split leaves a
    class unvalidated (one image) or ``given`` holds out more images than it trains on."""
    train_idx, val_idx = stratified_split(train.labels, fraction, seed)
    kept, val = train.subset(train_idx), train.subset(val_idx)
    if isinstance(val, ImageSet):  # the files that could not be read are listed once
        val = replace(val, skipped=[])
    notes = []
    alone = sorted(set(kept.labels.tolist()) - set(val.labels.tolist()))
    if alone:
        notes.append(
            f"{len(alone)} class{'es' if len(alone) != 1 else ''} with one image, trained on "
            f"and never validated: {_class_list(train, alone)}; add images to validate "
            f"{'them' if len(alone) != 1 else 'it'}"
        )
    if given and len(val_idx) > len(train_idx):
        notes.append(
            f"{option('val_split', fraction)} holds out more images than it trains on "
            f"({len(val_idx):,} validated, {len(train_idx):,} trained on); 0.1 to 0.2 is usual"
        )
    elif note := _small_classes_share_note(train.labels, len(val_idx), fraction):
        val.notes = [*val.notes, note]
    for note in notes:
        warn(note, DataWarning)
    return kept, val


def _small_classes_share_note(labels: torch.Tensor, held_out: int, fraction: float) -> str | None:
    """A note where ``stratified_split``'s one image at least of each class held out far
    more than ``fraction`` of the images (half of 40 classes of two images each, for 0.2):
    those are images the model does not train on, which the user asked to keep."""
    share = held_out / len(labels)
    if share <= 1.5 * fraction:
        return None
    counts = torch.bincount(labels)
    fewer = math.ceil(round(1 / fraction, 9))  # one image is more than their share below it
    small = int(((counts >= 2) & (counts < fewer)).sum())
    classes = int((counts > 0).sum())
    return (
        f"{option('val_split', fraction)} held out {held_out:,} of {len(labels):,} images "
        f"({share:.0%}, not {fraction:.0%}): each class gives one image at least, more than "
        f"its share in a class of fewer than {fewer} images ({small} of the {classes} "
        f"classes); to train on all of them, validate on other images ({option('val_data')})"
    )


def _class_list(split: Split, labels: list[int], shown: int = 5) -> str:
    """The names of classes ``labels`` of ``split``, the first ``shown`` of them."""
    more = f" and {len(labels) - shown} more" if len(labels) > shown else ""
    return ", ".join(split.class_names[c] for c in labels[:shown]) + more


def _validation_data(val_data: str, train: Split, data: str, opts: dict) -> Split:
    """The split ``--val-data`` names: its own val, else test split, else all of it (not a
    file it would borrow from beside it); the training images themselves are refused, and
    a folder of them (one of the training data's class folders)."""
    given = Path(val_data).expanduser()
    inside = os.path.isdir(train.source) and given.is_dir()
    if inside and Path(train.source).resolve() in given.resolve().parents:
        raise DataError(
            f"{option('val_data', val_data)} is inside the training data {train.source}: its "
            "images are trained on, and validation needs images the model does not train on; "
            f"give a folder apart, or leave {option('val_data')} out to hold some of the "
            f"training images out ({option('val_split')})"
        )
    source = open_source(val_data, **opts, what="the validation data")
    key = source.key(*VAL_DATA_SPLITS, own=True)
    val = source.splits[key]()
    if _same_images(train, val):
        raise DataError(
            f"{option('val_data', val_data)} holds the same images as the training data "
            f"{data}: validation needs images the model does not train on; give another set, "
            f"or leave {option('val_data')} out to hold some of the training images out "
            f"({option('val_split')})"
        )
    if key == "test" or (key == "all" and source.all_role == "test"):
        val = _with_notes(val, [given_test_set_note(val_data)])
    return _with_notes(val, source.notes)


def _same_images(train: Split, val: Split) -> bool:
    """Whether the two splits are the same images (the same files, or the same pixels)."""
    if len(train) != len(val) or not torch.equal(train.labels, val.labels):
        return False
    if isinstance(train, StreamingSet) and isinstance(val, StreamingSet):
        return [os.path.realpath(p) for p in train.paths] == [
            os.path.realpath(p) for p in val.paths
        ]
    if isinstance(train, ImageSet) and isinstance(val, ImageSet):
        return train.images.shape == val.images.shape and torch.equal(train.images, val.images)
    return False


def _found_next_to(split: Split, data: str | os.PathLike) -> Split:
    """A held-out split found beside ``data`` rather than in it, noted as such."""
    return _with_notes(split, [f"held out: {split.source}, found next to {data}"])


def _with_notes(split: Split, notes: list[str]) -> Split:
    """The split, its notes preceded by those about its whole source."""
    if notes:
        split.notes = [*notes, *split.notes]
    return split


def _size(split: Split) -> tuple[int, int]:
    return tuple(split.image_size)


def _resize(split: Split, size: tuple[int, int], resize: str) -> Split:
    if isinstance(split, ImageSet):
        return split.resized(size, resize=resize)
    return split.resized(size)  # decoded with the split's own resize mode


def copies_of_training_images(train: Split, held_out: Split, what: str) -> str | None:
    """A note when images of ``held_out`` are copies of training images (the same pixels):
    each is scored as unseen though the model trains on it, which flatters the accuracy.
    Compared where both splits are in memory at one size."""
    if not isinstance(train, ImageSet) or not isinstance(held_out, ImageSet):
        return None
    if train.image_size != held_out.image_size:
        return None
    seen = set(pixel_digests(train.images.numpy()))
    copies = [i for i, d in enumerate(pixel_digests(held_out.images.numpy())) if d in seen]
    if not copies:
        return None
    by_class = Counter(held_out.labels[copies].tolist()).most_common()
    shown = ", ".join(f"{held_out.class_names[c]} {n:,}" for c, n in by_class[:5])
    more = f" and {len(by_class) - 5} more classes" if len(by_class) > 5 else ""
    are = "is a copy of a training image" if len(copies) == 1 else "are copies of training images"
    return (
        f"{len(copies):,} of the {len(held_out):,} {what} images {are} (the same pixels; by "
        f"class: {shown}{more}): scored as unseen though the model trains on "
        f"{'it' if len(copies) == 1 else 'them'}, which flatters the {what} accuracy; remove "
        "the copies from one side"
    )


def class_balance_note(
    split: Split, what: str = "training image", weighed: bool = False
) -> str | None:
    """A note when classes have a tenth of the images of the largest or fewer, naming each
    (the smallest first): a misnamed file or a stray folder looks like that, and a real
    class that small is barely learnt. ``weighed``: training weighs the classes equally
    already (``--class-weights balanced``), which the note then does not advise."""
    counts = split.class_counts()
    most = max(counts)
    small = sorted((n, c) for c, n in enumerate(counts) if n * 10 <= most)
    if not small:
        return None
    large = split.class_names[counts.index(most)]
    if len(small) == 1:
        [(few, c)] = small
        return (
            f"class {split.class_names[c]!r} has {few:,} {what}{'s' if few != 1 else ''}, "
            f"{large!r} {most:,}: a class this small is barely learnt; add images of it"
            f"{_weighing(weighed)}, or check that its images are sorted or named right"
        )
    shown = ", ".join(f"{split.class_names[c]!r} {n:,}" for n, c in small[:10])
    more = f" and {len(small) - 10:,} more" if len(small) > 10 else ""
    return (
        f"{len(small)} classes have a tenth of the {what}s of {large!r} ({most:,}) or fewer: "
        f"{shown}{more}; a class this small is barely learnt; add images of them"
        f"{_weighing(weighed)}, or check that their images are sorted or named right"
    )


def _weighing(weighed: bool) -> str:
    if weighed:
        return ""
    return f", weigh the classes equally (train {option('class_weights', 'balanced')})"


def _check_two_classes(train: Split) -> None:
    """A classifier needs examples of two classes at least; with one it scores 100% on
    anything and learns nothing."""
    present = torch.unique(train.labels).tolist()
    if len(present) < 2:
        only = train.class_names[present[0]] if present else "none"
        fix = "add a folder of another class's images"
        if NAMED_CLASSES_NOTE in train.notes:  # a flat folder: IMG_0001.jpg, or cat_1.jpg
            fix = (
                f"the class is read from the file names, all {only}_...; put each class's "
                "images in a sub-folder named after the class, or name every file "
                "<class>_<anything> (3_IMG_5864.jpg)"
            )
        fix = with_folder_notes(train.notes, fix)
        raise DataError(
            f"{train.source}: every training image is of one class ({only}); a classifier "
            f"needs images of two classes at least: {fix}"
        )


def _aligned_classes(train: Split, val: Split, data: str | os.PathLike | None = None) -> Split:
    """``val`` labelled as ``train`` (of the spec ``data``) is: classes matched by name, case
    aside, in the training order; a validation set without some training classes is warned
    about, and one with a class training lacks is refused."""
    if list(train.class_names) == list(val.class_names):
        return val
    # The rule eval matches a data set's classes to a model's by: a name in another case
    # where that names one training class and no other validation class (Cat and cat both
    # in training, or both in validation, are matched only as they are named).
    renamed_as = case_matches(list(val.class_names), list(train.class_names))
    index = {name: i for i, name in enumerate(train.class_names)}
    extra = [c for c in val.class_names if c not in index and c not in renamed_as]
    if extra:
        validated = {renamed_as.get(c, c) for c in val.class_names}
        missing = [c for c in train.class_names if c not in validated]
        detail = "; ".join(
            f"only in {where}: {', '.join(names[:10])}"
            for where, names in (("training", missing), ("validation", extra))
            if names
        )
        # A validation folder spelled unlike its training class (Horses for horse), hinted
        # at as eval hints at one spelled unlike the model's.
        question = did_you_mean(near_classes(extra, missing), extra)
        if question:
            detail += f"; {question}"
        # The training folder alone where it is one (photos/train); else the spec, not the
        # split's name (train_signs.h5:train is no path) nor an archive's extracted copy
        own_folder = os.path.isdir(train.source) and as_given(train.source) == train.source
        spec = train.source if data is None or own_folder else data
        elsewhere = (
            f"validate on other images ({option('val_data')}, or "
            f"{options(option('data', spec), option('val_split', 0.2))})"
        )
        # (a class folder of the training data's own is refused before: _validation_data)
        # Classes are moved out of a folder; a file's (val.h5:val) are not
        move = ""
        if os.path.isdir(val.source):
            rename = "rename the folders as training names them, " if question else ""
            move = f"{rename}move the others out of {val.source}, or "
        fix = with_folder_notes(val.notes, f"{move}{elsewhere}")
        raise DataError(
            f"class lists differ: {train.source} has {len(train.class_names)} classes, "
            f"{val.source} has {len(val.class_names)} ({detail}); validation needs classes "
            f"the training data has: {fix}"
        )
    matched = [renamed_as.get(c, c) for c in val.class_names]
    to_train = torch.tensor([index[c] for c in matched])
    renamed = [f"{c} as {t}" for c, t in zip(val.class_names, matched, strict=True) if c != t]
    # Said where a name differs (by case); matching by name alone goes without saying.
    notes = (
        [f"classes matched to the training classes by name ({', '.join(renamed[:5])}: case aside)"]
        if renamed
        else []
    )
    absent = sorted(set(range(len(train.class_names))) - set(to_train.tolist()))
    if absent:
        warn(
            f"{val.source} has no images of {len(absent)} training "
            f"class{'es' if len(absent) != 1 else ''} ({_class_list(train, absent)}): trained "
            "on and never validated",
            DataWarning,
        )
    aligned = replace(val, labels=to_train[val.labels], class_names=list(train.class_names))
    return _with_notes(aligned, notes)


def make_loader(
    split: Split,
    *,
    train: bool,
    batch_size: int,
    device: str | torch.device,
    mean: tuple[float, float, float] | list[float],
    std: tuple[float, float, float] | list[float],
    augment: Augment | None = None,
    seed: int = 0,
    channels_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int | None = None,
) -> DeviceLoader | StreamingLoader:
    """A loader over ``split``: a ``DeviceLoader`` for an ``ImageSet``, else a ``StreamingLoader``.

    Both yield ``(x, y)`` on ``device``: x float (B, 3, H, W) normalised as
    ``(pixels / 255 - mean) / std``, y int64 (B,); both have ``len()`` and
    ``set_epoch(epoch)`` and draw the same seeded order and augmentation.

    Args:
        split: what ``load_dataset`` or ``load_eval_split`` returned.
        train: shuffle, augment, and drop the last incomplete batch (unless the split is
            smaller than one batch); otherwise the stored order, no augmentation, every image.
        batch_size: images per batch (per process when sharded).
        device: where batches are yielded (and, for an ``ImageSet``, where the data lives):
            a ``torch.device``, or ``cpu``, ``cuda``, ``cuda:N``, ``mps``, ``xpu``, ``auto``.
        mean, std: per-channel normalisation in [0, 1] units (see ``split_stats``).
        augment: training augmentation; ignored when ``train`` is false.
        seed: epoch ``e``'s order and augmentation depend only on ``(seed, e)``.
        channels_last: yield batches in channels-last memory format.
        rank, world_size: this process's shard for distributed training.
        num_workers: decoding processes for a ``StreamingSet`` (default: the available
            cores, at most 8, shared among ``world_size``); unused for an ``ImageSet``.
    """
    _check_split(split, "make_loader")
    batch_size, seed, rank, world_size = loader_options(
        batch_size, mean, std, augment, seed, rank, world_size,
        train=train, channels_last=channels_last,
    )  # fmt: skip
    if num_workers is not None:
        num_workers = count_argument(num_workers, "num_workers", minimum=0)
    if not isinstance(device, torch.device):
        from ..engine.distributed import resolve_device  # the engine builds on the data

        device = resolve_device(device)
    common = dict(
        batch_size=batch_size,
        mean=mean,
        std=std,
        device=device,
        shuffle=train,
        augment=augment if train else None,
        drop_last=train and len(split) // world_size >= batch_size,
        seed=seed,
        channels_last=channels_last,
        rank=rank,
        world_size=world_size,
    )
    if isinstance(split, ImageSet):
        return DeviceLoader(split.images, split.labels, **common)
    return StreamingLoader(split, num_workers=num_workers, **common)


def _check_split(split: object, function: str) -> Split:
    """``split`` when it is one split of a data set, else one line saying what is."""
    if not isinstance(split, ImageSet | StreamingSet):
        raise ResnetlabError(
            f"{function} takes one split of a data set (load_dataset(...).train, or .val), "
            f"not a {type(split).__name__}"
        )
    return split


def split_stats(
    split: Split, *, sample: int = 2000, seed: int = 0
) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation in [0, 1] units, for normalising.

    Computed over every image of an ``ImageSet``, and over a seeded sample of ``sample``
    images of a ``StreamingSet`` (decoding all of a large folder to get six numbers is not
    worth it).
    """
    sample = count_argument(sample, "sample")  # 0 'could read none of the 0 sampled'
    seed = count_argument(seed, "seed", minimum=0)
    if isinstance(_check_split(split, "split_stats"), ImageSet):
        return channel_stats(split.images)
    generator = torch.Generator().manual_seed(seed)
    picked = torch.randperm(len(split), generator=generator)[:sample].sort().values.tolist()
    images, *_ = decode_files(
        [split.paths[i] for i in picked],
        split.image_size,
        resize=split.resize,
        crop_fraction=split.crop_fraction,
    )
    if not len(images):
        raise DataError(f"{split.source}: none of the {len(picked)} sampled images could be read")
    return channel_stats(torch.from_numpy(images))
