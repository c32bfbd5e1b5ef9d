"""The degradation experiment of He et al. (2015), section 4.2: plain vs residual nets.

For each depth, the plain net and the ResNet are trained with the same recipe, seed, data
order and augmentation; they start from the same weights (they share every key), so the
shortcuts are the only difference. The paper's Fig. 6 shows the plain nets' training error
rising with depth (plain-20 < 32 < 44 < 56) while the ResNets' falls; Table 6 gives the
ResNets' test errors.

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
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from ..analysis.plots import ErrorCurve, plot_degradation, plot_error_vs_depth
from ..errors import ResnetlabError
from .runner import Run, default_out, run_pairs

# He et al. (2015), Table 6: CIFAR-10 test error (%) of the ResNets (ResNet-110: the best of
# five runs; its mean is 6.61 +- 0.16). The plain nets are shown only as curves (Fig. 6).
PAPER_TEST_ERROR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}

DEFAULT_DEPTHS = (20, 32, 44, 56)

# The CPU-sized version (``--quick``): 2,000 training images (200 a class) at full size,
# batch 32 for more updates per image, 10 epochs (620 steps) of the paper's recipe at
# learning rate 0.05, validated on 1,000 test images. docs/degradation.md has the measured
# results and times. Flags override these.
QUICK_DEPTHS = (8, 20, 32)
QUICK: dict[str, Any] = dict(
    recipe="paper-cifar",
    subset=2000,
    val_subset=1000,
    epochs=10,
    batch_size=32,
    lr=0.05,
    log_every=10,
)


@dataclass
class DegradationResult:
    """What the experiment wrote and found.

    Attributes:
        out: the experiment folder.
        runs: one per model and seed, in the order they ran.
        rows: one per model (over seeds), as in ``table.md``.
        verdict: whether the plain nets' training error rose with depth while the
            ResNets' did not, per seed and on the means; None with a single depth.
        settings: data, recipe and options of the runs.
    """

    out: Path
    runs: list[Run]
    rows: list[dict[str, Any]]
    verdict: dict[str, Any] | None
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "models": self.rows,
            "verdict": self.verdict,
            "runs": [_run_record(r, self.out) for r in self.runs],
            "paper_test_error": {str(d): e for d, e in PAPER_TEST_ERROR.items()},
        }


def run_degradation(
    data: str,
    depths: Sequence[int] = DEFAULT_DEPTHS,
    *,
    seeds: Sequence[int] = (0,),
    out: str | Path | None = None,
    recipe: str = "paper-cifar",
    **options: Any,
) -> DegradationResult:
    """Train plain-N and ResNet-N for each depth and seed, then write the figures and table.

    Running it again with the same arguments skips the runs that ended, continues an
    unfinished one from its checkpoint and runs the rest; the outputs are rewritten from
    every run in the folder that was asked for.

    Args:
        data: a data set spec (``cifar10``, the CIFAR-10 JPEG archive, ``digits``, ...).
        depths: CIFAR depths (6n + 2) registered both as ``plainN`` and ``resnetN``.
        seeds: one run of each model per seed.
        out: the experiment folder (default ``runs/degradation-<data name>``).
        recipe: the training recipe (default: the paper's).
        **options: ``TrainConfig`` fields for every run (``epochs``, ``subset``, ``lr``...).

    Returns:
        The runs, the table rows and the verdict.
    """
    depths = sorted(set(depths))
    seeds = list(dict.fromkeys(seeds))
    if not depths or not seeds:
        raise ResnetlabError("the experiment needs at least one depth and one seed")
    out = Path(out) if out is not None else default_out("degradation", data)
    runs = run_pairs(data, depths, seeds, out, recipe, options)
    settings = {"data": data, "recipe": recipe, "depths": depths, "seeds": seeds, **options}
    return report(out, runs, settings)


def report(out: Path, runs: Sequence[Run], settings: dict[str, Any]) -> DegradationResult:
    """Write ``curves.png``, ``depth.png``, ``table.md`` and ``table.json`` for ``runs``."""
    rows = _model_rows(runs)
    # The final training error is a rate over the last epoch's images.
    images = min(r.summary["train_images"] for r in runs)
    found = verdict({(r.seed, r.depth, r.residual): final_errors(r)[0] for r in runs}, images)
    result = DegradationResult(Path(out), list(runs), rows, found, settings)
    title = _title(runs, settings)
    plot_degradation(_curves(runs), out / "curves.png", title=title)
    plot_error_vs_depth(rows, out / "depth.png", title=title)
    (out / "table.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    (out / "table.md").write_text(markdown(result))
    return result


def markdown(result: DegradationResult) -> str:
    """``table.md``: the settings, one row per model, and the verdict, in words."""
    s = result.settings
    first = result.runs[0].summary
    steps = max(r.summary["steps"] for r in result.runs)
    lines = [
        "# Degradation: plain vs residual CIFAR nets",
        "",
        f"Data `{s['data']}`: {first['train_images']:,} training and "
        f"{first['val_images']:,} held-out images at {first['input_size']}x{first['input_size']}. "
        f"Recipe `{s['recipe']}`{_options_text(s)}: {steps:,} iterations. "
        f"Seeds: {', '.join(map(str, s['seeds']))}.",
        "",
        "| model | depth | parameters | train error (%) | test error (%) "
        "| paper test error (%) | runs |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result.rows:
        paper = PAPER_TEST_ERROR.get(r["depth"]) if r["residual"] else None
        runs = f"{r['finished']}" + (f" (+{r['diverged']} diverged)" if r["diverged"] else "")
        lines.append(
            f"| {r['model']} | {r['depth']} | {r['params']:,} "
            f"| {_pm(r['train_error'], r['train_error_std'])} "
            f"| {_pm(r['test_error'], r['test_error_std'])} "
            f"| {'—' if paper is None else f'{paper:.2f}'} | {runs} |"
        )
    lines += [
        "",
        "Train error: the running error on the augmented training batches (random crops and "
        "flips as the recipe sets them), in training mode, over the last epoch: what the "
        "paper's Fig. 6 plots. Test error: the held-out images at the end of training. "
        "Values are mean ± standard deviation over seeds.",
        "",
        "Paper: He et al. (2015), Table 6, CIFAR-10 test error after 64k iterations on all "
        "50,000 training images; it gives numbers for the ResNets only (the plain nets "
        "appear as curves in Fig. 6, so their column is empty).",
        "",
    ]
    if result.verdict is not None:
        lines += ["## Does the degradation show?", "", verdict_text(result.verdict), ""]
    return "\n".join(lines)


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
    answer = "Yes" if v["shows"] else "No"
    return (
        f"{answer}. From depth {lo} to {hi} the final training error changes by "
        f"{v['plain_change']:+.1f} points for the plain nets and {v['resnet_change']:+.1f} for "
        f"the ResNets (mean over seeds; {per_seed}). The plain nets' training error rises "
        f"at every step in depth in {v['plain_rises']} of {n} seeds; the deepest ResNet's "
        f"does not rise above the shallowest's in {v['resnet_holds']} of {n}."
        + (
            f" A change counts as a rise when it exceeds twice its sampling error over "
            f"{v['images']:,} images."
            if v["images"]
            else ""
        )
    )


# -- tables ------------------------------------------------------------------------------


def final_errors(run: Run) -> tuple[float | None, float | None]:
    """(train error, test error) in percent at the end of a finished run, else Nones."""
    if run.status != "finished":
        return None, None
    epochs = [m for m in run.metrics if m["kind"] == "epoch"]
    train = 100 * (1 - epochs[-1]["train_acc"])
    val = run.summary.get("final_val_acc")
    return train, (100 * (1 - val) if val is not None else None)


def _model_rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
    rows = []
    for depth, residual in sorted({(r.depth, r.residual) for r in runs}):
        group = [r for r in runs if (r.depth, r.residual) == (depth, residual)]
        errors = [final_errors(r) for r in group if r.status == "finished"]
        train = [e[0] for e in errors]
        test = [e[1] for e in errors if e[1] is not None]
        rows.append(
            {
                "model": group[0].model,
                "depth": depth,
                "residual": residual,
                "params": group[0].summary["params"],
                "finished": len(errors),
                "diverged": sum(r.status == "diverged" for r in group),
                "train_error": _mean(train),
                "train_error_std": _std(train),
                "test_error": _mean(test),
                "test_error_std": _std(test),
                "paper_test_error": PAPER_TEST_ERROR.get(depth) if residual else None,
                "train_errors": train,
                "test_errors": test,
            }
        )
    return rows


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
        train_errors: final training error (%) by ``(seed, depth, residual)``; None for a
            run that did not finish.
        images: training images the errors were measured over (None: any rise counts).

    Returns:
        Counts, changes from the shallowest to the deepest net (points), per-seed details;
        None with fewer than two depths.
    """
    depths = sorted({depth for _, depth, _ in train_errors})
    if len(depths) < 2:
        return None

    def rises(a: float, b: float) -> bool:
        if images is None:
            return b > a
        p, q = a / 100, b / 100
        return b - a > 200 * math.sqrt((p * (1 - p) + q * (1 - q)) / images)

    seeds = []
    for seed in dict.fromkeys(seed for seed, _, _ in train_errors):
        plain = [train_errors.get((seed, d, False)) for d in depths]
        resnet = [train_errors.get((seed, d, True)) for d in depths]
        if None in plain or None in resnet:
            continue  # a run diverged or is missing
        seeds.append(
            {
                "seed": seed,
                "plain": plain,
                "resnet": resnet,
                "plain_change": plain[-1] - plain[0],
                "resnet_change": resnet[-1] - resnet[0],
                "plain_rises": all(rises(a, b) for a, b in pairwise(plain)),
                "resnet_holds": not rises(resnet[0], resnet[-1]),
            }
        )
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


# -- curves ------------------------------------------------------------------------------


def _curves(runs: Sequence[Run]) -> list[ErrorCurve]:
    curves = []
    for depth, residual in sorted({(r.depth, r.residual) for r in runs}):
        group = [r.metrics for r in runs if (r.depth, r.residual) == (depth, residual)]
        train = _by_step(group, "step", "train_acc")
        test = _by_step(group, "epoch", "val_acc")
        curves.append(
            ErrorCurve(
                depth=depth,
                residual=residual,
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
        f"{Path(str(settings['data'])).name}: {first['train_images']:,} training images, "
        f"{first['input_size']}x{first['input_size']}, recipe {settings['recipe']}{mean}"
    )


def _options_text(settings: dict[str, Any]) -> str:
    skip = {"data", "recipe", "depths", "seeds"}
    options = {k: v for k, v in settings.items() if k not in skip}
    return (" with " + ", ".join(f"{k}={v}" for k, v in options.items())) if options else ""


def _run_record(run: Run, out: Path) -> dict[str, Any]:
    train, test = final_errors(run)
    return {
        "model": run.model,
        "depth": run.depth,
        "residual": run.residual,
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
