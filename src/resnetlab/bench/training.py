"""``resnetlab bench train``: images per second of full training steps, ours and a peer's.

Ours is what ``resnetlab train`` runs: the model, optimizer and ``TrainStep`` come from
``engine.step.build_training`` with a ``TrainConfig`` resolved as the train command
resolves it. The peer is torchvision's model (or the usual-way reference) in
``PlainLoop``. Both train on the same synthetic batch, already on the device, so that only
the step is timed. After warm-up, each repeat times ``steps`` steps of ours and then of the
peer, so that both see the same machine; the ratio is the median of the per-repeat ratios.

Settings named on the command line (precision, channels-last, compile) apply to both
sides; left out, each side runs its own defaults: ours the train command's (bf16 on GPUs
that support it, channels-last), the peer PyTorch's (float32, NCHW, eager). The usual-way
references always run eager, NCHW and float32.
"""

from __future__ import annotations

from typing import Any

import torch

from ..analysis.summary import training_flops
from ..engine.config import resolve_config
from ..engine.distributed import resolve_device
from ..engine.optim import set_lr
from ..engine.step import (
    GRAPH_WARMUP_STEPS,
    build_training,
    configure_backends,
    precision_name,
    resolve_precision,
)
from ..errors import ResnetlabError
from ..models import create_model, model_info
from .records import environment, load_average
from .reference import PlainLoop, peer_model
from .timing import Clock, PeakMemory, matmul_peak_tflops, spread, time_steps

PEERS = ("torchvision",)


def bench_train(
    model: str,
    *,
    batch_size: int = 128,
    input_size: int | None = None,
    num_classes: int | None = None,
    precision: str | None = None,
    channels_last: bool | None = None,
    compile: bool = False,
    cuda_graphs: bool = False,
    optimizer: str | None = None,
    device: str = "auto",
    steps: int = 10,
    warmup: int = 5,
    repeats: int = 5,
    vs: str | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Measure training throughput; returns the record (see ``records``) without saving it.

    Args:
        model: a registered model name.
        batch_size: images per step.
        input_size: image side (default: the model's).
        num_classes: classifier outputs (default: the model's).
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16``; named, it applies to the peer too.
        channels_last: named, applies to the peer too; default: the train command's.
        compile: ``torch.compile`` ours and (when it is torchvision's model) the peer.
        cuda_graphs: capture our step into a CUDA graph (ours only: the peer has none).
        optimizer: ``sgd`` (default), ``adam`` or ``adamw``, with the recipe's settings.
        device: ``auto``, ``cpu``, ``cuda``...
        steps: steps per timed repeat.
        warmup: untimed steps first (at least the CUDA-graph warm-up and capture).
        repeats: timed repeats; figures are their median, min and max.
        vs: ``torchvision`` to run the peer side by side.
        threads: CPU threads for PyTorch (default: its own choice).
    """
    if min(batch_size, steps, repeats) < 1 or warmup < 0:
        raise ResnetlabError("--batch-size, --steps and --repeats must be at least 1")
    if vs is not None and vs not in PEERS:
        raise ResnetlabError(f"unknown peer {vs!r}; choose {', '.join(PEERS)}")
    if threads is not None:
        torch.set_num_threads(threads)
    if cuda_graphs:  # time replays only: the eager warm-up steps and the capture come first
        warmup = max(warmup, GRAPH_WARMUP_STEPS + 2)
    device_ = resolve_device(device)
    info = model_info(model)
    config = resolve_config(
        recipe="modern",  # a step of SGD; the auto recipe would need a data set to decide
        model=model,
        batch_size=batch_size,
        input_size=input_size,
        precision=precision,
        channels_last=channels_last,
        compile=compile or None,
        cuda_graphs=cuda_graphs or None,
        optimizer=optimizer,
        device=str(device_),
    )
    size = config.input_size or info.input_size
    classes = num_classes or info.num_classes
    configure_backends(device_, config.deterministic)
    env = environment(device_)
    clock = Clock(device_)

    with PeakMemory(device_) as ours_memory:
        parts = build_training(config, device_, num_classes=classes, input_size=size)
        x, y = _batch(batch_size, size, classes, device_, parts.channels_last)
        step, optimizer_ = parts.step, parts.optimizer

        def ours() -> None:
            set_lr(optimizer_, config.lr)  # as the training loop does before every step
            step(x, y)

        for _ in range(warmup):
            ours()
        clock.start()
        clock.stop()  # the warm-up's queued work done

    peer = peer_loop = None
    if vs is not None:
        with PeakMemory(device_) as peer_memory:
            torch.manual_seed(config.seed)
            peer = peer_model(model, num_classes=classes, input_size=size)
            if peer.usual_way:
                peer_cl, peer_amp, peer_compile = False, None, False
            else:
                peer_cl = bool(channels_last)  # named: as ours; left out: PyTorch's NCHW
                peer_amp = resolve_precision(precision, device_) if precision else None
                peer_compile = compile
            net = peer.model.to(device_)
            if peer_cl:
                net = net.to(memory_format=torch.channels_last)
            if peer_compile:
                net = torch.compile(net)
            peer_loop = PlainLoop(net, config, peer_amp)
            px, py = _batch(batch_size, size, classes, device_, peer_cl)

            def theirs() -> None:
                peer_loop(px, py)

            for _ in range(warmup):
                theirs()
            clock.start()
            clock.stop()

    ours_rates, peer_rates, ratios = [], [], []
    for _ in range(repeats):
        ours_rates.append(steps * batch_size / time_steps(ours, steps, clock))
        if peer_loop is not None:
            peer_rates.append(steps * batch_size / time_steps(theirs, steps, clock))
            ratios.append(ours_rates[-1] / peer_rates[-1])

    flops = _training_flops(config.model, classes, size, config.model_kwargs)
    peak = matmul_peak_tflops(device_)
    ours_result = {
        "images_per_s": spread(ours_rates),
        "peak_memory_mib": ours_memory.mib,
        "graphed": step.graph is not None,
    }
    if peak:
        achieved = spread(ours_rates)["median"] * flops / 1e12
        ours_result["tflops"] = round(achieved, 1)
        ours_result["fraction_of_bf16_peak"] = round(achieved / peak, 4)
    record: dict[str, Any] = {
        "kind": "train",
        "model": model,
        "settings": {
            "batch_size": batch_size,
            "input_size": size,
            "num_classes": classes,
            "precision": precision_name(parts.amp_dtype),
            "channels_last": parts.channels_last,
            "compile": config.compile,
            "cuda_graphs": config.cuda_graphs,
            "optimizer": _describe_optimizer(optimizer_, device_),
            "steps": steps,
            "warmup": warmup,
            "repeats": repeats,
        },
        "ours": {"what": f"resnetlab {model}, the train command's step", **ours_result},
        "train_flops_per_image": flops,
        "bf16_matmul_peak_tflops": peak,
    }
    if peer is not None:
        peer_result: dict[str, Any] = {
            "what": peer.description,
            "loop": "plain loop: zero_grad, forward, loss, backward, step, loss.item()",
            "precision": precision_name(peer_amp),
            "channels_last": peer_cl,
            "compile": peer_compile,
            "optimizer": _describe_optimizer(peer_loop.optimizer, device_),
            "images_per_s": spread(peer_rates),
            "peak_memory_mib": peer_memory.mib,
        }
        if peak:
            achieved = spread(peer_rates)["median"] * flops / 1e12
            peer_result["fraction_of_bf16_peak"] = round(achieved / peak, 4)
        record["peer"] = peer_result
        record["ratio"] = spread(ratios)
    record.update(env)
    record["load_after"] = load_average()
    return record


def _batch(
    batch_size: int, size: int, classes: int, device: torch.device, channels_last: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed synthetic batch on the device, in the layout the device loader yields."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 3, size, size, generator=generator).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch_size,), generator=generator).to(device)
    return x, y


def _training_flops(name: str, classes: int, size: int, model_kwargs: dict) -> int:
    """FLOPs of one training step per image, counted on a copy of the model on the meta device."""
    kwargs = dict(model_kwargs)
    if model_info(name).family == "keras":
        kwargs.setdefault("input_size", size)
    with torch.device("meta"):
        model = create_model(name, num_classes=classes, **kwargs)
    return training_flops(model, size)


def _describe_optimizer(optimizer: torch.optim.Optimizer, device: torch.device) -> str:
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
