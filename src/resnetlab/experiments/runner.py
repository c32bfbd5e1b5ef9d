"""Runs of an experiment: one engine run folder per model and seed, resumed where it stopped.

An experiment compares two CIFAR nets at each depth that differ in one thing: a ``Family``
(``plain``: plainN against resnetN, the shortcuts; ``preact``: resnetN against
preresnetN, the order of BN, ReLU and addition in each unit).

An experiment folder holds one run folder per (model, seed), named ``<model>-seed<seed>``,
each written by ``resnetlab.train`` exactly as ``resnetlab train`` writes it. Running the
experiment again skips the runs that ended (finished or diverged), continues an unfinished
one from its checkpoint, and starts the rest, so a killed experiment loses at most the work
since the last checkpoint of the run it was in; a stopped one says so (``how_to_continue``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.folders import data_folder_holding, images_in
from ..data.sources import missing_data
from ..engine import TrainConfig, TrainingDiverged, resolve_config, train
from ..engine.checkpoint import CHECKPOINT_NAME, started_over_with
from ..engine.config import AUTO_FIELDS, SEED_LIMIT, recipe_name, stored_paths
from ..engine.report import RUNS_ROOT, data_tag, read_metrics
from ..engine.train import continued_with, read_summary, run_series
from ..errors import (
    DataError,
    ResnetlabError,
    RunInterrupted,
    count_argument,
    option,
    path_argument,
    shown,
)
from ..models import list_models, model_info
from ..options import FAMILIES, Family
from ..storage import (
    FREE_SPACE,
    WriteError,
    full_disk,
    hold_folder,
    missing_folders,
    release_folder,
    removed_on_failure,
    write_error,
)

# Options that do not change what a run computes: a rerun may set them differently.
INCIDENTAL = ("out", "download", "num_workers", "tensorboard")
# Options a run decides when it starts if they are left unset (None): a finished run's
# config.json holds the decided value, which an unset option accepts.
DECIDED_AT_START = ("head_epochs", "warmup_steps", "flip", *AUTO_FIELDS)

# The figures experiments write into their folder (degradation.py, gradients.py), which a
# folder of an experiment run before holds.
FIGURES = ("curves.png", "depth.png", "gradients.png")
# Ended runs: running the experiment again leaves them as they are (a diverged run would
# diverge again: the run is deterministic up to floating-point reduction order).
ENDED = ("finished", "diverged")
# What the experiments read from each run's summary.json, and the type of each.
SUMMARY_FIELDS = {
    "status": str,
    "params": int,
    "steps": int,
    "train_images": int,
    "val_images": int,
    "input_size": int,
    "num_classes": int,
    "train_time_s": int | float,
    "final_val_acc": int | float | None,  # None: never validated
}


def how_to_continue(run_dir: Path | None) -> str:
    """How a stopped experiment goes on: the same command (the same call) again, which
    skips the runs that ended and, by what the run that stopped (``run_dir``; None: between
    runs) left on disk, resumes it from its checkpoint or trains it from its start."""
    again = "the same experiment command again, which skips the runs that ended and "
    summary = read_summary(run_dir / "summary.json") if run_dir is not None else None
    if run_dir is None or (summary is not None and summary["status"] in ENDED):
        return again + "trains the rest"
    if (run_dir / CHECKPOINT_NAME).is_file():
        return again + "resumes the one that stopped from its checkpoint"
    return again + "trains the one that stopped from its start: it had saved no checkpoint"


@contextlib.contextmanager
def results_written(out: Path) -> Iterator[None]:
    """Within it, a figure or table of the experiment that cannot be written (a full disk, a
    folder made read-only) says to make room and run the experiment again, which skips the
    runs that ended and writes them from those: not to choose another folder, whose
    experiment would train every run again."""
    try:
        yield
    except WriteError as e:
        if e.path is None or e.error is None:
            raise
        what = f"make {out} writable"
        if full_disk(e.error):
            what = FREE_SPACE
        elif isinstance(e.error, IsADirectoryError):  # a folder of the result's name
            what = f"move the folder {e.path} out of the way"
        fix = (
            f"{what}, then run the same experiment command again, which skips the runs that "
            "ended and writes the figures and tables from them"
        )
        raise write_error(e.path, e.error, fix) from None


def get_family(name: str) -> Family:
    """The family called ``name``, or a clear error."""
    if not isinstance(name, str):  # a list or a number: a TypeError or KeyError below
        raise ResnetlabError(
            f"family must be a name, one of {', '.join(FAMILIES)}, got {shown(name)}"
        )
    try:
        return FAMILIES[name]
    except KeyError:
        raise ResnetlabError(
            f"unknown family {name!r}; choose one of {', '.join(FAMILIES)}"
        ) from None


def number_list(values: object, what: str, example: str, minimum: int = 0) -> list[int]:
    """``values`` (a list, tuple or range of whole numbers of at least ``minimum``) as a
    list, else one line naming ``what``: one number alone is no list (a TypeError), nor is
    text, whose characters would be taken ("20": depths 2 and 0)."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ResnetlabError(f"{what} must be a list, e.g. {example}, got {shown(values)}")
    return [count_argument(v, f"each of {what}", minimum) for v in values]


def depth_list(depths: object, default: Sequence[int]) -> list[int]:
    """``depths`` (``default`` where None) sorted, each once, else one line: an empty list
    is refused, not read as the default, which would train nets not asked for."""
    if depths is None:
        return sorted(set(default))
    chosen = sorted(set(number_list(depths, option("depths"), "[20, 56]", minimum=1)))
    if not chosen:
        raise ResnetlabError(
            f"the experiment needs at least one depth, e.g. [20, 56]; leave {option('depths')} "
            f"out for the default, {list(default)}"
        )
    return chosen


def checked_inputs(data: object, recipe: str, options: dict[str, Any]) -> tuple[str, dict]:
    """``data`` and ``options`` checked as each run's configuration checks them, before the
    experiment's folder is named, and as table.json can hold them: a ``pathlib.Path`` as
    text, a NumPy number as Python's (after the runs trained, json could not write them).
    ``None``, which a run reads as its default data set, is refused: the table would name
    no data."""
    if data is None:
        raise ResnetlabError("data: give a data set (digits, cifar10, a file or a folder)")
    config = resolve_config(recipe=recipe, data=data, **options)

    def as_given(key: str, value: object) -> object:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):  # the configuration's is made absolute
            return os.fspath(value)
        return getattr(config, key)  # NumPy numbers as Python's

    return os.fspath(data), {key: as_given(key, value) for key, value in options.items()}


def train_again(run_dir: Path) -> str:
    """The fix for a run whose finished files the experiment cannot do without."""
    return (
        f"delete the folder {run_dir} and run the same experiment command again, which "
        "trains that run again"
    )


def seed_argument(value: object, what: str) -> int:
    """``value`` as a seed (a whole number from 0 to 2**32-1), else one line naming ``what``
    (a run would name its ``seed`` instead, not the experiment's flag)."""
    seed = count_argument(value, what, minimum=0)
    if seed >= SEED_LIMIT:
        raise ResnetlabError(f"{what} must be below 2**32, got {seed}")
    return seed


@dataclass
class Run:
    """One model and seed of an experiment, and what became of it."""

    model: str
    depth: int
    changed: bool  # the family's changed net (the ResNet of plain vs ResNet), or its baseline
    seed: int
    run_dir: Path
    config: TrainConfig
    status: str  # "finished", "diverged", ...; "skipped" is never stored: see ``action``
    action: str  # what this invocation did: "trained", "resumed" or "skipped"
    summary: dict[str, Any]

    @property
    def metrics(self) -> list[dict[str, Any]]:
        """The run's metrics.csv rows; one line for a file the table cannot be made from,
        with the fix (an experiment cannot go on without a run's history)."""
        path = self.run_dir / "metrics.csv"
        fix = f"restore it from a copy, or {train_again(self.run_dir)}"
        if not path.is_file():
            raise ResnetlabError(f"{path} is gone; the experiment's table needs it: {fix}")
        rows = read_metrics(path, fix=fix)
        if self.status == "finished" and not any(m["kind"] == "epoch" for m in rows):
            raise ResnetlabError(f"{path} has no epoch row, which the table needs: {fix}")
        return rows


def cifar_name(depth: int, changed: bool, kind: Family | None = None) -> str:
    """``resnet56`` / ``plain56`` (or the ``kind``'s pair): the registered CIFAR net."""
    kind = kind or FAMILIES["plain"]
    name = f"{kind.changed if changed else kind.baseline}{depth}"
    if name not in list_models() or model_info(name).family != "cifar":
        raise ResnetlabError(
            f"no registered CIFAR {kind.nouns[changed]} of depth {depth}; "
            f"depths with both: {', '.join(map(str, cifar_depths(kind)))}"
        )
    return name


def cifar_depths(kind: Family | None = None) -> list[int]:
    """Depths registered both as the family's baseline and changed CIFAR net."""
    kind = kind or FAMILIES["plain"]
    names = {n for n in list_models() if model_info(n).family == "cifar"}
    depths = {n.removeprefix(kind.baseline) for n in names if n.startswith(kind.baseline)}
    return sorted(int(d) for d in depths if d.isdigit() and f"{kind.changed}{d}" in names)


def run_config(
    data: str, model: str, seed: int, out: Path, recipe: str, options: dict[str, Any]
) -> TrainConfig:
    """The training configuration of one run: the recipe, then ``options``."""
    for key in ("model", "seed", "out", "data"):
        if key in options:
            raise ResnetlabError(f"the experiment sets {key} itself; drop that option")
    return resolve_config(recipe=recipe, data=data, model=model, seed=seed, out=str(out), **options)


def run_one(config: TrainConfig, *, depth: int, changed: bool, label: str = "") -> Run:
    """Train, resume or skip the run of ``config`` in its folder ``config.out``."""
    run_dir = Path(config.out)
    config_file = run_dir / "config.json"
    summary_file = run_dir / "summary.json"
    status = None
    # Its settings, where config.json holds some, were checked with the plan's (run_pairs).
    # A summary that is missing or damaged leaves the run to resume, which writes it again.
    if config_file.exists() and (summary := read_summary(summary_file)):
        status = summary["status"]
    prefix = f"{label} " if label else ""
    if status in ENDED:
        _say(f"{prefix}{config.model} seed {config.seed}: {status} earlier, skipped")
        action = "skipped"
    else:
        resume = config_file.exists()  # from its checkpoint, or from the start before one
        action = "resumed" if resume else "trained"
        # Held before its line (where it exists): one that another process trains
        # (train --resume) is refused, not announced.
        hold_folder(run_dir, "a run is training in it; wait for it to end")
        try:
            _say(
                f"{prefix}{config.model} seed {config.seed}: {'resuming' if resume else 'training'}"
            )
            train(resume=run_dir) if resume else train(config)
        except TrainingDiverged as e:
            _say(f"{config.model} seed {config.seed} diverged: {e}")
        finally:
            release_folder(run_dir)
    summary = _checked_summary(summary_file)
    return Run(
        model=config.model,
        depth=depth,
        changed=changed,
        seed=config.seed,
        run_dir=run_dir,
        config=config,
        status=summary["status"],
        action=action,
        summary=summary,
    )


@contextlib.contextmanager
def run_pairs(
    data: str,
    depths: Sequence[int],
    seeds: Sequence[int],
    out: Path,
    recipe: str,
    options: dict[str, Any],
    kind: Family | None = None,
    *,
    probe: bool = False,
    note: str | None = None,
    chosen: AbstractSet[str] = frozenset(),
) -> Iterator[list[Run]]:
    """Train (or resume, or skip) the family's two nets (default ``plainN`` and
    ``resnetN``) for every seed and depth, each in ``out/<model>-seed<S>``, and give the
    runs to the ``with`` block, which measures them and writes the figures: ``out`` is held
    (``storage.hold_folder``) until the block ends, so that a second copy of the experiment
    started while the first writes its figures is refused, not skipping every run and
    writing the same files. Every
    configuration is checked before the first run starts, not an hour into it. The notes
    on the data are printed once, not for every run; ``probe`` runs (a few steps, trained
    to be measured) leave out the note on always answering the largest class. ``note`` is
    said once the configurations pass, before the first run. ``chosen``: the options of
    ``options`` that the experiment set itself, not the user (``run_series``)."""
    kind = kind or FAMILIES["plain"]
    if isinstance(data, str | os.PathLike) and (problem := missing_data(os.fspath(data))):
        raise DataError(problem)  # before the first run's line, not after it
    if (out / "config.json").is_file() or (out / CHECKPOINT_NAME).is_file():
        raise ResnetlabError(
            f"{option('out', out)} is the folder of a training run, whose curves.png the "
            f"experiment's would replace: choose another {option('out')}"
        )
    if images := images_in(out, besides=FIGURES):  # a folder of photos, the figures beside
        raise ResnetlabError(
            f"{out} holds images ({images}), which the experiment's figures would join: "
            f"choose a new or empty {option('out')}"
        )
    plan = [
        (depth, changed, run_config(data, name, seed, out / f"{name}-seed{seed}", recipe, options))
        for seed in seeds
        for depth in depths
        for changed in (False, True)
        for name in [cifar_name(depth, changed, kind)]
    ]
    for _, _, config in plan:  # a run made with other settings, before any run trains
        if (Path(config.out) / "config.json").exists():
            _check_same_settings(config, Path(config.out))
    # A run that cannot start removes its own folder; the experiment's folders go too when
    # nothing was trained into them. A folder that held anything (a resumed experiment's)
    # stays.
    made = missing_folders(out)
    if out.exists() and not out.is_dir():
        raise ResnetlabError(
            f"{option('out', out)} is a file; an experiment needs a folder: choose another"
        )
    with removed_on_failure(made):
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a read-only folder: named with the flag, as train names it
            fix = f"choose another {option('out')}, a folder you can write to"
            raise write_error(out, e, fix) from None
        # Held for the runs and what the block makes of them, and before anything is said:
        # a second copy of the experiment is refused before it names a run it would resume
        # or train.
        fix = f"wait for it to end, or choose another {option('out')}"
        hold_folder(out, f"an experiment is training in it; {fix}")
        try:
            if note:
                _say(f"note: {note}")
            yield _run_plan(plan, probe, chosen)
        finally:
            release_folder(out)


def _run_plan(
    plan: list[tuple[int, bool, TrainConfig]], probe: bool, chosen: AbstractSet[str]
) -> list[Run]:
    """Each planned run in turn; a stop says how to go on (``how_to_continue``)."""
    runs: list[Run] = []
    current = None  # the folder of the run under way
    try:
        with (
            continued_with(how_to_continue),
            started_over_with(train_again),
            run_series(majority_note=not probe, chosen=chosen),
        ):
            for i, (depth, changed, config) in enumerate(plan, start=1):
                current = Path(config.out)
                label = f"[{i}/{len(plan)}]"
                runs.append(run_one(config, depth=depth, changed=changed, label=label))
                current = None
            return runs
    except RunInterrupted:  # the run said where it stopped and how to go on
        raise
    except KeyboardInterrupt:  # between runs, or while one started or ended
        _say(f"interrupted. Continue with: {how_to_continue(current)}")
        raise RunInterrupted from None


def default_out(
    kind: str,
    data: str,
    root: str | Path = RUNS_ROOT,
    *,
    family: str = "plain",
    quick: bool = False,
) -> Path:
    """``runs/<kind>[-<family>][-quick]-<data name>`` (the plain family unnamed): the same
    command finds its folder again and resumes."""
    tag = data_tag(str(data))
    name = kind + ("" if family == "plain" else f"-{family}") + ("-quick" if quick else "")
    return Path(root) / f"{name}-{tag}"


def out_folder(
    out: object, kind: str, data: str, *, family: str = "plain", val_data: str | None = None
) -> Path:
    """The experiment folder ``out`` where given, else ``default_out``'s; one line for an
    ``out`` that is not a path or is empty (``Path("")``, the current folder, would take the
    runs and figures), and for one inside a data folder, said before any run starts."""
    if out is None:
        folder = default_out(kind, data, family=family)
    else:
        folder = Path(path_argument(out, "out, the experiment folder", "one, or leave it out"))
    if spec := data_folder_holding(folder, [data, val_data]):
        raise ResnetlabError(
            f"{option('out', folder)} is inside the data folder {spec}; the experiment's "
            f"figures would become training images: give an {option('out')} outside it"
        )
    return folder


def _checked_summary(path: Path) -> dict[str, Any]:
    """A run's summary.json with the fields the experiments read (``SUMMARY_FIELDS``), or
    one line naming what is wrong and the fix: the run writes it again when it is gone."""
    summary = read_summary(path)
    problem = "it is not a run's summary" if summary is None else None
    for key, kind in SUMMARY_FIELDS.items():
        if problem is None and not isinstance(summary.get(key), kind):
            problem = f"its {key} is {shown(summary.get(key))}"
    acc = None if problem is not None else summary.get("final_val_acc")
    if acc is not None and not 0 <= acc <= 1:  # NaN too
        problem = f"its final_val_acc is {shown(acc)}, not an accuracy from 0 to 1"
    processes = summary.get("world_size", 1) if problem is None else 1  # older: absent
    if not isinstance(processes, int) or processes < 1:
        problem = f"its world_size is {shown(processes)}"
    if problem is not None:
        raise ResnetlabError(
            f"{path} is damaged ({problem}); delete it and run the same experiment command "
            "again, which writes it again from the run's checkpoint"
        )
    return summary


def _check_same_settings(config: TrainConfig, run_dir: Path) -> None:
    # Through JSON, as config.json was written: tuples become lists. An option added to
    # TrainConfig after the run was made is taken at its default, which is the old behaviour.
    defaults = json.loads(json.dumps(TrainConfig().to_dict()))
    stored = {**defaults, **TrainConfig.load(run_dir / "config.json")}
    stored_paths(stored)  # folders made before data paths were stored absolute
    stored["recipe"] = recipe_name(stored["recipe"])
    wanted = json.loads(json.dumps({**config.to_dict(), "out": None}))
    differ = [
        k
        for k in wanted
        if k not in INCIDENTAL
        and stored.get(k) != wanted[k]
        and not (wanted[k] is None and k in DECIDED_AT_START)
    ]
    if differ:
        k = differ[0]
        raise ResnetlabError(
            f"{run_dir} was trained with other settings ({option(k)} {stored.get(k)!r}, now "
            f"{wanted[k]!r}); rerun with its settings or choose another {option('out')}"
        )


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)
