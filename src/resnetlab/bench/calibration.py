"""``resnetlab bench calibrate``: measure this CPU's training choices for a workload now.

The same calibration that a CPU training run makes on first use (``engine.calibrate``),
run ahead of time or again (``force``), for the workload that ``resnetlab train`` with the
same options would run; its result is cached for those runs.
"""

from __future__ import annotations

from ..engine.calibrate import CpuPlan, plan_cpu
from ..engine.config import resolve_config
from ..models import model_info
from .sides import use_threads


def bench_calibrate(
    model: str,
    *,
    batch_size: int | None = None,
    input_size: int | None = None,
    num_classes: int | None = None,
    precision: str | None = None,
    channels_last: bool | None = None,
    optimizer: str | None = None,
    threads: int | None = None,
    force: bool = False,
) -> CpuPlan:
    """Calibrate training ``model`` on this CPU (or read the cached calibration).

    Args:
        model: a registered model name.
        batch_size: default: the model's recipe's.
        input_size, num_classes: default: the model's.
        precision: ``auto`` (default: fp32 and, with bf16 hardware, bf16) or one to keep.
        channels_last: named, only that layout is timed.
        optimizer: default: the recipe's.
        threads: CPU threads for PyTorch (the calibration holds for this count).
        force: measure again even where the cache has timings.
    """
    use_threads(threads)
    config = resolve_config(
        model=model,
        batch_size=batch_size,
        input_size=input_size,
        precision=precision,
        channels_last=channels_last,
        optimizer=optimizer,
        device="cpu",
    )
    info = model_info(model)
    return plan_cpu(
        config,
        num_classes=num_classes or info.num_classes,
        input_size=config.input_size or info.input_size,
        force=force,
    )
