"""The training step that ``resnetlab train`` and ``resnetlab bench train`` both run.

``build_training(config, device, ...)`` makes the model, optimizer, EMA and step as a
training run does, and a ``TrainStep`` call is one optimizer step on one batch: forward
under autocast, cross-entropy, backward, optimizer step, EMA update. The step never waits
for the device: the summed loss and hit count go into ``step.sums`` on the device, and the
training loop reads them (``take_sums``) once per ``log_every`` steps.

What makes it fast, and why:

- bf16 autocast on GPUs that support it (``precision="auto"``). On a CPU, ``auto`` means
  bf16 where the CPU has bf16 hardware and measuring it showed a gain (``engine.calibrate``);
  without the hardware bf16 is slower than float32.
- Channels-last tensors: the native layout of cuDNN's and oneDNN's convolutions, so no
  layout conversion around each conv (on 2 CPU cores, 1.2x to 1.5x for the CIFAR nets).
- One optimizer kernel over all parameters: fused on CUDA, foreach elsewhere.
- CUDA graphs (on CUDA wherever the step can be captured; ``config.resolve_cuda_graphs``):
  forward, backward, optimizer step, EMA and metrics are captured once into a CUDA graph
  and replayed, one launch per step instead of hundreds. Small-kernel models (the CIFAR
  nets, the course's 64x64 model) are limited by launch overhead, not by arithmetic.
- On the CPU, the precision, the layout and, per convolution shape, oneDNN or one matrix
  product: whichever measured fastest on this machine (``engine.calibrate``, cached).
- An EMA update without host reads (``AveragedModel.update_parameters`` reads its counter
  on the host every step, which waits for the device).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..convert.pretrained import PretrainedWeights, load_pretrained
from ..errors import ResnetlabError, SettingWarning, option, warn
from ..models import create_model, model_info
from .config import TrainConfig, resolve_cuda_graphs, warn_idle_under_full_freeze
from .cpu import keep_freed_memory, slow_precision_note, use_matmul_convs
from .distributed import DistInfo
from .finetune import FineTuning, head_epochs_for
from .optim import build_optimizer

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .calibrate import CpuPlan

# Eager steps on a side stream before capture: they allocate the optimizer state, let
# cuDNN pick its algorithms and torch.compile compile, none of which may happen in a graph.
GRAPH_WARMUP_STEPS = 3


# The autocast dtype of each --precision but auto; None is float32.
PRECISION_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for float32. ``auto``: bf16 on GPUs that support it
    (on a CPU, ``build_training`` decides ``auto`` by measuring; see ``engine.calibrate``).
    bf16 named for a GPU without it is warned about: PyTorch emulates it there."""
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" and cuda_has_bf16(device) else None
    if precision == "bf16" and device.type == "cuda" and not cuda_has_bf16(device):
        warn(
            f"{option('precision', 'bf16')}: {device} has no bf16 arithmetic (it came with "
            "compute capability 8.0), so PyTorch emulates it, usually slower than fp32; "
            f"{option('precision', 'fp16')} runs in its hardware",
            SettingWarning,
        )
    return PRECISION_DTYPES[precision]


def cuda_has_bf16(device: torch.device) -> bool:
    """Whether CUDA ``device`` does bf16 arithmetic in hardware: from Ampere (compute
    capability 8.0) on, and on ROCm. Not ``torch.cuda.is_bf16_supported()``, which since
    torch 2.4 also says yes where bf16 is only emulated (a T4, a V100: slower than float32)
    and asks about the current GPU, not ``device``."""
    return bool(torch.version.hip) or torch.cuda.get_device_capability(device) >= (8, 0)


def precision_name(dtype: torch.dtype | None) -> str:
    """``fp32``, ``bf16`` or ``fp16``: the ``--precision`` that gives autocast ``dtype``."""
    return {dtype: name for name, dtype in PRECISION_DTYPES.items()}[dtype]


def resolve_channels_last(channels_last: bool | None, device: torch.device) -> bool:
    """``channels_last`` when named, else on for CUDA and CPU (on a CPU, training may
    choose NCHW by measuring; see ``engine.calibrate``)."""
    if channels_last is not None:
        return channels_last
    return device.type in ("cuda", "cpu")


def configure_backends(device: torch.device, deterministic: bool) -> None:
    """Deterministic algorithms when asked; otherwise let cuDNN time and pick its fastest.

    cuBLAS is deterministic only with a fixed workspace, which ``CUBLAS_WORKSPACE_CONFIG``
    sets before it starts (PyTorch's reproducibility notes): set here for a CUDA run unless
    the user set it (a process that used cuBLAS before keeps its workspace, with PyTorch's
    warning)."""
    if deterministic:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


@contextlib.contextmanager
def global_state_kept() -> Iterator[None]:
    """PyTorch's random state and the flags ``configure_backends`` sets, as they were before,
    after the work inside: a run seeds them for itself, and a notebook's own draws after
    ``train`` go on as if there had been none (a search drawing its settings with
    ``torch.rand`` would otherwise draw the same ones after every run). The CUDA generators
    are kept where CUDA was in use before, and the current GPU (a run makes its own current)."""
    flags = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    cuda = range(torch.cuda.device_count()) if torch.cuda.is_initialized() else []
    current_gpu = torch.cuda.current_device() if cuda else 0

    def restore() -> None:
        torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])
        torch.backends.cudnn.benchmark = flags[2]
        if torch.cuda.is_initialized():
            torch.cuda.set_device(current_gpu)

    try:
        with torch.random.fork_rng(devices=cuda):
            yield
    except BaseException:
        # The error on its way out is the one to report: a Ctrl-C inside one of PyTorch's
        # lazy imports (the first forward imports torch._dynamo) leaves it half-imported,
        # and restoring the flags, which imports more of it, would fail over the Ctrl-C.
        with contextlib.suppress(Exception):
            restore()
        raise
    restore()


def autocast(
    device: torch.device, dtype: torch.dtype | None, *, cache_enabled: bool = True
) -> contextlib.AbstractContextManager:
    """Mixed precision in ``dtype`` on ``device``, or nothing for float32 (``dtype=None``)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype, cache_enabled=cache_enabled)


class EmaUpdate:
    """The update of ``AveragedModel(model, get_ema_multi_avg_fn(decay), use_buffers=True)``.

    Float parameters and buffers move towards the model's by ``1 - decay``, the first update
    copies them, and ``ema.n_averaged`` counts updates as ``update_parameters`` does; integer
    buffers (BN's batch counter) are copied. Unlike ``update_parameters``, it reads the
    counter on the host once, not at every step, so it can run inside a CUDA graph.
    """

    def __init__(self, ema: AveragedModel, model: nn.Module, decay: float) -> None:
        pairs = list(
            zip(
                itertools.chain(ema.module.parameters(), ema.module.buffers()),
                itertools.chain(model.parameters(), model.buffers()),
                strict=True,
            )
        )
        floats = [(a.detach(), b.detach()) for a, b in pairs if a.is_floating_point()]
        self.ema_floats = [a for a, _ in floats]
        self.model_floats = [b for _, b in floats]
        self.others = [(a.detach(), b.detach()) for a, b in pairs if not a.is_floating_point()]
        self.count = ema.n_averaged
        self.decay = decay
        self.first: bool | None = None  # known at the first update, after any resume

    @torch.no_grad()
    def __call__(self) -> None:
        if self.first is None:
            self.first = int(self.count) == 0
        if self.first:
            for a, b in zip(self.ema_floats, self.model_floats, strict=True):
                a.copy_(b)
            self.first = False
        else:
            torch._foreach_lerp_(self.ema_floats, self.model_floats, 1 - self.decay)
        for a, b in self.others:
            a.copy_(b)
        self.count += 1


class TrainStep:
    """One optimizer step per call, with every speed option of a training run.

    Args:
        net: what the forward pass calls: the model, possibly wrapped by DDP or torch.compile.
        optimizer: the optimizer of the model's parameters.
        model: the unwrapped model (the EMA's source); default ``net``.
        amp_dtype: autocast dtype, or None for float32.
        label_smoothing: of the cross-entropy loss.
        scaler: a ``GradScaler`` for float16 training.
        ema: an ``AveragedModel`` of ``model`` to update after each step.
        ema_decay: its decay.
        cuda_graphs: capture the whole step into a CUDA graph after ``GRAPH_WARMUP_STEPS``
            eager steps and replay it for every batch of the captured shape (a batch of
            another shape, such as a last smaller one, runs eagerly).
        clip_grad_norm: > 0 scales the gradients down to this total norm when above it
            (on the device, no host read: it fits in a CUDA graph).
        class_weights: (K,) weights of the classes in the loss (``class_weights``), or
            None: every image weighs the same.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        model: nn.Module | None = None,
        amp_dtype: torch.dtype | None = None,
        label_smoothing: float = 0.0,
        scaler: torch.amp.GradScaler | None = None,
        ema: AveragedModel | None = None,
        ema_decay: float = 0.0,
        cuda_graphs: bool = False,
        clip_grad_norm: float = 0.0,
        class_weights: torch.Tensor | None = None,
    ) -> None:
        self.net = net
        self.class_weights = class_weights
        self.clip_grad_norm = clip_grad_norm
        self.optimizer = optimizer
        self.model = model if model is not None else net
        self.device = next(self.model.parameters()).device
        self.amp_dtype = amp_dtype
        self.label_smoothing = label_smoothing
        self.scaler = scaler
        self.ema = EmaUpdate(ema, self.model, ema_decay) if ema is not None else None
        self.sums = torch.zeros(2, device=self.device)  # loss * images, hits: since take_sums
        self.cuda_graphs = cuda_graphs  # build_training checks that the step can be captured
        self.graph: torch.cuda.CUDAGraph | None = None
        self.eager_steps = 0  # steps run outside the graph (all of them without cuda_graphs)
        self._static: tuple[torch.Tensor, torch.Tensor] | None = None
        self._warmup_left = GRAPH_WARMUP_STEPS
        self._largest_batch = 0  # of the warm-up
        self._side_stream: torch.cuda.Stream | None = None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Train on images ``x`` (B, 3, H, W) with labels ``y`` (B,); adds to ``sums``."""
        if not self.cuda_graphs:
            self._step(x, y)
        elif self.graph is None and (self._warmup_left > 0 or len(y) > self._largest_batch):
            # A batch larger than the warm-up's (those were streamed ones with unreadable
            # images dropped) is a shape the capture has not seen: cuDNN would time its
            # algorithms for it, and torch.compile compile, inside the capture.
            self._warmup(x, y)
        elif self.graph is None and len(y) < self._largest_batch:
            # Not captured on a batch smaller than the warm-up's (a streamed one with its
            # unreadable images dropped): every full batch after would then run eagerly.
            self._step(x, y)
        else:
            if self.graph is None:
                self._capture(x, y)
            static_x, static_y = self._static
            if x.shape != static_x.shape or y.shape != static_y.shape:
                self._step(x, y)
                return
            static_x.copy_(x)
            static_y.copy_(y)
            self.graph.replay()

    def take_sums(self) -> torch.Tensor:
        """(summed loss, hits) since the last call, on the device; the running sums restart."""
        sums = self.sums.clone()
        self.sums.zero_()
        return sums

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.eager_steps += 1
        # Autocast's weight cast cache would hold tensors from outside a graph's memory pool.
        with autocast(self.device, self.amp_dtype, cache_enabled=not self.cuda_graphs):
            logits = self.net(x)  # (B, K)
        loss = weighed_cross_entropy(logits.float(), y, self.class_weights, self.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            if self.clip_grad_norm:
                self.scaler.unscale_(self.optimizer)
                self._clip()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            if self.clip_grad_norm:
                self._clip()
            self.optimizer.step()
        if self.ema is not None:
            self.ema()
        hits = (logits.argmax(1) == y).sum()
        self.sums += torch.stack([loss.detach() * y.numel(), hits.to(self.sums.dtype)])

    def _clip(self) -> None:
        params = [p for p in self.model.parameters() if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, self.clip_grad_norm, foreach=True)

    def _warmup(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if self._side_stream is None:
            _tensor_learning_rates(self.optimizer, self.device)
            self._side_stream = torch.cuda.Stream(self.device)
        side, main = self._side_stream, torch.cuda.current_stream(self.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            self._step(x, y)
        main.wait_stream(side)
        self._warmup_left -= 1
        self._largest_batch = max(self._largest_batch, len(y))

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> None:
        # Learning rates must be device tensors, updated in place, for a replay to see them.
        _tensor_learning_rates(self.optimizer, self.device)
        static_x, static_y = x.clone(), y.clone()  # clone keeps channels-last
        # Gradients made inside the capture live in the graph's pool and are overwritten,
        # not accumulated, at each replay.
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        eager_steps = self.eager_steps
        # On the warm-up's stream, which is on the run's GPU: PyTorch's default capture
        # stream is made on the current GPU, and a run on cuda:1 (the current GPU is still
        # cuda:0) would launch its work outside the capture, leaving an empty graph.
        # Thread-local: in PyTorch's default mode ("global") a CUDA call from any thread
        # breaks the capture, and a streamed loader's pin-memory thread allocates pinned
        # memory for the next batch while it runs; that thread never touches this stream.
        with torch.cuda.graph(graph, stream=self._side_stream, capture_error_mode="thread_local"):
            self._step(static_x, static_y)
        self.eager_steps = eager_steps  # capturing runs nothing
        self.graph, self._static = graph, (static_x, static_y)


def _tensor_learning_rates(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    for group in optimizer.param_groups:
        lr = group["lr"]
        if not (isinstance(lr, torch.Tensor) and lr.device == device):
            group["lr"] = torch.tensor(float(lr), dtype=torch.float32, device=device)


@dataclass
class TrainParts:
    """A training run's model, optimizer and step, as ``build_training`` makes them."""

    model: nn.Module  # unwrapped, on the device: what is saved and averaged
    net: nn.Module  # what the step calls: the model, wrapped by DDP and/or torch.compile
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    ema: AveragedModel | None
    step: TrainStep
    amp_dtype: torch.dtype | None
    channels_last: bool
    tuning: FineTuning  # what trains in each epoch (engine.finetune)
    cpu_plan: CpuPlan | None = None  # on a CPU: what was chosen by measuring, and why


def initial_model(
    config: TrainConfig,
    num_classes: int,
    input_size: int,
    pretrained: PretrainedWeights | None = None,
    class_names: list[str] | None = None,
) -> nn.Module:
    """The model a run of ``config`` starts from, its weights drawn right after seeding.

    Runs that differ only in the model start from the same values wherever their builders
    draw the same tensors in the same order: ``plainN`` and ``resnetN`` share every one.

    Args:
        config: the run's configuration (``model``, ``model_kwargs`` and ``seed`` are used).
        num_classes: outputs of the classifier.
        input_size: the image side, for models that are built for one (the Keras seed's).
        pretrained: weights to load over the drawn ones (``resolve_pretrained`` reads those
            of ``config.pretrained``); a classifier they cannot fill keeps its drawn values.
        class_names: the data's classes, which a pretrained classifier must be for.
    """
    kwargs = {**model_info(config.model).size_kwargs(input_size), **config.model_kwargs}
    torch.manual_seed(config.seed)
    model = create_model(config.model, num_classes=num_classes, **kwargs)
    if pretrained is not None:
        load_pretrained(model, pretrained, class_names=class_names)
    return model


def _sync_batchnorm(model: nn.Module, device: torch.device, dist: DistInfo) -> nn.Module:
    """``model`` with SyncBatchNorm for ``--sync-bn``: under torchrun on GPUs; refused on
    the CPU, and warned of in one process, where there is nothing to share."""
    if not dist.enabled:
        warn(
            f"{option('sync_bn', True)} has no effect in one process: it shares BatchNorm "
            "statistics between torchrun's GPU processes",
            SettingWarning,
        )
        return model
    if device.type != "cuda":
        raise ResnetlabError(
            f"{option('sync_bn', True)} needs CUDA devices (PyTorch's SyncBatchNorm runs only on "
            "GPUs); drop it on the CPU"
        )
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def refuse_lone_values(config: TrainConfig, num_classes: int, input_size: int) -> None:
    """Refuse a batch of one image where the model's feature maps reach 1x1: BatchNorm in
    training needs more than one value per channel. PyTorch's own check says so, in a
    forward pass on the meta device (no memory, no arithmetic); a batch of two always has
    two values.

    Raises:
        ResnetlabError: naming the model, the input size and the fix.
    """
    if config.batch_size != 1:
        return
    kwargs = {**model_info(config.model).size_kwargs(input_size), **config.model_kwargs}
    with torch.device("meta"):
        model = create_model(config.model, num_classes=num_classes, **kwargs)
        images = torch.empty(1, 3, input_size, input_size)  # (B, C, H, W)
    try:
        model.train()(images)
    except ValueError as e:
        if "more than 1 value per channel" not in str(e):
            return  # not this: the run itself says what it is
        raise ResnetlabError(
            f"{option('batch_size', 1)}: {config.model} at {input_size}x{input_size} reaches "
            "1x1 feature maps, and BatchNorm in training needs more than one value per "
            f"channel; use a batch of 2 or more, or a larger {option('input_size')}"
        ) from None


def build_training(
    config: TrainConfig,
    device: torch.device,
    *,
    num_classes: int,
    input_size: int,
    dist: DistInfo | None = None,
    pretrained: PretrainedWeights | None = None,
    class_names: list[str] | None = None,
    cpu_plan: CpuPlan | None = None,
    run_steps: int | None = None,
    step_images: int | None = None,
    class_counts: list[int] | None = None,
) -> TrainParts:
    """The model, optimizer, EMA and step of a training run of ``config`` on ``device``.

    Args:
        config: the run's configuration (model, optimizer, precision and speed options).
        device: where to train.
        num_classes: classifier outputs.
        input_size: image side; the course's Keras model is built for it.
        dist: this process's place under torchrun (wraps the model in DDP).
        pretrained: the weights of ``config.pretrained``, read by the caller (a resumed
            run passes none: its checkpoint holds the weights).
        class_names: the data's classes, which a pretrained classifier must be for.
        cpu_plan: on the CPU, the plan to train with (a resumed run keeps the one it
            started with); default: the calibration's (``engine.calibrate.plan_cpu``),
            which measures nothing for a run of few ``run_steps`` (of ``step_images`` each,
            where a batch larger than the data makes them fewer than the batch).
        class_counts: training images per class, which ``config.class_weights`` weighs by.
    """
    dist = dist or DistInfo()
    refuse_lone_values(config, num_classes, input_size)
    # The parts are built in the order they wrap each other (model, layout, CPU plan,
    # SyncBN, optimizer, EMA, DDP, compile, step).
    resolve_cuda_graphs(config, device.type, dist.world_size)  # an impossible one: refused now
    if device.type == "cpu":
        from .calibrate import plan_cpu  # (which times this module's TrainStep)

        keep_freed_memory()
        if (note := slow_precision_note(config.precision)) is not None:
            warn(note, SettingWarning)
        if cpu_plan is None:
            cpu_plan = plan_cpu(
                config,
                num_classes=num_classes,
                input_size=input_size,
                dist=dist,
                run_steps=run_steps,
                step_images=step_images,
            )
        amp_dtype, channels_last = cpu_plan.amp_dtype, cpu_plan.channels_last
    else:
        cpu_plan = None
        amp_dtype = resolve_precision(config.precision, device)
        channels_last = resolve_channels_last(config.channels_last, device)
    model = initial_model(config, num_classes, input_size, pretrained, class_names).to(device)
    tuning = fine_tuning(config, model)
    cuda_graphs = resolve_cuda_graphs(config, device.type, dist.world_size, tuning.head_epochs)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cpu_plan is not None:
        use_matmul_convs(model, input_size, cpu_plan.matmul_convs)
    if config.sync_bn:
        model = _sync_batchnorm(model, device, dist)
    fused = cpu_plan.fused_optimizer if cpu_plan is not None else None  # None: the device's
    optimizer = build_optimizer(model, config, device, capturable=cuda_graphs, fused=fused)
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    ema = _ema(model, device, config.ema_decay) if config.ema_decay > 0 else None
    net = _wrapped(model, device, dist, tuning, compile=config.compile)
    step = TrainStep(
        net,
        optimizer,
        model=model,
        amp_dtype=amp_dtype,
        label_smoothing=config.label_smoothing,
        scaler=scaler,
        ema=ema,
        ema_decay=config.ema_decay,
        cuda_graphs=cuda_graphs,
        clip_grad_norm=config.clip_grad_norm,
        class_weights=class_weights(config.class_weights, class_counts, device),
    )
    return TrainParts(
        model, net, optimizer, scaler, ema, step, amp_dtype, channels_last, tuning, cpu_plan
    )


def class_weights(kind: str, counts: list[int] | None, device: torch.device) -> torch.Tensor | None:
    """The loss's weight of each class: None for ``none`` (each image weighs the same); for
    ``balanced``, ``images / (classes * images of the class)``, scikit-learn's "balanced",
    so that each class weighs as much in all as a class of the mean size (a class without
    training images weighs 1, which no image of it uses)."""
    if kind == "none" or not counts:
        return None
    return torch.tensor(balanced_weights(counts), dtype=torch.float32, device=device)


def balanced_weights(counts: list[int]) -> list[float]:
    """``images / (classes * images of the class)`` for each class's image count."""
    total, k = sum(counts), len(counts)
    return [total / (k * n) if n else 1.0 for n in counts]


def weighed_cross_entropy(
    logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None, label_smoothing: float
) -> torch.Tensor:
    """The cross-entropy loss, each image's weighed by its class's weight (``weights``; None:
    the mean). Not ``F.cross_entropy(weight=...)``: with label smoothing that weighs each
    class's share of every image's smoothed target too, which pushes the images of a large
    class towards a heavy small one (at 99:1, a large class's image would be best answered
    with 84% on the small class)."""
    if weights is None:
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    each = F.cross_entropy(logits, y, reduction="none", label_smoothing=label_smoothing)
    weight = weights[y]
    return (each * weight).sum() / weight.sum()


def weighed_classes_note(class_names: list[str], counts: list[int]) -> str:
    """The line a run with ``--class-weights balanced`` logs: each class's weight in the
    loss, the heaviest (smallest) first, up to six."""
    weights = balanced_weights(counts)
    order = sorted(range(len(counts)), key=lambda c: -weights[c])
    shown = ", ".join(f"{class_names[c]!r} x{weights[c]:.2f}" for c in order[:6])
    more = f" and {len(order) - 6:,} more" if len(order) > 6 else ""
    return (
        f"each class weighs in the loss in inverse proportion to its training images "
        f"({option('class_weights', 'balanced')}): {shown}{more}"
    )


def _ema(model: nn.Module, device: torch.device, decay: float) -> AveragedModel:
    return AveragedModel(
        model,
        device=device,  # its update counter too, so that a CUDA graph can advance it
        multi_avg_fn=get_ema_multi_avg_fn(decay),
        use_buffers=True,
    )


def _wrapped(
    model: nn.Module, device: torch.device, dist: DistInfo, tuning: FineTuning, *, compile: bool
) -> nn.Module:
    """What the step calls: ``model`` under DDP when there are several processes, then
    compiled when asked."""
    net = model
    if dist.enabled:
        ids = [device.index] if device.type == "cuda" else None
        # Stages frozen only for the head phase get no gradients then: DDP must look for them.
        net = DistributedDataParallel(
            net, device_ids=ids, find_unused_parameters=tuning.head_epochs > 0
        )
    return torch.compile(net) if compile else net


def fine_tuning(config: TrainConfig, model: nn.Module) -> FineTuning:
    """The run's ``FineTuning``; freezes the stages of ``--freeze`` now, before the optimizer."""
    report = getattr(model, "pretrained", None)
    head_epochs = head_epochs_for(config, report is not None and report.head_is_new)
    # Built first: a --freeze the model has no stage for is refused before any warning.
    tuning = FineTuning(
        model, freeze=config.freeze, head_epochs=head_epochs, freeze_bn=config.freeze_bn
    )
    if config.freeze != "backbone" and tuning.frozen == tuning.num_stages:
        # The same linear probe under the last stage's name (--freeze layer4 of a resnet18).
        given = {"head_epochs"} if config.head_epochs else set()
        whole = f" ({getattr(model, 'model_name', 'the model')}'s last stage: the whole backbone)"
        warn_idle_under_full_freeze(config, given | {"layer_lr_decay"}, whole)
    if config.freeze and not config.pretrained:
        warn(
            f"{option('freeze', config.freeze)} without {option('pretrained')}: the frozen "
            "layers keep the random weights they start with; add "
            f"{option('pretrained')} (torchvision, timm:MODEL.TAG, a weights file or a run "
            "folder)",
            SettingWarning,
        )
    if config.freeze_bn and not config.pretrained:
        # They normalise nothing then: a CIFAR net's loss ran to NaN within an epoch.
        warn(
            f"{option('freeze_bn')} without {option('pretrained')}: every BatchNorm keeps the "
            "statistics it starts with (mean 0, variance 1), which normalise nothing, and "
            f"training may diverge; drop {option('freeze_bn')}, or add {option('pretrained')}",
            SettingWarning,
        )
    return tuning
