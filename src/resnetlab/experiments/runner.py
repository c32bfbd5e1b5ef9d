"""Runs of an experiment: one engine run folder per model and seed, resumed where it stopped.

An experiment folder holds one run folder per (model, seed), named ``<model>-seed<seed>``,
each written by ``resnetlab.train`` exactly as ``resnetlab train`` writes it. Running the
experiment again skips the runs that ended (finished or diverged), continues an unfinished
one from its checkpoint, and starts the rest, so a killed experiment loses at most the work
since the last checkpoint of the run it was in.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine import TrainConfig, TrainingDiverged, resolve_config, train
from ..engine.checkpoint import CHECKPOINT_NAME
from ..engine.report import read_metrics
from ..errors import ResnetlabError
from ..models import list_models, model_info

# Options that do not change what a run computes: a rerun may set them differently.
INCIDENTAL = ("out", "download", "num_workers", "tensorboard")

# Ended runs: running the experiment again leaves them as they are (a diverged run would
# diverge again: the run is deterministic up to floating-point reduction order).
ENDED = ("finished", "diverged")


@dataclass
class Run:
    """One model and seed of an experiment, and what became of it."""

    model: str
    depth: int
    residual: bool
    seed: int
    run_dir: Path
    config: TrainConfig
    status: str  # "finished", "diverged", ...; "skipped" is never stored: see ``action``
    action: str  # what this invocation did: "trained", "resumed" or "skipped"
    summary: dict[str, Any]

    @property
    def metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.run_dir / "metrics.csv")


def cifar_name(depth: int, residual: bool) -> str:
    """``resnet56`` / ``plain56``: the registered CIFAR net of that depth."""
    name = f"{'resnet' if residual else 'plain'}{depth}"
    if name not in list_models() or model_info(name).family != "cifar":
        raise ResnetlabError(
            f"no registered CIFAR {'ResNet' if residual else 'plain net'} of depth {depth}; "
            f"depths with both: {', '.join(map(str, cifar_depths()))}"
        )
    return name


def cifar_depths() -> list[int]:
    """Depths registered both as a CIFAR plain net and a CIFAR ResNet."""
    names = set(list_models())
    return sorted(
        int(m.removeprefix("plain"))
        for m in names
        if m.startswith("plain")
        and model_info(m).family == "cifar"
        and "resnet" + m.removeprefix("plain") in names
    )


def run_config(
    data: str, model: str, seed: int, out: Path, recipe: str, options: dict[str, Any]
) -> TrainConfig:
    """The training configuration of one run: the recipe, then ``options``."""
    for key in ("model", "seed", "out", "data"):
        if key in options:
            raise ResnetlabError(f"the experiment sets {key} itself; drop that option")
    return resolve_config(recipe=recipe, data=data, model=model, seed=seed, out=str(out), **options)


def run_one(config: TrainConfig, *, depth: int, residual: bool, label: str = "") -> Run:
    """Train, resume or skip the run of ``config`` in its folder ``config.out``."""
    run_dir = Path(config.out)
    config_file = run_dir / "config.json"
    summary_file = run_dir / "summary.json"
    status = None
    if config_file.exists():
        _check_same_settings(config, run_dir)
        if summary_file.exists():
            status = json.loads(summary_file.read_text())["status"]
    prefix = f"{label} " if label else ""
    if status in ENDED:
        _say(f"{prefix}{config.model} seed {config.seed}: {status} earlier, skipped")
        action = "skipped"
    else:
        resume = (run_dir / CHECKPOINT_NAME).exists()
        action = "resumed" if resume else "trained"
        _say(f"{prefix}{config.model} seed {config.seed}: {'resuming' if resume else 'training'}")
        try:
            train(resume=run_dir) if resume else train(config)
        except TrainingDiverged as e:
            _say(f"{config.model} seed {config.seed} diverged: {e}")
    summary = json.loads(summary_file.read_text())
    return Run(
        model=config.model,
        depth=depth,
        residual=residual,
        seed=config.seed,
        run_dir=run_dir,
        config=config,
        status=summary["status"],
        action=action,
        summary=summary,
    )


def run_pairs(
    data: str,
    depths: Sequence[int],
    seeds: Sequence[int],
    out: Path,
    recipe: str,
    options: dict[str, Any],
) -> list[Run]:
    """Train (or resume, or skip) ``plainN`` and ``resnetN`` for every seed and depth, each
    in ``out/<model>-seed<S>``. Every configuration is checked before the first run starts,
    not an hour into it."""
    plan = [
        (depth, residual, run_config(data, name, seed, out / f"{name}-seed{seed}", recipe, options))
        for seed in seeds
        for depth in depths
        for residual in (False, True)
        for name in [cifar_name(depth, residual)]
    ]
    out.mkdir(parents=True, exist_ok=True)
    return [
        run_one(config, depth=depth, residual=residual, label=f"[{i}/{len(plan)}]")
        for i, (depth, residual, config) in enumerate(plan, start=1)
    ]


def default_out(kind: str, data: str, root: str | Path = "runs") -> Path:
    """``runs/<kind>-<data name>``: the same command finds its folder again and resumes."""
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(data)).name.split(".")[0] or "data")
    return Path(root) / f"{kind}-{tag}"


def _check_same_settings(config: TrainConfig, run_dir: Path) -> None:
    # Through JSON, as config.json was written: tuples become lists. An option added to
    # TrainConfig after the run was made is taken at its default, which is the old behaviour.
    defaults = json.loads(json.dumps(TrainConfig().to_dict()))
    stored = {**defaults, **TrainConfig.load(run_dir / "config.json")}
    wanted = json.loads(json.dumps({**config.to_dict(), "out": None}))
    differ = [k for k in wanted if k not in INCIDENTAL and stored.get(k) != wanted[k]]
    if differ:
        k = differ[0]
        raise ResnetlabError(
            f"{run_dir} was trained with other settings ({k} {stored.get(k)!r}, now "
            f"{wanted[k]!r}); rerun with its settings or choose another --out"
        )


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)
