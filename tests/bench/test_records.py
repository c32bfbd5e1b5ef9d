import errno
import io
import json
import os
import threading
from pathlib import Path

import pytest

from resnetlab.bench import default_results_dir, results_path
from resnetlab.bench.records import append_record, check_results
from resnetlab.cli import main
from resnetlab.errors import ResnetlabError

TINY = ["--model", "resnet8", "--batch-size", "2", "--input-size", "8", "--device", "cpu"]
TINY += ["--steps", "1", "--warmup", "0", "--repeats", "1"]


def test_results_go_to_the_cache_outside_a_checkout(
    tmp_path, monkeypatch, _cache_in_tmp, matmul_rate_given
):
    monkeypatch.chdir(tmp_path)
    assert default_results_dir() == _cache_in_tmp / "bench"
    assert main(["bench", "train", *TINY]) == 0
    (path,) = (_cache_in_tmp / "bench").glob("*.jsonl")
    assert json.loads(path.read_text())["kind"] == "train"
    assert not (tmp_path / "benchmarks").exists()  # nothing written where the user is


def test_results_go_to_benchmarks_results_in_a_checkout(tmp_path, monkeypatch):
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "resnetlab"\n')
    monkeypatch.chdir(tmp_path)
    assert str(default_results_dir()) == "benchmarks/results"
    assert results_path("m") == default_results_dir() / "m.jsonl"
    assert str(results_path("m", tmp_path / "x.jsonl")) == str(tmp_path / "x.jsonl")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "someone-else"\n')
    assert default_results_dir().name == "bench"


class _FullDisk(io.FileIO):
    """A file on a disk that fills up: half of each write lands, then no more."""

    def write(self, data):
        return super().write(bytes(data)[: len(data) // 2])


def test_a_record_that_does_not_fit_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    kept = tmp_path / "kept.jsonl"
    append_record({"n": 1}, kept)
    before = kept.read_bytes()
    real_open = Path.open

    def full_disk(self, mode="r", buffering=-1, *args, **kwargs):
        if "a" in mode:
            return _FullDisk(str(self), mode)
        return real_open(self, mode, buffering, *args, **kwargs)

    monkeypatch.setattr(Path, "open", full_disk)
    for path in (kept, tmp_path / "new.jsonl"):
        with pytest.raises(ResnetlabError, match="--no-save"):
            append_record({"n": 2, "text": "x" * 100}, path)
    assert kept.read_bytes() == before  # no half line for the next record to follow
    assert not (tmp_path / "new.jsonl").exists()  # no empty file


def test_a_record_goes_on_a_line_of_its_own_after_a_last_line_without_newline(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"n": 1}')  # saved by an editor that leaves out the last newline
    append_record({"n": 2}, path)
    append_record({"n": 3}, path)
    assert path.read_text() == '{"n": 1}\n{"n": 2}\n{"n": 3}\n'


def test_runs_appending_to_one_file_take_turns(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    path = tmp_path / "r.jsonl"
    append_record({"n": 1}, path)
    # Another process is appending: it holds the lock and its line is not yet written.
    with path.open("ab") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        appending = threading.Thread(target=append_record, args=({"n": 3}, path))
        appending.start()
        appending.join(0.5)
        assert appending.is_alive()  # waits for the other to finish
        other.write(b'{"n": 2}\n')
    appending.join()
    assert [json.loads(line)["n"] for line in path.read_text().splitlines()] == [1, 2, 3]


def test_results_that_cannot_be_written_are_refused_before_measuring(tmp_path, monkeypatch, capsys):
    import resnetlab.bench

    def measure(*args, **kwargs):
        raise AssertionError("measured before the results folder was checked")

    monkeypatch.setattr(resnetlab.bench, "bench_train", measure)
    (tmp_path / "a-file").write_text("")
    for results in (tmp_path / "a-file" / "sub", tmp_path / "a-file" / "r.jsonl"):
        assert main(["bench", "train", *TINY, "--results", str(results)]) == 2
        err = capsys.readouterr().err
        assert f"cannot write {results}" in err and "--no-save" in err
    # A .json or .txt name is not made a folder: records are JSON lines.
    for name in ("r.json", "r.txt"):
        with pytest.raises(ResnetlabError, match=r"JSON lines\); name a .jsonl file \(.*r.jsonl\)"):
            check_results(tmp_path / name)
        assert not (tmp_path / name).exists()
    assert main(["bench", "train", *TINY, "--results", str(tmp_path / "x.txt")]) == 2
    err = capsys.readouterr().err
    assert f"--results {tmp_path / 'x.txt'}: takes a folder or a .jsonl file" in err
    assert not (tmp_path / "x.txt").exists()
    # An existing file without a suffix is no folder to make ("File exists" before).
    (tmp_path / "records").write_text("")
    with pytest.raises(ResnetlabError, match=r"records: takes a folder or a .jsonl file \(rec"):
        check_results(tmp_path / "records")
    (tmp_path / "runs.v2").mkdir()  # a folder that exists is taken, whatever its name
    check_results(tmp_path / "runs.v2")
    check_results(tmp_path / "new" / "deeper" / "r.jsonl")  # missing folders are made
    assert (tmp_path / "new" / "deeper").is_dir()
    assert not list((tmp_path / "new" / "deeper").iterdir())  # and left empty


def test_a_results_file_that_cannot_be_appended_to_is_refused_before_measuring(
    tmp_path, monkeypatch
):
    path = tmp_path / "r.jsonl"
    path.write_text("")
    real_open = Path.open

    def read_only(self, mode="r", *args, **kwargs):
        if self == path and "a" in mode:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", read_only)
    with pytest.raises(ResnetlabError, match=r"cannot write .*r\.jsonl: Permission denied; .*"):
        check_results(path)


def test_an_unwritable_results_folder_names_the_flag_that_moves_it(tmp_path, monkeypatch, capsys):
    import resnetlab.bench

    def measure(*args, **kwargs):
        raise AssertionError("measured before the results folder was checked")

    monkeypatch.setattr(resnetlab.bench, "bench_train", measure)
    monkeypatch.chdir(tmp_path)  # not a checkout: the default folder is <cache>/bench
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "a-file"))
    assert main(["bench", "train", *TINY]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write {tmp_path / 'a-file' / 'bench'}: ")
    assert err.endswith("; give --results a folder you can write to, or add --no-save\n")
    assert main(["bench", "train", *TINY, "--results", "a-file/r.jsonl"]) == 2
    assert capsys.readouterr().err.endswith("; choose another --results, or add --no-save\n")


def test_a_record_made_within_a_cpu_quota_says_so(monkeypatch):
    """In a container limited to 2 CPUs of a 32-core host (docker --cpus=2) a record named
    the host's 32 cores alone: its numbers are those of 2."""
    import torch

    from resnetlab.bench import records

    monkeypatch.setattr(records, "available_cpus", lambda: 32)
    monkeypatch.setattr(records, "cpu_name", lambda: "AMD EPYC")
    monkeypatch.setattr(records, "cpu_quota", lambda: (2.0, "cpu.max 200000 100000"))
    assert records.device_name(torch.device("cpu")) == "AMD EPYC, 32 cores, a quota of 2 CPUs"
    assert records.environment(torch.device("cpu"))["cpu_quota"] == 2.0
    monkeypatch.setattr(records, "cpu_quota", lambda: None)
    assert records.device_name(torch.device("cpu")) == "AMD EPYC, 32 cores"
    assert records.environment(torch.device("cpu"))["cpu_quota"] is None
