"""``resnetlab bench infer``: batch-1 latency and large-batch throughput, ours and a peer's.

Ours is what ``predict`` and ``eval`` run (``engine.inference.inference_model``: BN folded
into the convolutions, channels-last) under ``torch.inference_mode`` and autocast at the
resolved precision (bf16 on GPUs that support it). The peer is torchvision's model (or the
usual-way reference) in eval mode under ``torch.no_grad``. Settings named on the command
line apply to both sides, as in ``bench train``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..engine.distributed import resolve_device
from ..engine.inference import inference_model
from ..engine.step import autocast, configure_backends, precision_name, resolve_precision
from ..errors import ResnetlabError
from ..models import create_model, model_info
from .records import environment, load_average
from .reference import Peer, peer_model
from .timing import Clock, spread, time_steps
from .training import PEERS

RUNTIMES = ("torch", "onnxruntime", "onnxruntime-int8")


def bench_infer(
    model: str,
    *,
    batch_size: int = 256,
    input_size: int | None = None,
    num_classes: int | None = None,
    precision: str | None = None,
    channels_last: bool | None = None,
    compile: bool = False,
    device: str = "auto",
    steps: int = 10,
    warmup: int = 3,
    repeats: int = 5,
    vs: str | None = None,
    threads: int | None = None,
    runtime: str = "torch",
) -> dict[str, Any]:
    """Measure inference latency (batch 1) and throughput (``batch_size``); returns the record.

    Args:
        model: a registered model name.
        batch_size: images per forward pass for the throughput figure.
        input_size: image side (default: the model's).
        num_classes: classifier outputs (default: the model's).
        precision: ``auto`` (default), ``fp32``, ``bf16`` or ``fp16``; named, applies to the peer.
        channels_last: named, applies to the peer too; default: on for CUDA and CPU (ours).
        compile: ``torch.compile`` ours and (when it is torchvision's model) the peer.
        device: ``auto``, ``cpu``, ``cuda``...
        steps: forward passes per timed repeat.
        warmup: untimed passes first.
        repeats: timed repeats; figures are their median, min and max.
        vs: ``torchvision`` to run the peer side by side.
        threads: CPU threads for PyTorch (default: its own choice), and for onnxruntime.
        runtime: ``torch``, or ``onnxruntime``/``onnxruntime-int8`` against our PyTorch path.
    """
    if min(batch_size, steps, repeats) < 1 or warmup < 0:
        raise ResnetlabError("--batch-size, --steps and --repeats must be at least 1")
    if vs is not None and vs not in PEERS:
        raise ResnetlabError(f"unknown peer {vs!r}; choose {', '.join(PEERS)}")
    if threads is not None:
        torch.set_num_threads(threads)
    device_ = resolve_device(device)
    info = model_info(model)
    size = input_size or info.input_size
    classes = num_classes or info.num_classes
    configure_backends(device_, deterministic=False)
    env = environment(device_)
    clock = Clock(device_)

    kwargs = info.size_kwargs(size)
    torch.manual_seed(0)
    fresh = create_model(model, num_classes=classes, **kwargs).eval()
    ours_net = inference_model(
        fresh,
        device_,
        channels_last=channels_last,
        input_size=size,
    )
    ours_cl = channels_last if channels_last is not None else device_.type in ("cuda", "cpu")
    ours_amp = resolve_precision(precision or "auto", device_)
    if compile:
        ours_net = torch.compile(ours_net)
    ours = _runner(ours_net, ours_amp, device_, torch.inference_mode)
    ours_what = f"resnetlab {model}, the predict/eval path (BN folded)"

    peer = None
    if runtime != "torch":
        if vs is not None or device_.type != "cpu" or ours_amp is not None or compile:
            raise ResnetlabError(
                f"--runtime {runtime} runs against our PyTorch path in fp32 on the CPU; "
                "drop --vs, --compile and --precision, and use --device cpu"
            )
        peer = Peer(ours_net, ours_what, usual_way=False)
        peer_cl, peer_amp, peer_compile, theirs = ours_cl, None, False, ours
        ours, ours_what = _onnxruntime(fresh, model, size, classes, runtime)
        ours_cl = False
    elif vs is not None:
        peer = peer_model(model, num_classes=classes, input_size=size)
        if peer.usual_way:
            peer_cl, peer_amp, peer_compile = False, None, False
        else:
            peer_cl = bool(channels_last)
            peer_amp = resolve_precision(precision, device_) if precision else None
            peer_compile = compile
        net = peer.model.to(device_).eval()
        if peer_cl:
            net = net.to(memory_format=torch.channels_last)
        if peer_compile:
            net = torch.compile(net)
        theirs = _runner(net, peer_amp, device_, torch.no_grad)

    results: dict[str, dict[str, list[float]]] = {"ours": {}, "peer": {}}
    for label, batch in (("latency_ms", 1), ("images_per_s", batch_size)):
        xo = _images(batch, size, device_, ours_cl)
        xp = _images(batch, size, device_, peer_cl) if peer is not None else None
        for _ in range(warmup):
            ours(xo)
            if peer is not None:
                theirs(xp)
        ours_values, peer_values = [], []
        for _ in range(repeats):
            seconds = time_steps(lambda: ours(xo), steps, clock)  # noqa: B023
            ours_values.append(_figure(label, seconds, steps, batch))
            if peer is not None:
                seconds = time_steps(lambda: theirs(xp), steps, clock)  # noqa: B023
                peer_values.append(_figure(label, seconds, steps, batch))
        results["ours"][label] = ours_values
        results["peer"][label] = peer_values

    record: dict[str, Any] = {
        "kind": "infer",
        "model": model,
        "settings": {
            "batch_size": batch_size,
            "input_size": size,
            "num_classes": classes,
            "precision": "int8" if runtime.endswith("int8") else precision_name(ours_amp),
            "channels_last": ours_cl,
            "runtime": runtime,
            "compile": compile,
            "steps": steps,
            "warmup": warmup,
            "repeats": repeats,
        },
        "ours": {
            "what": ours_what,
            "latency_ms": spread(results["ours"]["latency_ms"]),
            "images_per_s": spread(results["ours"]["images_per_s"]),
        },
    }
    if peer is not None:
        record["peer"] = {
            "what": peer.description,
            "precision": precision_name(peer_amp),
            "channels_last": peer_cl,
            "compile": peer_compile,
            "latency_ms": spread(results["peer"]["latency_ms"]),
            "images_per_s": spread(results["peer"]["images_per_s"]),
        }
        # Speed ratios, ours over theirs: above 1 means ours is faster.
        record["ratio"] = {
            "latency": spread(
                [
                    p / o
                    for o, p in zip(
                        results["ours"]["latency_ms"], results["peer"]["latency_ms"], strict=True
                    )
                ]
            ),
            "throughput": spread(
                [
                    o / p
                    for o, p in zip(
                        results["ours"]["images_per_s"],
                        results["peer"]["images_per_s"],
                        strict=True,
                    )
                ]
            ),
        }
    record.update(env)
    record["load_after"] = load_average()
    return record


def _runner(
    net: torch.nn.Module,
    amp: torch.dtype | None,
    device: torch.device,
    grad_mode: Callable[[], Any],
) -> Callable[[torch.Tensor], None]:
    def run(x: torch.Tensor) -> None:
        with grad_mode(), autocast(device, amp):
            net(x)

    return run


def _onnxruntime(
    net: torch.nn.Module, model: str, size: int, classes: int, runtime: str
) -> tuple[Callable[[torch.Tensor], None], str]:
    """``net`` exported to ONNX (int8 for ``onnxruntime-int8``) and run by onnxruntime."""
    import tempfile

    from ..export import OnnxModel, import_extra
    from ..export.exporter import write_unchecked_onnx
    from ..models import ModelMeta

    if runtime not in RUNTIMES:
        raise ResnetlabError(f"unknown runtime {runtime!r}; choose {', '.join(RUNTIMES)}")
    ort = import_extra("onnxruntime", f"--runtime {runtime}")
    int8 = runtime == "onnxruntime-int8"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{model}.onnx"
        write_unchecked_onnx(net, ModelMeta(model, {}, classes, size), path, int8=int8)
        onnx_model = OnnxModel(path, threads=torch.get_num_threads())

    def run(x: torch.Tensor) -> None:
        onnx_model.run(x.numpy())

    what = f"onnxruntime {ort.__version__} (CPU), {model} exported as `resnetlab export` does"
    return run, what + (", int8" if int8 else "")


def _images(batch: int, size: int, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _figure(label: str, seconds: float, steps: int, batch: int) -> float:
    return seconds / steps * 1000 if label == "latency_ms" else steps * batch / seconds
