"""The training loop: ``train(config)`` runs one job and leaves a run folder behind.

A run folder holds ``config.json`` (rerunnable), ``metrics.csv``, ``best.safetensors`` and
``last.safetensors`` (self-describing model files), ``checkpoint.pt`` (for ``--resume``),
``curves.png``, ``confusion.png``, ``errors.png`` and ``summary.json``.

The step does no host-device synchronisation: losses and hit counts accumulate on the
device and are read once per ``log_every`` steps. There, and before anything is saved, the
loss, the weights and the BN statistics are checked: anything NaN or infinite stops the run
as "diverged" with the last good checkpoint kept, and no model file is written from it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..analysis import count_parameters
from ..convert.pretrained import PretrainedWeights, check_names_model
from ..data import (
    Augment,
    Dataset,
    DeviceLoader,
    ImageSet,
    load_dataset,
    make_loader,
    split_stats,
    stratified_sample,
)
from ..data.decode import leave_if_starting_a_worker, unwarned
from ..data.folders import ENLARGED_NOTE, SHRUNK_NOTE, data_folder_holding, images_in
from ..data.sources import (
    class_balance_note,
    copies_of_training_images,
    subset_all_note,
    subset_note,
)
from ..errors import (
    DataError,
    DataWarning,
    ResnetlabError,
    RunInterrupted,
    SettingWarning,
    WorkersLost,
    as_given,
    named_as_given,
    near_name,
    on_command_line,
    option,
    options,
    out_of_memory,
    path_argument,
    said_once,
    shell_word,
    warn,
)
from ..explain.gallery import ErrorSource, Mistakes
from ..models import load_model, model_info, read_model_meta, save_model
from ..models.files import attach_meta, class_name_problem, shapes_problem
from ..storage import (
    WriteError,
    atomic_link,
    atomic_write,
    atomic_write_text,
    check_writable,
    full_disk,
    hold_folder,
    missing_folders,
    refixed,
    release_folder,
    remove_stale_temps,
    removed_on_failure,
    write_error,
)
from .auto import (
    LossGuard,
    apply_auto,
    apply_finetune,
    count_of,
    imagenet_style,
    is_digit_like,
    validation_interval,
)
from .batchnorm import batchnorm_layers, calibration_size, lag_steps, recalibrate
from .calibrate import BUSY_NOTE, CpuPlan, busy_note, cpu_threads, speed_lines
from .checkpoint import (
    CHECKPOINT_NAME,
    checkpoint_fix,
    cuda_rng_state,
    load_checkpoint,
    load_optimizer_state,
    optimizer_problem,
    restore_cuda_rng,
    save_checkpoint,
    start_over,
)
from .config import (
    TrainConfig,
    augmentation_problem,
    resolve_config,
    scaled_lr,
    stored_paths,
    warn_of_settings_that_do_not_apply,
)
from .distributed import all_reduce_sum, broadcast_object, init_distributed, shutdown
from .evaluate import EvalResult, evaluate_loader
from .finetune import (
    PRETRAINED_RECORD,
    PretrainedStart,
    check_length,
    warn_if_weights_changed,
    write_record,
)
from .optim import lr_at, set_lr
from .report import RUNS_ROOT, RunLog, new_run_dir
from .step import (
    autocast,
    build_training,
    configure_backends,
    global_state_kept,
    precision_name,
    resolve_channels_last,
    weighed_classes_note,
)
from .threads import ThreadWatch, fit_threads_to_quota, watch_threads

DEFAULT_VAL_SPLIT = 0.2  # held out when the data has no validation split of its own
# A run whose output lost its reader exits as one ended by SIGPIPE, POSIX's number where the
# system has no such signal (Windows).
_SIGPIPE = getattr(signal, "SIGPIPE", 13)


# How a stopped run goes on, in the messages that say so: by default its own
# `resnetlab train --resume RUN`; an experiment, which resumes its runs itself, names its own.
_CONTINUE_WITH: ContextVar[Callable[[Path], str] | None] = ContextVar("continue_with", default=None)


@contextlib.contextmanager
def continued_with(how: Callable[[Path], str]) -> Iterator[None]:
    """Within it, the runs that stop (Ctrl-C, a failed write) say to go on with
    ``how(run_dir)``, said by what the run folder holds then, instead of ``resnetlab train
    --resume RUN``."""
    token = _CONTINUE_WITH.set(how)
    try:
        yield
    finally:
        _CONTINUE_WITH.reset(token)


@dataclass
class _Series:
    said: set[str] = dataclasses.field(default_factory=set)  # data notes printed so far
    majority_note: bool = True
    chosen: frozenset[str] = frozenset()  # options the experiment set, not the user


# The runs of one experiment, which read the same data (see ``run_series``).
_SERIES: ContextVar[_Series | None] = ContextVar("series", default=None)


def _first_in_series(note: str) -> bool:
    """Whether ``note`` is to be said: always outside a ``run_series``; within one, only by
    the first run that has it."""
    series = _SERIES.get()
    if series is None:
        return True
    if note in series.said:
        return False
    series.said.add(note)
    return True


def _users(name: str) -> bool:
    """Whether the option ``name`` is the user's: not one that the experiment around the run
    set itself (``run_series``' ``chosen``)."""
    series = _SERIES.get()
    return series is None or name not in series.chosen


@contextlib.contextmanager
def run_series(
    *, majority_note: bool = True, chosen: AbstractSet[str] = frozenset()
) -> Iterator[None]:
    """Within it, runs print each note about their data and give each warning (``said_once``:
    on their data, a batch larger than it, a warm-up as long as the run) once, for the
    first run that has it, not again for every run of an experiment on the same data; with
    ``majority_note=False`` they also leave out the note that the accuracy is no better than
    always answering the largest class (probe runs of a few steps, whose accuracy is not
    what they are for). ``chosen``: the options the experiment set itself, not the user (a
    cap of its own on ``val_subset``): a subset of them larger than the images there are
    is no news, and is not warned of."""
    token = _SERIES.set(_Series(majority_note=majority_note, chosen=frozenset(chosen)))
    try:
        with said_once():
            yield
    finally:
        _SERIES.reset(token)


class TrainingDiverged(ResnetlabError):
    """The loss, a weight or a BN statistic became NaN or infinite."""


CPU_PLAN_NAME = "cpu_plan.json"  # the CPU plan a run started with, kept by --resume

# What a run folder holds: a killed writer may have left a temporary file of any of them.
RUN_FILES = (
    "config.json",
    CPU_PLAN_NAME,
    "metrics.csv",
    CHECKPOINT_NAME,
    "best.safetensors",
    "last.safetensors",
    "summary.json",
    "curves.png",
    "confusion.png",
    "errors.png",
    PRETRAINED_RECORD,
)
TRAINED_FILES = ("best.safetensors", "last.safetensors")  # written from the first epoch on


def run_file_problem(path: str | os.PathLike, example: str | os.PathLike) -> str | None:
    """Why a command other than ``train`` (export, convert) may not write ``path``: it is
    one of the files a run keeps in its folder (``RUN_FILES``, in a folder holding a run's
    config or checkpoint), which it would replace; ``example`` is a path to write instead.
    None for any other path."""
    path = Path(path)
    folder = path.parent
    if path.name not in RUN_FILES:
        return None
    if not any((folder / name).is_file() for name in ("config.json", CHECKPOINT_NAME)):
        return None
    return (
        f"{path} is a file of the run in {folder}, which writing it would replace; "
        f"name another file to write, e.g. {example}"
    )


@dataclass
class RunResult:
    """``resnetlab.train``'s answer: the run folder (``config.json``, ``metrics.csv``,
    ``best.safetensors``, ``last.safetensors``...), the run's ``summary.json`` as a dict,
    and the trained model.

    The summary's keys, which the repr shows as ``key=value``, read as attributes too:
    ``result.best_val_acc`` is ``result.summary["best_val_acc"]`` (``result.model`` is the
    model itself; its name is ``result.summary["model"]``): the best epoch's validation
    accuracy, or its balanced accuracy where that picked it (``result.best_metric``, under
    ``class_weights="balanced"``).
    """

    run_dir: Path
    summary: dict[str, Any]
    # The model that was saved last (the EMA weights when EMA is on), eval mode, with that
    # file's ``meta``; left out of the repr, which would otherwise print every layer after
    # the run's summary.
    model: nn.Module = dataclasses.field(repr=False)

    def __repr__(self) -> str:  # the summary's headline: all of it runs to dozens of keys
        shown = [f"run_dir={self.run_dir!r}"]
        for key in _SHOWN_SUMMARY:
            value = self.summary.get(key)
            if value is not None:
                shown.append(f"{key}={round(value, 4) if isinstance(value, float) else value!r}")
        return f"RunResult({', '.join(shown)})"

    def __getattr__(self, name: str) -> Any:  # only for names that are not attributes
        summary = self.__dict__.get("summary", {})
        if name in summary:
            return summary[name]
        raise AttributeError(
            f"'RunResult' object has no attribute {name!r}; its summary has "
            f"{', '.join(summary) or 'no keys'}"
        )

    def __dir__(self) -> list[str]:  # a notebook's completion offers the summary's keys
        return sorted({*super().__dir__(), *self.__dict__.get("summary", {})})


_SHOWN_SUMMARY = (
    "status",
    "model",
    "data",
    "best_val_acc",
    "best_epoch",
    "final_val_acc",
    "steps",
    "train_time_s",
)


def train(
    config: TrainConfig | str | os.PathLike | None = None,
    *,
    resume: str | Path | None = None,
    **overrides: Any,
) -> RunResult:
    """Train a model and write its run folder.

    Args:
        config: the full configuration, or a run's ``config.json`` to rerun with the
            keywords overriding it (``--config``); or leave it out and pass options as
            keywords (``train(model="resnet56", data="cifar10", recipe="paper-cifar")``).
        resume: a run folder to continue from its last checkpoint, with its own config
            (keywords such as ``epochs`` may extend it).
        **overrides: ``TrainConfig`` fields.

    Returns:
        The run folder, its summary, and the trained model (``last.safetensors``'s, with its
        ``meta``, as ``load_model`` gives it: ``predict`` and ``evaluate`` take it).

    Raises:
        ResnetlabError: a setting or input that cannot be used (``DataError`` for the data,
            ``UnknownModelError`` for the model's name), before the run starts where it can.
        KeyboardInterrupt: Ctrl-C (or the kernel's interrupt), once the run has saved a
            checkpoint that ``resume=`` continues from.

    It prints what the command prints: the setup, progress and each epoch to standard
    error, and the result (``done in ... Run folder: ...``, and a note where always
    answering one class would score as well) to standard output; what the command calls
    ``warning:`` is a Python warning (``resnetlab.errors``' ``DataWarning``,
    ``SettingWarning``...). The run seeds PyTorch's random generators with ``seed`` and
    sets the backend flags that ``deterministic`` asks for; both are as they were before
    once it returns or fails.
    """
    # A worker process running the main script again (no main guard under 'spawn') leaves
    # before it takes the run folder the script's own process holds.
    leave_if_starting_a_worker()
    config_file = _config_file(config)
    if resume is not None and config is not None:
        raise _resume_takes_no_config(config_file)
    if resume is not None:
        run_dir = Path(path_argument(resume, "resume"))
        config, given = _resumed_config(run_dir, overrides)
        kept_from = run_dir / "config.json"  # the head epochs too, which cannot change
        with global_state_kept(), named_as_given(data_as_given(config, overrides)):
            return Trainer(
                config, run_dir=run_dir, resume=True, given=set(given), head_epochs_from=kept_from
            ).run()
    config, head_epochs_from = _resolved_config(config, config_file, overrides)
    with global_state_kept(), named_as_given(data_as_given(config, overrides)):
        return Trainer(config, head_epochs_from=head_epochs_from).run()


def _config_file(config: object) -> str | os.PathLike | None:
    """The config.json that ``train``'s ``config`` names, else None (a ``TrainConfig``, or
    none); anything else is refused."""
    config_file = config if isinstance(config, str | os.PathLike) else None
    if config is not None and config_file is None and not isinstance(config, TrainConfig):
        raise ResnetlabError(
            f"train takes a TrainConfig, a config.json or keyword options (train(model=..., "
            f"data=...)), not a {type(config).__name__}"
            + ("; unpack it: train(**options)" if isinstance(config, dict) else "")
        )
    return config_file


def _resume_takes_no_config(config_file: str | os.PathLike | None) -> ResnetlabError:
    """The error for a config given to a resumed run, in the words of the command line or of
    the Python call."""
    if on_command_line():
        who, changes = "--resume", "flags (--resume RUN --epochs 30), not --config"
    else:
        given = "a config.json" if config_file is not None else "a TrainConfig"
        who, changes = (
            "train(resume=...)",
            f"keywords (train(resume=run, epochs=30)), not {given}",
        )
    return ResnetlabError(
        f"{who} continues the run with its own config.json; give what changes as {changes}"
    )


def _resumed_config(run_dir: Path, overrides: dict[str, Any]) -> tuple[TrainConfig, dict]:
    """The config of the run in ``run_dir`` to resume, with the keywords given (those not
    None, also returned) applied: they may extend the run, not change what defines it
    (``_check_same_run``)."""
    _check_resumable(run_dir)
    values = TrainConfig.load(run_dir / "config.json")
    given = {k: v for k, v in overrides.items() if v is not None}
    stored_paths(values)  # a run stored before data paths were absolute
    stored_paths(given)
    _check_same_run(run_dir, values, given)
    # The recipe cannot change (_check_same_run); given again, its preset must not replace
    # the run's own values. A value of config.json that is out of range is named with it.
    flags = {k: v for k, v in given.items() if k != "recipe"}
    return resolve_config(values, source=run_dir / "config.json", **flags), given


def _check_same_run(run_dir: Path, values: dict[str, Any], given: dict[str, Any]) -> None:
    """Refuse keywords given to resume ``run_dir`` that would make it another run: another
    ``out``, or a change to a ``RUN_DEFINING`` setting (data moved since is no change:
    ``_moved_data``)."""
    if "out" in given and Path(given["out"]).expanduser().resolve() != run_dir.resolve():
        rerun = options(option("config", run_dir / "config.json"), option("out", given["out"]))
        raise ResnetlabError(
            f"{option('resume')} continues the run in {run_dir}, where its files are, not "
            f"in {given['out']}; drop {option('out')} (a new run with its settings in "
            f"{given['out']}: {rerun})"
        )
    changed = [k for k in RUN_DEFINING if k in given and given[k] != values.get(k)]
    moved = _moved_data(values, given, run_dir)
    changed = [k for k in changed if k not in moved]
    if changed:
        raise ResnetlabError(
            f"{option('resume')} continues {run_dir} as it was set up; its "
            f"{', '.join(map(option, changed))} "
            f"cannot change (start a new run: {option('config', run_dir / 'config.json')} "
            "with the new values)"
        )


def _resolved_config(
    config: TrainConfig | str | os.PathLike | None,
    config_file: str | os.PathLike | None,
    overrides: dict[str, Any],
) -> tuple[TrainConfig, str | os.PathLike | None]:
    """The config of a new run: ``config_file``'s, ``config`` itself, or the defaults, with
    ``overrides`` applied; warns of settings that do not apply. With it, the config.json
    whose recorded head epochs it kept (named where they do not fit the run), else None."""
    head_epochs_from = None
    if config_file is not None:
        values = TrainConfig.load(config_file)
        _gone_config_data(values, overrides, config_file)
        config = resolve_config(values, source=config_file, **overrides)
        warn_of_settings_that_do_not_apply(config, overrides, values)
        if os.environ.get("RANK", "0") in ("", "0"):  # once under torchrun
            warn_if_weights_changed(config_file, config)
        # config.json records the head epochs a run resolved, its default's too.
        flags = {k for k, v in overrides.items() if v is not None}
        if values.get("head_epochs") is not None and not {"head_epochs", "pretrained"} & flags:
            head_epochs_from = config_file
    elif config is None:
        if overrides.get("model") is None:
            check_names_model(overrides.get("pretrained"))
        config = resolve_config(**overrides)
        warn_of_settings_that_do_not_apply(config, overrides)
    elif overrides:  # a recipe among them applies its preset first, as --recipe does
        values = config.to_dict()
        if not config.model_given:  # still the default, as messages say
            del values["model"]
        config = resolve_config(values, **overrides)
        warn_of_settings_that_do_not_apply(config, overrides, values)
    return config, head_epochs_from


def data_as_given(config: TrainConfig, given: dict[str, Any]) -> dict[str, str]:
    """``{stored: given}`` for the data of ``config`` (kept absolute, for reruns from any
    folder) that ``given`` spelled otherwise: messages name it so (``errors.named_as_given``:
    ``photos/cat/1.jpg``, not ``/home/.../photos/cat/1.jpg``). A file's folder is named so
    too, for the files found beside it (the ``test_signs.h5`` next to ``train_signs.h5``)."""
    pairs = {}
    for key in ("data", "val_data"):
        stored, spelled = getattr(config, key), given.get(key)
        if stored and spelled is None and _inside_working_folder(stored):
            spelled = os.path.relpath(stored)  # a resumed run named as it was typed there
        if stored and spelled is not None:  # photos/ named photos: photos/cat/1.jpg
            pairs = {**path_as_given(stored, spelled), **pairs}
    return pairs


def _inside_working_folder(path: str) -> bool:
    try:
        return os.path.isabs(path) and Path(path).is_relative_to(Path.cwd())
    except OSError:  # a working folder since removed
        return False


def path_as_given(stored: str, spelled: str | os.PathLike) -> dict[str, str]:
    """``{stored: given}`` for one data path, and for the folder above it as well: a file's,
    for the files found beside it; a folder's, for the data set it may be a class folder of
    (``photos/`` for ``--data photos/cat``)."""
    pairs = {stored: os.path.normpath(os.fspath(spelled))}
    folder = os.path.dirname(pairs[stored])
    if folder:
        pairs[os.path.dirname(stored)] = folder
    return pairs


def _moved_data(values: dict[str, Any], given: dict[str, Any], run_dir: Path) -> list[str]:
    """The data options (``data``, ``val_data``) of a run to resume whose folder or file is
    no longer where the run read it, and which are given anew: read there in its place, as
    a warning says (the run then checks that it holds as many images). Refused, naming the
    way, when one is gone and not given."""
    moved = []
    for key in ("data", "val_data"):
        stored = values.get(key)
        # A local path is stored absolute (stored_paths); digits, cifar10... are names.
        if not (isinstance(stored, str) and Path(stored).is_absolute()):
            continue
        if Path(stored).exists():
            continue
        if key not in given:
            raise ResnetlabError(_gone(run_dir, stored, key, option("resume", run_dir)))
        warn(
            f"{stored}, which {run_dir} trained on, is not there now: resuming on "
            f"{given[key]} in its place ({option(key)})",
            SettingWarning,
        )
        moved.append(key)
    return moved


def _left_out_note(batch_size: int, images: int) -> str | None:
    """A line when full batches of ``batch_size`` leave more than a fifth of the ``images``
    out of every epoch (the last, partial batch is dropped, so that every step has the same
    shape), with the batch that takes them all in; else None."""
    steps = images // batch_size
    left = images - steps * batch_size
    if not steps or left <= images / 5:
        return None
    better = images // (steps + 1)
    kept = "all of them" if images % (steps + 1) == 0 else f"all but {images % (steps + 1)}"
    return (
        f"a batch of {batch_size} leaves {left:,} of the {images:,} training images out of "
        "each epoch (the last, partial batch is dropped; the shuffle leaves out others each "
        f"epoch); {option('batch_size', better)} trains on {kept}"
    )


def _gone(owner: str | os.PathLike, stored: str, key: str, way: str) -> str:
    """The message for data (``key``: ``data``, ``val_data``) that ``owner`` (a run folder,
    a config file) trained on at ``stored``, gone since: give its new place after ``way``."""
    near = near_name(Path(stored))
    hint = f" ({near}?)" if near else ""
    return (
        f"{owner} trained on {stored}, which is not there now; if it moved, give its new "
        f"place{hint}: {options(way, option(key, text='PATH'))}"
    )


def _gone_config_data(values: dict[str, Any], given: dict[str, Any], config_file: Path) -> None:
    """Refuse a config file's data folder or file that is no longer where the run read it
    and is not given anew, naming the way (as ``_moved_data`` does on resuming)."""
    for key in ("data", "val_data"):
        stored = values.get(key)
        if given.get(key) is not None or not (
            isinstance(stored, str) and Path(stored).is_absolute()
        ):
            continue
        if not Path(stored).exists():
            raise ResnetlabError(_gone(config_file, stored, key, option("config", config_file)))


# What a checkpoint was made with: a resumed run cannot change these.
RUN_DEFINING = (
    "model",
    "model_kwargs",
    "data",
    "val_data",
    "val_split",
    "input_size",
    "resize",
    "subset",
    "val_subset",
    "seed",
    # The checkpoint's position counts batches of this size, and its optimizer state has
    # this optimizer's moments for these parameter groups.
    "batch_size",
    "optimizer",
    "no_decay_norm_bias",
    "recipe",  # its settings are in config.json already: a new name would misname them
    "pretrained",
    "freeze",
    "head_epochs",
    "layer_lr_decay",
    "freeze_bn",
    "class_weights",  # the best epoch so far was picked by its metric (balanced or not)
)


# What the loader's workers ended by a SIGTERM sent to the whole process group raise:
# PyTorch's report, the batch they no longer make, or one cut off in its passing
# (connection reset).
WORKERS_ENDED = (RuntimeError, DataError, OSError, EOFError)


def _ended_by_stop(batches: Iterator, stopped: Callable[[], bool]) -> Iterator:
    """``batches``, ended where making one fails once the run was asked to stop: SIGTERM
    sent to the whole process group ends the loader's workers too, and the batch they were
    making fails (``_stop_between_steps``); the epoch's loop then stops as between steps."""
    try:
        yield from batches
    except WORKERS_ENDED:
        if not stopped():
            raise


class Trainer:
    """One training job: set up from a config, then ``run()``."""

    def __init__(
        self,
        config: TrainConfig,
        *,
        run_dir: Path | None = None,
        resume: bool = False,
        given: AbstractSet[str] = frozenset(),
        head_epochs_from: str | os.PathLike | None = None,
    ):
        """``given``: the options a resumed run was given anew (they win over its checkpoint).
        ``head_epochs_from``: the config.json the head epochs were read from (``--config``),
        named where they do not fit the run, as no flag set them."""
        self.config = c = config
        self.given = given
        self.head_epochs_from = head_epochs_from
        self.dist, self.device = init_distributed(c.device)
        # The run folder is made and held before anything is read or decoded: two runs
        # started at once never share one. A new run's folder is removed again (with the
        # folders made for it) if the run cannot start.
        made: list[Path] = []  # innermost first
        if self.dist.is_main:
            if not resume:
                run_dir = Path(c.out) if c.out else None
                _check_outside_data(run_dir, [c.data, c.val_data])
                try:
                    if run_dir is None:  # runs started in the same second each get their own
                        made = missing_folders(Path(RUNS_ROOT))
                        run_dir = new_run_dir(c.model, c.data, RUNS_ROOT)
                        made.insert(0, run_dir)
                    else:
                        made = _make_folder(run_dir)
                except WriteError as e:  # a read-only current folder, most often
                    fix = f"choose another {option('out')}, a folder you can write to"
                    if not c.out:
                        fix = (
                            f"give {option('out')} a folder you can write to (without it the "
                            f"run goes in {RUNS_ROOT}/ in the current folder)"
                        )
                    raise refixed(e, fix) from None
            assert run_dir is not None
            in_use = "a run is training in it; wait for it to end"
            hold_folder(
                run_dir, in_use if resume else f"{in_use}, or choose another {option('out')}"
            )
        # Released once: by run(), a failed start, or the trainer's collection if never run.
        self._release = weakref.finalize(self, release_folder, run_dir)
        if not self.dist.is_main:
            self._release.detach()
        with removed_on_failure(made):
            try:
                if self.dist.is_main and not resume:
                    _check_fresh(run_dir)
                self._set_up(run_dir, resume)
            except BaseException:
                self._release()  # the folder is let go of before it is removed
                raise

    def _set_up(self, run_dir: Path | None, resume: bool) -> None:
        # The parts are set up in the order they depend on each other: weights, data and
        # recipe, model, schedule, then the position in the run and its folder.
        c = self.config
        self.resumed = resume
        torch.manual_seed(c.seed)
        configure_backends(self.device, c.deterministic)
        self.channels_last = resolve_channels_last(c.channels_last, self.device)
        # Pretrained weights are read first: they may set the input size and normalisation.
        # A run resumed from its checkpoint reads their record; one stopped before its first
        # checkpoint starts again from step 0, from the weights.
        from_record = resume and run_dir is not None and (run_dir / CHECKPOINT_NAME).exists()
        self.start = (
            PretrainedStart.of(c, run_dir if from_record else None) if c.pretrained else None
        )
        # pretrained.json's text, written again if the run folder is removed mid-run: a run
        # from pretrained weights cannot be resumed without it.
        self.pretrained_record: str | None = None
        if from_record and c.pretrained:
            assert run_dir is not None
            self.pretrained_record = (run_dir / PRETRAINED_RECORD).read_text()
        weights = self.start.weights if self.start else None
        self.size_given = c.input_size is not None  # --input-size, not the weights' or model's
        self.size_of_weights = False  # the size the weights were trained at, taken from them
        if c.input_size is None and weights is not None and weights.input_size:
            # The size they were trained at, unless --input-size says otherwise.
            self.config = c = dataclasses.replace(c, input_size=weights.input_size)
            self.size_of_weights = True
        self.input_size = c.input_size or model_info(c.model).input_size
        self.size_note = None
        if c.input_size is None and weights is not None and weights.location:
            self.size_note = (
                f"pretrained: {Path(weights.location).name} does not record the input size "
                f"it was trained at: {self.input_size}x{self.input_size} taken ({c.model}'s); "
                f"{option('input_size', text='N')} trains at another"
            )
        # Checked as given before the data is loaded, whose images are padded by
        # --crop-padding once, and again with what the auto recipe chose.
        if problem := augmentation_problem(self.config, self.input_size):
            raise ResnetlabError(problem)
        self._load_data()  # also fills in what the auto recipe chose from the data
        if problem := augmentation_problem(self.config, self.input_size):
            raise ResnetlabError(problem)
        # A resumed run keeps the CPU plan it started with, unless told another precision
        # or layout (which then holds from here on, as --lr does).
        keep = resume and not {"precision", "channels_last"} & self.given
        self._build_model(weights, _stored_plan(run_dir) if keep else None)
        self._plan_schedule()
        self._set_position(run_dir, resume)
        if self.warmup_note and not (resume and self._nothing_to_train()):
            warn(self.warmup_note, SettingWarning)

    def _build_model(self, weights: PretrainedWeights | None, plan: CpuPlan | None) -> None:
        """Model, optimizer, EMA and the step: what `resnetlab bench train` measures too.
        ``plan``: on the CPU, the one a resumed run started with."""
        # PyTorch's thread count, within a container's CPU quota, before the calibration.
        self.quota_note = fit_threads_to_quota() if self.device.type == "cpu" else None
        parts = build_training(
            self.config,
            self.device,
            num_classes=len(self.class_names),
            input_size=self.input_size,
            dist=self.dist,
            pretrained=weights,
            class_names=self.class_names,
            cpu_plan=plan,
            run_steps=self.config.max_steps or self.config.epochs * len(self.train_loader),
            # a batch larger than the data: each step trains all of it, not the batch
            step_images=self.num_train // self.dist.world_size,
            class_counts=self.class_counts,
        )
        self.model = parts.model  # unwrapped: what is saved and averaged
        self.net = parts.net
        self.optimizer, self.scaler, self.ema = parts.optimizer, parts.scaler, parts.ema
        self.amp_dtype = parts.amp_dtype
        self.train_step = parts.step
        self.cpu_plan = parts.cpu_plan
        self.tuning = parts.tuning
        if parts.channels_last != self.channels_last:  # the CPU plan chose the other layout
            self.channels_last = parts.channels_last
            for loader in (self.train_loader, self.val_loader):
                if loader is not None:
                    loader.channels_last = parts.channels_last

    def _plan_schedule(self) -> None:
        """Steps, epochs, warm-up, the loss guard, and the fine-tuning stages' lengths."""
        c = self.config
        self.steps_per_epoch = len(self.train_loader)
        self.total_steps = c.max_steps or c.epochs * self.steps_per_epoch
        # With max_steps the last epoch may be cut short.
        self.num_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        if c.warmup_steps is None and not math.isfinite(c.warmup_epochs * self.steps_per_epoch):
            raise ResnetlabError(
                f"warmup epochs {c.warmup_epochs:g} is more steps than can be counted; give "
                f"at most the run's {count_of(self.num_epochs, 'epoch')}, or "
                f"{option('warmup_steps')}"
            )
        self.warmup_steps = (
            c.warmup_steps
            if c.warmup_steps is not None
            else round(c.warmup_epochs * self.steps_per_epoch)
        )
        self.warmup_note = None  # said once the position is known: not for a run that is over
        if self.warmup_steps >= self.total_steps > 1 and c.schedule != "constant":
            # The recipe's warm-up is in epochs: said so, as the user may not have set one.
            recipe = f", the recipe's {count_of(c.warmup_epochs, 'epoch')}"
            epochs = recipe if c.warmup_steps is None else ""
            run = f"the run ({count_of(self.total_steps, 'step')})"
            how = (
                f"longer than {run}: the rate never reaches its peak, nor decays"
                if self.warmup_steps > self.total_steps
                else f"as long as {run}: the rate rises to its peak and never decays"
            )
            self.warmup_note = (
                f"the warm-up ({count_of(self.warmup_steps, 'step')}{epochs}) is {how}; give a "
                f"shorter {option('warmup_steps')}, or a longer run"
            )
        # The auto recipe's rate is lowered if the loss climbs while it rises (engine.auto).
        self.guard = (
            LossGuard(len(self.class_names), 2 * self.warmup_steps) if self.lr_by_auto else None
        )
        self.watched = (0.0, 0)  # loss sum and images the guard has seen since the last log
        self.thread_watch: ThreadWatch | None = None  # on the CPU: fewer threads on shared cores
        given_head = c.head_epochs is not None
        check_length(
            self.tuning,
            self.total_steps,
            self.steps_per_epoch,
            given_head,
            self.head_epochs_from,
            resumed=self.resumed,
        )
        epoch_images = self.steps_per_epoch * c.batch_size  # per process, as validation is
        recomputed = (
            len(self.calibration_split) if c.recalibrate_bn and batchnorm_layers(self.model) else 0
        )
        self.val_every = c.val_every or validation_interval(
            epoch_images, self.num_val, self.num_epochs, recomputed
        )
        first = f" after recomputing BN statistics on {recomputed:,}" if recomputed else ""
        self.val_every_line = (
            f"validation every {count_of(self.val_every, 'epoch')} and after the last: an "
            f"epoch trains {epoch_images:,} images, a validation scores {self.num_val:,}"
            f"{first} ({option('val_every', 1)} validates every epoch)"
            if c.val_every is None and self.val_every > 1
            else None
        )
        c.head_epochs = self.tuning.head_epochs  # config.json records the resolved value

    def _set_position(self, run_dir: Path, resume: bool) -> None:
        """Step 0 of a new run in its (checked) folder, or where a resumed run's checkpoint
        was."""
        self.epoch, self.batch, self.step = 0, 0, 0
        self.train_time = 0.0
        self.images_trained = 0
        self.best = {"metric": -math.inf, "epoch": None}
        self.last_metric = -math.inf  # the accuracy of the last epoch, for target_accuracy
        self.last_val: EvalResult | None = None  # the last epoch's results
        self.last_train: dict[str, float] = {}
        # Loss x images, hits and images of the epoch so far; kept by a checkpoint inside an
        # epoch, so that a resumed epoch's record covers all of it.
        self.epoch_sums = (0.0, 0.0, 0)
        self.bn_note: str | None = None  # what happened to BN statistics before validation
        self.finite_step: int | None = None  # the step whose weights were last found finite
        # From a step's start until it is counted: the model, optimizer and BN statistics
        # may hold part of it, which no checkpoint may keep.
        self.mid_step = False
        self.stop_signal = signal.SIGINT  # what stops the run: Ctrl-C, or SIGTERM
        self.mistakes: Mistakes | None = None  # the last validation pass's
        # The best epoch's pass's, for errors.png (None after a resume: a pass of its own).
        self.best_mistakes: Mistakes | None = None
        if resume:
            assert run_dir is not None
            # A run killed before its first checkpoint starts again from step 0, which is
            # where it was: the start is a function of the config alone.
            if (run_dir / CHECKPOINT_NAME).exists():
                self._restore(load_checkpoint(run_dir / CHECKPOINT_NAME), run_dir)
            else:
                _check_untrained(run_dir)
        self.resumed_epoch = self.epoch if resume else None  # the one it resumes in
        self.run_dir = broadcast_object(run_dir, self.dist)
        if self.dist.is_main:
            remove_stale_temps(self.run_dir, RUN_FILES)
        self.log = RunLog(
            self.run_dir,
            epochs=self.num_epochs,
            enabled=self.dist.is_main,
            tensorboard=self.config.tensorboard,
            resume_step=self.step if resume else None,
            resume_epoch=self.epoch if resume else None,
        )
        if not self.dist.enabled:  # (under torchrun every process must stop at one step)
            self.log.on_output_lost = weakref.WeakMethod(self._output_lost)

    def _decide_flip(self, mean: tuple[float, ...], std: tuple[float, ...]) -> TrainConfig:
        """The config with ``flip`` decided where it was left open: off for images that look
        like digits or characters (a mirror turns them into other symbols), and recorded in
        config.json."""
        c = self.config
        if c.flip is not None:
            return c
        flip = not is_digit_like(c.data, self.class_names, mean, std)
        if not flip:
            self.data_notes.append(
                "no flips: the images look like digits or characters, which a mirror turns "
                f"into other symbols ({option('flip', True)} turns them on)"
            )
        return dataclasses.replace(c, flip=flip)

    def _held_out_unlike_the_weights(self) -> str | None:
        """Weights of a run on the same files that held out other images (another --seed or
        --val-split), or on this folder counted otherwise (images added or removed since,
        or its unreadable files counted by a streamed run and not by a decoded one): the
        split shuffles each class in turn from one generator, so another count anywhere
        moves the images held out after it. This run would validate on images they trained
        on."""
        weights = self.start.weights if self.start is not None else None
        if weights is None or weights.kind not in ("run", "resnetlab") or not self.held_out:
            return None
        assert weights.location is not None
        meta = read_model_meta(weights.location)
        training = meta.training or {}
        theirs, ours = training.get("held_out"), self.held_out
        if not isinstance(theirs, dict):
            return None
        name = Path(self.config.data).name  # "" for ".": no name to know the data by
        named = bool(name) and training.get("data") == name
        if ours.get("files") is not None:
            same = theirs.get("files") == ours["files"]
            # A folder of the same name and classes (data/ of other photos is no such one).
            this = named and list(meta.class_names or []) == list(self.class_names)
            if not same and this and theirs.get("per_class") != ours["per_class"]:
                return (
                    f"the weights' run split {training['data']} when it counted other "
                    "images per class (added or removed since, or the unreadable ones that "
                    "a run with --stream counts): this run holds out other images than it "
                    "did, some of them ones the weights trained on, which "
                    "flatters its validation accuracy; to validate on images the weights "
                    f"never saw, move them out of {self.config.data} and give them with "
                    f"{option('val_data', text='DIR')}"
                )
        else:  # a data set of no files (an .h5, digits): by its name and images per class
            same = named and theirs.get("per_class") == ours["per_class"]
        if not same:
            return None
        if (theirs.get("fraction"), theirs.get("seed")) == (ours["fraction"], ours["seed"]):
            return None
        flags = " ".join(
            f"--{flag} {theirs.get(key)}"
            for flag, key in (("seed", "seed"), ("val-split", "fraction"))
            if theirs.get(key) != ours[key]
        )
        return (
            f"the weights' run held out {theirs.get('fraction')} of these images with seed "
            f"{theirs.get('seed')}, this run {ours['fraction']} with seed {ours['seed']}: its "
            f"validation images include some the weights trained on, which flatters its "
            f"accuracy; give {flags} to hold out the same ones"
        )

    def _load_data(self) -> None:
        """Decode the data once, at the model's input size; loaders normalised with the
        training split's statistics."""
        c = self.config
        data = load_dataset(
            c.data,
            c.val_data,
            val_split=c.val_split,
            image_size=self.input_size,
            seed=c.seed,
            download=c.download,
            stream=c.stream,
            default_val_split=DEFAULT_VAL_SPLIT,
            resize=c.resize,
            warn_copies=False,  # below, among the images --subset and --val-subset keep
        )
        # A subset smaller than the classes leaves some without images: said as that, with
        # its fix, in place of the small-class warning on the training images.
        self.subset_emptied = False
        if c.subset is not None:
            note = subset_all_note("subset", c.subset, data.train, "training")
            if note and _users("subset"):
                warn(note, DataWarning)
            whole, data.train = data.train, stratified_sample(data.train, c.subset, c.seed)
            if note := subset_note("subset", c.subset, whole, data.train, "training"):
                warn(note, DataWarning)
                self.subset_emptied = True
        self.val_images = len(data.val) if data.val is not None else 0  # before any sample
        if c.val_subset is not None and data.val is not None:
            note = subset_all_note("val_subset", c.val_subset, data.val, "validation")
            if note and _users("val_subset"):
                warn(note, DataWarning)
            whole, data.val = data.val, stratified_sample(data.val, c.val_subset, c.seed)
            if note := subset_note("val_subset", c.val_subset, whole, data.val, "validation"):
                warn(note, DataWarning)
        if data.val is not None and (
            copies := copies_of_training_images(data.train, data.val, "validation")
        ):
            warn(copies, DataWarning)
        self.class_names = data.class_names
        if bad := next((n for n in self.class_names if class_name_problem(n)), None):
            # refused now, not when the model file is written at the end of the run
            raise DataError(
                f"{c.data}: the class name {bad!r} {class_name_problem(bad)}, which "
                "a model file cannot hold; rename the class"
            )
        self.held_out = data.held_out  # how validation was held out, for eval to do again
        self.validated_test = data.validated_test  # a test split that validates, for eval
        if note := self._held_out_unlike_the_weights():
            warn(note, DataWarning)
        # How the data was read (classes from file names, files ignored, streamed); the
        # unreadable files were warned about as they were skipped.
        self.data_notes = [
            _with_advice(
                note, self.input_size, self.size_given, c.model, self.resumed, self.size_of_weights
            )
            for note in unwarned(data.train.notes)
        ]
        if data.val is not None:  # where the validation images come from, what was done to them
            self.data_notes += [
                f"validation: {note}"
                for note in unwarned(data.val.notes)
                if note not in data.train.notes
            ]
        data_mean, data_std = split_stats(data.train)
        start = self.start
        has_norm = start is not None and start.mean is not None
        self.mean, self.std = (start.mean, start.std) if has_norm else (data_mean, data_std)
        self.config = self._resolve_recipe(len(data.train))
        self.config = self._decide_flip(data_mean, data_std)
        self._make_loaders(data)

    def _make_loaders(self, data: Dataset) -> None:
        """The training and validation loaders, and the training images BN statistics are
        recalibrated on; a batch size that does not fit the data refused or warned of."""
        c = self.config
        loader_args = dict(
            device=self.device, mean=self.mean, std=self.std, channels_last=self.channels_last
        )
        self.train_loader = make_loader(
            data.train,
            train=True,
            batch_size=c.batch_size,
            augment=Augment(
                crop_padding=c.crop_padding,
                flip=c.flip,
                cutout=c.cutout,
                scale_jitter=c.scale_jitter,
            ),
            seed=c.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            num_workers=c.num_workers,
            **loader_args,
        )
        if c.num_workers is not None and isinstance(self.train_loader, DeviceLoader):
            warn(
                f"{option('num_workers', c.num_workers)} does not apply: the training images "
                "are held in memory and augmented there in batches, without worker processes; "
                f"it sets those of data streamed from disk ({option('stream', True)})",
                SettingWarning,
            )
        if len(self.train_loader) == 0:
            raise ResnetlabError(
                f"{len(data.train)} training images make no full batch of {c.batch_size}; "
                f"lower {option('batch_size')}"
            )
        self.class_counts = data.train.class_counts()  # what --class-weights balanced weighs by
        if c.class_weights == "balanced":
            self.data_notes.append(weighed_classes_note(self.class_names, self.class_counts))
        balance = class_balance_note(data.train, weighed=c.class_weights == "balanced")
        if not self.subset_emptied and balance is not None:
            warn(balance, DataWarning)
        per_process = len(data.train) // self.dist.world_size
        too_large = (
            f"a batch of {c.batch_size} is more than the {per_process:,} training images: "
            f"each epoch is one step over all of them; a {option('batch_size')} of at most "
            f"{max(1, per_process // 2)} gives the optimizer more steps"
        )
        if c.batch_size > per_process:
            warn(too_large, SettingWarning)
        left = None if self.batch_by_recipe else _left_out_note(c.batch_size, per_process)
        if left:
            warn(left, SettingWarning)
        # Every process evaluates the whole validation set: results agree without a gather.
        self.val_loader = (
            make_loader(
                data.val, train=False, batch_size=validation_batch_size(c.batch_size), **loader_args
            )
            if data.val is not None
            else None
        )
        self.num_train, self.num_val = len(data.train), len(data.val) if data.val is not None else 0
        # The files of the validation images in the loader's order, for errors.png (streamed
        # ones may be dropped as unreadable, which would shift the rest).
        self.val_paths = data.val.paths if isinstance(data.val, ImageSet) else None
        size = calibration_size(c.batch_size, len(data.train))
        self.calibration_split = stratified_sample(data.train, size, c.seed)
        self.calibration_loader = None  # made when first needed

    def _resolve_recipe(self, num_train: int) -> TrainConfig:
        """The config with what the auto (or finetune) recipe leaves to the data filled in."""
        self.auto_line = None
        self.lr_by_auto = self.config.recipe == "auto" and "lr" in self.config.unset()
        self.batch_by_recipe = "batch_size" in self.config.unset()  # chosen for the data
        if not self.config.unset():
            return self.config
        if self.config.recipe == "finetune":
            config, self.auto_line = apply_finetune(
                self.config, num_images=num_train, world_size=self.dist.world_size
            )
            return config
        config, self.auto_line = apply_auto(
            self.config,
            num_images=num_train,
            image_size=self.input_size,
            num_classes=len(self.class_names),
            world_size=self.dist.world_size,
        )
        return config

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> RunResult:
        try:
            return self._run()
        finally:
            self._release()

    def _run(self) -> RunResult:
        if self.resumed and self._nothing_to_train():
            return self._finished_before()
        status = "failed"
        try:
            if self.dist.is_main:
                self._start_run()
            self._train_epochs()
            status = "finished"
        except TrainingDiverged:
            status = "diverged"
            raise
        except KeyboardInterrupt:
            status = "interrupted"
            if self.dist.is_main:
                try:
                    self._stop_interrupted()
                except TrainingDiverged:  # found as the checkpoint was saved
                    status = "diverged"
                    raise
            raise
        except WriteError as e:
            raise self._write_failed(e) from None
        except WorkersLost:  # found while waiting for a batch, before PyTorch's SIGCHLD did
            raise ResnetlabError(self._worker_lost()) from None
        except RuntimeError as e:  # torch.cuda.OutOfMemoryError is one too
            if "DataLoader worker" in str(e):  # killed: the system's out-of-memory killer
                raise ResnetlabError(self._worker_lost(e)) from None
            if not out_of_memory(e):
                raise
            raise ResnetlabError(self._out_of_memory()) from None
        finally:
            summary = self._final_summary(status)
            self.log.close()
            shutdown(self.dist)
        result = RunResult(self.run_dir, summary, self._final_model())
        if self.stop_requested and _CONTINUE_WITH.get() is not None:
            # Ctrl-C (or SIGTERM) after the last step, while the run validated and saved: it
            # finished, and the runs after it in the series (an experiment's) must not start.
            by = self._stopped_by()
            self.log.message(
                f"interrupted{by} as the run ended, which it finished. Continue with: "
                f"{self._continue_with()}"
            )
            raise RunInterrupted(self.stop_signal)
        return result

    def _train_epochs(self) -> None:
        """Train and validate epoch by epoch up to the last, the target accuracy or the
        patience's end, with Ctrl-C and SIGTERM stopping the run between steps."""
        c = self.config
        with self._stop_between_steps(), cpu_threads(self.cpu_plan):
            if not self.dist.enabled:  # (every process steps at the slowest's pace)
                self.thread_watch = watch_threads(self.cpu_plan, c, self.log.message)
            while (
                self.epoch < self.num_epochs
                and not self._reached_target()
                and not self._out_of_patience()
            ):
                train_stats = self._train_epoch()
                with self._between_epochs():
                    self._sync_buffers()
                    if self._validates():
                        self._end_epoch(train_stats, self._evaluate())
                    else:
                        self._end_unvalidated_epoch(train_stats)
        if self._reached_target() and self.dist.is_main:
            self.log.message(
                f"reached the target accuracy {c.target_accuracy:g} after epoch {self.epoch}"
            )
        if self._out_of_patience() and self.dist.is_main and self.epoch < self.num_epochs:
            self.log.message(self._patience_message())

    def _stop_interrupted(self) -> None:
        """The main process's stop on Ctrl-C or SIGTERM: the checkpoint saved (not after a
        second Ctrl-C, in the middle of a step, which a checkpoint cannot hold) and the line
        that says how to continue; raises ``RunInterrupted``."""
        if self.mid_step:  # a second Ctrl-C, or one under torchrun
            self.log.message(
                f"interrupted in the middle of step {self.step + 1:,}, which a checkpoint "
                f"cannot hold: the last one is kept. Continue with: {self._continue_with()}"
            )
            raise RunInterrupted(self.stop_signal) from None
        try:
            self._save_checkpoint()
        except WriteError as e:  # raised inside _run's handler, so not caught by its own
            raise self._write_failed(e) from None
        self.log.message(
            f"interrupted{self._stopped_by()} at epoch {self.epoch + 1}, batch {self.batch}; "
            f"checkpoint saved. Continue with: {self._continue_with()}"
        )
        raise RunInterrupted(self.stop_signal) from None

    def _start_run(self) -> None:
        """The run folder's first files and the log's opening lines (main process only)."""
        c = self.config
        self._write_setup()
        self.log.start(self._describe())
        if self.resumed and self.step:
            where = f"in epoch {self.epoch + 1}" if self.batch else f"after epoch {self.epoch}"
            self.log.message(
                f"resumed at step {self.step:,} of {self.total_steps:,}, {where} "
                f"({self.train_time:.1f} s of training so far)"
            )
            if note := self._low_rate_note():
                self.log.message(note)
            if self.log.metrics_lost:
                warn(self._lost_metrics_note(), DataWarning)
        for note in self.data_notes:
            if _first_in_series(note):
                self.log.message(f"data: {as_given(note)}")
        self._explain_speed()
        if self.auto_line:
            self.log.message(self.auto_line)
        if self.val_every_line:
            self.log.message(self.val_every_line)
        report = getattr(self.model, "pretrained", None)
        if report is not None:  # a fresh run from pretrained weights
            self.pretrained_record = write_record(self.run_dir, report, c)
            self.log.message(f"pretrained: {report.describe()}")
            if self.size_note:
                self.log.message(self.size_note)
        if not (self.run_dir / CHECKPOINT_NAME).exists():
            self._save_checkpoint()  # so that even a first-epoch failure leaves one

    def _between_epochs(self) -> contextlib.AbstractContextManager:
        """Validation and the epoch's saving run on the thread count in force."""
        watch = self.thread_watch
        return watch.settled() if watch is not None else contextlib.nullcontext()

    def _stopped_by(self) -> str:
        """How the run was stopped, for its last line: "" for Ctrl-C, " by SIGTERM"."""
        if self.stop_signal == signal.SIGINT:
            return ""
        if self.stop_signal == _SIGPIPE:  # (Windows has no SIGPIPE among its signals)
            return " by SIGPIPE"
        return f" by {signal.Signals(self.stop_signal).name}"

    def _output_lost(self) -> None:
        """The reader of the run's output has gone (`resnetlab train ... | head`): the run
        stops after its step, saving its checkpoint as on Ctrl-C, and exits as a process
        ended by SIGPIPE does (141)."""
        self.stop_requested, self.stop_signal = True, _SIGPIPE

    @contextlib.contextmanager
    def _stop_between_steps(self):
        """Ctrl-C, or SIGTERM (`kill`, `docker stop`, a batch system's preemption), lets the
        current step finish, so that the checkpoint written on the way out holds whole steps
        (a step cut short has already moved BN's statistics). A second one interrupts at
        once. Not under torchrun, where every process must stop at the same step."""
        # Lost while the run was set up; not under torchrun, where one process stopping
        # alone would leave the others waiting for it.
        self.stop_requested = self.log.output_lost and not self.dist.enabled
        if self.dist.enabled or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        # SIGTERM sent to the whole process group (a batch system's cancel or time limit)
        # ends the data loader's worker processes too, which PyTorch reports on SIGCHLD as
        # an error in whatever runs then, up to the process's end: left unsaid, and the
        # batch they no longer make stops the run as the signal does.
        sigchld = getattr(signal, "SIGCHLD", None)  # (none on Windows)

        def request_stop(signum, frame):
            self.stop_requested, self.stop_signal = True, signum
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if sigchld is not None and signum == signal.SIGTERM:
                signal.signal(sigchld, lambda signum, frame: None)

        for sig, handler in previous.items():
            # One ignored (a shell's background job ignores Ctrl-C) stays ignored.
            if handler is not signal.SIG_IGN:
                signal.signal(sig, request_stop)
        try:
            yield
        except WORKERS_ENDED:  # the loader's workers, ended by the same SIGTERM
            if self.stop_requested:
                raise KeyboardInterrupt from None
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _train_epoch(self) -> dict[str, float]:
        c = self.config
        self.net.train()
        # frozen stages, head phase, BN modes
        resumed_at = self.batch if self.epoch == self.resumed_epoch else None
        if note := self.tuning.begin_epoch(self.epoch, resumed_at):
            self.log.message(note)
        spe = self.steps_per_epoch
        epoch_steps = min(spe, self.total_steps - self.epoch * spe)
        # The steps done are skipped, their batches not made; none left where a stop
        # followed the last one.
        self.train_loader.set_epoch(self.epoch, start=self.batch)
        batches = (
            itertools.islice(iter(self.train_loader), epoch_steps - self.batch)
            if self.batch < epoch_steps
            else ()
        )
        self.train_step.sums.zero_()  # loss * images, hits: since the last log
        self.watched = (0.0, 0)
        seen = images_now = 0  # images since the last log; trained by this process's run
        if self.batch == 0:
            self.epoch_sums = (0.0, 0.0, 0)
        lr = self._lr()
        tick = time.perf_counter()

        def log_steps() -> None:
            """The steps since the last log into the epoch's record and a progress row."""
            nonlocal images_now, seen
            loss_sum, hit_sum, n = self._reduce(self.train_step.take_sums(), seen)
            if not math.isfinite(loss_sum):
                self._diverged("the training loss", lr)
            self._check_finite(lr)
            total_loss, total_hits, total_n = self.epoch_sums
            self.epoch_sums = (total_loss + loss_sum, total_hits + hit_sum, total_n + n)
            images_now += n
            self.images_trained += n
            self.watched = (0.0, 0)
            self.log.progress(
                epoch=self.epoch + self.batch / self.steps_per_epoch,
                step=self.step,
                batch=self.batch,
                train_loss=loss_sum / n,
                train_acc=hit_sum / n,
                lr=lr,
                images_per_s=images_now / max(time.perf_counter() - tick, 1e-9),
            )
            seen = 0

        def stop() -> None:
            """Ctrl-C or SIGTERM while a batch was made: the steps since the last log go
            into the checkpoint's record too, and so does their time, as their images."""
            if seen:
                log_steps()
            self.train_time += time.perf_counter() - tick
            raise KeyboardInterrupt

        self.log.epoch_begin(self.epoch, epoch_steps, self.batch)
        last = time.perf_counter()  # the end of the last step: what a step costs includes
        # waiting for its batch, which the thread count changes too
        for x, y in _ended_by_stop(batches, lambda: self.stop_requested):
            if self.stop_requested:
                stop()
            lr = self._lr()
            set_lr(self.optimizer, lr)
            self._train_step(x, y)
            if self.thread_watch is not None:
                now = time.perf_counter()
                self.thread_watch.after_step(now - last)
                last = now
            seen += len(y)
            if self.guard is not None and self.guard.watching(self.step):
                self._watch_loss(seen, lr)
            self.step += 1
            self.batch += 1
            self.mid_step = False
            self.log.tick(self.batch)
            # Ctrl-C: the steps since the last log go into the checkpoint's record too.
            if self.batch % c.log_every == 0 or self.batch == epoch_steps or self.stop_requested:
                log_steps()
        if self.stop_requested:
            # Ctrl-C during the epoch's last step: the run stops now, as after any other
            # step, not after the epoch's validation, which a resumed run begins with. Or
            # SIGTERM, whose loader's workers ended with it before the epoch's end.
            stop()
        elapsed = time.perf_counter() - tick
        self.train_time += elapsed
        loss_sum, hit_sum, n = self.epoch_sums
        return {
            "train_loss": loss_sum / max(n, 1),
            "train_acc": hit_sum / max(n, 1),
            "lr": lr,
            # None for an epoch whose steps were all trained before a resume.
            "images_per_s": images_now / max(elapsed, 1e-9) if images_now else None,
        }

    def _watch_loss(self, seen: int, lr: float) -> None:
        """Give the guard this step's mean loss (one sync) and halve the peak learning rate
        when it asks; config.json keeps the rate, so a resumed run goes on with it."""
        loss_sum, _, n = self._reduce(self.train_step.sums, seen)
        before_sum, before_n = self.watched
        self.watched = (loss_sum, n)
        if not self.guard.update((loss_sum - before_sum) / max(n - before_n, 1)):
            return
        c = self.config
        c.lr /= 2
        if self.dist.is_main:
            c.save(self.run_dir / "config.json")
            g = self.guard
            self.log.message(
                f"the training loss rose to {g.average:.2f}, {g.average / g.start:.1f}x its "
                f"start ({g.start:.2f}), at lr {lr:.3g} in step {self.step + 1}: too high a rate "
                f"for this model; auto halves the peak rate to {c.lr:.3g} ({option('lr')} sets it)"
            )

    def _validates(self) -> bool:
        """Whether the epoch just trained ends with validation and saving: every
        ``val_every`` epochs, the last, and the one where ``patience`` would run out."""
        done = self.epoch + 1
        patience, best = self.config.patience, self.best["epoch"]
        return (
            done % self.val_every == 0
            or done >= self.num_epochs
            or (patience is not None and best is not None and done - best >= patience)
        )

    def _out_of_patience(self) -> bool:
        """``patience`` epochs have passed since the best one (early stopping)."""
        patience, best = self.config.patience, self.best["epoch"]
        return patience is not None and best is not None and self.epoch - best >= patience

    def _metric_of(self, val: EvalResult) -> float:
        """What picks the best epoch: the validation accuracy, or under --class-weights
        balanced the balanced accuracy, which weighs each class the same as the loss does
        (the accuracy on a split as skewed as the training images favours the epochs that
        neglect a small class)."""
        return val.balanced_accuracy if self._balanced() else val.accuracy

    def _balanced(self) -> bool:
        return self.config.class_weights == "balanced" and bool(self.num_val)

    def _patience_message(self) -> str:
        what = "validation" if self.num_val else "training"
        what += " balanced" if self._balanced() else ""
        return (
            f"stopped early after epoch {self.epoch} of {self.num_epochs}: no better {what} "
            f"accuracy for {count_of(self.config.patience, 'epoch')} ({option('patience')}), best "
            f"{self.best['metric']:.4f} at epoch {self.best['epoch']}"
        )

    def _reached_target(self) -> bool:
        """The last epoch's accuracy (validation, else training) reached ``target_accuracy``."""
        target = self.config.target_accuracy
        return target is not None and self.epoch > 0 and self.last_metric >= target

    def _lost_metrics_note(self) -> str:
        """What a resumed run whose metrics.csv is gone has lost, and where its rows start."""
        epoch, batch, step = self.epoch, self.batch, self.step
        done = "epoch 1" if epoch == 1 else f"epochs 1-{epoch}"
        if not batch:
            lost, start = f"the rows of {done}", f"epoch {epoch + 1}"
        else:
            part = f"the first {count_of(batch, 'step')} of epoch {epoch + 1}"
            lost = f"the rows of {done} and of {part}" if epoch else f"the rows of {part}"
            start = f"step {step + 1:,}, in epoch {epoch + 1}"
        return (
            f"{self.log.metrics_path} is missing: {lost} are lost; this run's rows, and its "
            f"curves.png, start at {start}"
        )

    def _low_rate_note(self) -> str | None:
        """A note when a run extended on resuming (``--epochs``/``--max-steps`` given anew)
        goes on at a small share of its peak rate: its schedule, stretched to the new length,
        is near its end (two more epochs of a finished cosine run of thirty, say)."""
        if not {"epochs", "max_steps"} & self.given:
            return None
        share = self._lr() / self.config.lr
        if share >= 0.1:
            return None
        return (
            f"the learning rate goes on at {share:.0%} of its peak ({self.config.schedule} "
            "schedule, stretched to the new length), so the added steps change the weights "
            "little; to train on at a higher rate, start a new run from these weights "
            f"({option('pretrained', self.run_dir)})"
        )

    def _lr(self) -> float:
        c = self.config
        step, total = self.tuning.phase_span(self.step, self.total_steps, self.steps_per_epoch)
        return lr_at(
            step,
            base_lr=c.lr,
            total_steps=total,
            schedule=c.schedule,
            warmup_steps=self.warmup_steps,
            milestones=c.milestones,
            gamma=c.gamma,
        )

    def _train_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One optimizer step; the loss and hits accumulate on the device. Its own method so
        that the fault suite can count steps (tests/faults/killer.py)."""
        self.mid_step = True
        self.train_step(x, y)

    def _reduce(self, sums: torch.Tensor, seen: int) -> tuple[float, float, int]:
        """(loss sum, hits, images) over all processes since the last log: one sync."""
        packed = torch.cat(
            [sums.double(), torch.tensor([seen], dtype=torch.float64, device=sums.device)]
        )
        loss_sum, hits, n = all_reduce_sum(packed, self.dist).tolist()
        return loss_sum, hits, int(n)

    def _sync_buffers(self) -> None:
        """Under torchrun, give every process rank 0's buffers (BN statistics drift apart on
        different shards, and so do the EMA's, which follow them): what is evaluated,
        recalibrated and saved is then the same model everywhere."""
        if self.dist.enabled:
            models = [self.model] + ([self.ema] if self.ema is not None else [])
            for buffer in itertools.chain.from_iterable(m.buffers() for m in models):
                torch.distributed.broadcast(buffer, src=0)

    def _evaluate(self) -> EvalResult | None:
        self.bn_note = self._recalibrate_bn()  # also without validation: the model is saved
        if self.val_loader is None:
            return None
        # The last pass's mistakes make the finished run's errors.png without another.
        self.mistakes = Mistakes() if self.dist.is_main else None
        return evaluate_loader(
            self._eval_model(),
            self.val_loader,
            len(self.class_names),
            self._autocast(),
            observe=self.mistakes.add if self.mistakes is not None else None,
        )

    def _calibration_batches(self) -> Iterator[torch.Tensor]:
        """Training batches as training makes them (augmented: the network's weights fit the
        statistics of augmented batches, not of clean images), the same ones every time."""
        if self.calibration_loader is None:
            self.calibration_loader = make_loader(
                self.calibration_split,
                train=True,
                batch_size=min(self.config.batch_size, len(self.calibration_split)),
                device=self.device,
                mean=self.mean,
                std=self.std,
                augment=self.train_loader.augment,
                seed=self.config.seed,
                channels_last=self.channels_last,
                num_workers=self.config.num_workers,
            )
        return (x for x, _ in self.calibration_loader)

    def _recalibrate_bn(self) -> str | None:
        """Recompute BN statistics before validating (``recalibrate_bn``); the note for the
        epoch line when they were not and still lag: why the accuracy may be off."""
        model = self._eval_model()
        if self.config.recalibrate_bn and batchnorm_layers(model):
            # The epoch just trained (self.epoch is not yet advanced): its frozen BN layers.
            keep = self.tuning.kept_batchnorms(self.epoch)
            recalibrate(model, self._calibration_batches(), self._autocast(), keep=keep)
            self.finite_step = None  # new statistics: checked again before they are saved
            return None
        lag = lag_steps(model)
        if self.step < lag:
            return (
                f"BN running statistics still lag (step {self.step} of about {lag}): "
                "validation may be far below training; "
                f"{option('recalibrate_bn', True)} recomputes them"
            )
        return None

    def _end_unvalidated_epoch(self, train_stats: dict[str, float]) -> None:
        """An epoch between validations: its training row and line; nothing saved (the
        next checkpoint is at the next validation, a few short epochs on)."""
        self.epoch += 1
        self.batch = 0
        self.last_train = train_stats
        row = dict(epoch=self.epoch, step=self.step, **train_stats)
        self.log.epoch_end(row)

    def _end_epoch(self, train_stats: dict[str, float], val: EvalResult | None) -> None:
        if val is not None and val.count and not math.isfinite(val.loss):
            self._diverged("the validation loss", train_stats["lr"])
        self.epoch += 1
        self.batch = 0
        self.last_val = val
        self.last_train = train_stats
        accuracy = val.accuracy if val is not None else train_stats["train_acc"]
        self.last_metric = accuracy  # --target-accuracy's, whatever picks the best epoch
        metric = self._metric_of(val) if val is not None else accuracy
        improved = metric > self.best["metric"]
        if improved:
            self.best = {"metric": metric, "epoch": self.epoch}
            self.best_mistakes = self.mistakes
        row = dict(
            epoch=self.epoch,
            step=self.step,
            **train_stats,
            val_loss=val.loss if val else None,
            val_acc=val.accuracy if val else None,
            val_top5=val.top5 if val else None,
        )
        if self.dist.is_main and not self.run_dir.is_dir():
            self._write_removed_run_dir()
        self.log.epoch_end(row, note=self.bn_note if val else None)
        if self.dist.is_main:
            last, best = self.run_dir / "last.safetensors", self.run_dir / "best.safetensors"
            self._save_model(last)
            if improved and not atomic_link(last, best):  # one file on disk, not two
                self._save_model(best)
            self._save_checkpoint()

    # -- saving --------------------------------------------------------------------------

    def _write_setup(self) -> None:
        """``config.json``, the CPU plan and ``pretrained.json`` (once written): what
        ``--resume`` needs besides the checkpoint."""
        self.config.save(self.run_dir / "config.json")
        if self.pretrained_record is not None:
            atomic_write_text(self.run_dir / PRETRAINED_RECORD, self.pretrained_record)
        if self.cpu_plan is not None:  # what --resume trains with
            atomic_write(
                self.run_dir / CPU_PLAN_NAME,
                (json.dumps(self.cpu_plan.to_record(), indent=1) + "\n").encode(),
            )

    def _write_removed_run_dir(self) -> None:
        """The run folder was removed while the run trained (a clean-up of ``runs/``): write
        it again whole, from what the run holds, rather than leave a folder of model files
        that has no config or metrics and cannot be resumed."""
        self.log.message(
            f"warning: the run folder {self.run_dir} was removed while the run trained; "
            "writing it again (config, metrics so far and this epoch's files)"
        )
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise write_error(self.run_dir, e) from None
        self._write_setup()
        self.log.rewrite_metrics()

    def _eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def _final_model(self) -> nn.Module:
        """The model ``last.safetensors`` holds, in eval mode, with that file's metadata as
        ``model.meta`` (as ``load_model`` gives it), so that ``predict``, ``evaluate`` and
        ``explain`` take it as it is."""
        model = self._eval_model().eval()
        last = self.run_dir / "last.safetensors"
        if last.is_file():
            attach_meta(model, read_model_meta(last))
        return model

    def _error_source(self) -> ErrorSource:
        """What errors.png shows: the mistakes of the model best.safetensors holds, the one
        a run ships and whose mistakes point at mislabelled images, where the last epoch's
        is another."""
        best = self.run_dir / "best.safetensors"
        if self.best["epoch"] in (None, self.epoch) or not best.is_file():
            model, seen, epoch = self._eval_model(), self.mistakes, self.epoch
        else:
            model, seen = load_model(best, device=self.device), self.best_mistakes
            epoch = self.best["epoch"]
        return ErrorSource(
            model,
            self.val_loader,
            self.mean,
            self.std,
            seen=seen,
            paths=self.val_paths,
            epoch=epoch,
        )

    def _check_saved_finite(self) -> None:
        """Refuse to save NaN/inf weights; a check made at this step (by every process, or
        before the other file was saved) holds while no BN statistic has changed since."""
        if self.finite_step != self.step:
            self._check_finite(collective=False)

    def _save_model(self, path: Path) -> None:
        self._check_saved_finite()
        save_model(
            self._eval_model(),
            path,
            class_names=self.class_names,
            input_size=self.input_size,
            mean=self.mean,
            std=self.std,
            training=self._training_info(),
            resize=self.config.resize,
            # What validation fed it, weights from ImageNet (0.875) or not: eval and
            # predict then see the images the run's scores were measured on.
            crop_fraction=1.0,
        )

    def _save_checkpoint(self) -> None:
        self._check_saved_finite()
        state = {
            "epoch": self.epoch,
            "batch": self.batch,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "best": self.best,
            "train_time": self.train_time,
            "images_trained": self.images_trained,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": cuda_rng_state(self.device),
            # The last epoch's results: a resumed run's summary reports them too.
            "last_train": self.last_train,
            "epoch_sums": self.epoch_sums,
            "last_val": _val_state(self.last_val),
            # --target-accuracy's: of the last validated epoch, not of one trained since.
            "last_metric": self.last_metric,
            "loss_guard": self.guard.state_dict() if self.guard is not None else None,
            "peak_lr": self.config.lr,  # the rate the guard has left, with its state
            "train_images": self.num_train,  # a resumed run must see the same data
        }
        save_checkpoint(self.run_dir / CHECKPOINT_NAME, state)

    def _restore(self, state: dict[str, Any], run_dir: Path) -> None:
        self._restore_progress(state, run_dir)
        try:
            # In a few words: load_state_dict's own message names every key that differs.
            if problem := shapes_problem(_shapes(self.model.state_dict()), _shapes(state["model"])):
                raise ValueError(f"its model has {problem}")
            self.model.load_state_dict(state["model"])
            self._restore_optimizer(state["optimizer"], run_dir)
            if self.ema is not None and state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])
            if self.scaler is not None and state.get("scaler") is not None:
                self.scaler.load_state_dict(state["scaler"])
            torch.set_rng_state(state["rng_cpu"])
            restore_cuda_rng(state.get("rng_cuda"), self.device)
            self.best = {"metric": float(state["best"]["metric"]), "epoch": state["best"]["epoch"]}
            if state.get("last_val") is not None:
                self.last_val = EvalResult(**state["last_val"])
                if len(self.last_val.confusion) != len(self.class_names):
                    raise ValueError("its confusion matrix has another number of classes")
            self.last_train = dict(state.get("last_train") or {})
            self.epoch_sums = tuple(state.get("epoch_sums") or (0.0, 0.0, 0))
            # An auto run still watching its loss, unless a rate was given on resuming (the
            # guard then stops watching).
            if state.get("loss_guard") is not None and "lr" not in self.given:
                self.guard = LossGuard(len(self.class_names), 0)
                self.guard.load_state_dict(state["loss_guard"])
                # The rate as of this checkpoint: config.json may be a halving ahead of it.
                peak_lr = state["peak_lr"]
                if not (isinstance(peak_lr, float) and math.isfinite(peak_lr) and peak_lr > 0):
                    raise ValueError(f"its learning rate is {peak_lr!r}")
                self.config.lr = peak_lr
            if state.get("last_metric") is not None:
                self.last_metric = float(state["last_metric"])
            elif self.epoch > 0 and (self.last_val or self.last_train):  # older checkpoints
                self.last_metric = (
                    self.last_val.accuracy if self.last_val else self.last_train["train_acc"]
                )
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[-1].strip()
            raise ResnetlabError(
                f"{run_dir / CHECKPOINT_NAME} does not fit the run in {run_dir} ({first}); "
                f"the checkpoint is damaged or from another run: {checkpoint_fix(run_dir)}"
            ) from None

    def _restore_progress(self, state: dict[str, Any], run_dir: Path) -> None:
        """Where the checkpoint's run stopped (epoch, batch, step) and what it had trained,
        refused where that does not fit this run's data or steps per epoch."""
        spe = self.steps_per_epoch
        epoch, batch, step = state["epoch"], state["batch"], state["step"]
        images = state.get("train_images")  # absent in older checkpoints
        if images is not None and images != self.num_train:
            raise ResnetlabError(
                f"{run_dir} was trained on {images:,} images and its data ({self.config.data}) "
                f"now has {self.num_train:,}: the training data changed since; restore it, or "
                f"start a new run with --config {run_dir / 'config.json'}"
            )
        # --max-steps may have cut the last epoch short: it ended after `step` steps.
        cut_short = batch == 0 and epoch >= 1 and (epoch - 1) * spe < step < epoch * spe
        if batch > spe or not (step == epoch * spe + batch or cut_short):
            raise ResnetlabError(
                f"{run_dir / CHECKPOINT_NAME} is at epoch {epoch}, batch {batch}, step {step}, "
                f"which does not fit this run's {spe} steps per epoch; the checkpoint is "
                f"damaged or from another run: {checkpoint_fix(run_dir)}"
            )
        if cut_short and step < self.total_steps:  # now longer: go on inside that epoch
            epoch, batch = epoch - 1, step - (epoch - 1) * spe
        self.epoch, self.batch, self.step = epoch, batch, step
        self.train_time = state["train_time"]
        self.images_trained = state["images_trained"]

    def _restore_optimizer(self, saved: dict[str, Any], run_dir: Path) -> None:
        """The checkpoint's optimizer state, with the settings given anew on resuming."""
        problem = optimizer_problem(self.optimizer, saved)
        if problem and "weight_decay" in self.given:  # to or from 0: one group or two
            raise ResnetlabError(
                f"{option('resume')} continues {run_dir} as it was set up; its "
                f"{option('weight_decay')} cannot change to or from 0, which regroups the "
                "optimizer's parameters (start a new run: "
                f"{option('config', run_dir / 'config.json')} with the new values)"
            )
        if problem:
            raise ValueError(problem)
        anew = [k for k in ("momentum", "nesterov", "weight_decay") if k in self.given]
        load_optimizer_state(self.optimizer, saved, anew)

    def _check_finite(self, lr: float | None = None, *, collective: bool = True) -> None:
        """Stop the run if a weight or BN statistic (of the model or its EMA) is NaN or
        infinite. One host-device sync. ``collective``: every process takes part and gets
        the same answer; the saves, which rank 0 makes alone, check its own weights."""
        models = [("", self.model)] + ([("EMA ", self.ema.module)] if self.ema else [])
        named = [
            (prefix + name, t)
            for prefix, model in models
            for name, t in model.state_dict().items()
            if t.is_floating_point()
        ]
        bad = torch.stack([~t.isfinite().all() for _, t in named]).to(torch.float32)
        if collective:
            bad = all_reduce_sum(bad, self.dist)
        bad = bad.tolist()
        first = next((name for (name, _), b in zip(named, bad, strict=True) if b), None)
        if first is not None:
            self._diverged(f"the weights ({first})", lr if lr is not None else self._lr())
        self.finite_step = self.step

    def _diverged(self, what: str, lr: float) -> None:
        overflow = ""
        if self.amp_dtype == torch.float16:
            overflow = (
                "; in fp16 the activations may have overflowed (float16 holds at most 65,504): "
                f"{option('precision', 'bf16')} or fp32 cannot"
            )
        if _SERIES.get() is not None:
            # An experiment's run: rerunning the experiment skips it, and a lower rate in
            # the same folder is refused as other settings (a resumed one would be too).
            fix = (
                "The experiment goes on without it, and running it again skips it; to train "
                f"it again, lower {option('lr')} and choose another {option('out')}"
            )
        elif (self.run_dir / CHECKPOINT_NAME).is_file():
            fix = (
                f"The last good checkpoint is in {self.run_dir}: lower {option('lr')} and "
                "start again, or resume from it"
            )
        else:
            fix = f"Lower {option('lr')} and start again"
        raise TrainingDiverged(
            f"{what} became NaN/inf at epoch {self.epoch + 1}, step {self.step} "
            f"(learning rate {lr:.3g}); stopped. {fix}{overflow}"
        )

    def _write_failed(self, error: WriteError) -> WriteError:
        """``error``, raised while the run trained, with how to go on. Once the run can be
        resumed, it goes on in its own folder: a full disk's fix is to free space there."""
        if self._resumable() and error.error is not None and full_disk(error.error):
            error = write_error(error.path, error.error, in_place=True)
            if (self.run_dir / CHECKPOINT_NAME).is_file():  # written whole or not at all
                error = WriteError(f"{error} (the last checkpoint is intact)")
        return WriteError(f"{error}; {self._resume_hint()}")

    def _out_of_memory(self) -> str:
        """What to do when the device's memory ran out: a smaller batch, or smaller images."""
        c = self.config
        half = max(1, c.batch_size // 2)
        # A run cannot be resumed with another batch size (its position counts batches):
        # a new run, with this one's settings and a smaller batch.
        lr = scaled_lr(c.lr, c.batch_size, half)  # the rate that goes with the smaller batch
        again = (
            f"--config {self.run_dir / 'config.json'} --batch-size {half} --lr {lr:.3g} "
            "--out NEW_FOLDER"
            if (self.run_dir / "config.json").is_file()
            else option("batch_size", half)
        )
        how = f"start a new run with a smaller batch ({again}),"
        if _SERIES.get() is not None:
            # An experiment's run: the experiment again, in a folder of its own (its runs
            # share their settings, and its folder refuses runs of others).
            smaller = options(option("batch_size", half), option("lr", text=f"{lr:.3g}"))
            how = (
                f"run the experiment again in another {option('out')} with a smaller batch "
                f"({smaller})"
            )
        return (
            f"out of memory on {self.device} at epoch {self.epoch + 1}, step {self.step:,}: "
            f"{c.model} on batches of {c.batch_size} images at {self.input_size}x"
            f"{self.input_size} does not fit; {how} or smaller images ({option('input_size')})"
        )

    def _worker_lost(self, error: RuntimeError | None = None) -> str:
        """What to do when a data loader worker process ended mid-run (PyTorch's ``error``,
        where it reported it, says how: "killed by signal: Killed" is, most often, the system
        short of memory)."""
        how = f" ({str(error).strip().rstrip('.')})" if error else " without an answer"
        fewer = getattr(self.train_loader, "num_workers", 1) // 2
        return (
            f"a data loader worker process stopped{how} at epoch {self.epoch + 1}, step "
            f"{self.step:,}, most often the system ending it for lack of memory; the last "
            f"checkpoint is kept; continue with {self._continue_with()}, giving fewer worker "
            f"processes ({option('num_workers', fewer)})"
        )

    def _resumable(self) -> bool:
        """Whether the run goes on in its own folder (else it starts again, anywhere)."""
        return _CONTINUE_WITH.get() is not None or (self.run_dir / "config.json").exists()

    def _resume_hint(self) -> str:
        if not self._resumable():
            return f"then start the run again with {option('out', self.run_dir)}"
        return f"then continue with: {self._continue_with()}"

    def _continue_with(self) -> str:
        """The command that continues the run (see ``continued_with``)."""
        if (how := _CONTINUE_WITH.get()) is not None:
            return how(self.run_dir)
        if on_command_line():
            return f"resnetlab train --resume {shell_word(self.run_dir)}"
        return f"resnetlab.train(resume={os.fspath(self.run_dir)!r})"

    def _nothing_to_train(self) -> bool:
        # A run stopped after its last step, inside its last epoch, has that epoch's
        # validation and saving still to do.
        trained = self.step > self.total_steps or (self.step == self.total_steps and not self.batch)
        return trained or self._reached_target() or self._out_of_patience()

    def _finished_before(self) -> RunResult:
        """A resumed run that has nothing left to train: say so, and change nothing; unless
        it was killed while writing its summary, which is then written."""
        summary = read_summary(self.run_dir / "summary.json") if self.dist.is_main else {}
        unfinished = self.dist.is_main and (summary is None or summary["status"] != "finished")
        if unfinished and self.step > self.total_steps:  # a length given that it went past
            self.log.close()
            raise ResnetlabError(
                f"{self.run_dir} stopped at step {self.step:,}, past the "
                f"{count_of(self.total_steps, 'step')} now asked for; give "
                f"{option('epochs', math.ceil(self.step / self.steps_per_epoch))} or more (or "
                f"{option('max_steps', self.step)} or more), or leave the length out to train "
                "on to its own end"
            )
        if summary is None or summary["status"] != "finished":
            summary = self._final_summary("finished")
        elif self.dist.is_main and self._out_of_patience() and self.step < self.total_steps:
            patience, best = self.config.patience, self.best["epoch"]
            since = self.epoch - best
            if summary.get("stopped_early"):
                said = (
                    f"stopped early after epoch {self.epoch}: no better accuracy for "
                    f"{count_of(patience, 'epoch')} since epoch {best}"
                )
            else:  # it ran its length, and the --patience given now is already spent
                said = (
                    f"ran its {count_of(self.epoch, 'epoch')}, with no better accuracy for the "
                    f"last {count_of(since, 'epoch')} (since epoch {best}), so "
                    f"{option('patience', patience)} would stop it at once"
                )
            self.log.message(
                f"{self.run_dir} {said}; add {option('patience', text='N')} (more than "
                f"{since if since > patience else patience}) to train it further"
            )
        elif self.dist.is_main:
            # What the run did, which may be more than the length asked for now.
            length = (
                f"{count_of(self.step, 'step')}; add {option('max_steps', text='N')} (more than "
                f"{self.step:,}) or {option('epochs', text='N')}"
                if self.config.max_steps
                else f"{count_of(self.epoch, 'epoch')}; add {option('epochs', text='N')} (more "
                f"than {self.epoch})"
            )
            self.log.message(f"{self.run_dir} already finished its {length} to train it further")
        self.log.close()
        shutdown(self.dist)
        return RunResult(self.run_dir, summary, self._final_model())

    # -- reporting -----------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.amp_dtype)

    def _parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def _describe(self) -> str:
        c = self.config
        params = f"{self._parameters():,} parameters"
        trainable = count_parameters(self.model)[0]
        if trainable < self._parameters():
            params += f", {trainable:,} of them trainable"
        world = f" x {self.dist.world_size} processes" if self.dist.enabled else ""
        precision = precision_name(self.amp_dtype)
        if self.train_step.cuda_graphs:
            precision += ", CUDA graphs"
        val = f", {self.num_val:,} validation" if self.num_val else ", no validation set"
        train = count_of(self.num_train, "training image")
        return (
            f"{c.model} ({params}) on {as_given(c.data)}: {train}{val}, "
            f"{len(self.class_names)} classes, {self.input_size}x{self.input_size}; "
            f"recipe {c.recipe}, {self._length()}; "
            f"{self.device}{world}, {precision}"
        )

    def _explain_speed(self) -> None:
        """The CPU plan in one line, or with ``explain_speed`` the timings behind it; and
        whether other work is slowing the run down."""
        note = busy_note() if self.device.type == "cpu" else None
        # Each run of an experiment measures its own load, so the lines differ; the first
        # one says it for all of them (``run_series``).
        if note and _first_in_series(BUSY_NOTE):
            self.log.message(note)
        if self.quota_note:
            self.log.message(self.quota_note)
        for line in speed_lines(
            self.cpu_plan, self.device.type, detailed=self.config.explain_speed
        ):
            self.log.message(line)

    def _length(self) -> str:
        """``4 epochs of 6 steps``; a length in steps that ends within an epoch says so:
        ``20 steps (4 epochs of 6 steps, the last 2)``, ``3 steps (of an epoch of 44)``."""
        spe, total = self.steps_per_epoch, self.total_steps
        length = f"{count_of(self.num_epochs, 'epoch')} of {count_of(spe, 'step')}"
        if self.num_epochs * spe == total:
            return length
        if self.num_epochs == 1:
            return f"{count_of(total, 'step')} (of an epoch of {spe:,})"
        last = total - (self.num_epochs - 1) * spe
        return f"{count_of(total, 'step')} ({length}, the last {last:,})"

    def _training_info(self) -> dict[str, Any]:
        """The training summary a model file carries. Files and folders are named without
        the folders above them: a model shared or served does not show where it was made."""
        c = self.config
        start = dict(self.start.provenance) if self.start else {}
        for key in ("source", "location"):
            if start.get(key):
                start[key] = Path(start[key]).name
        return {
            "data": Path(c.data).name,
            "recipe": c.recipe,
            "epochs": self.epoch,
            "steps": self.step,
            "best_val_acc" if self.num_val else "best_train_acc": self.best["metric"],
            "best_epoch": self.best["epoch"],
            **({"best_metric": "balanced accuracy"} if self._balanced() else {}),
            **({"held_out": self._held_out()} if self.held_out else {}),
            **({"validated_on": self._validated_on()} if c.val_data or self.validated_test else {}),
            **({"pretrained": start} if start else {}),
        }

    def _validated_on(self) -> dict[str, Any]:
        """The ``--val-data`` set (or the data whose test split validated, ``split``: test)
        by name and image count, and the number validated on where ``--val-subset`` took a
        sample of it: for eval to say when it scores them."""
        given = self.config.val_data
        record = {"data": Path(given or self.validated_test).name, "images": self.val_images}
        record |= {"split": "test"} if not given else {}
        return record | self._sample()

    def _held_out(self) -> dict[str, Any]:
        """How validation was held out (``held_out_record``), with the number validated on
        where ``--val-subset`` took a sample of the images held out."""
        return {**self.held_out, **self._sample()}

    def _sample(self) -> dict[str, int]:
        return {"sample": self.num_val} if self.num_val < self.val_images else {}

    def _final_summary(self, status: str) -> dict[str, Any]:
        """The summary, written unless the write fails while another error is on its way
        out (that error is the one to report; summary.json stays as it was)."""
        try:
            return self._write_summary(status)
        except WriteError:
            if status == "finished":
                raise
            return {}

    def _write_summary(self, status: str) -> dict[str, Any]:
        val = self.last_val
        train_stats = self.last_train
        summary = {
            "status": status,
            "run_dir": str(self.run_dir),
            "model": self.config.model,
            "data": self.config.data,
            "num_classes": len(self.class_names),
            "class_names": self.class_names,
            "input_size": self.input_size,
            "train_images": self.num_train,
            "val_images": self.num_val,
            "params": self._parameters(),
            "trainable_params": count_parameters(self.model)[0],
            "epochs": self.epoch,
            "steps": self.step,
            "best_val_acc": self.best["metric"] if self.num_val and self.best["epoch"] else None,
            "best_epoch": self.best["epoch"],
            # What best_val_acc is: the accuracy, or the balanced accuracy that picked the
            # best epoch under --class-weights balanced.
            "best_metric": "balanced accuracy" if self._balanced() else "accuracy",
            "target_accuracy": self.config.target_accuracy,
            "reached_target": self._reached_target() if self.config.target_accuracy else None,
            "final_val_acc": val.accuracy if val else None,
            "final_val_top5": val.top5 if val else None,
            "stopped_early": self._out_of_patience() and self.epoch < self.num_epochs,
            "val_every": self.val_every,
            "final_val_loss": val.loss if val else None,
            "final_train_acc": train_stats.get("train_acc"),
            "final_train_loss": train_stats.get("train_loss"),
            "train_time_s": round(self.train_time, 2),
            "images_per_s": round(self.images_trained / self.train_time, 1)
            if self.train_time
            else None,
            "device": str(self.device),
            "world_size": self.dist.world_size,
            # How it ran, as decided for this machine (engine.step, engine.calibrate).
            "precision": precision_name(self.amp_dtype),
            "channels_last": self.channels_last,
            "cuda_graphs": self.train_step.cuda_graphs,
            "pretrained": self.start.provenance if self.start else None,
        }
        if self.dist.is_main:
            errors = self._error_source() if status == "finished" else None
            series = _SERIES.get()
            # Always answering the largest class scores 1/K balanced: no note to make.
            majority = (series is None or series.majority_note) and not self._balanced()
            self.log.finish(summary, val, self.class_names, errors, majority=majority)
        return summary


def validation_batch_size(batch_size: int) -> int:
    """The batch that validation runs in: up to four training batches (no gradients are kept),
    256 at most unless training's own batch is larger, so that a smaller ``--batch-size``
    also shrinks validation when memory runs out."""
    return max(batch_size, min(256, 4 * batch_size))


def _with_advice(
    note: str,
    input_size: int,
    size_given: bool = False,
    model: str = "",
    resumed: bool = False,
    size_of_weights: bool = False,
) -> str:
    """A data note, with what to do about images far from the input size (``size_given``:
    by --input-size, which then needs no mention; none for a ``resumed`` run, whose size
    cannot change). ``size_of_weights``: the size pretrained weights were trained at, taken
    from them, which a smaller one to train faster would leave."""
    if resumed and note.startswith((ENLARGED_NOTE, SHRUNK_NOTE)):
        return note
    if note.startswith(ENLARGED_NOTE) and size_of_weights:
        return (
            f"{note}: the size the weights were trained at, taken from them; "
            f"{option('input_size')} near the images' trains much faster, at a size the "
            "weights did not learn"
        )
    if note.startswith(ENLARGED_NOTE):
        how = "" if size_given else f"{option('input_size')} sets it, and "
        return f"{note}; {how}a size near theirs trains much faster"
    if note.startswith(SHRUNK_NOTE):
        # The example is a size larger than the one shrunk to: 128 px photos for a small
        # input (on an ImageNet-style net, which a CIFAR net is not), else twice the input
        # (a phone's photos at an ImageNet net's 224 px).
        if input_size >= 128:
            larger = (
                f"e.g. {option('input_size', 2 * input_size)}, which takes about four times as long"
            )
        elif model and imagenet_style(model):
            larger = f"photos: e.g. {option('input_size', 128)}"
        else:
            larger = (
                f"photos: e.g. {options(option('model', 'resnet18'), option('input_size', 128))}; "
                "the CIFAR nets are made for 32 px"
            )
        return (
            f"{note}: much of their detail is lost; a larger {option('input_size')} keeps it "
            f"({larger})"
        )
    return note


def _shapes(state: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The shape of each tensor of a state dict, by name."""
    if not isinstance(state, dict):
        raise TypeError(f"its model is a {type(state).__name__}, not a state dict")
    return {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}


def _val_state(val: EvalResult | None) -> dict[str, Any] | None:
    return dataclasses.asdict(val) if val is not None else None


def read_summary(path: Path) -> dict[str, Any] | None:
    """A run's summary.json, or None if it is missing or damaged."""
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) and "status" in summary else None


def _check_resumable(run_dir: Path) -> None:
    if not run_dir.exists():
        raise ResnetlabError(
            f"no run folder at {run_dir}: {option('resume')} takes the folder a run was written "
            f"to (the run folder its first lines printed, or its {option('out')})"
        )
    if not run_dir.is_dir():
        inside = (run_dir.parent / "config.json").is_file()  # a run's model file or checkpoint
        hint = (
            f": give the run folder it is in, {option('resume', run_dir.parent)}" if inside else ""
        )
        raise ResnetlabError(f"{option('resume')} takes a run folder; {run_dir} is a file{hint}")
    config = run_dir / "config.json"
    if not config.exists() and (run_dir / CHECKPOINT_NAME).exists():
        # The checkpoint holds weights and position, not the configuration to rebuild the run.
        weights = (
            f", or start a new run from its weights: {option('pretrained', run_dir)}"
            if (run_dir / "best.safetensors").exists()
            else ""
        )
        raise ResnetlabError(
            f"{config} is missing, but {run_dir} holds the run's {CHECKPOINT_NAME}: "
            f"{option('resume')} needs both; restore config.json{weights}"
        )
    if run_dir.is_dir() and not config.exists():
        # What a run killed before its config can leave: temporary files, its log.
        early = ("metrics.csv", "tensorboard")
        runs = sorted(p.name for p in run_dir.iterdir() if (p / "config.json").is_file())
        if runs:  # an experiment's folder, or one a user keeps runs in
            shown_runs = ", ".join(runs[:2]) + (", ..." if len(runs) > 2 else "")
            raise ResnetlabError(
                f"{run_dir} is a folder of runs ({shown_runs}), not a run: an experiment "
                f"goes on when its command is run again; {option('resume')} takes one of its "
                f"runs, e.g. {option('resume', run_dir / runs[0])}"
            )
        if any(not p.name.startswith(".") and p.name not in early for p in run_dir.iterdir()):
            raise ResnetlabError(
                f"{run_dir} holds no run to resume (no config.json): {option('resume')} takes "
                f"the folder a run was written to (train {option('out')})"
            )
        raise ResnetlabError(
            f"config file not found: {config}; {run_dir} holds no run to resume (a run "
            "stopped before writing its config left nothing): start it again with "
            f"{option('out', run_dir)}"
        )
    # Said now, not at the run's first write, once its data is read.
    fix = (
        f"{option('resume')} trains on in the run's own folder: make it writable, or copy it "
        "to a folder you can write to and resume the copy"
    )
    if _SERIES.get() is not None:  # an experiment's run: its folder is the experiment's
        fix = "an experiment trains on in its runs' folders: make it writable, then run it again"
    check_writable(run_dir, run_dir, fix, in_place=True)


def _stored_plan(run_dir: Path | None) -> CpuPlan | None:
    """The CPU plan a run started with (``cpu_plan.json``), for its resumption to train as it
    began: a plan measured anew may take another precision or layout, and the resumed run
    would then end with other weights. None where the run has none (not on a CPU, or
    older); a file that cannot be read as one is said, and the plan measured again."""
    path = Path(run_dir or ".") / CPU_PLAN_NAME
    if not path.is_file():
        return None
    try:
        plan = CpuPlan.from_record(json.loads(path.read_text()))
        if plan.precision not in ("fp32", "bf16") or not isinstance(plan.channels_last, bool):
            raise ValueError(f"precision {plan.precision!r}, channels_last {plan.channels_last!r}")
        if not (plan.threads is None or (isinstance(plan.threads, int) and plan.threads > 0)):
            raise ValueError(f"threads {plan.threads!r}")
    except (OSError, ValueError, TypeError, AttributeError) as e:
        warn(
            f"cannot read the CPU plan {path} ({e}); the resumed run measures the CPU again, "
            "and may take another precision or layout than it started with",
            SettingWarning,
        )
        return None
    # A plan not calibrated (a short run) says so still: its run kept PyTorch's thread count
    # (``watch_threads``), and so must its resumption, or it ends with other weights.
    if plan.how.startswith("not calibrated"):
        return dataclasses.replace(
            plan, how=f"not calibrated, as at the run's start, {CPU_PLAN_NAME}"
        )
    return dataclasses.replace(plan, how=f"kept from the run's start, {CPU_PLAN_NAME}")


def _check_untrained(run_dir: Path) -> None:
    """A folder without a checkpoint may resume from step 0 only if it holds no results
    that starting over would overwrite."""
    trained = [name for name in TRAINED_FILES if (run_dir / name).exists()]
    if trained:
        raise ResnetlabError(
            f"{run_dir / CHECKPOINT_NAME} is missing, but {run_dir} holds {', '.join(trained)} "
            "from training that starting over would overwrite: restore the checkpoint, or "
            + start_over(run_dir, f"start a new run with --config {run_dir / 'config.json'}")
        )


def _check_outside_data(run_dir: Path | None, data: list[str | None]) -> None:
    """Figures written into a data folder would be read as images by the next run.
    ``run_dir``: ``--out``, or None for the default, a folder in ``RUNS_ROOT``."""
    if spec := data_folder_holding(run_dir or Path(RUNS_ROOT), data):
        where = option("out", run_dir) if run_dir else f"the default run folder, in {RUNS_ROOT}/,"
        fix = "choose a folder outside it" if run_dir else f"give {option('out')} outside it"
        raise ResnetlabError(
            f"{where} is inside the data folder {spec}; the run's figures would become "
            f"training images: {fix}"
        )


def _make_folder(run_dir: Path) -> list[Path]:
    """Make ``--out``; return the folders that were made for it, innermost first."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ResnetlabError(
            f"{option('out', run_dir)} is a file; a run needs a folder: choose another"
        )
    made = missing_folders(run_dir)
    check_writable(run_dir, run_dir)  # an existing folder too, before the data is read
    return made


def _check_fresh(run_dir: Path) -> None:
    if (run_dir / CHECKPOINT_NAME).exists():
        raise ResnetlabError(
            f"{run_dir} already holds a run; continue it with {option('resume', run_dir)} "
            f"or choose another {option('out')}"
        )
    # A run stopped before its first checkpoint, one whose checkpoint was deleted to save
    # space, or another program's files: a new run would write over them. (metrics.csv is
    # written before config.json: a run killed before that left nothing else.)
    kept = [n for n in RUN_FILES if n != "metrics.csv" and (run_dir / n).exists()]
    if kept:
        resume = (
            f", or, if it is a run stopped before its first checkpoint, continue it with "
            f"{option('resume', run_dir)}"
            if "config.json" in kept and not set(TRAINED_FILES) & set(kept)
            else ""
        )
        raise ResnetlabError(
            f"{run_dir} already holds {', '.join(kept)}, which a new run would write over; "
            f"choose another {option('out')}{resume}"
        )
    if images := images_in(run_dir):  # --out photos/new for a run that scores photos/new
        raise ResnetlabError(
            f"{run_dir} holds images ({images}), which the run's figures (curves.png, "
            f"confusion.png, errors.png) would join: choose a new or empty {option('out')}"
        )
