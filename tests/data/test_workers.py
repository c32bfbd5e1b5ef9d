"""Worker processes under the 'spawn' start method (macOS's and Windows' default, Linux's
'forkserver' from Python 3.14 behaves the same): each imports the main script again, so a
script that calls resnetlab outside ``if __name__ == "__main__":`` gets one error saying
so, instead of a broken pool's traceback."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnetlab.data.decode import leave_if_starting_a_worker, workers_stopped

SRC = Path(__file__).resolve().parents[2] / "src"

START = """
import multiprocessing
multiprocessing.set_start_method("spawn", force=True)
import resnetlab
from resnetlab.data import decode, load_dataset, make_loader
print("the script's top")
"""

DECODE = """
decode.PARALLEL_MIN_FILES = 1  # a pool for a few files
paths = [str(p) for p in sorted(__import__("pathlib").Path("images").rglob("*.png"))]
print(len(decode.read_images(paths, 8, workers=2)))
"""

STREAM = """
data = load_dataset("images", stream=True)
loader = make_loader(
    data.train, train=False, batch_size=4, device="cpu", mean=(0.5,) * 3, std=(0.5,) * 3,
    num_workers=1,
)
print(sum(len(y) for _, y in loader))
"""


def _start(folder: Path, body: str, guarded: bool) -> subprocess.Popen:
    for c in "ab":
        (folder / "images" / c).mkdir(parents=True, exist_ok=True)
        for i in range(4):
            pixels = np.random.default_rng(i).integers(0, 255, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / "images" / c / f"{i}.png")
    if guarded:
        body = 'if __name__ == "__main__":\n' + textwrap.indent(body, "    ")
    (folder / "script.py").write_text(START + body)
    env = {**os.environ, "PYTHONPATH": str(SRC), "RESNETLAB_CACHE": str(folder / "cache")}
    return subprocess.Popen(
        [sys.executable, "script.py"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finished(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


TRAIN = """
decode.PARALLEL_MIN_FILES = 1
decode.available_cpus = lambda: 2  # a pool on a machine of one core too
result = resnetlab.train(
    model="resnet8", data="images", input_size=8, max_steps=1, out="runs/r", val_split=0.25
)
print(result.summary["val_images"])
"""


@pytest.mark.parametrize(
    ("body", "workers", "images"),
    [
        (DECODE, "the worker processes decoding the images", "8"),
        pytest.param(STREAM, "the data loader's worker processes", "8", marks=pytest.mark.slow),
        # Training leaves at once in a worker: the run folder the script holds is not taken.
        pytest.param(
            TRAIN, "the worker processes decoding the images", "2", marks=pytest.mark.slow
        ),
    ],
)
def test_a_script_without_the_main_guard_is_told_to_add_it(tmp_path, body, workers, images):
    # Both scripts at once, each in a folder of its own: most of their time is spent
    # importing PyTorch, one core each, in them and in their workers.
    unguarded = _start(tmp_path / "unguarded", body, guarded=False)
    guarded = _start(tmp_path / "guarded", body, guarded=True)
    done, done_guarded = _finished(unguarded), _finished(guarded)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        f"resnetlab.errors.DataError: {workers} stopped as they started: with the 'spawn' "
        "start method each one runs script.py again, so a script must call resnetlab under "
        '`if __name__ == "__main__":`'
    )
    # The workers left quietly: no traceback of theirs, only the script's top again.
    assert done.stderr.count("Traceback") == 1 and done.stdout.count("the script's top") >= 2
    assert done_guarded.returncode == 0, done_guarded.stderr
    assert done_guarded.stdout.splitlines()[-1] == images


def test_workers_that_stop_for_another_reason_say_so():
    """A worker killed (out of memory) or crashed leaves no mark: the script is not blamed."""
    from resnetlab.data.decode import _unguarded_mark

    assert not _unguarded_mark().exists()
    assert str(workers_stopped("the data loader's worker processes")) == (
        "the data loader's worker processes stopped without an answer (killed, or out of "
        "memory); free memory and run again"
    )
    leave_if_starting_a_worker()  # not a worker starting: nothing happens
    _unguarded_mark().touch()  # as a worker that ran the script's call leaves it
    assert "must call resnetlab under" in str(workers_stopped("the workers"))
    assert not _unguarded_mark().exists()  # said once
