"""``resnetlab bench calibrate``: measure this CPU's training choices for a workload now.

The same calibration that a CPU training run makes on first use (``engine.calibrate``),
run ahead of time or again (``force``), for the workload that ``resnetlab train`` with the
same options would run; its result is cached for those runs. With it, the machine's
matrix-product rates, which ``bench train`` puts training rates against.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..engine.calibrate import ENV, CpuPlan, calibration_off, cpu_matmul_tflops, plan_cpu
from ..engine.config import resolve_config
from ..engine.cpu import slow_precision_note
from ..engine.step import refuse_lone_values
from ..errors import ResnetlabError, SettingWarning, warn
from ..models import model_info
from .sides import model_of, use_threads


@dataclass
class Calibration:
    """A CPU plan and the machine's matrix-product rates (TFLOP/s by precision)."""

    plan: CpuPlan
    matmul_tflops: dict[str, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        rates = ", ".join(f"{p} {r * 1e3:,.0f} GFLOP/s" for p, r in self.matmul_tflops.items())
        return self.plan.explain() + ([f"  2048 x 2048 matrix products: {rates}"] if rates else [])

    def to_record(self) -> dict[str, Any]:
        return {**self.plan.to_record(), "matmul_tflops": self.matmul_tflops}


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
) -> Calibration:
    """Calibrate training ``model`` on this CPU (or read the cached calibration).

    Args:
        model: a registered model name, or a model file: its architecture, options, classes
            and input size.
        batch_size: default: the model's recipe's.
        input_size, num_classes: default: the model's.
        precision: ``auto`` (default: fp32 and, with bf16 hardware, bf16) or one to keep.
        channels_last: named, only that layout is timed.
        optimizer: default: the recipe's.
        threads: CPU threads for PyTorch (the calibration holds for this count).
        force: measure again even where the cache has timings.

    Raises:
        ResnetlabError: ``RESNETLAB_CALIBRATE=off`` turns the calibration off.
    """
    use_threads(threads)
    model, file_size, file_classes, options = model_of(model)
    config = resolve_config(
        recipe="modern",  # its batch size and optimizer: auto would need a data set to decide
        model=model,
        batch_size=batch_size,
        input_size=input_size or file_size,
        precision=precision,
        channels_last=channels_last,
        optimizer=optimizer,
        device="cpu",
        **({"model_kwargs": options} if options else {}),
    )
    info = model_info(model)
    num_classes = num_classes or file_classes or info.num_classes
    input_size = config.input_size or info.input_size
    refuse_lone_values(config, num_classes, input_size)
    if calibration_off():  # the whole command is the calibration that the setting turns off
        raise ResnetlabError(
            f"{ENV}={os.environ[ENV]} turns the CPU calibration off; unset it (or set it to "
            "on) to calibrate"
        )
    if (note := slow_precision_note(config.precision)) is not None:  # as train says it
        warn(note, SettingWarning)
    plan = plan_cpu(config, num_classes=num_classes, input_size=input_size, force=force)
    if plan.how.startswith("not calibrated"):
        return Calibration(plan)
    tried = (name.split(" ")[0] for name in plan.steps)
    precisions = dict.fromkeys(["fp32", plan.precision, *tried])
    rates = {p: cpu_matmul_tflops(p, force=force) for p in precisions}
    return Calibration(plan, {p: rate for p, rate in rates.items() if rate is not None})
