"""Errors caused by what a user asked for, as opposed to bugs.

The CLI prints a ``ResnetlabError`` as one line, ``error: <message>``, and exits non-zero,
without a traceback. Messages name the thing that is wrong and, where there is one, the fix.
"""

import difflib
import json
import math
import operator
import os
import re
import signal
import sys
import unicodedata
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

SHOWN_CHARS = 80  # of a wrong value's repr in a message; a longer one is named by its type
# https://..., file://...: a scheme of two letters or more, so that C://photos stays a path.
URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+://")


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
# Decorators between a script and the package's function it called (``@torch.no_grad()``,
# ``contextlib``'s): their frames are not the script's line either.
_WRAPPERS = (os.path.join("torch", "utils", "_contextlib.py"), os.sep + "contextlib.py")


# Folders that messages name as the user gave them: an archive's copy extracted into the
# cache, as the archive (photos.zip/cat/1.jpg, as Python's zipfile.Path names a member).
_GIVEN_AS: dict[re.Pattern[str], str] = {}


def name_as_given(folder: str | os.PathLike, given: str | os.PathLike) -> list[re.Pattern[str]]:
    """Say ``given`` in messages where they would name ``folder`` (as given, and absolute):
    the whole path, not one it is part of (``x/c/...``, ``folder.123.tmp``). Returns the
    patterns it added (``named_as_given`` removes them again)."""
    added = []
    for spelled in dict.fromkeys([str(folder), os.path.abspath(folder)]):
        pattern = re.compile(rf"(?<![\w./\\-]){re.escape(spelled)}(?![\w.-])")
        if pattern not in _GIVEN_AS:
            added.append(pattern)
        _GIVEN_AS[pattern] = str(given)
    return added


@contextmanager
def named_as_given(pairs: dict[str, str]) -> Iterator[None]:
    """Within the block, messages name each folder of ``pairs`` (``{stored: given}``, a
    run's absolute data path and the path as the user typed it) as given: the spelling
    holds only while the working folder it is relative to does. An error leaving the block
    keeps its message as said inside it."""
    added = [
        p
        for stored, given in pairs.items()
        if stored != given
        for p in name_as_given(stored, given)
    ]
    try:
        yield
    except ResnetlabError as e:
        e.args = (str(e), *e.args[1:])
        raise
    finally:
        for pattern in added:
            _GIVEN_AS.pop(pattern, None)


# Whether messages name a setting as the command line's flag or as the Python keyword: the
# CLI runs every command within ``command_line()``.
_COMMAND_LINE: ContextVar[bool] = ContextVar("command_line", default=False)
_NO_VALUE = object()


@contextmanager
def command_line() -> Iterator[None]:
    """Within the block, ``option`` names settings as the command line's flags."""
    token = _COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


# Settings that the running command takes as KEY=VALUE pairs under one flag, having no flag
# of their own: ``experiment``'s training options, ``--train-option warmup_steps=10``.
_UNDER: ContextVar[tuple[str, frozenset[str]]] = ContextVar("under", default=("", frozenset()))


@contextmanager
def options_under(flag: str, names: Iterable[str]) -> Iterator[None]:
    """Within the block, ``option`` names each setting of ``names`` on the command line as
    ``flag NAME=VALUE``: a command that runs training (``experiment``) says the training
    options it has no flags for as they are given to it."""
    token = _UNDER.set((flag, frozenset(names)))
    try:
        yield
    finally:
        _UNDER.reset(token)


# Settings that the running Python call takes under another keyword: create_model names
# the model ``name`` (its first argument), where train and the command line say ``model``.
_KEYWORDS: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("keywords", default=())


@contextmanager
def keywords_of_call(renamed: dict[str, str]) -> Iterator[None]:
    """Within the block, ``option`` names each setting of ``renamed`` (``{"model": "name"}``)
    by its keyword there, off the command line: the fix a message gives is the call's own."""
    token = _KEYWORDS.set(tuple(renamed.items()))
    try:
        yield
    finally:
        _KEYWORDS.reset(token)


# Settings that the running command takes as a positional argument, by the name its usage
# line gives it: ``convert pretrained SOURCE DST`` takes train's ``--pretrained`` as SOURCE.
_POSITIONAL: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("positional", default=())


@contextmanager
def positional_arguments(named: dict[str, str]) -> Iterator[None]:
    """Within the block, ``option`` names each setting of ``named`` (``{"pretrained":
    "SOURCE"}``) on the command line as the argument: its value alone, or its name in the
    usage line where no value is given."""
    token = _POSITIONAL.set(tuple(named.items()))
    try:
        yield
    finally:
        _POSITIONAL.reset(token)


def on_command_line() -> bool:
    """Whether messages are for the command line (within ``command_line()``)."""
    return _COMMAND_LINE.get()


def option(name: str, value: object = _NO_VALUE, *, text: str | None = None) -> str:
    """The setting ``name`` (a keyword: ``head_epochs``), with ``value`` where given, as a
    message names it: ``--head-epochs 0`` on the command line, ``head_epochs=0`` where
    Python called ``train``, ``create_model``... (a path as the string given; True as the
    switch alone, ``--download``, and ``download=True``; False as its ``--no-`` form; a list
    as the values one by one, ``--seeds 0 1 2``, and ``seeds=[0, 1, 2]``). ``text``, given
    instead of ``value``, is shown as it is in both: a value to choose (``--epochs N``,
    ``epochs=N``), a rounded number (``--lr 0.0141``, ``lr=0.0141``)."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if text is not None:
        value = _Shown(text)
    under, names = _UNDER.get()
    if on_command_line() and name in names:
        if value is _NO_VALUE:
            value = _Shown("...")
        elif isinstance(value, bool | list | tuple):
            value = json.dumps(value)
        return f"{under} {name}={value}"
    if on_command_line() and (label := dict(_POSITIONAL.get()).get(name)):
        return label if value is _NO_VALUE else _Argument(value, label)
    if on_command_line():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            return flag if value else f"--no-{flag[2:]}"
        if isinstance(value, list | tuple):  # several words: --depths 20 56
            value = _Shown(" ".join(map(shell_word, value)))
        if type(value) is str:  # a path or a spec: typed as one word (not text shown)
            value = shell_word(value)
        return flag if value is _NO_VALUE else f"{flag} {value}"
    name = dict(_KEYWORDS.get()).get(name, name)
    return name if value is _NO_VALUE else f"{name}={value!r}"


def options(*named: str) -> str:
    """Settings that ``option`` named, together: ``--data photos --val-split 0.2`` on the
    command line, ``data='photos', val_split=0.2`` from Python; a positional argument's
    value after the flags, by its name in the usage line (``--model resnet18 with
    torchvision as SOURCE``), where its value alone next to them would read as the last
    flag's."""
    if not on_command_line():
        return ", ".join(named)
    flags = [shown for shown in named if not isinstance(shown, _Argument)]
    arguments = [f"{shown} as {shown.label}" for shown in named if isinstance(shown, _Argument)]
    if flags and arguments:
        return f"{' '.join(flags)} with {' and '.join(arguments)}"
    return " ".join(named)


class _Argument(str):
    """A positional argument's value as ``option`` shows it, knowing the argument's name
    (``SOURCE``) for ``options``."""

    label: str

    def __new__(cls, value: object, label: str) -> "_Argument":
        shown = super().__new__(cls, value)
        shown.label = label
        return shown


class _Shown(str):
    """Text that a message shows as it is, in Python's form too (``option``'s ``text``)."""

    def __repr__(self) -> str:
        return str(self)


def readable(name: str) -> str:
    """A file name, or a name typed on the command line, as text that can be shown, stored
    and compared with the names in a model file: its bytes read as UTF-8 even where
    Python read them otherwise (an ASCII locale, ``LC_ALL=C`` without UTF-8 mode, gives
    "日本" as undecodable bytes), and a name whose bytes are not UTF-8 (an old archive's
    Latin-1, say) read as Latin-1 instead of carrying the undecodable bytes along; and in
    Unicode's composed form (NFC), so that a class folder named "café" on macOS (which
    stores the accent as a character of its own) is the same class as "café" typed
    elsewhere."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raw = os.fsencode(name)
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            name = raw.decode("latin-1")
    return unicodedata.normalize("NFC", name)


# What a shell reads as more than one word, or as other than the text: a path with a space
# in it (``photos/Red Leaf``) given in a command a message says to run.
_SHELL_SPECIAL = re.compile(r"[\s'\"\\$`!*?&;|<>(){}\[\]#]")


def shell_word(value: object, *, windows: bool = os.name == "nt") -> str:
    """``value`` (a path, a spec) as a shell takes it for one word in a command that a
    message says to run: quoted where it holds a space or a character the shell reads (in
    single quotes, as ``shlex.quote`` writes; in double quotes on Windows, as cmd and
    PowerShell read them), as it is elsewhere."""
    text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    if windows:  # a backslash separates folders there, and is no escape
        return f'"{text}"' if _SHELL_SPECIAL.search(text.replace("\\", "/")) else text
    if not _SHELL_SPECIAL.search(text):
        return text
    return "'" + text.replace("'", "'\"'\"'") + "'"


def as_given(text: str) -> str:
    """``text`` with the folders ``name_as_given`` registered named as the user gave them;
    again while that names another (an archive's copy named as the archive, at its absolute
    path, which the user gave as ``photos.zip``)."""
    for _ in range(len(_GIVEN_AS)):
        before = text
        for folder, given in list(_GIVEN_AS.items()):  # (a run in another thread may add)
            text = folder.sub(lambda _, given=given: given, text)
        if text == before:
            break
    return text


# The warnings said so far where each is said once (``said_once``), by category and text.
_SAID: ContextVar[set[tuple[type[Warning], str]] | None] = ContextVar("said", default=None)


@contextmanager
def said_once() -> Iterator[None]:
    """Within the block, ``warn`` says each warning (the same category and text) once: the
    runs of an experiment read the same data with the same settings, and what the first
    run warned of (a --subset larger than the data, a --download that does not apply) is
    not said again for every run. A block within another goes on with the outer's record."""
    said = _SAID.get()
    token = _SAID.set(set() if said is None else said)
    try:
        yield
    finally:
        _SAID.reset(token)


def warn(message: str, category: type[Warning]) -> None:
    """``warnings.warn``, shown at the first line outside resnetlab on the way to it: the
    line of the script that called ``resnetlab.train(...)``, not one of this package (as
    Python 3.12's ``skip_file_prefixes`` does). Within ``said_once``, a warning said before
    there is left out."""
    message = as_given(message)
    said = _SAID.get()
    if said is not None:
        if (category, message) in said:
            return
        said.add((category, message))
    level, frame = 2, sys._getframe(1)
    while frame is not None and (
        frame.f_code.co_filename.startswith(_PACKAGE)
        or frame.f_code.co_filename.endswith(_WRAPPERS)
    ):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, category, stacklevel=level)


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is a device running out of memory: CUDA's ``OutOfMemoryError``, or
    the CPU's and MPS's allocators, which raise a plain ``RuntimeError`` saying so, as do
    cuBLAS and cuDNN when they cannot allocate their workspace (``CUBLAS_STATUS_ALLOC_FAILED``)."""
    text = str(error)
    return type(error).__name__ == "OutOfMemoryError" or (
        isinstance(error, RuntimeError)
        and (
            any(sign in text for sign in ("can't allocate memory", "_STATUS_ALLOC_FAILED"))
            or "out of memory" in text.lower()
        )
    )


class ResnetlabError(Exception):
    """A user mistake or bad input, reported as one line."""

    def __str__(self) -> str:
        return as_given(super().__str__())


class UnknownModelError(ResnetlabError, ValueError):
    """A model name that is not registered."""


class DataError(ResnetlabError, ValueError):
    """A data set that cannot be read as given: missing, malformed or inconsistent."""


class WorkersLost(DataError):
    """Worker processes reading the data ended without an answer: killed (most often by the
    system, short of memory) or crashed."""


class DataWarning(UserWarning):
    """Something in a data set was skipped or adjusted; loading went on."""


class CacheWarning(UserWarning):
    """A file in the cache folder could not be read or written; it is rebuilt."""


class SettingWarning(UserWarning):
    """Settings that run but are likely not what was meant (``--freeze`` without pretrained
    weights)."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a training run, which has saved its checkpoint and said
    how to go on: the CLI adds nothing to that, and exits with ``exit_status``, a shell's
    for the signal (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__()
        self.exit_status = 128 + signum


def finite_number(value: object) -> bool:
    """Whether ``value`` is a finite int or float (not a bool): what a number read from a
    JSON file or a config must be."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def shown(value: object) -> str:
    """A value given in the wrong place, as a message shows it: its repr where that is short
    (``'10'``, ``2.5``, ``None``), else its type (a model's or a tensor's repr runs to
    screens)."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS and "\n" not in text else type(value).__name__


def empty_problem(value: object, give: str = "one") -> str | None:
    """``"an empty value; give <give>"`` when ``value`` is an empty or blank string, else None.

    The one check of empty values, the command line's and the Python API's: an unset shell
    variable (``--pretrained "$WEIGHTS"``) would otherwise read as the option left out, and
    an empty path as the current folder (``Path("")`` is ``.``). The caller names what was
    given in front, as argparse does: ``argument --data: an empty value; give one``.
    """
    if isinstance(value, str | os.PathLike) and not os.fspath(value).strip():
        return f"an empty value; give {give}"
    return None


def run_result_hint(value: object) -> str:
    """How to name what ``train`` returned (a ``RunResult``, given whole where a path goes):
    its folder or its model file; else nothing."""
    if type(value).__name__ != "RunResult" or not isinstance(
        getattr(value, "run_dir", None), os.PathLike
    ):
        return ""
    return (
        "; of what train returned, give result.run_dir / 'best.safetensors' (its best model "
        "file) or result.run_dir (the run's folder)"
    )


def path_argument(
    value: object, what: str, give: str = "one", *, reading: bool = True
) -> str | os.PathLike:
    """``value`` when it is a path (``str`` or ``os.PathLike``) that is not empty nor a URL,
    with a leading ``~`` expanded to the home folder as a shell would (and as data paths
    are), else one line naming ``what`` and what was given instead (``give``: what to give
    for an empty one, see ``empty_problem``; ``reading``: a URL is told to be downloaded
    first, else to be a local path)."""
    if not isinstance(value, str | os.PathLike):
        raise ResnetlabError(
            f"{what} must be a path (str or pathlib.Path), got {type(value).__name__}"
            + run_result_hint(value)
        )
    if problem := empty_problem(value, give):
        raise ResnetlabError(f"{what}: {problem}")
    if URL.match(text := os.fspath(value)):  # read as a path, it would be 'not found'
        fix = _download_fix(text) if reading else "give a local path"
        raise ResnetlabError(f"{what}: {text} is a URL, and resnetlab works on local files; {fix}")
    if text.startswith("~") and (home := os.path.expanduser(text)) != text:
        return type(value)(home) if isinstance(value, Path) else home
    return value


def _download_fix(url: str) -> str:
    """How to have ``url`` as a local file: curl for the web's schemes, the cloud's own
    tools for theirs (curl knows no s3:// nor gs://)."""
    command = {
        "s3": f"aws s3 cp {url} .",
        "gs": f"gcloud storage cp {url} .",
        **dict.fromkeys(("http", "https", "ftp", "ftps"), f"curl -O {url}"),
    }.get(url.split("://", 1)[0].lower())
    return f"download it first ({command})" if command else "copy it to a local file first"


def folder_problem(value: str | os.PathLike, example: str) -> str | None:
    """``"<value> names a folder; give a file name, e.g. <value>/<example>"`` when ``value``, a
    file to write, names a folder: one that exists, or a path ending in a separator, which
    ``Path`` drops (``out/`` would be written as a file named ``out``); else None."""
    text = os.fspath(value)
    separators = tuple(sep for sep in (os.sep, os.altsep) if sep)
    if text.endswith(separators) or os.path.isdir(text):
        return f"{text} names a folder; give a file name, e.g. {os.path.join(text, example)}"
    return None


def near_name(path: Path) -> str | None:
    """A file or folder beside ``path`` whose name is close to its name (``my_photos`` for
    ``my_photo``; ``IMG_1.JPG`` for ``IMG_1.jpg``, the same but for letter case, first), as
    the path to give, or None."""
    try:
        # Not its own name: a link to nothing is a name that exists but is not found.
        names = [
            p.name
            for p in path.parent.iterdir()
            if not p.name.startswith(".") and p.name != path.name
        ]
    except OSError:
        return None
    close = [n for n in names if n.casefold() == path.name.casefold()]

    def likeness(name: str) -> float:
        # A name with the path's suffix is compared by its stem: the suffix they share
        # (".safetensors") made any short name close (hf.safetensors for nosuch.safetensors).
        same_suffix = path.suffix and Path(name).suffix.casefold() == path.suffix.casefold()
        pair = (path.stem, Path(name).stem) if same_suffix else (path.name, name)
        return difflib.SequenceMatcher(None, *pair).ratio()

    ranked = sorted(names, key=lambda n: (-likeness(n), n))
    close = close or [n for n in ranked[:1] if likeness(n) >= 0.8]
    if not close:
        return None
    near = path.with_name(close[0])
    return f"{near}{os.sep}" if near.is_dir() else str(near)


def count_argument(
    value: object,
    what: str,
    minimum: int | None = 1,
    error: type[ResnetlabError] | None = None,
) -> int:
    """``value`` as an ``int`` when it is a whole number (any integer type, a NumPy count
    too; not a bool, a float or a string) of at least ``minimum`` (None: any, for a caller
    that checks a range of its own), else one line naming ``what`` and what was given, as
    ``error`` (default ``ResnetlabError``; ``DataError`` where the data's arguments are
    refused as one)."""
    error = error or ResnetlabError
    try:
        count = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        count = None
    if count is None:
        raise error(f"{what} must be a whole number, got {shown(value)}")
    if minimum is not None and count < minimum:
        raise error(f"{what} must be at least {minimum}, got {count}")
    return count
