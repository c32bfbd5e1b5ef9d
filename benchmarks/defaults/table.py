"""The Markdown table of ``results.jsonl``: one row per case and variant, raw numbers rounded
only here. ``python benchmarks/defaults/run.py --table`` prints it."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

VARIANT_ORDER = ("old", "auto", "seed", "paper-cifar", "modern")


def _pct(value: float | None) -> str:
    return f"{100 * value:.2f}" if value is not None else "-"


def _worst_ratio(record: dict) -> str:
    """The largest validation-to-training loss ratio of the first three epochs."""
    ratios = [
        e["val_loss"] / e["train_loss"]
        for e in record.get("first_epochs", [])
        if e["val_loss"] is not None and e["train_loss"]
    ]
    return f"{max(ratios):,.2f}" if ratios else "-"


def _key(record: dict) -> tuple:
    variant = record["variant"]
    order = VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else len(VARIANT_ORDER)
    return order, variant


def render(records: list[dict], cases: list[str] | None = None) -> str:
    """Rows for the finished runs of ``cases`` (default: all), the last record of each
    (case, variant, seed)."""
    latest: dict[tuple, dict] = {}
    for r in records:
        if r["status"] == "finished":
            latest[(r["case"], r["variant"], r["seed"])] = r
    by_case: dict[str, list[dict]] = defaultdict(list)
    for (case, _, _), r in latest.items():
        if cases is None or case in cases:
            by_case[case].append(r)
    lines = [
        "| data set | run | best val % | final val % | steps (epochs) | val / train loss, "
        "epochs 1-3 (worst) | training s | wall s | load avg |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    order = cases or list(by_case)
    for case in order:
        for r in sorted(by_case.get(case, []), key=_key):
            lines.append(
                f"| {case} | {r['variant']} | {_pct(r['best_val_acc'])} | "
                f"{_pct(r['final_val_acc'])} | {r['steps']:,} ({r['epochs']}) | "
                f"{_worst_ratio(r)} | "
                f"{r['train_time_s']:,.0f} | {r['wall_s']:,.0f} | {r['load_avg']:.1f} |"
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
