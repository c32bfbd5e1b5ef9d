import errno
import json
import os
from pathlib import Path

import pytest

import resnetlab
from resnetlab.bench import as_record, read_records, render_table, update_readme
from resnetlab.bench.table import BEGIN, END, newest_per_command
from resnetlab.cli import main

from ..conftest import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "benchmarks" / "results"

MACHINE = {
    "machine": "amd-epyc-2cpu",
    "device": "AMD EPYC, 2 cores",
    "cpu": {
        "model": "AMD EPYC",
        "family": "25/17/1",
        "capability": "AVX512",
        "bf16": True,
        "amx": False,
    },
    "threads": 2,
    "load_before": [1.5, 1.0, 0.5],
    "versions": {"torch": "2.14.1"},
    "date": "2026-12-01T10:00:00+00:00",
}


def _spread(*values):
    return {"median": sorted(values)[len(values) // 2], "min": min(values), "max": max(values)}


TRAIN = {
    "kind": "train",
    "command": "resnetlab bench train --model resnet18",
    "model": "resnet18",
    "settings": {"batch_size": 64, "input_size": 64, "precision": "bf16", "channels_last": False},
    "ours": {"what": "resnetlab resnet18", "images_per_s": _spread(301.4, 298.0, 310.2)},
    "peer": {
        "what": "torchvision.models.resnet18 (x)",
        "precision": "fp32",
        "images_per_s": _spread(150.2, 149.0, 160.0),
        "fraction_of_matmul": 0.3449,
    },
    "ratio": _spread(2.004, 1.9, 2.1),
    **MACHINE,
}
TRAIN["ours"]["fraction_of_matmul"] = 0.1551


def test_each_kind_of_record_has_its_row():
    assert as_record(TRAIN).row() == (
        "| train `resnet18`, 64x64, batch 64, bf16, NCHW | 301 img/s (298-310), 16% of the bf16 "
        "matrix-product rate | 150 img/s (149-160), 34% of the fp32 matrix-product rate: "
        "torchvision.models.resnet18, fp32, NCHW | 2.00x | `resnetlab bench train --model "
        "resnet18` | AMD EPYC (family 25 model 17, AVX512, bf16), 2 cores, 2 threads, load 1.5 | "
        "2026-12-01 | 2.14.1 |"
    )
    time_to_accuracy = {
        "kind": "time-to-accuracy",
        "model": "resnet20",
        "data": "digits",
        "target": 0.95,
        "reached": True,
        "seconds": 12.5523,
        "accuracy": 0.966573,
        "epochs": 4,
        **MACHINE,
    }
    cells = as_record(time_to_accuracy).cells()
    assert cells["what"] == "time to 95.00% `resnet20` on `digits`"
    assert cells["ours"] == "12.6 s, reached (96.66% after 4 epochs)"
    one = as_record({**time_to_accuracy, "epochs": 1, "reached": False}).cells()["ours"]
    assert one == "12.6 s, missed (96.66% after 1 epoch)"
    old = {**time_to_accuracy, "kind": "tta"}  # the name before 0.2
    assert as_record(old).cells() == cells
    data = {
        "kind": "data",
        "data": "../shared/data/cifar10-jpg.tar.gz",
        "batch_size": 256,
        "load_cold_s": 24.6612,
        "load_cached_s": 1.1251,
        "device_loader": {"images_per_s": 30405.4},
        "usual_way": {"images_per_s": 2223.1},
        "ratio": 13.6772,
    }
    assert as_record(data).cells() == {
        "what": "data `cifar10-jpg.tar.gz`, batch 256",
        "ours": "device loader 30,405 img/s; load 24.66 s, from cache 1.13 s",
        "peer": "per-image transforms 2,223 img/s",
        "ratio": "13.68x",
    }
    with pytest.raises(resnetlab.ResnetlabError, match="unknown kind of benchmark record: 'x'"):
        as_record({"kind": "x"})


def test_fields_a_record_lacks_show_as_dashes_not_none():
    # A record written by hand (or by an older version) with only the figures: a GPU's.
    bare = {k: v for k, v in TRAIN.items() if k not in {*MACHINE, "command"}}
    for record in (bare, {**bare, "versions": None, "date": None, "device": None}):
        assert as_record(record).row().endswith("| 2.00x | - | - | - | - |")
    assert as_record(bare).lines()[-1] == "  -, torch -"
    gpu = {**bare, "device": "NVIDIA H200", "threads": 16, "date": "2026-12-04T17:46:49+00:00"}
    assert as_record(gpu).row().endswith("| - | NVIDIA H200, 16 threads | 2026-12-04 | - |")


def test_terminal_lines_name_both_sides():
    lines = as_record(TRAIN).lines()
    assert lines[0] == "train resnet18, 64x64, batch 64, bf16, NCHW"
    assert lines[2].startswith("  peer: 150 img/s (149-160), 34% of the fp32")
    # A share under 1% (a tiny net on a large GPU) in two digits, not as "0%".
    tiny = {**TRAIN, "ours": {**TRAIN["ours"], "fraction_of_matmul": 0.00423}}
    assert ", 0.42% of the bf16 matrix-product rate" in as_record(tiny).lines()[1]
    assert lines[3] == (
        "  ours/peer: 2.00x (speed: above 1, ours is faster; median of the per-repeat ratios)"
    )
    # A latency ratio is a speed ratio too: ours at 2 ms against the peer's 4 ms is 2x.
    infer = {
        **TRAIN,
        "kind": "infer",
        "ours": {"what": "ours", "latency_ms": _spread(2.0), "images_per_s": _spread(500.0)},
        "peer": {"what": "peer", "latency_ms": _spread(4.0), "images_per_s": _spread(250.0)},
        "ratio": {"latency": _spread(2.0), "throughput": _spread(2.0)},
    }
    assert as_record(infer).lines()[3] == (
        "  ours/peer: latency 2.00x, throughput 2.00x (speed: above 1, ours is faster; median "
        "of the per-repeat ratios)"
    )
    assert lines[4] == (
        "  AMD EPYC (family 25 model 17, AVX512, bf16), 2 cores, 2 threads, load 1.5, torch 2.14.1"
    )


def test_the_table_command_renders_recorded_results(tmp_path, capsys, monkeypatch):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(TRAIN) + "\n")
    assert main(["bench", "table", str(path)]) == 0
    header, _, row = capsys.readouterr().out.splitlines()
    assert header.startswith("| what | ours | peer | ours/peer | command |")
    assert row == as_record(TRAIN).row()

    table = render_table([TRAIN])
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{BEGIN}\nold\n{END}\n\nrest\n")
    update_readme(readme, table)
    assert readme.read_text() == f"# x\n\n{BEGIN}\n{table}{END}\n\nrest\n"
    # A README that cannot be written is named in one line and left whole.
    before = readme.read_text()
    with monkeypatch.context() as patch:
        patch.setattr(
            "resnetlab.bench.table.atomic_write", _fails(OSError(errno.ENOSPC, "No space left"))
        )
        with pytest.raises(resnetlab.ResnetlabError, match=r"cannot write .*README\.md: No space"):
            update_readme(readme, table)
    assert readme.read_text() == before
    readme.write_text("no markers\n")
    with pytest.raises(resnetlab.ResnetlabError, match="no <!-- bench-table --> "):
        update_readme(readme, table)
    readme.write_text(f"# x\n{END}\n{BEGIN}\n")  # the end marker first: not a pair
    with pytest.raises(resnetlab.ResnetlabError, match="no <!-- bench-table --> "):
        update_readme(readme, table)
    readme.write_bytes(f"{BEGIN}\n{END}\n".encode("utf-16"))
    with pytest.raises(resnetlab.ResnetlabError, match=r"README\.md is not UTF-8 text; --update"):
        update_readme(readme, table)
    with pytest.raises(resnetlab.ResnetlabError, match=r"\w is a folder; --update takes the "):
        update_readme(tmp_path, table)


def _fails(error):
    def fail(*args, **kwargs):
        raise error

    return fail


def test_a_record_that_cannot_be_saved_is_one_line_and_was_printed(tmp_path, capsys, monkeypatch):
    # The disk fills up during the measurement (a folder that cannot be written is refused
    # before it).
    real_open = Path.open

    def full_disk(self, mode="r", *args, **kwargs):
        if "a" in mode:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", full_disk)
    args = ["bench", "infer", "--model", "resnet8", "--steps", "1", "--warmup", "0"]
    code = main([*args, "--repeats", "1", "--results", str(tmp_path / "results")])
    out, err = capsys.readouterr()
    assert code == 2 and "img/s" in out  # the measurement is not lost
    assert err.strip().splitlines()[-1].startswith("error: cannot write ")
    assert err.strip().endswith("or add --no-save (the record is printed above)")


def test_a_rerun_replaces_its_row():
    first = {"kind": "train", "machine": "m", "command": "resnetlab bench train A", "date": "1"}
    other = {**first, "command": "resnetlab bench train B", "date": "2"}
    again = {**first, "date": "3"}
    elsewhere = {**first, "machine": "n", "date": "4"}
    assert newest_per_command([first, other, again, elsewhere]) == [other, again, elsewhere]
    # Another CPU under the same machine name (a VM of the same model name) keeps its row.
    avx512 = {**first, "cpu": {"model": "m", "family": "25/1/1", "capability": "AVX512"}}
    avx2 = {**avx512, "cpu": {**avx512["cpu"], "capability": "AVX2"}, "date": "5"}
    assert newest_per_command([avx512, avx2]) == [avx512, avx2]


def test_a_broken_results_file_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    for text, says in [
        ("\nnot json\n", r"bad.jsonl:2: not a JSON line"),
        ("[1, 2]\n", r"bad.jsonl:1: a JSON list, not a record \(a JSON object\); remove the line$"),
        ('{"kind": "train"}\n', r"bad.jsonl:1: a damaged benchmark record \(no '\w+'\); remove"),
        ('{"kind": "fast"}\n', r"bad.jsonl:1: unknown kind of benchmark record: 'fast'"),
        # A CPU plan (`bench calibrate --json`) is not a measurement: said so, not "None".
        (
            '{"precision": "fp32"}\n',
            r"/bad.jsonl:1: not a benchmark record \(no 'kind'\); the table shows what `bench "
            r"train`, `infer`, `data` and `time-to-accuracy` record \(their .jsonl files, or "
            r"one saved from --json\)$",
        ),
    ]:
        path.write_text(text)
        with pytest.raises(resnetlab.ResnetlabError, match=says):
            read_records([path])
    # A command written as a list (by hand): no key to find its reruns by.
    path.write_text(json.dumps({**TRAIN, "command": ["resnetlab", "bench"]}) + "\n")
    with pytest.raises(resnetlab.ResnetlabError, match=r"bad.jsonl:1: a damaged benchmark rec"):
        read_records([path])
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(resnetlab.ResnetlabError, match=r"bad.jsonl is not a text file"):
        read_records([path])
    (tmp_path / "empty").mkdir()
    with pytest.raises(resnetlab.ResnetlabError, match=r"empty: it holds no .jsonl files"):
        read_records([tmp_path / "empty"])
    # Empty files are no records either: `--update` would empty the README's table.
    (tmp_path / "empty" / "m.jsonl").write_text("\n")
    with pytest.raises(resnetlab.ResnetlabError, match=r"empty: its .jsonl files are empty;"):
        read_records([tmp_path / "empty"])
    with pytest.raises(resnetlab.ResnetlabError, match=r"m.jsonl: the file is empty; `resnet"):
        read_records([tmp_path / "empty" / "m.jsonl"])


def test_records_without_a_text_date_are_ordered_first_or_named(tmp_path):
    # A record written by hand, or by another tool: a null date is none, a number is named.
    path = tmp_path / "r.jsonl"
    undated = {**TRAIN, "date": None}
    path.write_text(json.dumps(TRAIN) + "\n" + json.dumps(undated) + "\n")
    assert read_records([path]) == [undated, TRAIN]
    path.write_text(json.dumps(TRAIN) + "\n" + json.dumps({**TRAIN, "date": 20261201}) + "\n")
    with pytest.raises(
        resnetlab.ResnetlabError,
        match=r"r.jsonl:2: a damaged benchmark record \(its date is 20261201\); remove the line",
    ):
        read_records([path])


def test_a_record_saved_from_json_output_is_read(tmp_path, capsys):
    # `resnetlab bench train ... --json > mine.json`: one record over several lines.
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(TRAIN, indent=2) + "\n")
    assert read_records([path]) == [TRAIN]
    assert main(["bench", "table", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[2] == as_record(TRAIN).row()
    path.write_text(json.dumps({"kind": "train"}, indent=2))
    with pytest.raises(resnetlab.ResnetlabError, match=r"mine.json: a damaged benchmark record"):
        read_records([path])


def test_readme_table_is_rendered_from_the_recorded_results():
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert BEGIN in text and END in text
    table = text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"
    assert table == render_table(read_records([RESULTS]))
