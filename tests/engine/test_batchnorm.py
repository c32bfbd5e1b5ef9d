import copy

import pytest
import torch
from torch import nn

from resnetlab import create_model
from resnetlab.engine.batchnorm import calibration_size, lag_steps, recalibrate
from resnetlab.models.keras_resnet50 import KERAS_BN_MOMENTUM, KerasBatchNorm2d


def test_lag_is_how_long_the_initial_values_weigh_in_the_averages():
    # (1 - m) ** steps falls below 1%: 44 steps at PyTorch's 0.1, 459 at Keras's 0.99.
    assert lag_steps(create_model("resnet8")) == 44
    assert lag_steps(create_model("resnet50_keras")) == 459
    assert lag_steps(nn.Linear(3, 3)) == 0


def test_calibration_takes_ten_batches_at_most_512_images():
    assert calibration_size(32, 1080) == 320
    assert calibration_size(256, 50_000) == 512
    assert calibration_size(16, 100) == 100


def test_recalibration_sets_the_statistics_of_the_data_it_sees():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, momentum=0.01))
    batches = [torch.randn(8, 3, 5, 5) * 3 + 2 for _ in range(4)]
    tracked = model[1].num_batches_tracked.clone()
    images = recalibrate(model, batches)
    assert images == 32 and model.training  # left in the mode it was in
    with torch.no_grad():
        features = [model[0](x) for x in batches]  # (8, 4, 5, 5) each
    mean = torch.stack([f.mean((0, 2, 3)) for f in features]).mean(0)
    var = torch.stack([f.var((0, 2, 3)) for f in features]).mean(0)
    torch.testing.assert_close(model[1].running_mean, mean)
    torch.testing.assert_close(model[1].running_var, var)
    assert torch.equal(model[1].num_batches_tracked, tracked)
    # In eval mode the layer now standardises what it saw: about mean 0, variance 1.
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(x) for x in batches])
    assert out.mean().abs() < 0.05 and (out.var() - 1).abs() < 0.1


def test_recalibrating_the_seed_model_changes_only_bn_statistics():
    model = create_model("resnet50_keras", input_size=32, num_classes=3).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    recalibrate(model, [torch.randn(4, 3, 32, 32) for _ in range(2)])
    assert not model.training
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.endswith(("running_mean", "running_var")) for k in changed)


def test_a_recalibration_stopped_part_way_leaves_the_statistics_as_they_were():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, momentum=0.01))
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def batches():
        yield torch.randn(8, 3, 5, 5) * 3 + 2
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        recalibrate(model, batches())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert model[1].momentum == 0.01
    assert recalibrate(model, []) == 0
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_keras_batchnorm_is_recalibrated_to_the_biased_variance_it_keeps():
    """The seed model's layers average the batch variance as Keras keeps it (biased), and
    the layer's momentum is its own again afterwards."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), KerasBatchNorm2d(4))
    batches = [torch.randn(2, 3, 3, 3) * 2 - 1 for _ in range(3)]  # 18 values a channel
    recalibrate(model, batches)
    with torch.no_grad():
        features = [model[0](x) for x in batches]
    mean = torch.stack([f.mean((0, 2, 3)) for f in features]).mean(0)
    var = torch.stack([f.var((0, 2, 3), unbiased=False) for f in features]).mean(0)
    torch.testing.assert_close(model[1].running_mean, mean)
    torch.testing.assert_close(model[1].running_var, var)
    assert model[1].momentum == KERAS_BN_MOMENTUM


def test_recalibration_replaces_statistics_an_overflow_made_nan():
    """An fp16 forward that overflowed leaves NaN or infinite running statistics; the
    recalibrated ones are those of the batches alone, for PyTorch's and Keras's layers."""
    torch.manual_seed(2)
    batches = [torch.randn(4, 3, 3, 3) for _ in range(2)]
    for layer in (nn.BatchNorm2d(4), KerasBatchNorm2d(4)):
        model = nn.Sequential(nn.Conv2d(3, 4, 1), layer)
        clean = copy.deepcopy(model)
        layer.running_mean.fill_(float("nan"))
        layer.running_var.fill_(float("inf"))
        recalibrate(model, batches)
        recalibrate(clean, batches)
        assert torch.isfinite(layer.running_mean).all() and torch.isfinite(layer.running_var).all()
        torch.testing.assert_close(layer.running_mean, clean[1].running_mean)
        torch.testing.assert_close(layer.running_var, clean[1].running_var)


def test_a_bn_layer_the_forward_pass_skips_keeps_its_statistics():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.spare = nn.BatchNorm2d(3), nn.BatchNorm2d(3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    model = Net()
    model.spare.running_mean.fill_(0.5)
    model.spare.running_var.fill_(2.0)
    model.spare.num_batches_tracked.fill_(500)  # a trained layer's count
    recalibrate(model, [torch.randn(4, 3, 2, 2) + 3])
    assert torch.equal(model.spare.running_mean, torch.full((3,), 0.5))
    assert torch.equal(model.spare.running_var, torch.full((3,), 2.0))
    assert int(model.spare.num_batches_tracked) == 500
    assert (model.used.running_mean > 2).all()
