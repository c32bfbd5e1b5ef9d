"""Image folders: one sub-folder per class, optionally inside ``train/``, ``val/``, ``test/``.

Two layouts are recognised::

    ROOT/<class>/**/<image>                 one split ("all")
    ROOT/train/<class>/**/<image>           splits; val/ (or valid/, validation/, dev/) and
    ROOT/val/<class>/**/<image>             test/ are optional, but a split folder must hold
    ROOT/test/<class>/**/<image>            class folders (so a class named "train" is fine)

Classes are the sub-folder names, sorted. In either layout a folder of images with no
sub-folders may instead name each file's class before its first ``_`` (``3_IMG_5864.jpg``
is class ``3``), as the course's SIGNS JPEGs do. Files whose names start with ``.`` and
``SYSTEM_FOLDERS`` (``__MACOSX``, ``@eaDir``) are ignored, as are files that are not images
by suffix. A root holding nothing but one folder (as archives often unpack) is looked through.
"""

from __future__ import annotations

import os
import random
import re
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, DataWarning, as_given, option, readable, warn
from .cache import CROP_VERSION, DecodeCache, cache_unwritable, decode_key
from .decode import (
    IMAGE_EXTENSIONS,
    dead_link,
    decode_files,
    format_size,
    format_to_convert,
    in_a_loop,
    read_header_sizes,
    report_unreadable,
    resize_plan,
    skipped_unreadable,
)
from .imageset import ImageSet, pixel_digests
from .streaming import StreamingSet
from .tables import (
    IMAGE_WORDS,
    ClassColumnsDiffer,
    NoImageLabelled,
    class_maps,
    class_order,
    is_table_name,
    label_table,
    labels_images,
    listing,
    may_have_label_table,
    named_classes,
    read_label_table,
    read_once,
    sibling_table,
    unread_table,
)

# Decode into memory only when the uint8 images take at most this much; larger folders
# stream from disk. 4 GiB holds CIFAR-10's training split 28 times over, or 28,000 images
# at 224x224.
STREAM_ABOVE_BYTES = 4 * 2**30
# Native sizes of streamed folders come from this many file headers, not all of them.
SIZE_SAMPLE = 256

# A split folder's name: the role, alone or followed by a separator and more ("train_signs").
_SPLIT_NAME = re.compile(
    r"^(?P<role>train|training|val|valid|validation|dev|test|testing)(?:[-_. ].*)?$", re.I
)
_ROLES = {"training": "train", "valid": "val", "validation": "val", "dev": "val", "testing": "test"}
# The decoded folders (cache keys) whose unreadable files this process has named already.
_NAMED_UNREADABLE: set[str] = set()
ENLARGED_NOTE = "most images are"  # the start of the note on images enlarged to the input size
SHRUNK_NOTE = "the images are mostly"  # ... on images far larger than the input size
ELONGATED = 2  # images this many times as long as wide (and more) lose most of them to a crop
# Images whose shorter side is this many times the input size or more get SHRUNK_NOTE: 480 px
# photos at a CIFAR net's 32 px keep 1/225 of their pixels.
SHRUNK_FACTOR = 6
# A file name that carries its class before the first underscore: "3_IMG_5864.jpg".
_LABELLED_NAME = re.compile(r"^(?P<label>[^_]+)_.")


def enlarged(size: tuple[int, int], image_size: int) -> bool:
    """Whether an image of ``size`` (height, width) is at most half ``image_size`` a side:
    what the notes of train, eval and predict on images enlarged to the input size count
    (28 px images at 224 px: 64 times the pixels, and no more detail)."""
    return max(size) * 2 <= image_size


def split_role(name: str) -> str | None:
    if is_table_name(name):  # train.csv/: a table's folder, no training split
        return None
    m = _SPLIT_NAME.match(name)
    return _ROLES.get(m["role"].lower(), m["role"].lower()) if m else None


def named_role(name: str) -> str | None:
    """The split a folder's name says it holds, by its first or last word: ``test``,
    ``test_signs``, ``photos-test``, ``validation``...; None when it says none."""
    words = [w for w in re.split(r"[-_. ]+", name) if w]
    for word in words[:1] + words[-1:]:
        if role := split_role(word):
            return role
    return None


@dataclass
class FolderSplit:
    """The files of one split of a folder tree, before decoding."""

    root: Path
    paths: list[str]
    labels: list[int]
    class_names: list[str]
    notes: list[str]
    stamps: list[str]  # "relative path|size|mtime_ns" per file, what the cache key hashes


# Folders that tools leave beside a user's photos, of copies or thumbnails of them: a zip
# made on macOS (__MACOSX), a Synology NAS (@eaDir, a thumbnail folder per photo); and those
# a system keeps at the top of a drive (Windows's recycle bin, of deleted photos, and its
# restore points; Linux's lost+found), which show when a drive's photos are the data.
# Left out silently, as hidden folders are.
DRIVE_FOLDERS = frozenset({"$RECYCLE.BIN", "System Volume Information", "lost+found"})
SYSTEM_FOLDERS = frozenset({"__MACOSX", "@eaDir"}) | DRIVE_FOLDERS
# Hidden folders of thumbnails (Android's DCIM/.thumbnails, image viewers' .thumb): left out
# silently too, though they hold images, where another hidden folder of images is noted.
THUMBNAIL_FOLDERS = frozenset({".thumbnails", ".thumbs", ".thumb", ".cache"})


def _listing(folder: Path) -> list[os.DirEntry]:
    """The entries of ``folder`` (``tables.listing``: once a load); one that may not be
    listed is a one-line error that says so, not a write error."""
    try:
        return listing(folder)
    except PermissionError as e:
        raise DataError(
            f"{folder}: no permission to list this folder ({e.strerror}); give yourself read "
            "access to it (chmod -R u+rX), or move it out of the data folder"
        ) from None


def _leads_nowhere(entry: os.DirEntry) -> bool:
    """Whether ``entry`` is a link to nothing: its target gone, or a loop of links (``a ->
    b -> a``, on which ``is_dir`` and ``is_file`` raise). Read as a broken link is: an image
    file that cannot be read, or a file that is no image."""
    return entry.is_symlink() and not os.path.exists(entry.path)


def _visible_dirs(folder: Path) -> list[Path]:
    """Sub-folders, in the order of their names as classes are named (``readable``)."""
    return sorted(
        (
            Path(e.path)
            for e in _listing(folder)
            if not _leads_nowhere(e)
            and e.is_dir()
            and not e.name.startswith(".")
            and e.name not in SYSTEM_FOLDERS
        ),
        key=lambda p: readable(p.name),
    )


# Files an operating system leaves in image folders (thumbnail caches, folder settings):
# left out silently, as hidden files are.
SYSTEM_FILES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini"})


def _images_under(
    folder: Path,
    depth: int = 0,
    others: list[str] | None = None,
    links: list[str] | None = None,
    written: list[tuple[str, str]] | None = None,
) -> tuple[list[str], list[str]]:
    """Image files under ``folder`` (recursively, sorted) and a stamp of each for the cache;
    the names of the other visible files go into ``others``, and the symbolic links followed
    (to folders and to images) into ``links``, when they are given. Given ``written``, the
    folders below ``folder`` that resnetlab wrote (``_written_here``: explain's output,
    training run folders) are not looked into but named there, each with what it is."""
    if depth > 32:
        raise DataError(f"{folder}: folders nested more than 32 deep; is there a symlink loop?")
    paths: list[str] = []
    stamps: list[str] = []
    # os.scandir, not pathlib: for 60,000 files the stat comes with the listing at no extra cost.
    entries = sorted(_listing(folder), key=lambda e: e.name)
    for e in entries:
        if e.name.startswith(".") or e.name in SYSTEM_FOLDERS or e.name.lower() in SYSTEM_FILES:
            continue
        nowhere = _leads_nowhere(e)
        if not nowhere and e.is_dir():
            if e.is_symlink() and _holds((target := Path(e.path).resolve()), folder):
                raise DataError(
                    f"{e.path}: a link to {target}, which holds the link itself, so its images "
                    "would be read over and over; remove the link, or copy the images it "
                    "should add"
                )
            if e.is_symlink() and links is not None:
                links.append(e.path)
            if written is not None and (what := _written_here(Path(e.path))) is not None:
                written.append((e.path, what))
                continue
            sub_paths, sub_stamps = _images_under(Path(e.path), depth + 1, others, links, written)
            paths += sub_paths
            stamps += [f"{e.name}/{s}" for s in sub_stamps]
        elif os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS and (nowhere or e.is_file()):
            # A link whose target is gone (a photo moved, a drive not mounted) is an image
            # that cannot be read, skipped and named as such, not a file that is no image.
            st = e.stat(follow_symlinks=not nowhere)
            if e.is_symlink() and not nowhere and links is not None:
                links.append(e.path)
            paths.append(e.path)
            stamps.append(f"{e.name}|{st.st_size}|{st.st_mtime_ns}")
        elif others is not None:
            others.append(e.name)
    return paths, stamps


def _check_links(class_dir: Path, links: list[str], class_dirs: dict[Path, Path]) -> None:
    """Refuse a link in ``class_dir`` to images of another class folder: they would be read
    as this class (``cats/more -> ../dogs`` trains dogs as cats). ``class_dirs``: the class
    folders by their resolved paths, resolved once for the whole scan."""
    for link in links:
        target = Path(link).resolve()
        for folder in (target, *target.parents):  # the other class folder, or a folder in it
            other = class_dirs.get(folder)
            if other is not None and other != class_dir:
                raise DataError(
                    f"{link}: a link to {target}, in the class folder {other.name}, so its "
                    f"images would be read as {class_dir.name}; remove the link, or copy the "
                    f"images that belong to {class_dir.name}"
                )


def _holds(outer: Path, folder: Path) -> bool:
    """Whether ``outer`` (resolved) is ``folder`` or one of the folders above it."""
    inner = folder.resolve()
    return outer == inner or outer in inner.parents


def _others_note(others: list[str], said: str = " ignored") -> list[str]:
    """A note on the files that are not images: how many, some names (after ``said``), and
    how to use the photo formats Pillow cannot read (an iPhone's HEIC)."""
    if not others:
        return []
    n, names = len(others), list(dict.fromkeys(others))  # a name in several folders once
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    what = "files that are not images" if n != 1 else "file that is not an image"
    note = f"{n} {what}{said} ({shown})"
    formats = sorted(set(filter(None, map(format_to_convert, others))))
    if formats:
        note += f"; {' and '.join(formats)} photos need converting to JPEG or PNG first"
    return [note]


def data_folder_holding(path: Path, data: list[str | None]) -> str | None:
    """The data folder among ``data`` (specs) that holds ``path``, or None: a figure written
    there would be read as an image, of a class of its own, by the next run on that folder."""
    for spec in data:
        folder = Path(spec).expanduser() if spec else None
        if (
            folder
            and folder.is_dir()
            and path.expanduser().resolve().is_relative_to(folder.resolve())
        ):
            return spec
    return None


def data_sets_around(inputs: list[str]) -> list[str]:
    """The folders of class folders that the folders of ``inputs`` (image files and folders)
    are one of: ``photos`` for ``photos/cat/1.jpg`` or ``photos/cat``, where every folder in
    ``photos`` holds images and ``photos`` holds none of its own. A file written in one
    would join that data set at its next run."""
    folders = {}  # each folder once: a thousand photos of one folder are one look
    for spec in inputs:
        path = Path(spec).expanduser()
        folder = path if path.is_dir() else path.parent
        folders.setdefault(str(folder), folder)
    roots = {str(r): r for f in folders.values() if (r := _by_name(f).parent) != f}
    return [name for name, root in roots.items() if _is_class_folder_set(root)]


def data_set_above(path: Path) -> str | None:
    """The folder of class folders that ``path``, a folder to write into, is a class folder
    of (``photos`` for ``photos/cams``) or inside one of (``photos/cat/cams``), or None:
    what is written there joins that data set at its next run."""
    spelled = list(path.expanduser().parents)  # named as given where it can be
    for i, folder in enumerate(path.expanduser().absolute().parents[:2]):
        if _is_class_folder_set(folder):
            return str(spelled[i] if i < len(spelled) else folder)
    return None


def _is_class_folder_set(folder: Path) -> bool:
    """Two folders or more, each of images, and no images beside them: a data set's layout
    (explain's output folders, which hold maps.npz, and training's run folders, whose
    config.json sits beside their figures, are not taken for classes: ``runs/`` is no data
    set). Wider than ``_written_here``, which wants a run's checkpoint or model beside its
    config.json: a guess that only ever warns leaves out a folder that may be a run's. A
    folder that cannot be listed is taken for none."""
    try:
        dirs = [
            d
            for d in _visible_dirs(folder)
            if not (d / "maps.npz").exists() and not (d / "config.json").exists()
        ]
        return len(dirs) > 1 and not _direct_images(folder) and all(map(_direct_images, dirs))
    except (OSError, DataError):
        return False


def image_files(folder: Path) -> list[Path]:
    """The image files under ``folder`` as training reads them: recursively, sorted, without
    hidden files and folders or ``SYSTEM_FOLDERS``; other visible files are a warning, and
    the folders resnetlab wrote (``_written_here``: training run folders, ``runs/``, whose
    images are figures, curves.png...; explain's output, ``cams/``, whose images are its
    overlays) are skipped with one."""
    others: list[str] = []
    written: list[tuple[str, str]] = []
    paths = [Path(p) for p in _images_under(folder, others=others, written=written)[0]]
    for note in _others_note(others):
        warn(f"{folder}: {note}", DataWarning)
    for what, kind, theirs in (
        (RUN_FOLDER, "training run folder", "the runs' figures"),
        (EXPLAIN_OUTPUT, "explain output folder", "explain's overlays (beside its maps.npz)"),
    ):
        if found := [path for path, said in written if said == what]:
            shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
            warn(
                f"{len(found)} {kind}{'s' * (len(found) > 1)} skipped ({shown}): their images "
                f"are {theirs}",
                DataWarning,
            )
    return paths


def is_run_folder(path: Path) -> bool:
    """Whether ``path`` is a training run's folder: a config.json beside its checkpoint or
    model file. Its images are the run's figures, neither data nor photos to classify."""
    run_files = ("checkpoint.pt", "best.safetensors")
    # os.path.isfile: False in a folder this user may not open (chmod 700 from another
    # account), which listing it then says; Path.is_file raises there (Python < 3.14).
    isfile = os.path.isfile
    return isfile(path / "config.json") and any(isfile(path / n) for n in run_files)


def is_explain_output(path: Path) -> bool:
    """Whether ``path`` is a folder ``resnetlab explain`` wrote: its maps.npz beside the
    overlays, which are no photos to classify or train on (looked for as ``is_run_folder``
    looks)."""
    return os.path.isfile(path / "maps.npz")


def images_in(folder: Path, shown: int = 3, *, besides: Collection[str] = ()) -> str | None:
    """The first ``shown`` names of the images directly in ``folder``, sorted (``a.jpg,
    b.jpg, c.jpg, ...``), or None where it holds none: someone's photos, where a figure
    written beside them would be read as one of them. Images named in ``besides`` (the
    figures of the work that writes there) are not counted."""
    try:
        names = sorted(p.name for p in _direct_images(folder) if p.name not in besides)
    except (OSError, DataError):
        return None
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "") if names else None


def _direct_images(folder: Path) -> list[Path]:
    return [
        Path(e.path)
        for e in _listing(folder)
        if not _leads_nowhere(e)
        and e.is_file()
        and not e.name.startswith(".")
        and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
    ]


def _direct_others(folder: Path) -> list[str]:
    """The names of the files directly in ``folder`` that are not images (a notes.txt beside
    the class folders), left out as ``_images_under`` leaves such files out below it."""
    return sorted(
        e.name
        for e in _listing(folder)
        if (_leads_nowhere(e) or not e.is_dir())
        and not e.name.startswith(".")
        and e.name.lower() not in SYSTEM_FILES
        and os.path.splitext(e.name)[1].lower() not in IMAGE_EXTENSIONS
    )


def _loose_note(loose: list[Path], folder: Path, where: str) -> str:
    """A note on the images directly in ``folder``, beside its class or split folders: how
    many, some names, and that they are left out, not being in ``where``."""
    n, names = len(loose), sorted(p.name for p in loose)
    shown = ", ".join(names[:3]) + (", ..." if n > 3 else "")
    return (
        f"{n} image{'s' if n != 1 else ''} directly in {as_given(str(folder))} ignored "
        f"({shown}): not in {where}"
    )


# The note on a split whose classes come from its file names.
NAMED_CLASSES_NOTE = "classes from the file names (the text before the first '_')"
# The start of the note on a lone class folder whose file names carry classes of their own.
NAMED_FILES_NOTE = "the file names in"
# In the note on a folder of one class by name (a camera's IMG_0001.jpg) beside other folders
# of images: likely one class of the data set its parent is (photos/cat given for photos/).
CLASS_FOLDER_NOTE = "looks like one of the class folders in"
# In the note on class folders named as dates (dated_classes_note): photos sorted by day.
DATED_CLASSES_NOTE = "folders named as dates"
# In the note on hidden folders of images beside the class folders (_hidden_classes_note).
HIDDEN_CLASSES_NOTE = "without the dot to train on"


def with_folder_notes(notes: list[str], fix: str | None) -> str | None:
    """``fix`` for data whose classes went wrong, after what its folder notes say first: a
    class folder given for the folder that holds it (``photos/cat`` for ``photos/``), a
    class left out as a hidden folder (``.net/``), or classes that are days (folders of
    photos by date); or, for a lone folder of files named by class, that the folder itself
    is the class."""
    named = [note for note in notes if note.startswith(NAMED_FILES_NOTE)]
    if named:  # photos/signs/3_IMG_5864.jpg: the one folder is the class
        return named[0]
    beside = [note for note in notes if CLASS_FOLDER_NOTE in note]
    beside += [note for note in notes if HIDDEN_CLASSES_NOTE in note]
    beside += [note for note in notes if DATED_CLASSES_NOTE in note]  # photos by day
    if beside and fix is None:
        return beside[0]
    return f"{beside[0]}; else {fix}" if beside else fix


def _name_labels(paths: list[str], least: int = 2) -> list[str] | None:
    """Each file's class from its name (``<class>_<rest>``), or None unless every name has one
    and they name at least ``least`` classes."""
    matches = [_LABELLED_NAME.match(os.path.basename(p)) for p in paths]
    if not matches or not all(matches):
        return None
    labels = [readable(m["label"]) for m in matches]
    return labels if len(set(labels)) >= least else None


# A file name's text before its trailing number ("american_bulldog_10" -> "american_bulldog"),
# a copy's mark after the number aside ("0_IMG_5957 (1)" -> "0_IMG").
_NUMBERED_NAME = re.compile(r"^(?P<stem>.*[^_\-\s\d])[_\-\s]*\d+(?:\s*\(\d+\)|\s+copy)?$")


def _merged_names_note(paths: list[str], labels: list[str]) -> list[str]:
    """A note on classes read from file names that gather files named in several ways before
    their numbers: Oxford-IIIT Pet's ``american_bulldog_10.jpg`` and
    ``american_pit_bull_terrier_3.jpg`` are both class ``american``, two breeds as one. A
    way counts when two files or more are named so (one odd camera prefix does not), and
    ways that differ in their numbers alone are one (``cat_2019_05_01_1.jpg``, a date)."""
    stems: dict[str, Counter] = {}
    shown_as: dict[str, str] = {}  # a way by its first name: "cat_2019_05_01"
    for path, label in zip(paths, labels, strict=True):
        m = _NUMBERED_NAME.match(os.path.splitext(os.path.basename(path))[0])
        if m:
            way = re.sub(r"\d+", "#", readable(m["stem"]))
            shown_as.setdefault(way, readable(m["stem"]))
            stems.setdefault(label, Counter())[way] += 1
    merged = {
        label: ways
        for label, counts in sorted(stems.items())
        if len(ways := sorted(shown_as[way] for way, n in counts.items() if n >= 2)) >= 2
    }
    if not merged:
        return []
    shown = "; ".join(
        f"{label} ({', '.join(f'{w}_*' for w in ways[:3])}{', ...' if len(ways) > 3 else ''})"
        for label, ways in list(merged.items())[:3]
    )
    more = f" and {len(merged) - 3} more" if len(merged) > 3 else ""
    one = len(merged) == 1
    return [
        f"{'a class' if one else f'{len(merged)} classes'} read from the file names "
        f"{'gathers files' if one else 'gather files'} named in several ways before their "
        f"numbers: {shown}{more}; the class is the text before the first '_', so if these "
        "are classes of their own, put each one's images in a sub-folder named after it"
    ]


# A file name with its class before a dot and a number: Kaggle's dogs-vs-cats "cat.0.jpg".
_DOTTED_NAME = re.compile(r"^(?P<label>[^._]+)\.\d+\.[^.]+$")


def _why_no_classes(paths: list[str]) -> str:
    """Why a folder of image files (by suffix: nothing is opened yet) without class folders
    gives no classes by name either, some names carrying none: it names those only when most
    names carry one of two classes or more, as a stray file among named ones."""
    files = [os.path.basename(p) for p in paths]
    labels = Counter(m["label"] for f in files if (m := _LABELLED_NAME.match(f)))
    unnamed = [f for f in files if not _LABELLED_NAME.match(f)]
    what = f"{len(files)} image files but"
    if len(labels) == 1:  # one class, or a camera's prefix: IMG_0001.jpg
        [(label, n)] = labels.items()
        return (
            f"{what} no class folders, and their names give one class only ({n} of them "
            f"named {label}_...); a classifier needs two"
        )
    if len(labels) > 1 and len(unnamed) < len(files) / 2:
        shown = ", ".join(unnamed[:3]) + (", ..." if len(unnamed) > 3 else "")
        return f"{what} the names of {len(unnamed)} of them carry no class ({shown})"
    if example := _dotted_example(files):
        return (
            f"{what} no class folders, and their names put the class before a '.' "
            f"({example}), which is not read as one"
        )
    return f"{what} no class folders"


def _dotted_example(files: list[str]) -> str | None:
    """One of ``files`` (names) when most of them put a class before a dot and a number, two
    classes or more (Kaggle's ``cat.0.jpg``, ``dog.1.jpg``), else None."""
    dotted = Counter(m["label"] for f in files if (m := _DOTTED_NAME.match(f)))
    if len(dotted) > 1 and dotted.total() > len(files) / 2:
        return next(f for f in files if _DOTTED_NAME.match(f))
    return None


def _check_no_dotted_split(folder: Path) -> None:
    """Refuse a folder named as a split whose images' names carry their classes before a dot:
    Kaggle's dogs-vs-cats unpacks to ``train/`` of ``cat.0.jpg``, ``dog.0.jpg`` beside
    ``test1/``, which would otherwise train as two classes, ``train`` and ``test1``."""
    if not named_role(folder.name) or _visible_dirs(folder):
        return
    example = _dotted_example(sorted(p.name for p in _direct_images(folder)))
    if example is None:
        return
    label, rest = example.split(".", 1)
    raise DataError(
        f"{folder}: a folder named as a split, of images whose names put the class before a "
        f"'.' ({example}), which is not read as one: it would be one class, '{folder.name}'; "
        f"put each class's images in a sub-folder named after the class ({folder.name}/"
        f"{label}/{example}), or name every file <class>_<anything> ({label}_{rest})"
    )


def _holds_classes(folder: Path) -> bool:
    """Whether a split folder holds class folders, or images whose names carry their class
    or that a label table labels (``tables.label_table``)."""
    if _visible_dirs(folder):
        return True
    images = list(map(str, _direct_images(folder)))
    return _name_labels(images) is not None or labels_images(folder, images)


def _sibling_class_folders(folder: Path, *, nested: bool = False) -> list[str]:
    """The names of the folders of images beside ``folder`` (itself a folder of images),
    when it is no split folder: then it is likely one class of the data set its parent is;
    ``nested``: their images may be in sub-folders too (photos by date). The folders
    resnetlab wrote there (``_written_here``: explain's cams/, a run folder) are no classes,
    as a scan of the parent says. A hint, so what cannot be listed (a parent of mode 711,
    another user's folder or a link that loops beside it, as in /tmp) is left out of it
    rather than raised in its place."""
    if named_role(folder.name):
        return []
    try:
        beside = [d for d in _visible_dirs(folder.parent) if d != folder]
        if nested:
            beside = [d for d in beside if not named_role(d.name) and _holds_nested_images(d)]
        else:
            beside = [d for d in beside if images_in(d)]
        return [d.name for d in beside if _written_here(d) is None]
    except (OSError, DataError):
        return []


def _holds_nested_images(folder: Path) -> bool:
    """Whether ``folder`` holds images, directly or in its sub-folders (a class folder of
    photos in folders by date)."""
    return bool(_direct_images(folder)) or any(map(_direct_images, _visible_dirs(folder)))


def _one_class_text(named: Path, siblings: list[str]) -> str:
    """That ``named``, beside the folders of images ``siblings``, looks like one class
    folder of the data set its parent is, and the folder to give instead."""
    return (
        f"{named.name}/ {CLASS_FOLDER_NOTE} {named.parent} ({_with_siblings(named, siblings)}); "
        f"if it is, give the folder that holds them: {named.parent}{os.sep}"
    )


def class_folder_note(folder: Path) -> str | None:
    """For a folder of images and no folders, with folders of images beside it: that it
    looks like one class of the data set its parent is (``photos/cat`` given for
    ``photos/``), and what to give instead; else None."""
    try:
        if not folder.is_dir() or _visible_dirs(folder) or not _direct_images(folder):
            return None
        named = _by_name(folder)
        if not (siblings := _sibling_class_folders(named)):
            return None
    except (OSError, DataError):  # a folder that cannot be listed: no guess
        return None
    return _one_class_text(named, siblings)


# A folder named as a day, a month or a year, as photos are sorted by when they were taken
# (2024-01-10, 2024_01_10, 20240110, 2024-01, 2019, 10.01.2024; a day may be followed by
# words, "2024-01-10 garden"): no class of what a photo shows.
_DATED = re.compile(
    r"(?:19|20)\d\d(?:(?P<s>[-_. ]?)(?:0[1-9]|1[0-2])(?:(?P=s)(?:0[1-9]|[12]\d|3[01])"
    r"(?:[-_ ,]+.*)?)?)?"
    r"|(?:0?[1-9]|[12]\d|3[01])[-_.](?:0?[1-9]|1[0-2])[-_.](?:19|20)\d\d"
)


def dated_classes_note(folder: Path, class_dirs: list[Path]) -> list[str]:
    """A note on class folders that are all named as dates (``photos/Red Leaf/2024-01-10/``
    given for ``photos/``): photos sorted by when they were taken, whose classes would be
    days. Where folders of images sit beside ``folder``, it likely is one class of the data
    set its parent is (the note then says so as ``class_folder_note`` does, which eval's
    error repeats: ``with_folder_notes``). A hint: what cannot be listed is left out."""
    names = [d.name for d in class_dirs]
    if len(names) < 2 or not all(_DATED.fullmatch(name) for name in names):
        return []
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    dated = f"the {len(names)} classes are {DATED_CLASSES_NOTE} ({shown}): days, not classes"
    named = _by_name(folder)
    if siblings := _sibling_class_folders(named, nested=True):
        return [f"{dated}; {_one_class_text(named, siblings)}"]
    return [
        f"{dated}, where photos are sorted by when they were taken; give a folder that holds "
        f"a folder per class (photos/<class>/, its images in any sub-folders: "
        f"photos/<class>/{names[0]}/)"
    ]


def _by_name(folder: Path) -> Path:
    """``folder`` spelled to end in its own name: ``.``, a class folder one is in, as
    ``../cat``, whose parent holds the folders beside it (``Path(".").parent`` is ``.``)."""
    name = os.path.basename(os.path.abspath(folder))
    if folder.name in ("", "..") and name:
        return Path(os.path.normpath(folder / os.pardir)) / name
    return folder


def _with_siblings(folder: Path, siblings: list[str]) -> str:
    """``folder``'s name among those of the folders beside it, the first five in order."""
    classes = [folder.name, *siblings]
    shown = ", ".join(sorted(classes, key=readable)[:5])
    return shown + (", ..." if len(classes) > 5 else "")


def find_root(folder: Path) -> Path:
    """Look through folders that hold nothing but one sub-folder with sub-folders of its own;
    not past a split folder found inside (``photos/train/``), whose one sub-folder is a class
    (``train/cats/``) unless it is named for the same split (``seg_train/seg_train/``)."""
    given = folder
    while True:
        dirs = _visible_dirs(folder)
        if dirs:  # a class or split folder linked from elsewhere, gone: not passed over
            _check_no_dead_folder_links(folder, dirs)
        if len(dirs) != 1 or _direct_images(folder) or not _visible_dirs(dirs[0]):
            return folder
        role = named_role(folder.name) if folder != given else None
        if role and named_role(dirs[0].name) != role:
            return folder
        if _mostly_its_own_images(dirs[0]):  # one class, some of it in a sub-folder
            return folder
        # A labelling tool's export: images/<batch>/*.jpg, their classes in a table here
        if may_have_label_table(folder) and labels_images(folder, _images_under(folder)[0]):
            return folder
        folder = dirs[0]


def _mostly_its_own_images(folder: Path) -> bool:
    """Whether ``folder`` holds at least as many images of its own as its sub-folders hold
    beside them: a class folder with a sub-folder (``cat/{1..94}.jpg, cat/more/``), not a
    folder of class folders with a stray image (``photos/{cat/, stray.jpg}``)."""
    own = len(_direct_images(folder))
    if not own:
        return False
    below, folders = 0, _visible_dirs(folder)  # at any depth, as a class's images are read
    while folders:
        sub = folders.pop()
        below += len(_direct_images(sub))
        if below > own:
            return False
        folders += _visible_dirs(sub)
    return True


def looked_through_note(given: Path, root: Path) -> list[str]:
    """A note on a folder that ``find_root`` looked through to ``root`` (``given`` holds
    nothing but ``cats/``, whose sub-folders become the classes): one class folder of
    sub-folders (by year, say) reads as a data set of those, which is worth saying. Not
    for split folders (``photos/train/<class>``), which say what they are."""
    inside = root.relative_to(given).parts
    if not inside or any(named_role(name) for name in inside):
        return []
    classes = [d.name for d in _visible_dirs(root)]
    shown = ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
    return [
        f"the classes are the folders in {Path(*inside)}/ ({shown}), the only "
        f"folder in {given}; if {root.name} is a class itself, put the other classes' "
        "folders beside it"
    ]


def _check_no_dead_folder_links(folder: Path, dirs: list[Path]) -> None:
    """Refuse a link beside the folders ``dirs`` of ``folder`` (its classes or splits) to
    something that is not there, not named as an image: a class or split folder linked from
    a drive that is not mounted, or moved since. Left out as a file that is no image, its
    class was dropped from the model (or its split from the run) with one note at most. (A
    loop of links never led to a folder: it stays such a file.)"""
    for e in _listing(folder):
        name, suffix = e.name, os.path.splitext(e.name)[1].lower()
        if (
            _leads_nowhere(e)
            and not in_a_loop(e.path)
            and not name.startswith(".")
            and suffix not in IMAGE_EXTENSIONS
        ):
            shown = ", ".join(d.name for d in dirs[:3]) + (", ..." if len(dirs) > 3 else "")
            beside = f"the folder{'s' if dirs[1:] else ''} {shown}"
            raise DataError(
                f"{e.path}: {dead_link(e.path)}, beside {beside}: {readable(name)!r} would be "
                "left out of the data; mount or restore what it leads to, or remove the link"
            )


# What ``_written_here`` says of a folder resnetlab wrote.
EXPLAIN_OUTPUT = "holds the maps resnetlab explain wrote (maps.npz)"
RUN_FOLDER = "is a training run's folder (config.json, its figures)"


def _written_here(folder: Path) -> str | None:
    """What wrote ``folder``, where resnetlab did (its images are figures or overlays, no
    class's photos): ``resnetlab explain`` run from the data folder (cams/), or a training
    run's folder copied into it."""
    if is_explain_output(folder):
        return EXPLAIN_OUTPUT
    if is_run_folder(folder):
        return RUN_FOLDER
    return None


def _written_below_notes(folder: Path, written: list[tuple[str, str]]) -> list[str]:
    """Notes on the folders resnetlab wrote below ``folder``'s class folders or images, which
    ``_images_under`` did not look into (``cams/`` of an explain run from inside a class
    folder, a run folder made there), named as the ones among the class folders are."""
    return [
        f"{os.path.relpath(path, folder)} left out: it {what}, not a class's images; move it "
        "out of the data folder"
        for path, what in written
    ]


def scan_classes(folder: Path) -> FolderSplit:
    """The class folders under ``folder`` and the image files in each (not those resnetlab
    wrote there, named in a note)."""
    class_dirs, written = [], []
    for d in _visible_dirs(folder):
        if (what := _written_here(d)) is not None:
            written.append(
                f"{d.name} left out: it {what}, not a class's images; move it out of "
                f"the data folder"
            )
        else:
            class_dirs.append(d)
    loose = _direct_images(folder)
    if not class_dirs and not loose and written:
        raise DataError(f"{folder}: no class folders in it; {written[0]}")
    if not class_dirs and not loose:
        raise DataError(_no_images_problem(folder))
    # Images without class folders (or in one folder, photos/images/): labelled by a table
    # where one is given, else by their names.
    unsorted = not class_dirs or (len(class_dirs) == 1 and not loose)
    if unsorted and (labelled := _scan_label_table(folder)) is not None:
        return labelled
    if len(class_dirs) > 1 and not loose and (labelled := _scan_table_across(folder)):
        return labelled
    if not class_dirs:
        return _scan_named_files(folder)
    _check_no_dead_folder_links(folder, class_dirs)
    for d in class_dirs:
        _check_no_dotted_split(d)
    if all(split_role(d.name) for d in class_dirs):
        raise DataError(_splits_without_classes_problem(folder, class_dirs))
    _check_no_split_among_classes(folder, class_dirs)
    # One class folder is a test set of one class; training refuses it (load_dataset). With
    # images beside it, those were likely meant as another class.
    if len(class_dirs) == 1 and loose:
        raise DataError(
            f"{folder}: only one class folder ({class_dirs[0].name}), and {len(loose)} images "
            "directly in the folder, which belong to no class; put each class's images in "
            "its own sub-folder"
        )
    paths, labels, stamps, others = [], [], [], _direct_others(folder)
    below: list[tuple[str, str]] = []  # folders resnetlab wrote inside the class folders
    resolved: dict[Path, Path] | None = None  # the class folders by resolved path, once
    for label, d in enumerate(class_dirs):
        # A class folder that is itself a link (wolves -> dogs) is checked as links in it are.
        before, links = len(others), [str(d)] if d.is_symlink() else []
        files, file_stamps = _images_under(d, others=others, links=links, written=below)
        if links:
            # Where a linked class folder and the one it links to resolve alike, the map
            # keeps the real one, so that the link is the one named.
            real_last = sorted(class_dirs, key=lambda c: not c.is_symlink())
            resolved = resolved or {c.resolve(): c for c in real_last}
            _check_links(d, links, resolved)
        if not files and len(others) > before:  # not empty: files of no image format read
            mine = others[before:]  # HEIC or raw photos: the note says to convert them
            fix = "" if any(map(format_to_convert, mine)) else "; add images or remove the folder"
            fix = _images_folder_fix(class_dirs) or fix
            raise DataError(
                f"{d}: no images in this class folder, only {_others_note(mine, said='')[0]}{fix}"
            )
        if not files:
            fix = _images_folder_fix(class_dirs) or "; add images or remove the folder"
            raise DataError(
                f"{d}: empty class folder, no images in it (looked for "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))}){fix}"
            )
        paths += files
        labels += [label] * len(files)
        stamps += [f"{d.name}/{s}" for s in file_stamps]
    notes = written + _written_below_notes(folder, below) + _hidden_classes_note(folder)
    notes += _case_twins_note([d.name for d in class_dirs])
    notes += _misfiled_note(class_dirs, stamps)
    notes += dated_classes_note(folder, class_dirs)
    if len(class_dirs) == 1:
        notes += _named_files_note(class_dirs[0])
    if loose:
        notes.append(_loose_note(loose, folder, "a class folder"))
    notes += _others_note(others)
    return FolderSplit(folder, paths, labels, [readable(d.name) for d in class_dirs], notes, stamps)


def _images_folder_fix(class_dirs: list[Path]) -> str | None:
    """The fix for a folder whose class folders are in its ``images/`` among folders of
    other files (CUB-200-2011's ``images/<class>/``, ``parts/`` and ``attributes/`` of
    .txt files): give ``images/``, whose folders are the classes; None where none is so."""
    for d in class_dirs:
        if d.name.lower() in IMAGE_WORDS and images_in(d) is None and _visible_dirs(d):
            return (
                f"; the class folders are in {d.name}/ beside it, a data set's folder of "
                f"its images: give {d} as {option('data')}"
            )
    return None


def _no_images_problem(folder: Path) -> str:
    """What a folder of no class folders and no images holds instead: HDF5 files to give
    as the data, or files of no image format (a phone's HEIC photos)."""
    h5 = sorted(
        e.name for e in _listing(folder) if os.path.splitext(e.name)[1].lower() in (".h5", ".hdf5")
    )
    # An archive's files are in its extracted copy: taken out of it, one is data
    give = "give" if as_given(str(folder)) == str(folder) else "extract it and give"
    listed = ", ".join(h5[:3]) + (", ..." if len(h5) > 3 else "")
    which = "that file" if len(h5) == 1 else "one of them"
    hint = f"; it holds {listed}: {give} {which} as {option('data')}" if h5 else ""
    if not h5 and (others := _direct_others(folder)):
        hint = f", only {_others_note(others, said='')[0]}"
    return f"{folder}: no class folders and no images in it{hint}"


def _splits_without_classes_problem(folder: Path, class_dirs: list[Path]) -> str:
    """The refusal of folders all named as splits that hold images but no class folders;
    a table of labels that is there and does not fit says why instead (its own error)."""
    names = ", ".join(d.name for d in class_dirs)
    what = "looks like a split, not a class, but holds"
    if class_dirs[1:]:
        what = "look like splits, not classes, but hold"
    # Kaggle's layout: train/ of images, their labels in train.csv beside it. One of another
    # name is not looked for: the message says which name is.
    every: list[str] = []
    for d in class_dirs:
        images = list(map(str, _direct_images(d)))
        if (found := label_table(d, images)) is not None:
            read_label_table(d, found, images)
        every += images
    table = ""
    if unread := unread_table(folder, every):
        # named for the training split's folder (train/ first), as the table is (.txt too)
        d = min(class_dirs, key=lambda c: split_role(c.name) != "train").name
        table = (
            f" (the labels in {unread.relative_to(folder)} are not read: a table of labels is "
            f"read as {d}{unread.suffix.lower()} beside {d}/, or as the only table in {d}/ or "
            "here)"
        )
    return (
        f"{folder}: {names} {what} no class folders; put each split's images in one "
        f"sub-folder per class (train/<class>/*.jpg){table}"
    )


def _hidden_classes_note(folder: Path) -> list[str]:
    """A note on the hidden folders beside the class folders that hold images themselves
    (``.birds/*.jpg``): left out as every hidden folder is, but one of images there is more
    likely a class whose name starts with a dot than a system's folder (``.git``), and
    leaving it out unsaid would train on one class fewer than the user has."""
    hidden = []
    for e in _listing(folder):
        if not e.name.startswith(".") or _leads_nowhere(e) or not e.is_dir():
            continue
        if e.name.lower() in THUMBNAIL_FOLDERS:  # a phone's or a viewer's small copies
            continue
        try:
            n = len(_direct_images(Path(e.path)))
        except (OSError, DataError):  # one that may not be listed is left out as before
            continue
        if n:
            hidden.append(f"{e.name} ({n} image{'s' if n != 1 else ''})")
    if not hidden:
        return []
    what = (
        "a hidden folder (its name starts with a dot), not read as a class; rename it "
        f"{HIDDEN_CLASSES_NOTE} its images"
        if len(hidden) == 1
        else "hidden folders (their names start with a dot), not read as classes; rename "
        f"them {HIDDEN_CLASSES_NOTE} their images"
    )
    return [f"{', '.join(sorted(hidden))} left out: {what}"]


def _images_and_table(
    folder: Path,
) -> tuple[list[str], list[str], list[str], Path, list[str]] | None:
    """The images under ``folder`` (paths, stamps, the other files met, and notes on the
    folders resnetlab wrote there, whose images are left out) and the label table of them
    (``tables.label_table``); None without one, the images not listed where no table is
    named as one may be."""
    if not may_have_label_table(folder):
        return None
    others: list[str] = []
    written: list[tuple[str, str]] = []
    paths, stamps = _images_under(folder, others=others, written=written)
    if (table := label_table(folder, paths)) is None:
        return None
    return paths, stamps, others, table, _written_below_notes(folder, written)


def _scan_label_table(folder: Path) -> FolderSplit | None:
    """``scan_classes`` of a folder whose images a label table labels (``tables``), None
    without one. A table that does not fit is an error, unless the images' names give
    their classes, which are then taken with a note saying why the table was not."""
    if (found := _images_and_table(folder)) is None:
        return None
    paths, stamps, others, table, written = found
    try:
        labelled, labels, notes = read_label_table(folder, table, paths)
        notes = written + notes
        # A table of a few of the images beside names that give classes (cat_0.png...,
        # and sizes.csv of cat_0.png,12) is about those few, not the classes.
        if len(labelled) * 2 < len(paths) and _name_labels(paths) is not None:
            raise DataError(
                f"{table}: it gives the class of {len(labelled):,} of the {len(paths):,} images"
            )
    except DataError as e:
        if _name_labels(paths, least=1) is None:
            # test/ beside the training images' labels.csv, or its ids' test.csv: no classes
            beside = folder not in table.parents
            if isinstance(e, NoImageLabelled) and beside and named_role(folder.name) == "test":
                raise DataError(_unlabelled_test_set(folder, table)) from None
            raise
        named = _scan_named_files(folder)
        named.notes.append(f"labels taken from the file names, not from {table.name}: {e}")
        return named
    return _table_split(folder, table, paths, stamps, labelled, labels, notes, others)


def _unlabelled_test_set(folder: Path, table: Path) -> str:
    """The error on a test folder given as the data whose images ``table``, the table
    beside it, does not label (Kaggle's test/ beside train.csv or labels.csv)."""
    return (
        f"{folder}: its images are not labelled by {table} (an unlabelled test set, of no "
        f"classes to score or train on); resnetlab predict MODEL {folder} labels such images"
    )


def _table_split(
    folder: Path,
    table: Path,
    paths: list[str],
    stamps: list[str],
    labelled: list[str],
    labels: list[str],
    notes: list[str],
    others: list[str],
) -> FolderSplit:
    """The ``FolderSplit`` of the images ``labelled`` of ``paths`` by ``table``."""
    classes = class_order(labels)
    index = {label: i for i, label in enumerate(classes)}
    around = _data_set_folders(folder)
    class_names, named = named_classes(table, classes, around)  # cassava's 0..4 by diseases
    # A map in the folder or beside its table is noted above, as taken or not
    said = {table.name} | {p.name for d in (table.parent, folder) for p, _ in class_maps(d)}
    stamp_of = dict(zip(paths, stamps, strict=True))
    st = table.stat()
    return FolderSplit(
        folder,
        labelled,
        [index[label] for label in labels],
        class_names,
        notes
        + named
        + _case_twins_note(class_names, table=table)
        + _others_note([o for o in others if o not in said]),
        [f"{table.name}|{st.st_size}|{st.st_mtime_ns}", *(stamp_of[p] for p in labelled)],
    )


def _data_set_folders(folder: Path) -> list[Path]:
    """The folders of the data set that ``folder`` is a split of, by names alone: itself,
    the folder above it, and the splits beside it (``train/`` for ``val/``); none for a
    folder named for no split. A map of class names in one of them names every split's
    numbers (``named_classes``): cassava's map beside ``train.csv`` names those of a
    ``val/labels.csv`` too."""
    if named_role(folder.name) is None:
        return []
    try:
        beside = [Path(e.path) for e in _listing(folder.parent) if e.is_dir()]
    except OSError:
        beside = []
    splits = sorted(d for d in beside if d != folder and named_role(d.name))
    return [folder, folder.parent, *splits]


def _scan_table_across(folder: Path) -> FolderSplit | None:
    """``scan_classes`` of a folder whose folders of images are no classes, a table in it
    labelling their images across them (HAM10000: HAM10000_images_part_1/ and _part_2/, the
    diagnoses in HAM10000_metadata.csv); None where its folders are the classes: no table,
    one that fits no image, none of a column headed as classes, one of fewer than half the
    images, or one that gives each folder's images one class of their own."""
    if (found := _images_and_table(folder)) is None:
        return None
    paths, stamps, others, table, written = found
    try:
        labelled, labels, notes = read_label_table(folder, table, paths, headed=True)
        notes = written + notes
    except ClassColumnsDiffer:  # a table of labels, which it cannot tell: said
        raise
    except DataError:
        return None
    by_folder: dict[str, set[str]] = {}
    for path, label in zip(labelled, labels, strict=True):
        by_folder.setdefault(Path(path).relative_to(folder).parts[0], set()).add(label)
    own = all(len(found) == 1 for found in by_folder.values())
    if len(labelled) * 2 < len(paths) or (own and len(set(labels)) == len(by_folder)):
        return None
    shown = ", ".join(sorted(by_folder)[:3]) + (", ..." if len(by_folder) > 3 else "")
    notes.append(f"the folders {shown} are not read as classes: {table.name} labels their images")
    return _table_split(folder, table, paths, stamps, labelled, labels, notes, others)


def _scan_named_files(folder: Path) -> FolderSplit:
    """``scan_classes`` of a folder of images and no class folders: the images in it and
    below it, each of the class its name begins with (``<class>_<anything>``)."""
    others: list[str] = []
    written: list[tuple[str, str]] = []
    paths, stamps = _images_under(folder, others=others, written=written)
    # One class by name is a test set of one class (3_*.jpg); training refuses it
    # (load_dataset), saying how names give classes.
    names = _name_labels(paths, least=1)
    if names is None:
        fix = (
            "put each class's images in a sub-folder named after the class, or name every "
            "file <class>_<anything> (3_IMG_5864.jpg)"
        )
        named = _by_name(folder)
        if siblings := _sibling_class_folders(named):  # photos/cat given for photos/
            fix = (
                f"if it is one of the class folders in {named.parent} "
                f"({_with_siblings(named, siblings)}), give the folder that holds them: "
                f"{named.parent}{os.sep}; else {fix}"
            )
        if named_role(folder.name) == "test" and (table := sibling_table(folder)):
            raise DataError(_unlabelled_test_set(folder, table))  # test/ beside train.csv
        raise DataError(f"{folder}: {_why_no_classes(paths)}; {fix}")
    names = [readable(n) for n in names]
    class_names = sorted(set(names))
    index = {name: i for i, name in enumerate(class_names)}
    notes = [NAMED_CLASSES_NOTE, *_written_below_notes(folder, written)]
    camera = _camera_names_note(names)
    notes += [*_merged_names_note(paths, names), *camera]
    if (len(class_names) == 1 or camera) and (note := class_folder_note(folder)):
        notes.append(note)  # photos/cat of IMG_0001.jpg... given for photos/
    notes += _case_twins_note(class_names, from_files=True)
    notes += _others_note(others)
    return FolderSplit(folder, paths, [index[n] for n in names], class_names, notes, stamps)


# What cameras and phones begin their files' names with (IMG_0001.jpg, DSC_0042.JPG,
# PXL_20240110_093512.jpg): the text before the first '_' of such a name is no class.
# (Not words that may be classes, photo_1.jpg beside drawing_1.jpg.)
CAMERA_PREFIXES = frozenset({"img", "dsc", "dscn", "dscf", "pxl", "mvimg", "pano", "vid"})


def _camera_names_note(names: list[str]) -> list[str]:
    """A note on classes read from file names that are a camera's or a phone's prefix
    (``IMG`` of ``IMG_0001.jpg``), beside a class of other names (a screenshot's, a copy
    renamed by hand): a folder of someone's photos, not of files named by class."""
    counts = Counter(names)
    camera = sorted(name for name in counts if name.casefold() in CAMERA_PREFIXES)
    if not camera:
        return []
    shown = ", ".join(f"{name} ({counts[name]:,})" for name in camera)
    return [
        f"{shown}: the start of the names cameras and phones give their files "
        f"({camera[0]}_0001.jpg), read as {'a class' if len(camera) == 1 else 'classes'} "
        "here; the class of a file comes from a class folder it is in, or from the text "
        "before the first '_' of its name (3_IMG_5864.jpg)"
    ]


def _named_files_note(class_dir: Path) -> list[str]:
    """A note on the one class folder of a folder when its images' names carry several
    classes (``signs/train_signs/3_IMG_5864.jpg``, as an archive of the folder unpacks): the
    folder is one class here, and pointing at it reads the classes from the names."""
    if _visible_dirs(class_dir):
        return []
    names = _name_labels(list(map(str, _direct_images(class_dir))))
    if names is None:
        return []
    classes = sorted(set(map(readable, names)))
    shown = ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
    return [
        f"{NAMED_FILES_NOTE} {class_dir.name}/ carry classes ({shown}), but as the only "
        f"folder here it is one class; --data {class_dir} reads the classes from the names"
    ]


def _case_twins_note(
    class_names: list[str], *, from_files: bool = False, table: Path | None = None
) -> list[str]:
    """A note on class names that differ only in case (``Cats`` and ``cats``): two classes
    here, where macOS and Windows would have kept one folder; seldom what was meant. With
    ``from_files`` the names are read from file names (``Cat_1.jpg``, ``cat_2.jpg``), with
    ``table`` from a label table's cells (``Red Leaf`` in some rows, ``red leaf`` in
    others, as typed by hand)."""
    names: dict[str, list[str]] = {}
    for name in class_names:
        names.setdefault(readable(name).casefold(), []).append(name)
    twins = [" and ".join(group) for group in names.values() if len(group) > 1]
    if not twins:
        return []
    if from_files:
        what, fix = "classes read from the file names that", "rename the files to one spelling"
    elif table is not None:
        what, fix = f"classes in {table.name} that", "write each in one spelling in the table"
    else:
        what, fix = "class folders whose names", "merge each into one folder"
    return [
        f"{what} differ only in case are separate classes: "
        f"{'; '.join(twins)}; {fix} if they hold one class"
    ]


def _check_no_split_among_classes(folder: Path, class_dirs: list[Path]) -> None:
    """Refuse a split folder beside class folders that holds folders named as those classes
    (``photos/{cat,dog,test/{cat,dog}}``): it would be a class of its own, ``test``, whose
    images are cats and dogs."""
    classes = {d.name.casefold() for d in class_dirs}
    for d in class_dirs:
        if (role := named_role(d.name)) is None:
            continue
        inner = [
            s.name for s in _visible_dirs(d) if s.name.casefold() in classes - {d.name.casefold()}
        ]
        if inner:
            raise DataError(
                f"{folder}: {d.name}/ holds folders named as the classes beside it "
                f"({', '.join(inner)}), so it would train as a class '{d.name}'; to keep it as "
                f"the {role} split, move the class folders into {folder / 'train'}, or move "
                f"{d.name}/ out of the folder"
            )


def _misfiled_note(class_dirs: list[Path], stamps: list[str]) -> list[str]:
    """A note on a class folder's sub-folder named as another class (``cats/dogs/``): its
    images are counted as the outer class, which is seldom what was meant."""
    classes = {d.name.casefold(): d.name for d in class_dirs}
    nested = Counter(
        tuple(stamp.split("/")[:2]) for stamp in stamps if stamp.count("/") >= 2
    )  # (class, sub-folder) of each image below a sub-folder
    found = [
        f"{outer}/{inner}/ ({n:,})"
        for (outer, inner), n in sorted(nested.items())
        if inner.casefold() in classes and inner.casefold() != outer.casefold()
    ]
    if not found:
        return []
    return [
        f"images in a class folder's sub-folder named as another class count as the outer "
        f"class: {', '.join(found)}; move them if they belong to the inner one"
    ]


def _split_folders(root: Path) -> dict[str, Path]:
    """``{"train"|"val"|"test": folder}`` when ``root`` uses the split layout, else ``{}``.

    A split folder is named by its role (``train``, ``train_signs``); failing that, by its
    last word (Kaggle's ``seg_train/`` and ``seg_test/``) where that names a training split
    and another. A split folder holding nothing but a folder named for the same role, as
    Kaggle's archives unpack (``seg_train/seg_train/<class>``), is looked through.
    """
    dirs = _visible_dirs(root)
    for role_of, least in ((split_role, 1), (named_role, 2)):
        found: dict[str, Path] = {}
        for d in dirs:
            role = role_of(d.name)
            # A split folder holds classes; a class folder (even one named "train") holds images.
            if role and role not in found and _holds_classes(d):
                found[role] = _through_same_role(d, role)
        if len(found) >= least and ("train" in found or len(found) == len(dirs)):
            return found
    return {}


def _beside_the_splits(folder: Path) -> str:
    """A folder that is no split, as the note on the ignored ones names it: one named like a
    split says why it is none (an empty val/ read as ignored, beside a note to add one)."""
    if not named_role(folder.name):
        return folder.name
    if _direct_images(folder):
        return f"{folder.name} (images in no class folder)"
    return f"{folder.name} (no images in it)"


def _through_same_role(folder: Path, role: str) -> Path:
    """``folder``, or the folder inside it named for the same split that it alone holds."""
    while (
        len(dirs := _visible_dirs(folder)) == 1
        and not _direct_images(folder)
        and named_role(dirs[0].name) == role
        and _holds_classes(dirs[0])
    ):
        folder = dirs[0]
    return folder


def folder_splits(
    root: Path,
    image_size: int | None,
    *,
    stream: bool | None,
    cache_root: Path,
    workers: int | None = None,
    resize: str = "squash",
    max_side: int | None = None,
    crop_fraction: float = 1.0,
) -> tuple[dict[str, Callable[[], ImageSet | StreamingSet]], list[str]]:
    """The splits of an image-folder tree, as ``{"train"|"val"|"test"|"all": load}``, and notes.

    ``root`` is the tree's top as ``find_root`` finds it from the folder given."""
    with read_once() as tables_read:  # shared with the loads of the splits
        split_dirs, notes = _splits_and_notes(root)
    load = partial(
        load_folder,
        image_size=image_size,
        stream=stream,
        cache_root=cache_root,
        workers=workers,
        resize=resize,
        max_side=max_side,
        crop_fraction=crop_fraction,
        tables_read=tables_read,
    )
    return {split: partial(load, folder) for split, folder in split_dirs.items()}, notes


def _splits_and_notes(root: Path) -> tuple[dict[str, Path], list[str]]:
    """``folder_splits``'s folders, by split, and its notes on what is beside them."""
    split_dirs = _split_folders(root)
    notes = []
    if split_dirs:
        # The table that labels a split of images (train.csv beside train/) is no stray
        # file, nor is the folder it may be in (train.csv/train.csv) an ignored one.
        tables = {
            label_table(d, list(map(str, _direct_images(d))))
            for d in split_dirs.values()
            if not _visible_dirs(d)
        }
        used = {f for split in split_dirs.values() for f in (split, *split.parents)}
        used |= {t.parent for t in tables if t is not None}
        ignored = [_beside_the_splits(d) for d in _visible_dirs(root) if d not in used]
        if ignored:
            where = as_given(str(root))  # an archive's folder, named inside the archive
            notes.append(f"folders in {where} other than the splits ignored: {', '.join(ignored)}")
        if loose := _direct_images(root):  # as a class-folder layout says of its loose images
            notes.append(_loose_note(loose, root, "a split's class folder"))
        # Nor is a map of class names beside it, which the split's notes name.
        maps = {t.parent for t in tables if t is not None} | {root}
        said = tables | {p for d in maps for p, _ in class_maps(d)}
        notes += _others_note([o for o in _direct_others(root) if root / o not in said])
    else:
        split_dirs = {"all": root}
    if len(split_dirs) == 1:
        split_dirs = {"all": next(iter(split_dirs.values()))}
    return split_dirs, notes


def load_folder(
    folder: Path,
    *,
    image_size: int | None,
    stream: bool | None,
    cache_root: Path,
    workers: int | None = None,
    resize: str = "squash",
    max_side: int | None = None,
    crop_fraction: float = 1.0,
    tables_read: dict | None = None,
) -> ImageSet | StreamingSet:
    """One split folder (class folders of images), decoded into memory or set up to stream;
    images of another shape than ``image_size`` squashed or centre-cropped (``resize``),
    resized to ``image_size / crop_fraction`` first where that is below 1 (a model's, for
    eval: ``decode.resize_plan``). ``tables_read``: the label tables read and the folders
    listed already (``tables.read_once``), by ``folder_splits``.

    Without ``image_size`` the images are loaded at the most common native size, scaled
    down to ``max_side`` where its longer side is larger (keeping its shape): ``data
    inspect`` reads a folder of 12-megapixel photos at a size that shows them, not at 36 MB
    an image.
    """
    # The three ways to a split in the order they are tried: the decoding cache, streaming
    # (asked for, or too large for memory), decoding now and caching.
    with read_once(tables_read):
        scan = scan_classes(folder)
    # Without a size, a sample of headers gives the most common one: read here (once) when
    # it may be scaled down, which the cache key depends on.
    sampled = _sample_size(scan, workers) if image_size is None and max_side else None
    target, scaled = _scaled_size(*sampled, max_side, resize) if sampled else (None, [])
    # Squashed folders keep the keys they were cached under before crops existed, and all
    # folders theirs from before crop fractions; a crop's key says how it was planned.
    how = {} if resize == "squash" else {"resize": resize, "crop_version": CROP_VERSION}
    if crop_fraction != 1:
        how["crop_fraction"] = crop_fraction
    key = decode_key(
        scan.stamps,
        root=str(folder.resolve()),
        image_size=image_size if target is None else list(target),
        classes=scan.class_names,
        **how,
    )
    cache = DecodeCache(cache_root)
    if stream is not True and (hit := cache.get(key)) is not None:
        return _cached_split(folder, scan, key, *hit)
    resized = (
        _resize_notes(scan, image_size, resize, workers, crop_fraction)
        if image_size is not None
        else []
    )
    if stream is not False:
        size, notes = (image_size, image_size), list(resized)
        if target is not None:
            size, notes = target, scaled
        elif image_size is None:
            size, counts = sampled or _sample_size(scan, workers)
            notes = _sample_notes(counts, size, resize)
        estimate = len(scan.paths) * size[0] * size[1] * 3
        if stream is None:
            stream = estimate > STREAM_ABOVE_BYTES
            if stream:
                notes.append(
                    f"streamed from disk: decoded it would take {estimate / 2**30:.1f} GiB, "
                    f"more than {STREAM_ABOVE_BYTES / 2**30:.0f} GiB"
                )
        if stream:
            return StreamingSet(
                scan.paths,
                torch.tensor(scan.labels, dtype=torch.int64),
                scan.class_names,
                size,
                str(folder),
                scan.notes + notes,
                resize=resize,
                crop_fraction=crop_fraction,
            )
    return _decoded_split(
        folder,
        scan,
        key,
        cache,
        image_size or target,
        resized + scaled,
        workers,
        resize,
        crop_fraction,
    )


def _decoded_split(
    folder: Path,
    scan: FolderSplit,
    key: str,
    cache: DecodeCache,
    size: int | tuple[int, int] | None,
    notes: list[str],
    workers: int | None,
    resize: str,
    crop_fraction: float = 1.0,
) -> ImageSet:
    """The split decoded now, at ``size`` (None: the images' own, when all share it), then
    cached with its notes (``notes``: what loading found before decoding) and the files it
    could not read."""
    images, kept, failed, sizes = decode_files(
        scan.paths, size, workers=workers, resize=resize, crop_fraction=crop_fraction
    )
    notes = list(scan.notes) + notes
    if size is None and len(sizes) > 1:
        notes.append(_mixed_sizes_note(sizes, images.shape[1:3], resize))
    skipped_note = report_unreadable(str(folder), failed, len(scan.paths))
    notes += skipped_note
    if not len(kept):
        raise DataError(f"{folder}: none of its {len(scan.paths)} images could be read")
    labels = np.asarray(scan.labels, dtype=np.int64)[kept]
    _check_every_class_read(folder, labels, scan.class_names)
    notes += _copies_note(images, [scan.paths[i] for i in kept], labels, folder)
    _NAMED_UNREADABLE.add(key)
    try:
        decode_notes = notes[len(scan.notes) :]
        meta = {"notes": notes, "decode_notes": decode_notes, "skipped_note": "".join(skipped_note)}
        meta["skipped"] = failed
        meta["kept"] = [int(i) for i in kept]  # which of the scanned files the images are
        cache.put(key, images, labels, meta)
    except OSError as e:
        cache_unwritable(cache.folder.parent, e)
    return ImageSet(
        torch.from_numpy(images),
        torch.from_numpy(labels),
        scan.class_names,
        str(folder),
        notes,
        skipped=failed,
        paths=[scan.paths[i] for i in kept],
    )


def _cached_split(
    folder: Path, scan: FolderSplit, key: str, images: np.ndarray, labels: np.ndarray, meta: dict
) -> ImageSet:
    """A split from the decoding cache, its unreadable files named again (once a process)."""
    skipped = [(path, reason) for path, reason in meta.get("skipped", [])]
    kept = meta.get("kept")
    if isinstance(kept, list) and all(
        isinstance(i, int) and 0 <= i < len(scan.paths) for i in kept
    ):
        paths = [scan.paths[i] for i in kept]
        # The unreadable files as this scan names them: the folder may be given otherwise
        # than when it was decoded (../photos from another folder, a cache given relative).
        unread = sorted(set(range(len(scan.paths))) - set(kept))
        if len(unread) == len(skipped):
            skipped = [(scan.paths[i], why) for i, (_, why) in zip(unread, skipped, strict=True)]
    else:  # a cache written before it recorded them: by name
        unread_names = {path for path, _ in skipped}
        paths = [path for path in scan.paths if path not in unread_names]
    if key not in _NAMED_UNREADABLE:  # a command that loads a folder twice names them once
        for path, reason in skipped:
            warn(skipped_unreadable(path, reason), DataWarning)
        if meta.get("skipped_note"):
            warn(
                f"{folder}: {meta['skipped_note']} (when first decoded; cached since)", DataWarning
            )
    _NAMED_UNREADABLE.add(key)
    return ImageSet(
        torch.from_numpy(images),
        torch.from_numpy(labels),
        scan.class_names,
        str(folder),
        # What the folder holds besides (scanned now: a file may have come or gone without
        # changing the images), then what decoding found.
        scan.notes + meta["decode_notes"] if "decode_notes" in meta else meta["notes"],
        skipped=skipped,
        paths=paths if len(paths) == len(labels) else None,
    )


def _copies_note(
    images: np.ndarray, paths: list[str], labels: np.ndarray, folder: Path
) -> list[str]:
    """A note on images that are copies of others (the same pixels as loaded: a photo saved
    twice, as ``IMG_1000.JPG`` and ``IMG_1000 (1).JPG``, say). A held-out split of the folder
    can put a copy in validation while its twin trains, which flatters the validation
    accuracy; and twins in two classes contradict each other."""
    first: dict[bytes, int] = {}
    twins = []  # (copy, the first image with its pixels)
    for i, digest in enumerate(pixel_digests(images)):
        j = first.setdefault(digest, i)
        if j != i:
            twins.append((i, j))
    if not twins:
        return []
    twins.sort(key=lambda t: bool(labels[t[0]] == labels[t[1]]))  # twins in two classes first

    def name(i: int) -> str:
        return os.path.relpath(paths[i], folder)

    shown = ", ".join(f"{name(i)} = {name(j)}" for i, j in twins[:3])
    more = f" and {len(twins) - 3:,} more" if len(twins) > 3 else ""
    text = (
        f"{len(twins):,} image{'s are copies' if len(twins) > 1 else ' is a copy'} of another "
        f"(the same pixels): {shown}{more}; copies count twice, and a held-out split can put "
        "a copy in validation while its twin trains"
    )
    classes = sum(int(labels[i] != labels[j]) for i, j in twins)
    if classes:
        text += (
            f"; {classes:,} in another class than {'their twins' if classes > 1 else 'its twin'}"
        )
    return [text + ": delete the copies"]


def _check_every_class_read(folder: Path, labels: np.ndarray, class_names: list[str]) -> None:
    """A class none of whose images could be read is an error, as an empty class folder is."""
    unread = [name for i, name in enumerate(class_names) if not (labels == i).any()]
    if unread:
        raise DataError(
            f"{folder}: none of the images of class {', '.join(unread)} could be read; replace "
            "them with images that open, or remove the class"
        )


def _sizes_listed(sizes: Counter) -> str:
    """``mixed image sizes: 80x60 (19), 60x80 (1)``: the most common five, with counts."""
    listed = ", ".join(f"{format_size(s)} ({n:,})" for s, n in sizes.most_common(5))
    more = f" and {len(sizes) - 5} more" if len(sizes) > 5 else ""
    return f"mixed image sizes: {listed}{more}"


def _resized_how(resize: str) -> str:
    return "centre-cropped" if resize == "crop" else "squashed"


def _mixed_sizes_note(sizes: Counter, used: tuple[int, int], resize: str) -> str:
    return (
        f"{_sizes_listed(sizes)}; all resized to the most common, "
        f"{format_size(used)} ({_resized_how(resize)} where the shape differs: --resize)"
    )


def _resize_notes(
    scan: FolderSplit, image_size: int, resize: str, workers: int | None, crop_fraction: float
) -> list[str]:
    """Notes on what resizing does to most images (more than half of a sample): the size
    note (``_size_note``), and for a crop of images at least ``ELONGATED`` times as long as
    they are wide, how little of them the square keeps (less again where ``crop_fraction``
    keeps less than the whole shorter side)."""
    try:
        _, counts = _sample_size(scan, workers)
    except DataError:
        return []  # none readable in the sample: decoding says which files
    notes = _size_note(counts, image_size, resize, crop_fraction)
    long = {s for s in counts if max(s) >= ELONGATED * min(s)}
    if resize == "crop" and sum(counts[s] for s in long) > sum(counts.values()) / 2:
        h, w = max(long, key=lambda s: (counts[s], s))  # the most common such shape
        notes.append(
            f"the crop keeps the centre square of most images, which are {ELONGATED} or more "
            f"times as long as they are wide ({format_size((h, w))}: "
            f"{crop_fraction * min(h, w) / max(h, w):.0%} of it); --resize squash keeps them whole"
        )
    return notes


def _size_note(
    counts: Counter, image_size: int, resize: str = "squash", crop_fraction: float = 1.0
) -> list[str]:
    """A note when most images are at most half the size they are decoded at (28 px photos
    trained at a model's 224 px: 64 times the pixels, and the time, for no more detail), or
    ``SHRUNK_FACTOR`` times it and more (480 px photos at 32 px: little of their detail);
    named by their size where they share one, and saying where ``resize_plan`` scales most
    of them past the input size and keeps the centre (a crop fraction below 1, or a crop of
    images that are not square)."""

    def size(sizes: set[tuple[int, int]]) -> str:
        target = (image_size, image_size)
        past = [s for s in sizes if resize_plan(s, target, resize, crop_fraction)[0] != target]
        cut = sum(counts[s] for s in past) * 2 > sum(counts[s] for s in sizes)
        return (
            f"{'and centre-cropped ' if cut else ''}to {image_size}x{image_size} (the input size)"
        )

    half = sum(counts.values()) / 2
    # Counted over every size, not read off the most common one, which in a folder of
    # mixed sizes may be a small share of it.
    small = {s for s in counts if enlarged(s, image_size)}
    if sum(counts[s] for s in small) > half:
        one = len(small) == 1
        sizes = format_size(min(small)) if one else f"at most {image_size // 2} px a side"
        return [f"{ENLARGED_NOTE} {sizes}, enlarged {size(small)}"]
    large = {s for s in counts if min(s) >= SHRUNK_FACTOR * image_size}
    if sum(counts[s] for s in large) > half:
        one = len(large) == 1
        sizes = (
            format_size(min(large))
            if one
            else f"at least {SHRUNK_FACTOR * image_size} px on their shorter side"
        )
        return [f"{SHRUNK_NOTE} {sizes}, shrunk {size(large)}"]
    return []


def _scaled_size(
    native: tuple[int, int], counts: Counter, max_side: int, resize: str
) -> tuple[tuple[int, int] | None, list[str]]:
    """The size to load a folder at without an image size, given the most common native
    size in a sample of headers (``_sample_size``), and the one note that says which and
    why: a square where the sample holds both portrait and landscape images (the most
    common size's shorter side, ``max_side`` at most), so that each is cut (or squashed)
    alike, where the most common shape would turn the others; else None (that size, as
    decoding finds it) unless it is larger than ``max_side``, then it scaled down to
    ``max_side``."""
    # Flags as on the command line, as in the notes of decoding: cached with the images.
    how, other = _resized_how(resize), "--input-size loads them at another size"
    if any(h > w for h, w in counts) and any(w > h for h, w in counts):
        side = min(*native, max_side)
        return (side, side), [
            f"{_sizes_listed(counts)} (from a sample), portrait and landscape: all loaded "
            f"square, at {side}x{side} ({how}; {other})"
        ]
    if max(native) <= max_side:
        return None, []
    scale = max_side / max(native)
    size = (max(1, round(native[0] * scale)), max(1, round(native[1] * scale)))
    loaded = f"loaded at {format_size(size)}, scaled down from"
    if len(counts) == 1:
        return size, [f"{loaded} {format_size(native)} ({other})"]
    return size, [
        f"{_sizes_listed(counts)} (from a sample); all {loaded} the most common, "
        f"{format_size(native)} ({how} where the shape differs: --resize; {other})"
    ]


def _sample_size(scan: FolderSplit, workers: int | None) -> tuple[tuple[int, int], Counter]:
    """The most common native size among a seeded sample of file headers, and the count of
    each size in the sample."""
    paths = scan.paths
    sample = paths if len(paths) <= SIZE_SAMPLE else random.Random(0).sample(paths, SIZE_SAMPLE)
    sizes, failed = read_header_sizes(sample, workers=workers)
    counts = Counter(s for s in sizes if s is not None)
    if not counts:
        raise DataError(
            f"{scan.root}: none of {len(sample)} sampled images could be read (first: "
            f"{failed[0][0]}: {failed[0][1]})"
        )
    return counts.most_common(1)[0][0], counts


def _sample_notes(counts: Counter, used: tuple[int, int], resize: str) -> list[str]:
    """A note on mixed sizes in a sample (``_sample_size``), all resized to ``used``."""
    note = _mixed_sizes_note(counts, used, resize) + " (from a sample)"
    return [note] if len(counts) > 1 else []
