"""Fine-tuning controls: which stages train when, and which BatchNorm layers keep statistics.

A ResNet is a stem, stages 1..N and a head, numbered 0, 1..N and N+1 here; the model
says which its tensors belong to (``stage_of``: ``conv1``/``bn1``, ``layerI``, ``fc`` in
torchvision's layout, ``stem``, ``stages.I-1``, ``head`` in timm's ResNetV2 layout), and
``--freeze`` names stages as ``stem``, ``layer1`` .. ``layerN`` for every model.
``--freeze S`` freezes everything up to and including stage ``S`` for the whole run
(``backbone``: all but the head, a linear probe).
With ``--head-epochs K`` the first K epochs train the head alone and the rest train every
stage that is not frozen, as fastai's ``fine_tune`` does; each phase runs the learning-rate
schedule over its own steps (warm-up and decay). The BatchNorm layers of frozen stages use
and keep their running statistics (``--freeze-bn`` keeps those of every stage,
``--no-freeze-bn`` none), so that frozen stages compute exactly what they did.

Frozen parameters are left out of the optimizer; those frozen only for the head phase are
in it, without gradients until the phase ends, so the optimizer skips them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..convert.pretrained import (
    PretrainedReport,
    PretrainedWeights,
    check_pretrained,
    file_sha256,
    resolve_pretrained,
    weights_normalisation,
)
from ..errors import ResnetlabError, SettingWarning, option, warn
from ..storage import atomic_write_text
from .config import TrainConfig

STAGE = re.compile(r"layer(\d+)")


def freeze_depth(freeze: str | None, num_stages: int, model: str) -> int:
    """The last frozen stage for ``--freeze`` (-1: none)."""
    if freeze is None:
        return -1
    if freeze == "backbone":
        return num_stages
    if freeze == "stem":
        return 0
    match = STAGE.fullmatch(freeze)
    if match is None or not 1 <= int(match.group(1)) <= num_stages:
        stages = ", ".join(["stem", *(f"layer{i}" for i in range(1, num_stages + 1)), "backbone"])
        raise ResnetlabError(
            f"{option('freeze', freeze)}: {model} has no such stage; choose {stages}"
        )
    return int(match.group(1))


class FineTuning:
    """The trainable stages of each epoch and the BatchNorm layers that keep statistics.

    Building it freezes the stages of ``--freeze`` (before the optimizer is made, which
    then leaves them out); ``begin_epoch`` sets the head phase and BN modes.

    Args:
        model: a ResNet (stem, ``layer1..N``, ``fc``).
        freeze: ``--freeze``: a stage name, ``backbone`` or None.
        head_epochs: epochs that train the head alone first.
        freeze_bn: None: BN layers of frozen stages keep their statistics; True: all do;
            False: none do.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        freeze: str | None = None,
        head_epochs: int = 0,
        freeze_bn: bool | None = None,
    ) -> None:
        self.model = model
        self.num_stages = model.num_stages
        self.frozen = freeze_depth(freeze, self.num_stages, getattr(model, "model_name", "model"))
        # Training the head alone is what --freeze backbone does for the whole run.
        self.head_epochs = head_epochs if self.frozen < self.num_stages else 0
        self.freeze_bn = freeze_bn
        for name, p in model.named_parameters():
            if self._stage(name) <= self.frozen:
                p.requires_grad_(False)

    @property
    def active(self) -> bool:
        return self.frozen >= 0 or self.head_epochs > 0 or self.freeze_bn is not None

    def head_steps(self, steps_per_epoch: int) -> int:
        """Steps of the head-only phase."""
        return self.head_epochs * steps_per_epoch

    def phase_span(self, step: int, total_steps: int, steps_per_epoch: int) -> tuple[int, int]:
        """(step within its phase, the phase's length): each phase has its own schedule."""
        head = self.head_steps(steps_per_epoch)
        if step < head:
            return step, head
        return step - head, total_steps - head

    def begin_epoch(self, epoch: int, resumed_at: int | None = None) -> str | None:
        """Set what trains in ``epoch`` and the BN modes, after ``model.train()``.

        ``resumed_at``: for the epoch a resumed run starts in, the step within it that it
        starts at (0: at its start).

        Returns a line for the log when the head phase starts or ends at this epoch, or when
        a run resumes within the head phase (the epochs left of it).
        """
        if not self.active:
            return None
        head_phase = epoch < self.head_epochs
        for name, p in self.model.named_parameters():
            stage = self._stage(name)
            if self.frozen < stage <= self.num_stages:
                p.requires_grad_(not head_phase)
        kept = self.kept_batchnorms(epoch)
        for name, m in self.model.named_modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train(name not in kept)
        if epoch < self.head_epochs and (epoch == 0 or resumed_at is not None):
            last = self.head_epochs
            left = f"epoch {last}" if epoch + 1 == last else f"epochs {epoch + 1}-{last}"
            return f"{left}: the classifier trains alone"
        if self.head_epochs and epoch == self.head_epochs and not resumed_at:
            trains = (
                "every stage trains"
                if self.frozen < 0
                else "the stages after the frozen ones train"
            )
            return f"epoch {epoch + 1} on: {trains}"
        return None

    def kept_batchnorms(self, epoch: int) -> set[str]:
        """Names of the BN layers that keep their statistics in ``epoch`` (``begin_epoch``)."""
        if not self.active:
            return set()
        frozen = self.num_stages if epoch < self.head_epochs else self.frozen
        return {
            name
            for name, m in self.model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and (self.freeze_bn or (self.freeze_bn is None and self._stage(name) <= frozen))
        }

    def _stage(self, name: str) -> int:
        return self.model.stage_of(name)


def head_epochs_for(config: TrainConfig, head_is_new: bool) -> int:
    """``--head-epochs``, or by default 1 when a pretrained model's classifier is new."""
    if config.head_epochs is not None:
        return config.head_epochs
    return 1 if config.pretrained and head_is_new and config.epochs > 1 else 0


def check_length(
    tuning: FineTuning,
    total_steps: int,
    steps_per_epoch: int,
    given: bool,
    source: str | os.PathLike | None = None,
    resumed: bool = False,
) -> None:
    """A head phase must leave steps to train the rest: an error when ``--head-epochs`` was
    given, or read from the config.json ``source`` (of the run ``resumed``, which keeps
    them: then only a longer run fits); none (the phase is dropped) when it was the
    default."""
    if tuning.head_steps(steps_per_epoch) < total_steps:
        return
    if source is not None and resumed:  # head_epochs define the run: they cannot change
        raise ResnetlabError(
            f"{source}: head_epochs {tuning.head_epochs} leaves no steps to train the rest of "
            f"the network ({total_steps} steps in all), and {option('resume')} keeps them; "
            f"give a longer run: {option('epochs', text='N')} (more than "
            f"{tuning.head_epochs}) or {option('max_steps', text='N')} (more than "
            f"{tuning.head_steps(steps_per_epoch)})"
        )
    if source is not None:  # no flag to lower: the value to give instead
        fits = option("head_epochs", (total_steps - 1) // steps_per_epoch)
        raise ResnetlabError(
            f"{source}: head_epochs {tuning.head_epochs} leaves no steps to train the rest of "
            f"the network ({total_steps} steps in all); give {fits}, a longer run, or "
            f"{option('freeze', 'backbone')} to train only the classifier"
        )
    if given:
        raise ResnetlabError(
            f"{option('head_epochs', tuning.head_epochs)} leaves no steps to train the rest of "
            f"the network ({total_steps} steps in all); lower it, or "
            f"{option('freeze', 'backbone')} to train only the classifier"
        )
    tuning.head_epochs = 0


PRETRAINED_RECORD = "pretrained.json"  # in the run folder: where the initial weights came from


@dataclass
class PretrainedStart:
    """What a run started from pretrained weights needs before its model is built.

    Attributes:
        weights: the weights (None when resuming: the checkpoint holds the model).
        mean, std: the normalisation they were trained with, None to use the data's.
        provenance: where they came from, for the model files and the summary.
    """

    weights: PretrainedWeights | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    provenance: dict[str, Any]

    @classmethod
    def of(cls, config: TrainConfig, resumed_run: Path | None = None) -> PretrainedStart:
        """Read ``config.pretrained``; a resumed run reads its own record instead."""
        if resumed_run is not None:
            path = Path(resumed_run) / PRETRAINED_RECORD
            if not path.is_file():
                raise ResnetlabError(
                    f"{resumed_run} was started from {config.pretrained} but has no "
                    f"{PRETRAINED_RECORD} saying how; start a new run"
                )
            record = json.loads(path.read_text())
            mean, std = record["mean"], record["std"]
            return cls(None, _tuple(mean), _tuple(std), record["weights"])
        weights = resolve_pretrained(
            config.pretrained, config.model, config.model_kwargs, input_size=config.input_size
        )
        # The model no option named: the mismatch says it was chosen, not asked for.
        default = not config.model_given and not config.model_kwargs
        said = f"the default model, {config.model}" if default else None
        check_pretrained(weights, config.model, config.model_kwargs, said=said)
        mean, std, _ = weights_normalisation(weights, config.model)
        return cls(weights, mean, std, weights.provenance())


def write_record(run_dir: Path, report: PretrainedReport, config: TrainConfig) -> str:
    """``pretrained.json``: the weights' provenance, the keys loaded, new and dropped, the
    normalisation and what trained when. Returns the text written."""
    record = {
        **report.to_dict(),
        **{k: getattr(config, k) for k in ("freeze", "head_epochs", "layer_lr_decay", "freeze_bn")},
    }
    text = json.dumps(record, indent=2) + "\n"
    atomic_write_text(Path(run_dir) / PRETRAINED_RECORD, text)
    return text


def warn_if_weights_changed(config_file: str | Path, config: TrainConfig) -> None:
    """A warning when ``--config`` reruns a run started from a weights file that has changed
    since (a ``--pretrained RUN`` trained again): the rerun starts from the new weights."""
    record_path = Path(config_file).parent / PRETRAINED_RECORD
    if not config.pretrained or not record_path.is_file():
        return
    try:
        weights = json.loads(record_path.read_text())["weights"]
        then, location = weights["sha256"], Path(weights["location"])
    except (ValueError, KeyError, TypeError):
        return  # an older or damaged record: nothing to compare with
    if weights.get("source") != config.pretrained or not then or not location.is_file():
        return
    now = file_sha256(location)
    if now != then:
        warn(
            f"{location} has changed since the run of {config_file} started from it "
            f"(sha256 {then[:12]} then, {now[:12]} now): this run starts from the new "
            "weights, so it does not repeat that run",
            SettingWarning,
        )


def _tuple(values: list[float] | None) -> tuple[float, ...] | None:
    return tuple(values) if values is not None else None
