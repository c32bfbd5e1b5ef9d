import copy

import pytest
import torch

import resnetlab
from resnetlab.engine import TrainConfig, lr_at
from resnetlab.engine.optim import build_optimizer, param_groups


def test_paper_step_schedule_divides_by_ten_at_half_and_three_quarters():
    # He et al. 4.2: 0.1, divided by 10 at 32k and 48k of 64k iterations.
    lrs = {
        s: lr_at(s, base_lr=0.1, total_steps=64_000, schedule="step")
        for s in (0, 31_999, 32_000, 47_999, 48_000, 63_999)
    }
    assert lrs == pytest.approx(
        {0: 0.1, 31_999: 0.1, 32_000: 0.01, 47_999: 0.01, 48_000: 0.001, 63_999: 0.001}
    )


def test_cosine_with_warmup():
    lr = lambda s: lr_at(s, base_lr=1.0, total_steps=110, schedule="cosine", warmup_steps=10)  # noqa: E731
    assert [lr(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr(10) == pytest.approx(1.0)
    assert lr(60) == pytest.approx(0.5)
    assert lr(109) == pytest.approx(0.0, abs=1e-3)
    assert all(lr(s) >= lr(s + 1) for s in range(10, 109))


def test_onecycle_rises_then_falls_linearly():
    lr = lambda s: lr_at(s, base_lr=1.0, total_steps=100, schedule="onecycle")  # noqa: E731
    assert lr(0) == pytest.approx(0.04) and lr(24) == pytest.approx(1.0)
    assert lr(25) == pytest.approx(1.0) and lr(100) == pytest.approx(0.0)
    assert lr(62) == pytest.approx(0.5, abs=0.01)


def test_constant():
    assert lr_at(1234, base_lr=3e-4, total_steps=2000, schedule="constant") == 3e-4


def test_no_weight_decay_on_norm_and_bias():
    model = resnetlab.create_model("resnet50_keras")
    decay, no_decay = param_groups(model, 1e-4, no_decay_norm_bias=True)
    assert all(p.ndim == 4 or p.ndim == 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0 and all(p.ndim == 1 for p in no_decay["params"])
    n = sum(p.numel() for g in (decay, no_decay) for p in g["params"])
    assert n == sum(p.numel() for p in model.parameters())
    (group,) = param_groups(model, 1e-4, no_decay_norm_bias=False)
    assert group["weight_decay"] == 1e-4


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_build_optimizer(name):
    config = TrainConfig(optimizer=name, lr=0.05, weight_decay=1e-4)
    model = resnetlab.create_model("resnet20")
    opt = build_optimizer(model, config, torch.device("cpu"))
    assert type(opt).__name__.lower() == name
    assert opt.param_groups[0]["lr"] == 0.05


@pytest.mark.parametrize(
    "settings",
    [
        {"optimizer": "sgd", "momentum": 0.9, "nesterov": True},
        {"optimizer": "sgd", "momentum": 0.9, "nesterov": False},
        {"optimizer": "sgd", "momentum": 0.0},
        {"optimizer": "adam"},
        {"optimizer": "adamw"},
    ],
)
def test_the_fused_optimizer_steps_as_pytorchs_reference_loop(settings):
    """The fused kernels (CUDA's, run here by their CPU twins) give the for-loop's updates,
    also to a parameter whose gradients start steps after the others' (a backbone after a
    fine-tuning's head phase, where PyTorch's fused SGD alone fails)."""
    config = TrainConfig(lr=0.05, weight_decay=1e-3, **settings)
    torch.manual_seed(0)
    ours = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Linear(5, 3))
    reference = copy.deepcopy(ours)
    optimizer = build_optimizer(ours, config, torch.device("cpu"), fused=True)
    assert optimizer.defaults["fused"]
    loop = build_optimizer(reference, config, torch.device("cpu"))
    assert loop.defaults["foreach"]  # the CPU's default
    for group in loop.param_groups:
        group.update(foreach=False)
    for step in range(4):
        x = torch.randn(8, 6)
        for model, opt in ((ours, optimizer), (reference, loop)):
            model[0].requires_grad_(step >= 2)  # the first layer trains from the third step
            opt.zero_grad(set_to_none=True)
            model(x).square().mean().backward()
            opt.step()
    for mine, theirs in zip(ours.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-7)
