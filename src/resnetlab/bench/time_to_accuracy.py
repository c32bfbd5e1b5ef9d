"""``resnetlab bench time-to-accuracy``: wall-clock time from raw data to a target accuracy.

The whole process is timed: ``resnetlab train --target-accuracy T`` runs as a child
process, with an empty cache folder (so the archive is extracted and decoded inside the
timed run) unless ``warm_cache``, and stops after the first epoch whose accuracy on the
data's held-out split (CIFAR-10's test batch) reaches the target. Python start-up, imports,
decoding, training, the per-epoch evaluation and the final model files are all inside the
time. The CPU calibration (``engine.calibrate``) is shared with the user's cache: it is
made once per machine, not per run; a workload not calibrated yet is calibrated inside
the time.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..data.cache import cache_root, cache_unwritable
from ..data.sources import missing_data
from ..engine.config import resolve_config
from ..engine.distributed import resolve_device
from ..errors import ResnetlabError, option
from ..storage import check_writable
from .records import environment, load_average, seed_cache

# ResNet-20 on CIFAR-10 on one GPU: a starting point for the time-to-accuracy recipe, not
# yet tuned on a GPU. A batch of 512 keeps a launch-bound net busy (with CUDA graphs), the
# learning rate follows the linear scaling rule from the paper's 0.1 at 128, and the
# modern recipe's cosine schedule with label smoothing reaches its accuracy at the end.
TTA_DEFAULTS: dict[str, Any] = {
    "recipe": "modern",
    "epochs": 40,
    "batch_size": 512,
    "lr": 0.4,
    "warmup_epochs": 2.0,
}


# The record's figures from the training run's summary.json.
SUMMARY_FIELDS = {
    "accuracy": "final_val_acc",
    "epochs": "epochs",
    "train_time_s": "train_time_s",
    "train_images_per_s": "images_per_s",
}


def bench_time_to_accuracy(
    model: str = "resnet20",
    data: str = "cifar10",
    *,
    target: float = 0.91,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    recipe: str | None = None,
    input_size: int | None = None,
    precision: str | None = None,
    compile: bool = False,
    cuda_graphs: bool | None = None,
    device: str = "auto",
    warm_cache: bool = False,
    train_options: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    log: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Time one training run to ``target`` accuracy; returns the record without saving it.

    Args:
        model, data: as for ``resnetlab train``.
        target: stop at this accuracy on the data's held-out split, e.g. 0.91.
        epochs, batch_size, lr, recipe: the recipe (defaults: ``TTA_DEFAULTS``).
        input_size, precision, compile: as for ``resnetlab train``.
        cuda_graphs: default: as ``resnetlab train`` decides (on CUDA wherever it can).
        device: ``auto``, ``cpu``, ``cuda``...
        warm_cache: use the usual cache folder (decoded images may be there already)
            instead of an empty one.
        train_options: more ``resnetlab train`` options, ``{"crop_padding": 1}``.
        timeout: give up after this many seconds.
        log: write the training run's output to this file, also when it fails.
    """
    if not 0 < target <= 1:
        percent = f"; a fraction: {target / 100:g} for {target:g}%" if 1 < target <= 100 else ""
        raise ResnetlabError(f"--target must be in (0, 1], got {target:g}{percent}")
    if timeout is not None and not timeout > 0:
        raise ResnetlabError(f"--timeout must be a positive number of seconds, got {timeout:g}")
    given = dict(epochs=epochs, batch_size=batch_size, lr=lr, recipe=recipe, input_size=input_size)
    given.update(precision=precision, compile=compile, cuda_graphs=cuda_graphs)
    # What the benchmark's own flags set (one of them given twice, the option won unsaid),
    # and its run's folder, which is its own.
    own = {"model": "--model", "data": "--data", "target_accuracy": "--target"}
    own.update(device="--device", out=None)
    own.update({key: "--" + key.replace("_", "-") for key in given})
    if taken := [key for key in train_options or {} if key in own]:
        flag = own[taken[0]]
        fix = (
            f"the benchmark's {flag} sets that; give {flag} instead"
            if flag
            else "the benchmark trains in a folder of its own; drop that option"
        )
        raise ResnetlabError(f"--train-option {taken[0]}: {fix}")
    device_ = resolve_device(device)
    options = {**TTA_DEFAULTS, **{k: v for k, v in given.items() if v is not None}}
    options.update(train_options or {})
    # Mistakes in the options and data that is not there are found here, not after the
    # child process has started.
    resolve_config(model=model, data=data, target_accuracy=target, **options)
    if problem := missing_data(data):
        raise ResnetlabError(problem)
    if log is not None:
        check_writable(log, Path(log).parent)
    env = environment(device_)
    train_args = ["train", "--model", model, "--data", data, "--device", str(device_)]
    train_args += ["--target-accuracy", str(target), *_flags(options)]
    seconds, summary = _timed_run(train_args, data, warm_cache, timeout, log)
    record: dict[str, Any] = {"kind": "time-to-accuracy", "model": model, "data": data}
    record.update(target=target, reached=bool(summary["reached_target"]), seconds=seconds)
    record.update({key: summary[field] for key, field in SUMMARY_FIELDS.items()})
    record["cold_cache"] = not warm_cache
    record["train_command"] = shlex.join(["resnetlab", *train_args])
    record.update(env)
    record["load_after"] = load_average()
    return record


def _timed_run(
    train_args: list[str],
    data: str,
    warm_cache: bool,
    timeout: float | None,
    keep_log: str | os.PathLike | None = None,
) -> tuple[float, dict[str, Any]]:
    """Seconds of the whole ``resnetlab train`` process, and its summary."""
    with tempfile.TemporaryDirectory(prefix="resnetlab-tta-") as tmp:
        run_dir = Path(tmp) / "run"
        child_env = dict(os.environ)
        if not warm_cache:
            cache = Path(tmp) / "cache"
            cache.mkdir()
            seed_cache(data, cache)
            # The CPU calibration is kept: it is made once per machine, not per run. A cache
            # folder that cannot be made costs that (the run measures in its own cache), as
            # it costs `train` time, never the command.
            calibration = cache_root() / "calibration"
            try:
                calibration.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                cache_unwritable(cache_root(), e)
            else:
                (cache / "calibration").symlink_to(calibration, target_is_directory=True)
            child_env["RESNETLAB_CACHE"] = str(cache)
        log = Path(tmp) / "train.log"
        command = [sys.executable, "-m", "resnetlab", *train_args, "--out", str(run_dir)]
        start = time.perf_counter()
        try:
            with log.open("w") as out:
                done = subprocess.run(
                    command, stdout=out, stderr=subprocess.STDOUT, env=child_env, timeout=timeout
                )
        except subprocess.TimeoutExpired:
            given = option("timeout", text=f"{timeout:g}")
            raise ResnetlabError(
                f"the training run took more than {timeout:g} s ({given}): give it more "
                f"seconds, or leave {option('timeout')} out to wait for the run"
            ) from None
        finally:
            if keep_log is not None:
                Path(keep_log).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(log, keep_log)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            lines = log.read_text().strip().splitlines() or ["(no output)"]
            said = lines[-1].removeprefix("error: ")  # train's own prefix, said once
            raise ResnetlabError(f"the training run failed: {said}")
        return seconds, json.loads((run_dir / "summary.json").read_text())


def _flags(options: Mapping[str, Any]) -> list[str]:
    """``{"batch_size": 512, "compile": True}`` -> ``["--batch-size", "512", "--compile"]``."""
    flags: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None:
            continue
        if value is True:
            flags.append(flag)
        elif value is False:
            flags.append("--no-" + key.replace("_", "-"))
        elif isinstance(value, list | tuple):
            flags += [flag, *map(str, value)]
        else:
            flags += [flag, str(value)]
    return flags
