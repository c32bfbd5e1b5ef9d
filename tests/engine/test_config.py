import json
from contextlib import nullcontext

import numpy as np
import pytest
import torch

import resnetlab
from resnetlab import ResnetlabError
from resnetlab.engine import RECIPES, TrainConfig, resolve_config
from resnetlab.engine.config import AUTO_FIELDS, warn_of_settings_that_do_not_apply
from resnetlab.errors import SettingWarning, command_line


def test_defaults_are_the_offline_demo():
    config = resolve_config()
    assert (config.model, config.data, config.recipe) == ("resnet20", "digits", "auto")
    # What the data decides is left open until the run starts (engine.auto).
    assert config.unset() == list(AUTO_FIELDS)
    assert all(getattr(config, name) is None for name in AUTO_FIELDS)


def test_recipes_set_their_values_and_flags_override():
    paper = resolve_config(recipe="paper-cifar")
    assert (paper.optimizer, paper.lr, paper.momentum, paper.weight_decay) == (
        "sgd",
        0.1,
        0.9,
        1e-4,
    )
    assert (paper.schedule, paper.milestones, paper.batch_size) == ("step", (0.5, 0.75), 128)
    assert (paper.crop_padding, paper.flip) == (4, None)  # None: on unless digit-like
    seed = resolve_config(recipe="course", lr=5e-4)
    assert (seed.optimizer, seed.lr, seed.batch_size, seed.epochs) == ("adam", 5e-4, 32, 30)
    assert resolve_config(recipe="course", epochs=None).epochs == 30  # None: not given
    assert resolve_config(recipe="modern", epochs=None).epochs == TrainConfig.epochs


def test_config_file_round_trip_and_flag_precedence(tmp_path):
    config = resolve_config(recipe="paper-cifar", model="resnet32", epochs=3, out="somewhere")
    config.save(tmp_path / "config.json")
    values = TrainConfig.load(tmp_path / "config.json")
    assert values["out"] is None  # a rerun gets its own folder
    again = resolve_config(values)
    assert again.to_dict() == {**config.to_dict(), "out": None}
    assert resolve_config(values, lr=0.05).lr == 0.05
    switched = resolve_config(values, recipe="course")
    assert (switched.recipe, switched.optimizer, switched.model) == ("course", "adam", "resnet32")


@pytest.mark.parametrize(
    ("option", "value", "meant"),
    [
        ("class_weights", "Balanced", "balanced"),
        ("recipe", "moden", "modern"),
        ("resize", "CROP", "crop"),
    ],
)
def test_a_near_choice_is_hinted_in_python_as_on_the_command_line(option, value, meant):
    with pytest.raises(ResnetlabError) as caught:
        resolve_config(**{option: value})
    assert f"{value!r} (did you mean {meant}?); choose " in str(caught.value)


def test_bad_values_are_clear_errors(tmp_path):
    with pytest.raises(ResnetlabError, match="unknown recipe 'fast'"):
        resolve_config(recipe="fast")
    with pytest.raises(ResnetlabError, match="epochs must be at least 1"):
        resolve_config(epochs=0)
    with pytest.raises(ResnetlabError, match="unknown training option: colour"):
        resolve_config(colour="red")
    bad = tmp_path / "c.json"
    bad.write_text("{not json")
    with pytest.raises(ResnetlabError) as caught:  # a run's cut short too: what to do
        TrainConfig.load(bad)
    assert str(caught.value) == (
        f"{bad} is not valid JSON (Expecting property name enclosed in double quotes, line 1); "
        "correct it, or restore it from a copy"
    )
    bad.write_text(json.dumps({"epochz": 3}))
    with pytest.raises(ResnetlabError, match=r"unknown training option in .*: epochz"):
        TrainConfig.load(bad)
    with pytest.raises(ResnetlabError, match="config file not found"):
        TrainConfig.load(tmp_path / "missing.json")
    with pytest.raises(ResnetlabError, match=r"^config file not found: .*missing.json$"):
        resnetlab.train(tmp_path / "missing.json")  # no model named by a path


def test_a_model_name_given_as_the_config_says_how_to_name_the_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    says = "config file not found: resnet20 (resnet20 is a model: {})"
    with pytest.raises(ResnetlabError) as caught:
        resnetlab.train("resnet20")  # the first argument is the config
    assert str(caught.value) == says.format("model='resnet20'")
    with command_line(), pytest.raises(ResnetlabError) as caught:
        TrainConfig.load("resnet20")
    assert str(caught.value) == says.format("--model resnet20")
    for call in (lambda: TrainConfig.load(3), lambda: TrainConfig().save(None)):  # TypeError
        with pytest.raises(ResnetlabError, match=r"config file.* must be a path \(str or "):
            call()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    with command_line(), pytest.raises(ResnetlabError, match=r"run is a folder; --config takes"):
        TrainConfig.load(tmp_path / "run")
    with pytest.raises(ResnetlabError, match=r"run is a folder; config takes a file: give .*"):
        resnetlab.train(tmp_path / "run")  # as Python names it
    # A run's other files name its config.json, not what fails to parse in them.
    (tmp_path / "run" / "summary.json").write_text(json.dumps({"status": "finished"}))
    (tmp_path / "run" / "metrics.csv").write_text("kind,epoch\n")
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"PK\x03\x04\xff\xfe")
    for name in ("summary.json", "metrics.csv", "checkpoint.pt"):
        with command_line(), pytest.raises(ResnetlabError) as caught:
            TrainConfig.load(tmp_path / "run" / name)
        assert str(caught.value) == (
            f"{tmp_path / 'run' / name} is a file of the run in {tmp_path / 'run'}, not its "
            f"configuration; --config takes {tmp_path / 'run' / 'config.json'}"
        )
    # A percentage where a fraction is meant gets the fraction to give.
    with command_line(), pytest.raises(ResnetlabError) as caught:
        resolve_config(target_accuracy=95)
    assert str(caught.value) == (
        "--target-accuracy must be in (0, 1], got 95; a fraction: for 95% give "
        "--target-accuracy 0.95"
    )
    with pytest.raises(ResnetlabError, match=r"got 1.5$"):
        resolve_config(target_accuracy=1.5)
    # The option is named as it was given: a flag on the command line, a keyword in Python.
    with pytest.raises(ResnetlabError, match=r"^val_every must be at least 1 epoch, got 0$"):
        resolve_config(val_every=0)
    with command_line(), pytest.raises(ResnetlabError, match=r"^--val-every must be at least 1 "):
        resolve_config(val_every=0)
    with command_line(), pytest.raises(ResnetlabError, match=r"^--lr must be positive, got -1$"):
        resolve_config(lr=-1)
    # No held-out share at all: how to train on every image is the fix to name.
    with pytest.raises(ResnetlabError, match=r"got 0.0; .* train on all .* with val_data$"):
        resolve_config(val_split=0.0)
    with pytest.raises(ResnetlabError, match=r"exclusive\), got 1.5$"):
        resolve_config(val_split=1.5)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"epochs": -3}, "epochs must be at least 1, got -3"),
        ({"lr": 0}, "lr must be positive, got 0"),
        ({"weight_decay": -1e-4}, "weight_decay must be at least 0, got -0.0001"),
        ({"log_every": 0}, "log_every must be at least 1, got 0"),  # named once
    ],
)
@pytest.mark.parametrize("cli", [False, True])
def test_an_out_of_range_value_in_a_config_file_names_the_file_and_the_key(
    tmp_path, values, message, cli
):
    """By its key, not by the flag that the command line's messages name."""
    path = tmp_path / "c.json"
    path.write_text(json.dumps(values))
    with pytest.raises(ResnetlabError) as info, command_line() if cli else nullcontext():
        resolve_config(TrainConfig.load(path), source=path)
    assert str(info.value) == f"{path}: {message}"


def test_a_flag_that_replaces_a_config_files_bad_value_is_taken_and_its_own_is_its_own(
    tmp_path,
):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"epochs": -3, "lr": 0.05}))
    assert resolve_config(TrainConfig.load(path), source=path, epochs=2).epochs == 2
    with pytest.raises(ResnetlabError) as info:  # the flag is wrong, not the file
        resolve_config(TrainConfig.load(path), source=path, epochs=0)
    assert str(info.value) == "epochs must be at least 1, got 0"


def test_an_unknown_model_is_refused_when_the_config_is_made():
    with pytest.raises(
        ResnetlabError, match=r"unknown model 'resnet5'; did you mean resnet50, resnet56"
    ):
        TrainConfig(model="resnet5")


def test_every_recipe_is_valid():
    for name in RECIPES:
        assert resolve_config(recipe=name).recipe == name


def test_every_model_but_the_courses_defaults_to_the_auto_recipe():
    assert resolve_config(model="resnet50_keras").recipe == "course"
    assert resolve_config(model="resnet50_keras", recipe="auto").recipe == "auto"
    assert resolve_config(model="resnet56").recipe == "auto"
    # Explicit values stay under auto; only the unset ones are decided later.
    config = resolve_config(epochs=7, lr=0.3)
    assert (config.epochs, config.lr, config.batch_size) == (7, 0.3, None)


def test_only_the_auto_recipe_may_leave_values_unset(tmp_path):
    config = resolve_config()
    config.save(tmp_path / "config.json")
    values = TrainConfig.load(tmp_path / "config.json")
    assert resolve_config(values).unset() == list(AUTO_FIELDS)
    values["recipe"] = "modern"
    with pytest.raises(ResnetlabError, match=r"batch_size, optimizer, lr, .* unset under recipe"):
        TrainConfig(**values)


@pytest.mark.parametrize(
    ("values", "unset"),
    [
        ({"recipe": "modern", "lr": None, "epochs": None}, "lr, epochs unset under recipe modern"),
        ({"recipe": "course", "batch_size": None}, "batch_size unset under recipe course"),
        # finetune decides the batch and the length itself: only the rate is missing.
        (
            {"recipe": "finetune", "epochs": None, "lr": None, "batch_size": None},
            "lr unset under recipe finetune",
        ),
    ],
)
def test_values_a_config_file_leaves_unset_are_all_named_once(tmp_path, values, unset):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(values))
    with pytest.raises(ResnetlabError) as info:
        resolve_config(TrainConfig.load(path), source=path)
    them, each = ("them", "each") if "," in unset else ("it", "it")
    assert str(info.value) == (
        f"{path}: {unset}: only the auto recipe chooses {them} from the data (finetune: "
        f"batch_size and epochs); give {each} a value"
    )


def test_a_config_file_from_before_resize_squashes(tmp_path):
    config = resolve_config()
    assert config.resize == "crop"
    values = {k: v for k, v in config.to_dict().items() if k != "resize"}
    (tmp_path / "config.json").write_text(json.dumps(values))
    assert resolve_config(TrainConfig.load(tmp_path / "config.json")).resize == "squash"


def test_new_options_are_checked():
    for bad, message in [
        (dict(resize="stretch"), "unknown resize 'stretch'; choose squash, crop"),
        (dict(patience=0), "patience must be at least 1 epoch"),
        (dict(clip_grad_norm=-1.0), r"clip_grad_norm must be 0 \(off\) or positive"),
        (dict(scale_jitter=1.5), "scale_jitter must be the smallest crop's share"),
        (dict(warmup_steps=-1), "warmup_steps must be at least 0"),
        (dict(head_epochs=-1), "head_epochs must be at least 0, got -1"),
        (
            dict(model_kwargs={"act_layer": torch.nn.SiLU}),
            "model_kwargs: option act_layer=<class .* is no JSON value",
        ),
        (
            dict(head_epochs=2, epochs=2),
            r"head_epochs=2 leaves none of the 2 epochs to train the rest of the network; "
            r"lower it or raise epochs \(to train only the classifier: freeze='backbone'\)$",
        ),
        (dict(head_epochs=1, epochs=1), r"head_epochs=1 leaves none of the 1 epoch to train "),
    ]:
        with pytest.raises(ResnetlabError, match=message):
            resolve_config(**bad)
    # Under --freeze backbone there is no rest to leave epochs to (a warning says it is idle).
    assert resolve_config(head_epochs=1, epochs=1, freeze="backbone").head_epochs == 1


def _lr_by_epoch(config, steps_per_epoch=391):
    from resnetlab.engine.optim import lr_at

    total = config.epochs * steps_per_epoch
    return lambda epoch, step=0: lr_at(
        epoch * steps_per_epoch + step,
        base_lr=config.lr,
        total_steps=total,
        schedule=config.schedule,
        warmup_steps=round(config.warmup_epochs * steps_per_epoch),
        milestones=config.milestones,
        gamma=config.gamma,
    )


def test_wide_resnet_recipe_is_the_papers_schedule():
    # Zagoruyko & Komodakis 2016: 0.1, times 0.2 at epochs 60, 120 and 160 of 200.
    wrn = resolve_config(recipe="wrn-cifar", model="wrn28_10")
    assert (wrn.optimizer, wrn.nesterov, wrn.momentum, wrn.weight_decay) == ("sgd", True, 0.9, 5e-4)
    assert (wrn.batch_size, wrn.epochs, wrn.crop_padding, wrn.flip) == (128, 200, 4, None)
    lr = _lr_by_epoch(wrn)
    rates = [lr(e) for e in (0, 59, 60, 119, 120, 159, 160, 199)]
    assert rates == pytest.approx([0.1, 0.1, 0.02, 0.02, 0.004, 0.004, 0.0008, 0.0008])


def test_preact_recipe_warms_up_then_follows_the_2015_schedule():
    pre = resolve_config(recipe="preact-cifar", model="preresnet164")
    paper = resolve_config(recipe="paper-cifar")
    same = ("optimizer", "momentum", "weight_decay", "batch_size", "epochs", "milestones")
    assert all(getattr(pre, k) == getattr(paper, k) for k in same)
    lr = _lr_by_epoch(pre)
    assert lr(0) < 0.001 and lr(0, 390) == pytest.approx(0.1)  # the first epoch warms up
    assert [lr(e) for e in (1, 81, 82, 122, 123)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])


def test_the_command_line_offers_every_recipe():
    from resnetlab.cli import parse_args

    for recipe in RECIPES:
        assert parse_args(["train", "--recipe", recipe]).recipe == recipe


def test_a_config_is_its_recipe_plus_what_was_given():
    seed = TrainConfig(recipe="course")
    assert (seed.optimizer, seed.lr, seed.batch_size) == ("adam", 1e-3, 32)
    faster = TrainConfig(recipe="course", lr=0.1)
    assert (faster.optimizer, faster.lr) == ("adam", 0.1)
    assert TrainConfig.from_recipe("paper-cifar", epochs=3) == TrainConfig(
        recipe="paper-cifar", epochs=3
    )
    # Switching the recipe of a whole config applies the new preset, then what was given.
    switched = resolve_config(TrainConfig().to_dict(), recipe="course", epochs=2)
    assert (switched.optimizer, switched.lr, switched.epochs) == ("adam", 1e-3, 2)
    with pytest.raises(ResnetlabError, match="unknown training option: bogus"):
        TrainConfig(bogus=1)


def test_the_course_recipe_keeps_its_earlier_name_seed():
    assert resolve_config(recipe="seed").recipe == "course"
    assert TrainConfig(recipe="seed") == TrainConfig(recipe="course")
    old = {**TrainConfig(recipe="course").to_dict(), "recipe": "seed"}  # a config.json of before
    assert resolve_config(old) == TrainConfig(recipe="course")
    # A recipe that is not a name, from an edited config.json: refused in one line.
    for damaged in ({"a": 1}, ["course"]):
        with pytest.raises(ResnetlabError, match="unknown recipe"):
            resolve_config({"recipe": damaged})


def test_another_optimizer_under_a_named_recipe_warns_of_its_rate(recwarn):
    def check(**given):
        config = resolve_config(**given)
        warn_of_settings_that_do_not_apply(config, given)
        return config

    config = check(recipe="finetune", optimizer="adam")
    assert (config.optimizer, config.lr) == ("adam", 0.01)  # named recipes stay as they are
    (warning,) = [w for w in recwarn if issubclass(w.category, SettingWarning)]
    assert (
        "recipe finetune trains at the recipe's lr 0.01 and weight decay 0.0001, set for sgd;"
        in (str(warning.message))
    )
    recwarn.clear()
    check(recipe="finetune", optimizer="adam", lr=1e-3)  # a rate given
    check(recipe="course", optimizer="adam")  # the recipe's own optimizer
    check(optimizer="adam")  # auto scales the rate to the optimizer
    resolve_config(recipe="modern", optimizer="adam")  # resolving alone (bench) says nothing
    assert not [w for w in recwarn if issubclass(w.category, SettingWarning)]
    # An auto run's config.json holds the rate auto chose for its optimizer, which a rerun
    # with another keeps: said as under a named recipe.
    chosen = {**resolve_config().to_dict(), "optimizer": "sgd", "lr": 0.05, "weight_decay": 5e-4}
    rerun = resolve_config(chosen, optimizer="adam")
    warn_of_settings_that_do_not_apply(rerun, {"optimizer": "adam"}, chosen)
    (warning,) = [w for w in recwarn if issubclass(w.category, SettingWarning)]
    # The weight decay too, as auto gives each optimizer its own.
    assert str(warning.message).endswith(
        "recipe auto trains at the config file's lr 0.05 and weight decay 0.0005, set for sgd; "
        "adam usually starts near lr 1e-3 at batch 32 with weight decay 0: give lr and "
        "weight_decay"
    )
    recwarn.clear()
    rerun = resolve_config(chosen, optimizer="adam", weight_decay=1e-4)  # a decay given
    warn_of_settings_that_do_not_apply(rerun, {"optimizer": "adam", "weight_decay": 1e-4}, chosen)
    (warning,) = [w for w in recwarn if issubclass(w.category, SettingWarning)]
    assert str(warning.message).endswith(
        "set for sgd; adam usually starts near 1e-3 at batch 32: give lr"
    )


def test_another_batch_with_a_config_file_names_the_rate_for_it(recwarn):
    chosen = {**resolve_config().to_dict(), "batch_size": 64, "lr": 0.08}

    def warned(**given):
        recwarn.clear()
        with command_line():  # as `resnetlab train --config` warns
            warn_of_settings_that_do_not_apply(resolve_config(chosen, **given), given, chosen)
        return [str(w.message) for w in recwarn if issubclass(w.category, SettingWarning)]

    assert warned(batch_size=16) == [
        "--batch-size 16 trains at the config file's lr 0.08, set for batch 64; the rate that "
        "follows the batch (as the square root of it) is --lr 0.04"
    ]
    assert warned(batch_size=16, lr=0.05) == []  # a rate given with it
    assert warned(batch_size=64) == []  # the file's own batch
    assert warned(batch_size=16, recipe="course") == []  # the recipe's rate, for its batch


def test_weights_given_with_a_config_file_of_a_run_from_scratch(recwarn, tmp_path):
    scratch = {**resolve_config().to_dict(), "head_epochs": 0, "lr": 0.05}
    weights = str(tmp_path / "weights.pth")

    def warned(**given):
        recwarn.clear()
        config = resolve_config(scratch, **given)
        with command_line():
            warn_of_settings_that_do_not_apply(config, given, scratch)
        return config, [str(w.message) for w in recwarn if issubclass(w.category, SettingWarning)]

    config, messages = warned(pretrained=weights)
    assert messages == [
        "--pretrained with the config file of a run from scratch keeps its recipe auto (lr "
        "0.05), which may wash out the weights; give --recipe finetune to fine-tune them, as a "
        "run without the file would"
    ]
    assert config.head_epochs is None  # decided for these weights, not the file's 0
    config, messages = warned(pretrained=weights, recipe="finetune")
    assert (config.recipe, config.lr, messages) == ("finetune", 0.01, [])
    assert warned(pretrained=weights, head_epochs=0)[0].head_epochs == 0  # given: kept


def test_milestones_without_the_step_schedule_are_named(recwarn):
    def warned(**given):
        recwarn.clear()
        with command_line():
            warn_of_settings_that_do_not_apply(resolve_config(**given), given)
        return [str(w.message) for w in recwarn if issubclass(w.category, SettingWarning)]

    (message,) = warned(milestones=(0.3, 0.6))  # the auto recipe's schedule is cosine
    assert message == (
        "--milestones are for --schedule step, and this run's schedule is cosine, which "
        "ignores them: add --schedule step to use them"
    )
    assert warned(gamma=0.2) == [
        "--gamma is for --schedule step, and this run's schedule is cosine, which ignores it: "
        "add --schedule step to use it"
    ]
    assert warned(gamma=0.2, milestones=(0.5,))[0].startswith("--milestones and --gamma are for")
    assert warned(gamma=0.2, schedule="step") == []
    assert warned(milestones=(0.3, 0.6), schedule="step") == []
    assert warned(milestones=(0.3, 0.6), recipe="paper-cifar") == []  # a step recipe
    assert warned(schedule="constant") == []


def test_epochs_beside_max_steps_are_named_as_not_applying(recwarn):
    def warned(**given):
        recwarn.clear()
        with command_line():
            warn_of_settings_that_do_not_apply(resolve_config(**given), given)
        return [str(w.message) for w in recwarn if issubclass(w.category, SettingWarning)]

    assert warned(epochs=2, max_steps=200) == [
        "--epochs 2 does not apply: --max-steps 200 sets the length, and the schedule spans "
        "its steps; drop one of them"
    ]
    assert warned(max_steps=200) == warned(epochs=2) == []


def test_warmup_epochs_beside_warmup_steps_are_named_as_not_applying(recwarn):
    def warned(**given):
        recwarn.clear()
        with command_line():
            warn_of_settings_that_do_not_apply(resolve_config(**given), given)
        return [str(w.message) for w in recwarn if issubclass(w.category, SettingWarning)]

    assert warned(warmup_epochs=1.0, warmup_steps=10) == [
        "--warmup-epochs 1.0 does not apply: --warmup-steps 10 sets the warm-up; drop one of them"
    ]
    assert warned(warmup_epochs=1.0) == warned(warmup_steps=10) == []


def test_head_epochs_and_layer_decay_under_a_frozen_backbone_are_named(recwarn):
    def warned(**given):
        recwarn.clear()
        config = resolve_config(pretrained="torchvision", **given)
        with command_line():
            warn_of_settings_that_do_not_apply(config, given)
        return [str(w.message) for w in recwarn if issubclass(w.category, SettingWarning)]

    (message,) = warned(freeze="backbone", head_epochs=1, layer_lr_decay=0.5)
    assert message == (
        "--freeze backbone trains the classifier alone throughout, so --head-epochs and "
        "--layer-lr-decay change nothing: drop them, or freeze less (--freeze layer2 trains "
        "the stages after it and the classifier)"
    )
    (message,) = warned(freeze="backbone", head_epochs=2)
    assert "so --head-epochs changes nothing: drop it, or freeze less" in message
    # The stage it names is one every model has: resnet20, the default, has no layer4.
    assert "layer4" not in message
    assert warned(freeze="layer3", head_epochs=1, layer_lr_decay=0.5) == []
    assert warned(freeze="backbone", head_epochs=0) == []
    assert warned(freeze="backbone") == []


def test_paths_from_the_python_api_and_near_misses(tmp_path):
    config = resolve_config(data=tmp_path / "photos", out=tmp_path / "run")
    assert (config.data, config.out) == (str(tmp_path / "photos"), str(tmp_path / "run"))
    assert TrainConfig(pretrained=tmp_path / "w.pth").pretrained == str(tmp_path / "w.pth")
    assert TrainConfig(device=torch.device("cuda", 1)).device == "cuda:1"  # a torch.device too
    assert TrainConfig(pretrained=True).pretrained == "torchvision"  # as create_model takes it
    assert TrainConfig(pretrained=False).pretrained is None
    # NumPy's numbers, as a sweep over np.logspace gives them: they were refused ('lr must
    # be a finite number, got np.float32(0.1)'); config.json holds them as JSON numbers.
    config = TrainConfig(lr=np.float32(0.5), batch_size=np.int64(8), milestones=np.array([0.5]))
    assert (config.lr, config.batch_size, config.milestones) == (0.5, 8, (0.5,))
    assert type(config.lr) is float and type(config.batch_size) is int
    assert json.loads(json.dumps(config.to_dict()))["batch_size"] == 8
    with pytest.raises(ResnetlabError, match=r"^batch_size must be an integer, got 8.5$"):
        TrainConfig(batch_size=np.float64(8.5))
    with pytest.raises(ResnetlabError, match=r"option: modle \(did you mean model\?\)$"):
        resolve_config(modle="resnet18")
    # The flag's name for it: --model-option KEY=VALUE.
    with pytest.raises(ResnetlabError, match=r"model_option \(did you mean model_kwargs\?\)$"):
        resolve_config(model_option={"shortcut": "B"})


def test_help_of_train_config_says_what_every_field_does():
    import dataclasses

    for f in dataclasses.fields(TrainConfig):
        assert f"\n    {f.name}: " in TrainConfig.__doc__, f.name
    assert "    batch_size: images per step" in TrainConfig.__doc__


def test_weights_from_a_model_file_keep_its_resize_unless_one_is_given(tmp_path):
    weights = tmp_path / "squashed.safetensors"
    model = resnetlab.create_model("resnet20", num_classes=2)
    resnetlab.save_model(model, weights, resize="squash")
    assert resolve_config(pretrained=weights, data="digits").resize == "squash"
    assert resolve_config(pretrained=tmp_path / "none.pth").resize == "crop"  # not one: default
    given = resolve_config(pretrained=weights, data="digits", resize="crop")
    assert given.resize == "crop"
    # A rerun from its config.json keeps what the run used.
    assert resolve_config({"resize": "crop", "pretrained": str(weights)}).resize == "crop"
    assert resolve_config(recipe="modern", model="resnet20").resize == "crop"


def test_a_recipe_switched_to_from_a_config_file_brings_its_warm_up_and_crops():
    # An auto run's config.json holds the warm-up it chose in steps and its augmentation
    # (scale jitter at 128 px and more): the recipe's own warm-up and crops replace them.
    values = resolve_config(recipe="auto", model="resnet18").to_dict()
    values.update(warmup_steps=100, warmup_epochs=0.0, crop_padding=0, scale_jitter=0.35)
    paper = resolve_config(values, recipe="paper-cifar")
    assert (paper.recipe, paper.warmup_steps, paper.warmup_epochs) == ("paper-cifar", None, 0.0)
    assert (paper.crop_padding, paper.scale_jitter) == (4, 0.0)
    assert resolve_config(values, recipe="preact-cifar").warmup_steps is None
    # Given as flags with the recipe, they stay; without a recipe, the file's stay.
    given = resolve_config(values, recipe="paper-cifar", warmup_steps=50, scale_jitter=0.5)
    assert (given.warmup_steps, given.scale_jitter) == (50, 0.5)
    rerun = resolve_config(values)
    assert (rerun.recipe, rerun.warmup_steps, rerun.scale_jitter) == ("auto", 100, 0.35)


def test_a_warm_up_in_epochs_given_with_a_config_file_replaces_its_warm_up_in_steps():
    values = resolve_config(recipe="auto").to_dict()
    values.update(warmup_steps=100, warmup_epochs=0.0)  # as an auto run's config.json says
    given = resolve_config(values, warmup_epochs=2.0)
    assert (given.warmup_steps, given.warmup_epochs) == (None, 2.0)
    both = resolve_config(values, warmup_epochs=2.0, warmup_steps=50)
    assert (both.warmup_steps, both.warmup_epochs) == (50, 2.0)  # steps win, as documented


def test_epochs_given_with_a_config_file_replace_its_length_in_steps():
    values = resolve_config(recipe="modern", max_steps=30).to_dict()
    assert (resolve_config(values, epochs=5).max_steps, resolve_config(values).max_steps) == (
        None,
        30,
    )
    assert resolve_config(values, epochs=5, max_steps=40).max_steps == 40  # steps win


def test_an_option_the_model_lacks_is_refused_by_the_config():
    """Not by create_model once the data is decoded, which for a large folder is minutes
    later."""
    with pytest.raises(
        ResnetlabError, match=r"^resnet8 has no option shortcutt \(did you mean shortcut\?\); "
    ):
        TrainConfig(model="resnet8", model_kwargs={"shortcutt": "B"})
    assert TrainConfig(model="resnet8", model_kwargs={"shortcut": "B"}).model_kwargs == {
        "shortcut": "B"
    }
    # A misspelt num_classes, which training does not take: not "did you mean norm_layer?"
    with pytest.raises(
        ResnetlabError,
        match=r"^resnet8 has no option num_clases \(the number of classes comes from the data\); ",
    ):
        TrainConfig(model="resnet8", model_kwargs={"num_clases": 3})
    with pytest.raises(
        ResnetlabError, match=r"no option num_clases \(did you mean num_classes\?\)"
    ):
        resnetlab.create_model("resnet8", num_clases=3)  # which takes it


def test_arrays_of_images_given_as_the_data_say_how_to_train_on_them():
    # The course's X_train, Y_train: was "data must be a string, got list" (the arrays made
    # lists first), for arrays that are no list and data that may be a path.
    x, y = np.zeros((4, 8, 8, 3), np.uint8), np.zeros(4, np.int64)
    fix = (
        "names a data set (digits, cifar10, a file or a folder), not arrays of images, got "
        "{}; write the arrays to an HDF5 file as the course's: {}_set_x uint8 (N, H, W, 3), "
        "{}_set_y (N,) class indices, and give its path"
    )
    for given, kind in [((x, y), "tuple"), (x, "ndarray"), (torch.from_numpy(x), "Tensor")]:
        with pytest.raises(ResnetlabError) as caught:
            TrainConfig(data=given)
        assert str(caught.value) == "data " + fix.format(kind, "train", "train")
    with pytest.raises(ResnetlabError) as caught:
        resnetlab.train(val_data=[x, y])
    assert str(caught.value) == "val_data " + fix.format("list", "test", "test")


@pytest.mark.parametrize("size", [4, 4096])
def test_input_size_has_one_range_said_one_way(size, capsys):
    # train said "at least 8" and "at most 2048" where the other commands' --input-size said
    # "from 8 to 2,048 pixels": one rule, in the same words wherever it is given.
    from resnetlab.cli import main

    said = f"must be from 8 to 2,048 pixels, got {size}"
    with pytest.raises(ResnetlabError, match=f"^input_size {said}$"):
        TrainConfig(input_size=size)
    assert main(["train", "--input-size", str(size)]) == 2
    assert capsys.readouterr().err == f"error: --input-size {said}\n"
    with pytest.raises(SystemExit):
        main(["data", "inspect", "digits", "--input-size", str(size)])
    assert capsys.readouterr().err.endswith(f"error: argument --input-size: {said}\n")
