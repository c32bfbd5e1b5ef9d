"""The Markdown table of ``results.jsonl``: one row per case and variant, raw numbers rounded
only here. ``python benchmarks/defaults/run.py --table`` prints it."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

VARIANT_ORDER = ("old", "auto", "seed", "paper-cifar", "modern")


def _pct(value: float | None) -> str:
    return f"{100 * value:.2f}" if value is not None else "-"


def _worst_ratio(runs: list[dict]) -> str:
    """The largest validation-to-training loss ratio of the first three epochs, over all
    seeds."""
    ratios = [
        e["val_loss"] / e["train_loss"]
        for r in runs
        for e in r.get("first_epochs", [])
        if e["val_loss"] is not None and e["train_loss"]
    ]
    return f"{max(ratios):,.2f}" if ratios else "-"


def _accuracy(runs: list[dict], key: str) -> str:
    """One seed: its accuracy. Several: their mean, and the lowest and highest."""
    values = [r[key] for r in runs]
    if len(values) == 1:
        return _pct(values[0])
    return f"{_pct(sum(values) / len(values))} ({_pct(min(values))}-{_pct(max(values))})"


def _mean(runs: list[dict], key: str) -> float:
    return sum(r[key] for r in runs) / len(runs)


def _key(variant: str) -> tuple:
    order = VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else len(VARIANT_ORDER)
    return order, variant


def render(records: list[dict], cases: list[str] | None = None) -> str:
    """One row per case and variant for the finished runs of ``cases`` (default: all): the
    last record of each seed, accuracies averaged over the seeds, their range in brackets."""
    latest: dict[tuple, dict] = {}
    for r in records:
        if r["status"] == "finished":
            latest[(r["case"], r["variant"], r["seed"])] = r
    runs: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for (case, variant, _), r in sorted(latest.items(), key=lambda item: item[0][2]):
        if cases is None or case in cases:
            runs[case][variant].append(r)
    lines = [
        "| data set | run | seeds | best val % | final val % | steps (epochs) | val / train "
        "loss, epochs 1-3 (worst) | training s | wall s | load avg |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case in cases or list(runs):
        for variant in sorted(runs.get(case, {}), key=_key):
            seeds = runs[case][variant]
            first = seeds[0]
            lines.append(
                f"| {case} | {variant} | {', '.join(str(r['seed']) for r in seeds)} | "
                f"{_accuracy(seeds, 'best_val_acc')} | {_accuracy(seeds, 'final_val_acc')} | "
                f"{first['steps']:,} ({first['epochs']}) | {_worst_ratio(seeds)} | "
                f"{_mean(seeds, 'train_time_s'):,.0f} | {_mean(seeds, 'wall_s'):,.0f} | "
                f"{_mean(seeds, 'load_avg'):.1f} |"
            )
    return "\n".join(lines) + "\n"


# <!-- defaults-table: case case ... --> ... <!-- /defaults-table -->: the rows of those cases.
_MARKED = re.compile(
    r"(<!-- defaults-table:(?P<cases>[^>]*)-->\n)(.*?)(<!-- /defaults-table -->)", re.S
)


def update(path: Path, records: list[dict]) -> None:
    """Rewrite every marked table in ``path`` from ``records``."""
    text = path.read_text()

    def table(m: re.Match) -> str:
        return m.group(1) + render(records, m.group("cases").split()) + m.group(4)

    path.write_text(_MARKED.sub(table, text))
