"""Optimizers and learning-rate schedules.

The schedule is a pure function of the step, ``lr_at(step)``, so resuming needs nothing
but the step number and every run's learning rate can be plotted before it starts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float, no_decay_norm_bias: bool) -> list[dict]:
    """Parameter groups; with ``no_decay_norm_bias``, BN scales/shifts and biases get no decay."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not no_decay_norm_bias or weight_decay == 0:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.ndim > 1]  # conv and linear weights
    no_decay = [p for p in params if p.ndim <= 1]  # BN weight/bias, conv/linear bias
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def stage_param_groups(
    model: nn.Module, weight_decay: float, no_decay_norm_bias: bool, layer_lr_decay: float
) -> list[dict]:
    """``param_groups`` split by stage, each with ``lr_scale = layer_lr_decay ** k`` for the
    ``k``-th stage before the head: the head trains at the full rate, the last stage at
    ``layer_lr_decay`` times it, ..., the stem at ``layer_lr_decay ** (stages + 1)``."""
    num_stages = model.num_stages
    by_stage: dict[int, nn.ParameterList] = {}
    for name, p in model.named_parameters():
        by_stage.setdefault(model.stage_of(name), nn.ParameterList()).append(p)
    groups = []
    for stage in sorted(by_stage):
        scale = layer_lr_decay ** (num_stages + 1 - stage)
        for group in param_groups(by_stage[stage], weight_decay, no_decay_norm_bias):
            if group["params"]:
                groups.append({**group, "lr_scale": scale})
    return groups


def build_optimizer(
    model: nn.Module,
    config: TrainConfig,
    device: torch.device,
    *,
    capturable: bool = False,
    fused: bool | None = None,
) -> torch.optim.Optimizer:
    """The configured optimizer: PyTorch's fused kernels on CUDA, foreach elsewhere.

    ``capturable`` (a step captured into a CUDA graph): Adam and AdamW keep their step counts
    on the device so that a replay can advance them. ``fused`` chooses the kernels instead
    of the device: PyTorch has fused CPU kernels too, which the CPU calibration takes where
    they measure faster (``engine.calibrate``).
    """
    if config.layer_lr_decay != 1:
        groups = stage_param_groups(
            model, config.weight_decay, config.no_decay_norm_bias, config.layer_lr_decay
        )
    else:
        groups = param_groups(model, config.weight_decay, config.no_decay_norm_bias)
    if fused is None:
        fused = device.type == "cuda"
    speed = {"fused": True} if fused else {"foreach": True}
    if config.optimizer == "sgd":
        nesterov = config.nesterov and config.momentum > 0
        sgd = torch.optim.SGD(
            groups, lr=config.lr, momentum=config.momentum, nesterov=nesterov, **speed
        )
        if fused and config.momentum > 0:
            sgd.register_step_pre_hook(_start_momentum)
        return sgd
    if capturable and device.type == "cuda":
        speed["capturable"] = True
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, **speed)
    return torch.optim.AdamW(groups, lr=config.lr, **speed)


def _start_momentum(optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
    """A zero momentum buffer for each parameter with a gradient and none yet.

    PyTorch's fused SGD starts its buffers only on a step where no parameter has one, and
    fails on a step where some have one and others none: after a fine-tuning's head phase,
    when the backbone's first gradients arrive, or on resuming a checkpoint written then.
    A zero buffer gives the first step exactly what starting it gives: momentum * 0 + grad.
    """
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state[p]
            if p.grad is not None and state.get("momentum_buffer") is None:
                state["momentum_buffer"] = torch.zeros_like(p)


def lr_at(
    step: int,
    *,
    base_lr: float,
    total_steps: int,
    schedule: str,
    warmup_steps: int = 0,
    milestones: Sequence[float] = (0.5, 0.75),
    gamma: float = 0.1,
) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of ``total_steps``.

    - ``constant``: ``base_lr`` throughout.
    - ``step``: ``base_lr * gamma ** k`` after ``k`` milestones (fractions of training).
    - ``cosine``: half a cosine from ``base_lr`` to 0 after the warmup.
    - ``onecycle``: a linear rise to ``base_lr`` (over the warmup, or the first 25% of
      training when no warmup is set), then a linear fall to 0.

    A warmup rises linearly from ``base_lr / warmup_steps`` to ``base_lr``.
    """
    if schedule == "onecycle" and warmup_steps == 0:
        warmup_steps = max(1, round(0.25 * total_steps))
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    if schedule == "step":
        passed = sum(step >= round(m * total_steps) for m in milestones)
        return base_lr * gamma**passed
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if schedule == "cosine":
        return base_lr * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "onecycle":
        return base_lr * (1 - progress)
    raise ValueError(f"unknown schedule {schedule!r}")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate, ``lr`` times the group's ``lr_scale`` (1 by default,
    see ``stage_param_groups``); a tensor rate (CUDA graphs) is updated in place."""
    for group in optimizer.param_groups:
        group_lr = lr * group.get("lr_scale", 1.0)
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(group_lr)
        else:
            group["lr"] = group_lr
