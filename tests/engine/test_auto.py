import dataclasses
import math

import pytest

from resnetlab.engine import resolve_config
from resnetlab.engine.auto import (
    GUARD_MAX_HALVINGS,
    GUARD_START_STEPS,
    LossGuard,
    apply_auto,
    apply_finetune,
    auto_recipe,
    finetune_length,
    is_digit_like,
    validation_interval,
)

# (images, image size, classes, model)
#   -> (batch, optimizer, lr, weight decay, epochs, steps, warm-up, padding, jitter)
TABLE = [
    # A hundred photos: batch 16 (at most half the images); 1,000 steps take 167 epochs.
    # An ImageNet-style network on a small set: Adam, 1e-3 scaled to the batch.
    ((100, 64, 5, "resnet18"), (16, "adam", 0.000707, 0.0, 167, 1002, 100, 8, 0.0)),
    # CIFAR-sized images, a few hundred of them: pad-and-crop, at least 1,000 steps; a
    # CIFAR-style network: SGD.
    ((500, 32, 10, "resnet20"), (16, "sgd", 0.035355, 5e-4, 33, 1023, 100, 4, 0.0)),
    # The SIGNS training file (1,080 photos at 64x64) with the course's model: the course's
    # optimizer, rate and batch.
    ((1080, 64, 6, "resnet50_keras"), (32, "adam", 0.001, 0.0, 31, 1023, 100, 8, 0.0)),
    # The 1,651 hand photos at 64x64: 30 epochs make more than 1,000 steps.
    ((1651, 64, 10, "resnet18"), (32, "adam", 0.001, 0.0, 30, 1530, 100, 8, 0.0)),
    # Photos at 128 px and up have the detail for scale/aspect jitter.
    ((1651, 128, 10, "resnet18"), (32, "adam", 0.001, 0.0, 30, 1530, 100, 0, 0.35)),
    # digits at 8x8: one pixel of padding.
    ((1438, 8, 10, "resnet20"), (32, "sgd", 0.05, 5e-4, 30, 1320, 100, 1, 0.0)),
    ((5000, 32, 10, "resnet20"), (64, "sgd", 0.0707, 5e-4, 30, 2340, 117, 4, 0.0)),
    # Adam below 5,000 images, SGD from there on, for the same network.
    ((4999, 64, 10, "resnet18"), (64, "adam", 0.001414, 0.0, 30, 2340, 117, 8, 0.0)),
    ((5000, 64, 10, "resnet18"), (64, "sgd", 0.0707, 5e-4, 30, 2340, 117, 8, 0.0)),
    # CIFAR-10: batch 256 and the linearly scaled rate.
    ((50_000, 32, 10, "resnet56"), (256, "sgd", 0.1414, 5e-4, 30, 5850, 292, 4, 0.0)),
    # ImageNet-sized: SGD; the batch stops at 256; 30 epochs; warm-up 5% (1.5 epochs).
    ((1_000_000, 224, 1000, "resnet50"), (256, "sgd", 0.1414, 5e-4, 30, 117_180, 5859, 0, 0.35)),
    # A dozen images still make batches for two steps an epoch, for at most 200 epochs.
    ((12, 32, 2, "resnet20"), (4, "sgd", 0.017678, 5e-4, 200, 600, 100, 4, 0.0)),
]


@pytest.mark.parametrize("given, expected", TABLE)
def test_auto_recipe_is_a_function_of_the_data_and_model(given, expected):
    r = auto_recipe(*given)
    assert r.optimizer == expected[1]
    numbers = (r.batch_size, r.lr, r.weight_decay, r.epochs, r.steps, r.warmup_steps)
    assert numbers == pytest.approx((expected[0], *expected[2:7]), rel=1e-3)
    assert (r.crop_padding, r.scale_jitter) == expected[7:]
    assert r.steps == r.epochs * (given[0] // r.batch_size)  # whole epochs, last batch dropped
    assert r.warmup_steps <= r.steps // 4


def test_under_torchrun_the_batch_is_shared_and_the_rate_follows_the_total():
    one, four = (
        auto_recipe(50_000, 32, 10, "resnet56"),
        auto_recipe(50_000, 32, 10, "resnet56", world_size=4),
    )
    assert (four.batch_size, four.lr, four.steps) == (64, one.lr, one.steps)


def _apply(num_images=1651, image_size=64, **flags):
    return apply_auto(
        resolve_config(**flags), num_images=num_images, image_size=image_size, num_classes=10
    )


def test_apply_auto_fills_what_was_left_open_and_says_why():
    config, line = _apply()
    assert config.unset() == []
    assert (config.batch_size, config.lr, config.epochs, config.warmup_steps) == (
        32,
        0.05,
        30,
        100,
    )
    assert (config.crop_padding, config.scale_jitter, config.warmup_epochs) == (8, 0.0, 0.0)
    assert line == (
        "recipe auto: 1,651 images at 64x64 -> batch 32 (about the square root of the images), "
        "SGD (a CIFAR-style network) lr 0.05 (0.1 x sqrt(batch / 128)), 1,530 steps "
        "(30 epochs; 30 epochs, at least 1,000 steps), warm-up 100 steps (5%, at least 100), "
        "pad-8 crops (64 px images)"
    )
    config, line = _apply(image_size=160)
    assert (config.crop_padding, config.scale_jitter) == (0, 0.35)
    assert line.endswith("scale/aspect jitter, crops of 35% to all of the area (160 px images)")


@pytest.mark.parametrize(
    ("num_images", "rule"),
    [
        (40, "batch 16 (the smallest the recipe takes, 16)"),  # sqrt 6.3
        (1_000_000, "batch 256 (the largest the recipe takes, 256)"),  # sqrt 1,000
        (20, "batch 8 (at most half the images, so that an epoch has two steps)"),
    ],
)
def test_the_batch_line_names_the_rule_that_set_it(num_images, rule):
    _, line = _apply(num_images=num_images)
    assert rule in line


def test_the_length_names_the_epoch_cap_where_it_leaves_fewer_steps_than_the_floor():
    # 40 images make 2 steps an epoch: 200 epochs, the most the recipe takes, are 400 steps.
    config, line = _apply(num_images=40)
    assert config.epochs == 200
    assert "400 steps (200 epochs; at least 1,000 steps, but at most 200 epochs)" in line


def test_the_line_gives_the_epochs_that_max_steps_makes_even_beside_epochs():
    # 1,651 images at batch 32 make 51 steps an epoch; --max-steps sets the length.
    _, line = _apply(max_steps=200, epochs=2)
    assert "200 steps (4 epochs; given)" in line


@pytest.mark.parametrize(
    ("max_steps", "warmup"),
    [
        (20, "warm-up 5 steps (a quarter of training)"),
        *((n, "warm-up 1 step (a quarter of training, at least 1 step)") for n in (1, 2, 3)),
    ],
)
def test_a_short_runs_warmup_names_the_rule_that_set_it(max_steps, warmup):
    _, line = _apply(max_steps=max_steps)
    assert warmup in line


def test_under_torchrun_the_line_gives_the_batch_per_process_and_in_all():
    config, line = apply_auto(
        resolve_config(), num_images=40, image_size=64, num_classes=10, world_size=2
    )
    assert config.batch_size == 8
    assert "batch 8 per process, 16 in all (the smallest the recipe takes, 16)" in line
    assert "lr 0.0354 (0.1 x sqrt(total batch / 128))" in line


def test_explicit_values_win():
    config, line = _apply(epochs=15)
    assert (config.epochs, config.warmup_steps) == (15, 100)  # 15 x 51 steps: 765, 5% < 100
    assert "765 steps (15 epochs; given)" in line
    config, line = _apply(max_steps=300)
    assert (config.max_steps, config.epochs, config.warmup_steps) == (300, 6, 75)  # a quarter
    config, line = _apply(batch_size=64)
    assert (config.batch_size, config.lr) == (64, pytest.approx(0.0707, abs=1e-4))
    assert "batch 64 (given), SGD (a CIFAR-style network) lr 0.0707 (0.1 x sqrt(" in line
    config, line = _apply(lr=0.3, warmup_epochs=2)
    assert (config.lr, config.warmup_epochs, config.warmup_steps) == (0.3, 2, None)
    assert "warm-up 2 epochs (given)" in line
    assert "warm-up 1 epoch (given)" in _apply(warmup_epochs=1)[1]
    # A batch larger than the images trains on all 100 at each step: the rate is theirs.
    config, line = _apply(num_images=100, batch_size=10**9, max_steps=2)
    assert (config.batch_size, config.lr) == (10**9, pytest.approx(0.1 * (100 / 128) ** 0.5))
    assert "lr 0.0884 (0.1 x sqrt(images / 128), fewer than the batch)" in line
    config, line = _apply(crop_padding=2)  # one augmentation given: the other stays off
    assert (config.crop_padding, config.scale_jitter) == (2, 0.0)
    assert "pad-2 crops (given)" in line
    config, _ = _apply(image_size=32, scale_jitter=0.5)
    assert (config.crop_padding, config.scale_jitter) == (0, 0.5)


def test_the_optimizer_follows_the_network_and_the_set_size_unless_given():
    config, line = _apply(model="resnet18")
    assert (config.optimizer, config.lr, config.weight_decay) == ("adam", 0.001, 0.0)
    assert (
        "batch 32 (about the square root of the images), Adam (an ImageNet-style network, "
        "under 5,000 images) lr 0.001 (0.001 x sqrt(batch / 32)), "
    ) in line
    config, line = _apply(model="resnet18", num_images=20_000)
    assert (config.optimizer, config.batch_size, config.weight_decay) == ("sgd", 128, 5e-4)
    assert "SGD (5,000 images or more) lr 0.1 (0.1 x sqrt(batch / 128))" in line
    # A given optimizer takes its own rate and weight decay; a given rate or decay stays.
    config, line = _apply(model="resnet18", optimizer="sgd")
    assert (config.optimizer, config.lr, config.weight_decay) == ("sgd", 0.05, 5e-4)
    assert "SGD (given) lr 0.05 (0.1 x sqrt(batch / 128))" in line
    config, _ = _apply(optimizer="adamw", batch_size=128)
    assert (config.optimizer, config.lr, config.weight_decay) == ("adamw", 0.002, 0.01)
    config, line = _apply(model="resnet18", lr=0.01, weight_decay=1e-4)
    assert (config.optimizer, config.lr, config.weight_decay) == ("adam", 0.01, 1e-4)
    assert "Adam (an ImageNet-style network, under 5,000 images) lr 0.01 (given)" in line


@pytest.mark.parametrize(
    "data, classes, gray, expected",
    [
        ("digits", [str(i) for i in range(10)], True, True),
        ("mnist/", [str(i) for i in range(10)], True, True),
        ("svhn/", [str(i) for i in range(10)], False, True),  # digits in colour
        ("letters/", list("ABCDEFGHIJ"), True, True),  # grayscale characters
        ("signs.h5", [str(i) for i in range(6)], False, False),  # hand signs flip
        ("photos/", list("ABCDEFGHIJ"), False, False),  # colour photos with short names
        ("pets/", ["cat", "dog"], True, False),
    ],
)
def test_digit_like_data(data, classes, gray, expected):
    mean, std = ([0.5] * 3, [0.2] * 3) if gray else ([0.5, 0.4, 0.3], [0.2, 0.2, 0.25])
    assert is_digit_like(data, classes, mean, std) is expected


def _halvings(losses, classes=6):
    """The (0-based) steps at which a guard fed ``losses`` asks for half the rate."""
    guard = LossGuard(classes, window=len(losses))
    return [step for step, loss in enumerate(losses) if guard.watching(step) and guard.update(loss)]


START = [1.8] * GUARD_START_STEPS  # about a uniform guess over 6 classes (1.79)


@pytest.mark.parametrize(
    ("losses", "expected", "why"),
    [
        (START + [1.7 - 0.01 * i for i in range(100)], [], "a loss that falls"),
        (START + ([1.8] * 9 + [5.0]) * 10, [], "single spikes: the moving average absorbs them"),
        (START + [2.7] * 60, [], "1.5x its start, as ResNet-18's rose in a short warm-up"),
        # The average passes 1.75 x 1.8 = 3.15 on the 7th step at 4.5 (0-based step 11).
        (START + [4.5] * 9 + [1.5] * 50, [11], "a climb, then the lower rate brings it down"),
        (START + [4.5] * 30, [11, 32], "still high after the patience: halved again"),
        (START + [4.5] * 200, [11, 32, 53, 74], f"at most {GUARD_MAX_HALVINGS} times"),
        # Starting below a uniform guess (ln 10 = 2.30): the start is 2.30, not 0.5.
        ([0.5] * GUARD_START_STEPS + [3.5] * 60, [], "a start under a uniform guess's loss"),
        ([5.0] * GUARD_START_STEPS + [6.0] * 60, [], "a poor initial model is its own start"),
        (START + [math.nan] * 30, [], "NaN is the divergence check's, not the guard's"),
    ],
)
def test_the_loss_guard_halves_the_rate_when_the_loss_climbs(losses, expected, why):
    classes = 10 if losses[0] == 0.5 else 6
    assert _halvings(losses, classes) == expected, why


def test_the_loss_guard_watches_its_window_and_resumes_where_it_was():
    guard = LossGuard(6, window=200)
    assert guard.watching(0) and guard.watching(199) and not guard.watching(200)
    for loss in START + [4.5] * 7:
        guard.update(loss)
    assert guard.halvings == 1
    again = LossGuard(6, window=0)
    again.load_state_dict(guard.state_dict())
    assert vars(again) == vars(guard) and again.watching(150)
    guard.halvings = GUARD_MAX_HALVINGS
    assert not guard.watching(0)
    for damaged in (None, [], {**guard.state_dict(), "wait": "soon"}, {"window": 3}):
        with pytest.raises(ValueError, match="loss guard state is damaged"):
            again.load_state_dict(damaged)


# finetune: training images -> (batch, epochs); batch 32 halved until an epoch has two
# steps, 10 epochs or as many as make 300 steps, at most 200.
FINETUNE_TABLE = [
    (1, (1, 200)),  # one image: one step an epoch, the epoch cap
    (10, (4, 150)),  # 2 steps an epoch
    (50, (16, 100)),  # 3 steps an epoch: 100 epochs (10 would be 30 steps)
    (64, (32, 150)),
    (100, (32, 100)),
    (864, (32, 12)),  # 27 steps an epoch: 12 epochs make 324 steps
    (1_000, (32, 10)),  # 31 steps an epoch: 10 epochs make 310
    (1_000_000, (32, 10)),
]


@pytest.mark.parametrize(("images", "expected"), FINETUNE_TABLE)
def test_finetune_length_is_a_function_of_the_image_count(images, expected):
    assert finetune_length(images) == expected


# (training images an epoch, validation images, epochs[, BN recalibration images]) ->
# validate every this many epochs: every epoch unless a validation passes more images
# forward than an epoch trains; then every as many epochs as train that many, leaving at
# least 10 validations.
VALIDATION_TABLE = [
    ((1_000, 250, 30), 1),  # the usual case: a held-out fifth
    ((1_000, 250, 30, 320), 1),  # with BN statistics recomputed on 10 batches of 32
    ((160, 40, 60, 160), 2),  # 200 photos fine-tuned: recalibrated on all 160, scored on 40
    ((160, 40, 60, 0), 1),  # the same without BN layers to recalibrate
    ((48, 216, 100, 48), 6),
    ((250, 250, 30), 1),
    ((48, 216, 100), 5),  # 60 photos fine-tuned, batch 16: 3 steps of 16 an epoch
    ((160, 216, 60), 2),
    ((48, 216, 20), 2),  # 20 epochs: every 2, not 5, to leave 10 validations
    ((48, 216, 9), 1),  # fewer than 10 epochs: every one
    ((1, 1_000_000, 200), 20),
    ((100, 0, 50), 1),  # no validation set
]


@pytest.mark.parametrize(("counts", "expected"), VALIDATION_TABLE)
def test_validation_interval_is_a_function_of_the_image_counts(counts, expected):
    assert validation_interval(*counts) == expected


def test_finetune_fills_only_the_batch_and_length_and_says_why():
    config = resolve_config(pretrained="torchvision", data="digits")
    assert config.recipe == "finetune" and config.unset() == ["batch_size", "epochs"]
    filled, line = apply_finetune(config, num_images=50)
    assert (filled.batch_size, filled.epochs, filled.lr) == (16, 100, config.lr)
    assert line == (
        "recipe finetune: 50 images -> batch 16 (the recipe's 32, halved until an epoch has "
        "two steps), "
        "300 steps (100 epochs; 10 epochs, at least 300 steps)"
    )
    # Given values win; the floor counts a given batch's steps.
    filled, line = apply_finetune(dataclasses.replace(config, batch_size=8), num_images=50)
    assert (filled.batch_size, filled.epochs) == (8, 50)
    assert "batch 8 (given), 300 steps (50 epochs;" in line
    filled, line = apply_finetune(dataclasses.replace(config, batch_size=32), num_images=50)
    assert filled.epochs == 200  # one step an epoch: the cap, short of the floor
    assert line.endswith("200 steps (200 epochs; at least 300 steps, but at most 200 epochs)")
    filled, line = apply_finetune(dataclasses.replace(config, epochs=3), num_images=50)
    assert (filled.batch_size, filled.epochs) == (16, 3)
    assert line.endswith("9 steps (3 epochs; given)")
    filled, _ = apply_finetune(dataclasses.replace(config, max_steps=20), num_images=50)
    assert filled.epochs == 7
    # Under torchrun the batch is per process and the images are shared.
    filled, line = apply_finetune(config, num_images=200, world_size=2)
    assert (filled.batch_size, filled.epochs) == (32, 100)
    assert "batch 32 per process, 64 in all (the recipe's 32)" in line


def test_the_recipe_lines_count_one_image_in_the_singular():
    _, line = _apply(num_images=1)
    assert line.startswith("recipe auto: 1 image at 64x64 -> batch 1 ")
    _, line = apply_finetune(resolve_config(recipe="finetune"), num_images=1)
    assert line.startswith("recipe finetune: 1 image -> batch 1 ")
