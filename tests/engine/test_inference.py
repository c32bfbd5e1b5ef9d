import pytest
import torch
from torch import nn

import resnetlab
from resnetlab.engine.inference import fold_batchnorm, inference_model, is_channels_last


def _trained_statistics(model: nn.Module, size: int) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, as after training."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        model.train()(torch.randn(8, 3, size, size))
    return model.eval()


@pytest.mark.parametrize(
    ("name", "kwargs", "size"),
    [
        ("resnet20", {}, 32),
        ("plain20", {}, 32),
        ("resnet20", {"shortcut": "B"}, 32),
        ("resnet18", {}, 64),
        ("resnet50", {}, 64),
        ("resnet50_keras", {"input_size": 64}, 64),
        ("resnet18d", {}, 48),  # deep stem, average-pool shortcuts on odd maps
        ("seresnext50_32x4d", {}, 32),  # grouped convs, squeeze-excitation
        ("preresnet20", {}, 32),  # pre-activation: nothing to fold
    ],
)
def test_folded_model_gives_the_same_outputs(name, kwargs, size):
    model = _trained_statistics(resnetlab.create_model(name, **kwargs), size)
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        expected = model(x)
    fast = inference_model(model, "cpu")
    if not name.startswith("pre"):
        assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert is_channels_last(fast) and not fast.training
    with torch.no_grad():
        got = fast(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    # The model it was made from is untouched.
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert not is_channels_last(model)


def test_folding_needs_eval_mode():
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(resnetlab.create_model("resnet20").train())
