import numpy as np
import pytest
import torch
from PIL import Image
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


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_runs_under_autocast_and_answers_in_float32(precision):
    model = _trained_statistics(resnetlab.create_model("resnet20", num_classes=10), 32)
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        exact = inference_model(model, "cpu")(x)
        fast = inference_model(model, "cpu", precision=precision)
        got = fast(x)
    assert got.dtype == torch.float32 and is_channels_last(fast)
    assert not torch.equal(got, exact)  # the reduced precision was used
    # bf16 keeps 8 bits of mantissa, fp16 11: a few hundredths of the logits' range.
    spread = float(exact.abs().max())
    torch.testing.assert_close(got, exact, rtol=0, atol=0.05 * spread)
    torch.testing.assert_close(got.softmax(1), exact.softmax(1), rtol=0, atol=0.02)


def test_a_precision_for_inference_is_checked(monkeypatch):
    from resnetlab.engine import cpu
    from resnetlab.engine.inference import ExternalModel
    from resnetlab.errors import ResnetlabError, SettingWarning

    model = resnetlab.create_model("resnet8", num_classes=3)
    with pytest.raises(ResnetlabError, match=r"precision 'auto' is not one of fp32, bf16, fp16"):
        inference_model(model, "cpu", precision="auto")
    with pytest.raises(ResnetlabError, match=r"an exported model runs in the precision it was"):
        inference_model(ExternalModel(), "cpu", precision="bf16")
    assert inference_model(ExternalModel(), "cpu", precision="fp32") is not None
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: {"model name": "Some CPU", "flags": "avx2"})
    with pytest.warns(SettingWarning, match=r"no bf16 arithmetic .* the default, fp32, is faster"):
        inference_model(model, "cpu", precision="bf16")


def test_bf16_inference_on_a_gpu_without_bf16_hardware_is_refused(monkeypatch):
    # A T4's bf16 is emulated, and PyTorch says it is supported (torch 2.4 and later).
    from resnetlab.errors import ResnetlabError, command_line

    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    model = resnetlab.create_model("resnet8", num_classes=3)
    refused = r"^cuda:0 has no bf16 arithmetic; give --precision fp16$"
    with command_line(), pytest.raises(ResnetlabError, match=refused):
        inference_model(model, torch.device("cuda", 0), precision="bf16")
    with pytest.raises(ResnetlabError, match=r"give precision='fp16'$"):  # predict(...)
        inference_model(model, torch.device("cuda", 0), precision="bf16")


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_the_small_map_matrix_products_serve_every_precision(precision):
    from resnetlab.engine.cpu import MatmulConv2d

    model = _trained_statistics(resnetlab.create_model("resnet18", num_classes=10), 64)

    def matmuls(net: nn.Module) -> set[str]:
        return {n.removeprefix("model.") for n, m in net.named_modules() if type(m) is MatmulConv2d}

    exact_net = inference_model(model, "cpu", input_size=64)
    fast = inference_model(model, "cpu", input_size=64, precision=precision)
    assert matmuls(exact_net)  # layer4's convolutions: 2x2 maps at 64 px
    assert matmuls(fast) == matmuls(exact_net)
    x = torch.randn(4, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        exact, got = exact_net(x), fast(x)
    assert got.dtype == torch.float32 and not torch.equal(got, exact)
    spread = float(exact.abs().max())  # the tolerance of the test above
    torch.testing.assert_close(got, exact, rtol=0, atol=0.05 * spread)
    torch.testing.assert_close(got.softmax(1), exact.softmax(1), rtol=0, atol=0.02)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_a_model_in_another_dtype_is_run_in_float32(tmp_path, dtype):
    """predict(model.half(), ...) stopped in a convolution: 'Input type (float) and bias
    type (c10::Half) should be the same'."""
    path = tmp_path / "m.safetensors"
    resnetlab.save_model(resnetlab.create_model("resnet8", num_classes=3), path, input_size=8)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), np.uint8))
    expected = resnetlab.predict(path, image, device="cpu")[0]
    model = resnetlab.load_model(path).to(dtype)
    got = resnetlab.predict(model, image, device="cpu")[0]
    assert next(model.parameters()).dtype == dtype  # the caller's model is left as it was
    assert got.label == expected.label
    assert got.top[0][1] == pytest.approx(expected.top[0][1], abs=1e-2)


def test_an_onnx_file_is_refused_on_a_gpu_named_for_it(tmp_path, monkeypatch):
    """onnxruntime runs an .onnx file on the CPU: `predict model.onnx --device cuda:1` ran
    there without a word, the images sent to the GPU and back."""
    import resnetlab.engine.inference as inference_module
    from resnetlab.engine.inference import load_model_file

    path = tmp_path / "model.onnx"
    path.write_bytes(b"not read: refused before it is opened")
    gpu = torch.device("cuda", 1)  # (this machine may have none: its answer is stubbed)
    cpu = torch.device("cpu")
    monkeypatch.setattr(
        inference_module, "resolve_device", lambda name, *args: cpu if str(name) == "cpu" else gpu
    )
    with pytest.raises(resnetlab.ResnetlabError) as info:
        load_model_file(path, device="cuda:1")
    assert str(info.value) == (
        f"{path} is run by onnxruntime on the CPU, not on cuda:1; give device='cpu' (or auto), "
        "or the .safetensors model file it was exported from to run on cuda:1"
    )
    with pytest.raises(resnetlab.ResnetlabError, match="not on cuda:1"):
        load_model_file(path, device=gpu)  # a torch.device, as load_model takes too
    for device in ("auto", "cpu"):  # auto runs it on the CPU, whatever it picks for images
        with pytest.raises(resnetlab.ResnetlabError, match="is not an ONNX model"):
            load_model_file(path, device=device)  # opened: not refused for the device


def test_a_model_file_is_run_as_loaded_and_a_callers_model_is_copied(tmp_path, monkeypatch):
    # predict and eval of a file folded a copy of the model they had just loaded: its time
    # and memory again. A model the caller passes is still copied and left as it was.
    from resnetlab.engine import inference

    path = tmp_path / "m.safetensors"
    model = resnetlab.create_model("resnet8", num_classes=3)
    resnetlab.save_model(model, path, input_size=8, class_names=["a", "b", "c"])
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), np.uint8))
    for name in ("a", "b", "c"):
        (tmp_path / "data" / name).mkdir(parents=True)
        image.save(tmp_path / "data" / name / "0.png")
    copies = []
    monkeypatch.setattr(inference, "deepcopy", lambda m: copies.append(m) or _copy(m))
    from_file = resnetlab.predict(path, image, device="cpu")[0]
    resnetlab.evaluate(path, str(tmp_path / "data"), device="cpu")
    assert copies == []
    model = resnetlab.load_model(path)
    from_model = resnetlab.predict(model, image, device="cpu")[0]
    assert copies == [model] and any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert from_model.label == from_file.label
    assert from_model.top[0][1] == pytest.approx(from_file.top[0][1], abs=1e-6)
    fast = inference_model(model, "cpu", copy=False)  # the caller's own choice
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) and fast is model


def _copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model)
