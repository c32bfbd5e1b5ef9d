"""What a run tells the user and leaves on disk: progress, metrics.csv, TensorBoard, figures.

On a terminal each epoch gets a progress bar (loss, accuracy, images/s, the epoch's time
remaining) that moves at least ``BAR_UPDATES_PER_S`` times a second whatever
``log_every`` is; in logs and pipes each epoch is one line. Only rank 0 of a distributed
run reports (``enabled``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import sys
import time
import unicodedata
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..data.folders import split_role
from ..data.sources import data_name
from ..errors import ResnetlabError, option
from ..explain.gallery import ErrorSource, write_error_gallery
from ..storage import (
    WriteError,
    atomic_write_text,
    discard_output,
    reader_gone,
    strict_json,
    write_error,
)
from .evaluate import EvalResult

METRIC_FIELDS = (
    "kind",  # "step": running values every log_every steps; "epoch": the epoch's totals
    "epoch",
    "step",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "lr",
    "images_per_s",
    "val_top5",  # with more than 5 classes
)
BAR_UPDATES_PER_S = 4  # the bar's step count moves on a clock, not with log_every


def data_tag(data: str) -> str:
    """A data spec as a part of a file name: its ``data_name`` with a data file's suffix, in
    safe characters, after the folder above it where it is named as a split
    (``photos/test`` -> ``photos-test``; ``photos.zip`` and ``photos/`` stay two names).
    Letters of any script are kept (``写真``, ``हिन्दी``): two data sets named in Japanese
    get two names, not one ``_``. The tag is in the file system's encoding, which an ASCII
    locale can only write as the UTF-8 bytes the name came as."""
    name, stem = data_name(data, suffix=True), data_name(data)
    if stem.isalpha() and split_role(stem):
        name = f"{data_name(data, above=1)}-{name}"
    kept = "".join(c if _in_tag(c) else "\0" for c in name)  # \0: in no file name
    return os.fsdecode(re.sub("\0+", "_", kept).encode("utf-8")) or "data"


def _in_tag(c: str) -> bool:
    """Letters and digits of any script with their marks (a Devanagari vowel sign), ``_.-``."""
    return c.isalnum() or c in "_.-" or unicodedata.category(c).startswith("M")


RUNS_ROOT = "runs"  # where a run's folder goes without --out


def new_run_dir(model: str, data: str, root: str | Path = RUNS_ROOT) -> Path:
    """Make the folder ``runs/<model>-<data>-<YYYYmmdd-HHMMSS>`` and return it. It is made
    at once, so that runs started in the same second (a seed sweep started in parallel) each
    get their own: ``-2``, ``-3``...

    Raises:
        WriteError: the folder cannot be made.
    """
    base = Path(root) / f"{model}-{data_tag(data)}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 2
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            path, n = base.with_name(f"{base.name}-{n}"), n + 1
        except OSError as e:
            raise write_error(path, e) from None


# What to do about a damaged metrics.csv, where a run can go on without its history.
HISTORY_FIX = "restore it, or delete it to go on without the history"


def read_metrics(path: str | Path, *, fix: str = HISTORY_FIX) -> list[dict[str, Any]]:
    """Rows of a ``metrics.csv``, numbers as floats (epoch and step as ints where whole).

    A last line without its line break is a row whose writing was cut short (a kill, a full
    disk) and is left out; any other damage is an error naming the line, never a row
    silently dropped or misread, and ``fix``, what to do about it.

    Raises:
        ResnetlabError: the file cannot be read, or a line is not a metrics row.
    """
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ResnetlabError(f"cannot read {path} ({e})") from None
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines.pop()  # unfinished
    reader = csv.reader(lines)
    try:
        records = list(reader)
    except csv.Error as e:  # a field over csv's size limit; a NUL byte before Python 3.11
        raise _damaged(path, reader.line_num, str(e), fix) from None
    # Files written before val_top5 existed have the header without it.
    headers = (METRIC_FIELDS, tuple(f for f in METRIC_FIELDS if f != "val_top5"))
    if not records or tuple(records[0]) not in headers:
        raise _damaged(path, 1, f"not the metrics header ({','.join(METRIC_FIELDS)})", fix)
    rows = []
    fields = tuple(records[0])
    for number, values in enumerate(records[1:], start=2):
        row = _metrics_row(values, fields)
        if isinstance(row, str):
            raise _damaged(path, number, row, fix)
        rows.append(row)
    return rows


def _damaged(path: str | Path, line: int, problem: str, fix: str) -> ResnetlabError:
    return ResnetlabError(f"{path}, line {line}: {problem}; the file is damaged: {fix}")


def _metrics_row(values: list[str], fields: tuple[str, ...]) -> dict[str, Any] | str:
    """One metrics row under the header ``fields`` (absent fields are None), or what is
    wrong with it."""
    if len(values) != len(fields):
        return f"{len(values)} fields, expected {len(fields)}"
    raw = {**dict.fromkeys(METRIC_FIELDS, ""), **dict(zip(fields, values, strict=True))}
    if raw["kind"] not in ("step", "epoch"):
        return f"kind {raw['kind']!r} is neither step nor epoch"
    row: dict[str, Any] = {"kind": raw["kind"]}
    for key in METRIC_FIELDS[1:]:
        try:
            row[key] = float(raw[key]) if raw[key] != "" else None
        except ValueError:
            return f"{key} {raw[key]!r} is not a number"
    for key in ("epoch", "step"):
        if row[key] is None or not math.isfinite(row[key]) or row[key] < 0:
            return f"{key} {raw[key]!r} is not a count"
    for key in ("train_acc", "val_acc", "val_top5"):  # a flipped digit: 5.09375
        if row[key] is not None and not 0 <= row[key] <= 1:  # NaN too
            return f"{key} {raw[key]!r} is not an accuracy from 0 to 1"
    if row["step"] != int(row["step"]) or (
        row["kind"] == "epoch" and row["epoch"] != int(row["epoch"])
    ):
        return "a fractional step or epoch number"
    row["step"] = int(row["step"])
    if row["kind"] == "epoch":
        row["epoch"] = int(row["epoch"])
    return row


def majority_note(
    accuracy: float | None, val: EvalResult | None, class_names: list[str]
) -> str | None:
    """A line when an accuracy is no better than always answering the largest class (on
    imbalanced data a model that ignores the small classes still scores its share)."""
    if accuracy is None or val is None or not val.count:
        return None
    support = val.confusion.sum(1)
    largest = int(support.argmax())
    share = support[largest].item() / val.count
    if accuracy > share + 1e-9 or share == 1:
        return None
    name = class_names[largest]
    # Equal within rounding: "too"; below it, the baseline beats the model, which is the news.
    score = (
        f"{share:.4f} too (its share of the validation images)"
        if accuracy >= share - 1e-9
        else f"{share:.4f} (its share of the validation images), more than this run's best, "
        f"{accuracy:.4f}"
    )
    return (
        f"note: always answering {name} would score {score}: check each class's recall "
        "(confusion.png, resnetlab eval)"
    )


def _of_epoch(summary: dict[str, Any], epoch: int) -> str:
    """A figure's title: the model of ``epoch`` on the validation images, named by the
    file that holds it (best.safetensors where that epoch was the best)."""
    held = "best" if epoch == summary["best_epoch"] else "last"
    return f"{summary['model']} of epoch {epoch} ({held}.safetensors) on the validation images"


# The logs of the runs in progress, for a write to stderr that none of them made (a
# warning's) and that finds the reader gone.
_OPEN_LOGS: weakref.WeakSet[RunLog] = weakref.WeakSet()
# The streams found with their reader gone by such a write: a log made after it (the
# warning was written while the run was set up) finds its output lost at its first line,
# where the write itself, now sent nowhere, no longer fails.
_LOST_STREAMS: weakref.WeakSet[Any] = weakref.WeakSet()


def stderr_lost() -> None:
    """The reader of stderr has gone, found by a write outside the run logs (a warning's):
    what is written there from now on goes nowhere, and each run in progress stops as a
    write of its own log would have stopped it (at its next step, with its checkpoint);
    so does a run whose log is made later."""
    discard_output(sys.stderr)
    with contextlib.suppress(TypeError):  # a stream that takes no weak reference
        _LOST_STREAMS.add(sys.stderr)
    for log in list(_OPEN_LOGS):
        log.lose_output(log.console)


class _LogConsole(Console):
    """A console whose lost reader is the log's to handle (rich's own way exits)."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


class RunLog:
    def __init__(
        self,
        run_dir: Path,
        *,
        epochs: int,
        enabled: bool = True,
        tensorboard: bool = False,
        resume_step: int | None = None,
        resume_epoch: int | None = None,
        clock=time.monotonic,
    ) -> None:
        self.run_dir = run_dir
        self.clock = clock
        self.first_epoch: tuple[int, float] | None = None  # (epoch, clock) this process began
        self.last_tick = -math.inf
        self.epochs = epochs
        self.enabled = enabled
        # Lines name paths and classes, printed as they are ("photos [old]"), never as markup.
        self.console = _LogConsole(stderr=True, soft_wrap=True, markup=False)  # progress, epochs
        self.out = _LogConsole(soft_wrap=True, markup=False)  # the result, for scripts to read
        self.interactive = self.console.is_terminal
        self.progress_bar: Progress | None = None
        self.task = None
        self.writer = None
        self.rows: list[dict[str, Any]] = []
        self.metrics_lost = False  # a resumed run whose metrics.csv is gone
        # The reader of the output gone (`resnetlab train ... | head`): said to on_output_lost
        # once, and nothing more is written to the screen; the run's files go on.
        self.output_lost = False
        # A weak reference (weakref.WeakMethod): the log is the trainer's, and a strong one
        # back would keep the trainer, its model and its loaders' worker processes alive
        # until the garbage collector found the cycle, at some later moment.
        self.on_output_lost: Callable[[], Callable[[], None] | None] | None = None
        if not enabled:
            return
        _OPEN_LOGS.add(self)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise write_error(run_dir, e) from None
        self.metrics_path = run_dir / "metrics.csv"
        # A new run writes metrics.csv when it starts; a resumed run rewrites it at its first
        # row, and until then the old file stays.
        self._metrics_file = None
        self._new = resume_step is None
        if not self._new and self.metrics_path.exists():
            # Rows past the checkpoint belong to work that is about to be redone, and so does
            # the row of an epoch cut short by --max-steps that the run now goes on with.
            self.rows = [
                r
                for r in read_metrics(self.metrics_path)
                if r["step"] <= resume_step
                and (r["kind"] != "epoch" or resume_epoch is None or r["epoch"] <= resume_epoch)
            ]
        elif not self._new:
            # Said by the run once it goes on training (a finished run changes nothing).
            self.metrics_lost = bool(resume_step)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ResnetlabError(
                    f"{option('tensorboard', True)} needs the tensorboard package: "
                    "pip install 'resnetlab[tensorboard]'"
                ) from None
            self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step)

    def start(self, description: str) -> None:
        if self.enabled:
            if self._new and self._metrics_file is None:
                self._open_metrics()
            self._print(description)
            self._print(f"run folder: {self.run_dir}")

    def message(self, text: str) -> None:
        if self.enabled:  # above the progress bar where one is live (the same console)
            self._print(text)

    def _print(self, text: str, console: Console | None = None) -> None:
        """``text`` on ``console`` (the log's, by default) unless the output is lost; a
        pipe whose reader has gone loses it (what is still buffered then goes nowhere,
        rather than failing again at exit). The log's lost stops the run; the result's
        (stdout, written once the run has finished) only ends the output."""
        if self.output_lost:
            return
        console = console or self.console
        if console.file in _LOST_STREAMS:  # (stderr_lost before this log was made)
            self.lose_output(console)
            return
        try:
            console.print(text, highlight=False)
        except OSError as e:
            if not reader_gone(e, console.file):
                raise
            self.lose_output(console)

    def lose_output(self, console: Console) -> None:
        """The reader of ``console``'s stream has gone: nothing more is written to the
        screen, and the log's (not the result's) stops the run."""
        if self.output_lost:
            return
        self.output_lost = True
        discard_output(console.file)
        stop = self.on_output_lost() if self.on_output_lost is not None else None
        if stop is not None and console is self.console:
            stop()

    def epoch_begin(self, epoch: int, steps: int, done: int) -> None:
        if self.first_epoch is None:  # the clock of the run's time left starts here
            self.first_epoch = (epoch, self.clock())
        if not (self.enabled and self.interactive):
            return
        self._stop_bar()
        self.progress_bar = Progress(
            TextColumn(f"epoch {epoch + 1}/{self.epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TextColumn("elapsed,"),
            TimeRemainingColumn(),
            TextColumn("left"),
            console=self.console,
            transient=True,
        )
        self.progress_bar.start()
        self.task = self.progress_bar.add_task("train", total=steps, completed=done, status="")

    def tick(self, batch: int) -> None:
        """After each step: move the bar to ``batch`` if it has not moved for a while (a
        clock read per step; the bar itself at most ``BAR_UPDATES_PER_S`` times a second)."""
        if self.progress_bar is None:
            return
        now = self.clock()
        if now - self.last_tick >= 1 / BAR_UPDATES_PER_S:
            self.last_tick = now
            self.progress_bar.update(self.task, completed=batch)

    def progress(self, **row: Any) -> None:
        """Running training values every ``log_every`` steps."""
        if not self.enabled:
            return
        self._write_row({"kind": "step", **row})
        if self.progress_bar is not None:
            status = (
                f"loss {row['train_loss']:.4f}  acc {row['train_acc']:.3f}  "
                f"{row['images_per_s']:,.0f} img/s"
            )
            self.progress_bar.update(self.task, completed=row["batch"], status=status)
        if self.writer is not None:
            for key in ("train_loss", "train_acc", "lr", "images_per_s"):
                self.writer.add_scalar(f"step/{key}", row[key], row["step"])

    def epoch_end(self, row: dict[str, Any], note: str | None = None) -> None:
        """The epoch's row and line; ``note`` (about the validation) ends the line."""
        if not self.enabled:
            return
        self._stop_bar()
        self._write_row({"kind": "epoch", **row})
        line = (
            f"epoch {row['epoch']:>3}/{self.epochs}  train loss {row['train_loss']:.4f} "
            f"acc {row['train_acc']:.4f}"
        )
        if row.get("val_acc") is not None:
            line += f"  val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}"
            if row.get("val_top5") is not None:
                line += f" top-5 {row['val_top5']:.4f}"
        line += f"  lr {row['lr']:.3g}"
        if row.get("images_per_s") is not None:  # none where the epoch was trained before a resume
            line += f"  {row['images_per_s']:,.0f} img/s"
        if left := self._run_left(row["epoch"]):
            line += f"  {left}"
        if note:
            line += f"  ({note})"
        self._print(line)
        if self.writer is not None:
            for key in ("train_loss", "train_acc", "val_loss", "val_acc", "val_top5"):
                if row.get(key) is not None:
                    self.writer.add_scalar(f"epoch/{key}", row[key], row["epoch"])

    def _run_left(self, epoch: int) -> str | None:
        """``about 14 min left`` for the epochs still to come, at the pace of those this
        process trained and validated; None under a minute (the bar shows the epoch's)."""
        if self.first_epoch is None or epoch >= self.epochs:
            return None
        first, start = self.first_epoch
        seconds = (self.clock() - start) / max(epoch - first, 1) * (self.epochs - epoch)
        if seconds < 60:
            return None
        if seconds < 5400:
            return f"about {round(seconds / 60)} min left"
        return f"about {seconds / 3600:.1f} h left"

    def finish(
        self,
        summary: dict[str, Any],
        val: EvalResult | None,
        class_names: list[str],
        errors: ErrorSource | None = None,
        *,
        majority: bool = True,
    ) -> None:
        """Write the figures (``errors.png``, from ``errors``: the model and its validation
        batches, after a finished run) and summary.json (strict JSON: NaN and inf become
        null), and say where they are (and, with ``majority``, whether the accuracy beats
        always answering the largest class). summary.json comes last: a run killed before it
        is not complete, and ``--resume`` finishes it. A full disk still gets the summary if the
        figures failed."""
        if not self.enabled:
            return
        self._stop_bar()
        epoch_rows = [r for r in self.rows if r["kind"] == "epoch"]
        data = data_name(str(summary["data"]))
        figure_error = None
        from ..analysis.plots import plot_confusion, plot_curves  # matplotlib: only here

        try:
            if epoch_rows:
                title = f"{summary['model']} on {data}"
                plot_curves(epoch_rows, self.run_dir / "curves.png", title=title)
            if val is not None:
                title = _of_epoch(summary, summary["epochs"])
                confusion = self.run_dir / "confusion.png"
                plot_confusion(val.confusion, class_names, confusion, title=title)
            if val is not None and errors is not None and summary["status"] == "finished":
                gallery = self.run_dir / "errors.png"
                title = _of_epoch(summary, errors.epoch or summary["epochs"])
                if not write_error_gallery(errors, class_names, gallery, title=title):
                    self._print("no misclassified validation images: no errors.png")
        except WriteError as e:
            figure_error = e
        text = json.dumps(strict_json(summary), indent=2, allow_nan=False)
        atomic_write_text(self.run_dir / "summary.json", text + "\n")
        if figure_error is not None:
            raise figure_error
        if summary["status"] == "finished":
            best = summary["best_val_acc"]
            balanced = " balanced" if summary.get("best_metric") == "balanced accuracy" else ""
            result = (
                f"best val{balanced} acc {best:.4f} (epoch {summary['best_epoch']})"
                if best is not None
                else (f"final train acc {summary['final_train_acc']:.4f}")
            )
            self._print(
                f"done in {summary['train_time_s']:.1f} s of training: {result}. "
                f"Run folder: {self.run_dir}",
                self.out,
            )
            note = majority_note(best, val, class_names) if majority else None
            if note:
                self._print(note, self.out)

    def close(self) -> None:
        self._stop_bar()
        if not self.enabled:
            return
        _OPEN_LOGS.discard(self)
        if self._metrics_file is not None:
            # Each row was flushed when written; a close that fails follows a write error
            # that has been reported already.
            with contextlib.suppress(OSError):
                self._metrics_file.close()
        if self.writer is not None:
            self.writer.close()

    def rewrite_metrics(self) -> None:
        """Write metrics.csv again with every row so far (the file was removed) and append
        to the new one."""
        if not self.enabled:
            return
        if self._metrics_file is not None:
            with contextlib.suppress(OSError):
                self._metrics_file.close()
        self._open_metrics()

    def _write_row(self, row: dict[str, Any]) -> None:
        row = {k: row.get(k) for k in METRIC_FIELDS}
        self.rows.append(row)
        if self._metrics_file is None:
            self._open_metrics()
            return
        try:
            self._csv.writerow(row)
            self._metrics_file.flush()
        except OSError as e:
            raise write_error(self.metrics_path, e) from None

    def _open_metrics(self) -> None:
        """Write metrics.csv with the rows so far (atomically: an old file stays until the
        new one is whole), then keep it open to append."""
        lines = io.StringIO()
        writer = csv.DictWriter(lines, fieldnames=METRIC_FIELDS)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.metrics_path, lines.getvalue())
        try:
            self._metrics_file = open(self.metrics_path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            raise write_error(self.metrics_path, e) from None
        self._csv = csv.DictWriter(self._metrics_file, fieldnames=METRIC_FIELDS)

    def _stop_bar(self) -> None:
        if self.progress_bar is not None:
            self.progress_bar.stop()
            self.progress_bar = None
