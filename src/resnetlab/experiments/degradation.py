"""The degradation experiment of He et al. (2015), section 4.2: plain vs residual nets.

For each depth, the plain net and the ResNet are trained with the same recipe, seed, data
order and augmentation; they start from the same weights (they share every key), so the
shortcuts are the only difference. The paper's Fig. 6 shows the plain nets' training error
rising with depth (plain-20 < 32 < 44 < 56) while the ResNets' falls; Table 6 gives the
ResNets' test errors.

With ``family="preact"`` the same experiment sets the original ResNets against the
pre-activation ResNets of He et al. (2016), "Identity Mappings" (their Table 3: the gain
grows with depth and is largest at ResNet-1001). The two nets of a depth then have
different layers (BN moves before each conv) and cannot start from the same weights; they
share the seed, the recipe and the data.

The experiment folder gets one run folder per model and seed (see ``runner.py``), and:

- ``curves.png``: error vs iteration, plain nets left, ResNets right (the Fig. 6 layout);
- ``depth.png``: final training and test error vs depth;
- ``table.md`` and ``table.json``: final errors per model, parameters, the paper's numbers,
  and whether the degradation shows.

Training error is the running error on the augmented training batches in training mode,
as logged during training (what Fig. 6 plots); the final training error is that of the
last epoch. Test error is measured on the held-out split at the end of each epoch.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from ..analysis.plots import ErrorCurve, plot_degradation, plot_error_vs_depth
from ..data.sources import data_name
from ..engine.auto import count_of
from ..errors import ResnetlabError, option
from ..options import DEGRADATION_DEPTHS, PREACT_DEPTHS, PREACT_QUICK_DEPTHS, QUICK_DEPTHS
from ..storage import atomic_write_text
from .runner import (
    FAMILIES,
    Family,
    Run,
    checked_inputs,
    cifar_depths,
    depth_list,
    get_family,
    number_list,
    out_folder,
    results_written,
    run_pairs,
    seed_argument,
)

# He et al. (2015), Table 6: CIFAR-10 test error (%) of the ResNets (ResNet-110: the best of
# five runs; its mean is 6.61 +- 0.16). The plain nets are shown only as curves (Fig. 6).
PAPER_TEST_ERROR = FAMILIES["plain"].paper[1]

# When an answer is settled (``unsettled`` below). Early in training a deeper net can
# simply be slower to start (ResNet-56 trails ResNet-20 for its first 3,000 iterations on
# all of CIFAR-10), so a run shorter than this says little about depth; the quick mode
# trains 620 iterations.
MIN_STEPS = 500
# The shallowest nets must end at most this fraction of guessing's error (67.5% with ten
# classes): nets that have barely learnt differ by depth for no reason worth a verdict.
LEARNT_FRACTION = 0.75


@dataclass
class DegradationResult:
    """What the experiment wrote and found.

    Attributes:
        out: the experiment folder.
        runs: one per model and seed, in the order they ran.
        rows: one per model (over seeds), as in ``table.md``.
        verdict: whether the plain nets' training error rose with depth while the
            ResNets' did not (``family="preact"``: whether the pre-activation nets trained
            the deepest depth better), per seed and on the means, and whether that answer
            is ``settled`` (else the reasons, ``unsettled``); None with a single depth.
        settings: data, recipe, family and options of the runs.
    """

    out: Path
    runs: list[Run]
    rows: list[dict[str, Any]]
    verdict: dict[str, Any] | None
    settings: dict[str, Any]

    @property
    def family(self) -> Family:
        return get_family(self.settings.get("family", "plain"))

    def __repr__(self) -> str:
        # One line: each run's config and summary would fill pages; they are attributes,
        # and table.md and the verdict's text say what was found.
        done = Counter(run.action for run in self.runs)
        actions = ", ".join(f"{n} {action}" for action, n in done.items())
        shows = settled = None
        if self.verdict is not None:
            shows, settled = self.verdict["shows"], self.verdict["settled"]
        return (
            f"DegradationResult(out={self.out!r}, runs={len(self.runs)} ({actions}), "
            f"shows={shows}, settled={settled})"
        )

    def to_dict(self) -> dict[str, Any]:
        baseline, changed = self.family.paper
        return {
            "settings": self.settings,
            "models": self.rows,
            "verdict": self.verdict,
            "runs": [_run_record(r, self.out) for r in self.runs],
            "paper_test_error": {
                self.family.baseline: {str(d): e for d, e in baseline.items()},
                self.family.changed: {str(d): e for d, e in changed.items()},
            },
        }


def default_depths(family_name: str = "plain", quick: bool = False) -> tuple[int, ...]:
    """The depths an experiment of that family trains when none are given."""
    depths = {
        "plain": (DEGRADATION_DEPTHS, QUICK_DEPTHS),
        "preact": (PREACT_DEPTHS, PREACT_QUICK_DEPTHS),
    }
    return depths[get_family(family_name).name][quick]


def run_degradation(
    data: str,
    depths: Sequence[int] | None = None,
    *,
    family: str = "plain",
    seeds: Sequence[int] = (0,),
    out: str | Path | None = None,
    recipe: str | None = None,
    **options: Any,
) -> DegradationResult:
    """Train the family's two nets (plain-N and ResNet-N by default) for each depth and
    seed, then write the figures and table.

    Running it again with the same arguments skips the runs that ended, continues an
    unfinished one from its checkpoint and runs the rest; the outputs are rewritten from
    every run in the folder that was asked for.

    Args:
        data: a data set spec (``cifar10``, the CIFAR-10 JPEG archive, ``digits``, ...).
        depths: CIFAR depths registered as both nets of the family (default
            ``default_depths(family)``).
        family: ``"plain"`` (plainN vs resnetN) or ``"preact"`` (resnetN vs preresnetN).
        seeds: one run of each model per seed.
        out: the experiment folder (default ``runs/degradation[-preact]-<data name>``).
        recipe: the training recipe (default: the family's paper's, ``paper-cifar`` or
            ``preact-cifar``).
        **options: ``TrainConfig`` fields for every run (``epochs``, ``subset``, ``lr``...).

    Returns:
        The runs, the table rows and the verdict.
    """
    kind = get_family(family)
    depths = depth_list(depths, default_depths(kind.name))
    seeds = number_list(seeds, option("seeds"), "[0, 1, 2]")
    seeds = list(dict.fromkeys(seed_argument(s, f"each of {option('seeds')}") for s in seeds))
    if not seeds:
        raise ResnetlabError("the experiment needs at least one seed")
    recipe = recipe or kind.recipe
    data, options = checked_inputs(data, recipe, options)
    out = out_folder(out, "degradation", data, family=kind.name, val_data=options.get("val_data"))
    # Said before the training, not only in the table after it.
    note = one_depth_text(depths[0], kind) if len(depths) < 2 else None
    settings = {"data": data, "recipe": recipe, "depths": depths, "seeds": seeds, **options}
    if kind.name != "plain":
        settings["family"] = kind.name
    with run_pairs(data, depths, seeds, out, recipe, options, kind, note=note) as runs:
        return report(out, runs, settings)  # the folder held until its figures are written


def report(out: Path, runs: Sequence[Run], settings: dict[str, Any]) -> DegradationResult:
    """Write ``curves.png``, ``depth.png``, ``table.md`` and ``table.json`` for ``runs``."""
    kind = get_family(settings.get("family", "plain"))
    rows = _model_rows(runs, kind)
    # The final training error is a rate over the images the last epoch trained on.
    counts = [last_epoch_images(r) for r in runs if r.status == "finished"]
    images = min(counts) if counts else None
    errors = {(r.seed, r.depth, r.changed): final_errors(r)[0] for r in runs}
    found = verdict(errors, images) if kind.name == "plain" else gap_verdict(errors, images)
    if found is not None:
        finished = [r.summary for r in runs if r.status == "finished"]
        reasons = unsettled(
            seeds=found["complete_seeds"],
            shallow_errors=_shallow_errors(found),
            chance=_chance_error(finished[0]["num_classes"]) if finished else None,
            steps=min(f["steps"] for f in finished) if finished else None,
            max_steps=settings.get("max_steps") is not None,
        )
        found |= {"settled": not reasons, "unsettled": reasons}
    result = DegradationResult(Path(out), list(runs), rows, found, settings)
    title = _title(runs, settings)
    panels = (f"{kind.nouns[0]}s", f"{kind.nouns[1]}s")
    with results_written(out):
        plot_degradation(
            _curves(runs), out / "curves.png", title=title, names=kind.labels, panels=panels
        )
        plot_error_vs_depth(rows, out / "depth.png", title=title, names=kind.labels)
        atomic_write_text(out / "table.json", json.dumps(result.to_dict(), indent=2) + "\n")
        atomic_write_text(out / "table.md", markdown(result))
    return result


def markdown(result: DegradationResult) -> str:
    """``table.md``: the settings, one row per model, and the verdict, in words."""
    s = result.settings
    kind = result.family
    first = result.runs[0].summary
    # The runs' length is a finished run's: a diverged one stopped short of it.
    steps = [r.summary["steps"] for r in result.runs if r.status == "finished"]
    length = count_of(max(steps), "iteration") if steps else "no run finished"
    title = (
        "Degradation: plain vs residual CIFAR nets"
        if kind.name == "plain"
        else f"{kind.nouns[0]}s vs {kind.nouns[1]}s on CIFAR"
    )
    lines = [
        f"# {title}",
        "",
        f"Data `{s['data']}`: {first['train_images']:,} training and "
        f"{first['val_images']:,} held-out images at {first['input_size']}x{first['input_size']}. "
        f"Recipe `{s['recipe']}`{_options_text(s)}: {length}. "
        f"Seeds: {', '.join(map(str, s['seeds']))}.",
        "",
        "| model | depth | parameters | train error (%) | test error (%) "
        "| paper's CIFAR-10 test error (%) | runs |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result.rows:
        paper = r["paper_test_error"]
        runs = f"{r['finished']}" + (f" (+{r['diverged']} diverged)" if r["diverged"] else "")
        lines.append(
            f"| {r['model']} | {r['depth']} | {r['params']:,} "
            f"| {_pm(r['train_error'], r['train_error_std'])} "
            f"| {_pm(r['test_error'], r['test_error_std'])} "
            f"| {'—' if paper is None else f'{paper:.2f}'} | {runs} |"
        )
    lines += [
        "",
        "Train error: the running error on the augmented training batches (the recipe's "
        "random crops, and flips unless the data is digit-like), in training mode, over the "
        "last epoch: what the "
        "paper's Fig. 6 plots. Test error: the held-out images at the end of training. "
        "Values are mean ± standard deviation over seeds.",
        "",
        f"Paper: {kind.paper_source}",
        "",
    ]
    if result.verdict is not None:
        v = result.verdict
        text = verdict_text(v) if kind.name == "plain" else gap_text(v, kind)
        lines += [f"## {kind.question}", "", text, ""]
    else:
        lines += [f"## {kind.question}", "", one_depth_text(result.rows[0]["depth"], kind), ""]
    return "\n".join(lines)


def one_depth_text(depth: int, kind: Family) -> str:
    """Why an experiment of one depth has no verdict, and the depths to give instead."""
    registered = cifar_depths(kind)
    deeper = [d for d in registered if d > depth]
    pair = (depth, deeper[0]) if deeper else ([d for d in registered if d < depth][-1], depth)
    return (
        f"No verdict: it compares depths, and this experiment has one ({depth}); give at "
        f"least two, e.g. {option('depths', list(pair))}."
    )


def verdict_text(v: dict[str, Any]) -> str:
    """The verdict in one paragraph."""
    lo, hi = v["shallow"], v["deep"]
    n = v["complete_seeds"]
    if n == 0:
        return "No seed has a finished plain net and ResNet at every depth; nothing to compare."
    per_seed = "; ".join(
        f"seed {s['seed']}: plain {s['plain_change']:+.1f}, ResNet {s['resnet_change']:+.1f}"
        for s in v["seeds"]
    )
    if v["shows"]:
        answer = "Yes"
    elif v["plain_rises"] == n:  # the plain nets degrade; the deepest ResNet is behind too
        answer = (
            "Partly: the plain nets degrade, but the deepest ResNet also trains worse than "
            "the shallowest"
        )
    else:
        answer = "No"
    return _settled_text(v, answer) + (
        f". From depth {lo} to {hi} the final training error changes by "
        f"{v['plain_change']:+.1f} points for the plain nets and {v['resnet_change']:+.1f} for "
        f"the ResNets (mean over seeds; {per_seed}). The plain nets' training error rises "
        f"at every step in depth in {v['plain_rises']} of {n} seeds; the deepest ResNet's "
        f"does not rise above the shallowest's in {v['resnet_holds']} of {n}." + _sampling_note(v)
    )


def gap_text(v: dict[str, Any], kind: Family) -> str:
    """``gap_verdict`` in one paragraph: how far the changed nets train below the baseline."""
    base, changed = kind.nouns
    n = v["complete_seeds"]
    if n == 0:
        return f"No seed has a finished {base} and {changed} at every depth; nothing to compare."
    gaps = ", ".join(f"{d}: {g:+.1f}" for d, g in v["gaps"].items())
    per_seed = "; ".join(
        f"seed {s['seed']}: " + ", ".join(f"{g:+.1f}" for g in s["gaps"]) for s in v["seeds"]
    )
    answer = "Yes" if v["shows"] else "No"
    return _settled_text(v, answer) + (
        f". The {base}s' final training error minus the {changed}s' (positive: the "
        f"{changed} trains better), by depth: {gaps} points (mean over seeds; {per_seed}). At the "
        f"deepest depth, {v['deep']}, the {changed} trains better in {v['deep_better']} of "
        f"{n} seeds, and the gap is wider there than at depth {v['shallow']} in "
        f"{v['widens']} of {n}." + _sampling_note(v, "a gap counts")
    )


def unsettled(
    *,
    seeds: int,
    shallow_errors: Sequence[float],
    chance: float | None,
    steps: int | None,
    max_steps: bool = False,
) -> list[str]:
    """Why a verdict's answer is not settled yet, each reason with what to run instead.

    The per-seed tests (``verdict``, ``gap_verdict``) allow for the sampling error of each
    training error, but not for three things that make any answer premature: training too
    short to tell a slow start from a worse net (fewer than ``MIN_STEPS`` iterations),
    shallowest nets that have barely learnt (training error above ``LEARNT_FRACTION`` of
    guessing's), and a single seed, which leaves the spread between seeds unknown.

    Args:
        seeds: seeds with every run finished.
        shallow_errors: final training error (%) of each net at the shallowest depth, mean
            over those seeds.
        chance: training error (%) of guessing a class at random; None: not known.
        steps: iterations of the shortest finished run; None: not known.
        max_steps: whether ``--max-steps`` set the length (then more epochs train no longer).

    Returns:
        The reasons, in words (empty: the answer stands).
    """
    reasons = []
    longer = f"a larger {option('max_steps')}" if max_steps else f"more {option('epochs')}"
    if steps is not None and steps < MIN_STEPS:
        reasons.append(
            f"{count_of(steps, 'iteration')} {'is' if steps == 1 else 'are'} too few to tell a "
            "net that is slower to start from one that trains worse "
            f"(train for at least {MIN_STEPS}: {longer})"
        )
    worst = max(shallow_errors, default=None)
    if chance is not None and worst is not None and worst > LEARNT_FRACTION * chance:
        reasons.append(
            f"the shallowest nets end at {worst:.1f}% training error against {chance:.1f}% "
            f"for guessing, so they have barely learnt (train longer, {longer}, or on more "
            f"images, a larger {option('subset')})"
        )
    if seeds == 1:
        reasons.append(
            "one seed with every run finished, so how far the errors spread from seed to "
            f"seed is unknown (run two or more seeds to the end: {option('seeds', [0, 1, 2])})"
        )
    return reasons


def _settled_text(v: dict[str, Any], answer: str) -> str:
    """The answer, or "Not settled" with the reasons and the answer of these runs alone."""
    reasons = v.get("unsettled")
    if not reasons:
        return answer
    return f"Not settled: {'; '.join(reasons)}. These runs alone would answer: {answer}"


def _shallow_errors(v: dict[str, Any]) -> list[float]:
    """Each net's final training error at the shallowest depth, mean over the seeds."""
    seeds = v["seeds"]
    if not seeds:
        return []
    keys = [k for k in ("plain", "resnet", "baseline", "changed") if k in seeds[0]]
    return [statistics.fmean(s[k][0] for s in seeds) for k in keys]


def _chance_error(num_classes: int) -> float:
    """Training error (%) of guessing one of ``num_classes`` classes at random."""
    return 100 * (1 - 1 / num_classes)


def _sampling_note(v: dict[str, Any], what: str = "a change counts as a rise") -> str:
    if not v["images"]:
        return ""
    return (
        f" {what[0].upper()}{what[1:]} when it exceeds twice its sampling error over "
        f"{v['images']:,} images."
    )


# -- tables ------------------------------------------------------------------------------


def last_epoch_images(run: Run) -> int:
    """The images a finished run's last epoch trained on: its steps (fewer where
    ``--max-steps`` cut it short) times the batch of all its processes, and never more
    than the training set (one short batch where the set is smaller than a batch)."""
    steps = [m["step"] for m in run.metrics if m["kind"] == "epoch"]
    last = steps[-1] - (steps[-2] if len(steps) > 1 else 0)
    images = last * run.config.batch_size * run.summary.get("world_size", 1)
    return min(images, run.summary["train_images"])


def final_errors(run: Run) -> tuple[float | None, float | None]:
    """(train error, test error) in percent at the end of a finished run, else Nones."""
    if run.status != "finished":
        return None, None
    epochs = [m for m in run.metrics if m["kind"] == "epoch"]
    train = 100 * (1 - epochs[-1]["train_acc"])
    val = run.summary.get("final_val_acc")
    return train, (100 * (1 - val) if val is not None else None)


def _model_rows(runs: Sequence[Run], kind: Family) -> list[dict[str, Any]]:
    rows = []
    for depth, changed in sorted({(r.depth, r.changed) for r in runs}):
        group = [r for r in runs if (r.depth, r.changed) == (depth, changed)]
        errors = [final_errors(r) for r in group if r.status == "finished"]
        train = [e[0] for e in errors]
        test = [e[1] for e in errors if e[1] is not None]
        rows.append(
            {
                "model": group[0].model,
                "depth": depth,
                "changed": changed,
                "params": group[0].summary["params"],
                "finished": len(errors),
                "diverged": sum(r.status == "diverged" for r in group),
                "train_error": _mean(train),
                "train_error_std": _std(train),
                "test_error": _mean(test),
                "test_error_std": _std(test),
                "paper_test_error": kind.paper[changed].get(depth),
                "train_errors": train,
                "test_errors": test,
            }
        )
    return rows


def _exceeds(a: float, b: float, images: int | None) -> bool:
    """Whether error ``b`` is above ``a`` (percent), by more than twice the sampling error
    of two rates over ``images`` images when that is given."""
    if images is None:
        return b > a
    p, q = a / 100, b / 100
    return b - a > 200 * math.sqrt((p * (1 - p) + q * (1 - q)) / images)


def verdict(
    train_errors: dict[tuple[int, int, bool], float | None], images: int | None = None
) -> dict[str, Any] | None:
    """Whether the plain nets' training error rises with depth while the ResNets' does not.

    Per seed with every run finished: the plain nets' error must rise at every step in
    depth, and the deepest ResNet's must not rise above the shallowest's. The degradation
    ``shows`` only when every such seed shows both.

    With ``images``, a change counts as a rise only when it is larger than twice its
    sampling error: each training error is a rate over one epoch of ``images`` images, so
    two of them differ by chance by about ``sqrt(p1 (1 - p1) / n + p2 (1 - p2) / n)``.

    Args:
        train_errors: final training error (%) by ``(seed, depth, changed)`` (``changed``:
            the ResNet, else the plain net); None for a run that did not finish.
        images: training images the errors were measured over (None: any rise counts).

    Returns:
        Counts, changes from the shallowest to the deepest net (points), per-seed details;
        None with fewer than two depths.
    """
    depths = sorted({depth for _, depth, _ in train_errors})
    if len(depths) < 2:
        return None
    seeds = [
        {
            "seed": seed,
            "plain": plain,
            "resnet": resnet,
            "plain_change": plain[-1] - plain[0],
            "resnet_change": resnet[-1] - resnet[0],
            "plain_rises": all(_exceeds(a, b, images) for a, b in pairwise(plain)),
            "resnet_holds": not _exceeds(resnet[0], resnet[-1], images),
        }
        for seed, plain, resnet in _complete_seeds(train_errors, depths)
    ]
    n = len(seeds)
    return {
        "shallow": depths[0],
        "deep": depths[-1],
        "images": images,
        "complete_seeds": n,
        "plain_change": _mean([s["plain_change"] for s in seeds]),
        "resnet_change": _mean([s["resnet_change"] for s in seeds]),
        "plain_rises": sum(s["plain_rises"] for s in seeds),
        "resnet_holds": sum(s["resnet_holds"] for s in seeds),
        # Shown only when every complete seed shows it: a claim about reliability.
        "shows": n > 0 and all(s["plain_rises"] and s["resnet_holds"] for s in seeds),
        "seeds": seeds,
    }


def gap_verdict(
    train_errors: dict[tuple[int, int, bool], float | None], images: int | None = None
) -> dict[str, Any] | None:
    """Whether the changed nets (pre-activation) train better than the baseline, by depth.

    Per seed with every run finished, the gap at each depth is the baseline's final
    training error minus the changed net's (points; positive when the change helps). He
    et al. (2016) find the gap growing with depth (Table 3, Fig. 1: largest at 1001
    layers). The change ``shows`` when, in every such seed, the changed net trains the
    deepest depth better by more than twice the sampling error (see ``verdict``).

    Args:
        train_errors: final training error (%) by ``(seed, depth, changed)``; None for a
            run that did not finish.
        images: training images the errors were measured over (None: any gap counts).

    Returns:
        Gaps per depth (mean over seeds), counts, per-seed details; None with fewer than
        two depths.
    """
    depths = sorted({depth for _, depth, _ in train_errors})
    if len(depths) < 2:
        return None
    seeds = [
        {
            "seed": seed,
            "baseline": base,
            "changed": changed,
            "gaps": [b - c for b, c in zip(base, changed, strict=True)],
            "deep_better": _exceeds(changed[-1], base[-1], images),
            "widens": base[-1] - changed[-1] > base[0] - changed[0],
        }
        for seed, base, changed in _complete_seeds(train_errors, depths)
    ]
    n = len(seeds)
    return {
        "shallow": depths[0],
        "deep": depths[-1],
        "images": images,
        "complete_seeds": n,
        "gaps": {d: _mean([s["gaps"][i] for s in seeds]) for i, d in enumerate(depths)},
        "deep_better": sum(s["deep_better"] for s in seeds),
        "widens": sum(s["widens"] for s in seeds),
        "shows": n > 0 and all(s["deep_better"] for s in seeds),
        "seeds": seeds,
    }


def _complete_seeds(
    train_errors: dict[tuple[int, int, bool], float | None], depths: list[int]
) -> list[tuple[int, list[float], list[float]]]:
    """(seed, baseline errors, changed errors) by depth, for the seeds with every run."""
    complete = []
    for seed in dict.fromkeys(seed for seed, _, _ in train_errors):
        base = [train_errors.get((seed, d, False)) for d in depths]
        changed = [train_errors.get((seed, d, True)) for d in depths]
        if None not in base and None not in changed:  # else a run diverged or is missing
            complete.append((seed, base, changed))
    return complete


# -- curves ------------------------------------------------------------------------------


def _curves(runs: Sequence[Run]) -> list[ErrorCurve]:
    curves = []
    for depth, changed in sorted({(r.depth, r.changed) for r in runs}):
        group = [r.metrics for r in runs if (r.depth, r.changed) == (depth, changed)]
        train = _by_step(group, "step", "train_acc")
        test = _by_step(group, "epoch", "val_acc")
        curves.append(
            ErrorCurve(
                depth=depth,
                changed=changed,
                train_steps=list(train),
                train_error=[statistics.fmean(v) for v in train.values()],
                test_steps=list(test),
                test_error=[statistics.fmean(v) for v in test.values()],
                train_low=[min(v) for v in train.values()] if len(group) > 1 else None,
                train_high=[max(v) for v in train.values()] if len(group) > 1 else None,
            )
        )
    return curves


def _by_step(group: list[list[dict]], kind: str, key: str) -> dict[int, list[float]]:
    """Error (%) per step, over the runs that logged that step (all of them, normally)."""
    values: dict[int, list[float]] = {}
    for metrics in group:
        for m in metrics:
            if m["kind"] == kind and m[key] is not None:
                values.setdefault(m["step"], []).append(100 * (1 - m[key]))
    return dict(sorted(values.items()))


# -- text --------------------------------------------------------------------------------


def _title(runs: Sequence[Run], settings: dict[str, Any]) -> str:
    seeds = settings["seeds"]
    mean = f", mean of {len(seeds)} seeds" if len(seeds) > 1 else f", seed {seeds[0]}"
    first = runs[0].summary
    return (
        f"{data_name(str(settings['data']))}: {first['train_images']:,} training images, "
        f"{first['input_size']}x{first['input_size']}, recipe {settings['recipe']}{mean}"
    )


def _options_text(settings: dict[str, Any]) -> str:
    skip = {"data", "recipe", "depths", "seeds", "family"}
    options = {k: v for k, v in settings.items() if k not in skip}
    return (" with " + ", ".join(f"{k}={v}" for k, v in options.items())) if options else ""


def _run_record(run: Run, out: Path) -> dict[str, Any]:
    train, test = final_errors(run)
    return {
        "model": run.model,
        "depth": run.depth,
        "changed": run.changed,
        "seed": run.seed,
        "run_dir": _relative(run.run_dir, out),
        "status": run.status,
        "steps": run.summary["steps"],
        "train_error": train,
        "test_error": test,
        "train_time_s": run.summary["train_time_s"],
    }


def _relative(path: Path, root: Path) -> str:
    """``path`` inside the experiment folder, so that the table stays valid if it moves."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _pm(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _std(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None
