"""A full disk: one line saying which file and what to do, exit status 2, the last checkpoint
kept, a valid summary.json or none, no temporary file left to keep the disk full, and a
``--resume`` that finishes the run once there is space again.

The real thing runs on a small tmpfs in a private mount namespace (``unshare``), where this
user may mount one; the same failure is also simulated in-process, so that it is tested
everywhere.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import resnetlab.storage as storage
from resnetlab.engine.checkpoint import load_checkpoint
from tests.conftest import PROJECT_ROOT

from .conftest import assert_one_line_error, cli, strict_json

TRAIN = ["train", "--model", "resnet8", "--data", "digits", "--input-size", "8"]
TRAIN += ["--subset", "128", "--batch-size", "32", "--epochs", "2", "--log-every", "2"]


class FullDisk:
    """Writes of the ``n``th temporary checkpoint fail halfway, as on a full disk."""

    def __init__(self, n: int) -> None:
        self.n, self.seen = n, 0

    def __call__(self, path, mode="r", *args, **kwargs):
        f = open(path, mode, *args, **kwargs)  # noqa: SIM115
        if Path(path).name == ".checkpoint.pt.tmp":
            self.seen += 1
            if self.seen == self.n:
                return _Full(f)
        return f


class _Full:
    def __init__(self, f) -> None:
        self.f = f

    def write(self, data) -> int:
        self.f.write(bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


def assert_full_disk_kept(code: int, err: str, run: Path) -> None:
    """What a run says when the disk fills under its checkpoint, one line: the run goes on
    in its own folder (another folder would start it over), whose first checkpoint stays
    whole and no temporary file is left beside it."""
    assert err.splitlines()[-1] == (
        f"error: cannot write {run / 'checkpoint.pt'}: No space left on device; free some space "
        f"on that disk (the last checkpoint is intact); then continue with: resnetlab train "
        f"--resume {run}"
    )
    assert_one_line_error(code, err)
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 0  # the one before, intact


def test_a_full_disk_is_one_line_and_the_run_resumes_when_there_is_space(
    tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(storage, "open", FullDisk(n=2), raising=False)
        code, err = cli(capsys, *TRAIN, "--out", out)
    assert_full_disk_kept(code, err, out)
    assert strict_json(out / "summary.json")["status"] == "failed"
    code, err = cli(capsys, "train", "--resume", out)
    assert code == 0, err
    assert strict_json(out / "summary.json")["status"] == "finished"


def test_a_full_disk_while_resuming_says_to_free_space_not_to_choose_a_folder(
    tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    code, err = cli(capsys, *TRAIN[:-4], "--epochs", "1", "--log-every", "2", "--out", out)
    assert code == 0, err
    saved = (out / "checkpoint.pt").read_bytes()
    with monkeypatch.context() as patch:
        patch.setattr(storage, "open", FullDisk(n=1), raising=False)
        code, err = cli(capsys, "train", "--resume", out, "--epochs", "2")
    assert_one_line_error(
        code,
        err,
        "No space left on device; free some space on that disk (the last checkpoint is "
        f"intact); then continue with: resnetlab train --resume {out}",
    )
    assert "another folder" not in err
    assert (out / "checkpoint.pt").read_bytes() == saved

    # Full before it starts: the run's folder is where it must go on.
    def no_room(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(storage.tempfile, "TemporaryFile", no_room)
    code, err = cli(capsys, "train", "--resume", out, "--epochs", "2")
    assert err == (
        f"error: cannot write {out}: No space left on device; free some space on that disk\n"
    )
    assert code == 2
    assert (out / "checkpoint.pt").read_bytes() == saved


def test_a_full_disk_while_ctrl_c_saves_says_to_free_space_and_how_to_continue(
    tmp_path, capsys, monkeypatch
):
    from resnetlab.engine.train import Trainer

    out = tmp_path / "run"
    original, calls = Trainer._train_step, {"n": 0}

    def interrupting_step(self, x, y):  # Ctrl-C at the third step
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, x, y)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_train_step", interrupting_step)
        # The first checkpoint is written at the start; the second is the interrupt's.
        patch.setattr(storage, "open", FullDisk(n=2), raising=False)
        code, err = cli(capsys, *TRAIN, "--out", out)
    assert_full_disk_kept(code, err, out)
    code, err = cli(capsys, "train", "--resume", out)
    assert code == 0, err
    assert strict_json(out / "summary.json")["status"] == "finished"


# Runs inside the mount namespace: fill a tmpfs, report, make room, resume, report.
# (Its contents vanish with the namespace, so the reports are what comes back.)
TMPFS_DRIVER = """
import json, os, subprocess, sys
mount, size = sys.argv[1], sys.argv[2]
subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", mount], check=True)
run = os.path.join(mount, "run")
train = [sys.executable, "-m", "resnetlab", *json.loads(sys.argv[3]), "--out", run]

def attempt(args):
    done = subprocess.run(args, capture_output=True, text=True)
    files = {n: os.path.getsize(os.path.join(run, n)) for n in os.listdir(run)}
    summary = os.path.join(run, "summary.json")
    return {
        "rc": done.returncode,
        "err": done.stderr,
        "files": files,
        "summary": open(summary).read() if os.path.exists(summary) else None,
    }

full = attempt(train)
subprocess.run(["mount", "-o", "remount,size=64m", mount], check=True)
roomy = attempt([sys.executable, "-m", "resnetlab", "train", "--resume", run])
print(json.dumps({"full": full, "roomy": roomy}))
"""


def _namespace() -> list[str]:
    """The ``unshare`` command that gives this user a private mount namespace with mount
    rights, or a skip saying why there is none."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        pytest.skip("needs unshare and mount (util-linux) to make a small tmpfs")
    command = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
    probe = subprocess.run([*command, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a mount namespace for a tmpfs: {probe.stderr.strip()}")
    return command


@pytest.mark.slow  # a real disk's; the failure simulated in-process runs by default (below)
def test_a_full_tmpfs(tmp_path):
    command = _namespace()
    mount = tmp_path / "mnt"
    mount.mkdir()
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "src")}
    # 1.5 MiB: the first checkpoint (600 kB) and the first epoch's model files fit; the
    # next checkpoint, written beside the one it replaces, does not.
    done = subprocess.run(
        [*command, sys.executable, "-c", TMPFS_DRIVER, str(mount), "1536k", json.dumps(TRAIN)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    full = report["full"]
    assert_one_line_error(full["rc"], full["err"], "No space left on device", "--resume")
    assert not [n for n in full["files"] if n.endswith(".tmp")], full["files"]
    assert full["files"]["checkpoint.pt"] > 0
    if full["summary"] is not None:  # never empty: valid, or not there
        assert json.loads(full["summary"])["status"] == "failed"
    roomy = report["roomy"]
    assert roomy["rc"] == 0, roomy["err"]
    assert json.loads(roomy["summary"])["status"] == "finished"
    assert not [n for n in roomy["files"] if n.endswith(".tmp")]


class FullFolder:
    """Writes of the temporary files in ``folder`` (of file ``name`` only, if given) fail
    halfway, as on a full disk."""

    def __init__(self, folder: Path, name: str | None = None) -> None:
        self.folder, self.name = folder, name

    def __call__(self, path, mode="r", *args, **kwargs):
        f = open(path, mode, *args, **kwargs)  # noqa: SIM115
        path = Path(path)
        named = path.name == f".{self.name}.tmp" if self.name else path.name.endswith(".tmp")
        return _Full(f) if path.parent == self.folder and named else f


@pytest.mark.parametrize("command", ["explain", "predict"])
def test_class_activation_maps_on_a_full_disk_are_one_line(tmp_path, capsys, monkeypatch, command):
    from PIL import Image

    from .conftest import model_file

    model = model_file(tmp_path / "m.safetensors")
    image = tmp_path / "x.png"
    Image.new("RGB", (16, 16)).save(image)
    out = tmp_path / "cams"
    monkeypatch.setattr(storage, "open", FullFolder(out), raising=False)
    flag = "--out" if command == "explain" else "--cam"
    code, err = cli(capsys, command, model, image, flag, out)
    assert_one_line_error(code, err, f"cannot write {out / 'x.png'}", "No space left on device")
    assert list(out.iterdir()) == []  # no torn overlay, no temporary file


def test_the_pretrained_record_on_a_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    from .conftest import model_file

    weights = model_file(tmp_path / "w.safetensors", input_size=8, classes=10)
    out = tmp_path / "run"
    monkeypatch.setattr(storage, "open", FullFolder(out, "pretrained.json"), raising=False)
    train = [*TRAIN[:-4], "--max-steps", "2", "--pretrained", weights, "--out", out]
    code, err = cli(capsys, *train)
    assert_one_line_error(code, err, f"cannot write {out / 'pretrained.json'}", "No space left")


@pytest.mark.parametrize("experiment", ["degradation", "gradients"])
def test_an_experiments_table_on_a_full_disk_says_to_run_it_again_in_its_folder(
    tmp_path, capsys, monkeypatch, experiment
):
    # Not "choose another folder": an experiment there would train every run again.
    out = tmp_path / "exp"
    args = ["experiment", experiment, "--data", "digits", "--depths", "8", "--input-size", "8"]
    args += ["--val-subset", "20", "--out", out]
    args += ["--max-steps", "2"] if experiment == "degradation" else ["--steps", "2"]
    table = "table.json" if experiment == "degradation" else "gradients.json"
    with monkeypatch.context() as patch:
        patch.setattr(storage, "open", FullFolder(out, table), raising=False)
        code, err = cli(capsys, *args)
    assert_one_line_error(
        code,
        err,
        f"cannot write {out / table}: No space left on device; free some space on that disk, "
        "then run the same experiment command again, which skips the runs that ended and "
        "writes the figures and tables from them",
    )
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    code, err = cli(capsys, *args)
    assert code == 0, err
    assert "plain8 seed 0: finished earlier, skipped" in err
    assert strict_json(out / table)


def test_a_folder_where_an_experiments_table_goes_is_named_to_move(tmp_path, capsys):
    # Not "make exp writable": the folder is writable, the table's name is taken by a folder.
    out = tmp_path / "exp"
    args = ["experiment", "degradation", "--data", "digits", "--depths", "8"]
    args += ["--input-size", "8", "--val-subset", "20", "--max-steps", "2", "--out", out]
    code, err = cli(capsys, *args)
    assert code == 0, err
    (out / "table.md").unlink()
    (out / "table.md").mkdir()
    code, err = cli(capsys, *args)
    assert_one_line_error(
        code,
        err,
        f"cannot write {out / 'table.md'}: Is a directory; move the folder {out / 'table.md'} "
        "out of the way, then run the same experiment command again",
    )
