"""Decoding image files to uint8 RGB arrays, one at a time or many in parallel.

Every path that turns an image file into pixels goes through ``read_image``: the in-memory
decode of a folder, the streaming loader's workers, and prediction on a single file. So a
model sees the same pixels for the same file however it was fed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import math
import multiprocessing
import os
import re
import sys
import tempfile
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import (
    DataError,
    DataWarning,
    ResnetlabError,
    WorkersLost,
    count_argument,
    option,
    path_argument,
    shown,
    warn,
)
from ..options import CROP_FRACTIONS, RESIZE_MODES, is_crop_fraction
from ..storage import is_web_page

# Lower-case suffixes of the files a folder scan treats as images; anything else is ignored.
# .jfif and .jpe are JPEGs too: what a browser on Windows names the photos it saves.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jfif", ".jpe", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
    | {".ppm", ".pgm", ".pbm"}
    | ({".avif"} & set(Image.registered_extensions()))  # Pillow 11.2+ built with libavif
)
# Photo formats Pillow cannot read by itself: a folder's files of these are named with the fix.
CONVERT_FIRST = {".heic": "HEIC", ".heif": "HEIF", ".avif": "AVIF", ".dng": "DNG raw"}
# And a camera's own raw files, as a photographer's folders hold them beside or instead of
# JPEGs: Canon, Nikon, Sony, Fujifilm, Olympus, Panasonic, Pentax.
CONVERT_FIRST |= dict.fromkeys(
    (".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2", ".pef"), "camera raw"
)


# The brand of an ISO media file (its "ftyp" box, bytes 8-12) for the photo formats above:
# an iPhone's HEIC photos are often exported or renamed with a .jpg suffix they do not fit.
_FTYP_BRANDS = {
    **dict.fromkeys((b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"), "HEIC"),
    **dict.fromkeys((b"mif1", b"msf1"), "HEIF"),
    **dict.fromkeys((b"avif", b"avis"), "AVIF"),
}


def format_to_convert(name: str | os.PathLike) -> str | None:
    """The photo format of ``name`` (``HEIC``...) when it is one that needs converting to
    JPEG or PNG first (``CONVERT_FIRST``, unless this Pillow reads it), else None."""
    suffix = os.path.splitext(str(name))[1].lower()
    return None if suffix in IMAGE_EXTENSIONS else CONVERT_FIRST.get(suffix)


def convert_first(name: str | os.PathLike, photo: str) -> str:
    """Why ``name``, a ``photo`` file by its name (``format_to_convert``), is not read."""
    return f"{name}: {photo} photos cannot be read here; convert it to JPEG or PNG first"


# More than this fraction of unreadable files means the folder itself is wrong (the wrong
# format, a half-finished copy), not that a few files are damaged: loading stops. One
# damaged file is skipped however few the others (as in a folder of a dozen photos).
MAX_UNREADABLE_FRACTION = 0.05


def unreadable_allowed(total: int) -> float:
    """How many of ``total`` files may be unreadable before loading stops."""
    return max(MAX_UNREADABLE_FRACTION * total, 1)


# Below this many files a process pool costs more to start than it saves.
PARALLEL_MIN_FILES = 1000
_CHUNK = 256

# How the note on a split's unreadable files begins (they were each warned about).
UNREADABLE_NOTE = "skipped"


def unreadable_fix() -> str:
    """What too many unreadable files mean, and what to do, whether decoded now or streamed."""
    return (
        "means the folder is not what it should be: remove or replace the files the warnings "
        f"name, or point {option('data')} at the image folder"
    )


# What PIL raises on a damaged, unsupported or hostile file (a decompression bomb: an image
# of hundreds of millions of pixels). The one list every reader of image files catches.
READ_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


# Why Pillow could not open a file that it does not recognise at all.
NOT_AN_IMAGE = "not an image format Pillow can read"


def read_error_reason(error: BaseException) -> str:
    """Why a file could not be read as an image, in words a user acts on (one of
    ``READ_ERRORS``; the exception's class name only where its words alone are unclear)."""
    text = str(error)
    if isinstance(error, UnidentifiedImageError):  # Pillow's words, or ours (HEIC as .jpg)
        said_by_pillow = text.startswith("cannot identify image file")
        return NOT_AN_IMAGE if said_by_pillow else text
    if isinstance(error, FileNotFoundError):  # the system's words, or ours (a broken link)
        return "no such file" if error.filename else text
    if isinstance(error, IsADirectoryError):
        return "it is a folder"
    if isinstance(error, PermissionError):
        return "no permission to read it"
    if "truncated" in text.lower():
        return "the file is truncated, as a copy or download that stopped leaves it"
    if type(error) in (OSError, Image.DecompressionBombError):  # PIL's words, or ours
        return text
    return f"{type(error).__name__}: {text}"


def unreadable_image(name: object, error: BaseException) -> str:
    """The one line for an image file that could not be decoded: its name and why."""
    return str(UnreadableImage(name, read_error_reason(error)))


def skipped_unreadable(path: object, reason: str) -> str:
    """The one warning for an image that reading a folder skips, as it cannot decode it:
    training's, eval's and predict's alike. ``reason``: ``read_error_reason``'s."""
    return f"{path}: skipped, cannot read it ({reason})"


class UnreadableImage(DataError):
    """An image file that could not be decoded, said as ``unreadable_image`` says it;
    ``path`` and ``reason`` (``read_error_reason``'s) kept apart for the warning of one
    skipped in a folder (``skipped_unreadable``)."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path} is not a readable image ({reason})")
        self.path = path
        self.reason = reason

    def __reduce__(self):  # pickled (from a worker process) with its own arguments
        return type(self), (self.path, self.reason)


Size = tuple[int, int]  # (height, width)


def resize_plan(
    size: Size, target: Size, resize: str = "crop", crop_fraction: float = 1.0
) -> tuple[Size, tuple[int, int]]:
    """How an image of ``size`` meets ``target``: the (height, width) to scale it to, and
    the (top, left) of the ``target`` window to cut from it, centred as torchvision centres.

    The one rule of every reader (predict, eval, serve, explain, the training folders):
    ``crop`` scales the shorter side to ``target / crop_fraction`` keeping the aspect ratio,
    ``squash`` the whole image to it; the window is the centre. With ``crop_fraction``
    0.875 at 224 this is torchvision's ImageNet evaluation, ``Resize(256)`` then
    ``CenterCrop(224)``; at 1 the image is scaled straight to the target.
    """
    (h, w), (th, tw) = size, target
    # timm's floor(size / crop_pct); the margin keeps 224 / (224 / 232) at 232, not 231.
    rh, rw = (math.floor(side / crop_fraction + 1e-6) for side in target)
    if resize == "squash":
        sh, sw = rh, rw
    elif rh * w >= rw * h:  # the height reaches its side last: it decides the scale
        # The other side as torchvision's Resize computes it, int(256 * long / short).
        sh, sw = rh, max(rw, int(rh * w / h))
    else:
        sh, sw = max(rh, int(rw * h / w)), rw
    return (sh, sw), (round((sh - th) / 2), round((sw - tw) / 2))


def fit_image(
    im: Image.Image, target: Size, resize: str = "squash", crop_fraction: float = 1.0
) -> Image.Image:
    """``im`` at ``target`` (height, width) as ``resize_plan`` says."""
    if crop_fraction == 1:
        if im.size == (target[1], target[0]):
            return im
        if resize == "squash":  # the whole image, nothing cut
            return im.resize((target[1], target[0]), Image.BILINEAR)
    (sh, sw), (top, left) = resize_plan((im.height, im.width), target, resize, crop_fraction)
    # The window's region of the image scaled alone: the same pixels (to a level of
    # rounding) as scaling the whole image and cutting, without making that whole image,
    # which for a 1 x 100,000 strip at 224 px would be 15 GB.
    x, y = sw / im.width, sh / im.height
    box = (left / x, top / y, (left + target[1]) / x, (top + target[0]) / y)
    return im.resize((target[1], target[0]), Image.BILINEAR, box=box)


def as_size(size: int | Size | None) -> Size | None:
    """``size`` as ``(height, width)``; one line for a size that is none (PIL's TypeError or
    'height and width must be > 0' otherwise). Argument errors are no ``READ_ERRORS``: they
    are not a file's, to be skipped as unreadable."""
    if size is None:
        return None
    sides = tuple(size) if isinstance(size, tuple | list) else (size, size)
    if len(sides) != 2:
        raise ResnetlabError(f"size must be a side or (height, width), got {shown(size)}")
    return count_argument(sides[0], "size's height"), count_argument(sides[1], "size's width")


def resize_argument(resize: object) -> str:
    """``resize`` when it is one of ``RESIZE_MODES``, else one line (anything else was
    taken as a squash)."""
    if resize not in RESIZE_MODES:
        raise ResnetlabError(f"unknown resize {shown(resize)}; choose {', '.join(RESIZE_MODES)}")
    return resize


def crop_fraction_argument(crop_fraction: object) -> float:
    """``crop_fraction`` as a float when it is one (``options.is_crop_fraction``), else one
    line."""
    if not is_crop_fraction(crop_fraction):
        raise ResnetlabError(f"crop_fraction must be {CROP_FRACTIONS}, got {shown(crop_fraction)}")
    return float(crop_fraction)


def read_image(
    path: str | os.PathLike | BinaryIO | Image.Image,
    size: int | Size | None = None,
    resize: str = "squash",
    crop_fraction: float = 1.0,
) -> np.ndarray:
    """Decode one image file to a uint8 (H, W, 3) RGB array.

    Any mode PIL reads becomes RGB: grayscale and 1-bit are repeated over the channels,
    16- and 32-bit grayscale are scaled to 8 bits (not clipped), transparency is composited
    over black, palette and CMYK images are converted. EXIF orientation is applied, so a
    phone photo comes out the way a viewer shows it.

    Args:
        path: an image file (a path or an open binary file), or an image PIL has open:
            read as its file is, except that a JPEG is decoded at full size (from a file,
            libjpeg decodes at the scale the size allows), and it is left open.
        size: resize to ``size`` x ``size`` (or ``(height, width)``) with bilinear
            interpolation (antialiased when shrinking); ``None`` keeps the native size.
        resize: ``squash`` or ``crop`` (see ``RESIZE_MODES``) when the aspect ratios differ.
        crop_fraction: the share of the resized side kept around the centre
            (``resize_plan``): 0.875 resizes to 256 for a size of 224; 1 to the size.

    Raises:
        One of ``READ_ERRORS``: the file is not a readable image.
        ResnetlabError: an argument that is none of the above (not one of those, so that
            it is not counted as an unreadable file).
    """
    if isinstance(path, bytes | bytearray) or not (
        isinstance(path, str | os.PathLike | Image.Image) or hasattr(path, "read")
    ):
        wrap = "; give io.BytesIO(data) for an image's bytes" if isinstance(path, bytes) else ""
        raise ResnetlabError(
            "read_image takes an image file (a path or an open binary file) or a PIL image, "
            f"not {type(path).__name__}{wrap}"
        )
    if isinstance(path, str | os.PathLike):  # '' is not the current folder
        path = path_argument(path, "the image file")
    target = as_size(size)
    resize_argument(resize)
    crop_fraction = crop_fraction_argument(crop_fraction)
    given = isinstance(path, Image.Image)
    name = str(path) if isinstance(path, str | os.PathLike) else getattr(path, "filename", "")
    with (
        _metadata_warnings(name or getattr(path, "name", "") or "an image"),
        contextlib.nullcontext(path) if given else _open(path) as im,
    ):
        if target is not None and im.format in ("JPEG", "MPO") and not given:
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the target is that small:
            # big photos shrunk to 64x64 decode several times faster. A crop needs its
            # longer side whole, before any EXIF rotation: ask for that on both sides. MPO
            # is how Pillow opens a JPEG that carries more pictures after the first (many
            # phones' and cameras' photos): the first is a JPEG like any other.
            (sh, sw), _ = resize_plan((im.height, im.width), target, resize, crop_fraction)
            im.draft("RGB", (sw, sh) if resize == "squash" else (max(sh, sw),) * 2)
        im.load()
        if not im.width or not im.height:  # a crop of nothing: there is nothing to resize
            raise OSError(f"it has no pixels: {im.width}x{im.height}")
        if im.format == "TIFF" or "exif" in im.info:
            im = ImageOps.exif_transpose(im)
        im = _to_rgb(im)
        if target is not None:
            im = fit_image(im, target, resize, crop_fraction)
        return np.array(im, dtype=np.uint8)  # writable, unlike np.asarray of a PIL image


# What Pillow says of damaged data it reads past ("Corrupt EXIF data", "Truncated File
# Read"): a UserWarning from one of its modules, as ``warnings.filterwarnings`` takes them
# (category, module pattern). ``_metadata_warnings`` tells the same ones by their file.
PILLOW_DAMAGE_WARNINGS = (UserWarning, r"PIL\.")


def _in_main_thread() -> bool:
    """Whether ``warnings.catch_warnings`` is safe here: it swaps process-wide state, which
    threads decoding at once (``serve``'s) would restore out of order."""
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _ignoring(category: type[Warning], module: str = "") -> Iterator[None]:
    """Warnings of ``category`` (from ``module``, a regular expression) ignored, in a main
    thread; elsewhere they pass as they are (``_in_main_thread``)."""
    if not _in_main_thread():
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=category, module=module)
        yield


# The other warnings ``_metadata_warnings`` caught and sent on, by text and place: each is
# sent once, as Python shows a warning once per place. (Python's own record of that is
# cleared each time ``catch_warnings`` ends, that is after every image.)
_SENT_ON: set[tuple[str, type[Warning], str, int]] = set()


@contextlib.contextmanager
def _metadata_warnings(name: str) -> Iterator[None]:
    """Pillow's warnings on metadata it skips while reading an image ("Corrupt EXIF data",
    "Tag data larger than file"), which name no file and can come by the dozen for one
    folder, as one warning that names the file. The pixels are read all the same.

    Only in a main thread (``_in_main_thread``); other threads leave Pillow's as they are.
    """
    if not _in_main_thread():
        yield
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    from_pillow = [
        w
        for w in caught  # its words on damaged data; a deprecation, say, passes as it is
        if f"{os.sep}PIL{os.sep}" in w.filename and issubclass(w.category, UserWarning)
    ]
    for w in caught:
        sent = (str(w.message), w.category, w.filename, w.lineno)
        if w not in from_pillow and sent not in _SENT_ON:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            _SENT_ON.add(sent)
    if from_pillow:
        said = "; ".join(dict.fromkeys(str(w.message).strip() for w in from_pillow))
        warn(
            f"{name}: part of its metadata is damaged and was skipped (Pillow: {said}); "
            "the image is kept (as stored, unturned, if its EXIF orientation was in that part)",
            DataWarning,
        )


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode.startswith("I") or im.mode == "F":
        # 16/32-bit grayscale: PIL's own conversion clips everything above 255 to white.
        a = np.asarray(im, dtype=np.float64)
        if im.mode.startswith("I;16") or (im.mode == "I" and a.max() > 255):
            a = a * (255 / 65535)
        elif im.mode == "F" and a.max() <= 1.0:
            a = a * 255
        gray = np.clip(np.round(a), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode == "La":  # premultiplied, which Pillow converts to LA and to nothing else
        im = im.convert("LA")
    if im.mode in ("LA", "PA"):
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "RGBa"):
        # Over black, so a transparent pixel does not show whatever colour it happens to hold.
        black = Image.new("RGBA", im.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, im.convert("RGBA")).convert("RGB")
    return im.convert("RGB")


def in_a_loop(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a link in a loop of links (``a -> b -> a``), which never reaches
    a file, rather than one whose chain ends at something gone (``a -> b -> gone``)."""
    try:
        os.stat(path)
    except OSError as e:
        return e.errno == errno.ELOOP
    return False


def dead_link(path: str | os.PathLike) -> str | None:
    """Why ``path``, a link that leads to no file or folder, leads nowhere (its target gone,
    or a loop of links: ``a -> b -> a``); None where it is no such link."""
    if not os.path.islink(path) or os.path.exists(path):
        return None
    target = os.readlink(path)
    if in_a_loop(path):
        return f"a link to {target}, one of a loop of links that never reaches a file"
    if os.path.islink(os.path.join(os.path.dirname(path), target)):  # a -> b -> gone
        return f"a link to {target}, a link that leads to nothing"
    return f"a link to {target}, which does not exist"


def _open(path: str | os.PathLike | BinaryIO) -> Image.Image:
    """``Image.open``, refusing (``DecompressionBombError``) an image of more pixels than
    PIL's decompression-bomb limit, which PIL itself only warns about below twice it; an
    empty file is said to be one (PIL: "cannot identify image file")."""
    if isinstance(path, str | os.PathLike) and os.path.isfile(path) and not os.path.getsize(path):
        raise OSError("the file is empty (0 bytes)")
    if isinstance(path, str | os.PathLike) and (why := dead_link(path)):
        raise FileNotFoundError(why)
    fix = "save a smaller copy of it to use it"
    with _ignoring(Image.DecompressionBombWarning):
        start = _position(path)
        try:
            im = Image.open(path)
        except Image.DecompressionBombError as e:  # twice the limit and more: PIL refuses
            said = re.search(r"\((\d+) pixels\)", str(e))  # its size, in PIL's words
            pixels = f"{int(said[1]):,} pixels" if said else str(e).rstrip(".")
            raise Image.DecompressionBombError(_too_many_pixels(pixels, fix)) from None
        except UnidentifiedImageError:
            if (held := _what_it_holds(path, start)) is None:
                raise
            raise UnidentifiedImageError(held) from None
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and im.width * im.height > limit:
        im.close()
        pixels = f"{im.width}x{im.height} is {im.width * im.height:,} pixels"
        raise Image.DecompressionBombError(_too_many_pixels(pixels, fix))
    return im


def _too_many_pixels(pixels: str, fix: str) -> str:
    """Why an image of ``pixels`` is refused, the same at any size over the limit."""
    return (
        f"{pixels}, more than PIL's decompression-bomb limit of {Image.MAX_IMAGE_PIXELS:,} "
        f"(which guards against files made to exhaust memory); {fix}"
    )


def _position(file: str | os.PathLike | BinaryIO) -> int | None:
    """Where an open file is, None where it cannot say (a pipe: Pillow reads those too)."""
    if isinstance(file, str | os.PathLike):
        return 0
    try:
        return file.tell()
    except (OSError, ValueError, AttributeError):
        return None


def _what_it_holds(path: str | os.PathLike | BinaryIO, start: int | None) -> str | None:
    """What a file Pillow cannot identify holds, where its first bytes say and it is not
    what its name says: a photo format of ``CONVERT_FIRST`` (an iPhone's HEIC as .jpg), or a
    web page (a browser's "save link as" on a picture, a scraper's error page)."""
    try:
        if isinstance(path, str | os.PathLike):
            with open(path, "rb") as f:
                head = f.read(512)
        elif start is None:
            return None
        else:
            path.seek(start)
            head = path.read(512)
            path.seek(start)
    except (OSError, ValueError):
        return None
    if head[4:8] == b"ftyp" and (photo := _FTYP_BRANDS.get(head[8:12])):
        return (
            f"it holds a {photo} photo, whatever its name says, which Pillow cannot read; "
            "convert it to JPEG or PNG first"
        )
    if is_web_page(head):
        return (
            "it is a web page (HTML), not an image: saved from a link or a page rather than "
            "the picture itself; save the image again"
        )
    return None


def read_header_size(path: str | os.PathLike) -> Size:
    """(height, width) from the file's header, without decoding the pixels."""
    # Pillow's warnings on damaged EXIF data are read_image's to give, naming the file.
    with _ignoring(*PILLOW_DAMAGE_WARNINGS), _open(path) as im:
        width, height = im.size
        turned = (im.format == "TIFF" or "exif" in im.info) and im.getexif().get(0x0112, 1)
        if im.format == "TIFF" and im.size != (im.tag_v2.get(256), im.tag_v2.get(257)):
            turned = 1  # a newer Pillow turns a TIFF itself, its size too: not again
    if turned in (5, 6, 7, 8):  # a quarter turn: read_image swaps the sides
        width, height = height, width
    return height, width


def _read_chunk(
    paths: Sequence[str], size: Size | None, resize: str, crop_fraction: float
) -> list[np.ndarray | str]:
    out: list[np.ndarray | str] = []
    for p in paths:
        try:
            out.append(read_image(p, size, resize, crop_fraction))
        except READ_ERRORS as e:
            out.append(read_error_reason(e))
    return out


def _header_chunk(paths: Sequence[str]) -> list[Size | str]:
    out: list[Size | str] = []
    for p in paths:
        try:
            out.append(read_header_size(p))
        except READ_ERRORS as e:
            out.append(read_error_reason(e))
    return out


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity), whatever share of them a CPU quota
    allows: the count that the machine's load is measured against."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def usable_cpus(root: str | os.PathLike = "/") -> int:
    """The CPUs this process can keep busy: ``available_cpus``, or fewer where a CPU quota
    (``cpu_quota``) allows less (rounded up: 1.5 CPUs' worth keeps 2 busy part of the time).
    What worker pools and PyTorch's thread count are sized by: in a container limited to 2
    CPUs (``docker --cpus=2``, a Kubernetes CPU limit) on a 32-core host, the affinity still
    names 32 cores, and 32 threads that the quota throttles run far slower than 2."""
    quota = cpu_quota(root)
    cpus = available_cpus()
    return cpus if quota is None else max(1, min(cpus, math.ceil(quota[0])))


def cpu_quota(root: str | os.PathLike = "/") -> tuple[float, str] | None:
    """The CPU quota of this process's control groups, in CPUs (quota over period), and the
    setting that gives it (``cpu.max 200000 100000``); None where none applies or none can be
    read (not Linux, a file missing or unreadable). Read from ``root``'s ``proc`` and ``sys``:
    cgroup v2 (``cpu.max``) and v1 (``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``, -1 for
    none), at the process's group and each group above it, where a limit holds too; the
    smallest wins."""
    root = Path(root)
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    found: list[tuple[float, str]] = []
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        hierarchy, controllers, path = fields
        if hierarchy == "0" and controllers == "":  # v2: one hierarchy, at sys/fs/cgroup
            mounts = [root / "sys/fs/cgroup"]
        elif "cpu" in controllers.split(","):  # v1: the cpu controller's own hierarchy
            mounts = [root / "sys/fs/cgroup" / name for name in _CPU_V1_MOUNTS]
        else:
            continue
        for mount in mounts:
            for group in _groups(mount, path):
                quota = _cpu_max(group) if controllers == "" else _cfs_quota(group)
                if quota is not None:
                    found.append(quota)
    return min(found, default=None)


_CPU_V1_MOUNTS = ("cpu,cpuacct", "cpu", "cpuacct,cpu")  # where distributions mount it


def _groups(mount: Path, path: str) -> list[Path]:
    """``path``'s group under ``mount`` and each above it, up to the mount: a process in a
    container with its own cgroup namespace sees ``/``, which is its group's folder."""
    parts = [p for p in path.strip().split("/") if p not in ("", ".", "..")]
    return [mount.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def _cpu_max(group: Path) -> tuple[float, str] | None:
    """cgroup v2: ``cpu.max`` holds ``max 100000`` (no limit) or ``200000 100000``."""
    text = _read_setting(group / "cpu.max")
    fields = text.split() if text is not None else []
    if len(fields) != 2 or fields[0] == "max":
        return None
    return _ratio(fields[0], fields[1], f"cpu.max {fields[0]} {fields[1]}")


def _cfs_quota(group: Path) -> tuple[float, str] | None:
    """cgroup v1: ``cpu.cfs_quota_us`` (-1: no limit) over ``cpu.cfs_period_us``."""
    quota, period = (_read_setting(group / f"cpu.cfs_{n}_us") for n in ("quota", "period"))
    if quota is None or period is None:
        return None
    return _ratio(quota, period, f"cpu.cfs_quota_us {quota}, cpu.cfs_period_us {period}")


def _ratio(quota: str, period: str, source: str) -> tuple[float, str] | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return (q / p, source) if q > 0 and p > 0 else None


def _read_setting(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _map_chunks(
    fn: Callable[..., list], paths: Sequence[str], *args: object, workers: int | None, label: str
) -> list:
    """``fn`` over chunks of ``paths``, in worker processes when there are many."""
    chunks = [list(paths[i : i + _CHUNK]) for i in range(0, len(paths), _CHUNK)]
    workers = min(usable_cpus(), 16) if workers is None else workers
    if len(paths) < PARALLEL_MIN_FILES or workers <= 1:
        results = [fn(c, *args) for c in chunks]
    else:
        # Worker processes, not threads: PIL parses file headers in Python under the GIL,
        # which for small images is most of the work.
        leave_if_starting_a_worker()
        context = multiprocessing.get_context()
        try:
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                futures = [pool.submit(fn, c, *args) for c in chunks]
                results = [f.result() for f in _progress(futures, label, len(paths))]
        except BrokenProcessPool:
            raise workers_stopped("the worker processes decoding the images") from None
    return [r for chunk in results for r in chunk]


def leave_if_starting_a_worker() -> None:
    """Exit, quietly, a worker process that is starting workers of its own: with the
    'spawn' and 'forkserver' start methods (macOS, Windows; Linux from Python 3.14) a worker
    imports the main script again, and a script that calls resnetlab outside
    ``if __name__ == "__main__":`` arrives here in each of them. It leaves a mark that the
    process which started it finds (``workers_stopped``), to say why."""
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        with contextlib.suppress(OSError):
            _unguarded_mark().touch()
        raise SystemExit(1)


def _unguarded_mark() -> Path:
    """The file a worker that ran the main script's resnetlab call leaves: named after the
    key the process that started it shares with its workers (the worker has it before
    it imports the script)."""
    key = hashlib.sha256(bytes(multiprocessing.current_process().authkey)).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"resnetlab-unguarded-{key}"


def workers_stopped(workers: str) -> DataError:
    """The error for ``workers`` (worker processes, named) that stopped without an answer:
    a script without the main guard, where one of them left the mark saying so, else a
    worker killed (out of memory) or crashed."""
    mark = _unguarded_mark()
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    if mark.exists():
        mark.unlink(missing_ok=True)
        method = multiprocessing.get_context().get_start_method()
        return DataError(
            f"{workers} stopped as they started: with the {method!r} start method each one "
            f"runs {os.path.basename(script or 'the main script')} again, so a script must "
            f'call resnetlab under `if __name__ == "__main__":`'
        )
    return WorkersLost(
        f"{workers} stopped without an answer (killed, or out of memory); free memory and run again"
    )


def _progress(futures: list, label: str, total: int) -> list:
    """The futures, with a progress bar on an interactive terminal."""
    if not sys.stderr.isatty():
        return futures
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(f"{label} {total:,} images", total=len(futures))
        for f in futures:
            f.result()
            bar.advance(task)
    return futures


def unwarned(notes: Sequence[str]) -> list[str]:
    """The notes that were not already given as a warning when the images were read (the
    count of unreadable files is): what a command prints under its own ``note:`` lines."""
    return [note for note in notes if not note.startswith(UNREADABLE_NOTE)]


def report_unreadable(source: str, failed: Sequence[tuple[str, str]], total: int) -> list[str]:
    """Warn about each unreadable file and the count; raise above the allowed fraction.

    Returns:
        The notes to keep with the loaded images (empty when nothing failed).
    """
    if not failed:
        return []
    for path, reason in failed:
        warn(skipped_unreadable(path, reason), DataWarning)
    note = f"{UNREADABLE_NOTE} {len(failed)} of {total} images that could not be read"
    if len(failed) > unreadable_allowed(total):
        raise DataError(
            f"{source}: {len(failed)} of {total} images cannot be read (first: {failed[0][0]}: "
            f"{failed[0][1]}); more than {MAX_UNREADABLE_FRACTION:.0%} unreadable "
            f"{unreadable_fix()}"
        )
    warn(f"{source}: {note}", DataWarning)
    return [note]


def read_images(
    paths: Sequence[str],
    size: int | Size | None = None,
    resize: str = "squash",
    *,
    workers: int | None = None,
    crop_fraction: float = 1.0,
) -> list[np.ndarray | str]:
    """``read_image`` of each file, in worker processes when there are many: its pixels, or
    why it could not be read (``read_error_reason``)."""
    crop_fraction = crop_fraction_argument(crop_fraction)
    return _map_chunks(
        _read_chunk, paths, as_size(size), resize, crop_fraction, workers=workers, label="decoding"
    )


def decode_files(
    paths: Sequence[str],
    size: int | Size | None = None,
    *,
    workers: int | None = None,
    resize: str = "squash",
    crop_fraction: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]], Counter]:
    """Decode many image files to one uint8 (N, H, W, 3) array.

    With ``size`` every image is resized to it (``resize_plan``, with ``crop_fraction``);
    without, the most common native size wins and images of other sizes are resized to it
    (``resize``: squashed or centre-cropped).

    Returns:
        ``(images, kept, failed, sizes)``: the stacked images of the readable files,
        the indices into ``paths`` of those files, ``(path, reason)`` for each file that
        could not be read, and the count of each native ``(height, width)``.
    """
    target = as_size(size)
    decoded = read_images(paths, target, resize, workers=workers, crop_fraction=crop_fraction)
    failed = [(p, r) for p, r in zip(paths, decoded, strict=True) if isinstance(r, str)]
    kept = np.array([i for i, r in enumerate(decoded) if not isinstance(r, str)], dtype=np.int64)
    sizes = Counter(r.shape[:2] for r in decoded if not isinstance(r, str))
    if target is None:
        target = sizes.most_common(1)[0][0] if sizes else (1, 1)
    images = np.empty((len(kept), *target, 3), dtype=np.uint8)
    for j, i in enumerate(kept):
        a = decoded[i]
        decoded[i] = None  # free as we go: peak memory stays near one copy
        if a.shape[:2] != target:
            a = np.asarray(fit_image(Image.fromarray(a), target, resize))
        images[j] = a
    return images, kept, failed, sizes


def read_header_sizes(
    paths: Sequence[str], *, workers: int | None = None
) -> tuple[list[Size | None], list[tuple[str, str]]]:
    """Native (height, width) of each file from its header, ``None`` for unreadable ones."""
    results = _map_chunks(_header_chunk, paths, workers=workers, label="reading headers of")
    failed = [(p, r) for p, r in zip(paths, results, strict=True) if isinstance(r, str)]
    return [None if isinstance(r, str) else r for r in results], failed


def format_size(size: Size) -> str:
    """``(height, width)`` as the usual ``WIDTHxHEIGHT``."""
    return f"{size[1]}x{size[0]}"
