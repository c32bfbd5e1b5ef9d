"""Results in words: one line per measurement for the terminal, a Markdown table for the README.

Each kind of record has a type here that shows it: ``cells()`` gives what was measured,
our figure, the peer's and the ratio; ``lines()`` the terminal's lines. Records are stored
as measured; figures are rounded here, when shown.

``resnetlab bench table`` renders the records (by default those of ``default_results_dir``)
as table rows (those cells, the command, the machine with its CPU's instruction sets, the
date and the torch version), the newest of each command on each machine, so a rerun
replaces its row; ``--update README.md`` writes it between the README's
``<!-- bench-table -->`` and ``<!-- /bench-table -->`` markers.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ResnetlabError
from ..storage import atomic_write, write_error

BEGIN, END = "<!-- bench-table -->", "<!-- /bench-table -->"


def _rate(figures: Mapping[str, Any] | None, unit: str = "img/s") -> str:
    if not figures:
        return "-"
    low, high = figures["min"], figures["max"]
    return f"{figures['median']:,.0f} {unit} ({low:,.0f}-{high:,.0f})"


def _ms(figures: Mapping[str, Any] | None) -> str:
    if not figures:
        return "-"
    return f"{figures['median']:.3g} ms ({figures['min']:.3g}-{figures['max']:.3g})"


def _layout(side: Mapping[str, Any]) -> str:
    layout = "channels-last" if side.get("channels_last") else "NCHW"
    parts = [side.get("precision", "fp32"), layout]
    if side.get("compile"):
        parts.append("compiled")
    return ", ".join(parts)


def _fraction(side: Mapping[str, Any]) -> str:
    """``, 31% of the bf16 matrix-product rate`` (older records: of a GPU's bf16 peak)."""
    if side.get("fraction_of_matmul") is not None:
        precision = side.get("precision", "fp32")
        return f", {_percent(side['fraction_of_matmul'])} of the {precision} matrix-product rate"
    if side.get("fraction_of_bf16_peak") is not None:
        return f", {side['fraction_of_bf16_peak']:.1%} of bf16 peak"
    return ""


def _percent(fraction: float) -> str:
    """``31%``; under 1%, two significant digits (``0.42%``), not ``0%``."""
    return f"{fraction:.0%}" if fraction >= 0.005 else f"{fraction * 100:.2g}%"


class BenchRecord(ABC):
    """A stored benchmark record of one of ``kinds``, as the table and terminal show it;
    each kind of record is a subclass that says what was measured and our figure."""

    kinds: ClassVar[tuple[str, ...]] = ()
    peer_name = "usual way"  # what the second column compares with, in the terminal

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data

    @abstractmethod
    def what(self) -> str:
        """What was measured, with its settings."""

    @abstractmethod
    def ours(self) -> str:
        """Our figure."""

    def peer(self) -> str:
        return "-"

    def ratio(self) -> str:
        return "-"

    def cells(self) -> dict[str, str]:
        """The table's cells: ``what``, ``ours``, ``peer``, ``ratio``."""
        return dict(what=self.what(), ours=self.ours(), peer=self.peer(), ratio=self.ratio())

    def lines(self) -> list[str]:
        """Lines for the terminal."""
        cells = {k: v.replace("`", "") for k, v in self.cells().items()}
        lines = [cells["what"], f"  ours: {cells['ours']}"]
        if cells["peer"] != "-":
            lines.append(f"  {self.peer_name}: {cells['peer']}")
        if cells["ratio"] != "-":
            lines.append(f"  ours/{self.peer_name}: {cells['ratio']}")
        return [*lines, f"  {self.machine()}, torch {self.torch()}"]

    def machine(self) -> str:
        """``AMD EPYC (family 25 model 17, AVX512, bf16), 2 cores, 2 threads, load 1.2``: one
        model name covers CPU generations that differ in speed, the family tells them apart."""
        r = self.data
        device = str(r.get("device") or "-")
        cpu = r.get("cpu")
        if cpu and cpu.get("model") and device.startswith(cpu["model"]):
            features = [cpu.get("capability") or "?"] + [
                name for name in ("bf16", "amx") if cpu.get(name)
            ]
            family, model, *_ = (str(cpu.get("family") or "") + "//").split("/")
            if family:
                features.insert(0, f"family {family}" + (f" model {model}" if model else ""))
            device = device.replace(cpu["model"], f"{cpu['model']} ({', '.join(features)})", 1)
        if r.get("threads"):
            device += f", {r['threads']} thread{'s' if r['threads'] != 1 else ''}"
        if r.get("load_before"):
            device += f", load {r['load_before'][0]}"
        return device

    def torch(self) -> str:
        return str((self.data.get("versions") or {}).get("torch") or "-")

    def row(self) -> str:
        # A field a record lacks (written by hand, or by an older version) shows as "-".
        c, r = self.cells(), self.data
        command = f"`{r['command']}`" if r.get("command") else "-"
        return (
            f"| {c['what']} | {c['ours']} | {c['peer']} | {c['ratio']} | {command} | "
            f"{self.machine()} | {str(r.get('date') or '-')[:10]} | {self.torch()} |"
        )


class _Comparison(BenchRecord):
    """Ours against a peer, with the settings each side ran with."""

    peer_name = "peer"

    def settings(self) -> str:
        s = self.data["settings"]
        parts = [f"{s['input_size']}x{s['input_size']}", f"batch {s['batch_size']}", s["precision"]]
        if s.get("runtime", "torch") != "torch":
            parts.append(s["runtime"].removesuffix("-int8"))
        elif s.get("channels_last") is False:  # named as the peer's is: ours may run either
            parts.append("NCHW")
        parts += [name for key, name in self.FLAGS if s.get(key)]
        return ", ".join(parts)

    FLAGS = (("channels_last", "channels-last"), ("compile", "compiled"))

    @abstractmethod
    def figures(self, side: Mapping[str, Any]) -> str:
        """One side's figures, as the table shows them."""

    def ours(self) -> str:
        return self.figures(self.data["ours"])

    def peer(self) -> str:
        peer = self.data.get("peer")
        if not peer:
            return "-"
        return f"{self.figures(peer)}: {peer['what'].split(' (')[0]}, {_layout(peer)}"

    def lines(self) -> list[str]:
        r = self.data
        lines = [self.what().replace("`", "")]
        ours = f"  ours: {self.ours()}: {r['ours']['what']}"
        if r["settings"].get("optimizer"):
            ours += f", {r['settings']['optimizer']}"
        lines.append(ours)
        peer = r.get("peer")
        if peer:
            how = f"{peer['what']}; {_layout(peer)}"
            if peer.get("optimizer"):
                how += f", {peer['optimizer']}, {peer['loop']}"
            lines.append(f"  peer: {self.figures(peer)}: {how}")
            # Speed ratios (a latency's is the peer's time over ours), so that above 1 reads
            # "ours is faster" for every figure.
            lines.append(
                f"  ours/peer: {self.ratio()} (speed: above 1, ours is faster; median of the "
                "per-repeat ratios)"
            )
        return [*lines, f"  {self.machine()}, torch {self.torch()}"]


class TrainRecord(_Comparison):
    kinds = ("train",)
    FLAGS = (*_Comparison.FLAGS, ("cuda_graphs", "CUDA graphs"))

    def what(self) -> str:
        return f"train `{self.data['model']}`, {self.settings()}"

    def figures(self, side: Mapping[str, Any]) -> str:
        settings = {"precision": self.data["settings"]["precision"], **side}
        return _rate(side["images_per_s"]) + _fraction(settings)

    def ratio(self) -> str:
        return f"{self.data['ratio']['median']:.2f}x" if self.data.get("peer") else "-"


class InferRecord(_Comparison):
    kinds = ("infer",)

    def what(self) -> str:
        return f"infer `{self.data['model']}`, {self.settings()} (latency at batch 1)"

    def figures(self, side: Mapping[str, Any]) -> str:
        return f"{_ms(side['latency_ms'])}; {_rate(side['images_per_s'])}"

    def ratio(self) -> str:
        ratio = self.data.get("ratio")
        if not self.data.get("peer"):
            return "-"
        return (
            f"latency {ratio['latency']['median']:.2f}x, "
            f"throughput {ratio['throughput']['median']:.2f}x"
        )


class DataRecord(BenchRecord):
    kinds = ("data",)

    def what(self) -> str:
        r = self.data
        return f"data `{Path(r['data']).name}`, batch {r['batch_size']}"

    def ours(self) -> str:
        r = self.data
        text = f"device loader {r['device_loader']['images_per_s']:,.0f} img/s"
        share = r.get("epoch_share")
        if share:
            text += f"; {share['share']:.1%} of `{share['model']}` training time waiting for data"
        return text + f"; load {r['load_cold_s']:.2f} s, from cache {r['load_cached_s']:.2f} s"

    def peer(self) -> str:
        r, parts = self.data, []
        if r.get("usual_way"):
            parts.append(f"per-image transforms {r['usual_way']['images_per_s']:,.0f} img/s")
        files = r.get("files")
        if files:
            parts.append(
                f"epoch from files: ImageFolder {files['imagefolder_epoch_s']:.2f} s, "
                f"ours streaming {files['streaming_epoch_s']:.2f} s ({files['ratio']:.2f}x)"
            )
        return "; ".join(parts) or "-"

    def ratio(self) -> str:
        return f"{self.data['ratio']:.2f}x" if self.data.get("ratio") else "-"


class TimeToAccuracyRecord(BenchRecord):
    kinds = ("time-to-accuracy", "tta")

    def what(self) -> str:
        r = self.data
        return f"time to {r['target']:.2%} `{r['model']}` on `{r['data']}`"

    def ours(self) -> str:
        r = self.data
        reached = "reached" if r["reached"] else "missed"
        epochs = f"{r['epochs']} epoch{'s' if r['epochs'] != 1 else ''}"
        return f"{r['seconds']:.1f} s, {reached} ({r['accuracy']:.2%} after {epochs})"


RECORD_TYPES: dict[str, type[BenchRecord]] = {
    kind: cls
    for cls in (TrainRecord, InferRecord, DataRecord, TimeToAccuracyRecord)
    for kind in cls.kinds
}


def as_record(data: Mapping[str, Any]) -> BenchRecord:
    """The stored record ``data`` as the type that shows its kind."""
    kind = data.get("kind")
    if kind is None:  # a CPU plan from `bench calibrate --json`, say: not a measurement
        raise ResnetlabError(
            "not a benchmark record (no 'kind'); the table shows what `bench train`, `infer`, "
            "`data` and `time-to-accuracy` record (their .jsonl files, or one saved from --json)"
        )
    if kind not in RECORD_TYPES:
        raise ResnetlabError(f"unknown kind of benchmark record: {kind!r}")
    return RECORD_TYPES[kind](data)


def describe(record: Mapping[str, Any]) -> list[str]:
    """Lines for the terminal."""
    return as_record(record).lines()


def newest_per_command(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The newest record of each command on each machine, in the order of ``records``
    (oldest first), each where its newest run falls."""
    newest: dict[tuple[Any, ...], Mapping[str, Any]] = {}
    for r in records:
        # Two VMs of one name can differ in CPU (family, instruction sets): both rows stay.
        cpu = r.get("cpu") or {}
        key = (r.get("machine"), cpu.get("family"), cpu.get("capability"), r.get("command"))
        newest.pop(key, None)
        newest[key] = r
    return list(newest.values())


def render_table(records: Iterable[Mapping[str, Any]]) -> str:
    """A Markdown table of the newest record of each command on each machine, oldest first."""
    rows = [
        "| what | ours | peer | ours/peer | command | machine | date | torch |",
        "| --- | --- | --- | ---: | --- | --- | --- | --- |",
    ]
    rows += [as_record(r).row() for r in newest_per_command(records)]
    return "\n".join(rows) + "\n"


def update_readme(path: str | os.PathLike, table: str) -> None:
    """Replace the text between the README's table markers with ``table``."""
    path = Path(path)
    if not path.is_file():
        found = "is a folder" if path.is_dir() else "not found"
        raise ResnetlabError(f"{path} {found}; --update takes the Markdown file to update")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ResnetlabError(
            f"{path} is not UTF-8 text; --update takes the Markdown file to update"
        ) from None
    head, _, rest = text.partition(BEGIN)
    if BEGIN not in text or END not in rest:  # (an END before the BEGIN is not the pair)
        raise ResnetlabError(
            f"{path} has no {BEGIN} ... {END} markers, in that order, to put the table between"
        )
    _, tail = rest.split(END, 1)
    try:  # through a temporary file: a full disk leaves the old README, never a torn one
        atomic_write(path, f"{head}{BEGIN}\n{table}{END}{tail}".encode())
    except OSError as e:
        raise write_error(path, e) from None
