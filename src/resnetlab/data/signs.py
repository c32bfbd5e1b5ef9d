"""SIGNS-style HDF5 files: ``<split>_set_x``, ``<split>_set_y`` and ``list_classes``.

The deeplearning.ai course ships its data sets this way: ``train_signs.h5`` holds
``train_set_x`` uint8 (N, 64, 64, 3), ``train_set_y`` (N,) and ``list_classes`` (6,);
``test_signs.h5`` the same with ``test_``. The splits in a file are found from its keys,
never assumed from its name. Labels are indices into ``list_classes``, or one-hot rows.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, on_command_line, option, shell_word
from ..models.files import empty_file_problem
from ..options import MAX_CLASSES
from ..storage import permission_problem
from .decode import format_size
from .imageset import ImageSet

_X_KEY = re.compile(r"^(?P<prefix>.+)_set_x$")
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}


def arrays_as_h5(split: str) -> str:
    """How arrays of images (the course's ``X_train, Y_train``) become a data set."""
    return (
        f"write the arrays to an HDF5 file as the course's: {split}_set_x uint8 (N, H, W, 3), "
        f"{split}_set_y (N,) class indices, and give its path"
    )


def _open(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as e:
        if problem := permission_problem(path):  # from another account: not to replace
            raise DataError(problem) from e
        if os.path.isfile(path) and os.path.getsize(path) == 0:  # (a broken link: no size)
            raise DataError(empty_file_problem(path)) from e
        if "truncated file" in str(e):  # h5py's words for a file that ends too soon
            raise DataError(
                f"{path} is cut short, as a copy or download that stopped leaves it ({e}); "
                "copy it again"
            ) from e
        raise DataError(
            f"{path}: not a readable HDF5 file ({e}); give the data set's own .h5 file"
        ) from e


def _written_by_keras(f) -> bool:
    """model.save('x.h5'), tf.keras 2's save_weights('x.h5'), Keras 3's 'x.weights.h5'."""
    return "model_weights" in f or "layer_names" in f.attrs or {"layers", "vars"} <= {*f}


def is_keras_h5(path: Path) -> bool:
    """Whether an HDF5 file holds a Keras model or its weights, not images."""
    try:
        with _open(path) as f:
            return _written_by_keras(f)
    except DataError:  # not a readable HDF5 file
        return False


def h5_prefixes(path: Path) -> list[str]:
    """The ``<prefix>`` of every ``<prefix>_set_x`` / ``<prefix>_set_y`` pair in the file."""
    with _open(path) as f:
        keys = sorted(f.keys())
        keras = _written_by_keras(f)
        nested = [] if keras else _nested_datasets(f)
    prefixes = [
        m["prefix"] for k in keys if (m := _X_KEY.match(k)) and f"{m['prefix']}_set_y" in keys
    ]
    if not prefixes and keras:
        raise DataError(keras_model_as_data(path))
    if not prefixes:
        has = ", ".join(keys) if keys else "no datasets"
        inside = [name for name in nested if re.search(r"_set_[xy]$", name)]
        if inside:  # the pairs in a group (data/train_set_x): where they are, and the fix
            shown = ", ".join(inside[:3]) + (", ..." if len(inside) > 3 else "")
            has = (
                f"{shown} inside a group; move them to the file's top level (h5py: "
                f"f.move('{inside[0]}', '{inside[0].rsplit('/', 1)[-1]}'))"
            )
        elif renames := _course_names(keys):  # X_train, y_train...: the moves that fix it
            # Double quotes inside, the whole quoted for a shell ($, ` and ' in the path too)
            quoted = json.dumps
            moves = "; ".join(f"f.move({quoted(a)}, {quoted(b)})" for a, b in renames.items())
            code = f'import h5py; f = h5py.File({json.dumps(str(path))}, "r+"); {moves}'
            has += f"; rename them in place: python -c {shlex.quote(code)}"
        raise DataError(
            f"{path}: no image data found: expected datasets <split>_set_x and <split>_set_y "
            f"(e.g. train_set_x, train_set_y) and list_classes, but the file has {has}"
        )
    return prefixes


# Other names for a split's images and labels (X_train and y_train, train_images and
# train_labels, x_test...), as a user's own HDF5 files and other tutorials write them.
_IMAGES_WORDS = ("x", "images", "imgs", "data", "features")
_LABELS_WORDS = ("y", "labels", "label", "targets")


def _course_names(keys: list[str]) -> dict[str, str]:
    """The course's names (``train_set_x``...) for datasets named another common way
    (``X_train``, ``train_images``, ``y_test``...), where every split found has both its
    images and its labels; empty otherwise."""
    found: dict[str, dict[str, str]] = {}
    for key in keys:
        words = re.split(r"[_\-. ]+", key.lower())
        if len(words) != 2:
            continue
        for first, second in (words, words[::-1]):
            split = SPLIT_ALIASES.get(second)  # the words a split is read by: X_dev too
            kind = "x" if first in _IMAGES_WORDS else "y" if first in _LABELS_WORDS else None
            if split and kind and kind not in found.setdefault(split, {}):
                found[split][kind] = key
                break
    if not found or any(len(pair) != 2 for pair in found.values()):
        return {}
    return {
        key: f"{split}_set_{kind}" for split, pair in found.items() for kind, key in pair.items()
    }


def _nested_datasets(f) -> list[str]:
    """The paths of the datasets inside the groups of the open HDF5 file ``f``, sorted."""
    import h5py

    names: list[str] = []

    def visit(name: str, item: object) -> None:
        if "/" in name and isinstance(item, h5py.Dataset):
            names.append(name)

    f.visititems(visit)
    return sorted(names)


def keras_model_as_data(path: Path) -> str:
    """The line for a Keras model file (``.h5``, ``.keras``) given as the data: ``train``
    starts from it with ``--pretrained``, ``eval`` takes it converted."""
    return (
        f"{path} is a Keras model file, not a data set; give the images as the data, and the "
        f"model converted (resnetlab convert keras {path} {Path(path).stem}.safetensors) or, "
        f"to train from it, as {option('pretrained', path)}"
    )


def data_set_as_model(path: Path) -> str | None:
    """The line for a SIGNS-style data set given where a model goes (``eval
    test_signs.h5``, ``convert keras train_signs.h5``), or None when ``path`` holds no
    ``<split>_set_x`` / ``<split>_set_y`` pair (a Keras model, another HDF5 file)."""
    try:
        prefixes = h5_prefixes(path)
    except DataError:
        return None
    arrays = ", ".join(f"{p}_set_x, {p}_set_y" for p in prefixes)
    if on_command_line():
        data = shell_word(path)
        give = f"after --data: resnetlab eval MODEL_FILE --data {data}, or resnetlab train"
        return f"{path} is a data set ({arrays}), not a model; give it {give} --data {data}"
    data = repr(os.fspath(path))  # as Python writes it, where a script called
    return (
        f"{path} is a data set ({arrays}), not a model; give it as the data: "
        f"resnetlab.evaluate(model_file, {data}), or resnetlab.train(data={data})"
    )


def _dataset(path: Path, f, key: str):
    """``f[key]``, which must be an array (an HDF5 dataset), not a group."""
    import h5py

    item = f[key]
    if not isinstance(item, h5py.Dataset):
        raise DataError(f"{path}: {key} is a group, not an array; expected a dataset")
    return item


def _image_shape(path: Path, prefix: str) -> tuple[int, ...]:
    key = f"{prefix}_set_x"
    with _open(path) as f:
        x = _dataset(path, f, key)
        if x.dtype.kind == "O" or x.dtype.kind == "V":
            raise DataError(
                f"{path}: {key} stores images of varying sizes ({x.dtype}); expected "
                "one (N, H, W, 3) array: resize the images to one size before saving them"
            )
        if x.dtype.kind not in "iuf":
            raise DataError(f"{path}: {key} holds {x.dtype} values; expected pixel values")
        # A compressed array of zeros can be tiny on disk and terabytes in memory.
        need = x.size * (x.dtype.itemsize + 1)  # as stored, then as uint8
        if need > _memory_bytes():
            raise DataError(
                f"{path}: {key} {tuple(x.shape)} needs {need / 2**30:,.1f} GiB of memory, more "
                "than this machine has; store the images as a folder, which is streamed"
            )
        return tuple(x.shape)


def _memory_bytes() -> int:
    """Physical memory of this machine."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on Linux or macOS
        return 2**40


def _hw(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 4 and shape[1] in (1, 3) and shape[3] not in (1, 3):
        return shape[2], shape[3]  # channels first
    return shape[1], shape[2]


def _to_uint8(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=tuple(range(1, x.ndim))).sum()) if x.ndim > 1 else 1
        raise DataError(
            f"{path}: {key} holds NaN or infinite pixel values ({bad:,} of its {len(x):,} "
            "images); expected 0..255 (or 0..1): mend or leave out those images"
        )
    lo, hi = (x.min(), x.max()) if x.size else (0, 0)
    if x.dtype.kind == "f" and hi <= 1.0 and lo >= 0.0:
        x = x * 255.0  # stored as [0, 1] floats
    elif not (lo >= 0 and hi <= 255):
        raise DataError(f"{path}: {key} has pixel values from {lo} to {hi}; expected 0..255")
    return np.round(x).astype(np.uint8) if x.dtype.kind == "f" else x.astype(np.uint8)


def _to_nhwc(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    if x.ndim == 3:  # (N, H, W) grayscale
        x = x[..., None]
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[3] not in (1, 3):
        x = x.transpose(0, 2, 3, 1)  # channels first, as PyTorch users save them
    if x.ndim != 4 or x.shape[3] not in (1, 3):
        raise DataError(
            f"{path}: {key} has shape {x.shape}; expected (N, H, W, 3) images "
            "(or (N, H, W) grayscale)"
        )
    if x.shape[3] == 1:
        x = np.repeat(x, 3, axis=3)
    return np.ascontiguousarray(x)


def _class_names(
    path: Path, f, labels: np.ndarray, count: int | None = None
) -> tuple[list[str], list[str]]:
    """``list_classes``, else ``count`` classes (one-hot labels' width) or as many as the
    labels reach."""
    notes = []
    if "list_classes" in f:
        raw = _dataset(path, f, "list_classes")[()]
        names = [
            v.decode(errors="replace") if isinstance(v, bytes) else str(v) for v in np.ravel(raw)
        ]
    else:
        k = count or (int(labels.max()) + 1 if labels.size else 0)
        if k > MAX_CLASSES:
            raise DataError(
                f"{path}: labels up to {k - 1} and no list_classes; a classifier has at most "
                f"{MAX_CLASSES:,} classes"
            )
        names = [str(i) for i in range(k)]
        notes.append(f"no list_classes in the file: classes 0..{k - 1} from the labels")
    return names, notes


def _one_hot_indices(y: np.ndarray, count: int) -> np.ndarray | None:
    """The class indices of one-hot labels for ``count`` images, (N, C) or (C, N), as Keras's
    categorical cross-entropy takes them; None for labels of another kind."""
    if y.shape[0] != count:  # (C, N); a square array is read as (N, C)
        y = y.T
    if y.shape[0] != count or y.shape[1] < 2 or y.dtype.kind not in "iubf":
        return None
    if not (((y == 0) | (y == 1)).all() and (y.sum(axis=1) == 1).all()):
        return None
    return y.argmax(axis=1)


def read_h5_split(
    path: Path,
    prefix: str,
    image_size: int | None = None,
    resize: str = "squash",
    crop_fraction: float = 1.0,
) -> ImageSet:
    """The images of one ``<prefix>_set_x/_set_y`` pair, optionally resized (``resize``:
    squashed or centre-cropped, see ``options.RESIZE_MODES``; ``crop_fraction``:
    ``decode.resize_plan``)."""
    x_key, y_key = f"{prefix}_set_x", f"{prefix}_set_y"
    _image_shape(path, prefix)  # refuses variable-size data before reading it
    with _open(path) as f:
        x = _to_nhwc(path, x_key, _to_uint8(path, x_key, f[x_key][()]))
        if not x.size:
            raise DataError(f"{path}: {x_key} holds no images (shape {x.shape})")
        y = np.asarray(_dataset(path, f, y_key)[()])
        if y.dtype.kind not in "iubf":
            raise DataError(
                f"{path}: {y_key} holds {y.dtype} values; expected integer class indices "
                "into list_classes"
            )
        one_hot, width = None, None
        if y.ndim == 2 and 1 in y.shape:  # the course reshapes labels to (1, N) before saving
            y = y.reshape(-1)
        elif y.ndim == 2 and (one_hot := _one_hot_indices(y, len(x))) is not None:
            width = y.size // len(x)  # C of (N, C) or (C, N)
            y = one_hot  # the course's convert_to_one_hot(Y, C), (C, N), or its .T
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(
                f"{path}: {x_key} has {len(x)} images but {y_key} has shape {y.shape}; "
                f"expected ({len(x)},) labels"
            )
        if y.dtype.kind == "f" and not np.all(y == np.round(y)):
            odd = np.unique(y[y != np.round(y)])
            shown = ", ".join(f"{v:g}" for v in odd[:3]) + (", ..." if len(odd) > 3 else "")
            raise DataError(
                f"{path}: {y_key} holds labels that are not whole numbers ({shown}); expected "
                "integer class indices into list_classes"
            )
        labels = y.astype(np.int64)
        # One-hot labels say how many classes there are, those no image of the split has too.
        class_names, notes = _class_names(path, f, labels, width)
        if one_hot is not None:
            notes.append(f"{y_key} holds one-hot labels: read as the class of each 1")
    bad = labels[(labels < 0) | (labels >= len(class_names))]
    if bad.size:
        shown = ", ".join(str(v) for v in np.unique(bad)[:5])
        # Without list_classes the classes are 0..max label: only a negative one is outside
        listed = "list_classes has"
        if any(note.startswith("no list_classes") for note in notes):
            listed = "the file has no list_classes, and its labels give"
        raise DataError(
            f"{path}: labels outside the class list: {y_key} holds {shown} but {listed} "
            f"{len(class_names)} classes (indices 0..{len(class_names) - 1})"
        )
    images = ImageSet(
        torch.from_numpy(x), torch.from_numpy(labels), class_names, f"{path}:{prefix}", notes
    )
    if not image_size:
        return images
    return images.resized(image_size, resize=resize, crop_fraction=crop_fraction)


def sibling_test_file(path: Path) -> Path | None:
    """``test_X.h5`` next to ``train_X.h5``, the course's naming, if it exists."""
    m = re.match(r"^train(?P<rest>[_-].*)$", path.name, re.IGNORECASE)
    if not m:
        return None
    sibling = path.with_name(f"test{m['rest']}")
    return sibling if sibling.is_file() else None


def h5_splits(
    path: Path, image_size: int | None = None, resize: str = "squash", crop_fraction: float = 1.0
) -> tuple[dict[str, Callable[[], ImageSet]], set[str]]:
    """The splits an HDF5 file offers, as ``{"train"|"val"|"test"|"all": load}``.

    A file holding only a training split (``train_X.h5``) also offers the test split of a
    ``test_X.h5`` next to it, as the course's two files are laid out; the second value
    names such borrowed splits.
    """
    files = {p: path for p in h5_prefixes(path)}
    borrowed = set()
    if set(files) == {"train"} and (sibling := sibling_test_file(path)):
        for prefix in h5_prefixes(sibling):
            if SPLIT_ALIASES.get(prefix.lower()) == "test":
                files[prefix] = sibling
                borrowed.add("test")
    roles = {prefix: SPLIT_ALIASES.get(prefix.lower()) for prefix in files}
    if len(files) == 1:
        named = {"all": next(iter(files))}
    elif None in roles.values() or len(set(roles.values())) < len(roles):
        raise DataError(
            f"{path}: cannot tell the splits apart among "
            f"{', '.join(f'{p}_set_x' for p in files)}; name them train_set_*, "
            "val_set_* and test_set_*"
        )
    else:
        order = ["train", "val", "test"]
        named = {
            role: prefix for prefix, role in sorted(roles.items(), key=lambda r: order.index(r[1]))
        }
    if image_size is None and len(named) > 1:
        sizes = {prefix: _hw(_image_shape(files[prefix], prefix)) for prefix in named.values()}
        if len(set(sizes.values())) > 1:
            listed = " but ".join(
                f"{files[p].name}:{p}_set_x holds {format_size(s)} images" for p, s in sizes.items()
            )
            size = "--input-size N" if on_command_line() else "image_size=N"
            raise DataError(
                f"{path}: mismatched image sizes: {listed}; give {size} to resize them all"
            )
    splits = {
        split: partial(read_h5_split, files[prefix], prefix, image_size, resize, crop_fraction)
        for split, prefix in named.items()
    }
    return splits, borrowed
