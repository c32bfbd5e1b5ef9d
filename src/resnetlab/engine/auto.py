"""The ``auto`` recipe: training settings derived from the data and the model.

Named recipes were shaped on one kind of data (``paper-cifar`` on CIFAR's 50,000 images,
``course`` on SIGNS); ``auto`` decides from what a run actually trains on:

- Batch size: about the square root of the number of training images, a power of two
  between 16 and 256. Small sets then still take tens of steps per epoch.
- Optimizer (``auto_optimizer``): Adam for the ImageNet-style networks (and the course's
  Keras model) on fewer than ``ADAM_BELOW`` images, SGD with Nesterov momentum otherwise.
  On small sets of 64 px photos Adam at 1e-3, the course's optimizer, trained ResNet-18 3
  points better than SGD on CIFAR-10 images and as well or better elsewhere; on the CIFAR networks
  SGD was as good or better, and SGD is what large data sets are trained with
  (docs/defaults.md).
- Learning rate: ``BASE_LR`` (SGD) or ``ADAM_LR`` (Adam) at a batch of ``BASE_BATCH`` or
  ``ADAM_BATCH``, scaled with the square root of the batch (``auto_lr``; Krizhevsky 2014,
  Hoffer et al. 2017, Malladi et al. 2022 for Adam): small batches of a small set get
  relatively more, which measured 3 points better on 500 CIFAR-10 images than the linear
  rule (docs/defaults.md). Weight decay by optimizer (``WEIGHT_DECAY``).
- Length: ``EPOCHS`` epochs, but never fewer than ``MIN_STEPS`` optimizer steps (nor more
  than ``MAX_EPOCHS`` epochs): a thousand images make 30 steps an epoch, and what a
  network needs to converge is steps, not passes over the data.
- Warm-up: counted in steps, ``WARMUP_FRACTION`` of training but at least
  ``MIN_WARMUP_STEPS`` (and at most a quarter of it), so that small sets do not take the
  full rate after a dozen steps.
- Augmentation by image size: pad-and-crop (``size / 8`` pixels) below ``JITTER_FROM``
  pixels, scale and aspect jitter (random-resized crops of ``JITTER_MIN_AREA`` to all of
  the area) from there on, where a photo has the detail to survive it. At 64 px the
  jitter cost 3.3 points on CIFAR-10 images against pad-and-crop, and on the SIGNS
  photos the two were within three test images of each other (docs/defaults.md).

- A learning rate the model tolerates: the rate above suits the networks it was measured
  on, but deeper ones without zero-initialised residual branches (ResNet-50, the Keras
  ResNet50) blew up under it on 1,080 SIGNS photos, their training loss three times that
  of a uniform guess and their accuracy at chance for epochs. So while the rate rises and
  for as long again (``LossGuard``), a training loss that climbs to ``GUARD_FACTOR`` times
  where it started halves the rate for the rest of the run; a rate given with ``--lr`` is
  left alone.

``auto_recipe`` is a pure function of (images, image size, classes, model); ``apply_auto``
fills in what the user left to it, keeping every value given explicitly (``--epochs``,
``--max-steps``, ``--batch-size``...). Flips are decided for every recipe by
``is_digit_like``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..models.registry import model_info
from .config import AUTO_FIELDS, WEIGHT_DECAY, TrainConfig

BASE_LR, BASE_BATCH = 0.1, 128  # SGD
ADAM_LR, ADAM_BATCH = 1e-3, 32  # Adam and AdamW: the course's rate at the course's batch
ADAM_BELOW = 5000  # images: Adam for ImageNet-style networks on sets smaller than this
ADAM_FAMILIES = ("imagenet", "keras")
OPTIMIZER_NAMES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}
MIN_BATCH, MAX_BATCH = 16, 256
EPOCHS = 30
MIN_STEPS = 1000
MAX_EPOCHS = 200
WARMUP_FRACTION = 0.05
MIN_WARMUP_STEPS = 100
JITTER_FROM = 128  # pixels: scale/aspect jitter from this input size up, pad-and-crop below
JITTER_MIN_AREA = 0.35
# The finetune recipe's length and batch (finetune_length).
FINETUNE_BATCH = 32
FINETUNE_EPOCHS = 10
FINETUNE_MIN_STEPS = 300
MIN_VALIDATIONS = 10  # a validation interval leaves at least this many for picking the best
GUARD_FACTOR = 1.75  # a smoothed training loss this many times its start is a blow-up
GUARD_START_STEPS = 5  # the first steps' mean loss is the start (at least a uniform guess's)
GUARD_SMOOTHING = 0.1  # the weight of each step in the moving average of the loss
GUARD_PATIENCE = 20  # steps at a lowered rate before the guard may lower it again
GUARD_MAX_HALVINGS = 4


@dataclass(frozen=True)
class AutoRecipe:
    """What ``auto`` chose, with the number of steps it makes."""

    batch_size: int
    optimizer: str
    lr: float
    weight_decay: float
    epochs: int
    steps: int
    warmup_steps: int
    crop_padding: int
    scale_jitter: float


def auto_batch_size(num_images: int) -> int:
    """About the square root of ``num_images``: a power of two in [16, 256], at most half the
    images (so that an epoch has two steps)."""
    return _batch_and_rule(num_images)[0]


def _batch_and_rule(num_images: int) -> tuple[int, str]:
    """``auto_batch_size`` and the rule that set it, in words."""
    batch = 2 ** round(math.log2(math.sqrt(max(num_images, 1))))
    rule = "about the square root of the images"
    if batch < MIN_BATCH:
        batch, rule = MIN_BATCH, f"the smallest the recipe takes, {MIN_BATCH}"
    elif batch > MAX_BATCH:
        batch, rule = MAX_BATCH, f"the largest the recipe takes, {MAX_BATCH}"
    if batch > 1 and batch > num_images // 2:
        rule = "at most half the images, so that an epoch has two steps"
        while batch > 1 and batch > num_images // 2:
            batch //= 2
    return batch, rule


def imagenet_style(model: str) -> bool:
    """Whether ``model`` is one of the ImageNet-style networks (or the course's Keras model)."""
    return model_info(model).family in ADAM_FAMILIES


def auto_optimizer(num_images: int, model: str) -> str:
    """``"adam"`` for an ImageNet-style network on fewer than ``ADAM_BELOW`` images,
    ``"sgd"`` otherwise."""
    return "adam" if num_images < ADAM_BELOW and imagenet_style(model) else "sgd"


def auto_lr(batch_size: int, optimizer: str = "sgd") -> float:
    """The rate at ``batch_size``, scaled from the optimizer's base with the square root of
    the batch. SGD: ``BASE_LR * sqrt(batch_size / BASE_BATCH)``, 0.05 at 32, 0.1 at 128,
    0.14 at 256. Adam(W): ``ADAM_LR * sqrt(batch_size / ADAM_BATCH)``, 1e-3 at 32."""
    if optimizer == "sgd":
        return BASE_LR * math.sqrt(batch_size / BASE_BATCH)
    return ADAM_LR * math.sqrt(batch_size / ADAM_BATCH)


def auto_warmup(total_steps: int) -> int:
    """``WARMUP_FRACTION`` of training, at least ``MIN_WARMUP_STEPS``, at most a quarter."""
    warmup = max(MIN_WARMUP_STEPS, round(WARMUP_FRACTION * total_steps))
    return max(1, min(warmup, total_steps // 4))


def auto_augmentation(image_size: int) -> tuple[int, float]:
    """``(crop_padding, scale_jitter)`` for images of ``image_size`` pixels."""
    if image_size >= JITTER_FROM:
        return 0, JITTER_MIN_AREA
    return max(1, image_size // 8), 0.0


def auto_epochs(steps_per_epoch: int) -> int:
    """``EPOCHS``, or more to make ``MIN_STEPS`` steps, but at most ``MAX_EPOCHS``."""
    return min(MAX_EPOCHS, max(EPOCHS, math.ceil(MIN_STEPS / max(1, steps_per_epoch))))


def auto_recipe(
    num_images: int, image_size: int, num_classes: int, model: str, *, world_size: int = 1
) -> AutoRecipe:
    """The ``auto`` recipe's choices for ``num_images`` training images of ``image_size``
    pixels in ``num_classes`` classes, trained with ``model``.

    The optimizer depends on the model's family (what it was measured on:
    docs/defaults.md); ``num_classes`` is in the signature so that the choice remains a
    function of everything it may depend on.

    Args:
        num_images: training images (after any held-out split or subset).
        image_size: the side the model sees.
        num_classes: classes of the classifier.
        model: a registered model name.
        world_size: processes under torchrun; the batch size is per process, and the
            learning rate follows the total batch.
    """
    del num_classes  # see the docstring: no choice depends on it today
    optimizer = auto_optimizer(num_images, model)
    batch = max(1, auto_batch_size(num_images) // world_size)
    steps_per_epoch = max(1, num_images // world_size // batch)
    epochs = auto_epochs(steps_per_epoch)
    crop_padding, scale_jitter = auto_augmentation(image_size)
    steps = epochs * steps_per_epoch
    return AutoRecipe(
        batch_size=batch,
        optimizer=optimizer,
        lr=auto_lr(batch * world_size, optimizer),
        weight_decay=WEIGHT_DECAY[optimizer],
        epochs=epochs,
        steps=steps,
        warmup_steps=auto_warmup(steps),
        crop_padding=crop_padding,
        scale_jitter=scale_jitter,
    )


def apply_auto(
    config: TrainConfig,
    *,
    num_images: int,
    image_size: int,
    num_classes: int,
    world_size: int = 1,
) -> tuple[TrainConfig, str]:
    """``config`` with every field it leaves to ``auto`` (``None``) filled in, and the line
    that says what was chosen and why.

    Values given explicitly stay: ``--epochs`` or ``--max-steps`` set the length (the
    warm-up follows it), ``--batch-size`` or ``--optimizer`` without ``--lr`` scale the
    rate to them (``--optimizer`` sets the weight decay too, unless given), and
    ``--crop-padding`` or ``--scale-jitter`` switch the other augmentation off.
    """
    c = config
    choice = auto_recipe(num_images, image_size, num_classes, c.model, world_size=world_size)
    batch = c.batch_size if c.batch_size is not None else choice.batch_size
    steps_per_epoch = max(1, num_images // world_size // batch)
    if c.max_steps is not None:  # the length, even beside --epochs (warned of)
        steps = c.max_steps
        epochs = math.ceil(steps / steps_per_epoch)
    else:
        epochs = c.epochs if c.epochs is not None else auto_epochs(steps_per_epoch)
        steps = epochs * steps_per_epoch
    optimizer = c.optimizer if c.optimizer is not None else choice.optimizer
    fill: dict = {"batch_size": batch, "epochs": epochs, "optimizer": optimizer}
    # A batch larger than the images takes all of them at each step: the rate follows that.
    fill["lr"] = auto_lr(min(batch, max(1, num_images // world_size)) * world_size, optimizer)
    fill["weight_decay"] = WEIGHT_DECAY[optimizer]
    if c.warmup_epochs is None:
        fill["warmup_epochs"] = 0.0
        if c.warmup_steps is None:
            fill["warmup_steps"] = auto_warmup(steps)
    if c.crop_padding is None and c.scale_jitter is None:
        fill["crop_padding"], fill["scale_jitter"] = choice.crop_padding, choice.scale_jitter
    else:
        fill["crop_padding"], fill["scale_jitter"] = c.crop_padding or 0, c.scale_jitter or 0.0
    resolved = dataclasses.replace(c, **{k: v for k, v in fill.items() if getattr(c, k) is None})
    given = {k for k in (*AUTO_FIELDS, "warmup_steps") if getattr(c, k) is not None}
    if c.max_steps is not None:
        given.add("epochs")
    if c.scale_jitter is not None:
        given.add("crop_padding")
    described = dataclasses.replace(resolved, epochs=epochs)  # the epochs the steps make
    return resolved, _describe(described, num_images, image_size, steps, given, world_size)


def finetune_length(num_images: int, *, world_size: int = 1) -> tuple[int, int]:
    """The ``finetune`` recipe's ``(batch size, epochs)`` for ``num_images`` training images.

    ``FINETUNE_BATCH``, halved until an epoch has two steps (no image left out of every
    epoch's one batch), and ``FINETUNE_EPOCHS`` epochs, or as many more as make
    ``FINETUNE_MIN_STEPS`` optimizer steps (at most ``MAX_EPOCHS``): ten epochs of fifty
    photos are ten steps, too few to fit even a new classifier.
    """
    per_process = max(1, num_images // world_size)
    batch = FINETUNE_BATCH
    while batch > 1 and batch > per_process // 2:
        batch //= 2
    return batch, _finetune_epochs(max(1, per_process // batch))


def _length_rule(epochs: int, steps: int, least_epochs: int, least_steps: int) -> str:
    """The rule that set a recipe's length, in words: its epochs, its floor of steps, or
    ``MAX_EPOCHS``, which leaves a set of a step or two an epoch short of that floor."""
    if epochs == MAX_EPOCHS and steps < least_steps:
        return f"at least {least_steps:,} steps, but at most {MAX_EPOCHS} epochs"
    return f"{least_epochs} epochs, at least {least_steps:,} steps"


def _finetune_epochs(steps_per_epoch: int) -> int:
    wanted = math.ceil(FINETUNE_MIN_STEPS / steps_per_epoch)
    return min(MAX_EPOCHS, max(FINETUNE_EPOCHS, wanted))


def validation_interval(
    train_images: int, val_images: int, epochs: int, calibration_images: int = 0
) -> int:
    """Validate every this many epochs, when the interval is left to the data.

    Every epoch, unless an epoch trains fewer images (``train_images``, per process) than a
    validation passes forward: the images it scores (``val_images``) and those its BN
    statistics are recomputed on first (``calibration_images``, 0 without). Then every as
    many epochs as train that many images, so that validating takes well under the
    training time (a training image costs about three forward passes); but often enough
    for at least ``MIN_VALIDATIONS`` validations to pick the best epoch from. Fifty photos
    fine-tuned for a hundred epochs of three steps spent more time validating on a larger
    validation set than training; 160 photos, validated on 40 after recomputing the
    statistics on all 160, 40% more than training alone.
    """
    forward = val_images + calibration_images
    if forward <= train_images or train_images <= 0:
        return 1
    return max(1, min(math.ceil(forward / train_images), epochs // MIN_VALIDATIONS))


def apply_finetune(
    config: TrainConfig, *, num_images: int, world_size: int = 1
) -> tuple[TrainConfig, str]:
    """``config`` with the ``finetune`` recipe's batch size and epochs filled in where they
    were left unset (``finetune_length``), and the line that says what they are and why;
    ``--max-steps`` sets the length as it does for ``auto``."""
    c = config
    given_batch = c.batch_size is not None
    batch = c.batch_size if given_batch else finetune_length(num_images, world_size=world_size)[0]
    steps_per_epoch = max(1, num_images // world_size // batch)
    length = ""
    if c.max_steps is not None:
        epochs, length = math.ceil(c.max_steps / steps_per_epoch), "given"
    elif c.epochs is not None:
        epochs, length = c.epochs, "given"
    else:  # the floor counts the steps of the batch trained, given or not
        epochs = _finetune_epochs(steps_per_epoch)
    steps = c.max_steps or epochs * steps_per_epoch
    length = length or _length_rule(epochs, steps, FINETUNE_EPOCHS, FINETUNE_MIN_STEPS)
    rule = "given" if given_batch else f"the recipe's {FINETUNE_BATCH}"
    if batch < FINETUNE_BATCH and not given_batch:
        rule += ", halved until an epoch has two steps"
    line = (
        f"recipe finetune: {count_of(num_images, 'image')} -> {_batch_words(batch, world_size)} "
        f"({rule}), {count_of(steps, 'step')} ({count_of(epochs, 'epoch')}; {length})"
    )
    return dataclasses.replace(c, batch_size=batch, epochs=epochs), line


def _describe(
    c: TrainConfig,
    num_images: int,
    image_size: int,
    steps: int,
    given: set[str],
    world_size: int = 1,
) -> str:
    """One line: ``recipe auto: 1,080 images at 64x64 -> batch 32 (...), Adam (...) lr
    0.001 (...), 1,023 steps (31 epochs; ...), warm-up 100 steps (...), scale/aspect jitter``.
    Under torchrun the batch is per process, and its rule and the rate's are the total's."""

    def why(key: str, reason: str) -> str:
        return "given" if key in given else reason

    if c.scale_jitter:
        augment = f"scale/aspect jitter, crops of {c.scale_jitter:.0%} to all of the area"
    elif c.crop_padding:
        augment = f"pad-{c.crop_padding} crops"
    else:
        augment = "no crops"
    augment += f" ({why('crop_padding', f'{image_size} px images')})"
    if c.warmup_steps is not None:
        rule = f"{WARMUP_FRACTION:.0%}, at least {MIN_WARMUP_STEPS}"
        if c.warmup_steps < MIN_WARMUP_STEPS:
            rule = "a quarter of training"
            if c.warmup_steps > steps // 4:  # a run of 1 to 3 steps
                rule += ", at least 1 step"
        warmup = f"warm-up {count_of(c.warmup_steps, 'step')} ({why('warmup_steps', rule)})"
    else:
        warmup = f"warm-up {count_of(c.warmup_epochs, 'epoch')} (given)"
    length = why("epochs", _length_rule(c.epochs, steps, EPOCHS, MIN_STEPS))
    total, all_of_them = "total batch" if world_size > 1 else "batch", ""
    if c.batch_size > max(1, num_images // world_size):  # each step takes all the images
        total, all_of_them = "images", ", fewer than the batch"
    if c.optimizer == "sgd":
        rate = f"{BASE_LR:g} x sqrt({total} / {BASE_BATCH}){all_of_them}"
        network = (
            f"{ADAM_BELOW:,} images or more" if imagenet_style(c.model) else "a CIFAR-style network"
        )
    else:
        rate = f"{ADAM_LR:g} x sqrt({total} / {ADAM_BATCH}){all_of_them}"
        network = f"an ImageNet-style network, under {ADAM_BELOW:,} images"
    return (
        f"recipe auto: {count_of(num_images, 'image')} at {image_size}x{image_size} -> "
        f"{_batch_words(c.batch_size, world_size)} "
        f"({why('batch_size', _batch_and_rule(num_images)[1])}), "
        f"{OPTIMIZER_NAMES[c.optimizer]} ({why('optimizer', network)}) "
        f"lr {c.lr:.3g} ({why('lr', rate)}), "
        f"{count_of(steps, 'step')} ({count_of(c.epochs, 'epoch')}; {length}), {warmup}, "
        f"{augment}"
    )


def _batch_words(batch: int, world_size: int) -> str:
    """``batch 32``, or under torchrun ``batch 8 per process, 16 in all``."""
    if world_size == 1:
        return f"batch {batch}"
    return f"batch {batch} per process, {batch * world_size} in all"


def count_of(n: float, noun: str) -> str:
    """``1 epoch``, ``1,320 steps``, ``0.5 epochs``: a number with its noun."""
    text = f"{n:,}" if isinstance(n, int) else f"{n:g}"
    return f"{text} {noun}" if n == 1 else f"{text} {noun}s"


def is_digit_like(
    data: str, class_names: Sequence[str], mean: Sequence[float], std: Sequence[float]
) -> bool:
    """Whether images are symbols that a mirror image turns into another (or none): the
    bundled ``digits``, classes named ``0``..``9`` (MNIST, SVHN and their kin), or grayscale
    images (equal channel statistics) whose classes are single characters (letters).

    Flips default to off for such data under every recipe.
    """
    if data == "digits" or list(class_names) == [str(i) for i in range(10)]:
        return True
    gray = max(mean) - min(mean) < 1e-6 and max(std) - min(std) < 1e-6
    return gray and all(len(name) == 1 for name in class_names)


class LossGuard:
    """Watches the training loss of an ``auto`` run while its learning rate rises (``window``
    steps: the warm-up and as many again) and says when to halve the rate.

    The start is the mean loss of the first ``GUARD_START_STEPS`` steps, and at least
    ``ln(classes)``, the loss of a uniform guess. A moving average of the loss above
    ``GUARD_FACTOR`` times the start means the rate is more than the model tolerates: the
    guard asks for half the rate, then waits ``GUARD_PATIENCE`` steps for the loss to come
    down before it may ask again, at most ``GUARD_MAX_HALVINGS`` times.
    """

    def __init__(self, num_classes: int, window: int) -> None:
        self.window = window
        self.floor = math.log(max(num_classes, 2))
        self.first: list[float] = []
        self.start: float | None = None
        self.average: float | None = None
        self.wait = 0
        self.halvings = 0

    def watching(self, step: int) -> bool:
        """Whether step ``step`` (0-based) is one the guard looks at."""
        return step < self.window and self.halvings < GUARD_MAX_HALVINGS

    def update(self, loss: float) -> bool:
        """Take one step's mean training loss; True when the rate should be halved."""
        if self.start is None:
            self.first.append(loss)
            if len(self.first) == GUARD_START_STEPS:
                self.average = sum(self.first) / len(self.first)
                self.start = max(self.average, self.floor)
            return False
        self.average += GUARD_SMOOTHING * (loss - self.average)
        if self.wait > 0:
            self.wait -= 1
            return False
        if not self.average > GUARD_FACTOR * self.start:  # also NaN: that check is elsewhere
            return False
        self.halvings += 1
        self.wait = GUARD_PATIENCE
        return True

    def state_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()``'s output; ValueError for anything else (a damaged
        checkpoint)."""

        def number(value: Any) -> bool:
            return isinstance(value, int | float) and not isinstance(value, bool)

        fits = (
            isinstance(state, dict)
            and set(state) == set(vars(self))
            and all(number(state[name]) for name in ("window", "floor", "wait", "halvings"))
            and all(state[name] is None or number(state[name]) for name in ("start", "average"))
            and isinstance(state["first"], list)
            and all(number(loss) for loss in state["first"])
        )
        if not fits:
            raise ValueError("its loss guard state is damaged")
        for name, value in state.items():
            setattr(self, name, value)
