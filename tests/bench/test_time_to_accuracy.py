import json
from pathlib import Path

from resnetlab.cli import main


def test_time_to_accuracy_on_digits(tmp_path, capsys):
    out = tmp_path / "tta.jsonl"
    args = ["bench", "time-to-accuracy", "--model", "resnet20", "--data", "digits"]
    args += ["--target", "0.3"]
    args += ["--epochs", "4", "--batch-size", "64", "--lr", "0.1", "--input-size", "8"]
    args += ["--train-option", "crop_padding=1", "--device", "cpu", "--results", str(out)]
    args += ["--log", str(tmp_path / "logs" / "train.log")]
    assert main(args) == 0
    record = json.loads(out.read_text())
    assert record["kind"] == "time-to-accuracy" and record["reached"] is True
    assert record["accuracy"] >= 0.3 and 1 <= record["epochs"] <= 4
    # The whole process: start-up, loading and writing the run folder are in the time.
    assert record["seconds"] > record["train_time_s"]
    assert record["cold_cache"] is True
    assert record["command"].startswith("resnetlab bench time-to-accuracy --model resnet20")
    assert "--target-accuracy 0.3" in record["train_command"]
    assert "--crop-padding 1" in record["train_command"]
    assert "--train-option crop_padding=1" in record["command"]
    assert "--log" not in record["command"]
    assert "time to 30.00% resnet20 on digits" in capsys.readouterr().out
    assert "reached the target accuracy" in (tmp_path / "logs" / "train.log").read_text()


def test_mistakes_are_one_line_errors(tmp_path, capsys):
    # Found before the training process starts; `tta` is the command's name before 0.2.
    assert main(["bench", "tta", "--data", "digits", "--lr", "-1", "--no-save"]) == 2
    assert capsys.readouterr().err == "error: --lr must be positive, got -1.0\n"
    args = ["bench", "tta", "--data", "digits", "--train-option", "colour=red", "--no-save"]
    assert main(args) == 2
    assert "unknown training option: colour" in capsys.readouterr().err
    # What the command's own flags set, and the folder it trains in, are not train options.
    for option, says in [
        ("model=resnet8", "the benchmark's --model sets that; give --model instead"),
        ("target_accuracy=0.5", "the benchmark's --target sets that; give --target instead"),
        # The recipe's flags too: with both given, the option won without a word.
        ("epochs=3", "the benchmark's --epochs sets that; give --epochs instead"),
        ("batch_size=64", "the benchmark's --batch-size sets that; give --batch-size instead"),
        ("out=elsewhere", "the benchmark trains in a folder of its own; drop that option"),
    ]:
        args = ["bench", "tta", "--data", "digits", "--train-option", option, "--no-save"]
        assert main(args) == 2
        key = option.split("=")[0]
        assert capsys.readouterr().err == f"error: --train-option {key}: {says}\n"
    # Data that is not there, as train says it (not "the training run failed: error: ...").
    assert main(["bench", "tta", "--data", str(tmp_path / "photos"), "--no-save"]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'photos'}: no such file or folder\n"
    assert main(["bench", "tta", "--data", "digits", "--timeout", "0", "--no-save"]) == 2
    assert "--timeout must be a positive number of seconds, got 0" in capsys.readouterr().err
    assert main(["bench", "tta", "--data", "digits", "--target", "91", "--no-save"]) == 2
    assert capsys.readouterr().err == (
        "error: --target must be in (0, 1], got 91; a fraction: 0.91 for 91%\n"
    )
    # A log that cannot be written: said before the run, not after it.
    (tmp_path / "a-file").write_text("")
    for log, says in [
        (
            tmp_path / "a-file" / "x.log",
            "a file stands where a folder is needed; choose another path",
        ),
        (tmp_path, "name a file in it"),  # after: Is a directory
    ]:
        args = ["bench", "tta", "--data", "digits", "--log", str(log), "--no-save"]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: cannot write {log}: ") and err.endswith(f"; {says}\n")
    # Found by the training process: a file that is not a data set.
    notes = tmp_path / "notes.txt"
    notes.write_text("not images\n")
    log = tmp_path / "failed.log"
    args = ["bench", "tta", "--data", str(notes), "--epochs", "1", "--log", str(log), "--no-save"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the training run failed: ") and "not a data set" in err
    assert "error: " not in err[len("error: ") :]  # train's prefix not said again inside
    assert "not a data set" in log.read_text()  # the whole output is kept


def _fake_training(calls):
    """A stand-in for the timed ``resnetlab train`` process: it records how it was started
    and writes the summary a run that reached its target writes."""
    import subprocess

    real_run = subprocess.run

    def run(command, *args, **kwargs):
        if "--out" not in command:  # not the training process (git, asked for the commit)
            return real_run(command, *args, **kwargs)
        calls.append(kwargs["env"])
        out = Path(command[command.index("--out") + 1])
        out.mkdir(parents=True)
        summary = {"reached_target": True, "final_val_acc": 0.5, "epochs": 1}
        summary.update(train_time_s=0.1, images_per_s=100.0)
        (out / "summary.json").write_text(json.dumps(summary))
        return subprocess.CompletedProcess(command, 0)

    return run


def test_a_cache_folder_that_cannot_be_written_is_warned_of_not_fatal(
    tmp_path, monkeypatch, capsys
):
    # As for `train`: an unwritable cache costs time (the CPU measured in the run's own
    # cache), never the command.
    from resnetlab.bench import time_to_accuracy

    calls = []
    monkeypatch.setattr(time_to_accuracy.subprocess, "run", _fake_training(calls))
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "a-file"))
    out = tmp_path / "tta.jsonl"
    args = ["bench", "tta", "--model", "resnet8", "--data", "digits", "--target", "0.3"]
    assert main([*args, "--device", "cpu", "--results", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"warning: cannot write the cache folder {tmp_path / 'a-file'}" in err
    assert "set RESNETLAB_CACHE to a folder you can write to" in err
    assert json.loads(out.read_text())["reached"] is True
    (env,) = calls
    assert not (Path(env["RESNETLAB_CACHE"]) / "calibration").exists()


def test_a_run_past_its_timeout_names_the_flag(tmp_path, monkeypatch, capsys):
    import subprocess

    from resnetlab.bench import time_to_accuracy

    real_run = subprocess.run

    def too_long(command, *args, **kwargs):
        if "--out" not in command:
            return real_run(command, *args, **kwargs)
        raise subprocess.TimeoutExpired(command, kwargs["timeout"])

    monkeypatch.setattr(time_to_accuracy.subprocess, "run", too_long)
    args = ["bench", "tta", "--model", "resnet8", "--data", "digits", "--timeout", "6"]
    assert main([*args, "--device", "cpu", "--no-save"]) == 2
    assert capsys.readouterr().err == (
        "error: the training run took more than 6 s (--timeout 6): give it more seconds, or "
        "leave --timeout out to wait for the run\n"
    )
