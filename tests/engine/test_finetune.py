"""Fine-tuning: frozen stages stay bit-identical, the head phase, per-stage learning rates,
and runs started from pretrained weights keep their normalisation."""

import json
import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file

import resnetlab
from resnetlab.cli import main
from resnetlab.convert.pretrained import IMAGENET_MEAN, IMAGENET_STD
from resnetlab.engine import TrainConfig, resolve_config, train
from resnetlab.engine.calibrate import CpuPlan
from resnetlab.engine.finetune import FineTuning
from resnetlab.engine.optim import lr_at, set_lr
from resnetlab.engine.step import build_training
from resnetlab.errors import SettingWarning

from ..data.conftest import noise, write_tree
from .interrupt import train_interrupted

# ResNet-18 (four stages) on digits upsampled to 32x32: the smallest input an ImageNet
# ResNet takes, a few steps of a few images.
SMALL = dict(
    model="resnet18",
    data="digits",
    input_size=32,
    batch_size=16,
    subset=64,
    val_subset=20,
    log_every=2,
)


@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory):
    """torchvision's ResNet-18 with its own initialisation, saved as torchvision users do."""
    torch.manual_seed(5)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


_RESNET18 = resnetlab.create_model("resnet18")


def _stage(key: str) -> int:
    return _RESNET18.stage_of(key)


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_freeze_layer3_leaves_every_frozen_tensor_bit_identical(torchvision_file, tmp_path):
    source = torch.load(torchvision_file, weights_only=True)
    result = train(
        **SMALL, pretrained=str(torchvision_file), freeze="layer3", max_steps=4, out=str(tmp_path)
    )
    after = _state(result.model)
    frozen = [k for k in after if _stage(k) <= 3]
    assert any("running_var" in k for k in frozen) and any("layer3" in k for k in frozen)
    # Weights, BN scales and shifts, running statistics and batch counters: all as loaded.
    assert all(torch.equal(after[k], source[k]) for k in frozen)
    changed = [k for k in after if _stage(k) == 4 and not torch.equal(after[k], source[k])]
    assert any(k.endswith("conv1.weight") for k in changed)
    assert any(k.endswith("running_mean") for k in changed)  # layer4 BN still learns
    config = TrainConfig.from_recipe("finetune", **SMALL, pretrained=str(torchvision_file))
    initial = resnetlab.engine.initial_model(config, 10, 32)
    assert not torch.equal(after["fc.weight"], initial.state_dict()["fc.weight"])
    assert result.summary["pretrained"]["source"] == str(torchvision_file)


def test_without_frozen_statistics_frozen_stages_re_estimate_them(torchvision_file, tmp_path):
    source = torch.load(torchvision_file, weights_only=True)
    result = train(
        **SMALL,
        pretrained=str(torchvision_file),
        freeze="layer3",
        freeze_bn=False,
        max_steps=2,
        out=str(tmp_path),
    )
    after = _state(result.model)
    frozen = [k for k in after if _stage(k) <= 3]
    stats = [k for k in frozen if "running_" in k or "num_batches" in k]
    weights = [k for k in frozen if k not in stats]
    assert all(torch.equal(after[k], source[k]) for k in weights)
    assert not any(torch.equal(after[k], source[k]) for k in stats)


@pytest.mark.parametrize("fused", [False, True])
def test_head_phase_trains_the_classifier_alone_then_everything(torchvision_file, fused):
    # fused: the optimizer's kernels where the calibration chose them (and CUDA's), whose
    # SGD failed when the backbone's first gradients came after the head phase.
    weights = resnetlab.convert.resolve_pretrained(torchvision_file, "resnet18")
    config = TrainConfig.from_recipe(
        "finetune", **SMALL, pretrained=str(torchvision_file), head_epochs=1, freeze="stem"
    )
    parts = build_training(
        config,
        torch.device("cpu"),
        num_classes=10,
        input_size=32,
        pretrained=weights,
        cpu_plan=CpuPlan(fused_optimizer=fused),
    )
    assert parts.optimizer.defaults.get("fused") is (True if fused else None)
    model, tuning = parts.model, parts.tuning
    assert tuning.head_epochs == 1 and model.pretrained.head == "replaced"
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8)

    def steps(epoch: int) -> dict[str, torch.Tensor]:
        before = _state(model)
        model.train()
        tuning.begin_epoch(epoch)
        for _ in range(2):
            set_lr(parts.optimizer, 0.01)
            parts.step(x, y)
        return {k: not torch.equal(before[k], v) for k, v in model.state_dict().items()}

    changed = steps(0)  # the head phase: only fc moves, BN statistics included
    assert changed["fc.weight"] and changed["fc.bias"]
    assert not any(changed[k] for k in changed if _stage(k) <= 4)
    changed = steps(1)  # then every stage after the frozen stem
    assert changed["layer1.0.conv1.weight"] and changed["layer4.1.bn2.running_var"]
    assert not any(changed[k] for k in changed if _stage(k) == 0)


def test_frozen_batchnorm_statistics_without_pretrained_weights_are_warned_of(torchvision_file):
    """--freeze-bn keeps statistics only pretrained weights have: without them every BN kept
    its mean 0 and variance 1, and resnet20's loss ran to NaN, blamed on the rate."""
    from resnetlab.engine.step import fine_tuning

    config = TrainConfig.from_recipe("modern", model="resnet20", freeze_bn=True)
    with pytest.warns(SettingWarning) as caught:
        fine_tuning(config, resnetlab.create_model("resnet20", num_classes=10))
    assert [str(w.message) for w in caught] == [
        "freeze_bn without pretrained: every BatchNorm keeps the statistics it starts with "
        "(mean 0, variance 1), which normalise nothing, and training may diverge; drop "
        "freeze_bn, or add pretrained"
    ]
    tuned = TrainConfig.from_recipe("finetune", **SMALL, pretrained=str(torchvision_file))
    tuned.freeze_bn = True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fine_tuning(tuned, resnetlab.create_model("resnet18", num_classes=10))


def test_each_phase_runs_its_own_schedule():
    tuning = FineTuning(resnetlab.create_model("resnet20"), head_epochs=2)
    spe, total = 10, 50
    spans = [tuning.phase_span(s, total, spe) for s in (0, 19, 20, 49)]
    assert spans == [(0, 20), (19, 20), (0, 30), (29, 30)]
    rates = [
        lr_at(s, base_lr=1.0, total_steps=t, schedule="cosine", warmup_steps=5) for s, t in spans
    ]
    assert rates[0] == rates[2] == pytest.approx(0.2)  # the warm-up starts again


def test_layer_lr_decay_gives_each_stage_its_rate():
    config = TrainConfig(
        model="resnet18", layer_lr_decay=0.5, freeze="stem", weight_decay=1e-4, lr=0.1
    )
    parts = build_training(config, torch.device("cpu"), num_classes=10, input_size=32)
    set_lr(parts.optimizer, 0.1)
    names = {id(p): n for n, p in parts.model.named_parameters()}
    rates = {}
    for group in parts.optimizer.param_groups:
        for p in group["params"]:
            rates[names[id(p)]] = (group["lr"], group["weight_decay"], p.ndim)
    # The head at the full rate, layer4 at half of it, ..., layer1 at 1/16; the stem is
    # frozen, so not in the optimizer at all.
    expected = {0: None, 1: 0.1 / 16, 2: 0.1 / 8, 3: 0.1 / 4, 4: 0.1 / 2, 5: 0.1}
    assert set(rates) == {n for n in names.values() if _stage(n) > 0}
    for name, (lr, decay, ndim) in rates.items():
        assert lr == pytest.approx(expected[_stage(name)]), name
        assert decay == (1e-4 if ndim > 1 else 0.0)  # none on BN and biases, as without decay


def test_a_fine_tuning_run_on_a_few_images_takes_a_batch_that_leaves_none_out(
    torchvision_file, tmp_path, capsys
):
    out = tmp_path / "run"
    args = ["--model", "resnet18", "--data", "digits", "--input-size", "32", "--subset", "40"]
    args += ["--val-subset", "20", "--max-steps", "2", "--pretrained", str(torchvision_file)]
    assert main(["train", *args, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    log = " ".join((captured.out + captured.err).split())  # as one line, however wrapped
    says = "recipe finetune: 40 images -> batch 16 (the recipe's 32, halved until an epoch"
    assert f"{says} has two steps)" in log
    config = json.loads((out / "config.json").read_text())
    assert (config["recipe"], config["batch_size"], config["epochs"]) == ("finetune", 16, 1)


def test_pretrained_runs_default_to_the_finetune_recipe():
    assert resolve_config(pretrained="torchvision").recipe == "finetune"
    assert resolve_config(pretrained="torchvision", recipe="modern").recipe == "modern"
    assert resolve_config().recipe == "auto"
    with pytest.raises(resnetlab.ResnetlabError, match="unknown freeze 'layer9'"):
        TrainConfig(freeze="layer9")
    with pytest.raises(
        resnetlab.ResnetlabError,
        match="resnet20 has no such stage; choose stem, layer1, layer2, layer3",
    ):
        FineTuning(resnetlab.create_model("resnet20"), freeze="layer4")


def test_a_head_phase_as_long_as_max_steps_says_to_raise_max_steps():
    from resnetlab.engine.auto import apply_finetune

    # --max-steps sets the length even beside --epochs, so raising --epochs would not help.
    config = resolve_config(pretrained="torchvision", head_epochs=2, epochs=4, max_steps=5)
    with pytest.raises(
        resnetlab.ResnetlabError,
        match=r"head_epochs=2 leaves none of the 2 epochs of max_steps=5 to train the rest of "
        r"the network; lower it or raise max_steps \(",
    ):
        apply_finetune(config, num_images=120)


def test_freezing_the_last_stage_warns_as_freeze_backbone_does_of_idle_settings():
    from resnetlab.engine.step import fine_tuning

    model = resnetlab.create_model("resnet20", num_classes=3)
    config = resolve_config(
        model="resnet20", pretrained="torchvision", freeze="layer3", head_epochs=1, epochs=3
    )
    with pytest.warns(SettingWarning) as caught:
        tuning = fine_tuning(config, model)
    assert tuning.head_epochs == 0  # all of it frozen: nothing is left to follow a head phase
    said = [str(w.message) for w in caught]
    assert said == [
        "freeze='layer3' (resnet20's last stage: the whole backbone) trains the classifier "
        "alone throughout, so head_epochs changes nothing: drop it, or freeze less "
        "(freeze='layer2' trains the stages after it and the classifier)"
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither set: nothing idle to warn of
        fine_tuning(
            resolve_config(model="resnet20", pretrained="torchvision", freeze="layer3"), model
        )


def test_weights_that_do_not_record_their_input_size_say_which_is_taken(tmp_path, capsys):
    path = tmp_path / "r20.pt"
    torch.save(resnetlab.create_model("resnet20").state_dict(), path)
    args = ["--model", "resnet20", "--data", "digits", "--subset", "32", "--val-subset", "10"]
    args += ["--batch-size", "16", "--max-steps", "1", "--pretrained", str(path)]
    note = (
        "pretrained: r20.pt does not record the input size it was trained at: 32x32 taken "
        "(resnet20's); --input-size N trains at another"
    )
    assert main(["train", *args, "--out", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert note in " ".join((captured.out + captured.err).split())
    assert main(["train", *args, "--input-size", "32", "--out", str(tmp_path / "b")]) == 0
    captured = capsys.readouterr()
    assert "does not record the input size" not in captured.out + captured.err


def test_imagenet_weights_keep_imagenet_normalisation_for_eval_and_predict(
    torchvision_file, tmp_path, capsys
):
    out = tmp_path / "run"
    args = ["--model", "resnet18", "--data", "digits", "--input-size", "32", "--subset", "64"]
    args += ["--val-subset", "20"]
    args += ["--batch-size", "16", "--max-steps", "2", "--pretrained", str(torchvision_file)]
    assert main(["train", *args, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    log = " ".join((captured.out + captured.err).split())  # as one line, however wrapped
    assert "pretrained: resnet18 from resnet18.pth: 100 tensors loaded; classifier replaced" in log
    model = resnetlab.load_model(out / "best.safetensors")
    assert (model.meta.mean, model.meta.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert model.meta.training["pretrained"]["kind"] == "state-dict"
    # A model file names the files it came from, not the folders they were in.
    pretrained = model.meta.training["pretrained"]
    assert pretrained["source"] == pretrained["location"] == "resnet18.pth"
    assert str(torchvision_file.parent) not in json.dumps(model.meta.training)
    record = json.loads((out / "pretrained.json").read_text())
    assert record["head"] == "replaced" and record["new"] == ["fc.weight", "fc.bias"]
    assert json.loads((out / "config.json").read_text())["recipe"] == "finetune"
    # predict (and eval) take the normalisation from the file: no flag.
    pixels = torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8)
    Image.fromarray(pixels.numpy()).save(tmp_path / "image.png")
    (prediction,) = resnetlab.predict(out / "best.safetensors", [tmp_path / "image.png"], top_k=10)
    x = (pixels.permute(2, 0, 1)[None] / 255 - torch.tensor(IMAGENET_MEAN)[:, None, None]) / (
        torch.tensor(IMAGENET_STD)[:, None, None]
    )
    with torch.no_grad():
        expected = model(x).softmax(-1)[0]
    got = dict(prediction.top)
    for i, name in enumerate(model.meta.class_names):
        assert got[name] == pytest.approx(expected[i].item(), abs=1e-5)


def test_a_run_started_from_a_run_keeps_its_normalisation_and_resumes_exactly(
    tmp_path, monkeypatch
):
    fast = dict(model="resnet8", data="digits", input_size=8, crop_padding=1, batch_size=64)
    first = train(**fast, max_steps=3, out=str(tmp_path / "first"))
    tuned = dict(
        fast,
        pretrained=str(first.run_dir),
        freeze="layer1",
        head_epochs=1,
        layer_lr_decay=0.5,
        epochs=2,
        subset=320,  # 5 steps an epoch
        val_subset=100,
        deterministic=True,
    )
    whole = train(**tuned, out=str(tmp_path / "whole"))
    meta = resnetlab.load_model(whole.run_dir / "last.safetensors").meta
    source = resnetlab.read_model_meta(first.run_dir / "best.safetensors")
    assert (meta.mean, meta.std) == (source.mean, source.std)  # not the new data's

    # 5 steps per epoch: stopped after the head phase.
    train_interrupted(monkeypatch, 7, **tuned, out=str(tmp_path / "split"))
    resumed = train(resume=tmp_path / "split")
    expected, got = _state(whole.model), _state(resumed.model)
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_pre_activation_nets_freeze_by_the_same_stage_names():
    model = resnetlab.create_model("preresnet110")  # timm's ResNetV2 keys: stem, stages.i, head
    names = [
        "stem.conv.weight",
        "stages.0.blocks.0.norm1.weight",
        "stages.2.blocks.17.conv2.weight",
    ]
    names += ["norm.weight", "head.fc.weight"]
    assert [model.stage_of(n) for n in names] == [0, 1, 3, 3, 4]
    tuning = FineTuning(model, freeze="layer2", head_epochs=0)
    tuning.begin_epoch(0)
    trains = {model.stage_of(n) for n, p in model.named_parameters() if p.requires_grad}
    assert trains == {3, 4}
    kept = tuning.kept_batchnorms(0)
    assert kept and all(model.stage_of(n) <= 2 for n in kept)


def test_a_run_from_weights_trains_at_their_input_size_unless_told(tmp_path):
    fast = dict(model="resnet8", data="digits", crop_padding=1, batch_size=64, max_steps=1)
    first = train(**fast, input_size=16, out=str(tmp_path / "first"))
    tuned = train(**fast, pretrained=str(first.run_dir), out=str(tmp_path / "tuned"))
    assert resnetlab.read_model_meta(tuned.run_dir / "last.safetensors").input_size == 16
    assert json.loads((tuned.run_dir / "config.json").read_text())["input_size"] == 16
    told = train(**fast, pretrained=str(first.run_dir), input_size=8, out=str(tmp_path / "told"))
    assert resnetlab.read_model_meta(told.run_dir / "last.safetensors").input_size == 8


def test_the_advice_on_enlarged_images_says_the_size_came_from_the_weights(tmp_path, capsys):
    """8x8 images enlarged to the 16 px a run trained at: the advice says the size is the
    weights', and that a size near the images' would leave it, not only that it is faster."""
    images = {c: [noise(i + 8 * k) for i in range(8)] for k, c in enumerate("ab")}
    data = write_tree(tmp_path / "small", images)
    fast = dict(model="resnet8", data=str(data), max_steps=1, device="cpu")
    first = train(**fast, input_size=16, out=str(tmp_path / "a"))
    args = ["train", "--pretrained", str(first.run_dir), "--data", str(data), "--max-steps", "1"]
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    err = " ".join(capsys.readouterr().err.split())  # as one line, however wrapped
    assert (
        "data: most images are 8x8, enlarged to 16x16 (the input size): the size the weights "
        "were trained at, taken from them; --input-size near the images' trains much faster, "
        "at a size the weights did not learn" in err
    )
    # The size given: the advice as for any run.
    assert main([*args, "--input-size", "16", "--out", str(tmp_path / "c")]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "enlarged to 16x16 (the input size); a size near theirs trains much faster" in err
    assert "taken from them" not in err


def test_weights_from_a_run_bring_their_model_unless_one_is_named(tmp_path, capsys):
    first = train(
        model="resnet32", data="digits", input_size=8, max_steps=1, out=str(tmp_path / "a")
    )
    config = resolve_config(pretrained=str(first.run_dir))
    assert config.model == "resnet32" and config.recipe == "finetune"
    best = first.run_dir / "best.safetensors"
    assert resolve_config(pretrained=str(best)).model == "resnet32"
    # A model named is the one trained; weights for another say which model they are for.
    args = ["train", "--pretrained", str(first.run_dir), "--model", "resnet20", "--data", "digits"]
    assert main([*args, "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "holds a resnet32, not a resnet20" in err and "give --model resnet32" in err
    # Options given without a model: still the weights' model, the options checked against
    # theirs (it trained the default model, resnet20, "not the resnet32" the weights hold).
    args = ["train", "--pretrained", str(first.run_dir), "--data", "digits"]
    assert main([*args, "--model-option", "shortcut=B", "--out", str(tmp_path / "c")]) == 2
    assert capsys.readouterr().err.startswith(
        f"error: the run {first.run_dir.name} (resnet32, 10 classes) is a resnet32 built with "
        "no options, the model with options shortcut=B; build it with the weights' options "
        "(no --model-option)"
    )
    config = resolve_config(pretrained=str(best), model_kwargs={"zero_init_residual": True})
    assert config.model == "resnet32" and config.model_kwargs == {"zero_init_residual": True}


def test_a_state_dict_without_a_model_named_trains_the_one_model_it_fits(
    torchvision_file, tmp_path
):
    """`train --pretrained resnet18.pth --data photos/`: torchvision's weights, saved as its
    users do, fit resnet18 alone; the run trained the default model, resnet20, and stopped
    with "give --model resnet18"."""
    config = resolve_config(pretrained=str(torchvision_file), data="digits")
    assert (config.model, config.model_kwargs, config.recipe) == ("resnet18", {}, "finetune")
    as_safetensors = tmp_path / "resnet18.safetensors"
    save_file(torch.load(torchvision_file, weights_only=True), as_safetensors)
    assert resolve_config(pretrained=str(as_safetensors), data="digits").model == "resnet18"
    # Under a training module's prefix (DDP's module.), as the weights are read.
    wrapped = tmp_path / "ddp.pth"
    torch.save({f"module.{k}": v for k, v in torch.load(torchvision_file).items()}, wrapped)
    assert resolve_config(pretrained=str(wrapped), data="digits").model == "resnet18"
    # A model named is the one built, and the weights are checked against it later: the
    # models they might fit are not looked for (that builds all of them, seconds).
    from resnetlab.convert.pretrained import _states_of

    looked = _states_of.cache_info()  # (kept: the tests after this one look for them again)
    assert resolve_config(pretrained=str(torchvision_file), model="resnet34").model == "resnet34"
    assert _states_of.cache_info() == looked  # neither built nor read


def test_weights_that_do_not_fit_the_default_model_say_it_is_the_default(
    torchvision_file, tmp_path, capsys
):
    """'does not fit resnet20' named a model the user never asked for. (Weights that fit one
    model here train it: these fit none, their stem being 5x5.)"""
    odd = torch.load(torchvision_file, weights_only=True)
    odd["conv1.weight"] = torch.zeros(64, 3, 5, 5)
    weights = tmp_path / "odd.pth"
    torch.save(odd, weights)
    args = ["train", "--pretrained", str(weights), "--data", "digits"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    assert capsys.readouterr().err.startswith(
        "error: odd.pth does not fit the default model, resnet20: conv1.weight is "
        "(64, 3, 5, 5) in them and (16, 3, 3, 3) in resnet20; they are for another "
        "architecture (choose the --model they were made for)"
    )
    assert main([*args, "--model", "resnet32", "--out", str(tmp_path / "b")]) == 2
    assert capsys.readouterr().err.startswith("error: odd.pth does not fit resnet32: ")
    # The default model named is the user's choice: it is not called the default.
    assert main([*args, "--model", "resnet20", "--out", str(tmp_path / "c")]) == 2
    assert capsys.readouterr().err.startswith("error: odd.pth does not fit resnet20: ")
    out = str(tmp_path / "d")
    given = dict(pretrained=weights, data="digits", out=out)
    for call, says in [
        (lambda: train(**given), "the default model, resnet20"),
        (lambda: train(model="resnet20", **given), "resnet20"),
        (
            lambda: train(TrainConfig(pretrained=str(weights)), out=out),
            "the default model, resnet20",
        ),
        (
            lambda: train(TrainConfig(model="resnet20", pretrained=str(weights), out=out)),
            "resnet20",
        ),
    ]:
        with pytest.raises(resnetlab.ResnetlabError) as e:
            call()
        assert str(e.value).startswith(f"odd.pth does not fit {says}: "), str(e.value)


def test_a_rerun_says_when_the_weights_it_starts_from_have_changed(tmp_path, capsys):
    fast = ["--model", "resnet8", "--data", "digits", "--input-size", "8", "--max-steps", "1"]
    first, tuned = tmp_path / "first", tmp_path / "tuned"
    assert main(["train", *fast, "--out", str(first)]) == 0
    assert main(["train", "--pretrained", str(first), *fast, "--out", str(tuned)]) == 0
    location = json.loads((tuned / "pretrained.json").read_text())["weights"]["location"]
    capsys.readouterr()
    rerun = ["train", "--config", str(tuned / "config.json"), "--out"]
    assert main([*rerun, str(tmp_path / "same")]) == 0
    assert "has changed since" not in capsys.readouterr().err
    # The first run trained again (other weights in the same file): the rerun says so.
    assert main(["train", *fast, "--seed", "1", "--out", str(tmp_path / "other")]) == 0
    (tmp_path / "other" / Path(location).name).replace(location)
    capsys.readouterr()
    assert main([*rerun, str(tmp_path / "changed")]) == 0
    err = capsys.readouterr().err
    assert f"{location} has changed since the run of {tuned / 'config.json'} started from it" in err
    assert "this run starts from the new weights, so it does not repeat that run" in err


def test_weights_holding_nan_are_refused_before_training_naming_the_file(tmp_path, capsys):
    # They were loaded, and the run's first check blamed its learning rate ("became NaN/inf
    # at epoch 1, step 0 ... lower --lr") and named a checkpoint that it never wrote.
    state = torchvision.models.resnet18().state_dict()
    state["layer2.1.conv2.weight"][0, 0, 0, 0] = float("nan")
    damaged = tmp_path / "damaged.pth"
    torch.save(state, damaged)
    says = rf"^{damaged}: its layer2.1.conv2.weight holds NaN or inf; the file is damaged"
    with pytest.raises(resnetlab.ResnetlabError, match=says):
        train(**SMALL, pretrained=str(damaged), max_steps=1, out=str(tmp_path / "run"))
    with pytest.raises(resnetlab.ResnetlabError, match=says):
        resnetlab.create_model("resnet18", pretrained=str(damaged))
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_run_from_weights_stopped_before_its_first_checkpoint_resumes_from_them(tmp_path):
    # Resumed with no checkpoint, it started again from step 0 with freshly drawn weights,
    # having read only the weights' record: the run finished as if fine-tuned. The weights:
    # a state dict as torchvision's are saved, of a 6-class resnet8, whose classifier the
    # run replaces (drawn afresh, as torchvision's 1,000-class one is).
    weights = tmp_path / "resnet8.pth"
    torch.save(resnetlab.create_model("resnet8", num_classes=6).state_dict(), weights)
    small = dict(SMALL, model="resnet8", input_size=8)
    whole = train(
        **small, pretrained=str(weights), max_steps=2, warmup_steps=1, out=str(tmp_path / "a")
    )
    assert json.loads((tmp_path / "a" / "pretrained.json").read_text())["head"] == "replaced"
    stopped = tmp_path / "b"  # as a run killed after writing these, before its checkpoint
    stopped.mkdir()
    for name in ("config.json", "pretrained.json"):
        text = (tmp_path / "a" / name).read_text()
        (stopped / name).write_text(text.replace(str(tmp_path / "a"), str(stopped)))
    resumed = train(resume=str(stopped))
    assert resumed.summary["status"] == "finished"
    for key, tensor in _state(whole.model).items():
        assert torch.equal(tensor, _state(resumed.model)[key]), key


def test_a_rerun_too_short_for_its_config_head_epochs_names_the_file(tmp_path, capsys):
    # config.json records the head epochs a fine-tuning run resolved (the default's 1 here):
    # rerun with --max-steps 2, the error named --head-epochs 1, a flag not given.
    data = write_tree(
        tmp_path / "photos", {c: [noise(i + 20 * k) for i in range(20)] for k, c in enumerate("ab")}
    )
    first = train(
        model="resnet8", data="digits", input_size=8, max_steps=1, out=str(tmp_path / "a")
    )
    tuned = train(
        pretrained=str(first.run_dir),
        data=str(data),
        epochs=2,
        batch_size=8,
        out=str(tmp_path / "b"),
    )
    config = tuned.run_dir / "config.json"
    assert json.loads(config.read_text())["head_epochs"] == 1
    capsys.readouterr()
    rerun = ["train", "--config", str(config), "--max-steps", "2"]
    assert main([*rerun, "--out", str(tmp_path / "c")]) == 2
    assert capsys.readouterr().err == (
        f"error: {config}: head_epochs 1 leaves no steps to train the rest of the network (2 "
        "steps in all); give --head-epochs 0, a longer run, or --freeze backbone to train only "
        "the classifier\n"
    )
    # Given on the command line, the flag is named as given.
    assert main([*rerun, "--head-epochs", "1", "--out", str(tmp_path / "d")]) == 2
    assert capsys.readouterr().err.startswith("error: --head-epochs 1 leaves no steps to train")
    assert main([*rerun, "--head-epochs", "0", "--out", str(tmp_path / "e")]) == 0
    # Resumed too short, the run's config.json is named, and the fix --resume takes: it
    # named --head-epochs 1 and said to lower it, which --resume refuses.
    capsys.readouterr()
    assert main(["train", "--resume", str(tuned.run_dir), "--max-steps", "2"]) == 2
    assert capsys.readouterr().err == (
        f"error: {config}: head_epochs 1 leaves no steps to train the rest of the network (2 "
        "steps in all), and --resume keeps them; give a longer run: --epochs N (more than 1) "
        "or --max-steps N (more than 4)\n"
    )
    # Too short in epochs, which the config's own check finds: it named --head-epochs 1 too.
    capsys.readouterr()
    shorter = ["train", "--config", str(config), "--epochs", "1", "--out", str(tmp_path / "f")]
    assert main(shorter) == 2
    assert capsys.readouterr().err == (
        f"error: {config}: head_epochs 1 leaves none of the 1 epoch to train the rest of the "
        "network; lower it or raise --epochs (to train only the classifier: --freeze backbone)\n"
    )


@pytest.mark.parametrize(
    ("at_step", "said"),
    [
        (3, "epochs 1-2: the classifier trains alone"),  # midway through epoch 1
        (5, "epoch 2: the classifier trains alone"),  # at the start of epoch 2
        (6, "epoch 2: the classifier trains alone"),  # midway through epoch 2
        (10, None),  # midway through epoch 3, past the head phase
    ],
)
def test_a_run_resumed_within_its_head_phase_says_the_epochs_left_of_it(
    tmp_path, monkeypatch, capsys, at_step, said
):
    # 4 steps per epoch; the head phase: epochs 1 and 2 (steps 1-8).
    tuned = dict(
        model="resnet8",
        data="digits",
        input_size=8,
        batch_size=64,
        subset=256,
        val_subset=64,
        freeze="layer1",
        head_epochs=2,
        epochs=3,
        out=str(tmp_path / "run"),
    )
    with warnings.catch_warnings():  # --freeze without --pretrained: said, and meant here
        warnings.simplefilter("ignore", SettingWarning)
        train_interrupted(monkeypatch, at_step, **tuned)
        capsys.readouterr()
        train(resume=tmp_path / "run")
    printed = capsys.readouterr()
    lines = [line for line in (printed.out + printed.err).splitlines() if ": the " in line]
    if said is None:  # nor the phase's end, said when the epoch began before the stop
        assert lines == []
    else:
        assert lines == [said, "epoch 3 on: the stages after the frozen ones train"]
