"""Results in words: one line per measurement for the terminal, a Markdown table for the README.

``resnetlab bench table`` renders the records under ``benchmarks/results/`` as table rows
(what was measured, our figure, the peer's, the ratio, the command, the machine, the date
and the torch version), the newest of each command on each machine, so a rerun replaces
its row; ``--update README.md`` writes it between the README's
``<!-- bench-table -->`` and ``<!-- /bench-table -->`` markers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ResnetlabError

BEGIN, END = "<!-- bench-table -->", "<!-- /bench-table -->"


def _rate(figures: Mapping[str, float] | None, unit: str = "img/s") -> str:
    if not figures:
        return "-"
    low, high = figures["min"], figures["max"]
    return f"{figures['median']:,.0f} {unit} ({low:,.0f}-{high:,.0f})"


def _ms(figures: Mapping[str, float] | None) -> str:
    if not figures:
        return "-"
    return f"{figures['median']:.3g} ms ({figures['min']:.3g}-{figures['max']:.3g})"


def _settings(s: Mapping[str, Any]) -> str:
    parts = [f"{s['input_size']}x{s['input_size']}", f"batch {s['batch_size']}", s["precision"]]
    if s.get("runtime", "torch") != "torch":
        parts.append(s["runtime"].removesuffix("-int8"))
    if s.get("channels_last"):
        parts.append("channels-last")
    if s.get("compile"):
        parts.append("compiled")
    if s.get("cuda_graphs"):
        parts.append("CUDA graphs")
    return ", ".join(parts)


def _peer_settings(p: Mapping[str, Any]) -> str:
    parts = [p.get("precision", "fp32"), "channels-last" if p.get("channels_last") else "NCHW"]
    if p.get("compile"):
        parts.append("compiled")
    return ", ".join(parts)


def summarize(record: Mapping[str, Any]) -> dict[str, str]:
    """The record's cells: ``what``, ``ours``, ``peer``, ``ratio``."""
    kind = record.get("kind")
    peer = record.get("peer")
    if kind == "train":
        ours = _rate(record["ours"]["images_per_s"])
        fraction = record["ours"].get("fraction_of_bf16_peak")
        if fraction is not None:
            ours += f", {fraction:.1%} of bf16 peak"
        return {
            "what": f"train `{record['model']}`, {_settings(record['settings'])}",
            "ours": ours,
            "peer": (
                f"{_rate(peer['images_per_s'])}: {peer['what'].split(' (')[0]}, "
                f"{_peer_settings(peer)}"
                if peer
                else "-"
            ),
            "ratio": f"{record['ratio']['median']:.2f}x" if peer else "-",
        }
    if kind == "infer":
        s = record["settings"]
        ours = record["ours"]
        return {
            "what": f"infer `{record['model']}`, {_settings(s)} (latency at batch 1)",
            "ours": f"{_ms(ours['latency_ms'])}; {_rate(ours['images_per_s'])}",
            "peer": (
                f"{_ms(peer['latency_ms'])}; {_rate(peer['images_per_s'])}: "
                f"{peer['what'].split(' (')[0]}, {_peer_settings(peer)}"
                if peer
                else "-"
            ),
            "ratio": (
                f"latency {record['ratio']['latency']['median']:.2f}x, "
                f"throughput {record['ratio']['throughput']['median']:.2f}x"
                if peer
                else "-"
            ),
        }
    if kind == "data":
        share = record.get("epoch_share")
        ours = f"device loader {record['device_loader']['images_per_s']:,} img/s"
        if share:
            ours += f"; {share['share']:.1%} of `{share['model']}` training time waiting for data"
        ours += f"; load {record['load_cold_s']} s, from cache {record['load_cached_s']} s"
        files = record.get("files")
        peer_text = []
        if record.get("usual_way"):
            peer_text.append(f"per-image transforms {record['usual_way']['images_per_s']:,} img/s")
        if files:
            peer_text.append(
                f"epoch from files: ImageFolder {files['imagefolder_epoch_s']:.2f} s, "
                f"ours streaming {files['streaming_epoch_s']:.2f} s ({files['ratio']:.2f}x)"
            )
        return {
            "what": f"data `{Path(record['data']).name}`, batch {record['batch_size']}",
            "ours": ours,
            "peer": "; ".join(peer_text) or "-",
            "ratio": f"{record['ratio']:.2f}x" if record.get("ratio") else "-",
        }
    if kind == "tta":
        reached = "reached" if record["reached"] else "missed"
        return {
            "what": f"time to {record['target']:.2%} `{record['model']}` on `{record['data']}`",
            "ours": f"{record['seconds']} s, {reached} ({record['accuracy']:.2%} after "
            f"{record['epochs']} epochs)",
            "peer": "-",
            "ratio": "-",
        }
    raise ResnetlabError(f"unknown kind of benchmark record: {kind!r}")


def describe(record: Mapping[str, Any]) -> list[str]:
    """Lines for the terminal."""
    cells = {k: v.replace("`", "") for k, v in summarize(record).items()}
    lines = [cells["what"]]
    peer = record.get("peer")
    if record["kind"] in ("train", "infer"):
        optimizer = record["settings"].get("optimizer")
        lines.append(f"  ours: {cells['ours']}: {record['ours']['what']}")
        if optimizer:
            lines[-1] += f", {optimizer}"
        if peer:
            figures = cells["peer"].split(": ")[0]
            how = f"{peer['what']}; {_peer_settings(peer)}"
            if peer.get("optimizer"):
                how += f", {peer['optimizer']}, {peer['loop']}"
            lines.append(f"  peer: {figures}: {how}")
            lines.append(f"  ours/peer: {cells['ratio']} (median of the per-repeat ratios)")
    else:
        lines.append(f"  ours: {cells['ours']}")
        if cells["peer"] != "-":
            lines.append(f"  usual way: {cells['peer']}")
        if cells["ratio"] != "-":
            lines.append(f"  ours/usual way: {cells['ratio']}")
    lines.append(
        f"  {record.get('device')}, {record.get('threads')} threads, "
        f"load {record.get('load_before')}, torch {record.get('versions', {}).get('torch')}"
    )
    return lines


def newest_per_command(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The newest record of each command on each machine, in the order of ``records``
    (oldest first), each where its newest run falls."""
    newest: dict[tuple[Any, Any], Mapping[str, Any]] = {}
    for r in records:
        key = (r.get("machine"), r.get("command"))
        newest.pop(key, None)
        newest[key] = r
    return list(newest.values())


def render_table(records: Iterable[Mapping[str, Any]]) -> str:
    """A Markdown table of the newest record of each command on each machine, oldest first."""
    rows = [
        "| what | ours | peer | ours/peer | command | machine | date | torch |",
        "| --- | --- | --- | ---: | --- | --- | --- | --- |",
    ]
    for r in newest_per_command(records):
        cells = summarize(r)
        load, threads = r.get("load_before"), r.get("threads")
        machine = str(r.get("device"))
        if threads:
            machine += f", {threads} threads"
        if load:
            machine += f", load {load[0]}"
        rows.append(
            f"| {cells['what']} | {cells['ours']} | {cells['peer']} | {cells['ratio']} | "
            f"`{r.get('command')}` | {machine} | {str(r.get('date'))[:10]} | "
            f"{r.get('versions', {}).get('torch')} |"
        )
    return "\n".join(rows) + "\n"


def update_readme(path: str | os.PathLike, table: str) -> None:
    """Replace the text between the README's table markers with ``table``."""
    path = Path(path)
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise ResnetlabError(f"{path} has no {BEGIN} ... {END} markers to put the table between")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{table}{END}{tail}")
