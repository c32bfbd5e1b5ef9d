import dataclasses
import json
import os
import re
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from resnetlab import ResnetlabError, create_model
from resnetlab.cli import main
from resnetlab.data import load_dataset, make_loader, split_stats
from resnetlab.errors import DataWarning
from resnetlab.experiments import gradient_norms, run_gradients, weight_layers
from resnetlab.experiments.gradients import conclusion, flow, markdown
from resnetlab.experiments.runner import FAMILIES, run_pairs

from .conftest import copy_experiment, refusal_elsewhere

# Digits at their native 8x8, a step or two: a real data set, a second or so per run.
TINY_RUNS = dict(input_size=8, crop_padding=1, batch_size=32, val_subset=50)


@pytest.fixture(scope="module")
def digits_batch():
    """64 real digits at 8x8, normalised as training would."""
    data = load_dataset("digits", image_size=8, default_val_split=0.2)
    mean, std = split_stats(data.train)
    loader = make_loader(data.train, train=False, batch_size=64, device="cpu", mean=mean, std=std)
    return next(iter(loader))


@pytest.mark.parametrize("name", ["resnet20", "plain20", "plain8"])
def test_one_norm_per_weight_layer(name, digits_batch):
    model = create_model(name)
    layers = weight_layers(model)
    depth = int(name.removeprefix("resnet").removeprefix("plain"))
    assert len(layers) == depth  # 6n + 2: the stem conv, 6n block convs, the fc
    assert layers[0][0] == "conv1" and layers[-1][0] == "fc"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    norms = gradient_norms(model, *digits_batch)
    assert len(norms) == depth and all(n > 0 and n < float("inf") for n in norms)
    # The caller's model is untouched: no gradients, the same BN statistics.
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_deep_plain_nets_gradient_grows_toward_the_input(digits_batch):
    # At initialisation, with BN in training mode, the plain net's gradient does not vanish
    # toward the input: it explodes. The ResNet's first/fc ratio stays near 1.
    ratios = {}
    for name in ("plain56", "resnet56"):
        torch.manual_seed(0)
        norms = gradient_norms(create_model(name), *digits_batch)
        ratios[name] = norms[0] / norms[-1]
    assert ratios["plain56"] > 100 * ratios["resnet56"]
    assert ratios["plain56"] > 10 and 0.01 < ratios["resnet56"] < 10


def test_gradient_experiment_writes_its_outputs(tmp_path):
    out = tmp_path / "grad"
    settings = dict(
        steps=3,
        probe_size=40,
        out=out,
        input_size=8,
        crop_padding=1,
        batch_size=32,
        val_subset=50,
    )
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    result = run_gradients("digits", (8, 14), **settings)
    assert torch.equal(torch.rand(3), expected)  # the caller's draws go on as before
    assert [r["model"] for r in result.rows] == ["plain8", "resnet8", "plain14", "resnet14"]
    assert repr(result) == (
        f"GradientResult(out={out!r}, steps=3, models=['plain8', 'resnet8', 'plain14', 'resnet14'])"
    )
    for row in result.rows:
        assert len(row["layers"]) == len(row["init"]) == len(row["trained"]) == row["depth"]
        assert row["init"] != row["trained"]  # three steps changed the weights
        summary = json.loads((out / f"{row['model']}-seed0" / "summary.json").read_text())
        assert summary["steps"] == 3 and summary["status"] == "finished"
    saved = json.loads((out / "gradients.json").read_text())
    assert saved["steps"] == 3 and saved["settings"]["probe_size"] == 40
    assert Image.open(out / "gradients.png").size[0] > 600
    md = (out / "gradients.md").read_text(encoding="utf-8")
    assert "| plain14 | 14 |" in md and "first/fc (after 3 steps)" in md
    assert "- depth 14: the plain net's first/fc ratio is" in md and "after 3 steps than" in md
    one = markdown(dataclasses.replace(result, steps=1))
    assert "first/fc (after 1 step)" in one and "after 1 step than" in one
    whole = dataclasses.replace(result, settings={**result.settings, "probe_size": 1438})
    assert "one batch of 1,438 training images" in markdown(whole)  # as counts are written
    # Run again: the runs are skipped and the same initial weights give the same norms.
    again = run_gradients("digits", (8, 14), **settings)
    assert [r["init"] for r in again.rows] == [r["init"] for r in result.rows]


def test_gradients_cli(tmp_path, capsys):
    out = tmp_path / "grad"
    args = ["experiment", "gradients", "--data", "digits", "--depths", "8", "--steps", "2"]
    args += ["--input-size", "8", "--batch-size", "32", "--probe-size", "32"]
    args += ["--val-subset", "50", "--option", "crop_padding=1", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| plain8 | 8 |" in printed and f"wrote {out / 'gradients.png'}" in printed
    with pytest.raises(SystemExit):
        main([*args, "--epochs", "3"])  # --steps sets the length
    with pytest.raises(ResnetlabError, match=r"^steps must be at least 1"):
        run_gradients("digits", (8,), steps=0, out=tmp_path / "x")


def test_preact_family_measures_original_and_preactivation_nets(tmp_path, capsys):
    out = tmp_path / "grad"
    args = ["experiment", "gradients", "--data", "digits", "--depths", "8", "--steps", "2"]
    args += ["--family", "preact", "--input-size", "8", "--batch-size", "32"]
    args += ["--probe-size", "32", "--val-subset", "50", "--option", "crop_padding=1"]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "# Gradient norm per weight layer: ResNets vs pre-activation ResNets" in printed
    assert "- depth 8: the ResNet's first/fc ratio is" in printed
    saved = json.loads((out / "gradients.json").read_text())
    assert [m["model"] for m in saved["models"]] == ["resnet8", "preresnet8"]
    assert saved["settings"]["recipe"] == "preact-cifar"
    pre = saved["models"][1]
    assert pre["layers"][0] == "stem.conv" and pre["layers"][-1] == "head.fc"
    assert len(pre["layers"]) == 8  # 6n + 2 weighted layers, as the original net's


@pytest.mark.parametrize(
    "ratios, words",
    [
        # The README's CIFAR-10 run, seed 0: plain nets at initialisation and after 100 steps.
        (
            {20: 4.73, 56: 659, 110: 1.52e6},
            "explodes toward the input, more the deeper the net, rather than vanishing "
            "(first/fc 4.73, 659, 1.52e+06 at depths 20, 56, 110)",
        ),
        (
            {20: 1.6, 56: 0.00283, 110: 3.55e-6},
            "vanishes toward the input, more the deeper the net (first/fc 1.6, 0.00283, 3.55e-06",
        ),
        # ...and the ResNets at initialisation.
        (
            {20: 0.241, 56: 0.193, 110: 0.495},
            "neither explodes nor vanishes, staying within a factor of 10 (first/fc 0.241",
        ),
        ({8: 50.0, 14: 20.0}, "explodes toward the input, rather than vanishing (first/fc 50, 20"),
        ({8: 0.5, 14: 0.05}, "vanishes toward the input, more the deeper the net"),
        (
            {8: 10.0},
            "neither explodes nor vanishes, staying within a factor of 10 (first/fc 10 at depth 8)",
        ),
        ({8: 10.1}, "explodes toward the input, rather than vanishing (first/fc 10.1 at depth 8)"),
        ({8: 0.099}, "vanishes toward the input (first/fc 0.099 at depth 8)"),
    ],
)
def test_flow_says_what_the_ratios_show(ratios, words):
    assert words in flow(ratios)


def test_conclusion_of_the_documented_run_is_the_readmes():
    saved = Path(__file__).parents[2] / "docs" / "degradation" / "gradients" / "gradients.json"
    data = json.loads(saved.read_text())
    rows = [{**m, "changed": m.get("changed", m.get("residual"))} for m in data["models"]]
    init, after = conclusion(rows, data["steps"], FAMILIES["plain"])
    assert init.startswith(
        "- At initialisation, the plain nets' gradient explodes toward the input, more the "
        "deeper the net, rather than vanishing"
    )
    assert "the ResNets' gradient neither explodes nor vanishes" in init
    assert after.startswith("- After 100 steps, the plain nets' gradient vanishes")
    rows[-2] = {**rows[-2], "trained": None, "trained_ratio": None}  # plain110 diverged
    _, after = conclusion(rows, data["steps"], FAMILIES["plain"])
    assert "at depths 20, 56)" in after and "110" not in after


def test_probe_runs_print_the_data_notes_once_and_no_majority_note(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(
        "resnetlab.engine.report.majority_note", lambda *a: "note: always answering MAJORITY"
    )
    args = ["experiment", "gradients", "--data", "digits", "--depths", "8", "14", "--steps", "1"]
    args += ["--input-size", "8", "--batch-size", "32", "--probe-size", "32"]
    args += ["--val-subset", "50", "--option", "crop_padding=1", "--out", str(tmp_path / "g")]
    assert main(args) == 0
    printed = capsys.readouterr()
    lines = (printed.out + printed.err).splitlines()
    notes = [line for line in lines if line.startswith("data: ")]
    assert notes and len(notes) == len(set(notes))  # digits: at least the no-flips note
    assert "MAJORITY" not in printed.out + printed.err
    assert "## What the ratios show" in printed.out
    assert "- At initialisation, the plain nets' gradient" in printed.out
    # A degradation experiment's runs are measured by their accuracy: the note stays there.
    args = ["experiment", "degradation", "--data", "digits", "--depths", "8", "14"]
    args += ["--max-steps", "1", "--input-size", "8", "--batch-size", "32"]
    args += ["--val-subset", "50", "--option", "crop_padding=1", "--out", str(tmp_path / "d")]
    args += ["--subset", "30"]  # a batch of 32 is more than them: a warning for the first run
    assert main(args) == 0
    printed = capsys.readouterr()
    assert (printed.out + printed.err).count("MAJORITY") == 4
    assert printed.err.count("a batch of 32 is more than the 30 training images") == 1
    notes = [line for line in (printed.out + printed.err).splitlines() if line.startswith("data: ")]
    assert notes and len(notes) == len(set(notes))


@pytest.mark.parametrize(
    ("out", "says"),
    [
        ("", "out, the experiment folder: an empty value; give one, or leave it out"),
        (3, "out, the experiment folder must be a path (str or pathlib.Path), got int"),
    ],
)
def test_experiments_refuse_an_out_that_is_no_folder_before_training(
    tmp_path, monkeypatch, out, says
):
    """out='' was the current folder, which took the runs and the figures; 3 pathlib's
    TypeError."""
    from resnetlab.experiments import run_degradation

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ResnetlabError, match=f"^{re.escape(says)}$"):
        run_gradients("digits", [8], out=out, steps=1)
    with pytest.raises(ResnetlabError, match=f"^{re.escape(says)}$"):
        run_degradation("digits", [8], out=out, max_steps=1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"depths": 20}, "depths must be a list, e.g. [20, 56], got 20"),
        ({"depths": "20"}, "depths must be a list, e.g. [20, 56], got '20'"),
        ({"depths": [20.0]}, "each of depths must be a whole number, got 20.0"),
        ({"depths": ["20"]}, "each of depths must be a whole number, got '20'"),
        ({"steps": "2"}, "steps must be a whole number, got '2'"),
        ({"probe_size": "4"}, "probe_size must be a whole number, got '4'"),
        ({"seeds": 1}, "seeds must be a list, e.g. [0, 1, 2], got 1"),
    ],
)
def test_experiments_name_a_list_or_count_of_another_kind_in_one_line(tmp_path, options, says):
    """depths=20 and seeds=1 were 'int object is not iterable', '20' the depths 2 and 0
    ('no registered CIFAR plain net of depth 0'), and steps='2' a comparison's TypeError."""
    from resnetlab.experiments import run_degradation

    experiment = run_degradation if "seeds" in options else run_gradients
    options = {"depths": [8], **options}
    with pytest.raises(ResnetlabError, match=f"^{re.escape(says)}$"):
        experiment("digits", out=tmp_path / "exp", **options)
    assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize("depths", [[], (), range(0)])
def test_experiments_refuse_an_empty_list_of_depths(tmp_path, monkeypatch, depths):
    """An empty list was read as the default depths: hours of nets not asked for."""
    from resnetlab.experiments import degradation, gradients, run_degradation

    def no_training(*args, **kwargs):
        raise AssertionError("trained the default depths")

    for module in (degradation, gradients):
        monkeypatch.setattr(module, "run_pairs", no_training)
    for experiment, default in [
        (run_degradation, [20, 32, 44, 56]),
        (run_gradients, [20, 56, 110]),
    ]:
        says = (
            "the experiment needs at least one depth, e.g. [20, 56]; leave depths out for "
            f"the default, {default}"
        )
        with pytest.raises(ResnetlabError, match=f"^{re.escape(says)}$"):
            experiment("digits", depths, out=tmp_path / "exp")
    assert not (tmp_path / "exp").exists()


def test_experiments_take_a_pathlib_data_and_numpy_options(tmp_path):
    """A pathlib.Path as data, or an np.float32 learning rate, trained every run and then
    failed writing table.json / gradients.json: 'Object of type PosixPath is not JSON
    serializable'."""
    import numpy as np

    from resnetlab.experiments import run_degradation

    tiny = dict(input_size=8, crop_padding=1, batch_size=32, subset=64, val_subset=20)
    result = run_degradation(
        Path("digits"), [8], out=tmp_path / "deg", max_steps=1, **{**tiny, "lr": np.float32(0.5)}
    )
    saved = json.loads((tmp_path / "deg" / "table.json").read_text())["settings"]
    assert saved["data"] == result.settings["data"] == "digits" and saved["lr"] == 0.5
    run_gradients(Path("digits"), [8], out=tmp_path / "grad", steps=1, probe_size=8, **tiny)
    saved = json.loads((tmp_path / "grad" / "gradients.json").read_text())["settings"]
    assert saved["data"] == "digits"


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (None, "data: give a data set (digits, cifar10, a file or a folder)"),
        (5, "data must be a string, got 5"),
    ],
)
def test_experiments_refuse_data_that_names_no_data_set_in_one_line(tmp_path, data, says):
    """5 was pathlib's TypeError; None trained the default data set, digits, under a table
    that named its data `None`."""
    from resnetlab.experiments import run_degradation

    tiny = dict(input_size=8, crop_padding=1, batch_size=32, subset=64, val_subset=20)
    for experiment, length in [(run_degradation, "max_steps"), (run_gradients, "steps")]:
        with pytest.raises(ResnetlabError, match=f"^{re.escape(says)}$"):
            experiment(data, [8], out=tmp_path / "exp", **{length: 1}, **tiny)
    assert not (tmp_path / "exp").exists()


def test_a_depth_or_seed_out_of_range_is_named_as_its_flag(tmp_path, capsys):
    """--seeds -1 was 'each of seeds must be at least 0'."""
    from resnetlab.cli import main

    for experiment, flag, value, says in [
        ("degradation", "--seeds", "-1", "each of --seeds must be at least 0, got -1"),
        ("degradation", "--depths", "0", "each of --depths must be at least 1, got 0"),
        ("gradients", "--depths", "0", "each of --depths must be at least 1, got 0"),
        # Beyond the range a run takes: was the run's 'seed must be in 0..2**32-1'.
        ("degradation", "--seeds", str(2**32), f"each of --seeds must be below 2**32, got {2**32}"),
        ("gradients", "--seed", "-1", "--seed must be at least 0, got -1"),
        ("gradients", "--seed", str(2**32), f"--seed must be below 2**32, got {2**32}"),
    ]:
        args = ["experiment", experiment, "--data", "digits", flag, value]
        assert main([*args, "--out", str(tmp_path / "e")]) == 2
        assert capsys.readouterr().err == f"error: {says}\n"
    assert not (tmp_path / "e").exists()


# Two steps of plain8 and resnet8, measured on 8 images.
SHORT = dict(steps=2, probe_size=8, input_size=8, val_subset=20)
_MEASURED: list[tuple[Path, object]] = []


@pytest.fixture
def measured(tmp_path, tmp_path_factory, _cpu_unless_marked_gpu, _no_run_figures):
    """A finished SHORT experiment at ``tmp_path / "g"``, and the result of running it:
    run once a session (under this test's CPU-only, no-figures settings, which it asks for)
    and copied for each test, which may damage its copy."""
    if not _MEASURED:
        first = tmp_path_factory.mktemp("measured") / "g"
        _MEASURED.append((first, run_gradients("digits", (8,), out=first, **SHORT)))
    first, result = _MEASURED[0]
    return copy_experiment(first, tmp_path / "g"), result


def test_the_folder_is_held_through_the_probe_and_the_figures(measured, monkeypatch):
    """A second copy started once the runs end, while the first probes them and writes its
    figures, is refused: it would skip every run and write the same files."""
    from resnetlab.experiments import gradients

    out, _ = measured
    told, probe, plot = [], gradients.probe_batch, gradients.plot_gradient_norms

    def probing(*args):
        told.append(refusal_elsewhere(out))
        return probe(*args)

    def plotting(*args, **kwargs):
        told.append(refusal_elsewhere(out))
        return plot(*args, **kwargs)

    monkeypatch.setattr(gradients, "probe_batch", probing)
    monkeypatch.setattr(gradients, "plot_gradient_norms", plotting)
    run_gradients("digits", (8,), out=out, **SHORT)
    assert told == [f"{out} is in use by process {os.getpid()}: fix"] * 2
    assert not (out / ".lock").exists() and refusal_elsewhere(out) == ""


def test_a_run_whose_model_file_is_gone_is_named_with_the_fix(measured):
    out, _ = measured
    settings = dict(SHORT, out=out)
    run = out / "resnet8-seed0"
    (run / "last.safetensors").unlink()
    with pytest.raises(ResnetlabError) as e:
        run_gradients("digits", (8,), **settings)
    assert str(e.value) == (
        f"{run / 'last.safetensors'} is gone, and the experiment measures it: delete the folder "
        f"{run} and run the same experiment command again, which trains that run again"
    )


def test_a_diverged_run_is_measured_at_initialisation_only(measured):
    # A diverged run writes no model file; the others' say how the images were seen.
    out, first = measured
    settings = dict(SHORT, out=out)
    run = out / "plain8-seed0"  # the first run, whose model file was read
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "status": "diverged"}))
    for name in ("best.safetensors", "last.safetensors"):
        (run / name).unlink()
    result = run_gradients("digits", (8,), **settings)
    plain, resnet = result.rows
    assert (plain["status"], plain["trained"], plain["trained_ratio"]) == ("diverged", None, None)
    assert plain["init"] == first.rows[0]["init"] and resnet == first.rows[1]
    assert "| plain8 | 8 |" in (md := (out / "gradients.md").read_text())
    assert "| diverged |" in md


def test_an_experiment_whose_every_run_diverged_says_so_in_one_line(tmp_path, capsys):
    out = tmp_path / "g"
    args = ["experiment", "gradients", "--data", "digits", "--depths", "8", "--steps", "2"]
    args += ["--input-size", "8", "--val-subset", "20", "--lr", "1e12", "--out", str(out)]
    assert main(args) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: every run in {out} diverged (NaN/inf), so no net has a model to measure: "
        "lower --lr and choose another --out"
    )
    assert (out / "plain8-seed0" / "summary.json").is_file()  # the runs are kept


def test_gradient_norms_names_what_it_cannot_measure_in_one_line():
    """Not weight_layers' AttributeError for a name, conv2d's TypeError for an array, or
    cross entropy's 'Target 5 is out of bounds'."""
    model = create_model("resnet8", num_classes=3)
    images, labels = torch.randn(2, 3, 8, 8), torch.tensor([0, 2])
    wrong = [
        (
            (model, images.numpy(), labels),
            "gradient_norms' images must be a tensor, got "
            "ndarray; convert it with torch.from_numpy",
        ),
        (
            (model, images, [0, 2]),
            "gradient_norms' labels must be a tensor, got list; convert it with torch.tensor",
        ),
        (
            (model, images, torch.tensor([0, 5])),
            "gradient_norms' labels must be class indices from 0 to 2, got 0 to 5",
        ),
        (
            ("resnet8", images, labels),
            "gradient_norms takes a built model (create_model('resnet8')), not 'resnet8'",
        ),
    ]
    for arguments, says in wrong:
        with pytest.raises(ResnetlabError, match=f"^{re.escape(says)}$"):
            gradient_norms(*arguments)
    with pytest.raises(ResnetlabError, match=r"^weight_layers takes a built model \("):
        weight_layers("resnet8")
    assert len(gradient_norms(model, images, labels)) == len(weight_layers(model)) == 8


def test_the_experiments_own_validation_cap_is_not_warned_of_as_a_flag(tmp_path, capsys):
    # Digits holds out 360 validation images, fewer than the experiment's cap of 1,000: no
    # "--val-subset 1000 is more than ..." for a flag never given; one given still is.
    args = ["experiment", "gradients", "--data", "digits", "--depths", "8", "--steps", "2"]
    args += ["--input-size", "8", "--batch-size", "32", "--probe-size", "32"]
    assert main([*args, "--out", str(tmp_path / "own")]) == 0
    assert "--val-subset" not in capsys.readouterr().err
    assert main([*args, "--val-subset", "5000", "--out", str(tmp_path / "given")]) == 0
    assert "--val-subset 5000 is more than the" in capsys.readouterr().err


def test_the_runs_tell_an_option_the_experiment_chose_from_one_the_user_gave(tmp_path):
    # What the experiment set itself is known as such (run_pairs' chosen), not by the text
    # of the warning it would give: the runs leave the note out, and only for that option.
    options = dict(TINY_RUNS, val_subset=5000, subset=3000, max_steps=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with run_pairs(
            "digits", [8], [0], tmp_path / "g", "paper-cifar", options, chosen={"val_subset"}
        ):
            pass
    said = [str(w.message) for w in caught if "is more than the" in str(w.message)]
    assert said == ["subset=3000 is more than the 1,438 training images: all of them are used"]


def test_a_probe_larger_than_the_training_images_is_said_with_the_numbers(tmp_path):
    # As --subset and --val-subset larger than the data: one warning, and all of them used.
    with pytest.warns(DataWarning) as caught:
        result = run_gradients(
            "digits", (8,), steps=1, probe_size=5000, out=tmp_path / "g", **TINY_RUNS
        )
    said = [str(w.message) for w in caught if "probe_size" in str(w.message)]
    assert said == ["probe_size=5000 is more than the 1,438 training images: all of them are used"]
    assert result.settings["probe_size"] == 1438


def test_the_probe_repeats_no_warning_the_runs_gave(tmp_path):
    # The measured batch is loaded as the runs loaded theirs: once per experiment still.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_gradients(
            "digits", (8,), steps=1, probe_size=32, out=tmp_path / "g", download=True, **TINY_RUNS
        )
    said = [str(w.message) for w in caught]
    download = "download=True fetches cifar10 only; digits is read as it is (drop the flag)"
    assert said.count(download) == 1, said
