"""``resnetlab bench infer``: batch-1 latency and large-batch throughput, ours and a peer's.

Ours is what ``predict`` and ``eval`` run (``engine.inference.inference_model``: BN folded
into the convolutions, channels-last) under ``torch.inference_mode`` and autocast at the
resolved precision (bf16 on GPUs that support it). The peer is torchvision's model (or the
usual-way reference) in eval mode under ``torch.no_grad``. Both are built in ``sides``;
settings named on the command line apply to both, as in ``bench train``. With
``runtime="onnxruntime"`` (or ``onnxruntime-int8``) ours is the model exported as
``resnetlab export`` writes it and run by onnxruntime, and the peer is our PyTorch path.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from ..engine.timing import Clock, time_interleaved
from ..errors import ResnetlabError
from ..options import RUNTIMES
from .records import environment, load_average
from .sides import BenchSpec, Side, bench_spec, ours_side, peer_side, side_settings
from .timing import spread


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

    The options are described at ``sides.bench_spec``; ``steps`` counts forward passes.
    ``runtime``: ``torch``, or ``onnxruntime``/``onnxruntime-int8`` against our PyTorch path
    (CPU, fp32).
    """
    if runtime not in RUNTIMES:
        raise ResnetlabError(f"unknown runtime {runtime!r}; choose {', '.join(RUNTIMES)}")
    spec = bench_spec(
        model,
        training=False,
        batch_size=batch_size,
        input_size=input_size,
        num_classes=num_classes,
        precision=precision,
        channels_last=channels_last,
        compile=compile,
        device=device,
        steps=steps,
        warmup=warmup,
        repeats=repeats,
        vs=vs,
        threads=threads,
    )
    env = environment(spec.device)
    if runtime == "torch":
        sides = {"ours": ours_side(spec)}
        if vs is not None:
            sides["peer"] = peer_side(spec)
    else:
        if vs is not None or spec.device.type != "cpu" or precision not in (None, "fp32"):
            raise ResnetlabError(
                f"--runtime {runtime} runs against our PyTorch path in fp32 on the CPU; "
                "drop --vs, --compile and --precision, and use --device cpu"
            )
        if compile:
            raise ResnetlabError(f"--runtime {runtime} does not take --compile")
        spec.precision = "fp32"
        sides = {"ours": _onnxruntime_side(spec, runtime), "peer": ours_side(spec)}
    figures: dict[str, dict[str, list[float]]] = {label: {} for label in sides}
    for figure, batch in (("latency_ms", 1), ("images_per_s", spec.batch_size)):
        calls = {label: side.make_call(batch) for label, side in sides.items()}
        seconds = time_interleaved(
            calls, repeats, number=steps, warmup=warmup, clock=Clock(spec.device)
        )
        for label, values in seconds.items():
            latency = figure == "latency_ms"
            figures[label][figure] = [s * 1000 if latency else batch / s for s in values]
    record = _record(spec, sides, figures)
    record["settings"]["runtime"] = runtime
    record.update(env)
    record["load_after"] = load_average()
    return record


def _record(
    spec: BenchSpec, sides: dict[str, Side], figures: dict[str, dict[str, list[float]]]
) -> dict[str, Any]:
    results = {
        label: {**side.record(), **{k: spread(v) for k, v in figures[label].items()}}
        for label, side in sides.items()
    }
    settings = side_settings(spec, results["ours"])
    record: dict[str, Any] = {"kind": "infer", "model": spec.model, "settings": settings, **results}
    if "peer" in figures:
        # Speed ratios, ours over theirs, per repeat: above 1 means ours is faster.
        ours, peer = figures["ours"], figures["peer"]
        pairs = zip(ours["latency_ms"], peer["latency_ms"], strict=True)
        latency = spread([p / o for o, p in pairs])
        pairs = zip(ours["images_per_s"], peer["images_per_s"], strict=True)
        record["ratio"] = {"latency": latency, "throughput": spread([o / p for o, p in pairs])}
    return record


def _onnxruntime_side(spec: BenchSpec, runtime: str) -> Side:
    """Ours exported to ONNX (int8 for ``onnxruntime-int8``) and run by onnxruntime."""
    from ..export import OnnxModel, import_extra
    from ..export.exporter import write_unchecked_onnx
    from ..models import ModelMeta

    ort = import_extra("onnxruntime", f"--runtime {runtime}")
    int8 = runtime == "onnxruntime-int8"
    model = spec.build_model()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{spec.model}.onnx"
        meta = ModelMeta(spec.model, spec.model_kwargs, spec.num_classes, spec.input_size)
        write_unchecked_onnx(model, meta, path, int8=int8)
        onnx_model = OnnxModel(path, threads=torch.get_num_threads())

    def make_call(batch: int):
        x = torch.randn(batch, 3, spec.input_size, spec.input_size).numpy()
        return lambda: onnx_model.run(x)

    what = f"onnxruntime {ort.__version__} (CPU), {spec.model} exported as `resnetlab export` does"
    precision = "int8" if int8 else "fp32"
    return Side(what + (", int8" if int8 else ""), model, precision, False, False, make_call)
