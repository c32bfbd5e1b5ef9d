"""Gradient flow: the gradient norm of every weight layer, plain vs residual nets.

For the plain net and the ResNet of each depth (same seed, so the same initial weights),
the gradient of the cross-entropy loss on one fixed batch is measured for the weight of
every conv and fc layer, in training mode (BN uses the batch's statistics, as it does in
training): at initialisation, and after ``steps`` training steps taken by the engine (one
run folder per model, as ``resnetlab train`` writes it).

The first layer's norm over the last (fc) layer's tells how the gradient changes on its
way back through the net. Layers differ in size, so the ratio means most when a plain net
is set beside the ResNet of the same depth, whose layers have the same shapes.

``family="preact"`` sets each original ResNet beside the pre-activation ResNet of the same
depth instead (He et al. 2016: the pre-activation unit passes the gradient back through
identities alone).
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..analysis.plots import plot_gradient_norms
from ..analysis.summary import check_module
from ..data import load_dataset, make_loader, stratified_sample
from ..data.sources import subset_all_note
from ..engine import initial_model
from ..engine.auto import count_of
from ..engine.step import global_state_kept
from ..engine.train import DEFAULT_VAL_SPLIT
from ..errors import DataWarning, ResnetlabError, count_argument, option, said_once, warn
from ..models import ModelMeta, load_model, read_model_meta
from ..options import GRADIENT_DEPTHS, GRADIENT_STEPS
from ..storage import atomic_write_text
from .runner import (
    Family,
    Run,
    checked_inputs,
    depth_list,
    get_family,
    out_folder,
    results_written,
    run_pairs,
    seed_argument,
    train_again,
)

# Validation is not what this experiment measures; a small sample keeps the runs short.
DEFAULT_VAL_SUBSET = 1000
# A first/fc ratio beyond this factor either way counts as a gradient that explodes
# (grows) or vanishes (shrinks) on its way back to the input; within it, neither.
FLOW_FACTOR = 10


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every conv and linear layer with its name, in the order the model registers them.

    For the ResNets that is input to output: the stem conv first, the fc last (a block's
    projection shortcut, where there is one, comes after the block's convs).
    """
    check_module(model, "weight_layers")
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def gradient_norms(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """L2 norm of the loss gradient for each weight layer's weight, on one batch.

    The model is copied and run in training mode (batch statistics in BN, as in training),
    so the caller's model, its gradients and BN statistics are left as they were.

    Args:
        model: a classifier returning logits.
        images: (B, 3, H, W), normalised as the model expects.
        labels: (B,) class indices.

    Returns:
        One norm per layer of ``weight_layers(model)``, in that order.
    """
    check_module(model, "gradient_norms")
    for key, value in (("images", images), ("labels", labels)):  # not conv2d's TypeError
        if not isinstance(value, torch.Tensor):
            fix = "torch.from_numpy" if isinstance(value, np.ndarray) else "torch.tensor"
            raise ResnetlabError(
                f"gradient_norms' {key} must be a tensor, got {type(value).__name__}; "
                f"convert it with {fix}"
            )
    classes = getattr(model, "num_classes", 0)
    if len(labels) and classes and not 0 <= int(labels.min()) <= int(labels.max()) < classes:
        raise ResnetlabError(  # not cross entropy's 'Target 5 is out of bounds'
            f"gradient_norms' labels must be class indices from 0 to {classes - 1}, got "
            f"{int(labels.min())} to {int(labels.max())}"
        )
    model = copy.deepcopy(model).train()
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(images), labels).backward()
    return [m.weight.grad.norm().item() for _, m in weight_layers(model)]


@dataclass
class GradientResult:
    """What the gradient experiment wrote and measured.

    Attributes:
        out: the experiment folder.
        steps: training steps between the two measurements.
        rows: one per model: ``model``, ``depth``, ``changed`` (False: the plain net, or
            the family's baseline), ``status``, ``layers`` (names), ``init`` and
            ``trained`` (norms, one per layer; ``trained`` is None when the run diverged)
            and the first/last ratios.
        settings: data, recipe, family and options of the runs.
    """

    out: Path
    steps: int
    rows: list[dict[str, Any]]
    settings: dict[str, Any]

    @property
    def family(self) -> Family:
        return get_family(self.settings.get("family", "plain"))

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "steps": self.steps, "models": self.rows}

    def __repr__(self) -> str:
        # One line: every layer's norms are in rows and gradients.md, not for the prompt.
        models = [r["model"] for r in self.rows]
        return f"GradientResult(out={self.out!r}, steps={self.steps}, models={models})"


def run_gradients(
    data: str,
    depths: Sequence[int] | None = None,
    *,
    steps: int = GRADIENT_STEPS,
    seed: int = 0,
    probe_size: int = 128,
    out: str | Path | None = None,
    recipe: str | None = None,
    family: str = "plain",
    **options: Any,
) -> GradientResult:
    """Measure each weight layer's gradient norm at initialisation and after ``steps`` steps.

    Args:
        data: a data set spec (``cifar10``, the CIFAR-10 JPEG archive, ``digits``, ...).
        depths: CIFAR depths registered as both nets of the family (default 20, 56, 110).
        steps: training steps, with the recipe's optimizer and learning rate.
        seed: seeds the weights, the data order and the measured batch.
        probe_size: images in the measured batch, drawn from the training split (all of
            it, with a warning, where it holds fewer).
        out: the experiment folder (default ``runs/gradients[-preact]-<data name>``).
        recipe: the training recipe (default: the family's paper's).
        family: ``"plain"`` (plainN and resnetN) or ``"preact"`` (resnetN and preresnetN).
        **options: ``TrainConfig`` fields for the runs (``lr``, ``input_size``, ...).

    Returns:
        The per-layer norms of every model; ``gradients.png``, ``gradients.md`` and
        ``gradients.json`` are written into ``out``.
    """
    kind = get_family(family)
    recipe = recipe or kind.recipe
    depths = depth_list(depths, GRADIENT_DEPTHS)
    steps = count_argument(steps, option("steps"))
    seed = seed_argument(seed, option("seed"))
    if count_argument(probe_size, option("probe_size"), minimum=0) < 2:
        raise ResnetlabError(
            f"{option('probe_size')} must be at least 2 (BN needs a batch), got {probe_size}"
        )
    if "max_steps" in options or "epochs" in options:
        raise ResnetlabError(
            f"the gradient experiment sets the length of training with {option('steps')}"
        )
    data, options = checked_inputs(data, recipe, options)
    out = out_folder(out, "gradients", data, family=kind.name, val_data=options.get("val_data"))
    # The experiment's cap, where the user set none: fewer images than it are no news.
    chosen = set() if "val_subset" in options else {"val_subset"}
    options = {"val_subset": DEFAULT_VAL_SUBSET, **options, "max_steps": steps}
    settings = {"data": data, "recipe": recipe, "depths": depths, "seed": seed, **options}
    # The folder held until the figures are written; the probe's data, loaded as the runs'
    # was, warns of nothing new.
    pairs = run_pairs(data, depths, [seed], out, recipe, options, kind, probe=True, chosen=chosen)
    with said_once(), pairs as runs:
        seen_as = _measured_run(runs, out)
        download = options.get("download", False)
        images, labels = probe_batch(data, seen_as, probe_size, seed, download)
        return _report(out, runs, seen_as, images, labels, steps, kind, settings)


def _report(
    out: Path,
    runs: list[Run],
    seen_as: Run,
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    kind: Family,
    settings: dict[str, Any],
) -> GradientResult:
    """Measure ``runs`` on the probe batch and write ``gradients.png``, ``.json`` and ``.md``."""
    meta = read_model_meta(_model_file(seen_as))
    with global_state_kept():  # initial_model seeds the global generator, as a run does
        rows = [_measure(run, images, labels, meta) for run in runs]
    settings = {**settings, "probe_size": len(labels)}
    if kind.name != "plain":
        settings["family"] = kind.name
    result = GradientResult(out, steps, rows, settings)
    models = [
        {
            "depth": r["depth"],
            "changed": r["changed"],
            "stages": {
                "at initialisation": r["init"],
                **({f"after {count_of(steps, 'step')}": r["trained"]} if r["trained"] else {}),
            },
        }
        for r in rows
    ]
    data = settings["data"]
    title = f"{Path(str(data)).name}: weight-gradient norm per layer, one batch of {len(labels):,}"
    with results_written(out):
        plot_gradient_norms(models, out / "gradients.png", title=title, names=kind.labels)
        atomic_write_text(out / "gradients.json", json.dumps(result.to_dict(), indent=2) + "\n")
        atomic_write_text(out / "gradients.md", markdown(result))
    return result


def probe_batch(
    data: str, run: Run, size: int, seed: int, download: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` training images (each class its share), normalised as ``run`` trained; all
    of them, with a warning that says so, where ``size`` is more than there are."""
    meta = read_model_meta(_model_file(run))
    train = load_dataset(
        data,
        image_size=meta.input_size,
        seed=seed,
        download=download,
        default_val_split=DEFAULT_VAL_SPLIT,
        resize=meta.resize,
    ).train
    if note := subset_all_note("probe_size", size, train, "training"):  # as --subset says it
        warn(note, DataWarning)
    train = stratified_sample(train, size, seed)
    loader = make_loader(
        train, train=False, batch_size=len(train), device="cpu", mean=meta.mean, std=meta.std
    )
    return next(iter(loader))


def _model_file(run: Run) -> Path:
    """The model a run ended with, which is measured; one line with the fix when it is gone
    (``load_model`` would offer the run's best model, which is not what was measured)."""
    path = run.run_dir / "last.safetensors"
    if not path.is_file():
        raise ResnetlabError(
            f"{path} is gone, and the experiment measures it: {train_again(run.run_dir)}"
        )
    return path


def _measured_run(runs: Sequence[Run], out: Path) -> Run:
    """The first finished run, whose model file says how every run of the experiment saw
    the images (the same data and options: the same size and normalisation); a diverged
    run writes no model file. One line with the fix when every run diverged."""
    for run in runs:
        if run.status == "finished":
            return run
    raise ResnetlabError(
        f"every run in {out} diverged (NaN/inf), so no net has a model to measure: lower "
        f"{option('lr')} and choose another {option('out')}"
    )


def _measure(
    run: Run, images: torch.Tensor, labels: torch.Tensor, meta: ModelMeta
) -> dict[str, Any]:
    """The norms of ``run``'s net at initialisation and, where it finished, after its
    steps; ``meta`` gives the classes and image size (a diverged run has no model file)."""
    start = initial_model(run.config, meta.num_classes, meta.input_size)
    init = gradient_norms(start, images, labels)
    trained = None
    if run.status == "finished":
        trained = gradient_norms(load_model(_model_file(run)), images, labels)
    return {
        "model": run.model,
        "depth": run.depth,
        "changed": run.changed,
        "status": run.status,
        "run_dir": run.run_dir.name,  # inside the experiment folder
        "layers": [name for name, _ in weight_layers(start)],
        "init": init,
        "trained": trained,
        "init_ratio": init[0] / init[-1],
        "trained_ratio": trained[0] / trained[-1] if trained else None,
    }


def markdown(result: GradientResult) -> str:
    """``gradients.md``: first and last layer's norms and their ratio, per model."""
    k = result.steps
    base, changed = result.family.nouns
    lines = [
        f"# Gradient norm per weight layer: {base}s vs {changed}s",
        "",
        f"Data `{result.settings['data']}`, one batch of {result.settings['probe_size']:,} "
        f"training images, cross-entropy loss, training-mode BN. Seed "
        f"{result.settings['seed']}; {count_of(k, 'step')} of recipe `{result.settings['recipe']}` "
        "between the two measurements.",
        "",
        "| model | weight layers | first (init) | fc (init) | first/fc (init) "
        f"| first/fc (after {count_of(k, 'step')}) | largest/smallest layer (init) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result.rows:
        after = _num(r["trained_ratio"]) if r["trained"] else r["status"]
        lines.append(
            f"| {r['model']} | {len(r['layers'])} | {_num(r['init'][0])} | {_num(r['init'][-1])} "
            f"| {_num(r['init_ratio'])} | {after} | {_num(max(r['init']) / min(r['init']))} |"
        )
    lines += ["", *_comparison(result.rows, k, result.family), ""]
    if shown := conclusion(result.rows, k, result.family):
        lines += ["## What the ratios show", "", *shown, ""]
    return "\n".join(lines)


def flow(ratios: dict[int, float]) -> str:
    """What first/fc ratios by depth say about the gradient on its way to the input.

    The deepest net decides the direction: a ratio above ``FLOW_FACTOR`` is a gradient
    that explodes toward the input, one below its inverse a gradient that vanishes, and
    one in between neither. With two depths or more, a ratio that moves further that way
    at every step in depth adds that it does so more the deeper the net.

    Args:
        ratios: first layer's gradient norm over the fc's, by depth.

    Returns:
        A clause: "explodes toward the input, more the deeper the net, rather than
        vanishing (first/fc 4.73, 659 at depths 20, 56)".
    """
    depths = sorted(ratios)
    values = [ratios[d] for d in depths]
    rising = all(b > a for a, b in itertools.pairwise(values))
    falling = all(b < a for a, b in itertools.pairwise(values))
    more = ", more the deeper the net" if len(values) > 1 else ""
    if values[-1] > FLOW_FACTOR:
        what = f"explodes toward the input{more if rising else ''}, rather than vanishing"
    elif values[-1] < 1 / FLOW_FACTOR:
        what = f"vanishes toward the input{more if falling else ''}"
    else:
        what = f"neither explodes nor vanishes, staying within a factor of {FLOW_FACTOR}"
    at = "depth" if len(depths) == 1 else "depths"
    numbers = ", ".join(_num(v) for v in values)
    return f"{what} (first/fc {numbers} at {at} {', '.join(map(str, depths))})"


def conclusion(rows: list[dict[str, Any]], steps: int, kind: Family) -> list[str]:
    """``flow`` for each kind of net, at initialisation and after the training steps, from
    the ratios of the depths where both nets are measured (a diverged run's depth is left
    out after training)."""
    pairs = {}
    for r in rows:
        pairs.setdefault(r["depth"], {})[r["changed"]] = r
    pairs = {d: p for d, p in sorted(pairs.items()) if len(p) == 2}
    trained = {d: p for d, p in pairs.items() if all(r["trained"] for r in p.values())}
    lines = []
    for stage, key, measured in [
        ("At initialisation", "init_ratio", pairs),
        (f"After {count_of(steps, 'step')}", "trained_ratio", trained),
    ]:
        if not measured:
            continue
        parts = [
            f"the {noun}s' gradient " + flow({d: p[changed][key] for d, p in measured.items()})
            for changed, noun in ((False, kind.nouns[0]), (True, kind.nouns[1]))
        ]
        lines.append(f"- {stage}, {parts[0]}; {parts[1]}.")
    return lines


def _comparison(rows: list[dict[str, Any]], steps: int, kind: Family) -> list[str]:
    """One line per depth: the plain net's (baseline's) first/fc ratio against the
    ResNet's (changed net's)."""
    base, changed = kind.nouns
    lines = []
    for depth in sorted({r["depth"] for r in rows}):
        pair = {r["changed"]: r for r in rows if r["depth"] == depth}
        if len(pair) < 2:
            continue
        parts = [
            f"{_times(pair[False]['init_ratio'] / pair[True]['init_ratio'])} at initialisation"
        ]
        if pair[False]["trained_ratio"] and pair[True]["trained_ratio"]:
            factor = pair[False]["trained_ratio"] / pair[True]["trained_ratio"]
            parts.append(f"{_times(factor)} after {count_of(steps, 'step')}")
        lines.append(
            f"- depth {depth}: the {base}'s first/fc ratio is {' and '.join(parts)} "
            f"than the {changed}'s."
        )
    return lines


def _times(factor: float) -> str:
    return f"{_num(max(factor, 1 / factor))} times {'larger' if factor >= 1 else 'smaller'}"


def _num(x: float) -> str:
    if x == 0 or not math.isfinite(x):
        return str(x)
    return f"{x:.3g}" if 1e-3 <= abs(x) < 1e4 else f"{x:.2e}"
