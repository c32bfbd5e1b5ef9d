"""Training configuration: one dataclass, recipe presets, and JSON round trips.

A run's ``config.json`` is the fully resolved ``TrainConfig``, so
``resnetlab train --config config.json`` reruns it exactly. Values are resolved in this
order, later winning: the dataclass defaults, the recipe's preset, the config file, flags.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import textwrap
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.signs import arrays_as_h5
from ..data.sources import check_val_split
from ..errors import (
    ResnetlabError,
    SettingWarning,
    empty_problem,
    finite_number,
    on_command_line,
    option,
    path_argument,
    run_result_hint,
    shown,
    warn,
)
from ..models import list_models, model_info
from ..models.files import option_problem
from ..models.registry import built_options, unknown_options
from ..options import (
    CLASS_WEIGHTS,
    FREEZE_CHOICES,
    INPUT_SIZES,
    OPTIMIZERS,
    PRECISIONS,
    RECIPE_ALIASES,
    RECIPES,
    RESIZE_MODES,
    SCHEDULES,
    TRAIN_HELP,
    TrainOptions,
    is_input_size,
)
from ..storage import atomic_write_text

# Options that name files or folders: a pathlib.Path is taken for them as its string.
PATH_FIELDS = ("data", "val_data", "pretrained", "out")
# Seeds are below this (NumPy's generators take 32 bits).
SEED_LIMIT = 2**32


def recipe_name(recipe: Any) -> Any:
    """A recipe's current name for an earlier one (``RECIPE_ALIASES``); else ``recipe``."""
    return RECIPE_ALIASES.get(recipe, recipe) if isinstance(recipe, str) else recipe


def known_recipe(recipe: Any) -> str:
    """``recipe``'s current name; a name of no recipe is refused."""
    name = recipe_name(recipe)
    known, problem = _one_of("recipe", name, RECIPES)
    if not known:
        raise ResnetlabError(problem)
    return name


# What the auto recipe leaves unset until it knows the data; only it may leave them unset,
# and finetune the batch size and length (DECIDED_FROM_DATA).
AUTO_FIELDS = (
    "batch_size",
    "optimizer",
    "lr",
    "weight_decay",
    "epochs",
    "warmup_epochs",
    "crop_padding",
    "scale_jitter",
)

DECIDED_FROM_DATA = {"auto": AUTO_FIELDS, "finetune": ("batch_size", "epochs")}

# The optimizers take the rate and the decay as float32 scalars: a larger one fails in
# torch ("value cannot be converted to type float without overflow").
FLOAT32_MAX = torch.finfo(torch.float32).max


class UnsetValues(ResnetlabError):
    """Options left unset (None) under a recipe that does not decide them from the data.
    ``names``: those options, which the message names first, every one."""

    def __init__(self, names: list[str], recipe: str) -> None:
        self.names = names
        them, each = ("them", "each") if len(names) > 1 else ("it", "it")
        super().__init__(
            f"{', '.join(names)} unset under recipe {recipe}: only the auto recipe chooses "
            f"{them} from the data (finetune: batch_size and epochs); give {each} a value"
        )


@dataclass(init=False)
class TrainConfig(TrainOptions):
    """Everything a training run depends on. Defaults: the offline demo on ``digits``.

    ``TrainConfig(recipe=R, **values)`` is recipe ``R``'s preset with ``values`` over it
    (without a recipe, ``modern``'s: the field defaults, in ``resnetlab.options``), so a
    config is always what its recipe says plus what was given.

    Each field is the ``resnetlab train`` flag of its name (``batch_size`` is
    ``--batch-size``; ``model_kwargs`` holds the ``--model-option KEY=VALUE`` pairs), and
    the list below says what each does, as ``resnetlab train --help`` does;
    ``dataclasses.fields(TrainConfig)`` lists them.
    """

    def __init__(self, **values: Any) -> None:
        _check_keys(values, "option")
        if "recipe" in values:
            values = {**values, "recipe": recipe_name(values["recipe"])}
        recipe = values.get("recipe", "modern")
        preset = RECIPES.get(recipe, {}) if isinstance(recipe, str) else {}
        for f in dataclasses.fields(self):
            if f.name in values:
                value = values[f.name]
            elif f.name in preset:
                value = preset[f.name]
            elif f.default_factory is not dataclasses.MISSING:
                value = f.default_factory()
            else:
                value = f.default
            setattr(self, f.name, value)
        # Not a field (nor in config.json): whether a model was chosen, in the values or
        # their config file, or left to the default (which messages then say it is).
        self.model_given = "model" in values
        self.__post_init__()

    def __post_init__(self) -> None:
        for name, split in (("data", "train"), ("val_data", "test")):  # not "got list"
            if problem := arrays_as_data(name, getattr(self, name), split):
                raise ResnetlabError(problem)
        for f in dataclasses.fields(self):  # np.float32(0.1), a value of np.logspace(...)
            setattr(self, f.name, _python_value(getattr(self, f.name)))
        for name in PATH_FIELDS:  # pathlib.Path from the Python API
            if isinstance(getattr(self, name), os.PathLike):
                setattr(self, name, os.fspath(getattr(self, name)))
        if isinstance(self.out, str) and self.out.startswith("~"):  # '~/runs/x', quoted
            self.out = os.path.expanduser(self.out)
        if isinstance(self.device, torch.device):  # as load_model, predict and evaluate take it
            self.device = str(self.device)
        if isinstance(self.pretrained, bool):  # as create_model takes it: True is torchvision
            self.pretrained = "torchvision" if self.pretrained else None
        _check_types(self)
        self.milestones = tuple(float(m) for m in self.milestones)
        self.validate()

    def validate(self) -> None:
        # Long but flat: one (condition, message) pair per option, read as a table.
        _check_types(self)
        info = model_info(self.model)  # an unknown name is refused here, with the names near it
        if self.val_split is not None:
            check_val_split(self.val_split)
        graph_problem = cuda_graphs_problem(self.precision) if self.cuda_graphs else None
        # --max-steps sets the length even beside --epochs: the one to raise is the one that set it.
        length_option = option("max_steps" if self.max_steps is not None else "epochs")
        length_set_by = (
            f" of {option('max_steps', self.max_steps)}" if self.max_steps is not None else ""
        )
        checks = [
            _one_of("recipe", self.recipe, RECIPES),
            _one_of("optimizer", self.optimizer, OPTIMIZERS, optional=True),
            _one_of("schedule", self.schedule, SCHEDULES),
            _one_of("precision", self.precision, PRECISIONS),
            _one_of("resize", self.resize, RESIZE_MODES),
            _one_of("class weights", self.class_weights, CLASS_WEIGHTS),
            _at_least(self, "epochs", 1),
            _at_least(self, "max_steps", 1),
            _at_least(self, "subset", 1, " image"),
            _at_least(self, "val_subset", 1, " image"),
            _at_least(self, "batch_size", 1),
            _must(self, "lr", self.lr is None or self.lr > 0, "positive"),
            _must(self, "lr", self.lr is None or self.lr <= FLOAT32_MAX, _AT_MOST_FLOAT32),
            _at_least(self, "warmup_steps", 0),
            _at_least(self, "patience", 1, " epoch"),
            _must(self, "clip_grad_norm", self.clip_grad_norm >= 0, "0 (off) or positive"),
            _must(
                self,
                "scale_jitter",
                self.scale_jitter is None or 0 <= self.scale_jitter <= 1,
                "the smallest crop's share of the area, in (0, 1] (0: off)",
            ),
            _one_of(option("freeze"), self.freeze, FREEZE_CHOICES, optional=True),
            _at_least(self, "head_epochs", 0),
            (
                # Under --freeze backbone the classifier trains alone throughout: no rest.
                self.head_epochs is None
                or self.epochs is None
                or self.freeze == "backbone"
                or self.head_epochs < self.epochs,
                f"{option('head_epochs', self.head_epochs)} leaves none of the "
                f"{self.epochs} epoch{'s' if self.epochs != 1 else ''}{length_set_by} to train "
                f"the rest of the network; lower it or raise {length_option} (to train only the "
                f"classifier: {option('freeze', 'backbone')})",
            ),
            _must(self, "layer_lr_decay", 0 < self.layer_lr_decay <= 1, "in (0, 1]"),
            _must(self, "label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
            _must(self, "ema_decay", 0 <= self.ema_decay < 1, "in [0, 1)"),
            _must(
                self,
                "target_accuracy",
                self.target_accuracy is None or 0 < self.target_accuracy <= 1,
                "in (0, 1]",
                _percent_hint("target_accuracy", self.target_accuracy),
            ),
            _must(
                self,
                "input_size",
                self.input_size is None or is_input_size(self.input_size),
                INPUT_SIZES,
            ),
            _must(
                self,
                "milestones",
                all(0 < m < 1 for m in self.milestones),
                "fractions of training in (0, 1)",
            ),
            _at_least(self, "log_every", 1),
            (graph_problem is None, graph_problem),
        ]
        for ok, message in checks + _range_checks(self):
            if not ok:
                raise ResnetlabError(message)
        if self.model_kwargs and (problem := unknown_options(info, self.model_kwargs)):
            raise ResnetlabError(problem)  # here, not once the data is decoded
        decided = DECIDED_FROM_DATA.get(self.recipe, ())
        if undecided := [name for name in self.unset() if name not in decided]:
            raise UnsetValues(undecided, self.recipe)

    def unset(self) -> list[str]:
        """The fields left to the auto recipe, not yet decided."""
        return [name for name in AUTO_FIELDS if getattr(self, name) is None]

    @classmethod
    def from_recipe(cls, recipe: str = "modern", **overrides: Any) -> TrainConfig:
        """The recipe's preset, then ``overrides`` (unknown keys are an error)."""
        return cls(**overrides, recipe=known_recipe(recipe))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["milestones"] = list(self.milestones)
        return data

    def save(self, path: str | Path) -> None:
        """Write the config; ``out`` is left empty so that a rerun gets a folder of its own."""
        path = path_argument(path, "the config file to write", reading=False)
        values = {**self.to_dict(), "out": None}
        atomic_write_text(path, json.dumps(values, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> dict[str, Any]:
        """The values stored in a ``config.json`` (checked, not yet resolved)."""
        path = Path(path_argument(path, "the config file"))  # not pathlib's TypeError
        if path.is_dir():
            inside = path / "config.json"
            hint = f"give {inside}" if inside.is_file() else "give a run's config.json"
            raise ResnetlabError(f"{path} is a folder; {option('config')} takes a file: {hint}")
        if not path.is_file():
            # train("resnet20"): the first argument taken for the model it names
            named = str(path) in list_models() and not path.suffix
            hint = f" ({path} is a model: {option('model', str(path))})" if named else ""
            raise ResnetlabError(f"config file not found: {path}{hint}")
        run_config = path.parent / "config.json"
        # summary.json, metrics.csv... of a run: named so, not by what fails to parse in it
        run_file = path.name != run_config.name and run_config.is_file()
        wrong_file = f"{path} is a file of the run in {path.parent}, not its configuration; "
        wrong_file += f"{option('config')} takes {run_config}"
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            if run_file:
                raise ResnetlabError(wrong_file) from None
            raise ResnetlabError(
                f"{path} is not a text file; {option('config')} takes a run's config.json"
            ) from None
        except json.JSONDecodeError as e:
            if run_file:
                raise ResnetlabError(wrong_file) from None
            raise ResnetlabError(
                f"{path} is not valid JSON ({e.msg}, line {e.lineno}); correct it, or restore "
                "it from a copy"
            ) from None
        if run_file and (not isinstance(values, dict) or _unknown_keys(values)):
            raise ResnetlabError(wrong_file)
        if not isinstance(values, dict):
            raise ResnetlabError(f"{path} must hold a JSON object of training options")
        unknown = _unknown_keys(values)
        # Mostly keys of no option: another tool's settings (or a run's summary.json), not
        # a run's config with a typo, which the check below names with the option meant.
        if len(unknown) >= 3 and len(unknown) > len(values) - len(unknown):
            more = f" and {len(unknown) - 5:,} more" if len(unknown) > 5 else ""
            raise ResnetlabError(
                f"{path} is not a run's config.json: {', '.join(map(str, unknown[:5]))}{more} "
                f"are no training options; {option('config')} takes the config.json a run "
                "wrote in its folder (runs/<run>/config.json)"
            )
        _check_keys(values, f"option in {path}")
        for f in dataclasses.fields(cls):  # named here: a flag may not be what is wrong
            if f.name in values and (problem := _type_problem(f, values[f.name], f.name)):
                fix = "correct it in the file, or restore the file from a copy"
                raise ResnetlabError(f"{path}: {problem}; {fix}")
        values.setdefault("resize", "squash")  # written before --resize existed, which squashed
        if isinstance(values.get("model_kwargs"), dict):
            values["model_kwargs"] = built_options(values["model_kwargs"], str(path))
        return values


# help(TrainConfig) says what each field does, for the Python API's train(**options); not
# under python -OO, which drops docstrings.
if TrainConfig.__doc__ is not None:
    TrainConfig.__doc__ += "\n    Fields:\n\n" + "".join(
        textwrap.fill(
            f"{f.name}: "
            + TRAIN_HELP.get(f.name, "the model's constructor options, {'shortcut': 'B'}"),
            88,
            initial_indent="    ",
            subsequent_indent="        ",
        )
        + "\n"
        for f in dataclasses.fields(TrainConfig)
    )


def resolve_cuda_graphs(
    config: TrainConfig, device_type: str, processes: int = 1, head_epochs: int = 0
) -> bool:
    """Whether a run captures its step into a CUDA graph: ``config.cuda_graphs`` when given
    (True refused, in one line, where the step cannot be captured), else wherever it can be
    (on CUDA, in one process, not in fp16, with torch 2.5+, and no switch from training the
    classifier alone to the whole network after ``head_epochs``). A replay costs one launch
    instead of hundreds: 3.5x and 3.9x for ResNet-56 and ResNet-20 on an H200, +2% for a
    compiled ResNet-50 at batch 256, whose kernels are long."""
    problem = cuda_graphs_problem(config.precision, device_type, processes)
    if problem is None and head_epochs:
        problem = (
            f"{option('cuda_graphs', True)} cannot follow the switch from training the classifier "
            f"alone to training the network; add {option('head_epochs', 0)}"
        )
    if config.cuda_graphs is None:
        return problem is None
    if config.cuda_graphs and problem is not None:
        raise ResnetlabError(problem)
    return config.cuda_graphs


def cuda_graphs_problem(
    precision: str, device_type: str | None = None, processes: int = 1
) -> str | None:
    """Why a training step cannot be captured into a CUDA graph, or None if it can.

    ``device_type`` None: not known yet (a config is checked before its device is chosen).
    """
    import torch

    if processes > 1:
        return f"{option('cuda_graphs', True)} is not supported with several processes (torchrun)"
    if device_type is not None and device_type != "cuda":
        return f"{option('cuda_graphs', True)} needs a CUDA device; this run is on {device_type}"
    # Tensor learning rates in every fused optimizer came in 2.5; NVIDIA's containers name
    # their builds of a release as its pre-release (2.5.0a0+...), which is below "2.5".
    if torch.__version__ < "2.5.0a0":
        return (
            f"{option('cuda_graphs', True)} needs torch 2.5 or later; this is {torch.__version__}"
        )
    if precision == "fp16":
        return (
            f"{option('cuda_graphs', True)} cannot capture fp16's gradient scaler, which reads the "
            f"device every step; use {option('precision', 'bf16')} (a GPU of Ampere or later; "
            f"older ones emulate it: {option('precision', 'fp32')})"
        )
    return None


def resolve_config(
    file_values: dict[str, Any] | None = None,
    *,
    source: str | os.PathLike | None = None,
    **flags: Any,
) -> TrainConfig:
    """Resolve defaults < file's recipe < config file < flag's recipe < flags.

    Without a recipe anywhere, the model's default recipe is used (``default_recipe``).

    ``None`` flags mean "not given". A ``recipe`` flag applies that preset over the file's
    values, so ``--config old.json --recipe course`` switches the recipe and keeps the rest
    but its warm-up in steps and scale/aspect jitter, which would win over the preset's
    warm-up and join its crops; so does ``--warmup-epochs`` given (alone) over the file's
    warm-up in steps, with ``--config`` or on resuming, and ``--epochs`` over its length
    in steps (``--max-steps``, unless given too), and ``--pretrained`` over its head epochs
    (decided anew for the weights given).
    ``source``: the file ``file_values`` were read from, named in the error when one of its
    values (not replaced by a flag) is out of range.
    """
    flags = {k: v for k, v in flags.items() if v is not None}
    values = dict(file_values or {})
    for given in (flags, values):
        if "recipe" in given:
            given["recipe"] = recipe_name(given["recipe"])
    preset = RECIPES[known_recipe(flags["recipe"])] if "recipe" in flags else {}
    values.update(preset)
    if "crop_padding" in preset and "scale_jitter" not in preset:
        values.pop("scale_jitter", None)  # the file's would join the recipe's crops
    if "warmup_epochs" in preset or "warmup_epochs" in flags:
        values.pop("warmup_steps", None)  # the file's would win over the warm-up given
    if "epochs" in flags:
        values.pop("max_steps", None)  # a length in epochs replaces the file's in steps
    if "pretrained" in flags:
        values.pop("head_epochs", None)  # the file's was for its own start, not these weights
    values.update(flags)
    stored_paths(values)
    if isinstance(values.get("pretrained"), str):
        _model_of_weights(values)
        _resize_of_weights(values)
    recipe = values.pop("recipe", None) or default_recipe(
        values.get("model", TrainConfig.model), values.get("pretrained")
    )
    try:
        return TrainConfig.from_recipe(recipe, **values)
    except ResnetlabError as e:
        if source is None:
            raise
        from_file = [k for k in file_values or {} if k in values and k not in {*flags, *preset}]
        raise _named_in_file(e, recipe, values, from_file, source) from None


def _named_in_file(
    error: ResnetlabError,
    recipe: str,
    values: dict[str, Any],
    from_file: list[str],
    source: str | os.PathLike,
) -> ResnetlabError:
    """``error``, raised by the config of ``recipe`` and ``values``, with the file ``source``
    and the key named in front where a value of it (``from_file``) is what is wrong: the
    first without which the error is another or none. Else ``error`` as it is (a flag's)."""
    for key in from_file:
        try:
            TrainConfig.from_recipe(recipe, **{k: v for k, v in values.items() if k != key})
        except ResnetlabError as other:
            if str(other) == str(error):
                continue
        message = str(error)
        flag = option(key)  # a range error names the flag; in a file, the key is wrong
        if flag != key and message.startswith(f"{flag} must be "):
            message = key + message[len(flag) :]
        # One that begins with the flag and its value (--head-epochs 1 leaves none of...):
        # the key and its value in the file, not a flag that was never given.
        given = option(key, values[key])
        if given != key and message.startswith(f"{given} "):
            message = f"{key} {shown(values[key])}{message[len(given) :]}"
        # Named as a range or type error from the file is ("weight_decay must be ..."), or
        # as the unset ones are (all of them, each a None of the file's: a flag is never one,
        # and a recipe leaves unset only what it decides), else by its key.
        named = isinstance(error, UnsetValues) or message.startswith(key + " ")
        return ResnetlabError(f"{source}: {message}" if named else f"{source}: {key}: {message}")
    return error


def scaled_lr(lr: float, batch_size: int, new_batch_size: int) -> float:
    """The rate for ``new_batch_size`` where ``lr`` was set for ``batch_size``: scaled by the
    square root of their ratio, as the auto recipe scales its rates with the batch."""
    return lr * math.sqrt(new_batch_size / batch_size)


# Where each optimizer's rate starts, for the warning below (the auto recipe's rule), and
# the weight decay the auto recipe gives it.
USUAL_RATES = {"sgd": "0.1 at batch 128", "adam": "1e-3 at batch 32", "adamw": "1e-3 at batch 32"}
# SGD's the CIFAR papers'; none for Adam (the course's); PyTorch's default for AdamW (decoupled)
WEIGHT_DECAY = {"sgd": 5e-4, "adam": 0.0, "adamw": 0.01}


def warn_of_settings_that_do_not_apply(
    config: TrainConfig, given: dict[str, Any], file_values: dict[str, Any] | None = None
) -> None:
    """Before a training run, a warning for each option given (``given``; ``None``: not
    given) that the run would not use as meant:

    - a named recipe's rate is for its own optimizer, and ``--optimizer adam`` under
      ``finetune`` (SGD, 0.01) would train Adam at ten times its usual rate (the auto
      recipe scales the rate to the optimizer itself, but not the rate of a config file,
      ``file_values``, which an auto run's holds for the optimizer it chose);
    - a config file's rate is for its batch, and ``--batch-size`` alone keeps it;
    - a config file of a run from scratch keeps its recipe under ``--pretrained``, where a
      run without the file would fine-tune (the ``finetune`` recipe's lower rate);
    - ``--max-steps`` sets the length instead of ``--epochs``, given or not, and
      ``--warmup-steps`` the warm-up instead of ``--warmup-epochs``;
    - ``--milestones`` and ``--gamma`` are the steps of ``--schedule step``, and any other
      schedule ignores them;
    - ``--freeze backbone`` trains the classifier alone throughout, so ``--head-epochs``
      and ``--layer-lr-decay`` change nothing.
    """
    named = {k for k, v in given.items() if v is not None}
    file_values = file_values or {}
    _warn_of_rate_for_another_optimizer(config, named, file_values)
    _warn_of_rate_for_another_batch(config, named, file_values)
    _warn_of_scratch_recipe_under_pretrained(config, named, file_values)
    _warn_of_steps_given_with_epochs(config, named)
    _warn_of_step_schedule_options_ignored(config, named)
    if config.freeze == "backbone":
        warn_idle_under_full_freeze(config, named)


def _warn_of_rate_for_another_optimizer(
    config: TrainConfig, named: set[str], file_values: dict[str, Any]
) -> None:
    """``--optimizer`` alone, where the rate kept (the recipe's, or a config file's that
    has one and no recipe given) was set for another optimizer."""
    preset = RECIPES.get(config.recipe, {}).get("optimizer")
    whose = "the recipe's"
    if file_values.get("lr") is not None and "recipe" not in named:
        preset, whose = file_values.get("optimizer"), "the config file's"
    if "optimizer" not in named or "lr" in named or preset in (None, config.optimizer):
        return
    kept, usual, flags = f"lr {config.lr:g}", USUAL_RATES[config.optimizer], option("lr")
    decay = WEIGHT_DECAY[config.optimizer]
    if "weight_decay" not in named and config.weight_decay not in (None, decay):
        kept += f" and weight decay {config.weight_decay:g}"
        usual = f"lr {usual} with weight decay {decay:g}"
        flags += f" and {option('weight_decay')}"
    warn(
        f"{option('optimizer', config.optimizer)} under recipe {config.recipe} trains at "
        f"{whose} {kept}, set for {preset}; {config.optimizer} usually starts "
        f"near {usual}: give {flags}",
        SettingWarning,
    )


def _warn_of_rate_for_another_batch(
    config: TrainConfig, named: set[str], file_values: dict[str, Any]
) -> None:
    """``--batch-size`` alone (no rate, no recipe), which keeps a config file's rate set
    for the file's batch."""
    old_batch = file_values.get("batch_size")
    if (
        {"batch_size"} == named & {"batch_size", "lr", "recipe"}
        and file_values.get("lr") is not None
        and isinstance(old_batch, int)
        and old_batch != config.batch_size
    ):
        scaled = f"{scaled_lr(config.lr, old_batch, config.batch_size):.3g}"
        warn(
            f"{option('batch_size', config.batch_size)} trains at the config file's lr "
            f"{config.lr:g}, set for batch {old_batch}; the rate that follows the batch (as the "
            f"square root of it) is {option('lr', text=scaled)}",
            SettingWarning,
        )


def _warn_of_scratch_recipe_under_pretrained(
    config: TrainConfig, named: set[str], file_values: dict[str, Any]
) -> None:
    """``--pretrained`` alone (no recipe, no rate) on a config file of a run from scratch,
    whose recipe is kept where a run without the file would fine-tune."""
    if (
        file_values
        and not file_values.get("pretrained")
        and {"pretrained"} == named & {"pretrained", "recipe", "lr"}
        and config.recipe != "finetune"
    ):
        warn(
            f"{option('pretrained')} with the config file of a run from scratch keeps its "
            f"recipe {config.recipe} (lr {config.lr:g}), which may wash out the weights; give "
            f"{option('recipe', 'finetune')} to fine-tune them, as a run without the file would",
            SettingWarning,
        )


def _warn_of_steps_given_with_epochs(config: TrainConfig, named: set[str]) -> None:
    """``--epochs`` given with ``--max-steps``, and ``--warmup-epochs`` with
    ``--warmup-steps``: the steps win."""
    if {"epochs", "max_steps"} <= named:
        warn(
            f"{option('epochs', config.epochs)} does not apply: "
            f"{option('max_steps', config.max_steps)} sets the length, and the schedule spans "
            f"its steps; drop one of them",
            SettingWarning,
        )
    if {"warmup_epochs", "warmup_steps"} <= named:
        warn(
            f"{option('warmup_epochs', config.warmup_epochs)} does not apply: "
            f"{option('warmup_steps', config.warmup_steps)} sets the warm-up; drop one of them",
            SettingWarning,
        )


def _warn_of_step_schedule_options_ignored(config: TrainConfig, named: set[str]) -> None:
    """``--milestones`` or ``--gamma`` under a schedule other than ``step``, which ignores
    them."""
    step_options = [name for name in ("milestones", "gamma") if name in named]
    if step_options and config.schedule != "step":
        are, them = ("is", "it") if step_options == ["gamma"] else ("are", "them")
        step = option("schedule", "step")
        warn(
            f"{' and '.join(map(option, step_options))} {are} for {step}, and this run's "
            f"schedule is {config.schedule}, which ignores {them}: add {step} to use {them}",
            SettingWarning,
        )


def warn_idle_under_full_freeze(config: TrainConfig, named: set[str], whole: str = "") -> None:
    """A warning that ``--head-epochs`` and ``--layer-lr-decay`` change nothing when
    ``--freeze`` leaves the classifier alone to train (``backbone``, or the model's last
    stage, which ``whole`` then describes)."""
    idle = [
        name
        for name, used in (
            ("head_epochs", (config.head_epochs or 0) > 0),
            ("layer_lr_decay", config.layer_lr_decay != 1.0),
        )
        if used and name in named
    ]
    if idle:
        warn(
            f"{option('freeze', config.freeze)}{whole} trains the classifier alone throughout, "
            f"so {' and '.join(map(option, idle))} change{'' if len(idle) > 1 else 's'} "
            f"nothing: drop {'them' if len(idle) > 1 else 'it'}, or freeze less "
            f"({option('freeze', 'layer2')} trains the stages after it and the classifier)",
            SettingWarning,
        )


def _model_of_weights(values: dict[str, Any]) -> None:
    """Weights from a run, a resnetlab model file, a Keras file or a named timm or
    torchvision source, with no model named: their model; with no options given either, or
    with theirs named without options: built with their options (a keras.applications
    ResNet50 is a ``resnet50`` with three). Another model, or options given, are checked
    against the weights later."""
    from ..convert.pretrained import declared_model

    declared = declared_model(values["pretrained"], by_shapes="model" not in values)
    if declared is None:
        return
    model, options = declared
    if values.get("model", model) != model:
        return
    # No model named, options given: still their model (not train's default, which the
    # weights would be said not to be for), its options then checked against theirs.
    values["model"] = model
    # Options given, even none (a run's config.json says {}), are the run's own.
    if values.get("model_kwargs") is not None:
        return
    # The input size is an option of the run (--input-size), not of the model.
    values["model_kwargs"] = {
        k: v for k, v in options.items() if k not in ("input_size", "num_classes")
    }


def _resize_of_weights(values: dict[str, Any]) -> None:
    """Weights from a run or a resnetlab model file, with no ``resize`` given: theirs, so
    that photos of another shape meet the input size as the weights learnt them (as their
    input size is taken, unless given)."""
    from ..convert.pretrained import recorded_meta

    if "resize" in values:
        return
    meta = recorded_meta(values["pretrained"])
    if meta is not None:
        values["resize"] = meta.resize


def stored_paths(values: dict[str, Any]) -> None:
    """The local paths among ``values`` (data, pretrained weights) made absolute
    (``data.sources.stored_spec``); named sources (``digits``, ``timm:...``) stay as given."""
    from ..data.sources import stored_spec

    for key in ("data", "val_data", "pretrained"):
        if isinstance(values.get(key), os.PathLike):
            values[key] = os.fspath(values[key])
        if isinstance(values.get(key), str):
            values[key] = stored_spec(values[key])


def default_recipe(model: str, pretrained: str | None = None) -> str:
    """Pretrained weights are fine-tuned (``finetune``). Without them the course's Keras
    model trains with the course's recipe, and every other model with ``auto``, which
    decides from the data and the model when the run starts (engine.auto): on SIGNS the
    Keras model reached 99.2% with ``course``, 87.5% with ``auto`` and 98.3% with ``auto``
    since its loss guard (docs/defaults.md)."""
    if pretrained:
        return "finetune"
    return "course" if model_info(model).family == "keras" else "auto"


# The JSON types each annotation of TrainConfig accepts; floats must also be finite. Fields
# with other annotations are left to their own checks.
_TYPES: dict[str, tuple[str, tuple[type, ...]]] = {
    "int": ("an integer", (int,)),
    "float": ("a finite number", (int, float)),
    "bool": ("true or false", (bool,)),
    "str": ("a string", (str,)),
    "tuple[float, ...]": ("a list of finite numbers", (list, tuple)),
    "dict[str, Any]": ("an object of KEY: VALUE options", (dict,)),
}


def arrays_as_data(name: str, value: Any, split: str) -> str | None:
    """The way to use arrays of images (the course's ``X_train, Y_train``) given as the
    option ``name``, which names a data set: written as ``split`` of an HDF5 file; or None
    where ``value`` holds no array."""
    arrays = value if type(value) in (list, tuple) else [value]
    if not any(isinstance(a, np.ndarray | torch.Tensor) for a in arrays):
        return None
    return (
        f"{option(name)} names a data set (digits, cifar10, a file or a folder), not arrays "
        f"of images, got {type(value).__name__}; {arrays_as_h5(split)}"
    )


def _python_value(value: Any) -> Any:
    """A NumPy number or array (and those in a list) as the Python number or list it holds,
    which the type checks take and config.json can hold; anything else as it is."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if type(value) in (list, tuple):
        return type(value)(map(_python_value, value))
    return value


def _check_types(config: TrainConfig) -> None:
    """Each value has its field's type (config.json and the Python API can hold anything)."""
    for f in dataclasses.fields(config):
        if problem := _type_problem(f, getattr(config, f.name)):
            raise ResnetlabError(problem)


def _type_problem(f: dataclasses.Field, value: Any, name: str | None = None) -> str | None:
    """Why ``value`` cannot be the value of the field ``f``, or None when it can; the field
    named ``name`` (a config file's key), else as given (``--weight-decay``, ``weight_decay``)."""
    kind, _, optional = str(f.type).partition(" | ")
    if kind not in _TYPES or (optional == "None" and value is None):
        return None
    what, types = _TYPES[kind]
    ok = isinstance(value, types) and (kind == "bool" or not isinstance(value, bool))
    if ok and kind == "float":
        ok = math.isfinite(value)
    elif ok and kind == "tuple[float, ...]":
        ok = all(map(finite_number, value))
    elif ok and kind == "dict[str, Any]":
        ok = all(isinstance(k, str) for k in value)
    name = name or option(f.name)
    if not ok:
        return f"{name} must be {what}, got {shown(value)}{run_result_hint(value)}"
    if kind == "str" and (problem := empty_problem(value, "one or leave it out")):
        return f"{name}: {problem}"
    return None


def _percent_hint(name: str, value: float | None) -> str:
    """``; a fraction: for 95% give --target-accuracy 0.95`` where ``value`` reads as a
    percentage (10 to 100: an accuracy under 10% is no target), else nothing."""
    if value is None or not 10 <= value <= 100:
        return ""
    return f"; a fraction: for {value:g}% give {option(name, text=f'{value / 100:g}')}"


def _step_rates_overflow(c: TrainConfig) -> bool:
    """Whether ``--schedule step``'s last rate, lr x gamma ^ milestones, is beyond float32
    (which the optimizer takes it as); the auto recipe's rate is below 1."""
    if c.schedule != "step" or c.gamma <= 1 or not c.milestones:
        return False
    lr = c.lr if c.lr is not None and c.lr > 0 else 1.0
    return math.log(lr) + len(c.milestones) * math.log(c.gamma) > math.log(FLOAT32_MAX)


def _range_checks(c: TrainConfig) -> list[tuple[bool, str]]:
    """Ranges of the numeric options that ``validate`` does not check itself."""
    return [
        _must(c, "momentum", 0 <= c.momentum < 1, "in [0, 1)"),
        _at_least(c, "weight_decay", 0),
        _must(
            c,
            "weight_decay",
            c.weight_decay is None or c.weight_decay <= FLOAT32_MAX,
            _AT_MOST_FLOAT32,
        ),
        _must(c, "gamma", c.gamma > 0, "positive"),
        (
            not _step_rates_overflow(c),
            f"{option('gamma', text=f'{c.gamma:g}')} raises the rate beyond float32's largest "
            f"number after {len(c.milestones)} milestones; gamma below 1 lowers it (0.1: ten "
            "times at each)",
        ),
        _at_least(c, "warmup_epochs", 0),
        _at_least(c, "crop_padding", 0),
        _at_least(c, "cutout", 0),
        _at_least(c, "val_every", 1, " epoch"),
        _at_least(c, "num_workers", 0),
        _must(c, "seed", 0 <= c.seed < SEED_LIMIT, "in 0..2**32-1"),
        (
            "num_classes" not in c.model_kwargs,
            f"the number of classes comes from the data; drop {_model_option('num_classes')}",
        ),
        (
            "input_size" not in c.model_kwargs,
            f"set the input size with {option('input_size')}, not {_model_option('input_size')}",
        ),
        (
            "name" not in c.model_kwargs,
            f"{option('model')} names the model; drop {_model_option('name')}",
        ),
        (
            (problem := option_problem(c.model_kwargs)) is None,
            f"model_kwargs: {problem}; a run writes its options into config.json and its "
            "model files, so give JSON values",
        ),
        (
            "pretrained" not in c.model_kwargs,
            f"start from pretrained weights with {option('pretrained')}, not "
            f"{_model_option('pretrained')}",
        ),
    ]


_AT_MOST_FLOAT32 = f"at most {FLOAT32_MAX:.3g} (float32's largest)"


def _must(
    c: TrainConfig, name: str, ok: bool, requirement: str, hint: str = ""
) -> tuple[bool, str]:
    """A range check of the setting ``name``, with the message that names it as it was given
    (``--lr must be positive, got -1.0``; ``lr`` from Python and in a config file)."""
    return ok, f"{option(name)} must be {requirement}, got {getattr(c, name)}{hint}"


def _at_least(c: TrainConfig, name: str, least: int, unit: str = "") -> tuple[bool, str]:
    """``_must``: the setting ``name`` is ``least`` (``unit``) or more, or not set."""
    value = getattr(c, name)
    return _must(c, name, value is None or value >= least, f"at least {least}{unit}")


def _model_option(key: str) -> str:
    """The model option ``key`` as a message names it: ``--model-option KEY`` on the command
    line, ``model_kwargs['KEY']`` where Python called ``train``."""
    return f"--model-option {key}" if on_command_line() else f"model_kwargs[{key!r}]"


def augmentation_problem(c: TrainConfig, input_size: int) -> str | None:
    """What is wrong with the augmentation at the run's input size, or None: padding or a
    cutout as large as the image leaves crops, or whole images, with nothing of it."""
    if c.crop_padding is not None and c.crop_padding >= input_size:
        return (
            f"{option('crop_padding', c.crop_padding)} is not smaller than the {input_size}-pixel "
            f"images: a crop could hold no image at all; use about an eighth ({input_size // 8})"
        )
    if c.cutout >= input_size:
        return (
            f"{option('cutout', c.cutout)} covers the whole {input_size}-pixel image; use less "
            f"than {input_size} (a quarter to a half of it is usual)"
        )
    return None


# Flags whose field is named otherwise: --model-option KEY=VALUE pairs are model_kwargs.
_FLAG_FIELDS = {"model_option": "model_kwargs", "model_options": "model_kwargs"}


def _unknown_keys(values: dict[str, Any]) -> list[str]:
    """The keys of ``values`` that name no training option."""
    return sorted(set(values) - {f.name for f in dataclasses.fields(TrainConfig)})


def _check_keys(values: dict[str, Any], what: str) -> None:
    if unknown := _unknown_keys(values):
        known = [f.name for f in dataclasses.fields(TrainConfig)]
        named = []
        for key in unknown:
            close = [_FLAG_FIELDS[key]] if key in _FLAG_FIELDS else []
            close = close or difflib.get_close_matches(str(key), known, n=1)
            named.append(f"{key} (did you mean {close[0]}?)" if close else str(key))
        raise ResnetlabError(f"unknown training {what}: {', '.join(named)}")


def _choices(options) -> str:
    return ", ".join(options)


def _one_of(what: str, value: Any, choices, *, optional: bool = False) -> tuple[bool, str]:
    """``validate``'s check that ``value`` is one of ``choices`` (or None, where
    ``optional``), with the message that names them."""
    ok = (optional and value is None) or (isinstance(value, Hashable) and value in choices)
    hint = ""
    if not ok and isinstance(value, str):  # as the command line's choices hint
        names = [str(c) for c in choices]
        near = [n for n in names if n.lower() == value.lower()] or difflib.get_close_matches(
            value, names, n=1
        )
        hint = f" (did you mean {near[0]}?)" if near else ""
    return ok, f"unknown {what} {value!r}{hint}; choose {_choices(choices)}"
