"""Safe extraction of ``.tar``/``.tar.gz``/``.zip`` data sets into the cache folder.

Every member is checked before it is written: a member whose path is absolute or climbs
out with ``..``, and anything that is not a plain file or folder (links, devices), is
refused, so an archive can only ever write plain files and folders inside its own
extraction folder; a refusal removes that folder. A zip's members are all checked first,
then extracted by ``zipfile``. A tar is read once, as a stream, and each checked member is
written as it comes (files with default permissions, no owners): ``tarfile.extractall``
would read a compressed archive twice (listing, then extracting) and its ``data`` filter
resolves every path on disk, which made CIFAR-10's 60,000 files take 18 s instead of 4.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from ..errors import DataError, on_command_line, shell_word
from ..models.files import empty_file_problem
from ..storage import check_writable, is_cut_short_zip, permission_problem
from .cache import file_key

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip", ".tar.bz2", ".tar.xz")
# Part of an extraction folder's name: raised when extraction writes other files than before
# (2: zip names in backslashes and in unflagged UTF-8 unpack into their folders), so that a
# cache extracted by an older version is not read as this one's.
EXTRACTION_VERSION = 2
_ZIP_UTF8 = 0x800  # a zip member's flag bit: its name is UTF-8 (else cp437)


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def archive_as_model(path: Path) -> str | None:
    """The line for an archive given where a model file goes (``predict cifar10.tar.gz``,
    ``summary photos.zip``): a data set in it is given as the data, a model file in it is
    extracted first; None when ``path`` is no archive."""
    if not is_archive(path):
        return None
    if on_command_line():
        data = f"after --data: resnetlab eval MODEL_FILE --data {shell_word(path)}"
    else:
        data = f"as the data: resnetlab.evaluate(model_file, {os.fspath(path)!r})"
    return (
        f"{path} is an archive, not a model file: give a data set in it {data}, or extract "
        "a model file from it first"
    )


def archive_stem(path: Path) -> str:
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _safe_member_path(archive: Path, name: str) -> PurePosixPath:
    """The member's path relative to the extraction folder, or an error if it escapes or
    cannot be a file name."""
    if "\0" in name:  # no file system takes it: a damaged or crafted archive
        raise DataError(
            f"{archive}: member {name!r} has a NUL character in its name, which no file can "
            "have; the archive is damaged (extract what you can yourself and pass the folder)"
        )
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


def _on_disk(name: str) -> str:
    """A member's name as a file name: its UTF-8 bytes in the file system's encoding. An
    ASCII locale (``LC_ALL=C`` with UTF-8 mode off) cannot encode "kätzchen" otherwise, and
    the extraction stopped; the folders read back as UTF-8 (``errors.readable``)."""
    return os.fsdecode(name.encode("utf-8", "surrogateescape"))


def _check_tar_member(archive: Path, member: tarfile.TarInfo) -> PurePosixPath:
    """The member's path relative to the extraction folder, if it is one to extract."""
    rel = _safe_member_path(archive, member.name)
    if not (member.isfile() or member.isdir()):
        kind = "link" if (member.issym() or member.islnk()) else "special file"
        raise DataError(
            f"{archive}: member '{member.name}' is a {kind}; only plain files and folders are "
            "extracted (extract it yourself and pass the folder)"
        )
    return rel


def _extract_tar(archive: Path, dest: Path) -> None:
    made = {dest}
    with tarfile.open(archive, mode="r|*") as tf:  # one pass over the compressed stream
        for member in tf:
            rel = _check_tar_member(archive, member)
            target = dest.joinpath(*map(_on_disk, rel.parts))
            folder = target if member.isdir() else target.parent
            if folder not in made:
                folder.mkdir(parents=True, exist_ok=True)
                made.add(folder)
            if member.isfile():
                source = tf.extractfile(member)
                with open(target, "wb") as out:
                    shutil.copyfileobj(source, out)


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> list[tuple[PurePosixPath, zipfile.ZipInfo]]:
    out = []
    for m in zf.infolist():
        if not m.flag_bits & _ZIP_UTF8 and not m.filename.isascii():
            # macOS's Archive Utility writes UTF-8 names without the zip's UTF-8 flag, which
            # zipfile then reads as cp437: class "kätzchen" would be "k├ñtzchen".
            with contextlib.suppress(UnicodeError):  # else cp437 indeed (old Windows zips)
                m.filename = m.filename.encode("cp437").decode("utf-8")
        # Windows tools that wrote pets\cat\1.png (PowerShell 5's Compress-Archive), which other
        # systems would write as one file of that name at the top, where folders were meant.
        m.filename = m.filename.replace("\\", "/")
        rel = _safe_member_path(archive, m.filename)
        # Unix file type bits, when the zip records them (many writers leave them 0).
        kind = stat.S_IFMT(m.external_attr >> 16)
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise DataError(
                f"{archive}: member '{m.filename}' is a link or special file; only plain files "
                "and folders are extracted (extract it yourself and pass the folder)"
            )
        m.filename = _on_disk(m.filename)  # as zipfile's extraction names the file
        out.append((rel, m))
    return out


def extract_archive(archive: Path, dest: Path) -> None:
    """Extract ``archive`` into the folder ``dest`` (created), checking every member; on a
    refusal or a read error ``dest`` is removed."""
    dest.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(dest, members=[m for _, m in _zip_members(archive, zf)])
        elif is_cut_short_zip(archive):  # (not a tar that failed to read)
            raise DataError(
                f"{archive}: a zip archive cut short (the list of its files, at its end, is "
                "missing): copy it again if a copy or download of it stopped"
            )
        else:
            _extract_tar(archive, dest)
    except BaseException as e:
        shutil.rmtree(dest, ignore_errors=True)
        if isinstance(e, tarfile.TarError | zipfile.BadZipFile | EOFError | OSError):
            if problem := permission_problem(archive):  # from another account: not to copy
                raise DataError(problem) from e
            if archive.stat().st_size == 0:
                raise DataError(empty_file_problem(archive)) from e
            raise DataError(
                f"{archive}: cannot extract it ({type(e).__name__}: {e}); copy it again if a "
                "copy or download of it stopped, or extract it yourself and give the folder"
            ) from e
        raise


def extraction_folder(archive: Path, cache_root: Path) -> Path:
    """Where ``extracted_folder`` puts ``archive``'s files (there once it has run)."""
    key = hashlib.sha256(f"{file_key(archive)}:{EXTRACTION_VERSION}".encode()).hexdigest()[:16]
    return cache_root / "extracted" / f"{archive_stem(archive)}-{key}"


def extracted_folder(archive: Path, cache_root: Path) -> Path:
    """The folder ``archive`` unpacks to under ``<cache_root>/extracted``, extracting it once.

    The folder is keyed by the archive's path, size and modification time (and
    ``EXTRACTION_VERSION``), and appears only
    when extraction has finished (extract to a temporary name, then rename), so concurrent
    or interrupted runs never see a half-extracted tree.
    """
    final = extraction_folder(archive, cache_root)
    if final.is_dir():
        return final
    tmp = final.with_name(f"{final.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    check_writable(  # said as the cache's, not as a folder the user named
        final.parent,
        final.parent,
        f"{archive.name} is extracted there: set RESNETLAB_CACHE to a folder you can write to, "
        "or extract it yourself and give the folder",
    )
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
