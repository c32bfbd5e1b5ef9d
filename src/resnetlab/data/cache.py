"""The cache folder: decoded images, extracted archives, downloads.

Decoded image folders are kept as ``.npy`` files keyed by what was decoded (every file's
path, size and modification time, and the requested image size), so a second load of an
unchanged folder reads one array instead of decoding thousands of files. Any change to a
file gives a new key; stale entries are never read, only left behind. The whole folder can
be deleted at any time.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import CacheWarning, path_argument, warn

# Bump when the decoded pixels for the same files would change (decoder or resize changes).
DECODE_VERSION = 1
# Bump when only crops' pixels change (``decode.resize_plan``): the key of a folder whose
# images are cut holds it (cropped, or squashed past the size by a crop fraction below 1:
# ``decode_key``), and folders squashed straight to the size keep their cache. 2: a crop's
# longer side truncated as torchvision's Resize truncates it, not rounded.
CROP_VERSION = 2


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$RESNETLAB_CACHE``, else ``$XDG_CACHE_HOME/resnetlab`` (where
    that is an absolute path, as the XDG base directory rules ask), else
    ``~/.cache/resnetlab``; without a home folder (no ``HOME``, a user unknown to the system,
    as in a container), a temporary folder that lasts as long as the process, said once."""
    if cache_dir is not None:  # "" is not the current folder, to fill with .npy files
        given = path_argument(cache_dir, "the cache folder", "one, or leave it out", reading=False)
        return Path(given)
    env = os.environ.get("RESNETLAB_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):  # as torch hub and matplotlib take it
        return Path(xdg) / "resnetlab"
    try:
        return Path.home() / ".cache" / "resnetlab"
    except RuntimeError:  # "Could not determine home directory"
        return _process_cache()


@functools.cache
def _process_cache() -> Path:
    root = Path(tempfile.mkdtemp(prefix="resnetlab-cache-"))  # this user's alone
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    warn(
        "no home folder to keep the cache in (HOME is not set and this user has none): "
        f"caching in {root} for this command only; set RESNETLAB_CACHE to a folder you can "
        "write to",
        CacheWarning,
    )
    return root


# The cache folders this process has said it cannot write to: once each, not once a split
# or once a use (decoded images, CPU timings).
_UNWRITABLE: set[Path] = set()


def cache_unwritable(root: Path, error: OSError) -> None:
    """Warn, once a process for ``root``, that the cache folder cannot be written: it costs
    time (images decoded, the CPU measured again by the next command), never the command."""
    if root in _UNWRITABLE:
        return
    _UNWRITABLE.add(root)
    warn(
        f"cannot write the cache folder {root} ({error.strerror or error}): what it would keep "
        "(decoded images, CPU timings) is made again by the next command; set RESNETLAB_CACHE "
        "to a folder you can write to",
        CacheWarning,
    )


def file_key(path: Path) -> str:
    """Identifies a file's current contents cheaply: resolved path, size, mtime."""
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def decode_key(stamps: Iterable[str], **params: object) -> str:
    """A hex digest of the files' stamps (path, size, mtime each) and the decoding parameters.

    Images squashed with a ``crop_fraction`` below 1 are cut to their centre by
    ``decode.resize_plan`` as crops are, so their key holds ``CROP_VERSION`` too.
    """
    if params.get("crop_fraction", 1) != 1:
        params.setdefault("crop_version", CROP_VERSION)
    h = hashlib.sha256(f"v{DECODE_VERSION}|{json.dumps(params, sort_keys=True)}".encode())
    h.update("\n".join(stamps).encode("utf-8", "surrogateescape"))  # any file name
    return h.hexdigest()[:32]


class DecodeCache:
    """Decoded uint8 arrays with their labels and metadata, under ``<root>/decoded``."""

    def __init__(self, root: Path) -> None:
        self.folder = root / "decoded"

    def _paths(self, key: str) -> tuple[Path, Path, Path]:
        base = self.folder / key
        return (
            base.with_suffix(".images.npy"),
            base.with_suffix(".labels.npy"),
            base.with_suffix(".json"),
        )

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray, dict] | None:
        images_path, labels_path, meta_path = self._paths(key)
        try:
            meta = json.loads(meta_path.read_text())
            images = np.load(images_path)
            labels = np.load(labels_path)
        except (OSError, ValueError):
            return None  # absent, or a partial entry from a crashed writer: decode again
        if len(images) != len(labels) or len(images) != meta.get("count"):
            return None
        return images, labels, meta

    def put(self, key: str, images: np.ndarray, labels: np.ndarray, meta: dict) -> None:
        """Write an entry; the metadata goes last, so a reader never sees a partial one."""
        self.folder.mkdir(parents=True, exist_ok=True)
        images_path, labels_path, meta_path = self._paths(key)
        for path, array in ((images_path, images), (labels_path, labels)):
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            try:
                with open(tmp, "wb") as f:
                    np.save(f, array)
                os.replace(tmp, path)
            finally:  # a full disk leaves no partial file taking the space
                tmp.unlink(missing_ok=True)
        tmp = meta_path.with_name(f"{meta_path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps({**meta, "count": len(images)}))
            os.replace(tmp, meta_path)
        finally:
            tmp.unlink(missing_ok=True)
