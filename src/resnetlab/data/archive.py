"""Safe extraction of ``.tar``/``.tar.gz``/``.zip`` data sets into the cache folder.

Every member is checked before anything is written: a member whose path is absolute or
climbs out with ``..``, and anything that is not a plain file or folder (links, devices),
is refused, so an archive can only ever write inside its own extraction folder; then the
checked members are extracted by ``tarfile`` (with its ``data`` filter) or ``zipfile``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from ..errors import DataError
from .cache import file_key

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip", ".tar.bz2", ".tar.xz")


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def archive_stem(path: Path) -> str:
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _safe_member_path(archive: Path, name: str) -> PurePosixPath:
    """The member's path relative to the extraction folder, or an error if it escapes."""
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or name.startswith(("/", "\\")) or (p.parts and ":" in p.parts[0]):
        raise DataError(
            f"{archive}: member '{name}' has an absolute path; refusing to extract an archive "
            "that writes outside its folder"
        )
    if ".." in p.parts:
        raise DataError(
            f"{archive}: member '{name}' would be written outside the extraction folder; "
            "refusing to extract it"
        )
    return p


def _tar_members(archive: Path, tf: tarfile.TarFile) -> list[tuple[PurePosixPath, tarfile.TarInfo]]:
    out = []
    for m in tf.getmembers():
        rel = _safe_member_path(archive, m.name)
        if not (m.isfile() or m.isdir()):
            kind = "link" if (m.issym() or m.islnk()) else "special file"
            raise DataError(
                f"{archive}: member '{m.name}' is a {kind}; only plain files and folders are "
                "extracted (extract it yourself and pass the folder)"
            )
        out.append((rel, m))
    return out


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> list[tuple[PurePosixPath, zipfile.ZipInfo]]:
    out = []
    for m in zf.infolist():
        rel = _safe_member_path(archive, m.filename)
        # Unix file type bits, when the zip records them (many writers leave them 0).
        kind = stat.S_IFMT(m.external_attr >> 16)
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise DataError(
                f"{archive}: member '{m.filename}' is a link or special file; only plain files "
                "and folders are extracted (extract it yourself and pass the folder)"
            )
        out.append((rel, m))
    return out


def extract_archive(archive: Path, dest: Path) -> None:
    """Extract ``archive`` into the folder ``dest`` (created), checking every member first."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(dest, members=[m for _, m in _zip_members(archive, zf)])
        else:
            with tarfile.open(archive) as tf:
                members = [m for _, m in _tar_members(archive, tf)]
                # Python's "data" filter (3.10.12+, 3.11.4+) also drops unsafe permission bits
                # and ownership; older Pythons extract the members checked above as they are.
                safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tf.extractall(dest, members=members, **safe)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
        raise DataError(f"{archive}: cannot extract it ({type(e).__name__}: {e})") from e


def extraction_folder(archive: Path, cache_root: Path) -> Path:
    """Where ``extracted_folder`` puts ``archive``'s files (there once it has run)."""
    key = hashlib.sha256(file_key(archive).encode()).hexdigest()[:16]
    return cache_root / "extracted" / f"{archive_stem(archive)}-{key}"


def extracted_folder(archive: Path, cache_root: Path) -> Path:
    """The folder ``archive`` unpacks to under ``<cache_root>/extracted``, extracting it once.

    The folder is keyed by the archive's path, size and modification time, and appears only
    when extraction has finished (extract to a temporary name, then rename), so concurrent
    or interrupted runs never see a half-extracted tree.
    """
    final = extraction_folder(archive, cache_root)
    if final.is_dir():
        return final
    tmp = final.with_name(f"{final.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        extract_archive(archive, tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # another process finished first otherwise
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
