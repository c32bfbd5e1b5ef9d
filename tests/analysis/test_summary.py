import json
import os

import pytest

import resnetlab
from resnetlab import ResnetlabError
from resnetlab.analysis import count_parameters, keras_summary, summarize
from resnetlab.cli import main

from ..models.test_registry import PARAM_COUNTS, light


def test_keras_seed_totals():
    summary = summarize(resnetlab.create_model("resnet50_keras"), 64)
    assert (summary.total, summary.trainable, summary.non_trainable) == (
        23_600_006,
        23_546_886,
        53_120,
    )
    conv_rows = [r for r in summary.layers if r.kind == "Conv2d"]
    assert len(conv_rows) == 53
    assert summary.layers[0].output_shape == (64, 32, 32)
    assert summary.layers[-1].output_shape == (6,)


def test_a_model_name_where_a_built_model_goes_is_one_line():
    says = r"takes a built model \(create_model\('resnet20'\)\), not 'resnet20'$"
    with pytest.raises(ResnetlabError, match=f"^count_parameters {says}"):
        count_parameters("resnet20")
    with pytest.raises(ResnetlabError, match=f"^summarize {says}"):
        summarize("resnet20", 32)
    with pytest.raises(ResnetlabError, match=r"^summarize takes a built model, not None$"):
        summarize(None, 32)
    with pytest.raises(ResnetlabError, match=f"^keras_summary {says}"):
        keras_summary("resnet20", 64)  # not "str has no Keras counterpart"


def test_print_summary_of_what_is_no_summary_is_one_line():
    """The model, or None, was an AttributeError for input_size."""
    from resnetlab.analysis import print_summary

    model = resnetlab.create_model("resnet8")
    with pytest.raises(
        ResnetlabError,
        match=r"^print_summary takes the ModelSummary that summarize\(model, input_size\) "
        r"returns, not ResNet$",
    ):
        print_summary(model)
    with pytest.raises(
        ResnetlabError,
        match=r"^print_summary takes the ModelSummary that summarize returns, not None$",
    ):
        print_summary(None)


def test_an_image_side_no_model_takes_is_one_line():
    """Not torch's 'Kernel size can't be greater than actual input size' (0) nor
    zeros()'s TypeError ('32'), nor an allocation of the side asked."""
    from resnetlab.analysis import training_flops

    model = resnetlab.create_model("resnet8")
    for function in (summarize, training_flops):
        name = function.__name__
        for side, says in [
            (0, f"{name}'s input_size must be from 8 to 2,048 pixels, got 0"),
            (10**5, f"{name}'s input_size must be from 8 to 2,048 pixels, got 100,000"),
            ("32", f"{name}'s input_size must be a whole number, got '32'"),
        ]:
            with pytest.raises(ResnetlabError) as error:
                function(model, side)
            assert str(error.value) == says


def test_a_name_or_console_of_the_wrong_kind_is_one_line():
    """A number as the name was printed as the title; a console that is no Console was an
    AttributeError ('int' object has no attribute 'print')."""
    from resnetlab.analysis import print_summary

    model = resnetlab.create_model("resnet8")
    for call, says in [
        (
            lambda: summarize(model, 32, name=3),
            "summarize's name must be a string (the model's name to show) or None, got 3",
        ),
        (
            lambda: keras_summary(model, 32, name=["resnet8"]),
            "keras_summary's name must be a string (the model's name to show) or None, got "
            "['resnet8']",
        ),
        (
            lambda: print_summary(summarize(model, 32), console=3),
            "print_summary's console must be a rich.console.Console or None, got 3",
        ),
    ]:
        with pytest.raises(ResnetlabError) as error:
            call()
        assert str(error.value) == says
    assert summarize(model, 32, name="mine").model == "mine"


def test_flops_come_from_a_real_counter():
    # ResNet-50 at 224x224: 4.09 G multiply-adds, the figure torchvision publishes (4.09 GFLOPS).
    summary = summarize(resnetlab.create_model("resnet50"), 224)
    assert summary.macs == pytest.approx(4.09e9, rel=0.005)
    # The counter sees resolution: four times the pixels, four times the conv work.
    large = summarize(resnetlab.create_model("resnet50"), 448)
    assert large.macs == pytest.approx(summary.macs * 4, rel=0.002)


def test_parameters_are_counted_once_per_module():
    summary = summarize(resnetlab.create_model("resnet18"), 64)
    assert sum(r.params for r in summary.layers) == summary.trainable
    assert "LayerRow" not in repr(summary)  # a row per layer is print_summary's table


@pytest.mark.parametrize("name", light(PARAM_COUNTS))
def test_cli_summary_totals_match_the_parameter_counts(name, capsys):
    # ImageNet nets at 64x64, CIFAR nets at 8x8 (their three stages at 8, 4 and 2 pixels a
    # side): the totals do not depend on the size, the time does.
    size = {"imagenet": ["--input-size", "64"], "cifar": ["--input-size", "8"]}.get(
        resnetlab.model_info(name).family, []
    )
    assert main(["summary", name, "--json", *size]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["trainable"] == PARAM_COUNTS[name]
    assert data["total"] == data["trainable"] + data["non_trainable"]
    assert data["flops"] > 0


def test_cli_summary_prints_the_seeds_totals(capsys):
    assert main(["summary", "resnet50_keras"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 23,600,006" in out
    assert "Trainable params: 23,546,886" in out
    assert "Non-trainable params: 53,120" in out


def test_cli_unknown_model_is_one_line(capsys):
    assert main(["summary", "resnet5"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "did you mean" in err


SIZED = [
    ["summary", "resnet20"],
    ["bench", "train", "--model", "resnet20"],
    ["bench", "infer", "--model", "resnet20"],
    ["bench", "calibrate", "--model", "resnet20"],
]
BAD_SIZES = [
    (["--input-size", "0"], "must be from 8 to 2,048 pixels, got 0"),
    (["--input-size", "7"], "must be from 8 to 2,048 pixels, got 7"),
    (["--input-size", "10000"], "must be from 8 to 2,048 pixels, got 10000"),
    (["--input-size", "x"], "not a whole number: 'x'"),
]
BAD_COUNTS = [(["--num-classes", "-3"], "must be at least 1, got -3")]


@pytest.mark.parametrize(
    ("command", "option", "message"),
    [(c, o, m) for c in [*SIZED, ["data", "inspect", "digits"]] for o, m in BAD_SIZES]
    + [(c, o, m) for c in SIZED for o, m in BAD_COUNTS],
)
def test_cli_sizes_are_checked_before_anything_runs(command, option, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, *option])
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"error: argument {option[0]}") and last.endswith(message)


def test_keras_summary_is_the_one_keras_prints_for_the_seed():
    os.environ.setdefault("KERAS_BACKEND", "torch")  # the backend the dev extra installs
    pytest.importorskip("keras")
    from ..convert.keras_seed import seed_resnet50

    keras_model = seed_resnet50((64, 64, 3), classes=6)
    theirs = [
        (layer.name, type(layer).__name__, tuple(layer.output.shape[1:]), layer.count_params())
        for layer in keras_model.layers
    ]
    summary = keras_summary(resnetlab.create_model("resnet50_keras"), 64, name="resnet50_keras")
    ours = [(r.name, r.kind, r.output_shape, r.params) for r in summary.layers]
    assert ours == theirs  # 177 rows: names, types, (H, W, C) shapes and counts
    assert sum(r.params for r in summary.layers) == summary.total == 23_600_006


def test_keras_summary_refuses_a_model_without_keras_names(tmp_path, capsys):
    with pytest.raises(ResnetlabError) as python:
        keras_summary(resnetlab.create_model("resnet20"), 32)
    assert str(python.value) == (
        "resnet20 has no Keras counterpart: keras_summary prints the course model's "
        "(resnet50_keras) table as Keras's model.summary() does; use summarize for resnet20's "
        "own table"
    )
    # A model file of another model (a keras.applications ResNet50 converted is resnet50):
    # the error says what --keras is for and to drop it.
    path = tmp_path / "ka.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=2), path, input_size=8)
    assert main(["summary", str(path), "--keras"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: resnet8 has no Keras counterpart: --keras prints the course model's "
        "(resnet50_keras) table as Keras's model.summary() does; drop --keras for resnet8's "
        "own table"
    )


def test_summary_of_a_model_file_uses_its_own_size_and_classes(tmp_path, capsys):
    path = tmp_path / "m.safetensors"
    resnetlab.save_model(
        resnetlab.create_model("resnet8", num_classes=3),
        path,
        class_names=["a", "b", "c"],
        input_size=24,
    )
    assert main(["summary", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["model"], data["input_size"], data["num_classes"]) == ("resnet8", 24, 3)
    assert data["layers"][-1]["output_shape"] == [3]
    # A model whose builder takes its input size (the course's: its classifier fixes it) is
    # summarized at the file's; another size is the model name's to give.
    path = tmp_path / "signs.safetensors"
    model = resnetlab.create_model("resnet50_keras", num_classes=2, input_size=32)
    resnetlab.save_model(model, path)
    for keras in ([], ["--keras"]):
        assert main(["summary", str(path), "--input-size", "64", *keras]) == 2
        assert capsys.readouterr().err.strip() == (
            f"error: {path} holds resnet50_keras, built for 32x32 inputs, which its classifier "
            "fixes; drop --input-size (or give the model name: summary resnet50_keras "
            "--input-size 64)"
        )
    assert main(["summary", str(path), "--input-size", "32", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input_size"] == 32


@pytest.mark.parametrize("arg", ["missing.safetensors", "runs/old/best.safetensors", "ResNet50.h5"])
def test_summary_of_a_missing_file_says_the_file_is_missing(arg, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["summary", arg]) == 2
    err = capsys.readouterr().err
    assert err == f"error: model file not found: {arg}\n"


def test_summary_of_a_run_folder_names_its_model_files(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    resnetlab.save_model(resnetlab.create_model("resnet8"), run / "best.safetensors")
    assert main(["summary", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"give {run / 'best.safetensors'}" in err
