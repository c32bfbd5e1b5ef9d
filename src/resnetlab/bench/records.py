"""Benchmark results as JSON lines: what was measured, where, when, and with what.

Each measurement is one line of ``<results>/<machine>.jsonl``: the command that reproduces
it, the date, the machine and device, the CPU's model and instruction sets (AVX-512, bf16,
AMX), the library versions, the git commit of the code that ran, the number of CPU threads
and the load average of the machine (a busy machine slows both sides of a comparison; it
makes absolute figures noisy). Figures are stored as measured and rounded only when shown.

The results folder is ``--results``, else ``benchmarks/results`` when run from the root of
a resnetlab checkout (its records are what the README's table is rendered from), else
``<cache>/bench`` (``$RESNETLAB_CACHE``): a benchmark never writes into whatever folder
the user happens to be in.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import platform
import re
import shlex
import subprocess
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..data.cache import cache_root
from ..data.decode import available_cpus, cpu_quota
from ..engine.cpu import cpu_info, cpu_name
from ..errors import ResnetlabError
from ..storage import WriteError, check_writable, lock_open_file, refixed, write_error
from .table import as_record, newest_per_command

REPOSITORY_RESULTS = Path("benchmarks") / "results"


def default_results_dir() -> Path:
    """``benchmarks/results`` in the root of a resnetlab checkout, else ``<cache>/bench``."""
    try:
        project = Path("pyproject.toml").read_text()
    except OSError:
        project = ""
    if REPOSITORY_RESULTS.is_dir() and re.search(r'^name = "resnetlab"$', project, re.MULTILINE):
        return REPOSITORY_RESULTS
    return cache_root() / "bench"


def device_name(device: torch.device) -> str:
    """``NVIDIA H200`` for a GPU; ``AMD EPYC, 2 cores`` for the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        cores = available_cpus()
        quota = cpu_quota()
        within = f", a quota of {quota[0]:g} CPUs" if quota and quota[0] < cores else ""
        return f"{cpu_name()}, {cores} core{'s' if cores != 1 else ''}{within}"
    return device.type


def machine_slug(device: torch.device) -> str:
    """A file-name-safe machine name: ``nvidia-h200``, ``amd-epyc-2cpu``."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    elif device.type == "cpu":
        name = f"{cpu_name()} {available_cpus()}cpu"
    else:
        name = device.type
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "machine"


def git_commit() -> dict[str, Any] | None:
    """The commit of the checkout this package runs from, and whether it has local changes."""
    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def environment(device: torch.device) -> dict[str, Any]:
    """Where and with what a measurement ran."""
    import torchvision

    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_slug(device),
        "device": device_name(device),
        "cpus": available_cpus(),
        # the CPUs' worth a container's quota allows of them (docker --cpus), or None
        "cpu_quota": quota[0] if (quota := cpu_quota()) else None,
        "threads": torch.get_num_threads(),
        "cpu": cpu_info(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),
        "kmp_blocktime": os.environ.get("KMP_BLOCKTIME"),  # Intel's OpenMP (conda's torch)
        "load_before": load_average(),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "resnetlab": __version__,
            "cuda": torch.version.cuda if device.type == "cuda" else None,
        },
        "git": git_commit(),
        "platform": f"{platform.system()} {platform.machine()}",
    }


def command_line(
    subcommand: str, options: Mapping[str, Any], negatable: Collection[str] = ()
) -> str:
    """``resnetlab bench <subcommand>`` with every option spelled out, for rerunning.

    ``negatable``: the options that have a ``--no-`` form and are left out as None; False
    for one of them was asked for (``--no-channels-last``) and is written so. For the
    others False is the default and is left out."""
    words = ["resnetlab", "bench", subcommand]
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is False and key in negatable:
            words.append("--no-" + flag[2:])
        if value is None or value is False:
            continue
        if value is True:
            words.append(flag)
        elif isinstance(value, list | tuple):
            for item in value:
                words += [flag, str(item)]
        else:
            words += [flag, str(value)]
    return shlex.join(words)


def results_path(machine: str, results: str | os.PathLike | None = None) -> Path:
    """``results`` if it is a ``.jsonl`` file, else ``<folder>/<machine>.jsonl``.

    The folder is ``results``, or by default ``default_results_dir()``.
    """
    path = Path(results) if results is not None else default_results_dir()
    return path if path.suffix == ".jsonl" else path / f"{machine}.jsonl"


def check_results(results: str | os.PathLike | None = None) -> None:
    """Refuse, before anything is measured, a results location that ``append_record``
    could not write: its folder is created and a file is made in it and removed, and a
    .jsonl file there is opened to append to.

    Raises:
        WriteError: naming the path and the fix (``--no-save`` among them).
        ResnetlabError: a file of another kind named (``r.json``, ``r.txt``): records are
            JSON lines, ``.jsonl``.
    """
    path = Path(results) if results is not None else default_results_dir()
    # A name with another suffix is meant as a file, not a folder to make: one that exists
    # is taken as the folder it is. A file without a suffix is not a folder either.
    folder = path.is_dir()
    a_file = path.exists() and not folder
    if results is not None and not folder and path.suffix != ".jsonl" and (path.suffix or a_file):
        raise ResnetlabError(
            f"--results {results}: takes a folder or a .jsonl file (records are JSON lines); "
            f"name a .jsonl file ({path.with_suffix('.jsonl')}), "
            + ("or a folder" if a_file else "or make the folder first")
        )
    try:
        check_writable(path, path.parent if path.suffix == ".jsonl" else path)
        if path.suffix == ".jsonl" and path.is_file():  # one to append to (a read-only one)
            try:
                path.open("ab").close()
            except OSError as e:
                raise write_error(path, e) from None
    except WriteError as e:
        # The flag that moves it, also where the folder is the default one (a user who
        # named no path has none to "choose another" of); a full disk keeps its own fix.
        fix = (
            "choose another --results"
            if results is not None
            else ("give --results a folder you can write to")
        )
        raise WriteError(f"{refixed(e, fix)}, or add --no-save") from None


def append_record(record: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Append ``record`` as one JSON line to ``path`` (created with its folder if needed).
    A write that fails (a full disk) leaves the file as it was: no half line, no empty file.
    Runs appending to one file at the same time take turns."""
    path = Path(path)
    line = (json.dumps(record, sort_keys=False) + "\n").encode()
    new = not path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+b", buffering=0) as f:  # one write call, nothing left buffered
            lock_open_file(f)  # another run's record is not cut by this one's truncate
            start = f.seek(0, os.SEEK_END)
            if start:
                f.seek(start - 1)
                if f.read(1) != b"\n":  # a last line left without its newline (an edited file)
                    line = b"\n" + line
            try:
                if f.write(line) != len(line):  # a short write: the disk filled up
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            except OSError:
                f.truncate(start)
                raise
    except OSError as e:
        if new and path.is_file() and not path.stat().st_size:
            path.unlink()
        error = write_error(path, e)
        raise type(error)(f"{error}; or add --no-save (the record is printed above)") from None
    return path


def read_records(paths: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """Every record in the given ``.jsonl`` files and folders of them, oldest first; a
    file may also hold one record as ``--json`` prints it."""
    records = []
    for item in paths:
        item = Path(item)
        if not item.exists():
            raise ResnetlabError(
                f"no benchmark records at {item}: `resnetlab bench train` (or infer, data, "
                "time-to-accuracy) writes them; or name .jsonl files or folders of them"
            )
        files = sorted(item.glob("*.jsonl")) if item.is_dir() else [item]
        if not files:
            raise ResnetlabError(
                f"no benchmark records in {item}: it holds no .jsonl files; `resnetlab bench "
                "train` (or infer, data, time-to-accuracy) writes them"
            )
        before = len(records)
        for file in files:
            try:
                text = file.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise ResnetlabError(
                    f"{file} is not a text file; benchmark records are .jsonl files, one JSON "
                    "object a line"
                ) from None
            whole = None
            if len(text.strip().splitlines()) > 1:  # one record as `--json` prints it?
                with contextlib.suppress(json.JSONDecodeError):
                    whole = json.loads(text)
            if isinstance(whole, dict):
                records.append(_checked(whole, str(file)))
                continue
            for number, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as e:
                        message = f"{file}:{number}: not a JSON line ({e.msg})"
                        raise ResnetlabError(message) from None
                    records.append(_checked(record, f"{file}:{number}"))
        if len(records) == before:  # which `--update` would render as an empty table
            held = "its .jsonl files are empty" if item.is_dir() else "the file is empty"
            raise ResnetlabError(
                f"no benchmark records in {item}: {held}; `resnetlab bench train` (or infer, "
                "data, time-to-accuracy) writes them"
            )
    return sorted(records, key=lambda r: r.get("date") or "")  # no date (null): first


def _checked(record: Any, where: str) -> dict[str, Any]:
    """``record`` when the table can show it, else one line naming ``where`` it is."""
    if not isinstance(record, dict):
        raise ResnetlabError(
            f"{where}: a JSON {type(record).__name__}, not a record (a JSON object); remove "
            "the line"
        )
    date = record.get("date")
    try:
        as_record(record).row()
        newest_per_command([record])  # its machine, CPU and command make a key
    except ResnetlabError as e:
        raise ResnetlabError(f"{where}: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        detail = f"no {e.args[0]!r}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
    else:  # the records are put in order by their dates
        detail = None if date is None or isinstance(date, str) else f"its date is {date!r}"
    if detail is not None:
        raise ResnetlabError(
            f"{where}: a damaged benchmark record ({detail}); remove the line, or run the "
            "benchmark again"
        )
    return record


def seed_cache(data: str, cache: str | os.PathLike) -> None:
    """Make the named ``cifar10`` spec loadable from an empty cache folder.

    Its raw data, the official archive, lives in the user's cache folder; it is linked into
    ``cache`` so that extracting and decoding it are measured, and downloading it is not.
    Other specs are files and folders the empty cache does not need.
    """
    if data != "cifar10":
        return
    from ..data import cifar10
    from ..data.cache import cache_root

    archive = cache_root() / cifar10.ARCHIVE_NAME
    if not archive.is_file():
        raise ResnetlabError(
            f"cifar10: {archive} not found; fetch it once with "
            f"`resnetlab data inspect cifar10 --download`, or pass the archive's path as the data"
        )
    (Path(cache) / cifar10.ARCHIVE_NAME).symlink_to(archive)
