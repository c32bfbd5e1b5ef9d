"""The two sides of a speed comparison, built alike for ``bench train`` and ``bench infer``.

A side is a model, one call of its work on a fixed synthetic batch, and what it is. Ours
is what resnetlab's own commands run: for training, the model, optimizer and
``TrainStep`` of ``engine.step.build_training`` with a ``TrainConfig`` resolved as
``resnetlab train`` resolves it (on a CPU, with the calibrated plan); for inference, the
``predict``/``eval`` path (``engine.inference.inference_model``: BN folded) under
``torch.inference_mode``. The peer is torchvision's model (or, for the CIFAR nets and the
Keras seed, the same architecture written the usual way) in ``PlainLoop`` for training,
in eval mode under ``torch.no_grad`` for inference.

Settings named on the command line (precision, channels-last, compile) apply to both
sides; left out, each runs its own defaults: ours resnetlab's, the peer PyTorch's
(float32, NCHW, eager). The usual-way references always run eager, NCHW and float32.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..data.decode import available_cpus, cpu_quota, usable_cpus
from ..engine.calibrate import cpu_threads, synthetic_batch
from ..engine.config import TrainConfig, resolve_config, resolve_cuda_graphs
from ..engine.distributed import resolve_device
from ..engine.inference import inference_model
from ..engine.optim import set_lr
from ..engine.step import (
    GRAPH_WARMUP_STEPS,
    autocast,
    build_training,
    configure_backends,
    precision_name,
    resolve_channels_last,
    resolve_precision,
)
from ..engine.threads import fit_threads_to_quota
from ..errors import ResnetlabError, SettingWarning, count_argument, option, shown, warn
from ..models import create_model, model_info
from .reference import PlainLoop, peer_model

PEERS = ("torchvision",)

Call = Callable[[], None]


@dataclass
class BenchSpec:
    """What a ``bench train`` or ``bench infer`` command asked for, checked."""

    model: str
    training: bool
    batch_size: int
    input_size: int
    num_classes: int
    precision: str | None  # as named on the command line; None: each side's default
    channels_last: bool | None
    compile: bool
    device: torch.device
    steps: int
    warmup: int
    repeats: int
    vs: str | None
    config: TrainConfig | None = None  # training: ours, as `resnetlab train` resolves it
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # a model file's options

    def build_model(self) -> nn.Module:
        """Our model of the spec, in eval mode, with freshly initialised weights (seeded)."""
        torch.manual_seed(0)
        kwargs = {**model_info(self.model).size_kwargs(self.input_size), **self.model_kwargs}
        return create_model(self.model, num_classes=self.num_classes, **kwargs).eval()


def model_of(model: str) -> tuple[str, int | None, int | None, dict[str, Any]]:
    """A registered name, or a model file's architecture: (name, input size, classes,
    options), the sizes None for a name (its own defaults apply)."""
    from ..models.files import names_a_file, read_model_meta

    if not isinstance(model, str | os.PathLike) or not names_a_file(model):
        return model, None, None, {}  # model_info names what is no model name

    meta = read_model_meta(model)
    options = {k: v for k, v in meta.model_kwargs.items() if k not in ("input_size", "num_classes")}
    return meta.model, meta.input_size, meta.num_classes, options


def bench_spec(
    model: str,
    *,
    training: bool,
    batch_size: int,
    input_size: int | None,
    num_classes: int | None,
    precision: str | None,
    channels_last: bool | None,
    compile: bool,
    device: str,
    steps: int,
    warmup: int,
    repeats: int,
    vs: str | None,
    threads: int | None,
    **train_options: Any,
) -> BenchSpec:
    """Check the options of ``bench train`` and ``bench infer``, resolve their defaults.

    Args:
        model: a registered model name, or a model file: its architecture, options, classes
            and input size (its weights are not read: speed does not depend on them).
        training: ``bench train`` (else ``bench infer``).
        batch_size: images per step (for inference: of the throughput figure).
        input_size, num_classes: default: the model's.
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16``; named, it applies to the peer
            too; left out, ours runs ``auto``, the peer fp32.
        channels_last: named, applies to the peer too; default: ours as ``train`` chooses,
            the peer NCHW.
        compile: ``torch.compile`` ours and (when it is torchvision's model) the peer.
        device: ``auto``, ``cpu``, ``cuda``...
        steps: steps (forward passes) per timed repeat.
        warmup: untimed steps first (for CUDA graphs, at least the warm-up and capture;
            with ``compile``, at least 2: the first calls compile).
        repeats: timed repeats, ours and the peer's in turns.
        vs: ``torchvision`` to run the peer side by side.
        threads: CPU threads for PyTorch (default: its own choice).
        train_options: ``cuda_graphs`` and ``optimizer`` of ``bench train``.
    """
    batch_size = count_argument(batch_size, "--batch-size")
    steps = count_argument(steps, "--steps")
    repeats = count_argument(repeats, "--repeats")
    warmup = count_argument(warmup, "--warmup", minimum=0)
    if vs is not None and vs not in PEERS:
        raise ResnetlabError(f"unknown peer {vs!r}; choose {', '.join(PEERS)}")
    for name, value in (("--channels-last", channels_last), ("--compile", compile)):
        if not isinstance(value, bool) and (value is not None or name == "--compile"):
            raise ResnetlabError(f"{name} is True or False, got {shown(value)}")  # 'no' is true
    use_threads(threads)
    device_ = resolve_device(device)
    named_as, (model, file_size, file_classes, options) = model, model_of(model)
    info = model_info(model)
    input_size, num_classes = input_size or file_size, num_classes or file_classes
    config = None
    if training:
        named = dict(batch_size=batch_size, input_size=input_size, precision=precision)
        named.update(channels_last=channels_last, compile=compile or None, device=str(device_))
        given = {k: v for k, v in train_options.items() if v is not None}
        given.setdefault("recipe", "modern")  # auto would need a data set to decide
        if options:
            given["model_kwargs"] = {**options, **given.get("model_kwargs", {})}
        config = resolve_config(model=model, **named, **given)
        if resolve_cuda_graphs(config, device_.type):  # time replays only: warm-up, capture
            warmup = max(warmup, GRAPH_WARMUP_STEPS + 2)
    if compile:  # the first calls compile (training: forward, then backward)
        warmup = max(warmup, 2)
    configure_backends(device_, deterministic=False)
    size, classes = input_size or info.input_size, num_classes or info.num_classes
    if vs is not None:  # a model without a peer is refused now, not once ours is calibrated
        with torch.device("meta"):  # built for its shapes only: nothing is allocated
            peer_model(model, num_classes=classes, input_size=size)
            if options:
                _check_peer_architecture(named_as, model, options, size, classes)
    return BenchSpec(
        model, training, batch_size, size, classes, precision, channels_last, compile,
        device_, steps, warmup, repeats, vs, config, options,
    )  # fmt: skip


def use_threads(threads: int | None) -> None:
    """Set PyTorch's CPU thread count when one is given; more threads than cores is warned
    of (they take turns on the cores, which times the crowding, not the machine). Not given,
    PyTorch's count within a CPU quota, as ``train`` runs (``fit_threads_to_quota``): set
    here, before either side is built, the peer and ours run on the same count."""
    if threads is None:
        fit_threads_to_quota()
    else:
        threads = count_argument(threads, "--threads")  # '2' was a comparison's TypeError
        cores = usable_cpus()
        if threads > cores:
            where = f"{cores} cores this process may run on"
            if cores < available_cpus() and (quota := cpu_quota()):  # docker --cpus
                where = f"{cores} CPUs the quota of this container allows ({quota[1]})"
            warn(
                f"--threads {threads} is more than the {where}: the threads take turns, and "
                f"the timings show that; give at most {cores}",
                SettingWarning,
            )
        torch.set_num_threads(threads)


def _check_peer_architecture(
    path: str, model: str, options: dict[str, Any], input_size: int, num_classes: int
) -> None:
    """Refuse to compare a model file whose options change its network (``shortcut='B'``:
    more parameters) with the peer, which is the registered architecture; options that
    leave the network as it is (``zero_init_residual``) keep the comparison."""
    size_kwargs = model_info(model).size_kwargs(input_size)

    def parameters(**kwargs: Any) -> int:
        net = create_model(model, num_classes=num_classes, **size_kwargs, **kwargs)
        return sum(p.numel() for p in net.parameters())

    ours, registered = parameters(**options), parameters()
    if ours != registered:
        named = ", ".join(f"{k}={v!r}" for k, v in options.items())
        raise ResnetlabError(
            f"{path} is {model} with {named} ({ours:,} parameters), which its peer is not "
            f"({model} has {registered:,}); leave out {option('vs')} to time your model alone, "
            f"or compare {option('model', model)}"
        )


@dataclass
class Side:
    """One side of a comparison: what it is, its model, and a call of its work."""

    what: str
    model: nn.Module
    precision: str
    channels_last: bool
    compile: bool
    make_call: Callable[[int], Call]  # batch size -> one call of its work on a fixed batch
    facts: Callable[[], dict[str, Any]] = dict  # more of what it ran, read after the timing

    def record(self) -> dict[str, Any]:
        """What this side was, for the benchmark record."""
        return {
            "what": self.what,
            "precision": self.precision,
            "channels_last": self.channels_last,
            "compile": self.compile,
            **self.facts(),
        }


def side_settings(spec: BenchSpec, ours: dict[str, Any]) -> dict[str, Any]:
    """The record's ``settings``: the command's sizes and counts, and how ours ran (moved
    out of ``ours``, the record of our side)."""
    how = ("precision", "channels_last", "compile", "cuda_graphs", "optimizer")
    return {
        "batch_size": spec.batch_size,
        "input_size": spec.input_size,
        "num_classes": spec.num_classes,
        **{key: ours.pop(key) for key in how if key in ours},
        "steps": spec.steps,
        "warmup": spec.warmup,
        "repeats": spec.repeats,
    }


def ours_side(spec: BenchSpec) -> Side:
    """Our training step (``spec.training``) or our inference path."""
    if spec.training:
        return _ours_training(spec)
    model = spec.build_model()
    channels_last = resolve_channels_last(spec.channels_last, spec.device)
    amp = resolve_precision(spec.precision or "auto", spec.device)
    net = inference_model(  # in ``amp`` as predict runs it (``--precision``)
        model,
        spec.device,
        channels_last=channels_last,
        input_size=spec.input_size,
        precision=precision_name(amp),
    )
    if spec.compile:
        net = torch.compile(net)
    return Side(
        f"resnetlab {spec.model}, the predict/eval path (BN folded)",
        net,
        precision_name(amp),
        channels_last,
        spec.compile,
        _inference_calls(spec, net, amp, channels_last, torch.inference_mode),
    )


def _ours_training(spec: BenchSpec) -> Side:
    config = spec.config
    assert config is not None
    parts = build_training(
        config, spec.device, num_classes=spec.num_classes, input_size=spec.input_size
    )
    step, optimizer = parts.step, parts.optimizer

    def make_call(batch: int) -> Call:
        x, y = synthetic_batch(
            batch, spec.input_size, spec.num_classes, spec.device, parts.channels_last
        )

        def call() -> None:
            set_lr(optimizer, config.lr)  # as the training loop does before every step
            with cpu_threads(parts.cpu_plan):  # the peer's calls keep PyTorch's count
                step(x, y)

        return call

    def facts() -> dict[str, Any]:
        found = {
            "cuda_graphs": step.cuda_graphs,
            "graphed": step.graph is not None,
            "optimizer": describe_optimizer(optimizer, spec.device),
        }
        if parts.cpu_plan is not None:
            found["cpu_plan"] = parts.cpu_plan.to_record()
        return found

    return Side(
        f"resnetlab {spec.model}, the train command's step",
        parts.model,
        precision_name(parts.amp_dtype),
        parts.channels_last,
        config.compile,
        make_call,
        facts,
    )


def peer_side(spec: BenchSpec) -> Side:
    """The peer of ``spec.vs``, training in ``PlainLoop`` or inferring under ``no_grad``."""
    torch.manual_seed(spec.config.seed if spec.config is not None else 0)
    peer = peer_model(spec.model, num_classes=spec.num_classes, input_size=spec.input_size)
    if peer.usual_way:
        channels_last, amp, compiled = False, None, False
    else:
        channels_last = bool(spec.channels_last)  # named: as ours; left out: PyTorch's NCHW
        amp = resolve_precision(spec.precision, spec.device) if spec.precision else None
        compiled = spec.compile
    net = peer.model.to(spec.device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if compiled:
        net = torch.compile(net)
    what = (peer.description, net, precision_name(amp), channels_last, compiled)
    if not spec.training:
        return Side(*what, _inference_calls(spec, net.eval(), amp, channels_last, torch.no_grad))
    loop = PlainLoop(net, spec.config, amp)

    def make_call(batch: int) -> Call:
        x, y = synthetic_batch(batch, spec.input_size, spec.num_classes, spec.device, channels_last)
        return lambda: loop(x, y)

    def facts() -> dict[str, Any]:
        return {
            "loop": "plain loop: zero_grad, forward, loss, backward, step, loss.item()",
            "optimizer": describe_optimizer(loop.optimizer, spec.device),
        }

    return Side(*what, make_call, facts)


def _inference_calls(
    spec: BenchSpec,
    net: nn.Module,
    amp: torch.dtype | None,
    channels_last: bool,
    grad_mode: Callable[[], Any],
) -> Callable[[int], Call]:
    def make_call(batch: int) -> Call:
        x, _ = synthetic_batch(batch, spec.input_size, 1, spec.device, channels_last)

        def call() -> None:
            with grad_mode(), autocast(spec.device, amp):
                net(x)

        return call

    return make_call


def describe_optimizer(optimizer: torch.optim.Optimizer, device: torch.device) -> str:
    """``SGD (foreach)``: the optimizer and the implementation it runs."""
    options = optimizer.defaults
    if options.get("fused"):
        kind = "fused"
    elif options.get("foreach"):
        kind = "foreach"
    elif options.get("foreach") is None:
        kind = ("foreach" if device.type == "cuda" else "for-loop") + ", PyTorch's default"
    else:
        kind = "for-loop"
    return f"{type(optimizer).__name__} ({kind})"
