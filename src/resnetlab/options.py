"""What the options of the command line may be: choices, defaults, limits and help.

Plain data, importing no PyTorch, so that ``resnetlab <command> --help`` and an argument
error answer at once: the command line builds its parser from this module, and each value
is defined here only, imported by the modules that act on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Limits no real model reaches. A file beyond them is damaged or was edited, and building
# it would ask for more memory than any machine has (10^9 classes: a 256 GB classifier).
MAX_CLASSES = 100_000  # ImageNet-21k, the largest common label set, has 21,841
MIN_INPUT_SIZE = 8  # the smallest side the stems and stages can downsample
MAX_INPUT_SIZE = 2048  # ResNets are trained at 32 to about 600 pixels
INPUT_SIZES = f"from {MIN_INPUT_SIZE} to {MAX_INPUT_SIZE:,} pixels"  # as every message says it


def is_input_size(size: int) -> bool:
    """Whether ``size`` is an image side the models take (``INPUT_SIZES``): the one rule of
    ``--input-size``, train's ``input_size``, the model builders and model files."""
    return MIN_INPUT_SIZE <= size <= MAX_INPUT_SIZE


# Data sets known by name (data.sources), beside files and folders.
NAMED_SOURCES = ("digits", "cifar10")

# How an image meets a size of another shape: "squash" resizes it to exactly that size
# (the aspect ratio changes); "crop" scales it until it covers the size, keeping the aspect
# ratio, and cuts the centre (torchvision's eval transform: Resize(side) + CenterCrop(side)).
RESIZE_MODES = ("squash", "crop")
DEFAULT_RESIZE = "crop"  # for training and data inspect; model files record their own

# The share of the resized image's side that the centre crop keeps: 1 brings the image
# straight to the input size; ImageNet evaluation in torchvision, timm and transformers
# resizes to 256 and keeps the centre 224 (0.875). Files without the key mean 1. No
# source keeps less than three quarters; below a half, a hand-edited 0.0875 (for 0.875)
# or 1e-320 would ask for images of gigapixels or an infinite side, not fail in a line.
MIN_CROP_FRACTION = 0.5
CROP_FRACTIONS = f"a number from {MIN_CROP_FRACTION} to 1"


def is_crop_fraction(value: object) -> bool:
    """Whether ``value`` is a crop fraction (``CROP_FRACTIONS``): the one rule of model
    files, ``save_model`` and the decoders."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and MIN_CROP_FRACTION <= value <= 1  # NaN fails both


# How a Keras model's images were prepared (convert keras --inputs): keras.applications'
# preprocess_input ('caffe': BGR, ImageNet's mean subtracted from 0-255 pixels), pixels / 255
# (the course's), or the pixels as they are.
KERAS_INPUTS = ("caffe", "0-1", "0-255")

# Each recipe is a set of TrainConfig values; flags override any of them.
RECIPES: dict[str, dict[str, Any]] = {
    # The course's notebook trains with Adam, learning rate 1e-3, batch 32. On SIGNS that alone
    # overfits 1,080 images and, at a constant rate, swings test accuracy by 10-20 points
    # from one epoch to the next; decaying the rate to zero over 30 epochs, 4-pixel shifts,
    # flips (a mirrored hand shows as many fingers) and label smoothing take it to 99%.
    # The notebook's own settings: --schedule constant --crop-padding 0 --no-flip
    # --label-smoothing 0. Called "seed" before (still accepted, see RECIPE_ALIASES).
    "course": dict(
        optimizer="adam",
        lr=1e-3,
        batch_size=32,
        weight_decay=0.0,
        schedule="cosine",
        warmup_epochs=0.0,
        label_smoothing=0.1,
        no_decay_norm_bias=False,
        crop_padding=4,
        flip=None,  # on, except for digit-like data (engine.auto.is_digit_like)
        epochs=30,
    ),
    # He et al. 2015, section 4.2: SGD with momentum 0.9, weight decay 1e-4, learning rate
    # 0.1 divided by 10 at 50% and 75% of training (32k and 48k of 64k iterations), batch
    # 128, 4-pixel padding with random crops and horizontal flips.
    "paper-cifar": dict(
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        nesterov=False,
        batch_size=128,
        weight_decay=1e-4,
        schedule="step",
        milestones=(0.5, 0.75),
        warmup_epochs=0.0,
        label_smoothing=0.0,
        no_decay_norm_bias=False,
        crop_padding=4,
        flip=None,  # on, except for digit-like data (engine.auto.is_digit_like)
        epochs=164,
    ),
    # He et al. 2016, "Identity Mappings in Deep Residual Networks", appendix: the recipe
    # above, with the learning rate held at 0.01 for the first 400 iterations "for all CIFAR
    # experiments" (following the 2015 paper's ResNet-110). The engine's warm-up rises
    # linearly over whole epochs; one epoch (391 iterations at batch 128) is the nearest.
    # The paper's tables use batch 128 (ResNet-1001: 4.92%); its released code
    # (KaimingHe/resnet-1k-layers) uses 64, which gave the abstract's 4.62%: --batch-size 64.
    "preact-cifar": dict(
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        nesterov=False,
        batch_size=128,
        weight_decay=1e-4,
        schedule="step",
        milestones=(0.5, 0.75),
        gamma=0.1,
        warmup_epochs=1.0,
        label_smoothing=0.0,
        no_decay_norm_bias=False,
        crop_padding=4,
        flip=None,  # on, except for digit-like data (engine.auto.is_digit_like)
        epochs=164,
    ),
    # Zagoruyko & Komodakis 2016, "Wide Residual Networks", section 3: SGD with Nesterov
    # momentum 0.9 (dampening 0), weight decay 5e-4, batch 128, learning rate 0.1 multiplied
    # by 0.2 at epochs 60, 120 and 160 of 200; flips and random crops of images padded by 4
    # pixels (the paper pads by reflection, the engine with zeros). Dropout between the
    # convs (0.3 for their WRN-28-10-dropout, 3.89%) is a model option:
    # --model-option drop_rate=0.3.
    "wrn-cifar": dict(
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        nesterov=True,
        batch_size=128,
        weight_decay=5e-4,
        schedule="step",
        milestones=(0.3, 0.6, 0.8),
        gamma=0.2,
        warmup_epochs=0.0,
        label_smoothing=0.0,
        no_decay_norm_bias=False,
        crop_padding=4,
        flip=None,  # on, except for digit-like data (engine.auto.is_digit_like)
        epochs=200,
    ),
    # Current practice: Nesterov SGD, cosine decay after a linear warmup, label smoothing,
    # no weight decay on BN parameters and biases.
    "modern": dict(
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        nesterov=True,
        batch_size=128,
        weight_decay=5e-4,
        schedule="cosine",
        warmup_epochs=1.0,
        label_smoothing=0.1,
        no_decay_norm_bias=True,
        crop_padding=4,
        flip=None,
    ),
    # Decided from the data and the model when the run starts (engine.auto): the fields set
    # to None here, the optimizer among them; the rest as "modern" (momentum: SGD's).
    "auto": dict(
        optimizer=None,
        momentum=0.9,
        nesterov=True,
        weight_decay=None,
        no_decay_norm_bias=True,
        schedule="cosine",
        label_smoothing=0.1,
        flip=None,
        batch_size=None,
        lr=None,
        epochs=None,
        warmup_epochs=None,
        crop_padding=None,
        scale_jitter=None,
    ),
    # Fine-tuning pretrained weights (the default with --pretrained): a tenth of modern's
    # rate and a short warm-up, so that the pretrained features are adjusted rather than
    # overwritten, small batches for small data sets, and a new classifier trained alone
    # for the first epoch (head_epochs, see engine.finetune). The batch (32, less for a
    # very small set) and the length (10 epochs, more for a small set) are decided from the
    # number of training images when the run starts (engine.auto.finetune_length).
    "finetune": dict(
        optimizer="sgd",
        lr=0.01,
        momentum=0.9,
        nesterov=True,
        batch_size=None,
        weight_decay=1e-4,
        schedule="cosine",
        warmup_epochs=0.5,
        label_smoothing=0.1,
        no_decay_norm_bias=True,
        crop_padding=4,
        flip=None,
        epochs=None,
    ),
}
# Earlier names of recipes, accepted on the command line, in config files and in the API.
RECIPE_ALIASES = {"seed": "course"}

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "onecycle")  # see optim.lr_at
# A model file runs in fp32 or under bf16/fp16 autocast (engine.inference, engine.step);
# training may also leave the choice to the CPU calibration or the GPU (auto).
INFERENCE_PRECISIONS = ("fp32", "bf16", "fp16")
PRECISIONS = ("auto", *INFERENCE_PRECISIONS)
FREEZE_CHOICES = ("stem", "layer1", "layer2", "layer3", "layer4", "backbone")  # engine.finetune
CLASS_WEIGHTS = ("none", "balanced")  # engine.step.class_weights

# The options that take one of a list of values, for validation and the command line.
CHOICES = {
    "recipe": (*RECIPES, *RECIPE_ALIASES),
    "optimizer": OPTIMIZERS,
    "schedule": SCHEDULES,
    "precision": PRECISIONS,
    "resize": RESIZE_MODES,
    "freeze": FREEZE_CHOICES,
    "class_weights": CLASS_WEIGHTS,
}

# Help for each TrainConfig field but model_kwargs; every field is a flag of `resnetlab train`
# (its --help) and each is listed in help(TrainConfig).
TRAIN_HELP = {
    "model": "model name (see `resnetlab models`); default resnet20",
    "data": "training data: digits, cifar10, a SIGNS .h5 file, an image folder or archive",
    "val_data": "validation data (default: the data's own held-out split, else --val-split)",
    "val_split": "fraction of the training data held out for validation (default: 0.2 when the "
    "data has no validation or test split of its own)",
    "subset": "train on N training images, each class keeping its share (seeded)",
    "val_subset": "validate on N of the validation images, likewise",
    "input_size": "image side the model sees; images are resized once (default: the model's)",
    "download": "download the data set if it is not in the cache (cifar10)",
    "stream": "stream images from disk instead of holding them in memory (default: by size)",
    "resize": "how an image that is not square meets the input size: crop (shorter side to "
    "it, then the centre; the default) or squash (resized to it, aspect ratio lost); "
    "recorded in the model file for predict",
    "recipe": "preset: auto (the default: chosen from the data and model, printed when the "
    "run starts), course (the course's Adam 1e-3, batch 32; seed before), paper-cifar (He "
    "et al. 4.2), preact-cifar (He et al. 2016), wrn-cifar (Zagoruyko & Komodakis 2016), "
    "modern, finetune (the default with --pretrained: SGD 0.01, batch 32, short warm-up)",
    "pretrained": "start from pretrained weights: torchvision, torchvision:WEIGHTS (e.g. "
    "IMAGENET1K_V2), timm (its default tag for --model) or timm:MODEL.TAG, a weights file "
    "(.pth, .pt, .bin, .ckpt, .safetensors, .h5, .hdf5, .keras), a Hugging Face model's "
    "folder (timm, or a transformers ResNet such as microsoft/resnet-50) or a run folder; the "
    "classifier is replaced when the class count differs, and the default recipe is finetune",
    "freeze": "freeze the network up to and including a stage: stem, layer1..layer4, or "
    "backbone (all but the classifier: a linear probe)",
    "head_epochs": "train the classifier alone for the first N epochs, then the rest "
    "(default: 1 when --pretrained leaves a new classifier, else 0)",
    "layer_lr_decay": "each stage trains at F times the next one's learning rate (the "
    "classifier at --lr, the stem at the lowest); 1: off",
    "freeze_bn": "keep the BatchNorm statistics of every stage (default: those of frozen "
    "stages only; --no-freeze-bn re-estimates them everywhere)",
    "epochs": "passes over the training data",
    "max_steps": "train for this many steps instead of --epochs (the schedule spans them)",
    "batch_size": "images per step (per process under torchrun)",
    "optimizer": "sgd, adam or adamw",
    "lr": "peak learning rate",
    "momentum": "SGD momentum",
    "nesterov": "Nesterov momentum for SGD",
    "weight_decay": "L2 weight decay (decoupled for adamw)",
    "no_decay_norm_bias": "no weight decay on BN parameters and biases",
    "schedule": "learning-rate schedule: constant, step, cosine or onecycle",
    "milestones": "for --schedule step: fractions of training where the rate drops",
    "gamma": "for --schedule step: factor applied at each milestone",
    "warmup_epochs": "linear learning-rate warmup, in epochs (fractions allowed)",
    "warmup_steps": "linear learning-rate warmup, in steps (wins over --warmup-epochs)",
    "label_smoothing": "label smoothing of the cross-entropy loss",
    "class_weights": "none, or balanced: each class's images weigh in the loss in inverse "
    "proportion to its share of the training images (scikit-learn's 'balanced', Keras's "
    "class_weight), so a small class counts as much as a large one",
    "ema_decay": "keep and save an exponential moving average of the weights (e.g. 0.999)",
    "target_accuracy": "stop after the first epoch whose validation accuracy reaches this "
    "(e.g. 0.91; time-to-accuracy runs)",
    "patience": "stop after N epochs without a better validation accuracy (early stopping)",
    "val_every": "validate, and save the model and checkpoint, every N epochs and after the "
    "last (default: every epoch; every few when an epoch trains fewer images than a "
    "validation scores)",
    "clip_grad_norm": "clip the gradients' total norm to this (0: off)",
    "recalibrate_bn": "recompute BatchNorm statistics on up to ten training batches (at most "
    "512 images) before each validation (default: on; the running averages lag behind the "
    "weights, slowest with Keras's momentum 0.99)",
    "crop_padding": "random crops after padding by this many pixels (0: off)",
    "scale_jitter": "random crops of between this share of the area and all of it, aspect "
    "3:4 to 4:3, resized back (0: off; auto uses 0.35 from 128 px up)",
    "flip": "random horizontal flips (default: on, except for digit-like data: digits, "
    "classes 0-9, grayscale letters)",
    "cutout": "cutout square side in pixels (0: off)",
    "seed": "seed for initialisation, data order and augmentation",
    "device": "auto, cpu, cuda, cuda:N or mps",
    "precision": "auto (bf16 on GPUs that support it and on CPUs where it measured faster, "
    "else fp32), fp32, bf16 or fp16",
    "channels_last": "channels-last memory format (default: on for CUDA; on a CPU, whichever "
    "measured faster)",
    "compile": "compile the model with torch.compile",
    "cuda_graphs": "capture the whole training step into a CUDA graph and replay it (default: "
    "on CUDA wherever the step can be captured; 3.5-3.9x for the CIFAR nets, whose steps are "
    "launch-bound)",
    "deterministic": "use deterministic algorithms only (slower on GPU)",
    "sync_bn": "synchronise BatchNorm statistics across processes under torchrun",
    "num_workers": "loader worker processes for streamed data",
    "out": "run folder (default: runs/<model>-<data>-<time>)",
    "log_every": "steps between progress updates and metrics.csv rows",
    "tensorboard": "also write TensorBoard logs to RUN/tensorboard",
    "explain_speed": "say what the CPU calibration chose and the timings behind it",
}


@dataclass(init=False, repr=False, eq=False)
class TrainOptions:
    """The fields of ``engine.TrainConfig``, which adds the recipes, the checks and the
    config files: declared here for the flags of ``resnetlab train``."""

    # what to train, on what
    model: str = "resnet20"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    data: str = "digits"
    val_data: str | None = None
    val_split: float | None = None  # held out when the data has no split (default: 0.2)
    subset: int | None = None  # train on about this many images, each class keeping its share
    val_subset: int | None = None  # validate on about this many, likewise
    input_size: int | None = None  # default: the model's own input size
    download: bool = False
    stream: bool | None = None  # stream from disk instead of holding images in memory
    resize: str = DEFAULT_RESIZE  # how images of another shape meet the input size
    # where the weights start, and what trains (see engine.finetune)
    pretrained: str | None = None  # torchvision[:WEIGHTS], timm:<model.tag>, a file, a run
    freeze: str | None = None  # up to a stage: stem, layer1..layer4, backbone (all but fc)
    head_epochs: int | None = None  # train the classifier alone first (default: 1 if it is new)
    layer_lr_decay: float = 1.0  # each stage trains at this times the next one's rate
    freeze_bn: bool | None = None  # BN statistics kept: None: frozen stages'; True: all
    # the recipe: a preset of the fields below (None: the auto recipe decides, see AUTO_FIELDS)
    recipe: str = "modern"
    epochs: int | None = 15
    max_steps: int | None = None  # stop after this many steps instead; the schedule spans them
    batch_size: int | None = 128
    optimizer: str | None = "sgd"
    lr: float | None = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float | None = 5e-4
    no_decay_norm_bias: bool = True
    schedule: str = "cosine"
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of training, for "step"
    gamma: float = 0.1  # learning-rate factor at each milestone
    warmup_epochs: float | None = 1.0
    warmup_steps: int | None = None  # in steps instead of epochs; wins over warmup_epochs
    label_smoothing: float = 0.1
    class_weights: str = "none"  # "balanced": each class weighs the same in the loss
    ema_decay: float = 0.0  # > 0 keeps an exponential moving average of the weights
    target_accuracy: float | None = None  # stop after the first epoch whose accuracy reaches it
    patience: int | None = None  # stop after this many epochs without a better accuracy
    val_every: int | None = None  # validate and save every N epochs (None: engine.auto decides)
    clip_grad_norm: float = 0.0  # > 0 clips the gradients' total norm to it
    recalibrate_bn: bool = True  # BN statistics recomputed on training batches before validating
    crop_padding: int | None = 4
    scale_jitter: float | None = 0.0  # > 0: random-resized crops of at least this area
    flip: bool | None = None  # default: on, except for digit-like data (engine.auto)
    cutout: int = 0
    # how to run
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool | None = None  # default: on for CUDA and CPU
    compile: bool = False
    # Capture the whole step into a CUDA graph (engine.step); default: wherever it can be.
    cuda_graphs: bool | None = None
    deterministic: bool = False
    sync_bn: bool = False
    num_workers: int | None = None
    # outputs
    out: str | None = None
    log_every: int = 50  # steps between metrics rows and progress updates
    tensorboard: bool = False
    explain_speed: bool = False  # log the CPU plan's timings (see engine.calibrate)


# resnetlab explain --method: the class activation maps of explain.cam.
METHODS = ("gradcam", "gradcam++", "layercam", "scorecam")

# resnetlab bench infer --runtime (bench.inference).
RUNTIMES = ("torch", "onnxruntime", "onnxruntime-int8")


# resnetlab experiment: the two nets compared at each depth (experiments.runner), the depths
# and lengths of the degradation and gradient-flow experiments.
@dataclass(frozen=True)
class Family:
    """Two registered CIFAR nets per depth, ``<baseline><depth>`` and ``<changed><depth>``.

    Attributes:
        name: the ``--family`` value.
        baseline, changed: name prefixes of the two nets.
        labels: short names for curves and legends (``"plain"``, ``"ResNet"``).
        nouns: the two nets in sentences (``"plain net"``, ``"ResNet"``); plurals add "s".
        recipe: the training recipe by default.
        question: what the comparison asks (a heading of ``table.md``).
        paper: published CIFAR-10 test error (%) by depth, for the baseline and the changed
            nets, and where it comes from.
    """

    name: str
    baseline: str
    changed: str
    labels: tuple[str, str]
    nouns: tuple[str, str]
    recipe: str
    question: str
    paper: tuple[dict[int, float], dict[int, float]]
    paper_source: str


FAMILIES = {
    "plain": Family(
        name="plain",
        baseline="plain",
        changed="resnet",
        labels=("plain", "ResNet"),
        nouns=("plain net", "ResNet"),
        recipe="paper-cifar",
        question="Does the degradation show?",
        # He et al. (2015), Table 6 (ResNet-110: the best of five runs; its mean is
        # 6.61 +- 0.16). The plain nets are shown only as curves (Fig. 6).
        paper=({}, {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43, 1202: 7.93}),
        paper_source="He et al. (2015), Table 6, CIFAR-10 test error after 64k iterations on "
        "all 50,000 training images; it gives numbers for the ResNets only (the plain nets "
        "appear as curves in Fig. 6, so their column is empty).",
    ),
    "preact": Family(
        name="preact",
        baseline="resnet",
        changed="preresnet",
        labels=("ResNet", "pre-act"),
        nouns=("ResNet", "pre-activation ResNet"),
        recipe="preact-cifar",
        question="Does pre-activation train the deeper nets better?",
        # He et al. (2016), "Identity Mappings", Table 3: original and pre-activation units.
        paper=({110: 6.61, 164: 5.93, 1001: 7.61}, {110: 6.37, 164: 5.46, 1001: 4.92}),
        paper_source="He et al. (2016), Identity Mappings, Table 3, CIFAR-10 test error with "
        "the original and the pre-activation units after 64k iterations on all 50,000 "
        "training images (ResNet-110: basic units; 164 and 1001: bottlenecks).",
    ),
}


# The degradation experiment (experiments.degradation).
DEGRADATION_DEPTHS = (20, 32, 44, 56)
# Identity Mappings, Table 3: ResNet-110 (basic units), -164 and -1001 (bottlenecks).
PREACT_DEPTHS = (110, 164, 1001)

# The CPU-sized version (``--quick``): 2,000 training images (200 a class) at full size,
# batch 32 for more updates per image, 10 epochs (620 steps) of the family's paper's recipe
# at learning rate 0.05, validated on 1,000 test images. docs/degradation.md has the
# measured results and times. Flags override these.
QUICK_DEPTHS = (8, 20, 32)
# The pre-activation units matter in deep nets; the quick mode's deep end is ResNet-110,
# the deepest that trains in tens of minutes on a CPU (docs/degradation.md).
PREACT_QUICK_DEPTHS = (20, 56, 110)
QUICK: dict[str, Any] = dict(
    subset=2000,
    val_subset=1000,
    epochs=10,
    batch_size=32,
    lr=0.05,
    log_every=10,
)

# The gradient-flow experiment (experiments.gradients).
GRADIENT_DEPTHS = (20, 56, 110)
GRADIENT_STEPS = 100
