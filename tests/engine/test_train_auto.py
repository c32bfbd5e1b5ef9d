"""What a run does with a user's own image set: the auto recipe, stable first epochs,
early stopping, resizing that keeps the aspect ratio, a progress bar that moves."""

import csv
import json
import math
import shutil
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import resnetlab
from resnetlab.engine import TrainConfig, train
from resnetlab.engine.auto import LossGuard
from resnetlab.engine.config import AUTO_FIELDS
from resnetlab.engine.evaluate import EvalResult
from resnetlab.engine.predict import predict
from resnetlab.engine.report import RunLog, read_metrics
from resnetlab.engine.train import Trainer
from resnetlab.errors import DataWarning


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNETLAB_CACHE", str(tmp_path / "cache"))


def _colour_folder(root, per_class=24, size=(32, 32)):
    """Three classes of noisy images around a red, a green and a blue."""
    rng = np.random.default_rng(0)
    for k, colour in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200)]):
        (root / f"c{k}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.normal(colour, 60, (size[1], size[0], 3)).clip(0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / f"c{k}" / f"{i}.png")
    return root


def test_first_epoch_validation_loss_stays_near_the_training_loss(tmp_path, capsys):
    # 57 training images: the old default (modern: batch 128, no BN recalibration) makes one
    # step whose BN running statistics are 90% their initial values, and ResNet-18 then
    # validates at a loss of about 9 for a training loss of 1.2. The defaults stay close.
    data = str(_colour_folder(tmp_path / "colours"))
    common = dict(model="resnet18", data=data, input_size=32, epochs=1, log_every=1)
    new = train(**common, out=str(tmp_path / "new")).summary
    old = train(**common, recipe="modern", recalibrate_bn=False, out=str(tmp_path / "old"))
    old = old.summary
    bound = 2 * math.log(3)  # twice the loss of a uniform guess over 3 classes
    assert math.isfinite(new["final_val_loss"]) and new["final_val_loss"] < bound
    assert new["final_val_loss"] < 2 * new["final_train_loss"]
    assert old["final_val_loss"] > bound and old["final_val_loss"] > 2 * old["final_train_loss"]
    # Without recomputed statistics the epoch line says why the validation is off.
    assert "(BN running statistics still lag (step 1 of about 44)" in capsys.readouterr().err


def test_auto_prints_its_choices_and_saves_them(tmp_path, capsys):
    result = train(data="digits", input_size=8, subset=300, epochs=1, out=str(tmp_path / "r"))
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if line.startswith("recipe auto:"))
    assert "300 images at 8x8 -> batch 16" in line and "(1 epoch; given)" in line
    assert "warm-up 4 steps (a quarter of training)" in line
    config = TrainConfig.load(result.run_dir / "config.json")
    assert config["recipe"] == "auto" and all(config[k] is not None for k in AUTO_FIELDS)
    assert (config["batch_size"], config["crop_padding"]) == (16, 1)
    assert config["flip"] is False  # decided from the data (digits), and recorded
    assert config["lr"] == pytest.approx(0.1 * (16 / 128) ** 0.5, rel=1e-12)
    assert "BN running statistics still lag" not in err  # recomputed before validating


@pytest.mark.parametrize("recipe", ["course", "paper-cifar", "modern", "auto"])
def test_digits_are_never_flipped(recipe, tmp_path):
    trainer = Trainer(
        resnetlab.engine.resolve_config(
            recipe=recipe, data="digits", input_size=8, subset=100, out=str(tmp_path)
        )
    )
    assert trainer.train_loader.augment.flip is False
    assert trainer.train_loader.augment.crop_padding > 0  # other augmentation stays


def test_patience_stops_at_the_right_epoch(tmp_path, monkeypatch, capsys):
    # Validation accuracy per epoch: the best is epoch 2; epochs 3, 4 and 5 are no better.
    accuracies = iter([0.5, 0.7, 0.7, 0.6, 0.65, 0.9, 0.9])

    def scripted(model, loader, num_classes, autocast=None, observe=None):
        acc = next(accuracies)
        return EvalResult(1 - acc, acc, 10, torch.zeros(num_classes, num_classes, dtype=int))

    monkeypatch.setattr(sys.modules[Trainer.__module__], "evaluate_loader", scripted)
    result = train(
        model="resnet8",
        data="digits",
        input_size=8,
        subset=100,
        batch_size=50,  # 2 steps an epoch (its validations are scripted)
        epochs=7,
        patience=3,
        out=str(tmp_path / "r"),
    )
    summary = result.summary
    assert (summary["epochs"], summary["best_epoch"], summary["stopped_early"]) == (5, 2, True)
    assert "stopped early after epoch 5 of 7: no better validation accuracy for 3 epochs" in (
        capsys.readouterr().err
    )
    assert (
        resnetlab.load_model(result.run_dir / "best.safetensors").meta.training["best_epoch"] == 2
    )
    # Resumed as it is, it says why it stopped and what continues it, and changes nothing.
    kept = ("summary.json", "checkpoint.pt", "best.safetensors", "metrics.csv")
    before = {name: (result.run_dir / name).read_bytes() for name in kept}
    train(resume=result.run_dir)
    assert (
        "stopped early after epoch 5: no better accuracy for 3 epochs since epoch 2; add "
        "patience=N (more than 3) to train it further"
    ) in capsys.readouterr().err
    assert {name: (result.run_dir / name).read_bytes() for name in kept} == before
    # With more patience it goes on: epoch 6 is the new best.
    longer = train(resume=result.run_dir, patience=5).summary
    assert (longer["epochs"], longer["best_epoch"], longer["stopped_early"]) == (7, 6, False)
    # Without patience the same run goes on to the end.
    accuracies = iter([0.5, 0.7, 0.7, 0.6, 0.65, 0.9, 0.9])
    assert (
        train(
            model="resnet8",
            data="digits",
            input_size=8,
            subset=100,
            batch_size=50,
            epochs=7,
            out=str(tmp_path / "s"),
        ).summary["stopped_early"]
        is False
    )
    # Given more epochs and a patience already spent, it is not said to have stopped early
    capsys.readouterr()
    train(resume=tmp_path / "s", epochs=9, patience=1)
    assert (
        "ran its 7 epochs, with no better accuracy for the last 1 epoch (since epoch 6), so "
        "patience=1 would stop it at once; add patience=N (more than 1) to train it further"
    ) in capsys.readouterr().err


# Digits at 8x8: 40 training images, 2 steps of 20 an epoch; 100 validation images.
SHORT_EPOCHS = dict(
    model="resnet8", data="digits", input_size=8, subset=40, val_subset=100, batch_size=20
)


def _validated_epochs(run_dir):
    rows = [r for r in read_metrics(run_dir / "metrics.csv") if r["kind"] == "epoch"]
    assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1))  # a row every epoch
    return [r["epoch"] for r in rows if r["val_acc"] is not None]


def test_short_epochs_validate_every_few_and_say_so(tmp_path, capsys):
    # An epoch trains 40 images and a validation passes 140 forward (it scores 100, after
    # recomputing the BN statistics on all 40): every 4 epochs, but 3 to leave 10
    # validations, and the last.
    result = train(**SHORT_EPOCHS, epochs=31, out=str(tmp_path / "r"))
    assert (
        "validation every 3 epochs and after the last: an epoch trains 40 images, a "
        "validation scores 100 after recomputing BN statistics on 40 (val_every=1 validates "
        "every epoch)"
    ) in capsys.readouterr().err
    assert _validated_epochs(result.run_dir) == [*range(3, 31, 3), 31]
    assert result.summary["val_every"] == 3
    # Fewer than 10 validations that way: every epoch.
    result = train(**SHORT_EPOCHS, epochs=9, out=str(tmp_path / "s"))
    assert _validated_epochs(result.run_dir) == list(range(1, 10))
    assert "validation every" not in capsys.readouterr().err


def test_the_best_epoch_is_a_validated_one_and_patience_gets_its_validation(tmp_path, monkeypatch):
    # --val-every 3 with --patience 2: epochs 3 and 6 are validated, and so are 5 and 7,
    # where two epochs have passed since the best; 7 is no better than 5: the run stops.
    accuracies = iter([0.5, 0.7, 0.6, 0.6])
    validated = []

    def scripted(model, loader, num_classes, autocast=None, observe=None):
        acc = next(accuracies)
        return EvalResult(1 - acc, acc, 10, torch.zeros(num_classes, num_classes, dtype=int))

    monkeypatch.setattr(sys.modules[Trainer.__module__], "evaluate_loader", scripted)
    monkeypatch.setattr(
        Trainer, "_end_epoch", _recording(Trainer._end_epoch, validated), raising=True
    )
    result = train(**SHORT_EPOCHS, epochs=12, val_every=3, patience=2, out=str(tmp_path / "r"))
    summary = result.summary
    assert validated == [3, 5, 6, 7] == _validated_epochs(result.run_dir)
    assert (summary["epochs"], summary["best_epoch"], summary["stopped_early"]) == (7, 5, True)
    assert (
        resnetlab.load_model(result.run_dir / "best.safetensors").meta.training["best_epoch"] == 5
    )


def _recording(end_epoch, epochs):
    def wrapped(self, *args, **kwargs):
        end_epoch(self, *args, **kwargs)
        epochs.append(self.epoch)

    return wrapped


def test_a_run_stopped_between_validations_resumes_to_the_same_weights(tmp_path, monkeypatch):
    # Nothing is saved between validations; Ctrl-C after epoch 4 (of 7, validated at 3, 6
    # and 7) saves where the run is, and the resumed run ends as the uninterrupted one.
    common = dict(**SHORT_EPOCHS, epochs=7, val_every=3, deterministic=True)
    whole = train(**common, out=str(tmp_path / "whole"))
    unvalidated = Trainer._end_unvalidated_epoch

    def interrupted(self, train_stats):
        unvalidated(self, train_stats)
        if self.epoch == 4:
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(Trainer, "_end_unvalidated_epoch", interrupted)
        with pytest.raises(KeyboardInterrupt):
            train(**common, out=str(tmp_path / "cut"))
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["epoch"] == 4
    resumed = train(resume=tmp_path / "cut")
    assert _validated_epochs(resumed.run_dir) == [3, 6, 7]
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert resumed.summary["best_val_acc"] == whole.summary["best_val_acc"]


def _wide(path, centre=(200, 30, 30), sides=(30, 30, 200)):
    """A 2:1 image (64x32): red in the middle (a little wider than its central square),
    blue on the left and right."""
    pixels = np.zeros((32, 64, 3), dtype=np.uint8)
    pixels[:] = sides
    pixels[:, 12:52] = centre
    Image.fromarray(pixels).save(path)
    return path


def test_resize_crop_keeps_the_centre_of_a_wide_image_in_training_and_predict(tmp_path):
    root = tmp_path / "wide"
    for k, (centre, sides) in enumerate(
        [((200, 30, 30), (30, 30, 200)), ((30, 200, 30), (0,) * 3)]
    ):
        (root / f"c{k}").mkdir(parents=True)
        for i in range(6):
            _wide(root / f"c{k}" / f"{i}.png", centre, sides)
    data = resnetlab.data.load_dataset(str(root), image_size=16, val_split=0.5)  # crop: default
    images = data.train.images  # (N, 16, 16, 3): the centre only, the aspect ratio kept
    assert (images[data.train.labels == 0] == torch.tensor([200, 30, 30], dtype=torch.uint8)).all()
    squashed = resnetlab.data.load_dataset(
        str(root), image_size=16, val_split=0.5, resize="squash"
    ).train.images
    assert (squashed[..., 2] == 200).any()  # squashing keeps the blue sides, narrowed
    streamed = resnetlab.data.load_dataset(
        str(root), image_size=16, resize="crop", val_split=0.5, stream=True
    ).train
    loader = resnetlab.data.make_loader(
        streamed, train=False, batch_size=12, device="cpu", mean=(0, 0, 0), std=(1, 1, 1)
    )
    x, y = next(iter(loader))
    assert torch.allclose(x[y == 0][:, :, :, :], torch.tensor([200, 30, 30]).view(1, 3, 1, 1) / 255)

    result = train(
        model="resnet8", data=str(root), input_size=16, epochs=1, out=str(tmp_path / "r")
    )
    model_file = result.run_dir / "best.safetensors"
    assert json.loads((result.run_dir / "config.json").read_text())["resize"] == "crop"
    assert resnetlab.load_model(model_file).meta.resize == "crop"
    # predict cuts the same centre: a wide image and its centre alone give the same answer.
    wide = _wide(tmp_path / "wide.png")
    centre = tmp_path / "centre.png"
    Image.open(wide).crop((16, 0, 48, 32)).save(centre)
    a, b = predict(model_file, [wide, centre], top_k=2)
    assert dict(a.top) == pytest.approx(dict(b.top), abs=1e-6)


def test_save_model_records_crop_as_train_does(tmp_path):
    model = resnetlab.create_model("resnet8", num_classes=2)
    meta = resnetlab.save_model(model, tmp_path / "m.safetensors", input_size=16)
    assert meta.resize == "crop"
    assert resnetlab.read_model_meta(tmp_path / "m.safetensors").resize == "crop"


def test_a_model_file_without_resize_squashes(tmp_path):
    model = resnetlab.create_model("resnet8", num_classes=2)
    old = tmp_path / "old.safetensors"
    meta = resnetlab.save_model(model, old, input_size=16, resize="squash")
    # Files written before the key existed: the metadata has no "resize" at all.
    text = json.loads(meta.to_json())
    del text["resize"]
    assert resnetlab.models.files.ModelMeta.from_json(json.dumps(text)).resize == "squash"
    wide, centre = _wide(tmp_path / "wide.png"), tmp_path / "centre.png"
    Image.open(wide).crop((16, 0, 48, 32)).save(centre)
    a, b = predict(old, [wide, centre], top_k=2)
    assert dict(a.top) != pytest.approx(dict(b.top), abs=1e-4)  # squashed: blue sides in view


class _Bar:
    def __init__(self):
        self.completed = []

    def update(self, task, completed):
        self.completed.append(completed)

    def stop(self):
        pass


def test_the_progress_bar_moves_on_a_clock_not_on_log_every(tmp_path):
    now = [0.0]
    log = RunLog(tmp_path, epochs=1, clock=lambda: now[0])
    log.progress_bar = _Bar()
    for batch in range(1, 11):  # a step every 0.3 s: the bar moves at least once a second
        now[0] += 0.3
        log.tick(batch)
    moves = log.progress_bar.completed
    assert moves[-1] >= 8 and all(b - a <= 4 for a, b in zip([0, *moves], moves, strict=False))
    log.progress_bar = _Bar()
    for batch in range(1, 1001):  # fast steps: at most BAR_UPDATES_PER_S moves a second
        now[0] += 0.001
        log.tick(batch)
    assert 3 <= len(log.progress_bar.completed) <= 5
    log.close()


def test_the_progress_bar_of_an_epoch_that_max_steps_cuts_short_counts_its_own_steps(
    tmp_path, monkeypatch
):
    # 18 training images at batch 8: 2 steps an epoch; --max-steps 3 trains 2, then 1 of
    # the next epoch, whose bar must end full rather than at 1/2 with time still "left".
    totals = []
    begin = RunLog.epoch_begin

    def recorded(self, epoch, steps, done):
        totals.append((epoch, steps, done))
        return begin(self, epoch, steps, done)

    monkeypatch.setattr(RunLog, "epoch_begin", recorded)
    data = _colour_folder(tmp_path / "photos", per_class=8, size=(8, 8))
    train(
        model="resnet8",
        data=str(data),
        input_size=8,
        batch_size=8,
        max_steps=3,
        out=str(tmp_path / "run"),
    )
    assert totals == [(0, 2, 0), (1, 1, 0)]


def test_copies_in_validation_are_counted_among_the_images_that_validate(tmp_path):
    # Every image twice: most validation images have a twin in training. With
    # --val-subset 3, the warning counts copies among the 3 that validate, not among all 6.
    data = _colour_folder(tmp_path / "photos", per_class=6, size=(8, 8))
    for image in list(data.rglob("*.png")):
        shutil.copy(image, image.with_name(f"copy-{image.name}"))
    with pytest.warns(DataWarning) as caught:
        train(
            model="resnet8",
            data=str(data),
            input_size=8,
            max_steps=1,
            val_subset=3,
            out=str(tmp_path / "run"),
        )
    copies = [str(w.message) for w in caught if "a copy of a training image" in str(w.message)]
    copies += [str(w.message) for w in caught if "copies of training images" in str(w.message)]
    assert len(copies) == 1 and " of the 3 validation images " in copies[0]


def test_the_epoch_line_says_how_long_the_run_has_left(tmp_path, capsys):
    now = [0.0]
    log = RunLog(tmp_path, epochs=77, clock=lambda: now[0])
    row = dict(train_loss=1.0, train_acc=0.5, lr=0.1, images_per_s=18.0, step=1, batch=1)
    lines = []
    for epoch, seconds in [(1, 12.0), (2, 12.0), (76, 12.0 * 74), (77, 12.0)]:
        log.epoch_begin(epoch - 1, steps=13, done=0)
        now[0] += seconds
        log.epoch_end({**row, "epoch": epoch})
        lines.append(capsys.readouterr().err.strip())
    assert lines[0].endswith("18 img/s  about 15 min left")  # 76 epochs of 12 s
    assert lines[1].endswith("about 15 min left")
    assert lines[2].endswith("18 img/s")  # under a minute: the bar's own estimate is enough
    assert lines[3].endswith("18 img/s")
    log.close()


@pytest.mark.slow
def test_the_seed_model_on_signs_is_not_at_chance_after_two_epochs(shared_data, tmp_path):
    # Keras's BN momentum (0.99) leaves the running statistics near their initial values
    # for hundreds of steps; recomputed before validation, the accuracy shows the training.
    signs = shared_data / "signs"
    summary = train(
        model="resnet50_keras",
        data=str(signs / "train_signs.h5"),
        val_data=str(signs / "test_signs.h5"),
        epochs=2,
        out=str(tmp_path / "run"),
    ).summary
    assert summary["final_val_acc"] > 0.4  # chance: 1/6
    assert summary["final_val_loss"] < 2 * summary["final_train_loss"]


def test_the_loss_guard_halves_the_auto_rate_and_the_run_keeps_it(tmp_path, monkeypatch, capsys):
    # The guard's verdicts are scripted here (its rule: test_auto.py): halve at the 3rd step.
    seen = []

    def scripted(guard, loss):
        seen.append(loss)
        if len(seen) != 3:
            return False
        guard.halvings, guard.start, guard.average = guard.halvings + 1, 2.0, 3.2
        return True

    monkeypatch.setattr(LossGuard, "update", scripted)
    common = dict(data="digits", input_size=8, subset=300, epochs=2)
    result = train(**common, out=str(tmp_path / "auto"))
    # 300 images: batch 16, 18 steps an epoch, a warm-up of 9; watched: 18 steps.
    assert len(seen) == 18 and all(0 < loss < 10 for loss in seen)  # each step's mean loss
    chosen = 0.1 * (16 / 128) ** 0.5
    assert TrainConfig.load(result.run_dir / "config.json")["lr"] == pytest.approx(chosen / 2)
    err = capsys.readouterr().err
    assert "the training loss rose to 3.20, 1.6x its start (2.00)" in err
    assert f"auto halves the peak rate to {chosen / 2:.3g} (lr sets it)" in err
    with open(result.run_dir / "metrics.csv") as f:
        last_epoch = [row for row in csv.DictReader(f) if row["kind"] == "epoch"][-1]
    assert float(last_epoch["lr"]) < chosen / 2 * 0.5  # the cosine's end, below the new peak
    # A resumed run goes on with the guard where it was.
    values = TrainConfig.load(result.run_dir / "config.json")
    resumed = Trainer(TrainConfig(**values), run_dir=result.run_dir, resume=True)
    assert resumed.guard.halvings == 1 and resumed.config.lr == pytest.approx(chosen / 2)
    # Killed after a halving was written to config.json but before the next checkpoint:
    # the checkpoint's rate goes with the checkpoint's guard.
    values["lr"] = chosen / 4
    resumed = Trainer(TrainConfig(**values), run_dir=result.run_dir, resume=True)
    assert resumed.config.lr == pytest.approx(chosen / 2)

    # A rate given with --lr is the user's: nothing watches its 4 steps (the guard above
    # halved at the 3rd).
    seen.clear()
    train(data="digits", input_size=8, subset=300, lr=chosen, max_steps=4, out=str(tmp_path / "g"))
    assert seen == [] and "auto halves the peak rate" not in capsys.readouterr().err
