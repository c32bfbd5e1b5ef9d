import errno
import json
import os
import shutil
import signal
import tempfile
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from resnetlab import ResnetlabError
from resnetlab.cli import main
from resnetlab.engine import initial_model
from resnetlab.engine.train import Trainer
from resnetlab.errors import RunInterrupted, command_line, option
from resnetlab.experiments import QUICK, QUICK_DEPTHS, run_degradation
from resnetlab.experiments.degradation import (
    PAPER_TEST_ERROR,
    PREACT_QUICK_DEPTHS,
    gap_text,
    gap_verdict,
    unsettled,
    verdict,
    verdict_text,
)
from resnetlab.experiments.runner import FAMILIES, how_to_continue, run_config

from ..data.conftest import noise, write_signs_pair, write_tree
from .conftest import copy_experiment, refusal_elsewhere

DOCS = Path(__file__).parents[2] / "docs" / "degradation"

# Digits at their native 8x8: a real data set, a second or two per run.
TINY = dict(input_size=8, crop_padding=1, batch_size=64, max_steps=4, log_every=2, val_subset=100)
MODELS = ["plain8", "resnet8", "plain14", "resnet14"]


def _experiment(out, **overrides):
    return run_degradation("digits", (8, 14), out=out, **{**TINY, **overrides})


_TRAINED: dict[tuple[int, ...], tuple[Path, object]] = {}


@pytest.fixture
def finished(tmp_path, tmp_path_factory, _cpu_unless_marked_gpu, _no_run_figures):
    """``finished(depths)``: a finished experiment of TINY runs at ``tmp_path / "exp"``, and
    the result of training it. Trained once a session (under this test's CPU-only, no-figures
    settings, which it asks for) and copied for each test, which may damage its copy."""

    def make(depths: tuple[int, ...]):
        if depths not in _TRAINED:
            first = tmp_path_factory.mktemp("trained") / "exp"
            _TRAINED[depths] = (first, run_degradation("digits", depths, out=first, **TINY))
        first, result = _TRAINED[depths]
        return copy_experiment(first, tmp_path / "exp"), result

    return make


def test_runner_writes_every_output_with_one_row_per_model(finished):
    out, result = finished((8, 14))
    for name in ("curves.png", "depth.png"):
        assert Image.open(out / name).size[0] > 600, name
    for model in MODELS:
        run = out / f"{model}-seed0"
        for name in ("config.json", "metrics.csv", "summary.json", "last.safetensors"):
            assert (run / name).is_file(), f"{model}: {name}"
        assert json.loads((run / "summary.json").read_text())["steps"] == 4

    table = json.loads((out / "table.json").read_text())
    assert [row["model"] for row in table["models"]] == MODELS
    assert [r.action for r in result.runs] == ["trained"] * 4
    for row in table["models"]:
        assert 0 <= row["train_error"] <= 100 and 0 <= row["test_error"] <= 100
        assert row["params"] == {8: 75_290, 14: 172_506}[row["depth"]]
        assert row["finished"] == 1 and row["train_error_std"] is None  # one seed
    v = table["verdict"]
    assert (v["shallow"], v["deep"], v["complete_seeds"]) == (8, 14, 1)
    assert v["images"] == 4 * 64  # the training error's sample: 4 steps of 64, not the set

    md = (out / "table.md").read_text(encoding="utf-8")
    model_rows = [
        line
        for line in md.splitlines()
        if line.startswith("| plain") or line.startswith("| resnet")
    ]
    assert [line.split(" | ")[0][2:] for line in model_rows] == MODELS
    assert "Fig. 6" in md and "## Does the degradation show?" in md
    # The paper's numbers are CIFAR-10's, whatever data the experiment ran on (here digits).
    assert "| paper's CIFAR-10 test error (%) |" in md


def test_paper_numbers_sit_next_to_the_resnets(tmp_path):
    result = run_degradation("digits", (8, 20), out=tmp_path / "exp", **TINY)
    by_model = {row["model"]: row for row in result.rows}
    assert by_model["resnet20"]["paper_test_error"] == 8.75
    assert by_model["plain20"]["paper_test_error"] is None  # the paper has curves only
    assert by_model["resnet8"]["paper_test_error"] is None  # not in the paper
    md = (tmp_path / "exp" / "table.md").read_text(encoding="utf-8")
    assert "| resnet20 | 20 | 269,722 |" in md and "| 8.75 |" in md
    assert PAPER_TEST_ERROR == {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}


def test_resume_skips_finished_runs_and_continues_an_unfinished_one(tmp_path, monkeypatch, capsys):
    out = tmp_path / "exp"
    original = Trainer._train_step
    calls = {"n": 0}

    def interrupting_step(self, x, y):
        calls["n"] += 1
        if calls["n"] == 6:  # the second step of the second run (plain8 takes 4)
            raise KeyboardInterrupt
        return original(self, x, y)

    monkeypatch.setattr(Trainer, "_train_step", interrupting_step)
    with pytest.raises(KeyboardInterrupt):
        _experiment(out)
    monkeypatch.setattr(Trainer, "_train_step", original)
    # The way on that the stop names is the experiment's own, which the rest of this test runs.
    assert capsys.readouterr().err.splitlines()[-1] == (
        "interrupted at epoch 1, batch 1; checkpoint saved. Continue with: the same "
        "experiment command again, which skips the runs that ended and resumes the one that "
        "stopped from its checkpoint"
    )
    finished_model = (out / "plain8-seed0" / "last.safetensors").stat().st_mtime_ns
    assert (
        json.loads((out / "resnet8-seed0" / "summary.json").read_text())["status"] == "interrupted"
    )

    result = _experiment(out)
    assert [r.action for r in result.runs] == ["skipped", "resumed", "trained", "trained"]
    assert repr(result) == (
        f"DegradationResult(out={out!r}, runs=4 (1 skipped, 1 resumed, 2 trained), "
        f"shows={result.verdict['shows']}, settled=False)"
    )
    assert all(r.status == "finished" and r.summary["steps"] == 4 for r in result.runs)
    assert (out / "plain8-seed0" / "last.safetensors").stat().st_mtime_ns == finished_model
    again = _experiment(out)
    assert [r.action for r in again.runs] == ["skipped"] * 4
    # A run killed after its config.json and before its first checkpoint starts again there.
    run = out / "resnet8-seed0"
    for path in run.iterdir():
        if path.name != "config.json":
            path.unlink()
    third = _experiment(out)
    assert [r.action for r in third.runs] == ["skipped", "resumed", "skipped", "skipped"]
    assert third.runs[1].status == "finished" and third.runs[1].summary["steps"] == 4


def test_ctrl_c_between_training_steps_of_an_experiment_says_how_to_go_on(
    tmp_path, monkeypatch, capsys
):
    def interrupted_start(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "__init__", interrupted_start)
    assert main(["experiment", "degradation", "--data", "digits", "--depths", "8",
                 "--out", str(tmp_path / "exp")]) == 130  # fmt: skip
    # The run stopped before it saved anything: no checkpoint to resume from is promised.
    assert (
        capsys.readouterr()
        .err.splitlines()[-1]
        .endswith(
            "] interrupted. Continue with: the same experiment command again, which skips the "
            "runs that ended and trains the one that stopped from its start: it had saved no "
            "checkpoint"
        )
    )


def test_how_an_experiment_goes_on_is_said_by_what_the_stopped_run_left(tmp_path):
    run = tmp_path / "plain8-seed0"
    assert how_to_continue(None).endswith("skips the runs that ended and trains the rest")
    fresh = "trains the one that stopped from its start: it had saved no checkpoint"
    assert how_to_continue(run).endswith(fresh)  # stopped before its folder was made
    run.mkdir()
    (run / "config.json").write_text("{}")
    assert how_to_continue(run).endswith(fresh)
    (run / "checkpoint.pt").write_bytes(b"")
    assert how_to_continue(run).endswith("resumes the one that stopped from its checkpoint")
    (run / "summary.json").write_text(json.dumps({"status": "finished"}))
    assert how_to_continue(run).endswith("trains the rest")


def test_ctrl_c_while_a_run_ends_stops_the_experiment_before_the_next_run(
    tmp_path, monkeypatch, capsys
):
    # The Ctrl-C comes during the first run's last validation, after its last step: the run
    # finishes, and the next one must not start as if nothing had been pressed.
    original = Trainer._evaluate

    def pressed_while_validating(self, *args, **kwargs):
        signal.raise_signal(signal.SIGINT)  # the run's handler takes it as a request to stop
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_evaluate", pressed_while_validating)
    out = tmp_path / "exp"
    with pytest.raises(RunInterrupted):
        run_degradation("digits", (8,), out=out, **TINY)
    monkeypatch.setattr(Trainer, "_evaluate", original)
    assert capsys.readouterr().err.splitlines()[-1] == (  # the run that stopped ended
        "interrupted as the run ended, which it finished. Continue with: the same experiment "
        "command again, which skips the runs that ended and trains the rest"
    )
    assert sorted(p.name for p in out.iterdir()) == ["plain8-seed0"]
    assert json.loads((out / "plain8-seed0" / "summary.json").read_text())["status"] == "finished"
    result = run_degradation("digits", (8,), out=out, **TINY)
    assert [r.action for r in result.runs] == ["skipped", "trained"]


def test_runs_that_diverged_before_their_first_logged_step_get_a_table_without_a_length(
    tmp_path,
):
    # A deep plain net at the paper's rate can blow up in its first steps: no metrics row,
    # so no point to draw; the figures and table are written all the same.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _experiment(tmp_path / "exp", lr=1e12)
    # matplotlib's "No artists with labels found to put in legend" is no news to a user
    assert not [str(w.message) for w in caught if "legend" in str(w.message)]
    assert [r.status for r in result.runs] == ["diverged"] * 4
    assert [row["diverged"] for row in result.rows] == [1] * 4
    for name in ("curves.png", "depth.png", "table.json"):
        assert (tmp_path / "exp" / name).is_file(), name
    md = (tmp_path / "exp" / "table.md").read_text(encoding="utf-8")
    assert "| plain8 | 8 | 75,290 | — | — | — | 0 (+1 diverged) |" in md
    # The table gives the length of a finished run, not of a diverged one: every run
    # diverged, and it said '...: 0 iterations', the steps trained before they stopped.
    assert "lr=1000000000000.0: no run finished. Seeds: 0." in md and "0 iterations" not in md


def test_a_run_of_other_settings_is_named_by_its_flag(tmp_path, capsys):
    args = ["experiment", "degradation", "--data", "digits", "--depths", "8"]
    tiny = ["--input-size", "8", "--batch-size", "64", "--max-steps", "2", "--val-subset", "100"]
    out = ["--out", str(tmp_path / "exp")]
    assert main([*args, *tiny, *out]) == 0
    capsys.readouterr()
    assert main([*args, *tiny, *out, "--lr", "0.05"]) == 2
    assert "was trained with other settings (--lr 0.1, now 0.05); rerun with its settings" in (
        capsys.readouterr().err
    )


def test_a_stopped_run_in_a_read_only_folder_says_the_experiments_fix(tmp_path, monkeypatch):
    # Not train's "copy it to a folder you can write to and resume the copy": an experiment
    # goes on in its own folder.
    out = tmp_path / "exp"
    original = Trainer._train_step
    calls = {"n": 0}

    def interrupting_step(self, x, y):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, x, y)

    monkeypatch.setattr(Trainer, "_train_step", interrupting_step)
    with pytest.raises(KeyboardInterrupt):
        run_degradation("digits", (8,), out=out, **TINY)
    monkeypatch.setattr(Trainer, "_train_step", original)
    make = tempfile.TemporaryFile

    def read_only(*args, dir=None, **kwargs):  # the run's folder on a read-only mount
        if dir is not None and Path(dir) == out / "plain8-seed0":
            raise OSError(errno.EROFS, "Read-only file system")
        return make(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    with pytest.raises(ResnetlabError) as caught:
        run_degradation("digits", (8,), out=out, **TINY)
    assert str(caught.value).endswith(
        "Read-only file system; an experiment trains on in its runs' folders: make it "
        "writable, then run it again"
    )


def test_an_experiment_where_every_seed_lost_a_run_exits_1(tmp_path, capsys):
    # No verdict to give: a script that runs the experiment must not take it for one.
    out = tmp_path / "exp"
    args = ["experiment", "degradation", "--data", "digits", "--depths", "8", "14"]
    tiny = ["--input-size", "8", "--batch-size", "64", "--max-steps", "4", "--val-subset", "100"]
    assert main([*args, *tiny, "--lr", "1e12", "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "nothing to compare" in printed and f"wrote {out / 'curves.png'}" in printed
    assert (out / "table.md").is_file()


def test_a_diverged_run_says_how_the_experiment_goes_on(tmp_path, capsys):
    # Not train's "lower lr and start again, or resume from it": rerunning the experiment
    # skips the run, and a lower rate in the same folder is refused as other settings.
    run_degradation("digits", (8,), out=tmp_path / "exp", **{**TINY, "lr": 1e12})
    said = [line for line in capsys.readouterr().err.splitlines() if " diverged: " in line]
    assert len(said) == 2, said
    assert all(
        line.endswith(
            "stopped. The experiment goes on without it, and running it again skips it; to "
            "train it again, lower lr and choose another out"
        )
        for line in said
    ), said


def test_a_run_whose_checkpoint_cannot_be_used_is_trained_again_by_the_experiment(finished):
    # Not train's "start a new run with --config": a run outside the experiment.
    out, _ = finished((8, 14))
    run = out / "plain8-seed0"
    (run / "summary.json").unlink()  # the run resumes, from its checkpoint
    checkpoint = run / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # a copy that stopped
    again = f"delete the folder {run} and run the same experiment command again, which trains "
    again += "that run again"
    with pytest.raises(ResnetlabError) as e:
        _experiment(out)
    assert str(e.value).endswith(f"; restore the checkpoint from a copy, or {again}")
    checkpoint.unlink()
    with pytest.raises(ResnetlabError) as e:
        _experiment(out)
    assert str(e.value).endswith(f"would overwrite: restore the checkpoint, or {again}")


def test_a_run_out_of_memory_says_how_to_run_the_experiment_again(tmp_path, monkeypatch, capsys):
    # Not train's "start a new run with --config RUN/config.json": outside the experiment.
    from resnetlab.engine.step import TrainStep

    def runs_out(self, x, y):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1")

    monkeypatch.setattr(TrainStep, "__call__", runs_out)
    out = tmp_path / "exp"
    args = ["experiment", "degradation", "--data", "digits", "--depths", "8", "--input-size"]
    args += ["8", "--max-steps", "2", "--batch-size", "64", "--out", str(out)]
    assert main(args) == 2
    lr = json.loads((out / "plain8-seed0" / "config.json").read_text())["lr"]
    assert capsys.readouterr().err.splitlines()[-1] == (
        "error: out of memory on cpu at epoch 1, step 0: plain8 on batches of 64 images at 8x8 "
        "does not fit; run the experiment again in another --out with a smaller batch "
        f"(--batch-size 32 --lr {lr * 0.5**0.5:.3g}) or smaller images (--input-size)"
    )


def test_train_resume_of_an_experiment_folder_says_how_an_experiment_goes_on(finished, capsys):
    out, _ = finished((8,))
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"error: {out} is a folder of runs (plain8-seed0, resnet8-seed0), not a run: an "
        "experiment goes on when its command is run again; --resume takes one of its runs, "
        f"e.g. --resume {out / 'plain8-seed0'}\n"
    )


def test_a_folder_of_photos_as_out_is_refused_before_any_run(tmp_path, capsys):
    # As train refuses it: the figures would join the photos (and replace a curves.png).
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (8, 8)).save(photos / "holiday.jpg")
    for experiment, length in (("degradation", "--max-steps"), ("gradients", "--steps")):
        args = ["experiment", experiment, "--data", "digits", "--depths", "8", length, "1"]
        assert main([*args, "--out", str(photos)]) == 2
        assert capsys.readouterr().err == (
            f"error: {photos} holds images (holiday.jpg), which the experiment's figures "
            "would join: choose a new or empty --out\n"
        )
    assert [p.name for p in photos.iterdir()] == ["holiday.jpg"]


def test_each_warning_on_the_data_is_said_once_per_experiment(tmp_path):
    # The runs read the same data with the same settings: what the first warned of, the
    # others do not say again (a --subset larger than the data, a --download of no use).
    options = {**TINY, "subset": 5000, "download": True}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_degradation("digits", (8,), out=tmp_path / "exp", **options)
    said = [str(w.message) for w in caught]
    subset = "subset=5000 is more than the 1,438 training images: all of them are used"
    download = "download=True fetches cifar10 only; digits is read as it is (drop the flag)"
    assert said.count(subset) == 1 and said.count(download) == 1, said
    # Each experiment says them again: once per experiment, not once per process.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_degradation("digits", (8,), out=tmp_path / "other", **options)
    assert [str(w.message) for w in caught].count(subset) == 1


def test_a_folder_in_use_is_refused_before_the_experiment_names_a_run(
    tmp_path, capsys, hold_in_another_process
):
    # A second copy of the experiment (its folder held by the first) says nothing but that;
    # a run that another process trains is refused before its "training"/"resuming" line.
    out = tmp_path / "exp"
    (out / "plain8-seed0").mkdir(parents=True)
    args = ["experiment", "degradation", "--data", "digits", "--depths", "8", "--out", str(out)]
    args += ["--input-size", "8", "--max-steps", "1", "--train-option", "crop_padding=1"]
    other = hold_in_another_process(out)
    assert main(args) == 2
    assert capsys.readouterr().err == (
        f"error: {out} is in use by process {other.pid}: an experiment is training in it; "
        "wait for it to end, or choose another --out\n"
    )
    other.kill()
    other.wait()
    run = hold_in_another_process(out / "plain8-seed0")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "plain8 seed 0: training" not in err
    assert err.endswith(
        f"error: {out / 'plain8-seed0'} is in use by process {run.pid}: a run is training in "
        "it; wait for it to end\n"
    )
    assert sorted(p.name for p in out.iterdir()) == ["plain8-seed0"]  # no .lock left behind


def test_the_folder_is_held_until_the_figures_are_written(finished, monkeypatch):
    """A second copy started once the runs end, while the first writes its figures and
    table, is refused: it would skip every run and write the same files."""
    from resnetlab.experiments import degradation

    out, _ = finished((8, 14))
    told, report = [], degradation.report

    def reporting(*args):
        told.append(refusal_elsewhere(out))
        return report(*args)

    monkeypatch.setattr(degradation, "report", reporting)
    _experiment(out)
    assert told == [f"{out} is in use by process {os.getpid()}: fix"]
    assert not (out / ".lock").exists() and refusal_elsewhere(out) == ""


def test_other_settings_in_the_same_folder_are_refused(finished):
    out, _ = finished((8, 14))
    with pytest.raises(ResnetlabError, match=r"trained with other settings \(max_steps 4, now 5\)"):
        _experiment(out, max_steps=5)


def test_a_run_of_other_settings_later_in_the_plan_is_refused_before_any_training(tmp_path):
    # resnet8 of a pre-activation experiment, then the plain family in the same folder: its
    # resnet8 is the second run, and plain8, the first, must not train before the refusal.
    run_degradation("digits", (8,), family="preact", out=tmp_path / "exp", **TINY)
    with pytest.raises(ResnetlabError, match=r"resnet8-seed0 was trained with other settings"):
        run_degradation("digits", (8,), out=tmp_path / "exp", **TINY)
    assert not (tmp_path / "exp" / "plain8-seed0").exists()


def test_a_damaged_summary_of_a_run_is_written_again_or_named_in_one_line(finished):
    out, _ = finished((8,))
    summary = out / "plain8-seed0" / "summary.json"
    expected = json.loads(summary.read_text())
    # Cut short (as train --resume takes it): the run resumes and writes it again.
    summary.write_text(summary.read_text()[:20])
    result = run_degradation("digits", (8,), out=out, **TINY)
    assert [r.action for r in result.runs] == ["resumed", "skipped"]
    assert json.loads(summary.read_text())["params"] == expected["params"]
    # A summary that says the run finished but lacks what the table needs: one line.
    for damaged, problem in [({}, "params is None"), ({"params": "75290"}, "params is '75290'")]:
        summary.write_text(json.dumps({**expected, "params": None, **damaged}))
        with pytest.raises(ResnetlabError) as e:
            run_degradation("digits", (8,), out=out, **TINY)
        assert str(e.value) == (
            f"{summary} is damaged (its {problem}); delete it and run the same experiment "
            "command again, which writes it again from the run's checkpoint"
        )
    summary.unlink()  # as the line says
    result = run_degradation("digits", (8,), out=out, **TINY)
    assert result.runs[0].status == "finished" and result.rows[0]["params"] == 75_290


@pytest.mark.parametrize(
    ("damaged", "problem"),
    [
        ({"final_val_acc": "0.9"}, "final_val_acc is '0.9'"),
        ({"final_val_acc": 5}, "final_val_acc is 5, not an accuracy from 0 to 1"),
        ({"world_size": "2"}, "world_size is '2'"),
        ({"world_size": 0}, "world_size is 0"),
    ],
)
def test_a_summary_whose_other_numbers_the_table_reads_are_damaged_is_one_line(
    finished, damaged, problem
):
    # The test error and the training error's sample come from these: not a TypeError
    # traceback, nor a test error of -400%.
    out, _ = finished((8,))
    summary = out / "plain8-seed0" / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), **damaged}))
    with pytest.raises(ResnetlabError) as e:
        run_degradation("digits", (8,), out=out, **TINY)
    assert str(e.value) == (
        f"{summary} is damaged (its {problem}); delete it and run the same experiment "
        "command again, which writes it again from the run's checkpoint"
    )


def test_a_finished_run_whose_history_the_table_cannot_use_is_one_line_with_the_fix(finished):
    out, _ = finished((8,))
    run = out / "plain8-seed0"
    metrics = run / "metrics.csv"
    rows = metrics.read_text().splitlines(keepends=True)
    fix = (
        f"restore it from a copy, or delete the folder {run} and run the same experiment "
        "command again, which trains that run again"
    )
    no_epoch = " has no epoch row, which the table needs"
    for text, problem in [
        (None, " is gone; the experiment's table needs it"),
        (rows[0], no_epoch),  # a header alone
        ("".join(r for r in rows if not r.startswith("epoch")), no_epoch),
        (
            "".join(rows) + "x,y\n",
            f", line {len(rows) + 1}: 2 fields, expected 10; the file is damaged",
        ),
    ]:
        metrics.unlink(missing_ok=True)
        if text is not None:
            metrics.write_text(text)
        with pytest.raises(ResnetlabError) as e:
            run_degradation("digits", (8,), out=out, **TINY)
        assert str(e.value) == f"{metrics}{problem}: {fix}"
    shutil.rmtree(run)  # as the line says
    result = run_degradation("digits", (8,), out=out, **TINY)
    assert [r.action for r in result.runs] == ["trained", "skipped"]


def test_an_experiment_folder_inside_the_data_folder_is_refused_before_any_run(
    tmp_path, monkeypatch, capsys
):
    photos = write_tree(tmp_path / "photos", {"a": [noise(i) for i in range(4)],
                                              "b": [noise(9 + i) for i in range(4)]})  # fmt: skip
    out = photos / "exp"
    with pytest.raises(ResnetlabError) as e:
        run_degradation(str(photos), (8,), out=out, **TINY)
    assert str(e.value) == (
        f"out={str(out)!r} is inside the data folder {photos}; the experiment's figures would "
        "become training images: give an out outside it"
    )
    # The default folder, runs/ in the current folder, when that is the data folder.
    monkeypatch.chdir(photos)
    for experiment in ("degradation", "gradients"):
        assert main(["experiment", experiment, "--data", ".", "--depths", "8"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --out runs/{experiment}-") and err.endswith(
            "is inside the data folder .; the experiment's figures would become training "
            "images: give an --out outside it\n"
        ), err
    assert sorted(p.name for p in photos.iterdir()) == ["a", "b"]


def test_unknown_depth_and_reserved_options_are_clear_errors(tmp_path):
    with pytest.raises(ResnetlabError, match="no registered CIFAR plain net of depth 26"):
        run_degradation("digits", (8, 26), out=tmp_path / "a", **TINY)
    with pytest.raises(ResnetlabError, match="sets seed itself"):
        run_degradation("digits", (8,), out=tmp_path / "b", seed=3, **TINY)
    assert not (tmp_path / "a").exists()  # nothing ran


def test_a_training_run_folder_as_out_is_refused_and_kept(tmp_path, capsys):
    from resnetlab.engine import train

    run = train(model="resnet8", data="digits", out=str(tmp_path / "run"), **TINY).run_dir
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    for experiment in (["degradation", "--max-steps", "1"], ["gradients", "--steps", "1"]):
        args = ["experiment", *experiment, "--data", "digits", "--depths", "8", "--out", str(run)]
        assert main(args) == 2
        assert capsys.readouterr().err == (
            f"error: --out {run} is the folder of a training run, whose curves.png the "
            "experiment's would replace: choose another --out\n"
        )
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert [p.name for p in run.iterdir() if p.is_dir()] == []


def test_data_that_is_not_there_is_refused_before_the_first_runs_line(tmp_path, capsys):
    out = tmp_path / "exp"
    args = ["experiment", "degradation", "--data", str(tmp_path / "photoz"), "--depths", "8"]
    assert main([*args, "--max-steps", "1", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: {tmp_path / 'photoz'}: no such file or folder\n"
    assert "training" not in captured.out and not out.exists()


def test_a_train_option_that_a_flag_of_the_experiment_sets_is_one_line(tmp_path, capsys):
    for experiment, key, flag in [
        ("degradation", "out", "--out"),
        ("degradation", "seeds", "--seeds"),
        ("degradation", "family", "--family"),
        ("gradients", "probe_size", "--probe-size"),
        ("gradients", "data", "--data"),
    ]:
        args = ["experiment", experiment, "--data", "digits", "--out", str(tmp_path / "e")]
        assert main([*args, "--train-option", f"{key}=1"]) == 2
        assert capsys.readouterr().err == (
            f"error: --train-option {key}: the experiment's {flag} sets that; give {flag} instead\n"
        )
    args = ["experiment", "gradients", "--data", "digits", "--out", str(tmp_path / "e")]
    assert main([*args, "--train-option", "weight_decay"]) == 2
    assert capsys.readouterr().err == "error: --train-option 'weight_decay' is not KEY=VALUE\n"
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("depth", [8, 20, 56])
def test_plain_and_residual_nets_start_from_identical_weights(tmp_path, depth):
    def start(model, seed=0):
        config = run_config("digits", model, seed, tmp_path / model, "paper-cifar", dict(TINY))
        return config, initial_model(config, 10, 8).state_dict()

    plain_config, plain = start(f"plain{depth}")
    _, resnet = start(f"resnet{depth}")
    assert plain.keys() == resnet.keys()
    assert all(torch.equal(plain[k], resnet[k]) for k in plain)
    _, other_seed = start(f"plain{depth}", seed=1)
    assert not torch.equal(plain["conv1.weight"], other_seed["conv1.weight"])
    # ...and the engine starts the run from exactly these weights.
    engine = Trainer(plain_config).model.state_dict()
    assert all(torch.equal(engine[k], plain[k]) for k in plain)


def test_verdict_counts_seeds_that_show_the_degradation():
    errors = {}
    for seed, plain, resnet in ((0, (10, 12, 15), (9, 8, 7)), (1, (11, 10, 16), (9, 9, 9))):
        for depth, p, r in zip((8, 20, 32), plain, resnet, strict=True):
            errors[(seed, depth, False)], errors[(seed, depth, True)] = p, r
    v = verdict(errors)
    assert (v["shallow"], v["deep"], v["complete_seeds"]) == (8, 32, 2)
    assert (v["plain_rises"], v["resnet_holds"]) == (1, 2)  # seed 1's plain-20 beat plain-8
    assert v["plain_change"] == pytest.approx(5.0) and v["resnet_change"] == pytest.approx(-1.0)
    assert v["shows"] is False
    errors[(1, 20, False)] = 10.5 + 1
    assert verdict(errors)["shows"] is True
    errors[(1, 32, True)] = None  # a diverged run: that seed is left out
    assert verdict(errors)["complete_seeds"] == 1
    assert verdict({(0, 8, False): 1.0, (0, 8, True): 2.0}) is None  # one depth


def test_verdict_with_sampling_error():
    # Errors near 10% over 1,000 images: two differ by chance by about 1.4 points.
    errors = {(0, 8, False): 10.0, (0, 20, False): 12.0, (0, 32, False): 20.0}
    errors |= {(0, 8, True): 10.0, (0, 20, True): 9.0, (0, 32, True): 11.0}
    strict, tolerant = verdict(errors), verdict(errors, images=1000)
    assert (strict["plain_rises"], strict["resnet_holds"]) == (1, 0)
    assert (tolerant["plain_rises"], tolerant["resnet_holds"]) == (0, 1)  # +2.0 < 2 x 1.4
    errors[(0, 20, False)] = 13.0  # +3.0: more than twice the sampling error
    assert verdict(errors, images=1000)["shows"] is True


def test_verdict_text_tells_a_partial_result_apart():
    # As on all of CIFAR-10 after 15 epochs: plain-56 far behind plain-20, and ResNet-56
    # still behind ResNet-20 by more than the sampling error.
    errors = {(0, 20, False): 18.3, (0, 56, False): 57.5, (0, 20, True): 15.0, (0, 56, True): 17.7}
    partly = verdict_text(verdict(errors, images=50_000))
    assert partly.startswith("Partly: the plain nets degrade, but the deepest ResNet also")
    errors[(0, 56, True)] = 14.0
    assert verdict_text(verdict(errors, images=50_000)).startswith("Yes. From depth 20 to 56")
    errors[(0, 56, False)] = 18.0  # the plain nets no longer degrade
    assert verdict_text(verdict(errors, images=50_000)).startswith("No. From depth 20 to 56")


def test_cli_runs_the_experiment_and_prints_the_table(tmp_path, capsys):
    out = tmp_path / "exp"
    args = ["experiment", "degradation", "--data", "digits", "--depths", "8", "14"]
    args += ["--max-steps", "3", "--input-size", "8", "--batch-size", "64", "--val-subset", "100"]
    args += ["--train-option", "crop_padding=1", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| plain14 | 14 | 172,506 |" in printed and f"wrote {out / 'curves.png'}" in printed
    assert json.loads((out / "plain8-seed0" / "config.json").read_text())["crop_padding"] == 1
    assert main([*args[:4], "--depths", "8", "10", "--out", str(tmp_path / "x")]) == 2
    assert "depth 10" in capsys.readouterr().err


def test_quick_sets_its_options_and_flags_override(monkeypatch, tmp_path):
    seen = {}

    def fake_run(data, depths, **kwargs):
        seen.update(data=data, depths=list(depths), **kwargs)
        raise ResnetlabError("stop here")

    monkeypatch.setattr("resnetlab.experiments.run_degradation", fake_run)
    assert main(["experiment", "degradation", "--data", "cifar10", "--quick", "--epochs", "1"]) == 2
    expected = dict(QUICK)
    assert seen["depths"] == list(QUICK_DEPTHS) and seen["recipe"] == "paper-cifar"
    assert {k: seen[k] for k in expected} == {**expected, "epochs": 1}
    assert str(seen["out"]).endswith("degradation-quick-cifar10")


def test_quick_preact_family_takes_its_depths_recipe_and_folder(monkeypatch):
    seen = {}

    def fake_run(data, depths, **kwargs):
        seen.update(data=data, depths=list(depths), **kwargs)
        raise ResnetlabError("stop here")

    monkeypatch.setattr("resnetlab.experiments.run_degradation", fake_run)
    args = ["experiment", "degradation", "--data", "cifar10", "--quick", "--family", "preact"]
    assert main(args) == 2
    assert seen["depths"] == list(PREACT_QUICK_DEPTHS) and seen["family"] == "preact"
    assert seen["recipe"] == "preact-cifar" and seen["subset"] == QUICK["subset"]
    assert str(seen["out"]).endswith("degradation-preact-quick-cifar10")


def test_preact_family_pairs_original_and_preactivation_nets_and_warns_of_its_warm_up_once(
    tmp_path,
):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_degradation("digits", (8, 14), family="preact", out=tmp_path / "exp", **TINY)
    # preact-cifar warms up for an epoch, longer than TINY's 4 steps: the same for each run,
    # said once per experiment.
    said = [str(w.message) for w in caught if str(w.message).startswith("the warm-up")]
    assert len(said) == 1, said
    assert [r.model for r in result.runs] == ["resnet8", "preresnet8", "resnet14", "preresnet14"]
    assert [r.config.recipe for r in result.runs] == ["preact-cifar"] * 4
    table = json.loads((tmp_path / "exp" / "table.json").read_text())
    assert [row["changed"] for row in table["models"]] == [False, True, False, True]
    assert table["settings"]["family"] == "preact"
    assert set(table["verdict"]["gaps"]) == {"8", "14"}  # JSON keys
    md = (tmp_path / "exp" / "table.md").read_text(encoding="utf-8")
    assert md.startswith("# ResNets vs pre-activation ResNets on CIFAR")
    assert "## Does pre-activation train the deeper nets better?" in md
    assert "Identity Mappings, Table 3" in md
    with pytest.raises(
        ResnetlabError, match="no registered CIFAR pre-activation ResNet of depth 1202"
    ):
        run_degradation("digits", (1202,), family="preact", out=tmp_path / "x", **TINY)


@pytest.mark.parametrize(
    ("family", "says"),
    [
        (["plain"], "family must be a name, one of plain, preact, got ['plain']"),
        (3, "family must be a name, one of plain, preact, got 3"),
        ("Plain", "unknown family 'Plain'; choose one of plain, preact"),
    ],
)
def test_a_family_that_is_not_one_of_the_names_is_one_line(tmp_path, family, says):
    """A list was TypeError 'unhashable type: list'."""
    with pytest.raises(ResnetlabError) as error:
        run_degradation("digits", (8,), family=family, out=tmp_path / "x", **TINY)
    assert str(error.value) == says
    assert not (tmp_path / "x").exists()


def test_gap_verdict_asks_whether_the_change_helps_the_deepest_net():
    errors = {}
    for seed, base, pre in ((0, (10, 20, 30), (10, 15, 18)), (1, (11, 19, 31), (12, 18, 29))):
        for depth, b, p in zip((20, 56, 110), base, pre, strict=True):
            errors[(seed, depth, False)], errors[(seed, depth, True)] = b, p
    v = gap_verdict(errors)
    assert v["gaps"] == pytest.approx({20: -0.5, 56: 3.0, 110: 7.0})
    assert (v["deep_better"], v["widens"], v["complete_seeds"]) == (2, 2, 2)
    assert v["shows"] is True
    # Over 500 images, seed 1's 2-point gap at 110 is within twice the sampling error.
    tolerant = gap_verdict(errors, images=500)
    assert tolerant["deep_better"] == 1 and tolerant["shows"] is False
    errors[(1, 110, True)] = None
    assert gap_verdict(errors)["complete_seeds"] == 1


def test_the_help_names_the_default_folders_the_experiments_use(capsys):
    from pathlib import Path

    from resnetlab.experiments.runner import default_out

    for experiment, pattern in [
        ("degradation", "runs/degradation[-preact][-quick]-<data>"),
        ("gradients", "runs/gradients[-preact]-<data>"),
    ]:
        with pytest.raises(SystemExit):
            main(["experiment", experiment, "--help"])
        assert pattern in " ".join(capsys.readouterr().out.split())
    assert default_out("degradation", "digits", family="preact", quick=True) == Path(
        "runs/degradation-preact-quick-digits"
    )
    assert default_out("gradients", "digits") == Path("runs/gradients-digits")


TOO_FEW = "too few to tell a net that is slower to start"
BARELY = "barely learnt"
ONE_SEED = "one seed with every run finished, so how far the errors spread"


@pytest.mark.parametrize(
    "seeds, shallow, chance, steps, expected",
    [
        # The reported quick run: 2 epochs of 1,000 images, one seed, nets near guessing.
        (1, [77.2, 76.9], 90.0, 62, [TOO_FEW, BARELY, ONE_SEED]),
        # The README's quick table: three seeds, 620 iterations, ~58% against 90%.
        (3, [59.63, 57.16], 90.0, 620, []),
        # The README's GPU run and preact quick run: one seed each.
        (1, [18.31, 14.98], 90.0, 5850, [ONE_SEED]),
        (1, [60.64, 60.84], 90.0, 620, [ONE_SEED]),
        (3, [59.6, 57.2], 90.0, 499, [TOO_FEW]),
        (3, [59.6, 57.2], 90.0, 500, []),
        (2, [60.0, 67.6], 90.0, 620, [BARELY]),  # one of the two nets above 67.5%
        (2, [60.0, 67.5], 90.0, 620, []),
        (2, [74.0, 70.0], 99.0, 620, []),  # 100 classes: 74.25% is the bound
        (2, [95.0, 95.0], None, None, []),  # neither chance nor length known
        (0, [], 90.0, 620, []),  # nothing compared: verdict_text says so itself
    ],
)
def test_unsettled_names_each_reason(seeds, shallow, chance, steps, expected):
    with command_line():  # as `resnetlab experiment degradation` says it
        reasons = unsettled(seeds=seeds, shallow_errors=shallow, chance=chance, steps=steps)
    assert len(reasons) == len(expected)
    for reason, words in zip(reasons, expected, strict=True):
        assert words in reason
    advice = {TOO_FEW: "more --epochs", BARELY: "--subset", ONE_SEED: "--seeds 0 1 2"}
    for reason, words in zip(reasons, expected, strict=True):
        assert advice[words] in reason


def test_an_unsettled_verdict_says_so_and_keeps_the_numbers():
    errors = {(0, 8, False): 77.2, (0, 20, False): 84.0, (0, 8, True): 76.9, (0, 20, True): 76.1}
    v = verdict(errors, images=1000)
    assert v["shows"] is True  # +6.8 over 1,000 images: beyond the sampling error
    v["unsettled"] = unsettled(seeds=1, shallow_errors=[77.2, 76.9], chance=90.0, steps=62)
    text = verdict_text(v)
    assert text.startswith("Not settled: 62 iterations are too few")
    assert "77.2% training error against 90.0% for guessing" in text
    assert "These runs alone would answer: Yes. From depth 8 to 20" in text
    assert "+6.8 points for the plain nets and -0.8 for the ResNets" in text
    assert not text.startswith("Yes")


@pytest.mark.parametrize(
    "folder, family, answer",
    [
        ("quick", "plain", "Yes. From depth 8 to 32"),
        ("gpu-15-epochs", "plain", "Not settled: one seed"),
        ("preact-quick", "preact", "Not settled: one seed"),
    ],
)
def test_the_documented_runs_get_the_verdicts_the_docs_report(folder, family, answer):
    # Recomputed from the runs' own records, as report() computes it (CIFAR-10: 10 classes).
    table = json.loads((DOCS / folder / "table.json").read_text())
    errors = {
        (r["seed"], r["depth"], r.get("changed", r.get("residual"))): r["train_error"]
        for r in table["runs"]
    }
    images = table["verdict"]["images"]
    v = verdict(errors, images) if family == "plain" else gap_verdict(errors, images)
    means = [
        sum(errors[k] for k in errors if k[1] == v["shallow"] and k[2] == changed)
        / v["complete_seeds"]
        for changed in (False, True)
    ]
    v["unsettled"] = unsettled(
        seeds=v["complete_seeds"],
        shallow_errors=means,
        chance=90.0,
        steps=min(r["steps"] for r in table["runs"]),
    )
    text = verdict_text(v) if family == "plain" else gap_text(v, FAMILIES[family])
    assert text.startswith(answer)
    if answer.startswith("Not settled"):
        # What the one seed shows is kept: partly (GPU), yes (pre-activation).
        alone = {
            "gpu-15-epochs": "answer: Partly: the plain nets degrade",
            "preact-quick": "answer: Yes.",
        }
        assert alone[folder] in text


def test_the_experiment_records_whether_its_verdict_is_settled(finished):
    out, result = finished((8, 14))  # 4 steps of one seed
    v = json.loads((out / "table.json").read_text())["verdict"]
    assert v["settled"] is False and len(v["unsettled"]) >= 2
    assert "settled=False" in repr(result)
    md = (out / "table.md").read_text(encoding="utf-8")
    assert "## Does the degradation show?\n\nNot settled: 4 iterations are too few" in md
    # --max-steps set the length: more epochs would train no longer, so they are not advised.
    assert "(train for at least 500: a larger max_steps)" in v["unsettled"][0]
    assert "more epochs" not in md


def test_a_run_of_one_iteration_is_counted_in_the_singular(tmp_path):
    _experiment(tmp_path / "exp", max_steps=1)
    md = (tmp_path / "exp" / "table.md").read_text(encoding="utf-8")
    assert ": 1 iteration. Seeds: 0." in md
    assert "Not settled: 1 iteration is too few to tell" in md
    assert "1 iterations" not in md


def test_unsettled_advises_more_epochs_unless_max_steps_set_the_length():
    short = dict(seeds=3, shallow_errors=[80.0], chance=90.0, steps=100)
    for capped, longer in ((False, "more --epochs"), (True, "a larger --max-steps")):
        with command_line():
            too_few, barely = unsettled(**short, max_steps=capped)
        assert too_few.endswith(f"(train for at least 500: {longer})")
        assert f"(train longer, {longer}, or on more images" in barely


def test_an_experiment_that_cannot_start_removes_the_folders_it_made(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty"  # data that is there, but holds no images: the first run fails
    empty.mkdir()
    tmp_path = tmp_path / "work"
    tmp_path.mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["experiment", "degradation", "--data", str(empty), "--quick"]) == 2
    err = capsys.readouterr().err
    assert "plain8 seed 0: training" in err and f"error: {empty}" in err
    assert list(tmp_path.iterdir()) == []  # neither runs/ nor the experiment's folder

    # --out inside folders that did not exist: all of them go.
    args = ["experiment", "gradients", "--data", str(empty), "--depths", "8", "--steps", "1"]
    assert main([*args, "--out", str(tmp_path / "a" / "b")]) == 2
    assert list(tmp_path.iterdir()) == []

    # A folder that was there before stays, with what it held.
    kept = tmp_path / "exp"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    assert main([*args, "--out", str(kept)]) == 2
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*args, "--out", str(empty)]) == 2
    assert empty.is_dir() and list(empty.iterdir()) == []


def test_an_experiment_folder_that_cannot_be_made_names_out(tmp_path, monkeypatch, capsys):
    out = tmp_path / "ro" / "exp"
    mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):  # a folder on a read-only mount
        if self == out:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert main(["experiment", "degradation", "--data", "digits", "--out", str(out)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: cannot write {out}: Read-only file system; choose another --out, a folder you "
        "can write to"
    )
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    assert main(["experiment", "gradients", "--data", "digits", "--out", str(a_file)]) == 2
    assert capsys.readouterr().err == (
        f"error: --out {a_file} is a file; an experiment needs a folder: choose another\n"
    )
    assert a_file.read_text() == "mine"


def test_one_depth_says_that_a_verdict_needs_two(tmp_path, capsys):
    out = tmp_path / "exp"
    args = ["experiment", "degradation", "--data", "digits", "--depths", "8", "--max-steps", "2"]
    args += ["--input-size", "8", "--batch-size", "64", "--val-subset", "100"]
    assert main([*args, "--train-option", "crop_padding=1", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    expected = (
        "No verdict: it compares depths, and this experiment has one (8); give at least "
        "two, e.g. --depths 8 14."
    )
    assert f"note: {expected}" in captured.err.splitlines()[0]  # before any training
    assert f"## Does the degradation show?\n\n{expected}\n" in captured.out
    assert expected in (out / "table.md").read_text(encoding="utf-8")
    assert json.loads((out / "table.json").read_text())["verdict"] is None


def test_one_depth_text_offers_registered_depths():
    from resnetlab.experiments.degradation import one_depth_text

    with command_line():
        assert one_depth_text(56, FAMILIES["plain"]).endswith("e.g. --depths 56 110.")
        assert one_depth_text(1202, FAMILIES["plain"]).endswith("e.g. --depths 110 1202.")
    assert one_depth_text(56, FAMILIES["plain"]).endswith("e.g. depths=[56, 110].")


def test_the_runs_name_the_data_as_the_command_was_given_it(tmp_path, monkeypatch, capsys):
    write_signs_pair(tmp_path / "signs")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    data = "../signs/train_signs.h5"
    args = ["experiment", "degradation", "--data", data, "--depths", "8", "--out", "exp"]
    assert main([*args, "--input-size", "8", "--max-steps", "1"]) == 0
    err = capsys.readouterr().err
    assert f"plain8 (74,770 parameters) on {data}: " in err
    assert f"held out: ../signs/test_signs.h5:test, found next to {data}" in err
    assert str(tmp_path) not in err


def test_the_runs_name_training_options_as_the_experiment_takes_them(tmp_path, capsys):
    """The runs' advice named train's flags (give a shorter --warmup-steps), which the
    experiment does not have: it takes them as --train-option KEY=VALUE."""
    args = ["experiment", "degradation", "--data", "digits", "--depths", "8"]
    args += ["--max-steps", "2", "--input-size", "8", "--val-subset", "100"]
    args += ["--train-option", "warmup_steps=5", "--out", str(tmp_path / "exp")]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert "give a shorter --train-option warmup_steps=..., or a longer run" in printed.err
    assert "--warmup-steps" not in printed.err
    # Its own flags keep their names, and train names its own.
    assert "give at least two, e.g. --depths 8" in printed.err
    with command_line():
        assert option("warmup_steps", 5) == "--warmup-steps 5"
