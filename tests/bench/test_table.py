import json

import pytest

import resnetlab
from resnetlab.bench import read_records, render_table, update_readme
from resnetlab.bench.table import BEGIN, END, newest_per_command
from resnetlab.cli import main

from ..conftest import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "benchmarks" / "results"


def _record(tmp_path):
    out = tmp_path / "r.jsonl"
    args = ["bench", "train", "--model", "resnet20", "--batch-size", "2", "--input-size", "8"]
    args += ["--steps", "1", "--warmup", "0", "--repeats", "1", "--vs", "torchvision"]
    assert main([*args, "--device", "cpu", "--results", str(out)]) == 0
    return out


def test_table_rows_say_what_ran_where(tmp_path, capsys):
    path = _record(tmp_path)
    capsys.readouterr()
    assert main(["bench", "table", str(path)]) == 0
    table = capsys.readouterr().out
    header, _, row = table.splitlines()
    assert header.startswith("| what | ours | peer | ours/peer | command |")
    record = json.loads(path.read_text())
    assert row.startswith("| train `resnet20`, 8x8, batch 2, fp32, channels-last |")
    assert f"`{record['command']}`" in row and record["device"] in row
    assert record["date"][:10] in row and record["versions"]["torch"] in row

    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{BEGIN}\nold\n{END}\n\nrest\n")
    update_readme(readme, table)
    assert readme.read_text() == f"# x\n\n{BEGIN}\n{table}{END}\n\nrest\n"
    readme.write_text("no markers\n")
    with pytest.raises(resnetlab.ResnetlabError, match="no <!-- bench-table --> "):
        update_readme(readme, table)


def test_a_rerun_replaces_its_row():
    first = {"kind": "train", "machine": "m", "command": "resnetlab bench train A", "date": "1"}
    other = {**first, "command": "resnetlab bench train B", "date": "2"}
    again = {**first, "date": "3"}
    elsewhere = {**first, "machine": "n", "date": "4"}
    assert newest_per_command([first, other, again, elsewhere]) == [other, again, elsewhere]


def test_a_broken_results_file_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"kind": "train"}\nnot json\n')
    with pytest.raises(resnetlab.ResnetlabError, match=r"bad.jsonl:2: not a JSON line"):
        read_records([path])


def test_readme_table_is_rendered_from_the_recorded_results():
    text = (PROJECT_ROOT / "README.md").read_text()
    assert BEGIN in text and END in text
    table = text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"
    assert table == render_table(read_records([RESULTS]))
