"""The command line itself: start-up, errors, names."""

import argparse
import gc
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import resnetlab
from resnetlab.cli import build_parser, main
from resnetlab.engine.train import _with_advice
from resnetlab.errors import command_line

from .conftest import PROJECT_ROOT
from .data.conftest import noise, write_tree

IMPORTS_TORCH = """
import sys
from resnetlab.cli import main
try:
    code = main({argv!r})
except SystemExit as stop:
    code = stop.code
print("exit:", code)
print("torch imported:", "torch" in sys.modules)
"""


def _every_help() -> list[list[str]]:
    """``--help`` of the command line, of each command, and of each command's actions."""
    from resnetlab.cli import _subcommands

    helps = [["--version"], ["--help"]]
    for command, parser in _subcommands(build_parser()).items():
        helps.append([command, "--help"])
        helps += [[command, action, "--help"] for action in _subcommands(parser)]
    return helps


# Each of these stops at an argument error, with the hints that look at names and paths.
ARGUMENT_ERRORS = [
    ["train", "--bogus"],  # unknown flag
    ["train", "photos"],  # a stray argument, looked up as data
    ["train", "--recipe", "pepr"],  # a misspelt choice
    ["eval", "model.safetensors", "digits"],  # required --data, given without its flag
    ["experiment", "degradation"],  # a required option missing
    ["inspect"],  # an action without its command: every command's parser is built
    ["bench", "calibrate", "--model", "resnet20", "--input-size", "3"],
    ["summary", "resnet20", "--num-classes", "0"],
]


# ``IMPORTS_TORCH`` for many commands in one process, each one's output kept apart: a line
# "after: [argv, exit status, whether torch is imported by then]" after each.
EACH_IMPORTS_TORCH = """
import contextlib, io, json, sys
from resnetlab.cli import main
for argv in {argvs!r}:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as stop:
            code = stop.code
    print("after:", json.dumps([argv, code, "torch" in sys.modules]), flush=True)
"""


@pytest.fixture(scope="module")
def without_torch(request):
    """``EACH_IMPORTS_TORCH`` run for the ``argv`` of each test of it this session runs, one
    after another in one fresh process started with the first test (a process apiece cost
    a fifth of a second of CPU each, most of it the interpreter starting): torch never
    imported after a command means that no command before it imported it either. By
    ``tuple(argv)``: the exit status and whether torch was imported by then, with the first
    command after which it was."""
    argvs = [
        item.callspec.params["argv"]
        for item in request.session.items
        if item.originalname == "test_help_and_argument_errors_do_not_import_torch"
    ]
    process = subprocess.Popen(
        [sys.executable, "-c", EACH_IMPORTS_TORCH.format(argvs=argvs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
    )
    results = {}

    def result(argv: list[str]) -> tuple[int, bool, list[str] | None]:
        if not results:
            out, err = process.communicate(timeout=300)
            assert process.returncode == 0, err
            lines = [json.loads(line[6:]) for line in out.splitlines() if line[:6] == "after:"]
            first = next((a for a, _, imported in lines if imported), None)
            results.update({tuple(a): (code, imported, first) for a, code, imported in lines})
        return results[tuple(argv)]

    yield result
    if process.poll() is None:
        process.kill()
        process.communicate()


@pytest.mark.parametrize("argv", [*_every_help(), *ARGUMENT_ERRORS], ids=" ".join)
def test_help_and_argument_errors_do_not_import_torch(without_torch, argv):
    code, imported, first = without_torch(argv)
    assert code == (2 if argv in ARGUMENT_ERRORS else 0)
    assert not imported, f"torch imported by {first}"


PLOTTING_MODULES = ("matplotlib", "torch.utils.flop_counter")  # the latter imports triton


def test_predict_starts_without_the_plotting_modules(tmp_path):
    """It took 0.7-1 s more to start: matplotlib came with the error gallery the training
    loop imports, triton with the FLOP counter of the model summary."""
    from PIL import Image

    model = tmp_path / "m.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=10), model)
    image = tmp_path / "a.png"
    Image.new("RGB", (32, 32), (90, 40, 200)).save(image)
    argv = ["predict", str(model), str(image)]
    script = IMPORTS_TORCH.format(argv=argv) + f"print(*{PLOTTING_MODULES!r} & sys.modules.keys())"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert "exit: 0" in done.stdout, done.stderr
    assert done.stdout.splitlines()[-1] == "", done.stdout


def test_the_inference_precisions_offered_are_the_engines():
    from resnetlab.cli import _add_inference_precision
    from resnetlab.engine.step import PRECISION_DTYPES

    parser = argparse.ArgumentParser()
    _add_inference_precision(parser)
    (action,) = [a for a in parser._actions if a.dest == "precision"]
    assert tuple(action.choices) == tuple(PRECISION_DTYPES) and action.default == "fp32"


def test_the_readme_gives_the_inference_precisions_of_predict_eval_and_serve():
    from resnetlab.engine.inference import INFERENCE_PRECISIONS

    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    flag = f"[--precision {'|'.join(INFERENCE_PRECISIONS)}]"
    for command in ("eval", "predict", "serve"):
        (line,) = [s for s in readme.splitlines() if s.startswith(f"resnetlab {command} MODEL")]
        assert flag in line, command
    assert '`--precision bf16` (or `fp16`; `precision="bf16"`' in readme


def test_eval_help_gives_the_defaults_the_readme_gives(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--batch-size BATCH_SIZE images per batch (256)" in text
    assert "--device DEVICE auto, cpu, cuda, cuda:N or mps" in text
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert "resnetlab eval MODEL_FILE --data SPEC [--png PATH] [--batch-size 256]" in readme


def test_the_command_exits_without_a_final_garbage_collection(monkeypatch, capsys):
    """``resnetlab`` (the console script and ``python -m resnetlab``) runs ``main`` with the
    process's arguments and returns its exit status, leaving what is alive frozen: the
    interpreter's last collections then skip it."""
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "resnetlab"]
    assert script.value == "resnetlab.cli:run"
    monkeypatch.setattr(sys, "argv", ["resnetlab", "summary", "missing.safetensors"])
    try:
        assert script.load()() == 2
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
    assert "error:" in capsys.readouterr().err
    done = subprocess.run(  # python -m resnetlab exits with the command's status
        [sys.executable, "-m", "resnetlab", "summary", "missing.safetensors"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
    )
    assert done.returncode == 2 and "model file not found" in done.stderr


def _error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_a_misspelt_flag_names_the_command_and_the_flag_it_resembles(capsys):
    err = _error(capsys, ["train", "--modle", "resnet8"])
    lines = err.strip().splitlines()
    assert lines[0] == "usage: resnetlab train ... (see resnetlab train --help)"
    assert lines[1] == "error: unrecognized arguments: --modle (did you mean --model?) resnet8"
    # The dashes every flag starts with make no likeness: --seconds is not --json.
    err = _error(capsys, ["bench", "train", "--model", "resnet8", "--seconds", "1"])
    assert err.strip().splitlines()[1] == "error: unrecognized arguments: --seconds 1"


@pytest.mark.parametrize(
    "command",
    [["train", "--data", "digits"], ["summary", "resnet8"], ["data", "inspect", "digits"]],
)
def test_an_input_size_of_two_sides_is_told_to_give_one(capsys, command):
    # train said "invalid int value: '64x64'", the others "not a whole number": no fix.
    err = _error(capsys, [*command, "--input-size", "64x64"])
    assert err.strip().splitlines()[1] == (
        "error: argument --input-size: '64x64' is two sides, and the models see square "
        "images: give one side: --input-size 64"
    )
    err = _error(capsys, [*command, "--input-size", "320,200"])
    assert err.strip().splitlines()[1].endswith("give one side, e.g. --input-size 200")


def test_an_earlier_name_another_command_keeps_is_answered_with_this_ones(capsys):
    # data inspect still takes --image-size; train was said to lack it, not to take --input-size.
    for command in (["train", "--data", "digits"], ["summary", "resnet8"]):
        err = _error(capsys, [*command, "--image-size", "64"])
        assert err.strip().splitlines()[1] == (
            "error: unrecognized arguments: --image-size (did you mean --input-size?) 64"
        )


def test_another_commands_flag_names_the_commands_that_take_it_not_a_lookalike(capsys):
    # `eval --input-size 128` was asked "did you mean --batch-size?", another setting.
    err = _error(capsys, ["eval", "m.safetensors", "--data", "digits", "--input-size", "128"])
    assert err.strip().splitlines()[1] == (
        "error: unrecognized arguments: --input-size (an option of train, summary, "
        "data inspect, ...; not of eval) 128"
    )
    err = _error(capsys, ["explain", "m.safetensors", "x.jpg", "--top-k", "5"])
    assert err.strip().splitlines()[1] == (
        "error: unrecognized arguments: --top-k (an option of predict, serve; not of explain) 5"
    )
    err = _error(capsys, ["--json"])
    assert err.strip().splitlines()[1] == (
        "error: unrecognized arguments: --json (an option of eval, predict, explain, ...; "
        "name the command first)"
    )


def test_data_given_to_predict_or_explain_is_told_to_name_the_images_without_it(capsys):
    # `predict m.safetensors --data photos/` was told --data was not predict's, not the fix.
    for command in ("predict", "explain"):
        err = _error(capsys, [command, "m.safetensors", "--data", "photos/"])
        assert err.strip().splitlines()[1] == (
            "error: unrecognized arguments: --data (an option of train, eval, export, ...; "
            f"not of {command}: name the images and folders without it)"
        )


def test_a_misspelt_flag_without_a_command_is_named_not_the_missing_command(capsys):
    # `resnetlab --verison` said only "the following arguments are required: COMMAND".
    err = _error(capsys, ["--verison"])
    assert err.strip().splitlines() == [
        "usage: resnetlab ... (see resnetlab --help)",
        "error: unrecognized arguments: --verison (did you mean --version?)",
    ]
    err = _error(capsys, [])  # nothing given: the command is what is missing
    assert err.strip().splitlines()[1] == "error: the following arguments are required: COMMAND"


def test_help_typed_as_a_command_points_to_the_help_flag(capsys):
    # `resnetlab help` said "did you mean eval?".
    err = _error(capsys, ["help"])
    assert err.strip().splitlines()[1].endswith("; did you mean resnetlab --help?")
    err = _error(capsys, ["bench", "help"])
    assert err.strip().splitlines()[1].endswith("; did you mean resnetlab bench --help?")


def test_the_python_keyword_typed_as_a_flag_names_the_flag(capsys, tmp_path):
    # explain(model, images, target=3) in Python; --class on the command line.
    err = _error(capsys, ["explain", str(tmp_path / "m.safetensors"), "x.jpg", "--target", "3"])
    assert err.strip().splitlines()[1] == (
        "error: unrecognized arguments: --target (did you mean --class?) 3"
    )


def test_an_unknown_model_option_is_one_line_naming_the_options(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--model-option", "foo=1", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        "error: resnet20 has no option foo; it takes widths, stem, stem_width, residual, "
        "shortcut, stride_in_1x1, groups, base_width, attn_layer, zero_init_residual, "
        "norm_layer, act_layer, bias, norm_eps\n"
    )
    assert not out.exists()


def test_an_out_of_range_value_in_a_config_file_is_named_with_the_file(capsys, tmp_path):
    config, out = tmp_path / "config.json", tmp_path / "run"
    config.write_text('{"epochs": 4, "lr": 0}')
    assert main(["train", "--config", str(config), "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"error: {config}: lr must be positive, got 0\n"
    assert not out.exists()


def test_a_json_file_of_other_settings_given_as_config_is_named_not_a_runs(capsys, tmp_path):
    # Another library's config.json, or a run's summary.json copied away from its run: most
    # keys are no training option, and a list of them with near names would mislead.
    other, out = tmp_path / "config.json", tmp_path / "run"
    other.write_text('{"architectures": ["ResNet"], "model_type": "resnet", "depths": [3, 4]}')
    assert main(["train", "--config", str(other), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"error: {other} is not a run's config.json: architectures, depths, model_type are no "
        "training options; --config takes the config.json a run wrote in its folder "
        "(runs/<run>/config.json)\n"
    )
    assert not out.exists()
    # A run's configuration with a key mistyped is told of that key.
    other.write_text('{"epochs": 4, "lr": 0.1, "bacth_size": 8}')
    assert main(["train", "--config", str(other), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"error: unknown training option in {other}: bacth_size (did you mean batch_size?)\n"
    )


def test_a_config_files_data_that_is_gone_says_to_give_its_new_place(capsys, tmp_path):
    config, out, gone = tmp_path / "config.json", tmp_path / "run", tmp_path / "photos"
    config.write_text(json.dumps({"model": "resnet8", "data": str(gone), "epochs": 1}))
    assert main(["train", "--config", str(config), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"error: {config} trained on {gone}, which is not there now; if it moved, give its new "
        f"place: --config {config} --data PATH\n"
    )
    assert not out.exists()


def test_data_given_without_its_flag_is_named_with_it(capsys, tmp_path):
    err = _error(capsys, ["train", str(tmp_path), "--epochs", "1"])
    assert err.splitlines()[1] == (
        f"error: unrecognized arguments: {tmp_path} (did you mean --data {tmp_path}?)"
    )


def test_data_given_without_the_flag_a_command_requires_is_named_with_it(capsys, tmp_path):
    # `resnetlab eval model.safetensors photos/`: --data is required, and photos/ is there.
    model = tmp_path / "best.safetensors"
    model.write_bytes(b"")
    for args in ([str(tmp_path)], ["--json", str(tmp_path)]):
        err = _error(capsys, ["eval", str(model), *args])
        assert err.splitlines()[1] == (
            f"error: the following arguments are required: --data (did you mean --data {tmp_path}?)"
        )
    err = _error(capsys, ["eval", str(model), "--png", str(tmp_path / "m.png")])
    assert err.splitlines()[1] == "error: the following arguments are required: --data"


def test_eval_of_one_image_points_to_predict(capsys, tmp_path):
    from PIL import Image

    image = tmp_path / "new.jpg"
    Image.new("RGB", (8, 8)).save(image)
    model = tmp_path / "best.safetensors"
    model.write_bytes(b"")  # never read: the data is refused first
    assert main(["eval", str(model), "--data", str(image)]) == 2
    assert capsys.readouterr().err == (
        f"error: {image} is an image, not a data set to score (a folder of class folders, an "
        f".h5 file...); to classify it: resnetlab predict {model} {image}\n"
    )


def test_a_command_a_message_gives_quotes_a_path_with_a_space(capsys, tmp_path):
    # photos/Red Leaf/new.jpg: the command to run names it as one word, as it can be pasted;
    # so do the flags a message gives (option), and a path without a space stays as it is.
    from PIL import Image

    from resnetlab.errors import command_line, option

    folder = tmp_path / "Red Leaf"
    folder.mkdir()
    image = folder / "it's new.jpg"
    Image.new("RGB", (8, 8)).save(image)
    model = tmp_path / "best.safetensors"
    model.write_bytes(b"")  # never read: the data is refused first
    assert main(["eval", str(model), "--data", str(image)]) == 2
    quoted = "'" + str(image).replace("'", "'\"'\"'") + "'"
    assert capsys.readouterr().err.endswith(f"to classify it: resnetlab predict {model} {quoted}\n")
    err = _error(capsys, ["train", str(folder), "--epochs", "1"])
    assert err.splitlines()[1].endswith(f"(did you mean --data '{folder}'?)")
    with command_line():
        assert option("data", folder) == f"--data '{folder}'"
        assert option("data", tmp_path) == f"--data {tmp_path}"
        # A flag of several values is several words, each quoted only where it needs it.
        assert option("depths", [8, 14]) == "--depths 8 14"
        assert option("images", [folder, "b.jpg"]) == f"--images '{folder}' b.jpg"
    assert option("data", folder) == f"data={str(folder)!r}"
    assert option("depths", [8, 14]) == "depths=[8, 14]"


def test_a_windows_path_is_quoted_only_where_it_holds_a_space():
    # cmd and PowerShell read a backslash as a folder's separator, and take double quotes.
    from resnetlab.errors import shell_word

    assert shell_word("C:\\Users\\me\\photos", windows=True) == "C:\\Users\\me\\photos"
    assert shell_word("C:\\My Photos\\cat", windows=True) == '"C:\\My Photos\\cat"'


def test_eval_of_a_model_file_as_data_says_the_model_comes_first(capsys, tmp_path):
    # `resnetlab eval photos.h5 --data best.safetensors`, or the same file twice: the data
    # layer's "which --pretrained takes" is train's fix, not eval's.
    model = tmp_path / "best.safetensors"
    model.write_bytes(b"")
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"")
    for data, kind in ((model, "a model file"), (onnx, "an ONNX export")):
        assert main(["eval", str(model), "--data", str(data)]) == 2
        assert capsys.readouterr().err == (
            f"error: {data} is {kind}, not a data set to score: the model comes first and the "
            f"images after --data (resnetlab eval {data} --data IMAGES)\n"
        )


def test_a_shell_pattern_of_class_folders_names_the_folder_that_holds_them(capsys, tmp_path):
    """``--data photos/*``, which the shell expands to each class folder: the first is taken
    as --data, and the error names photos, not one more class folder, as the data to give."""
    classes = [tmp_path / "photos" / name for name in ("cat", "dog", "emu")]
    for folder in classes:
        folder.mkdir(parents=True)
    rest = " ".join(map(str, classes[1:]))
    err = _error(capsys, ["train", "--data", *map(str, classes), "--epochs", "1"])
    assert err.splitlines()[1] == (
        f"error: unrecognized arguments: {rest} (a pattern such as {tmp_path / 'photos'}/* "
        f"names each folder in {tmp_path / 'photos'}: give the folder that holds them, "
        f"--data {tmp_path / 'photos'})"
    )
    err = _error(capsys, ["data", "inspect", *map(str, classes)])
    assert err.splitlines()[1].endswith(f"give the folder that holds them, {tmp_path / 'photos'})")


def test_a_misspelt_flag_of_a_nested_command_names_that_command(capsys):
    err = _error(capsys, ["data", "inspect", "digits", "--no-shet"])
    assert "usage: resnetlab data inspect ..." in err
    assert "did you mean --no-sheet?" in err


def test_a_wrong_choice_is_two_lines_with_the_close_one(capsys):
    err = _error(capsys, ["train", "--optimizer", "Adam"])
    assert len(err.strip().splitlines()) == 2
    assert "invalid choice 'Adam' (choose from sgd, adam, adamw); did you mean adam?" in err


def test_convert_given_a_file_where_its_kind_goes_shows_the_command(capsys):
    err = _error(capsys, ["convert", "ResNet50.h5", "out.safetensors"])
    assert err.rstrip().endswith(
        "invalid choice 'ResNet50.h5' (choose from keras, pretrained); name the kind first: "
        "resnetlab convert keras ResNet50.h5 ..."
    )
    for source in ("resnet18-f37072fd.pth", "timm:resnet50.a1_in1k"):
        err = _error(capsys, ["convert", source, "out.safetensors"])
        assert err.rstrip().endswith(
            f"name the kind first: resnetlab convert pretrained {source} ..."
        )


def test_an_unknown_command_suggests_the_close_one(capsys):
    err = _error(capsys, ["evall"])
    assert "did you mean eval?" in err


def test_an_action_given_without_its_command_names_the_command(capsys):
    # `resnetlab inspect photos/` for `resnetlab data inspect photos/`: not "predict", the
    # command whose spelling is nearest.
    err = _error(capsys, ["inspect", "photos/"])
    assert err.rstrip().endswith("; did you mean data inspect?")
    assert "did you mean convert keras?" in _error(capsys, ["keras", "ResNet50.h5", "out"])
    assert "did you mean experiment degradation?" in _error(capsys, ["degradation"])


def test_the_model_table_keeps_each_name_whole_in_80_columns(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # a pipe, or a narrow terminal
    assert main(["models", "wide*"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("wide_resnet50_2", "wide_resnet101_2"))
    assert max(map(len, out.splitlines())) <= 80
    # A word longer than its column is folded onto the next line, not cut ("(WRN-50-2…")
    assert main(["models"]) == 0
    assert "…" not in capsys.readouterr().out


def test_a_pattern_that_matches_no_model_is_an_error(capsys):
    assert main(["models", "resnt*"]) == 2
    assert "no model matches 'resnt*'; did you mean resnet" in capsys.readouterr().err


def test_a_pattern_the_shell_expanded_to_a_file_says_to_quote_it(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "resnet18-f37072fd.pth").write_bytes(b"")  # what `models resnet1*` then gives
    assert main(["models", "resnet18-f37072fd.pth"]) == 2
    assert capsys.readouterr().err == (
        "error: no model matches 'resnet18-f37072fd.pth', a file here: the shell replaces a "
        "pattern left unquoted with the files it matches; quote it, as in resnetlab models "
        "'wide*'\n"
    )


@pytest.mark.parametrize(
    ("pattern", "hint"),
    [
        ("wide", "'*wide*' matches wide_resnet50_2, wide_resnet101_2\n"),
        ("keras", "'*keras*' matches resnet50_keras\n"),
        (
            "ResNet50*",
            "'resnet50*' matches resnet50, resnet50c, resnet50d, resnet50s, resnet50_keras\n",
        ),
        (
            "resnet",
            "'*resnet*' matches resnet18, resnet34, resnet50, resnet101, resnet152, "
            "resnet18d, ...\n",
        ),
    ],
)
def test_a_word_or_a_capitalised_pattern_is_answered_with_the_glob_that_matches(
    pattern, hint, capsys
):
    assert main(["models", pattern]) == 2
    assert capsys.readouterr().err == f"error: no model matches {pattern!r}; {hint}"


def test_the_choice_lists_come_from_the_configuration():
    from resnetlab.engine import CHOICES

    train = build_parser("train")._subparsers._group_actions[0].choices["train"]
    by_dest = {a.dest: a for a in train._actions}
    for name, choices in CHOICES.items():
        assert tuple(by_dest[name].choices) == tuple(choices)


def test_each_training_setting_is_the_train_flag_of_its_name():
    """As TrainConfig's docstring says, so that help(TrainConfig) leads to each one's meaning."""
    import dataclasses

    from resnetlab.engine import TrainConfig

    train = build_parser("train")._subparsers._group_actions[0].choices["train"]
    flags = {o for a in train._actions for o in a.option_strings}
    names = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "model_kwargs"]
    assert [n for n in names if "--" + n.replace("_", "-") not in flags] == []
    assert "--model-option" in flags


@pytest.mark.parametrize(
    "flags, value",
    [
        ([], None),
        (["--no-decay-norm-bias"], True),
        (["--decay-norm-bias"], False),
        (["--no-no-decay-norm-bias"], False),  # the earlier spelling
    ],
)
def test_the_norm_and_bias_decay_flag_reads_as_english(flags, value):
    args = build_parser("train").parse_args(["train", *flags])
    assert args.no_decay_norm_bias is value


def test_data_inspect_takes_input_size_and_writes_its_sheet_under_runs(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    assert main(["data", "inspect", "digits", "--input-size", "16", "--json"]) == 0
    assert (tmp_path / "runs" / "digits-samples.png").is_file()
    assert not list(tmp_path.glob("*.png"))
    args = build_parser("data").parse_args(["data", "inspect", "digits", "--image-size", "9"])
    assert args.input_size == 9  # the earlier name still works
    # and is not shown in the errors of the current one ('argument --input-size/--image-size')
    with pytest.raises(SystemExit):
        build_parser("data").parse_args(["data", "inspect", "digits", "--input-size", "0"])
    assert "error: argument --input-size: must be from 8" in capsys.readouterr().err


def test_data_inspect_takes_the_data_as_train_takes_it(tmp_path, monkeypatch, capsys):
    # `--data DATA`, as train and eval take it and as messages about data name it ("give
    # that file as --data"): it was "unrecognized arguments: --data".
    monkeypatch.chdir(tmp_path)
    assert main(["data", "inspect", "--data", "digits", "--no-sheet", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["data"] == "digits"
    assert main(["data", "inspect", "digits", "--data", "cifar10", "--no-sheet"]) == 2
    assert capsys.readouterr().err == (
        "error: two data sets given, digits and --data cifar10; data inspect describes one: "
        "give it once\n"
    )
    assert main(["data", "inspect", "--no-sheet"]) == 2
    assert capsys.readouterr().err == (
        "error: give the data set to describe: resnetlab data inspect DATA (digits, cifar10, or "
        "a file or folder)\n"
    )


def test_eval_of_the_course_test_file_says_it_scored_its_test_split(shared_data, tmp_path):
    path = tmp_path / "signs.safetensors"
    model = resnetlab.create_model("resnet8", num_classes=6)
    resnetlab.save_model(model, path, class_names=[str(i) for i in range(6)], input_size=64)
    report = resnetlab.evaluate(path, str(shared_data / "signs" / "test_signs.h5"))
    assert report.result.count == 120
    assert report.notes == [f"scored: the test split of {shared_data / 'signs' / 'test_signs.h5'}"]


def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    from PIL import Image

    model = resnetlab.create_model("resnet8", num_classes=2)
    resnetlab.save_model(model, tmp_path / "m.safetensors", input_size=16, class_names=["a", "b"])
    Image.new("RGB", (20, 20), (200, 30, 30)).save(tmp_path / "red.png")
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written, as after `| head -1`
    try:
        done = subprocess.run(
            [sys.executable, "-m", "resnetlab", "predict", "m.safetensors", "red.png"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(Path(resnetlab.__file__).parents[1])},
        )
    finally:
        os.close(write)
    assert "No module named" not in done.stderr  # the code under test ran
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr


def test_output_into_a_closed_pipe_on_windows_ends_quietly(tmp_path, monkeypatch):
    # Windows fails a write to a pipe whose reader has gone with EINVAL, not EPIPE: the
    # command ends as on a broken pipe; EINVAL from a file on a disk stays an error.
    from PIL import Image

    from .engine.test_report import WindowsPipe

    model = resnetlab.create_model("resnet8", num_classes=2)
    resnetlab.save_model(model, tmp_path / "m.safetensors", input_size=16, class_names=["a", "b"])
    Image.new("RGB", (20, 20), (200, 30, 30)).save(tmp_path / "red.png")
    predict = ["predict", str(tmp_path / "m.safetensors"), str(tmp_path / "red.png")]
    read, write = os.pipe()
    stdout = WindowsPipe(write)
    monkeypatch.setattr(sys, "stdout", stdout)
    try:
        assert main(predict) == 1
    finally:
        stdout.close()
        os.close(read)
        os.close(write)
    with open(tmp_path / "out.txt", "w") as file:
        stdout = WindowsPipe(file.fileno())
        monkeypatch.setattr(sys, "stdout", stdout)
        with pytest.raises(OSError):
            main(predict)
        stdout.close()


def test_the_advice_on_enlarged_images_is_given_where_it_helps_training(tmp_path, capsys):
    write_tree(
        tmp_path / "small",
        {"a": [noise(i) for i in range(8)], "b": [noise(i + 8) for i in range(8)]},
    )
    args = ["--data", str(tmp_path / "small"), "--model", "resnet8", "--input-size", "32"]
    out = tmp_path / "run"
    assert main(["train", *args, "--max-steps", "1", "--out", str(out), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    # --input-size given: the advice does not point to it.
    assert "enlarged to 32x32 (the input size); a size near theirs trains much faster" in err
    args = args[:-2]  # the model's own 32 px
    assert (
        main(["train", *args, "--max-steps", "1", "--out", str(out / "2"), "--device", "cpu"]) == 0
    )
    err = capsys.readouterr().err
    assert (
        "data: most images are 8x8, enlarged to 32x32 (the input size); --input-size sets it" in err
    )
    model = str(out / "best.safetensors")
    assert main(["eval", model, "--data", str(tmp_path / "small"), "--device", "cpu"]) == 0
    printed = "".join(capsys.readouterr())
    assert "enlarged to 32x32 (the input size)" in printed and "trains much faster" not in printed


def test_the_advice_on_shrunk_images_names_a_larger_input_size(tmp_path, capsys):
    photos = {
        "a": [noise(i, (64, 48)) for i in range(8)],
        "b": [noise(i + 8, (64, 48)) for i in range(8)],
    }
    write_tree(tmp_path / "photos", photos)
    args = ["--data", str(tmp_path / "photos"), "--model", "resnet8", "--input-size", "8"]
    args += ["--max-steps", "1", "--out", str(tmp_path / "run"), "--device", "cpu"]
    assert main(["train", *args]) == 0
    err = capsys.readouterr().err
    assert (
        "data: the images are mostly 64x48, shrunk and centre-cropped to 8x8 (the input size): "
        "much of their detail is lost; a larger --input-size keeps it (photos: e.g. --model "
        "resnet18 --input-size 128" in err
    )
    # Resumed, the size cannot change: the note alone.
    resume = ["train", "--resume", str(tmp_path / "run"), "--max-steps", "2", "--device", "cpu"]
    assert main(resume) == 0
    err = capsys.readouterr().err
    assert (
        "data: the images are mostly 64x48, shrunk and centre-cropped to 8x8 (the input size)\n"
        in err
    )
    assert "a larger --input-size" not in err
    # An ImageNet-style net already: only the size to give.
    note = "the images are mostly 640x480, shrunk to 32x32 (the input size)"
    with command_line():  # as the command line's run says it
        advice = _with_advice(note, 32, model="resnet18")
    assert advice.endswith("(photos: e.g. --input-size 128)")
    # Shrunk to 128 px already, the example is larger than that, not 128 again.
    write_tree(tmp_path / "big", {k: [noise(i, (800, 800)) for i in range(4)] for k in "ab"})
    args = ["--data", str(tmp_path / "big"), "--model", "resnet8", "--input-size", "128"]
    args += ["--max-steps", "1", "--out", str(tmp_path / "run2"), "--device", "cpu"]
    assert main(["train", *args]) == 0
    err = capsys.readouterr().err
    assert (
        "data: the images are mostly 800x800, shrunk to 128x128 (the input size): much of their "
        "detail is lost; a larger --input-size keeps it (e.g. --input-size 256, which takes "
        "about four times as long)" in err
    )


@pytest.mark.parametrize("command", ["predict", "serve"])
def test_a_top_k_below_one_is_a_misused_flag(capsys, command):
    images = ["x.png"] if command == "predict" else []
    err = _error(capsys, [command, "model.safetensors", *images, "--top-k", "0"])
    assert err.strip().splitlines() == [
        f"usage: resnetlab {command} ... (see resnetlab {command} --help)",
        "error: argument --top-k: must be at least 1, got 0",
    ]


def test_a_class_count_beyond_what_a_model_file_may_record_is_a_misused_flag(capsys):
    err = _error(capsys, ["summary", "resnet8", "--num-classes", "10000000000"])
    assert err.strip().splitlines() == [
        "usage: resnetlab summary ... (see resnetlab summary --help)",
        "error: argument --num-classes: must be at most 100,000, got 10,000,000,000",
    ]


def test_square_brackets_in_paths_and_class_names_print_as_they_are(tmp_path, capsys):
    root = write_tree(
        tmp_path / "photos [old]",
        {"cat": [noise(i) for i in range(8)], "dog [2]": [noise(i + 8) for i in range(8)]},
    )
    (root / "cat" / "read [me].txt").write_text("not an image")
    out = tmp_path / "run"
    args = ["--data", str(root), "--model", "resnet8", "--input-size", "16", "--device", "cpu"]
    assert main(["train", *args, "--max-steps", "1", "--out", str(out)]) == 0
    assert f"on {root}: 12 training images" in capsys.readouterr().err
    test = write_tree(tmp_path / "test", {"cat": [noise(i + 16) for i in range(4)]})
    assert main(["eval", str(out / "best.safetensors"), "--data", str(test)]) == 0
    assert "scored on 1 of the model's 2 classes (no [dog [2]] images)" in capsys.readouterr().out
    assert main(["data", "inspect", str(root), "--no-sheet"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"{root}: image-folder, 2 classes")
    assert "dog [2]" in printed and "ignored (read [me].txt)" in printed


def test_eval_confusion_table_fits_the_terminal_or_says_where_the_matrix_is():
    # Squeezed into 80 columns, twelve names of eleven letters would all read "cla…".
    from rich.console import Console

    from resnetlab.cli import confusion_table

    console = Console(width=80, record=True)
    for k, header in ((3, "class_00"), (12, "0"), (40, None)):
        names = [f"class_{i:02d}" for i in range(k)]
        confusion = [[6 if i == j else 0 for j in range(k)] for i in range(k)]
        table = confusion_table(names, confusion, console)
        if header is None:
            assert table is None  # the eval command points to the image and --json instead
            continue
        assert table.columns[1].header == header
        console.print(table)
        drawn = console.export_text()
        assert "…" not in drawn and all(name in drawn for name in names)
        assert max(map(len, drawn.splitlines())) <= 80


def test_eval_per_class_table_keeps_each_class_name_whole(capsys, monkeypatch):
    # Cut to the width of a narrow terminal, names that share a long beginning
    # (PlantVillage's "Tomato___...") would each read "Tomato___Spider_mi…", alike.
    import torch

    from resnetlab.cli import _print_eval_report
    from resnetlab.engine.evaluate import EvalReport, EvalResult

    names = [f"very_long_class_name_for_{c}" for c in ("fist", "five", "three")]
    result = EvalResult(loss=1.0, accuracy=1.0, count=6, confusion=2 * torch.eye(3).long())
    args = argparse.Namespace(model_file="m.safetensors", data="photos")
    for columns in (60, 36):
        monkeypatch.setenv("COLUMNS", str(columns))
        _print_eval_report(args, EvalReport(result, names, "photos", "m.safetensors"), None)
        out = capsys.readouterr().out
        per_class = out[out.index("per class") : out.index("confusion (rows")]
        rows = [line.split("│")[1:-1] for line in per_class.splitlines() if "│" in line]
        assert "".join(row[0].strip() for row in rows) == "".join(names)  # each name whole
        numbers = [[cell.strip() for cell in row[1:]] for row in rows if row[1].strip()]
        assert numbers == [["1.000", "1.000", "2"]] * 3
        assert max(map(len, per_class.splitlines())) <= columns


def test_a_run_with_one_image_of_each_class_trains_without_validation(tmp_path, capsys):
    write_tree(tmp_path / "two", {"a": [noise(0)], "b": [noise(1)]})
    args = ["--data", str(tmp_path / "two"), "--model", "resnet8", "--input-size", "8"]
    out = tmp_path / "run"
    assert main(["train", *args, "--max-steps", "2", "--out", str(out), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "2 training images, no validation set" in err
    epoch = next(line for line in err.splitlines() if line.startswith("epoch"))
    assert "val" not in epoch and "nan" not in epoch
    assert "no misclassified validation images" not in err
    assert not (out / "confusion.png").exists() and (out / "last.safetensors").is_file()


def test_json_is_printed_as_utf8_and_escaped_only_where_the_output_cannot_show_it(monkeypatch):
    from resnetlab.cli import print_json

    for encoding, expected in (("utf-8", '[\n  "café"\n]\n'), ("ascii", '[\n  "caf\\u00e9"\n]\n')):
        out = io.TextIOWrapper(io.BytesIO(), encoding=encoding, newline="\n")
        monkeypatch.setattr(sys, "stdout", out)
        print_json(["café"])
        out.flush()
        assert out.buffer.getvalue().decode(encoding) == expected
    # A file name that is not UTF-8 (byte 0xe9 of Latin-1) reads back as JSON, escaped.
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="surrogateescape")
    monkeypatch.setattr(sys, "stdout", out)
    print_json([os.fsdecode(b"caf\xe9.jpg")])
    out.flush()
    assert json.loads(out.buffer.getvalue().decode("utf-8")) == ["caf\udce9.jpg"]


@pytest.mark.figures
def test_files_written_under_a_quoted_home_folder_land_there(tmp_path, monkeypatch, capsys):
    """'~/...' quoted (or from Python) is the home folder, as a shell would expand it, for
    every file a command writes, and the checks look at the file written."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    args = ["train", "--data", "digits", "--model", "resnet8", "--input-size", "8"]
    assert main([*args, "--max-steps", "1", "--out", "~/run"]) == 0
    assert (home / "run" / "config.json").is_file() and (
        home / "run" / "best.safetensors"
    ).is_file()
    assert resnetlab.engine.TrainConfig(out="~/r").out == str(home / "r")
    main(["train", "--resume", "~/run", "--out", "~/run", "--max-steps", "2"])
    assert "drop --out" not in capsys.readouterr().err  # the same folder, spelled alike
    curves = (home / "run" / "curves.png").read_bytes()
    model = str(home / "run" / "best.safetensors")
    assert main(["eval", model, "--data", "digits", "--png", "~/run/curves.png"]) == 2
    assert "is a file of the run in" in capsys.readouterr().err
    assert (home / "run" / "curves.png").read_bytes() == curves
    photos = write_tree(tmp_path / "photos", {"a": [noise(0)], "b": [noise(1)]})
    assert main(["data", "inspect", str(photos), "--out", "~/sheet.png"]) == 0
    assert (home / "sheet.png").is_file()
    assert not (tmp_path / "~").exists()


def test_a_device_out_of_memory_in_any_command_is_one_line(monkeypatch, capsys):
    from resnetlab import cli

    def runs_out(args):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 1228800000000 bytes.\nmore lines"
        )

    monkeypatch.setattr(cli, "cmd_bench", runs_out)
    assert main(["bench", "train", "--model", "resnet20"]) == 2
    assert capsys.readouterr().err == (
        "error: out of memory ([enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: "
        "can't allocate memory: you tried to allocate 1228800000000 bytes.); lower --batch-size "
        "(or --input-size)\n"
    )
    # Each command's own flags: export's batch is --batch (--batch 10**9 ran out so)
    monkeypatch.setattr(cli, "cmd_export", runs_out)
    assert main(["export", "m.safetensors", "m.onnx", "--batch", "1000000000"]) == 2
    assert capsys.readouterr().err.endswith("bytes.); lower --batch\n")
    monkeypatch.setattr(cli, "cmd_models", runs_out)
    assert main(["models"]) == 2
    assert capsys.readouterr().err.endswith("; free memory, or run it on a machine with more\n")
    monkeypatch.setattr(cli, "cmd_models", lambda args: (_ for _ in ()).throw(RuntimeError("x")))
    with pytest.raises(RuntimeError, match=r"^x$"):  # a bug stays a traceback
        main(["models"])


ASCII_LOCALE_SESSION = """
import os
import sys
from resnetlab.cli import run
for argv in {commands!a}:  # as a shell would give them: their UTF-8 bytes
    sys.argv = ["resnetlab", *(os.fsdecode(a.encode("utf-8")) for a in argv)]
    print("exit", run(), flush=True)
"""


def test_non_ascii_names_work_in_an_ascii_locale(tmp_path, utf8_file_names):
    """LC_ALL=C with Python's UTF-8 mode off: file names come as undecodable bytes and
    stdout takes ASCII only. Class names are still read as UTF-8, figures drawn, ONNX files
    run, names printed escaped, and archives of such names extracted, never a traceback."""
    data = write_tree(
        tmp_path / "写真",
        {"été": [noise(i) for i in range(6)], "日本犬": [noise(10 + i) for i in range(6)]},
    )
    # The same images in a zip and a tar: "kätzchen" has no spelling in an ASCII file system
    # encoding, and their extraction stopped with a UnicodeEncodeError.
    members = [
        (image, f"pets/{name}/{i}.png")
        for i, (image, name) in enumerate(
            zip(sorted(data.rglob("*.png")), ["kätzchen", "犬"] * 6, strict=True)
        )
    ]
    zipped, tarred = tmp_path / "pets.zip", tmp_path / "pets.tar"
    with zipfile.ZipFile(zipped, "w") as zf, tarfile.open(tarred, "w") as tf:
        for image, name in members:
            zf.write(image, name)
            tf.add(image, name)
    run_dir, onnx = tmp_path / "run é", tmp_path / "模型.onnx"
    model = run_dir / "best.safetensors"
    commands = [
        [
            "train",
            "--data",
            str(data),
            "--model",
            "resnet8",
            "--input-size",
            "16",
            "--max-steps",
            "1",
            "--out",
            str(run_dir),
        ],
        ["predict", str(model), str(data / "été")],
        ["export", str(model), str(onnx)],
        ["eval", str(onnx), "--data", str(data)],
        ["explain", str(model), str(data / "été"), "--class", "日本犬", "--out", "cams"],
        ["data", "inspect", str(zipped), "--no-sheet"],
        ["data", "inspect", str(tarred), "--no-sheet"],
    ]
    env = {**os.environ, "LC_ALL": "C", "LANG": "", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""}
    env["PYTHONPATH"] = str(Path(resnetlab.__file__).parents[1])
    done = subprocess.run(
        [sys.executable, "-c", ASCII_LOCALE_SESSION.format(commands=commands)],
        capture_output=True,
        env=env,
        cwd=tmp_path,
    )
    out, err = done.stdout.decode("ascii"), done.stderr.decode("ascii")
    assert "Traceback" not in err, err
    assert out.count("exit 0") == 7, (out, err)
    assert "\\xe9t\\xe9 " in out  # predict's line names the class, escaped
    summary = json.loads((run_dir / "summary.json").read_text("utf-8"))
    assert summary["class_names"] == ["été", "日本犬"]


@pytest.mark.figures
def test_output_folders_that_cannot_be_written_name_the_flag_to_change(
    tmp_path, monkeypatch, capsys
):
    """A current folder where nothing can be written (read-only; here `runs` is a file)
    is said by naming --out; eval still shows its scores when the confusion image cannot
    go beside the model file (a shared model's read-only folder; here a folder is there)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").write_text("")
    assert main(["train", "--data", "digits", "--model", "resnet8", "--max-steps", "1"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: cannot write runs") and "give --out a folder" in last
    photos = write_tree(tmp_path / "photos", {f"c{i}": [noise(i), noise(9 + i)] for i in range(3)})
    model = tmp_path / "m.safetensors"
    resnetlab.save_model(
        resnetlab.create_model("resnet8", num_classes=3),
        model,
        input_size=8,
        class_names=["c0", "c1", "c2"],
    )
    image = str(photos / "c0" / "000.png")
    assert main(["explain", str(model), image, "--out", str(tmp_path / "runs" / "cams")]) == 2
    assert "choose another --out" in capsys.readouterr().err
    (tmp_path / "m.photos.confusion.png").mkdir()  # where eval would write its image
    assert main(["eval", str(model), "--data", str(photos), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["confusion_png"] is None
    assert "warning: cannot write" in err and "give --png" in err
    # data inspect's default sheet goes under runs/: the data set is still described.
    assert main(["data", "inspect", str(photos), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["sheet"] is None and json.loads(out)["class_names"] == ["c0", "c1", "c2"]
    assert "warning: cannot write runs" in err and "give --out a file" in err


def test_a_cache_folder_that_cannot_be_written_costs_one_warning(tmp_path):
    """No RESNETLAB_CACHE and a home folder that cannot be written (here a file, which
    stops root too): the run trains, with one warning naming RESNETLAB_CACHE, not one per
    split nor matplotlib's lines on its own folders."""
    for split, seed in (("train", 0), ("test", 20)):
        write_tree(
            tmp_path / "photos" / split,
            {c: [noise(seed + i + 10 * j) for i in range(4)] for j, c in enumerate("ab")},
        )
    (tmp_path / "home").write_text("")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RESNETLAB_CACHE", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "MPLCONFIGDIR")
    }
    env.update(HOME=str(tmp_path / "home"), PYTHONPATH=str(Path(resnetlab.__file__).parents[1]))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "resnetlab",
            "train",
            "--data",
            "photos",
            "--model",
            "resnet8",
            "--input-size",
            "8",
            "--max-steps",
            "1",
            "--out",
            "run",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "summary.json").is_file()
    warned = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "cannot write the cache folder" in warned[0], done.stderr
    assert "set RESNETLAB_CACHE to a folder you can write to" in warned[0]
    assert "Matplotlib" not in done.stderr and "mkdir -p failed" not in done.stderr


def test_a_path_beginning_with_a_dash_is_named_with_the_spelling_that_works(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    write_tree(tmp_path / "-photos", {"a": [noise(0)], "b": [noise(1)]})
    for argv in (
        ["train", "--data", "-photos"],  # argparse: "expected one argument"
        ["predict", "m.safetensors", "-photos/a/000.png"],  # "required: IMAGE_OR_FOLDER"
    ):
        assert _error(capsys, argv).splitlines()[-1] == (
            f"error: {argv[-1]} begins with '-', which reads as an option: to name the file "
            f"or folder, write ./{argv[-1]}"
        )
    (tmp_path / "-h").write_text("")  # an option is still the option
    with pytest.raises(SystemExit):
        main(["train", "-h"])
    assert "usage: resnetlab train" in capsys.readouterr().out


def test_onnxscripts_warnings_of_its_own_deprecated_names_are_not_shown(monkeypatch, capsys):
    """onnxscript 0.1 warns of its own deprecated names when torch 2.4 imports it, which it
    does for every training run: not the command's user's to act on. Others still show."""
    import warnings

    from resnetlab import cli

    def command(_args):
        for module in ("onnxscript.converter", "resnetlab.engine"):
            warnings.warn_explicit(f"{module} deprecated", FutureWarning, "x.py", 1, module)
        return 0

    monkeypatch.setattr(cli, "parse_args", lambda argv: argparse.Namespace(func=command))
    with warnings.catch_warnings():
        assert main([]) == 0
    err = capsys.readouterr().err
    assert "onnxscript.converter" not in err and "resnetlab.engine deprecated" in err


@pytest.mark.parametrize("command", ["eval", "predict", "explain"])
def test_the_device_option_of_each_command_that_runs_a_model_file_says_its_values(command):
    parser = build_parser(command)
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    (device,) = (a for a in sub.choices[command]._actions if "--device" in a.option_strings)
    assert device.help == "auto, cpu, cuda, cuda:N or mps"
