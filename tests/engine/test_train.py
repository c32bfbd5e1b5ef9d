import copy
import csv
import errno
import gc
import io
import json
import math
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
import weakref
from pathlib import Path

import pytest
import torch
from PIL import Image

import resnetlab
from resnetlab.cli import main
from resnetlab.data.loader import DeviceLoader
from resnetlab.engine import TrainConfig, train
from resnetlab.engine import report as report_module
from resnetlab.engine.checkpoint import (
    cuda_rng_state,
    load_checkpoint,
    load_optimizer_state,
    restore_cuda_rng,
)
from resnetlab.engine.train import Trainer
from resnetlab.errors import DataWarning, SettingWarning, command_line
from resnetlab.storage import FolderInUse

from ..data.conftest import noise, write_signs_pair, write_tree
from .interrupt import train_interrupted

# Digits at their native 8x8 with resnet8: a real data set, a second or two per run.
FAST = dict(
    model="resnet8", data="digits", input_size=8, crop_padding=1, batch_size=64, log_every=5
)
# For the runs that are stopped and resumed: 320 of its images, 5 steps an epoch, and 100
# that validate.
FEW = dict(FAST, subset=320, val_subset=100)


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """``uninterrupted(**options)``: the result of ``train(**options)``, run once a module
    (inside the first test that asks, under its settings) for the tests that stop and
    resume a run and compare it with this one, which they only read."""
    runs = {}

    def run(**options):
        key = json.dumps(options, sort_keys=True)
        if key not in runs:
            out = tmp_path_factory.mktemp("uninterrupted") / "run"
            runs[key] = train(**options, out=str(out))
        return runs[key]

    return run


@pytest.mark.figures
def test_training_learns_and_writes_the_run_folder(tmp_path):
    result = train(**FAST, epochs=4, out=str(tmp_path / "run"))
    run = result.run_dir
    for name in (
        "config.json",
        "metrics.csv",
        "best.safetensors",
        "last.safetensors",
        "checkpoint.pt",
        "curves.png",
        "confusion.png",
        "summary.json",
    ):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs"] == 4
    assert summary["best_val_acc"] > 0.6  # chance is 0.1
    assert summary["params"] == 75_290 and summary["class_names"] == [str(i) for i in range(10)]
    # How it ran: the uncalibrated CPU plan (the tests turn calibration off), no graphs.
    assert (summary["precision"], summary["channels_last"], summary["cuda_graphs"]) == (
        "fp32",
        True,
        False,
    )
    rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert len(epochs) == 4 and any(r["kind"] == "step" for r in rows)
    assert float(epochs[-1]["train_loss"]) < float(epochs[0]["train_loss"])
    assert all(r["images_per_s"] for r in epochs)  # each epoch's rate is recorded
    config = TrainConfig.load(run / "config.json")
    assert config["model"] == "resnet8" and config["epochs"] == 4
    model = resnetlab.load_model(run / "best.safetensors")
    assert model.meta.class_names == summary["class_names"] and model.meta.input_size == 8
    # The model returned is the last epoch's, with its file's metadata: predict takes it.
    assert result.model.meta == resnetlab.read_model_meta(run / "last.safetensors")
    assert resnetlab.evaluate(result.model, "digits").result.count == summary["val_images"]
    assert model.meta.training["best_epoch"] == summary["best_epoch"]
    # The best epoch's file is the last one's on disk when they are the same epoch, only then.
    same_file = os.path.samefile(run / "best.safetensors", run / "last.safetensors")
    assert same_file == (summary["best_epoch"] == 4)
    for png in ("curves.png", "confusion.png"):
        assert Image.open(run / png).size[0] > 300


def test_best_is_written_as_its_own_file_where_the_disk_has_no_hard_links(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[Trainer.__module__], "atomic_link", lambda source, path: False)
    run = train(**FEW, epochs=1, out=str(tmp_path / "run")).run_dir
    best, last = run / "best.safetensors", run / "last.safetensors"
    assert not os.path.samefile(best, last) and best.read_bytes() == last.read_bytes()


def test_config_json_reruns_exactly(tmp_path):
    first = train(**FEW, epochs=1, out=str(tmp_path / "a"))
    assert (
        main(
            ["train", "--config", str(first.run_dir / "config.json"), "--out", str(tmp_path / "b")]
        )
        == 0
    )
    a = resnetlab.load_model(tmp_path / "a" / "last.safetensors").state_dict()
    b = resnetlab.load_model(tmp_path / "b" / "last.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_reruns_a_config_json_given_as_a_path_with_keywords_overriding_it(tmp_path):
    first = train(**FAST, max_steps=3, out=str(tmp_path / "a"))
    again = train(first.run_dir / "config.json", max_steps=2, out=str(tmp_path / "b"))
    stored = json.loads((again.run_dir / "config.json").read_text())
    assert stored == {**json.loads((first.run_dir / "config.json").read_text()), "max_steps": 2}
    assert again.summary["steps"] == 2
    with pytest.raises(
        resnetlab.ResnetlabError, match=r"\(train\(resume=run, epochs=30\)\), not a config.json$"
    ):
        train(str(first.run_dir / "config.json"), resume=first.run_dir)
    # What resuming cannot change points to the rerun as Python gives it, which runs.
    rerun = f"config='{first.run_dir / 'config.json'}'"
    with pytest.raises(resnetlab.ResnetlabError, match=f"start a new run: {rerun} with the new"):
        train(resume=first.run_dir, seed=5)
    with pytest.raises(resnetlab.ResnetlabError) as caught:
        train(resume=first.run_dir, out=str(tmp_path / "c"))
    assert str(caught.value).endswith(f"{rerun}, out='{tmp_path / 'c'}')")


def test_interrupted_and_resumed_run_ends_with_the_same_weights(
    tmp_path, monkeypatch, uninterrupted
):
    whole = uninterrupted(**FEW, epochs=2, deterministic=True)
    expected = _weights(whole.model)

    # Ctrl-C in the middle of the second epoch, arriving while a step runs: the step
    # finishes (BN statistics included) and the run stops before the next one.
    original = Trainer._train_step
    calls = {"n": 0}

    def interrupting_step(self, x, y):
        calls["n"] += 1
        if calls["n"] == 8:  # 5 steps per epoch: the 3rd of the second
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, x, y)

    monkeypatch.setattr(Trainer, "_train_step", interrupting_step)
    with pytest.raises(KeyboardInterrupt):
        train(**FEW, epochs=2, out=str(tmp_path / "split"), deterministic=True)
    state = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert (state["epoch"], state["batch"]) == (1, 3)
    monkeypatch.setattr(Trainer, "_train_step", original)
    resumed = train(resume=tmp_path / "split")
    assert resumed.summary["status"] == "finished" and resumed.summary["epochs"] == 2
    got = _weights(resumed.model)
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    rows = list(csv.DictReader((tmp_path / "split" / "metrics.csv").read_text().splitlines()))
    steps = [int(r["step"]) for r in rows if r["kind"] == "epoch"]
    assert steps == [5, 10]
    # The interrupted epoch's record covers its steps before the interruption too.
    uncut = list(csv.DictReader((whole.run_dir / "metrics.csv").read_text().splitlines()))
    for name in ("train_loss", "train_acc"):
        got, want = ([float(r[name]) for r in t if r["kind"] == "epoch"] for t in (rows, uncut))
        assert got == pytest.approx(want, rel=1e-6)


def test_a_streamed_run_resumed_mid_epoch_ends_as_the_uninterrupted_one(tmp_path, monkeypatch):
    # The resumed epoch's loader starts at the batch after the checkpoint's (the ones before
    # are not decoded again): the same batches, so the same weights.
    photos = write_tree(
        tmp_path / "photos",
        {c: [noise(20 * k + i, (12, 12)) for i in range(12)] for k, c in enumerate("abc")},
    )
    run = dict(
        model="resnet8", data=str(photos), input_size=8, batch_size=4, epochs=2, stream=True,
        num_workers=0, val_split=0.25, deterministic=True,
    )  # fmt: skip
    whole = train(**run, out=str(tmp_path / "whole"))
    steps = whole.summary["steps"] // 2
    train_interrupted(monkeypatch, steps + 3, **run, out=str(tmp_path / "split"))
    state = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert (state["epoch"], state["batch"]) == (1, 2)
    resumed = train(resume=tmp_path / "split")
    expected, got = _weights(whole.model), _weights(resumed.model)
    assert all(torch.equal(expected[k], got[k]) for k in expected)


@pytest.mark.parametrize("at_step", [5, 10])  # the first epoch's last step; the run's
def test_a_ctrl_c_during_an_epochs_last_step_stops_before_its_validation(
    tmp_path, monkeypatch, capsys, uninterrupted, at_step
):
    # It stopped only once the epoch had been validated (and, at the run's last step, once
    # the run had finished); after any other step it stops at once.
    whole = uninterrupted(**FEW, epochs=2, deterministic=True)
    original, evaluate, calls = Trainer._train_step, Trainer._evaluate, {"steps": 0, "val": 0}

    def step(self, x, y):
        calls["steps"] += 1
        if calls["steps"] == at_step:  # 5 steps per epoch
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, x, y)

    def validation(self, *args, **kwargs):
        calls["val"] += 1
        return evaluate(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_step", step)
    monkeypatch.setattr(Trainer, "_evaluate", validation)
    run = tmp_path / "split"
    with pytest.raises(KeyboardInterrupt):
        train(**FEW, epochs=2, out=str(run), deterministic=True)
    assert calls["val"] == at_step // 5 - 1  # none of the interrupted epoch
    state = load_checkpoint(run / "checkpoint.pt")
    assert (state["epoch"], state["batch"], state["step"]) == (at_step // 5 - 1, 5, at_step)
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
    err = " ".join(capsys.readouterr().err.split())
    assert f"interrupted at epoch {at_step // 5}, batch 5; checkpoint saved." in err
    # Resumed, the run validates that epoch first and ends as the uninterrupted one.
    monkeypatch.setattr(Trainer, "_train_step", original)
    resumed = train(resume=run)
    assert resumed.summary["status"] == "finished" and resumed.summary["epochs"] == 2
    assert (run / "last.safetensors").is_file() and calls["val"] == 2
    expected, got = _weights(whole.model), _weights(resumed.model)
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    assert [int(r["step"]) for r in rows if r["kind"] == "epoch"] == [5, 10]


class _TickingTime:
    """The ``time`` module whose ``perf_counter`` moves one second a call: the training
    loop's time measured in calls, the same on any machine."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 1.0
        return self.now

    def __getattr__(self, name: str):
        return getattr(time, name)


def _ticking_clock(monkeypatch) -> None:
    monkeypatch.setattr(sys.modules[Trainer.__module__], "time", _TickingTime())


@pytest.mark.parametrize(
    "sig, workers_end",
    [
        # Ctrl-C between steps, while the loader makes the 8th batch.
        (signal.SIGINT, False),
        # SIGTERM sent to the whole process group (a batch system's cancel): the loader's
        # workers end too, and the batch they were making fails.
        (signal.SIGTERM, True),
    ],
    ids=["ctrl-c", "sigterm-to-the-group"],
)
def test_a_stop_while_a_batch_is_made_keeps_the_steps_since_the_last_log(
    tmp_path, monkeypatch, sig, workers_end
):
    # The 6th and 7th steps, trained after the log of the 5th, are in the checkpoint's
    # record too, and so is the epoch's time.
    original, made = DeviceLoader._batch, {"n": 0}

    def batch(self, *args, **kwargs):
        made["n"] += 1
        if made["n"] == 8:
            os.kill(os.getpid(), sig)
            if workers_end:
                raise RuntimeError("DataLoader worker (pid 4321) is killed by signal: Terminated.")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DeviceLoader, "_batch", batch)
    _ticking_clock(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train(**FAST, epochs=1, out=str(tmp_path / "run"))
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert (state["batch"], state["epoch_sums"][2], state["images_trained"]) == (7, 448, 448)
    # The time of those 7 steps too: without it, a resumed run's images_per_s counts their
    # images over the other steps' time alone (its checkpoint said 0.0 s).
    assert state["train_time"] >= 1  # a tick of the clock at least


def test_sigterm_stops_a_run_as_ctrl_c_does_and_exits_143(tmp_path, monkeypatch, capsys):
    """`kill`, `docker stop` or a batch system's preemption: SIGTERM ended the process at
    once, losing the steps since the last epoch's checkpoint, without a word."""
    original, calls = Trainer._train_step, {"n": 0}

    def step(self, x, y):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, x, y)

    def not_the_runs(signum, frame):  # (the default would end the test process)
        raise AssertionError("the run left SIGTERM to the handler before it")

    monkeypatch.setattr(Trainer, "_train_step", step)
    before = signal.signal(signal.SIGTERM, not_the_runs)
    run = tmp_path / "run"
    args = ["--model", "resnet8", "--data", "digits", "--input-size", "8", "--batch-size", "64"]
    try:
        assert main(["train", *args, "--epochs", "1", "--out", str(run)]) == 143
        assert signal.getsignal(signal.SIGTERM) is not_the_runs
    finally:
        signal.signal(signal.SIGTERM, before)
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 3
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
    err = " ".join(capsys.readouterr().err.split())
    assert "interrupted by SIGTERM at epoch 1, batch 3; checkpoint saved. Continue with: " in err


def test_sigterm_to_the_process_group_ends_a_streamed_run_as_sigterm_to_it_alone(
    tmp_path, monkeypatch, capsys
):
    """A batch system's cancel signals every process of the job: the loader's workers
    ended too, and PyTorch's report of it ("DataLoader worker (pid N) is killed by signal:
    Terminated") came out as a traceback instead of the run's stop."""
    photos = write_tree(
        tmp_path / "photos", {c: [noise(i + 40 * k) for i in range(40)] for k, c in enumerate("ab")}
    )
    original, calls = Trainer._train_step, {"n": 0}

    def step(self, x, y):
        calls["n"] += 1
        if calls["n"] == 3:  # from another process, as a worker's parent's SIGTERM is not
            pids = [os.getpid(), *(p.pid for p in multiprocessing.active_children())]
            subprocess.run(["kill", "-TERM", *map(str, pids)], check=True)
        return original(self, x, y)

    def not_the_runs(signum, frame):
        raise AssertionError("the run left SIGTERM to the handler before it")

    monkeypatch.setattr(Trainer, "_train_step", step)
    # (SIGCHLD: PyTorch's handler, put in place by the first loader with workers, stays.)
    before = {signal.SIGCHLD: signal.getsignal(signal.SIGCHLD)}
    before[signal.SIGTERM] = signal.signal(signal.SIGTERM, not_the_runs)
    run = tmp_path / "run"
    args = ["--data", str(photos), "--model", "resnet8", "--input-size", "8", "--batch-size", "8"]
    try:
        code = main(["train", *args, "--stream", "--num-workers", "2", "--out", str(run)])
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    err = capsys.readouterr().err
    assert code == 143, err
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 3
    assert "interrupted by SIGTERM at epoch 1, batch 3; checkpoint saved." in err


@pytest.mark.parametrize("found", ["by SIGCHLD", "waiting for a batch"])
def test_a_loader_worker_killed_mid_run_is_one_line_that_says_how_to_go_on(
    tmp_path, monkeypatch, capsys, found
):
    """The system's out-of-memory killer ends a worker with SIGKILL: PyTorch's report of it
    ("DataLoader worker (pid N) is killed by signal: Killed") was a traceback. A worker
    killed between two batches can instead be found gone by the loader's wait for the next
    one, which said to run again, not how to resume."""
    from resnetlab.data import streaming

    photos = write_tree(
        tmp_path / "photos", {c: [noise(i + 40 * k) for i in range(40)] for k, c in enumerate("ab")}
    )
    original, answered, calls = Trainer._train_step, streaming._answered, {"n": 0}

    def step(self, x, y):
        calls["n"] += 1
        if calls["n"] == 3:
            worker = multiprocessing.active_children()[0].pid
            subprocess.run(["kill", "-KILL", str(worker)], check=True)
        return original(self, x, y)

    def lost_at_the_third(loader):
        for i, batch in enumerate(answered(loader)):
            if i == 2:
                raise streaming.workers_stopped("the data loader's worker processes")
            yield batch

    if found == "by SIGCHLD":
        monkeypatch.setattr(Trainer, "_train_step", step)
    else:
        monkeypatch.setattr(streaming, "_answered", lost_at_the_third)
    run = tmp_path / "run"
    args = ["--data", str(photos), "--model", "resnet8", "--input-size", "8", "--batch-size", "8"]
    code = main(["train", *args, "--stream", "--num-workers", "2", "--out", str(run)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert re.fullmatch(
        r"error: a data loader worker process stopped (\(.*killed.*\)|without an answer) at "
        r"epoch 1, step \d, most often the system ending it for lack of memory; the last "
        rf"checkpoint is kept; continue with resnetlab train --resume {re.escape(str(run))}, "
        r"giving fewer worker processes \(--num-workers 1\)",
        err.strip().splitlines()[-1],
    ), err
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 0  # the start's, kept
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"


def test_a_second_ctrl_c_in_the_middle_of_a_step_keeps_the_last_checkpoint(
    tmp_path, monkeypatch, capsys
):
    # Both arrive in the third step's forward pass, after its BN layers moved their
    # statistics: a checkpoint then would hold part of a step, which --resume trains again.
    original, calls = Trainer._train_step, {"n": 0}

    def twice(module, args, output):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    def step(self, x, y):
        calls["n"] += 1
        if calls["n"] != 3:
            return original(self, x, y)
        handle = self.model.fc.register_forward_hook(twice)
        try:
            return original(self, x, y)
        finally:
            handle.remove()

    monkeypatch.setattr(Trainer, "_train_step", step)
    with pytest.raises(KeyboardInterrupt):
        train(**FAST, epochs=1, out=str(tmp_path / "run"))
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert (state["step"], int(state["model"]["bn1.num_batches_tracked"])) == (0, 0)  # the start's
    err = " ".join(capsys.readouterr().err.split())
    assert "interrupted in the middle of step 3, which a checkpoint cannot hold: the last" in err


def test_a_model_file_names_its_data_without_the_folders_above(tmp_path):
    photos = tmp_path / "private" / "photos"
    for k, colour in enumerate([(200, 0, 0), (0, 0, 200)]):
        (photos / f"c{k}").mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (8, 8), colour).save(photos / f"c{k}" / f"{i}.png")
    result = train(**{**FAST, "data": str(photos)}, max_steps=1, out=str(tmp_path / "run"))
    training = resnetlab.load_model(result.run_dir / "last.safetensors").meta.training
    assert training["data"] == "photos" and "private" not in json.dumps(training)
    # The run folder, which stays where it was made, keeps the whole path for --resume.
    assert TrainConfig.load(result.run_dir / "config.json")["data"] == str(photos)


def test_a_run_folder_is_not_overwritten(tmp_path):
    train(**FEW, epochs=1, out=str(tmp_path / "run"))
    with pytest.raises(
        resnetlab.ResnetlabError, match="already holds a run; continue it with resume='"
    ):
        train(**FEW, epochs=1, out=str(tmp_path / "run"))


def test_files_a_new_run_would_write_over_are_kept(tmp_path, capsys):
    # Model files whose checkpoint was deleted to save space; a config.json of one's own;
    # a run stopped before its first checkpoint: each is kept, with the way on named.
    trained = train(**FAST, max_steps=1, out=str(tmp_path / "trained")).run_dir
    (trained / "checkpoint.pt").unlink()
    own = tmp_path / "project"
    own.mkdir()
    (own / "config.json").write_text('{"mine": true}\n')
    early = tmp_path / "early"
    early.mkdir()
    shutil.copy(trained / "config.json", early / "config.json")
    capsys.readouterr()
    for folder, kept in [
        (trained, "config.json, cpu_plan.json, best.safetensors, last.safetensors, summary"),
        (own, "config.json"),
        (early, "config.json"),
    ]:
        before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
        assert main(["train", "--model", "resnet8", "--max-steps", "1", "--out", str(folder)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {folder} already holds {kept}")
        assert "which a new run would write over; choose another --out" in err
        assert err.count("\n") == 1 and ("--resume" in err) == (folder != trained)
        assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
    assert err.endswith(
        "or, if it is a run stopped before its first checkpoint, continue it with "
        f"--resume {early}\n"
    )
    assert main(["train", "--resume", str(early)]) == 0  # from the start, where it stopped
    assert (early / "checkpoint.pt").exists()


def test_a_folder_of_images_is_not_a_run_folder(tmp_path, capsys):
    """--out naming a folder of one's photos (new/ of images to predict) is refused, as the
    run's figures would be read as images with them; the folder is left as it was."""
    photos = tmp_path / "new"
    photos.mkdir()
    for i in range(4):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(photos / f"{i}.png")
    capsys.readouterr()
    assert main(["train", "--model", "resnet8", "--max-steps", "1", "--out", str(photos)]) == 2
    assert capsys.readouterr().err == (
        f"error: {photos} holds images (0.png, 1.png, 2.png, ...), which the run's figures "
        "(curves.png, confusion.png, errors.png) would join: choose a new or empty --out\n"
    )
    assert sorted(p.name for p in photos.iterdir()) == ["0.png", "1.png", "2.png", "3.png"]


def test_runs_started_in_the_same_second_each_get_their_own_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(report_module.time, "strftime", lambda fmt: "20261204-120000")
    first = report_module.new_run_dir("resnet8", "digits", tmp_path)
    second = report_module.new_run_dir("resnet8", "digits", tmp_path)
    assert first.is_dir() and second.is_dir()  # made when named: a second run cannot take it
    assert (first.name, second.name) == (
        "resnet8-digits-20261204-120000",
        "resnet8-digits-20261204-120000-2",
    )
    monkeypatch.chdir(tmp_path)
    third = train(**FAST, max_steps=1).run_dir
    assert third == Path("runs/resnet8-digits-20261204-120000")
    assert (third / "last.safetensors").is_file()


def test_a_run_that_cannot_start_leaves_no_empty_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(resnetlab.ResnetlabError):
        train(**{**FAST, "data": "no-such-folder"})
    assert list(tmp_path.iterdir()) == []  # nor runs/, which it made
    (tmp_path / "runs").mkdir()
    with pytest.raises(resnetlab.ResnetlabError):
        train(**{**FAST, "data": "no-such-folder"})
    assert list((tmp_path / "runs").iterdir()) == []  # a runs/ that was there stays
    # Nor in a data folder that the default runs/ would be inside of.
    photos = tmp_path / "photos"
    for k, colour in enumerate([(200, 0, 0), (0, 0, 200)]):
        (photos / f"c{k}").mkdir(parents=True)
        Image.new("RGB", (8, 8), colour).save(photos / f"c{k}" / "0.png")
    monkeypatch.chdir(photos)
    with pytest.raises(resnetlab.ResnetlabError) as caught:
        train(**{**FAST, "data": "."})
    assert str(caught.value) == (  # the data named as given
        "the default run folder, in runs/, is inside the data folder .; the run's "
        "figures would become training images: give out outside it"
    )
    assert sorted(p.name for p in photos.iterdir()) == ["c0", "c1"]


def test_a_folder_another_run_trains_in_is_refused_before_the_data_is_read(
    tmp_path, monkeypatch, hold_in_another_process
):
    run = tmp_path / "run"
    train(**FAST, max_steps=1, out=str(run))
    holder = hold_in_another_process(run)  # a run of the same command still training
    read = []
    monkeypatch.setattr(sys.modules[Trainer.__module__], "load_dataset", read.append)
    with pytest.raises(FolderInUse, match=f"in use by process {holder.pid}: a run is training"):
        train(**FAST, max_steps=2, out=str(run))
    with pytest.raises(FolderInUse, match=r"a run is training in it; wait for it to end$"):
        train(resume=run, max_steps=2)
    fresh = tmp_path / "new"
    fresh.mkdir()
    hold_in_another_process(fresh)
    with pytest.raises(FolderInUse, match=r"or choose another out$"):
        train(**FAST, max_steps=1, out=str(fresh))
    assert read == [] and sorted(p.name for p in fresh.iterdir()) == [".lock"]


def test_a_read_only_run_folder_is_named_before_the_data_is_read(tmp_path, monkeypatch, capsys):
    import tempfile

    run = tmp_path / "run"
    train(**FAST, max_steps=1, out=str(run))
    capsys.readouterr()
    empty = tmp_path / "empty"
    empty.mkdir()
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    make = tempfile.TemporaryFile

    def read_only(*args, dir=None, **kwargs):  # a folder on a read-only mount
        if dir is not None and Path(dir) in (run, empty):
            raise OSError(errno.EROFS, "Read-only file system")
        return make(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    read = []
    monkeypatch.setattr(sys.modules[Trainer.__module__], "load_dataset", read.append)
    flags = ["--model", "resnet8", "--max-steps", "1"]
    assert main(["train", *flags, "--out", str(empty)]) == 2
    assert capsys.readouterr().err == (
        f"error: cannot write {empty}: Read-only file system; choose another --out, a folder "
        "you can write to\n"
    )
    # Resuming cannot move to another folder: the fix is the folder's, not "choose another".
    assert main(["train", "--resume", str(run), "--max-steps", "2"]) == 2
    assert capsys.readouterr().err == (
        f"error: cannot write {run}: Read-only file system; --resume trains on in the run's own "
        "folder: make it writable, or copy it to a folder you can write to and resume the copy\n"
    )
    assert read == [] and list(empty.iterdir()) == []
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_a_finished_or_failed_run_lets_its_folder_go(tmp_path, capsys, hold_in_another_process):
    run = tmp_path / "run"
    with pytest.raises(resnetlab.ResnetlabError):
        train(**{**FAST, "data": "no-such-folder"}, out=str(run))
    assert not run.exists()  # made for the run, removed with it
    train(**FAST, max_steps=1, out=str(run))
    assert not (run / ".lock").exists()
    # Another process may now hold it, as a run continuing it there does (storage.hold_folder,
    # without importing PyTorch); once that process has ended, the run continues here.
    holder = hold_in_another_process(run)
    holder.kill()
    holder.wait()
    train(resume=run, max_steps=2)
    assert json.loads((run / "summary.json").read_text())["steps"] == 2
    assert not (run / ".lock").exists()
    # A trainer made and never run lets it go when it is collected.
    trainer = Trainer(TrainConfig(**FAST, max_steps=3), run_dir=run, resume=True)
    assert (run / ".lock").exists()
    del trainer
    gc.collect()
    assert not (run / ".lock").exists()


def test_a_nan_loss_in_fp16_names_float16s_overflow_too(tmp_path, capsys):
    args = ["train", "--model", "resnet8", "--data", "digits", "--input-size", "8"]
    args += ["--precision", "fp16", "--lr", "1e6", "--max-steps", "6", "--out", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "became NaN/inf" in err and "lower --lr" in err
    assert err.rstrip().endswith(
        "in fp16 the activations may have overflowed (float16 holds at most 65,504): "
        "--precision bf16 or fp32 cannot"
    )


def test_nan_loss_stops_with_a_message_and_a_loadable_checkpoint(tmp_path, capsys):
    out = tmp_path / "nan"
    code = main(
        [
            "train",
            "--model",
            "resnet20",
            "--data",
            "digits",
            "--input-size",
            "8",
            "--lr",
            "1e12",
            "--epochs",
            "3",
            "--log-every",
            "2",
            "--out",
            str(out),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "became NaN/inf" in err and "lower --lr" in err
    assert "fp16" not in err  # in fp32: no overflow of float16 to name
    state = load_checkpoint(out / "checkpoint.pt")
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert json.loads((out / "summary.json").read_text())["status"] == "diverged"


KILLER = Path(__file__).parents[1] / "faults" / "killer.py"


@pytest.mark.slow  # tests/faults/test_kill.py kills runs at counted steps and writes too
def test_sigkill_mid_epoch_leaves_a_checkpoint_that_resumes(tmp_path):
    out = tmp_path / "killed"
    args = [
        "--model",
        "resnet8",
        "--data",
        "digits",
        "--input-size",
        "8",
        "--epochs",
        "3",
        "--batch-size",
        "32",
        "--log-every",
        "1",
        "--out",
        str(out),
    ]
    # Killed at a counted event, not a time: the 50th step, in the second epoch of 45.
    env = {**os.environ, "FAULT_KILL": "step:write:50:0.5"}
    done = subprocess.run(
        [sys.executable, str(KILLER), "train", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,  # a hang guard, far beyond any machine's run time
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == 1 and state["batch"] == 0
    assert main(["train", "--resume", str(out), "--epochs", "2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["epochs"] == 2


def test_resume_of_a_folder_without_a_run_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nothere")]) == 2
    assert capsys.readouterr().err == (
        f"error: no run folder at {tmp_path / 'nothere'}: --resume takes the folder a run was "
        "written to (the run folder its first lines printed, or its --out)\n"
    )
    # A file of a run (its model file, its checkpoint): the folder it is in is named.
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "best.safetensors").write_bytes(b"weights")
    assert main(["train", "--resume", str(run / "best.safetensors")]) == 2
    assert capsys.readouterr().err == (
        f"error: --resume takes a run folder; {run / 'best.safetensors'} is a file: give the run "
        f"folder it is in, --resume {run}\n"
    )
    (tmp_path / "photo.png").write_bytes(b"png")
    assert main(["train", "--resume", str(tmp_path / "photo.png")]) == 2
    assert capsys.readouterr().err == (
        f"error: --resume takes a run folder; {tmp_path / 'photo.png'} is a file\n"
    )


def test_ctrl_c_on_the_cli_says_where_the_run_stopped_once(tmp_path, monkeypatch, capsys):
    def interrupting_step(self, x, y):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_train_step", interrupting_step)
    args = ["train", "--model", "resnet20", "--data", "digits", "--input-size", "8"]
    assert main([*args, "--max-steps", "2", "--out", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (
        "interrupted at epoch 1, batch 0; checkpoint saved. Continue with: resnetlab train "
        f"--resume {tmp_path / 'run'}"
    )
    assert "interrupted" not in err[:-1]


class _ReaderGoneAfter(io.StringIO):
    """A pipe whose reader leaves (``| head``) once ``text`` has been written to it."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def write(self, s: str) -> int:
        if self.text in self.getvalue():
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")
        return super().write(s)


def test_a_run_whose_output_reader_went_away_stops_as_on_ctrl_c(tmp_path, monkeypatch):
    # `resnetlab train 2>&1 | head -3`: the lines after the first epoch's find no reader:
    # the second epoch's. The run stops at its next step with its checkpoint (it ended
    # "failed" at the write), as a process ended by SIGPIPE does, and a resume finishes it.
    stderr = _ReaderGoneAfter("epoch   1/3")
    monkeypatch.setattr(sys, "stderr", stderr)
    out = tmp_path / "run"
    args = ["--model", "resnet8", "--data", "digits", "--input-size", "8", "--epochs", "3"]
    args += ["--subset", "320", "--val-subset", "100", "--batch-size", "64"]  # 5 steps an epoch
    assert main(["train", *args, "--out", str(out)]) == 128 + 13
    assert "epoch   1/3" in stderr.getvalue() and "epoch   2/3" not in stderr.getvalue()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    state = load_checkpoint(out / "checkpoint.pt")
    assert (state["epoch"], state["batch"]) == (2, 0)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert main(["train", "--resume", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["epochs"] == 3


def _stopped_by_a_lost_reader(tmp_path, monkeypatch, stderr) -> dict:
    """`train` of digits with ``stderr`` (a pipe whose reader the test closes on the way):
    it stops as a run whose output reader went away does (exit status 141, interrupted);
    its checkpoint."""
    monkeypatch.setattr(sys, "stderr", stderr)
    out = tmp_path / "run"
    args = ["--model", "resnet8", "--data", "digits", "--input-size", "8", "--epochs", "3"]
    try:
        assert main(["train", *args, "--out", str(out)]) == 128 + 13
    finally:
        stderr.close()
    assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"
    return load_checkpoint(out / "checkpoint.pt")


def test_a_warning_that_finds_the_output_reader_gone_stops_the_run_as_a_log_line_does(
    tmp_path, monkeypatch
):
    # `resnetlab train ... 2>&1 | head -1`, the reader gone before a warning, the first
    # write after it: the run ended "failed" with exit status 1 at the warning, where a
    # progress line stops it at its next step, checkpoint saved, exit status 141.
    read, write = os.pipe()
    stderr = os.fdopen(write, "w", buffering=1)
    original, calls = Trainer._train_step, {"n": 0}

    def step(self, x, y):
        calls["n"] += 1
        if calls["n"] == 2:
            os.close(read)
            warnings.warn("a note on the data", DataWarning, stacklevel=1)
        return original(self, x, y)

    monkeypatch.setattr(Trainer, "_train_step", step)
    state = _stopped_by_a_lost_reader(tmp_path, monkeypatch, stderr)
    assert (state["epoch"], state["batch"]) == (0, 2)


def test_a_warning_before_the_run_log_that_finds_the_reader_gone_stops_the_run_too(
    tmp_path, monkeypatch
):
    # The reader gone before a warning written while the run was set up (its data read),
    # before the run's log existed: stderr was sent nowhere and the run trained to its end
    # unseen, where a log line finding it gone stops it at its first step, exit status 141.
    train_module = sys.modules[Trainer.__module__]
    read, write = os.pipe()
    stderr = os.fdopen(write, "w", buffering=1)
    sink = tmp_path / "sink"

    def discard(stream):  # as storage.discard_output, into a file of the test's own
        fd = os.open(sink, os.O_WRONLY | os.O_CREAT)
        try:
            os.dup2(fd, stream.fileno())
        finally:
            os.close(fd)

    def warn_early(*args, **kwargs):
        os.close(read)
        warnings.warn("a note on the settings", SettingWarning, stacklevel=1)

    monkeypatch.setattr(report_module, "discard_output", discard)
    monkeypatch.setattr(train_module, "warn_of_settings_that_do_not_apply", warn_early)
    state = _stopped_by_a_lost_reader(tmp_path, monkeypatch, stderr)
    assert (state["epoch"], state["batch"]) == (0, 0)


def test_a_finished_run_is_freed_at_once_not_by_the_garbage_collector(tmp_path, monkeypatch):
    # A reference from the run's log back to its trainer (a callback) made a cycle: the
    # trainer, its model and its loaders' worker processes lived on until the collector
    # found it, whose joins of those workers then cost seconds in whatever ran next.
    # (A first run in a process is kept a while by matplotlib's first font lookup, whose
    # parser caches its exceptions with their frames: the second is the one looked at.)
    train(**FAST, max_steps=2, out=str(tmp_path / "first"))
    made = []
    init = Trainer.__init__

    def recorded(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(weakref.ref(self))

    monkeypatch.setattr(Trainer, "__init__", recorded)
    gc.collect()
    gc.disable()
    try:
        train(**FAST, max_steps=2, out=str(tmp_path / "run"))
        assert [ref() for ref in made] == [None]
    finally:
        gc.enable()


def test_a_finished_run_whose_result_finds_no_reader_exits_0(tmp_path, monkeypatch):
    # `resnetlab train | head -0`: stdout's reader gone at the last line, once the run
    # has finished: nothing to stop, and no SIGPIPE status for a run that did its work.
    monkeypatch.setattr(sys, "stdout", _ReaderGoneAfter(""))
    out = tmp_path / "run"
    args = ["--model", "resnet8", "--data", "digits", "--input-size", "8", "--max-steps", "2"]
    assert main(["train", *args, "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["status"] == "finished"


def test_the_first_line_counts_what_the_run_trains(tmp_path, capsys):
    # A length in steps that ends within an epoch says where; one image is one image.
    args = ["train", "--model", "resnet8", "--data", "digits", "--input-size", "8"]
    out = str(tmp_path / "a")
    assert (
        main([*args, "--subset", "40", "--batch-size", "8", "--max-steps", "7", "--out", out]) == 0
    )
    first = next(
        line for line in capsys.readouterr().err.splitlines() if line.startswith("resnet8")
    )
    assert ": 40 training images, " in first
    assert "; recipe auto, 7 steps (2 epochs of 5 steps, the last 2); " in first
    out = str(tmp_path / "b")
    assert (
        main([*args, "--subset", "40", "--batch-size", "8", "--max-steps", "3", "--out", out]) == 0
    )
    assert "; recipe auto, 3 steps (of an epoch of 5); " in capsys.readouterr().err
    assert main([*args, "--subset", "1", "--max-steps", "1", "--out", str(tmp_path / "c")]) == 0
    assert ": 1 training image, " in capsys.readouterr().err


def test_a_run_whose_output_reader_went_away_stops_where_there_is_no_sigpipe(tmp_path, monkeypatch):
    # Windows: no signal.SIGPIPE, nor 13 among signal.Signals. The run stops as on Linux,
    # with its checkpoint and exit status 141, not with a ValueError naming the signal.
    import enum
    import types

    train_module = sys.modules["resnetlab.engine.train"]  # (the package's train is the function)
    windows = {n: int(getattr(signal, n)) for n in ("SIGABRT", "SIGFPE", "SIGILL", "SIGINT")}
    windows |= {n: int(getattr(signal, n)) for n in ("SIGSEGV", "SIGTERM")}
    stand_in = types.SimpleNamespace(**{k: getattr(signal, k) for k in dir(signal)})
    del stand_in.SIGPIPE
    stand_in.Signals = enum.IntEnum("Signals", windows)
    monkeypatch.setattr(train_module, "signal", stand_in)
    monkeypatch.setattr(sys, "stderr", _ReaderGoneAfter("epoch   1/3"))
    out = tmp_path / "run"
    args = ["--model", "resnet8", "--data", "digits", "--input-size", "8", "--epochs", "3"]
    args += ["--subset", "320", "--val-subset", "100", "--batch-size", "64"]  # 5 steps an epoch
    assert main(["train", *args, "--out", str(out)]) == 128 + 13
    assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"


def test_ema_model_is_what_gets_saved(tmp_path):
    result = train(**FEW, epochs=1, ema_decay=0.9, out=str(tmp_path / "ema"))
    saved = resnetlab.load_model(result.run_dir / "last.safetensors").state_dict()
    got = result.model.state_dict()
    assert all(torch.equal(saved[k], got[k]) for k in saved)
    assert math.isfinite(result.summary["final_val_acc"])


# With an EMA and no BN recalibration: the EMA's BN statistics follow each rank's own
# shard, and are made rank 0's with the model's, so that every rank validates (and stops)
# alike; the run returns the EMA model.
DDP_SCRIPT = """
import os, sys, torch, resnetlab
result = resnetlab.train(model="resnet8", data="digits", input_size=8, crop_padding=1,
                         batch_size=32, subset=320, val_subset=100, epochs=2, log_every=5,
                         device="cpu", ema_decay=0.9, recalibrate_bn=False)
torch.save(result.model.state_dict(), os.path.join(sys.argv[1], f"rank{os.environ['RANK']}.pt"))
"""


def _two_ranks(script: str, tmp_path: Path, timeout: float = 1800) -> tuple[dict, dict]:
    """Run ``script`` under torchrun in two CPU processes; the state dicts each one saved.
    ``timeout``: a hang guard, far beyond any machine's run time."""
    (tmp_path / "ddp_train.py").write_text(script)
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a free port of its own choosing
        "--nproc-per-node",
        "2",
    ]
    done = subprocess.run(
        [*torchrun, str(tmp_path / "ddp_train.py"), str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return tuple(torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))


def test_ddp_on_two_cpu_processes_keeps_ranks_in_sync(tmp_path):
    rank0, rank1 = _two_ranks(DDP_SCRIPT, tmp_path)
    assert any("running_var" in k for k in rank0)  # the EMA's BN statistics too
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1  # only rank 0 writes
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["status"] == "finished"
    # Each process took half of every epoch: 320 images -> 2 x 160 -> 5 batches of 32.
    assert summary["steps"] == 2 * (160 // 32)


# Rank 0's output has lost its reader before the run begins (a closed pipe): under
# torchrun the run goes on to its end, as a process stopping alone would leave the other
# waiting for it at its next step (and rank 0 stopped at its first).
LOST_OUTPUT_SCRIPT = """
import os, sys, torch, resnetlab
if os.environ["RANK"] == "0":
    read, write = os.pipe()
    os.close(read)
    sys.stderr = os.fdopen(write, "w")
result = resnetlab.train(model="resnet8", data="digits", input_size=8, crop_padding=1,
                         batch_size=64, max_steps=4, log_every=1, device="cpu")
torch.save(result.model.state_dict(), os.path.join(sys.argv[1], f"rank{os.environ['RANK']}.pt"))
"""


@pytest.mark.slow
def test_a_lost_output_under_torchrun_does_not_stop_one_rank_alone(tmp_path):
    rank0, rank1 = _two_ranks(LOST_OUTPUT_SCRIPT, tmp_path, timeout=600)
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    (run,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 4


def test_tensorboard_logs(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train(**FAST, epochs=1, tensorboard=True, out=str(tmp_path / "tb"))
    events = EventAccumulator(str(result.run_dir / "tensorboard")).Reload()
    tags = events.Tags()["scalars"]
    assert {"step/train_loss", "epoch/val_acc"} <= set(tags)
    assert len(events.Scalars("step/train_loss")) == 22 // 5 + 1  # every 5 steps and the last


def test_subset_and_max_steps(tmp_path):
    result = train(**FAST, subset=640, val_subset=100, max_steps=13, out=str(tmp_path / "few"))
    summary = result.summary
    # About 640 images: 10 steps of 64 per epoch, 13 in all.
    assert summary["steps"] == 13 and summary["epochs"] == 2
    rows = list(csv.DictReader((result.run_dir / "metrics.csv").read_text().splitlines()))
    assert [int(r["step"]) for r in rows if r["kind"] == "epoch"] == [10, 13]
    model = resnetlab.load_model(result.run_dir / "last.safetensors")
    assert model.meta.training["steps"] == 13
    # The subsets have the size asked for, and keep each class's share of the 1,437
    # training images (less than one image of rounding per class).
    full = Trainer(TrainConfig(**FAST, out=str(tmp_path / "full"))).train_loader.labels
    trainer = Trainer(TrainConfig(**FAST, subset=640, val_subset=100, out=str(tmp_path / "x")))
    assert trainer.num_train == 640 and trainer.num_val == 100
    share = torch.bincount(full, minlength=10) * 640 / len(full)
    kept = torch.bincount(trainer.train_loader.labels, minlength=10)
    assert (kept - share).abs().max() < 1


def test_a_subset_smaller_than_the_classes_says_so_with_its_fix(tmp_path):
    # Digits has 10 classes: 8 training images leave 2 without any, 3 validation images 7.
    few = dict(FAST, batch_size=2, subset=8, val_subset=3, out=str(tmp_path / "few"))
    with command_line(), warnings.catch_warnings(record=True) as caught:  # as `train` says it
        warnings.simplefilter("always")
        trainer = Trainer(TrainConfig(**few))
    said = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]

    def missing(loader, shown=5):  # the classes a subset took no image of, as named
        names = [repr(str(c)) for c in sorted(set(range(10)) - set(loader.labels.tolist()))]
        return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")

    assert said == [
        f"--subset 8 leaves 2 classes without training images ({missing(trainer.train_loader)}"
        "): it takes fewer images than the 10 classes; give --subset 10 or more to keep one "
        "image of each class at least",
        f"--val-subset 3 leaves 7 classes without validation images "
        f"({missing(trainer.val_loader)}): it takes fewer images than the 10 classes; give "
        "--val-subset 10 or more to keep one image of each class at least",
    ]  # and not the advice to add images of a class, which has plenty


def test_a_batch_that_leaves_a_fifth_of_the_images_out_of_each_epoch_is_warned_of(tmp_path):
    # Digits' 1,438 training images in full batches of 1,000: 438 are never in an epoch
    def setting_warnings(**options):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            Trainer(TrainConfig(**{**FAST, "out": str(tmp_path / "r"), **options}))
        return [str(w.message) for w in caught if issubclass(w.category, SettingWarning)]

    assert setting_warnings(batch_size=1000) == [
        "a batch of 1000 leaves 438 of the 1,438 training images out of each epoch (the last, "
        "partial batch is dropped; the shuffle leaves out others each epoch); batch_size=719 "
        "trains on all of them"
    ]
    assert setting_warnings(batch_size=64) == []  # 22 batches, 30 images left: no more
    assert setting_warnings(batch_size=None, recipe="auto") == []  # the recipe's own choice


def test_a_subset_larger_than_the_images_says_all_are_used(tmp_path):
    # Digits' 1,797 images less the default fifth held out: --subset 5000 takes them all.
    many = dict(FAST, subset=5000, val_subset=1000, out=str(tmp_path / "many"))
    with command_line(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = Trainer(TrainConfig(**many))
    said = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert said == [
        f"--subset 5000 is more than the {trainer.num_train:,} training images: all of them "
        "are used",
        f"--val-subset 1000 is more than the {trainer.num_val:,} validation images: all of "
        "them are used",
    ]
    assert trainer.num_train + trainer.num_val == 1797


def test_num_workers_for_images_held_in_memory_is_named_as_not_applying(tmp_path):
    def warned(**given):
        with command_line(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            Trainer(TrainConfig(**FAST, subset=128, out=str(tmp_path / "w"), **given))
        return [str(w.message) for w in caught if issubclass(w.category, SettingWarning)]

    assert warned(num_workers=2) == [
        "--num-workers 2 does not apply: the training images are held in memory and "
        "augmented there in batches, without worker processes; it sets those of data "
        "streamed from disk (--stream)"
    ]
    assert warned() == []


def test_a_run_resumed_after_an_unvalidated_epoch_goes_on_to_its_target(tmp_path, monkeypatch):
    # Validated every third epoch: stopped in the second, the run has no validated accuracy
    # yet, and the first epoch's training accuracy is not what --target-accuracy stops at.
    run = dict(FAST, batch_size=32, subset=320, val_subset=100, epochs=4, val_every=3)
    run.update(target_accuracy=0.01, out=str(tmp_path / "run"))
    train_interrupted(monkeypatch, 15, **run)
    resumed = train(resume=tmp_path / "run")
    assert (resumed.summary["epochs"], resumed.summary["steps"]) == (3, 30)
    assert resumed.summary["reached_target"] and resumed.summary["final_val_acc"] is not None


def test_max_steps_resumes_to_the_same_weights(tmp_path, monkeypatch):
    # 5 steps an epoch: stopped in the second, which --max-steps cuts short.
    whole = train(**FEW, max_steps=8, out=str(tmp_path / "whole"), deterministic=True)
    split = dict(**FEW, max_steps=8, out=str(tmp_path / "split"), deterministic=True)
    train_interrupted(monkeypatch, 7, **split)
    resumed = train(resume=tmp_path / "split")
    assert resumed.summary["steps"] == whole.summary["steps"] == 8
    expected, got = _weights(whole.model), _weights(resumed.model)
    assert all(torch.equal(expected[k], got[k]) for k in expected)


# What a run on CUDA saves in its optimizer's groups. A step captured in a CUDA graph keeps
# its learning rates in device tensors; resumed without a graph (on the CPU,
# --no-cuda-graphs), AdamW refused them: "lr as a Tensor is not supported for
# capturable=False". CUDA's kernels are fused (capturable where a graph ran the step);
# resumed on a CPU they were taken along, and a capturable AdamW refused the CPU's tensors.
SAVED_ON_CUDA = {
    "tensor learning rates": lambda group: group.update(lr=torch.tensor(group["lr"])),
    "fused, capturable kernels": lambda group: group.update(
        fused=True, foreach=None, capturable=True
    ),
}


@pytest.mark.parametrize("saved", SAVED_ON_CUDA.values(), ids=SAVED_ON_CUDA)
def test_a_checkpoint_saved_on_cuda_resumes_on_the_cpu(tmp_path, monkeypatch, uninterrupted, saved):
    run = dict(**FEW, optimizer="adamw", lr=1e-3, max_steps=8, deterministic=True)
    whole = uninterrupted(**run)
    train_interrupted(monkeypatch, 7, **run, out=str(tmp_path / "split"))
    checkpoint = tmp_path / "split" / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=True)
    for group in state["optimizer"]["param_groups"]:
        saved(group)
    torch.save(state, checkpoint)
    resumed = train(resume=tmp_path / "split")
    assert resumed.summary["steps"] == 8
    expected, got = _weights(whole.model), _weights(resumed.model)
    assert all(torch.equal(expected[k], got[k]) for k in expected)


@pytest.mark.parametrize("kernels", [dict(fused=True), dict(foreach=True, capturable=True)])
def test_a_cpu_runs_adam_state_resumes_on_the_device_of_fused_kernels(kernels):
    # A CPU run's foreach AdamW keeps its step counts on the CPU; resumed on CUDA with fused
    # (or capturable, in a CUDA graph) kernels, they stayed there, and CUDA's fused Adam
    # reads them as device memory. The meta device stands in for CUDA.
    cpu = torch.nn.Linear(3, 2)
    saved_by = torch.optim.AdamW(cpu.parameters(), foreach=True)
    cpu(torch.randn(4, 3)).sum().backward()
    saved_by.step()
    device = torch.nn.Linear(3, 2, device="meta")
    try:
        optimizer = torch.optim.AdamW(device.parameters(), **kernels)
    except RuntimeError:
        pytest.skip("this torch's fused AdamW takes no meta tensors (torch 2.4)")
    load_optimizer_state(optimizer, saved_by.state_dict())
    for p in device.parameters():
        assert {v.device for v in optimizer.state[p].values()} == {p.device}
    assert all(optimizer.param_groups[0][k] == v for k, v in kernels.items())


def test_a_gpu_runs_random_state_resumes_on_a_machine_with_fewer_gpus(monkeypatch):
    # A checkpoint kept every GPU's random state (torch.cuda.get_rng_state_all) and resuming
    # set them all: on a machine with fewer GPUs, setting one it lacks raised IndexError.
    # torch.cuda's random state calls are stubbed: nothing here runs on a GPU.
    def state_of(device):
        return torch.full((4,), device.index, dtype=torch.uint8)

    restored = {}
    monkeypatch.setattr(torch.cuda, "get_rng_state", state_of)
    monkeypatch.setattr(torch.cuda, "set_rng_state", restored.__setitem__)
    saved = cuda_rng_state(torch.device("cuda", 1))  # trained on one machine's second GPU
    restore_cuda_rng(saved, torch.device("cuda", 0))  # resumed on another's only one
    assert restored == {saved: torch.device("cuda", 0)} and saved.tolist() == [1] * 4
    restored.clear()
    older = [state_of(torch.device("cuda", i)) for i in range(2)]  # every GPU's, in a list
    restore_cuda_rng(older, torch.device("cuda", 1))
    assert restored == {older[1]: torch.device("cuda", 1)}
    restored.clear()
    restore_cuda_rng(older, torch.device("cuda", 2))  # a GPU the older checkpoint lacks
    restore_cuda_rng(saved, torch.device("cpu"))
    assert cuda_rng_state(torch.device("cpu")) is None and not restored


def test_a_length_shorter_than_an_interrupted_run_went_is_refused(tmp_path, monkeypatch, capsys):
    # Stopped in its second epoch of 5 steps: one epoch would end before where it stands,
    # and is not recorded as finished there.
    run = tmp_path / "run"
    train_interrupted(monkeypatch, 8, **FEW, epochs=3, out=str(run))
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert main(["train", "--resume", str(run), "--epochs", "1"]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err == (
        f"error: {run} stopped at step 7, past the 5 steps now asked for; give --epochs 2 or "
        "more (or --max-steps 7 or more), or leave the length out to train on to its own end"
    )
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["status"], summary["steps"], summary["epochs"]) == ("finished", 10, 2)


def test_a_run_ended_by_max_steps_resumes_and_extends(tmp_path, capsys):
    # 10 steps an epoch: 13 steps end inside the second epoch.
    few = dict(**FAST, subset=640, val_subset=100, deterministic=True)
    short = train(**few, max_steps=13, out=str(tmp_path / "short")).run_dir
    capsys.readouterr()
    assert main(["train", "--resume", str(short)]) == 0
    out = capsys.readouterr()
    assert f"{short} already finished its 13 steps; add --max-steps N (more than 13)" in (
        out.out + out.err
    )

    # Longer: the cut-short epoch goes on from its 3rd step, on the schedule of 25 steps
    # (with the warm-up the run had: 3 steps, a quarter of 13).
    longer = train(resume=short, max_steps=25)
    printed = capsys.readouterr()
    assert "resumed at step 13 of 25, in epoch 2 (" in printed.out + printed.err
    assert longer.summary["steps"] == 25 and longer.summary["epochs"] == 3
    rows = list(csv.DictReader((short / "metrics.csv").read_text().splitlines()))
    epochs = [(int(r["epoch"]), int(r["step"])) for r in rows if r["kind"] == "epoch"]
    assert epochs == [(1, 10), (2, 20), (3, 25)]
    whole = train(**few, max_steps=25, warmup_steps=3, out=str(tmp_path / "whole")).run_dir
    whole_rows = list(csv.DictReader((whole / "metrics.csv").read_text().splitlines()))

    def rates(rows):
        return {int(r["step"]): float(r["lr"]) for r in rows if int(r["step"]) > 13}

    assert rates(rows) == rates(whole_rows) and len(rates(rows)) >= 3

    # --epochs replaces the length in steps.
    assert train(resume=short, epochs=4).summary["steps"] == 40
    assert "the learning rate goes on at" not in capsys.readouterr().err
    # One step more: the stretched cosine is at its end, which is said.
    assert train(resume=short, max_steps=41).summary["steps"] == 41
    assert (
        "the learning rate goes on at 0% of its peak (cosine schedule, stretched to the new "
        "length), so the added steps change the weights little; to train on at a higher "
        f"rate, start a new run from these weights (pretrained='{short}')"
    ) in capsys.readouterr().err


def _metric_rows(run):
    rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    epochs = [(int(r["epoch"]), int(r["step"])) for r in rows if r["kind"] == "epoch"]
    return epochs, [int(r["step"]) for r in rows if r["kind"] == "step"]


def test_resuming_without_metrics_csv_says_which_rows_are_lost(tmp_path, capsys):
    # 10 steps an epoch; a run of 2 epochs, and one that --max-steps cut inside epoch 2.
    few = dict(**FAST, subset=640, val_subset=100, deterministic=True)
    ended = train(**few, epochs=2, out=str(tmp_path / "ended")).run_dir
    cut = train(**few, max_steps=13, out=str(tmp_path / "cut")).run_dir
    (ended / "metrics.csv").unlink()
    (cut / "metrics.csv").unlink()
    capsys.readouterr()

    # Finished: nothing trains, nothing is said lost, no metrics.csv appears.
    assert main(["train", "--resume", str(ended)]) == 0
    out = capsys.readouterr()
    assert f"{ended} already finished its 2 epochs" in out.out + out.err
    assert "missing" not in out.err and not (ended / "metrics.csv").exists()

    assert main(["train", "--resume", str(ended), "--epochs", "3"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "is missing" in line]
    assert lines == [
        f"warning: {ended / 'metrics.csv'} is missing: the rows of epochs 1-2 are lost; this "
        "run's rows, and its curves.png, start at epoch 3"
    ]
    epochs, steps = _metric_rows(ended)
    assert epochs == [(3, 30)] and steps and min(steps) > 20

    assert main(["train", "--resume", str(cut), "--max-steps", "25"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "is missing" in line]
    assert lines == [
        f"warning: {cut / 'metrics.csv'} is missing: the rows of epoch 1 and of the first 3 "
        "steps of epoch 2 are lost; this run's rows, and its curves.png, start at step 14, in "
        "epoch 2"
    ]
    epochs, steps = _metric_rows(cut)
    assert epochs == [(2, 20), (3, 25)] and steps and min(steps) > 13


def test_resuming_without_config_json_names_it_and_keeps_the_run(tmp_path, capsys):
    few = dict(**FAST, subset=128, val_subset=64)
    run = train(**few, epochs=1, out=str(tmp_path / "run")).run_dir
    (run / "config.json").unlink()
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    assert capsys.readouterr().err == (
        f"error: {run / 'config.json'} is missing, but {run} holds the run's checkpoint.pt: "
        f"--resume needs both; restore config.json, or start a new run from its weights: "
        f"--pretrained {run}\n"
    )
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    # The way out it names works without config.json.
    new = tmp_path / "new"
    args = ["--data", "digits", "--subset", "128", "--val-subset", "64", "--epochs", "1"]
    assert main(["train", "--pretrained", str(run), *args, "--out", str(new)]) == 0
    assert (new / "best.safetensors").exists()
    # Without best.safetensors (a run stopped in its first epoch) only the restore is named.
    (run / "best.safetensors").unlink()
    assert main(["train", "--resume", str(run)]) == 2
    assert capsys.readouterr().err.endswith("--resume needs both; restore config.json\n")


def test_a_rate_given_on_resuming_is_the_rate_it_trains_at(tmp_path):
    # The auto recipe's rate, kept by its loss guard in the checkpoint, gives way to --lr.
    few = dict(**FAST, subset=640, val_subset=100, deterministic=True)
    short = train(**few, max_steps=13, out=str(tmp_path / "short")).run_dir
    other = tmp_path / "other"
    shutil.copytree(short, other)
    auto_lr = json.loads((short / "config.json").read_text())["lr"]
    train(resume=short, max_steps=20)
    train(resume=other, max_steps=20, lr=3 * auto_lr)
    assert json.loads((other / "config.json").read_text())["lr"] == 3 * auto_lr

    def rates(run):
        rows = csv.DictReader((run / "metrics.csv").read_text().splitlines())
        return {int(r["step"]): float(r["lr"]) for r in rows if int(r["step"]) > 13}

    kept, given = rates(short), rates(other)
    assert kept.keys() == given.keys() and len(kept) >= 2
    assert all(given[k] == pytest.approx(3 * kept[k]) for k in kept)


def test_optimizer_settings_given_on_resuming_are_the_ones_it_trains_with(tmp_path):
    # Not the checkpoint's, which its optimizer state brings along, while config.json
    # records the new ones.
    run = train(**FAST, max_steps=2, out=str(tmp_path / "run")).run_dir
    saved = load_checkpoint(run / "checkpoint.pt")["optimizer"]["param_groups"]
    assert [(g["momentum"], g["nesterov"]) for g in saved] == [(0.9, True)] * 2
    train(resume=run, max_steps=3, momentum=0.5, nesterov=False, weight_decay=1e-3)
    groups = load_checkpoint(run / "checkpoint.pt")["optimizer"]["param_groups"]
    assert [(g["momentum"], g["nesterov"], g["weight_decay"]) for g in groups] == [
        (0.5, False, 1e-3),
        (0.5, False, 0.0),  # BN parameters and biases still without decay
    ]
    assert json.loads((run / "config.json").read_text())["momentum"] == 0.5


def test_resume_refuses_to_change_what_defines_the_run(tmp_path, capsys):
    run = train(**FEW, epochs=1, out=str(tmp_path / "run")).run_dir
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--model", "resnet20"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --resume continues {run} as it was set up; its --model cannot")
    assert main(["train", "--resume", str(run), "--model", FAST["model"], "--epochs", "1"]) == 0
    out = capsys.readouterr()
    assert f"{run} already finished its 1 epoch; add --epochs N" in out.out + out.err
    # The checkpoint counts batches of its size and holds its optimizer's state: a change
    # is named as one, not taken for a damaged checkpoint.
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    for flags, name in [
        (["--batch-size", "32"], "--batch-size"),
        (["--optimizer", "adamw"], "--optimizer"),
        (["--decay-norm-bias"], "--no-decay-norm-bias"),  # the setting's flag
        (["--weight-decay", "0", "--epochs", "2"], "--weight-decay"),
        (["--recipe", "course", "--epochs", "2"], "--recipe"),
    ]:
        assert main(["train", "--resume", str(run), *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --resume continues {run} as it was set up; its {name} ")
        assert "damaged" not in err and err.count("\n") == 1
    # A resumed run trains in its own folder: another --out is refused, not ignored.
    elsewhere = tmp_path / "elsewhere"
    assert main(["train", "--resume", str(run), "--out", str(elsewhere), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: --resume continues the run in {run}, where its files are, not in {elsewhere}; "
        f"drop --out (a new run with its settings in {elsewhere}: --config "
        f"{run / 'config.json'} --out {elsewhere})\n"
    )
    assert not elsewhere.exists()
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_an_out_of_range_value_in_a_runs_config_is_named_with_the_file_and_key(tmp_path, capsys):
    run = train(**FEW, epochs=1, schedule="constant", out=str(tmp_path / "run")).run_dir
    config = run / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "epochs": -3}))
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 2
    assert capsys.readouterr().err == f"error: {config}: epochs must be at least 1, got -3\n"
    # A flag's own value is its own; one that replaces the file's is taken.
    assert main(["train", "--resume", str(run), "--epochs", "0"]) == 2
    assert capsys.readouterr().err == "error: --epochs must be at least 1, got 0\n"
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    # The recipe given again, as it was: its preset does not replace the run's values.
    recipe = json.loads(config.read_text())["recipe"]
    assert main(["train", "--resume", str(run), "--epochs", "2", "--recipe", recipe]) == 0
    saved = json.loads(config.read_text())
    assert (saved["epochs"], saved["recipe"], saved["schedule"]) == (2, recipe, "constant")


def test_a_run_whose_data_moved_resumes_on_it_where_given(tmp_path, capsys):
    photos = tmp_path / "photos"
    for i, colour in enumerate(("red", "blue")):
        (photos / colour).mkdir(parents=True)
        for j in range(6):
            Image.new("RGB", (12, 12), (200 * (1 - i), 9 * j, 200 * i)).save(
                photos / colour / f"{j}.png"
            )
    run = tmp_path / "run"
    args = ["--model", "resnet8", "--input-size", "16", "--device", "cpu"]
    assert main(["train", "--data", str(photos), *args, "--epochs", "1", "--out", str(run)]) == 0
    moved = photos.rename(tmp_path / "photos2")
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    assert capsys.readouterr().err == (
        f"error: {run} trained on {photos}, which is not there now; if it moved, give its new "
        f"place ({moved}{os.sep}?): --resume {run} --data PATH\n"
    )
    assert main(["train", "--resume", str(run), "--epochs", "2", "--data", str(moved)]) == 0
    err = capsys.readouterr().err
    assert f"{photos}, which {run} trained on, is not there now: resuming on {moved}" in err
    assert json.loads((run / "config.json").read_text())["data"] == str(moved)
    epochs = [row["epoch"] for row in csv.DictReader((run / "metrics.csv").open())]
    assert epochs[-1] == "2" and "1" in epochs  # the first epoch's rows kept, the second's added
    # Data that is there is the run's: another folder is refused, as before.
    assert main(["train", "--resume", str(run), "--epochs", "3", "--data", str(tmp_path)]) == 2
    # Named as given: the flag on the command line (Python's keyword: test_step.py).
    assert "its --data cannot change (start a new run: --config" in capsys.readouterr().err


def test_a_model_option_value_the_model_refuses_is_one_line(tmp_path, capsys):
    args = ["train", "--model", "resnet20", "--model-option", "shortcut=C"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err == "error: resnet20: unknown shortcut 'C'; choose one of A, B, D\n"
    assert main(["train", "--model-option", "shortcut", "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == "error: --model-option 'shortcut' is not KEY=VALUE\n"
    # What create_model takes itself is not a constructor option.
    for option, says in [
        ("name=resnet8", "--model names the model; drop --model-option name"),
        ("pretrained=true", "start from pretrained weights with --pretrained, not --model-option"),
    ]:
        assert main(["train", "--model-option", option, "--out", str(tmp_path / "run")]) == 2
        assert capsys.readouterr().err.startswith(f"error: {says}")
    assert not (tmp_path / "run").exists()
    # True and False as Python spells them are the switches they name.
    from resnetlab.cli import parse_options

    assert parse_options(["residual=False", "zero_init_residual=TRUE", "shortcut=B"]) == {
        "residual": False,
        "zero_init_residual": True,
        "shortcut": "B",
    }


def test_sync_bn_on_the_cpu_is_refused_and_alone_warned_of(monkeypatch):
    from types import SimpleNamespace

    from resnetlab.engine.step import build_training

    dist = SimpleNamespace(enabled=True, rank=0, world_size=2, local_rank=0, is_main=True)
    config = TrainConfig(model="resnet8", sync_bn=True)
    with (
        command_line(),
        pytest.raises(resnetlab.ResnetlabError, match="--sync-bn needs CUDA devices"),
    ):
        build_training(config, torch.device("cpu"), num_classes=10, input_size=8, dist=dist)
    config = TrainConfig.from_recipe("modern", model="resnet8", sync_bn=True)
    with pytest.warns(SettingWarning, match="^sync_bn=True has no effect in one process"):
        build_training(config, torch.device("cpu"), num_classes=10, input_size=8)


def test_a_metrics_file_from_before_top5_still_reads(tmp_path):
    from resnetlab.engine.report import read_metrics

    path = tmp_path / "metrics.csv"
    path.write_text(
        "kind,epoch,step,train_loss,train_acc,val_loss,val_acc,lr,images_per_s\n"
        "epoch,1,12,1.5,0.4,1.2,0.5,0.1,300\n"
    )
    (row,) = read_metrics(path)
    assert (row["epoch"], row["step"], row["val_acc"], row["val_top5"]) == (1, 12, 0.5, None)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("epoch,1,12," + "9" * 200_000 + ",0.4,1.2,0.5,0.1,300\n", "field larger than field limit"),
        ("epoch,1,12,1.5\x00,0.4,1.2,0.5,0.1,300\n", None),  # csv's error before Python 3.11
    ],
)
def test_a_metrics_line_csv_cannot_parse_is_named(tmp_path, line, problem):
    # csv.Error came through as a traceback (the fault suite's fuzzing found it on 3.10).
    from resnetlab.engine.report import read_metrics

    path = tmp_path / "metrics.csv"
    path.write_text(
        "kind,epoch,step,train_loss,train_acc,val_loss,val_acc,lr,images_per_s\n" + line
    )
    with pytest.raises(resnetlab.ResnetlabError) as caught:
        read_metrics(path)
    assert str(caught.value).startswith(f"{path}, line 2: {problem or ''}")
    assert str(caught.value).endswith(
        "; the file is damaged: restore it, or delete it to go on without the history"
    )


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ("1.5,5.4,1.2,0.5", "train_acc '5.4'"),  # a flipped digit
        ("1.5,0.4,1.2,nan", "val_acc 'nan'"),
        ("1.5,-0.4,1.2,0.5", "train_acc '-0.4'"),
    ],
)
def test_an_accuracy_outside_0_to_1_in_metrics_is_named(tmp_path, values, problem):
    # Not read as it is: an experiment's table would give a training error of -440%.
    from resnetlab.engine.report import read_metrics

    path = tmp_path / "metrics.csv"
    path.write_text(
        "kind,epoch,step,train_loss,train_acc,val_loss,val_acc,lr,images_per_s\n"
        f"epoch,1,12,{values},0.1,300\n"
    )
    with pytest.raises(resnetlab.ResnetlabError) as caught:
        read_metrics(path)
    assert str(caught.value) == (
        f"{path}, line 2: {problem} is not an accuracy from 0 to 1; the file is damaged: "
        "restore it, or delete it to go on without the history"
    )


def test_train_says_the_classes_came_from_the_file_names(tmp_path, capsys):
    flat = tmp_path / "photos"
    flat.mkdir()
    for i in range(12):
        for name, grey in (("cat", 30), ("dog", 220)):
            Image.new("RGB", (8, 8), (grey, grey, i * 10)).save(flat / f"{name}_{i}.png")
    out = tmp_path / "run"
    args = ["train", "--data", str(flat), "--input-size", "8", "--max-steps", "1"]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "data: classes from the file names" in printed.out + printed.err
    assert "no flips" not in printed.out + printed.err  # photos of cats and dogs flip
    assert json.loads((out / "summary.json").read_text())["class_names"] == ["cat", "dog"]


def test_train_says_where_the_validation_images_come_from(tmp_path, capsys):
    # photos/train and photos/test, no val/: the test images validate, which the log says
    # (with what it means for an eval on them), as it gives the validation split's own
    # notes (a class folder named in another case); a split of the training images says
    # nothing more.
    root = tmp_path / "photos"
    for split, names in (("train", ("cat", "dog")), ("test", ("Cat", "dog"))):
        for name, grey in zip(names, (30, 220), strict=True):
            (root / split / name).mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (8, 8), (grey, grey, i * 10 + 5 * (split == "test"))).save(
                    root / split / name / f"{i}.png"
                )
    args = ["train", "--input-size", "8", "--max-steps", "1"]
    assert main([*args, "--data", str(root), "--out", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr()
    lines = [line for line in (printed.out + printed.err).splitlines() if line.startswith("data:")]
    assert lines == [
        "data: validation: classes matched to the training classes by name (Cat as cat: case "
        "aside)",
        "data: validation: the test images validate (there is no val split): the best epoch is "
        "picked on them, so an eval on them afterwards flatters the model; add a val/ folder "
        "or give --val-data to keep them unseen",
    ]
    args += ["--data", str(root / "train"), "--out", str(tmp_path / "split")]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert "data: validation" not in printed.out + printed.err


def test_a_run_inside_its_warm_up_says_the_rate_never_decays(tmp_path):
    with pytest.warns(SettingWarning, match=r"warm-up \(5 steps\) is as long as the run") as w:
        train(**FAST, max_steps=5, warmup_steps=5, out=str(tmp_path / "a"))
    assert "the rate rises to its peak and never decays;" in str(w[0].message)
    longer = r"warm-up \(10 steps\) is longer than the run \(5 steps\): the rate never reaches"
    with pytest.warns(SettingWarning, match=longer):
        train(**FAST, max_steps=5, warmup_steps=10, out=str(tmp_path / "a2"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SettingWarning)
        train(**FAST, max_steps=5, out=str(tmp_path / "b"))  # auto: a quarter of the run
    with pytest.warns(SettingWarning, match=r"warm-up \(11 steps, the recipe's 0.5 epochs\)"):
        train(**FAST, recipe="finetune", max_steps=5, out=str(tmp_path / "c"))
    with pytest.warns(SettingWarning, match=r"warm-up \(\d+ steps, the recipe's 1 epoch\)"):
        train(**FAST, recipe="modern", max_steps=5, out=str(tmp_path / "d"))
    with warnings.catch_warnings():  # resumed with nothing left to train: nothing to warn of
        warnings.simplefilter("error", SettingWarning)
        train(resume=str(tmp_path / "a"), max_steps=5)


def test_an_accuracy_no_better_than_the_largest_class_is_called_so():
    from resnetlab.engine.evaluate import EvalResult
    from resnetlab.engine.report import majority_note

    # 20 airplanes, 1 cat, every image called an airplane: 20/21 correct.
    confusion = torch.tensor([[20, 0], [1, 0]])
    val = EvalResult(loss=0.2, accuracy=20 / 21, count=21, confusion=confusion)
    note = majority_note(20 / 21, val, ["airplane", "cat"])
    assert note == (
        "note: always answering airplane would score 0.9524 too (its share of the validation "
        "images): check each class's recall (confusion.png, resnetlab eval)"
    )
    # Below the share, "too" would be wrong: the baseline scores more than the model.
    assert majority_note(19 / 21, val, ["airplane", "cat"]) == (
        "note: always answering airplane would score 0.9524 (its share of the validation "
        "images), more than this run's best, 0.9048: check each class's recall "
        "(confusion.png, resnetlab eval)"
    )
    assert majority_note(21 / 21, val, ["airplane", "cat"]) is None  # better than that
    balanced = EvalResult(0.5, 0.6, 20, torch.tensor([[6, 4], [4, 6]]))
    assert majority_note(0.6, balanced, ["a", "b"]) is None
    assert majority_note(None, val, ["airplane", "cat"]) is None


def test_a_run_result_prints_its_folder_and_summary_not_every_layer():
    from resnetlab.engine.train import RunResult

    summary = {"status": "finished", "model": "resnet8", "data": "digits", "best_val_acc": 0.99443}
    summary |= {"best_epoch": 3, "final_val_acc": None, "steps": 120, "class_names": ["0"] * 10}
    result = RunResult(Path("runs/r"), summary, resnetlab.create_model("resnet8"))
    run_dir = Path("runs/r")
    assert repr(result) == (
        f"RunResult(run_dir={run_dir!r}, status='finished', model='resnet8', data='digits', "
        "best_val_acc=0.9944, best_epoch=3, steps=120)"
    )
    assert result.summary["class_names"] == ["0"] * 10 and result.model.num_classes == 10
    # What the repr shows reads as attributes; the model is the model.
    assert (result.best_val_acc, result.steps, result.status) == (0.99443, 120, "finished")
    assert isinstance(result.model, torch.nn.Module) and "best_epoch" in dir(result)
    with pytest.raises(AttributeError, match="no attribute 'accuracy'; its summary has status, "):
        _ = result.accuracy
    assert copy.deepcopy(result).steps == 120


def test_a_run_leaves_the_callers_random_state_and_backend_flags_as_they_were(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(**FAST, max_steps=2, deterministic=True, out=str(tmp_path / "run"))
    assert torch.equal(torch.rand(3), expected)  # not the run's seed, nor its draws
    assert not torch.are_deterministic_algorithms_enabled()


def test_messages_name_the_data_as_given_though_the_run_keeps_its_absolute_path(
    tmp_path, monkeypatch, capsys
):
    import zipfile

    import numpy as np

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / "photos" / label).mkdir(parents=True)
        for i in range(10):
            pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "photos" / label / f"{i}.png")
    (tmp_path / "photos" / "cat" / "bad.png").write_bytes(b"damaged")
    with zipfile.ZipFile(tmp_path / "photos.zip", "w") as z:
        for file in sorted((tmp_path / "photos").rglob("*.png")):
            z.write(file, file.relative_to(tmp_path).as_posix())
    shutil.copytree(tmp_path / "photos", tmp_path / "album")
    monkeypatch.chdir(tmp_path)
    args = ["train", "--model", "resnet8", "--input-size", "8", "--max-steps", "1"]
    for i, (data, bad) in enumerate(
        [
            ("photos", "photos/cat/bad.png"),
            ("album/", "album/cat/bad.png"),  # not album//cat/bad.png
            ("photos.zip", "photos.zip/photos/cat/bad.png"),
        ]
    ):
        assert main([*args, "--data", data, "--out", f"run-{i}"]) == 0
        err = capsys.readouterr().err
        assert f"warning: {bad}: skipped, cannot read it" in err
        assert f"resnet8 (74,770 parameters) on {data.rstrip('/')}: " in err
        assert str(tmp_path) not in err
        config = TrainConfig.load(tmp_path / f"run-{i}" / "config.json")
        assert config["data"] == str(tmp_path / data)  # reruns find it from any folder
    with pytest.warns(DataWarning) as caught:  # and so from Python
        resnetlab.train(
            model="resnet8", data="photos", input_size=8, max_steps=1, out="run-api", stream=True
        )
    assert any(str(w.message).startswith("photos/cat/bad.png: ") for w in caught)
    # Resumed, or rerun from its config.json, in the folder it was typed in: named from there.
    assert main(["train", "--resume", "run-1", "--max-steps", "2"]) == 0
    assert main(["train", "--config", "run-1/config.json", "--out", "run-again"]) == 0
    err = capsys.readouterr().err
    assert err.count("resnet8 (74,770 parameters) on album: ") == 2
    assert str(tmp_path) not in err
    # A resumed run whose data moved, given its new place, names that as given too.
    (tmp_path / "photos").rename(tmp_path / "moved")
    capsys.readouterr()
    assert main(["train", "--resume", "run-0", "--data", "moved", "--max-steps", "2"]) == 0
    assert "resnet8 (74,770 parameters) on moved: " in capsys.readouterr().err


def test_a_file_found_beside_the_data_is_named_as_given(tmp_path, monkeypatch, capsys):
    write_signs_pair(tmp_path / "signs")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    args = ["train", "--model", "resnet8", "--input-size", "8", "--max-steps", "1"]
    assert main([*args, "--data", "../signs/train_signs.h5", "--out", "run"]) == 0
    err = capsys.readouterr().err
    assert "held out: ../signs/test_signs.h5:test, found next to ../signs/train_signs.h5" in err
    assert str(tmp_path) not in err


def test_a_class_folder_given_as_the_data_names_its_data_set_as_given(
    tmp_path, monkeypatch, capsys
):
    # --data photos/cat: the fix names photos/ as typed, not at its absolute path.
    for label in ("cat", "dog"):
        (tmp_path / "photos" / label).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / "photos" / label / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    args = ["train", "--model", "resnet8", "--input-size", "8", "--max-steps", "1"]
    assert main([*args, "--data", "photos/cat", "--out", "run"]) == 2
    err = capsys.readouterr().err
    assert f"give the folder that holds them: photos{os.sep};" in err
    assert str(tmp_path) not in err


def test_data_is_named_as_given_only_while_the_run_lasts(tmp_path):
    from resnetlab.errors import ResnetlabError, as_given, named_as_given

    stored = str(tmp_path / "photos")
    said = f"{stored}/cat/1.jpg: skipped"
    with pytest.raises(ResnetlabError) as caught, named_as_given({stored: "photos"}):
        assert as_given(said) == "photos/cat/1.jpg: skipped"
        assert as_given(f"{stored}x/1.jpg") == f"{stored}x/1.jpg"  # another folder
        raise ResnetlabError(f"{stored}/cat: no images")
    assert str(caught.value) == "photos/cat: no images"  # as said within the run
    assert as_given(said) == said  # after it, another working folder may hold another photos/


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"),
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
        RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    ],
)
def test_a_device_out_of_memory_is_one_line_naming_the_batch(tmp_path, monkeypatch, error):
    from resnetlab.engine.step import TrainStep

    step = TrainStep.__call__
    calls = []

    def runs_out(self, x, y):
        calls.append(1)
        if len(calls) > 3:  # after the first epoch, whose checkpoint stays
            raise error
        return step(self, x, y)

    monkeypatch.setattr(TrainStep, "__call__", runs_out)
    run = tmp_path / "run"
    with command_line(), pytest.raises(resnetlab.ResnetlabError) as caught:  # as `train` says it
        train(model="resnet8", data="digits", input_size=8, batch_size=480, epochs=3, out=str(run))
    lr = json.loads((run / "config.json").read_text())["lr"]  # the auto recipe's, at 480
    assert str(caught.value) == (
        "out of memory on cpu at epoch 2, step 3: resnet8 on batches of 480 images at 8x8 does "
        f"not fit; start a new run with a smaller batch (--config {run / 'config.json'} "
        f"--batch-size 240 --lr {lr * 0.5**0.5:.3g} --out NEW_FOLDER), or smaller images "
        "(--input-size)"
    )
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"
    assert resnetlab.load_model(run / "best.safetensors").num_classes == 10
    monkeypatch.setattr(TrainStep, "__call__", lambda *_: (_ for _ in ()).throw(RuntimeError("x")))
    with pytest.raises(RuntimeError, match=r"^x$"):  # any other error is not one
        train(model="resnet8", data="digits", input_size=8, max_steps=1, out=str(tmp_path / "o"))


def test_validation_batches_shrink_with_the_training_batch():
    from resnetlab.engine.train import validation_batch_size

    sizes = [validation_batch_size(b) for b in (1, 8, 32, 64, 128, 256, 512)]
    assert sizes == [4, 32, 128, 256, 256, 256, 512]
    # Halving --batch-size, as the out-of-memory advice says, never leaves validation larger.
    assert all(validation_batch_size(b // 2) <= validation_batch_size(b) for b in range(2, 600))


def test_a_class_name_no_model_file_can_hold_is_refused_before_training(tmp_path, capsys):
    """A class folder named with a newline trained for the whole run, then the model file
    refused the name at the end."""
    for label in ("cat", "dog\nx"):
        (tmp_path / "photos" / label).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / "photos" / label / f"{i}.png")
    args = ["train", "--model", "resnet8", "--input-size", "8", "--epochs", "1"]
    assert main([*args, "--data", str(tmp_path / "photos"), "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.endswith(
        f"error: {tmp_path / 'photos'}: the class name 'dog\\nx' holds a control character, "
        "which a model file cannot hold; rename the class\n"
    )
    assert not (tmp_path / "run").exists()


def test_a_run_started_with_ctrl_c_ignored_keeps_ignoring_it(tmp_path, monkeypatch):
    """A shell starts a script's background jobs (`resnetlab train ... &`) with SIGINT
    ignored, so that Ctrl-C stops the script and not them: the run trains on through a
    SIGINT, and leaves it ignored."""
    original, calls = Trainer._train_step, {"n": 0}

    def step(self, x, y):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, x, y)

    monkeypatch.setattr(Trainer, "_train_step", step)
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        result = train(**FAST, max_steps=4, out=str(tmp_path / "run"))
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    except KeyboardInterrupt:
        pytest.fail("the run stopped on a SIGINT it was started ignoring")
    finally:
        signal.signal(signal.SIGINT, before)
    assert result.summary["status"] == "finished" and calls["n"] == 4
