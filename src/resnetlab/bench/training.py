"""``resnetlab bench train``: images per second of full training steps, ours and a peer's.

Both sides (``sides``) train on a fixed synthetic batch already on the device, so that only
the step is timed. After warm-up, each repeat times ``steps`` steps of each side in turn,
ours first in one repeat and the peer first in the next, so that both see the same machine;
the ratio is the median of the per-repeat ratios. Each side's rate is also put against the
machine's matrix-product rate in the precision it ran (``timing.matmul_tflops``): the
fraction of the machine a workload uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..engine.calibrate import step_flops
from ..engine.timing import Clock, time_interleaved
from .records import environment, load_average
from .sides import BenchSpec, Side, bench_spec, ours_side, peer_side, side_settings
from .timing import PeakMemory, matmul_tflops, spread


def bench_train(
    model: str,
    *,
    batch_size: int = 128,
    input_size: int | None = None,
    num_classes: int | None = None,
    precision: str | None = None,
    channels_last: bool | None = None,
    compile: bool = False,
    cuda_graphs: bool | None = None,
    optimizer: str | None = None,
    device: str = "auto",
    steps: int = 10,
    warmup: int = 5,
    repeats: int = 5,
    vs: str | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Measure training throughput; returns the record (see ``records``) without saving it.

    The options shared with ``bench_infer`` are described at ``sides.bench_spec``; also:

    Args:
        cuda_graphs: capture our step into a CUDA graph (ours only: the peer has none);
            default: as ``resnetlab train`` decides (on CUDA wherever it can).
        optimizer: ``sgd`` (default), ``adam`` or ``adamw``, with the recipe's settings.
    """
    spec = bench_spec(
        model,
        training=True,
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
        cuda_graphs=cuda_graphs,
        optimizer=optimizer,
    )
    env = environment(spec.device)
    builders = {"ours": ours_side, "peer": peer_side if vs is not None else None}
    sides, calls, memory = {}, {}, {}
    for label, build in builders.items():
        if build is not None:
            sides[label], calls[label], memory[label] = _warm_side(build, spec)
    seconds = time_interleaved(
        calls, spec.repeats, number=spec.steps, warmup=0, clock=Clock(spec.device)
    )
    rates = {label: [spec.batch_size / s for s in values] for label, values in seconds.items()}
    record = _record(spec, sides, rates, memory)
    record.update(env)
    record["load_after"] = load_average()
    return record


def _warm_side(
    build: Callable[[BenchSpec], Side], spec: BenchSpec
) -> tuple[Side, Callable[[], None], float | None]:
    """A side, built and warmed up, its call, and the peak memory of both (CUDA)."""
    with PeakMemory(spec.device) as memory:
        side = build(spec)
        call = side.make_call(spec.batch_size)
        for _ in range(spec.warmup):
            call()
    return side, call, memory.mib


def _record(
    spec: BenchSpec,
    sides: dict[str, Side],
    rates: dict[str, list[float]],
    memory: dict[str, float | None],
) -> dict[str, Any]:
    flops = step_flops(spec.config, spec.num_classes, spec.input_size)
    peaks: dict[str, float | None] = {}
    results = {}
    for label, side in sides.items():
        result = side.record()
        peak = peaks.setdefault(side.precision, matmul_tflops(spec.device, side.precision))
        achieved = spread(rates[label])["median"] * flops / 1e12
        result.update(
            images_per_s=spread(rates[label]),
            peak_memory_mib=memory[label],
            tflops=achieved,
            fraction_of_matmul=achieved / peak if peak else None,
        )
        results[label] = result
    settings = side_settings(spec, results["ours"])
    record: dict[str, Any] = {"kind": "train", "model": spec.model, "settings": settings, **results}
    if "peer" in results:
        # Speed ratios, ours over theirs, per repeat: above 1 means ours is faster.
        record["ratio"] = spread([o / p for o, p in zip(rates["ours"], rates["peer"], strict=True)])
    record["train_flops_per_image"] = flops
    record["matmul_tflops"] = peaks
    return record
