import json

from resnetlab.bench import default_results_dir, results_path
from resnetlab.cli import main

TINY = ["--model", "resnet8", "--batch-size", "2", "--input-size", "8", "--device", "cpu"]
TINY += ["--steps", "1", "--warmup", "0", "--repeats", "1"]


def test_results_go_to_the_cache_outside_a_checkout(tmp_path, monkeypatch, _cache_in_tmp):
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
