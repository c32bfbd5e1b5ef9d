import contextlib
import warnings

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import resnetlab
from resnetlab.engine import TrainConfig, cpu
from resnetlab.engine.cpu import (
    ConvShape,
    MatmulConv2d,
    conv_shapes,
    to_matmul,
    use_matmul_convs,
    use_small_map_convs,
)
from resnetlab.engine.inference import _inference_dtype
from resnetlab.engine.optim import set_lr
from resnetlab.engine.step import build_training
from resnetlab.errors import SettingWarning, command_line

SHAPES = {  # (in, out, kernel, stride, padding, bias, input side, input needs a gradient)
    "3x3 on a 2x2 map": (16, 32, 3, 1, 1, False, 2, True),
    "3x3 stride 2, 4x4 -> 2x2, bias (the Keras seed)": (16, 32, 3, 2, 1, True, 4, True),
    "1x1 projection, stride 2": (16, 32, 1, 2, 0, False, 4, True),
    "1x1 on a 5x5 map, bias": (16, 24, 1, 1, 0, True, 5, True),
    "3x3 on a 1x1 map": (16, 8, 3, 1, 1, False, 1, True),
    "a stem: 7x7 stride 2, no input gradient": (3, 8, 7, 2, 3, True, 8, False),
}


def _run(conv, x, precision):
    """Output and gradients (input, weight, bias) of ``conv`` in ``precision``, as float32."""
    x = x.detach().clone().requires_grad_(x.requires_grad)
    dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
    context = torch.autocast("cpu", dtype=dtype) if dtype else contextlib.nullcontext()
    with context:
        y = conv(x)
    y.float().backward(torch.linspace(-1, 1, y.numel()).view(y.shape))
    grads = [x.grad, conv.weight.grad, conv.bias.grad if conv.bias is not None else None]
    return y.detach().float(), [g for g in grads if g is not None]


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("path", ["onednn", "matmul"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels-last"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_every_cpu_path_gives_conv2d_outputs_and_gradients(shape, path, channels_last, precision):
    """What a calibration can choose (path x layout x precision) computes nn.Conv2d's function."""
    in_ch, out_ch, kernel, stride, padding, bias, size, input_grad = shape
    reference = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=bias)
    x = torch.randn(5, in_ch, size, size).requires_grad_(input_grad)
    expected, expected_grads = _run(reference, x, "fp32")

    conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=bias)
    conv.load_state_dict(reference.state_dict())
    if channels_last:
        conv = conv.to(memory_format=torch.channels_last)
        x = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(input_grad)
    if path == "matmul":
        to_matmul(conv)
    got, got_grads = _run(conv, x, precision)
    if channels_last and path == "matmul" and got.shape[-1] > 1:
        assert got.is_contiguous(memory_format=torch.channels_last)  # keeps the input's layout

    # bf16 keeps 8 bits of mantissa: a relative error of about 2**-8 per product, summed.
    rtol, atol = (1e-5, 1e-5) if precision == "fp32" else (3e-2, 3e-2)
    torch.testing.assert_close(got, expected, rtol=rtol, atol=atol * expected.abs().max().item())
    assert len(got_grads) == len(expected_grads) == 2 + bias - (not input_grad)
    for g, e in zip(got_grads, expected_grads, strict=True):
        torch.testing.assert_close(g, e, rtol=10 * rtol, atol=atol * e.abs().max().item())


@pytest.mark.parametrize("kernel", [1, 3], ids=["1x1", "3x3"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels-last"])
def test_an_empty_batch_gives_an_empty_output_as_conv2d_does(kernel, channels_last):
    """Zero images are zero rows, which left the product's view with ``-1`` undecided."""
    conv = nn.Conv2d(16, 32, kernel, padding=kernel // 2)
    x = torch.randn(0, 16, 4, 4)
    if channels_last:
        conv = conv.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    expected = conv(x)
    assert to_matmul(conv)(x).shape == expected.shape == (0, 32, 4, 4)


class _Ops(TorchDispatchMode):
    """The ATen operators run inside it, by name (``mm``, ``bmm``...)."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("kernel", [1, 3], ids=["1x1", "3x3"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels-last"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("grad", [True, False], ids=["training", "no-grad"])
def test_the_matrix_product_path_is_one_product_also_without_gradients(
    kernel, channels_last, precision, grad
):
    """BN recalibration and validation run the training model under ``no_grad``: there
    autocast's bf16 copy of the weight needs no gradient, and ``matmul`` then multiplied the
    batch of patches by the weight repeated per image (``bmm``), 10 to 20 times as slow."""
    conv, x = nn.Conv2d(16, 32, kernel, padding=kernel // 2), torch.randn(4, 16, 4, 4)
    if channels_last:  # as use_matmul_convs finds a channels-last model
        conv = conv.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    to_matmul(conv)
    dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
    context = torch.autocast("cpu", dtype=dtype) if dtype else contextlib.nullcontext()
    with torch.set_grad_enabled(grad), context, _Ops() as ops:
        y = conv(x)
    assert [n for n in ops.names if "mm" in n] == ["mm"]
    layout = torch.channels_last if channels_last else torch.contiguous_format
    assert y.is_contiguous(memory_format=layout)


def test_conv_shapes_are_found_as_the_model_runs_them():
    model = resnetlab.create_model("resnet18")
    shapes = conv_shapes(model, 64)
    by_name = {name: shapes[m] for name, m in model.named_modules() if m in shapes}
    assert len(by_name) == 20  # every convolution of ResNet-18, downsampling ones included
    stem = by_name["conv1"]
    assert (stem.height, stem.input_grad, stem.out_size) == (64, False, (32, 32))
    last = by_name["layer4.1.conv2"]
    assert last == ConvShape(512, 512, (3, 3), (1, 1), (1, 1), False, 2, 2, True)
    assert last.key == "512x2x2>512 k3x3 s1 p1" and last.matmul_candidate
    assert by_name["layer4.0.downsample.0"].key == "256x4x4>512 k1x1 s2 p0"
    assert by_name["layer4.0.downsample.0"].matmul_candidate  # 1x1: on any map
    assert not by_name["layer1.0.conv1"].matmul_candidate  # 3x3 on 16x16: unfolding costs
    assert stem.key.endswith(" no-dx")
    assert model.training  # the probe left the mode as it was


def test_chosen_convolutions_take_the_matrix_product_and_keep_their_keys():
    model = resnetlab.create_model("resnet18").to(memory_format=torch.channels_last)
    keys = set(model.state_dict())
    use_matmul_convs(model, 64, {"512x2x2>512 k3x3 s1 p1"})
    assert set(model.state_dict()) == keys  # the same model file
    modules = dict(model.named_modules())
    chosen = [name for name, m in modules.items() if type(m) is MatmulConv2d]
    assert chosen == ["layer4.0.conv2", "layer4.1.conv1", "layer4.1.conv2"]
    # Their weights are read as matrices: the default layout, without a copy per call.
    assert modules["layer4.1.conv2"].weight.is_contiguous()
    assert modules["layer3.1.conv2"].weight.is_contiguous(memory_format=torch.channels_last)
    use_small_map_convs(model, 64)  # the inference rule: maps of 2x2 and less
    assert type(modules["layer4.0.downsample.0"]) is MatmulConv2d


def test_a_training_step_on_matrix_products_gives_the_plain_loss():
    """ResNet-18 at 32x32 with every candidate convolution as a matrix product."""
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (8,), generator=torch.Generator().manual_seed(1))
    losses = {}
    for name in ("plain", "matmul"):
        config = TrainConfig(model="resnet18", precision="fp32", channels_last=name == "matmul")
        parts = build_training(config, torch.device("cpu"), num_classes=10, input_size=32)
        if name == "matmul":
            use_matmul_convs(parts.model, 32, lambda s: s.matmul_candidate)
            # The last three stages (4x4, 2x2 and 1x1 maps) and their 1x1 projections.
            assert sum(type(m) is MatmulConv2d for m in parts.model.modules()) == 15
        values = []
        for _ in range(2):
            set_lr(parts.optimizer, config.lr)
            parts.step(x.contiguous(memory_format=torch.channels_last), y)
            values.append(parts.step.take_sums()[0].item() / len(y))
        losses[name] = values
    assert losses["matmul"] == pytest.approx(losses["plain"], rel=1e-4)


@pytest.mark.parametrize(
    ("entries", "bf16", "amx", "fp16"),
    [
        ({"flags": "fpu avx2 avx512f avx512_bf16 avx512_vnni"}, True, False, False),
        ({"flags": "fpu avx2 avx512f amx_bf16 amx_tile amx_int8"}, True, True, False),
        ({"flags": "avx512_bf16 avx512_fp16 amx_bf16 amx_fp16 amx_tile"}, True, True, True),
        ({"flags": "fpu avx2 fma"}, False, False, False),
        ({"Features": "fp asimd asimdhp sve bf16 i8mm"}, True, False, True),  # Arm
        ({}, False, False, False),  # no /proc/cpuinfo (macOS, Windows)
    ],
)
def test_reduced_precision_hardware_is_read_from_the_cpu_flags(
    monkeypatch, entries, bf16, amx, fp16
):
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: {"model name": "Some CPU", **entries})
    info = cpu.cpu_info()
    assert (info["bf16"], info["amx"], info["fp16"], info["model"]) == (bf16, amx, fp16, "Some CPU")
    assert info["capability"] == torch.backends.cpu.get_cpu_capability()


@pytest.mark.parametrize("inference", [False, True])
def test_fp16_on_a_cpu_whose_amx_tiles_take_bf16_is_warned_of(monkeypatch, inference):
    """On an AMX Xeon with AVX512_FP16 (no AMX-FP16), fp16 inference ran at 0.42x to 0.88x
    of fp32 without a word: the tiles multiply bf16 only."""
    flags = "avx512f avx512_bf16 avx512_fp16 amx_bf16 amx_tile"
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: {"model name": "Some CPU", "flags": flags})
    monkeypatch.setenv("RESNETLAB_CALIBRATE", "off")
    with command_line(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if inference:
            model = resnetlab.create_model("resnet8", num_classes=3)
            _inference_dtype("fp16", model, torch.device("cpu"))
        else:
            config = TrainConfig(model="resnet8", precision="fp16", batch_size=4)
            build_training(config, torch.device("cpu"), num_classes=3, input_size=8)
    said = [str(w.message) for w in caught if issubclass(w.category, SettingWarning)]
    assert said == [
        "--precision fp16: this CPU's matrix tiles (AMX) multiply bf16, not fp16, so fp16 runs "
        "on its vector units, slower than fp32 where measured; --precision bf16 uses the tiles"
    ]
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: {"flags": f"{flags} amx_fp16"})
    assert cpu.slow_precision_note("fp16") is None  # tiles that take fp16


@pytest.mark.parametrize(
    ("precision", "flags", "warned"),
    [
        ("fp16", "avx2 avx512f avx512_bf16", True),
        ("fp16", "avx512f avx512_fp16", False),
        ("bf16", "avx2 fma", True),
        ("bf16", "avx512f avx512_bf16", False),
        ("fp32", "avx2", False),
        ("auto", "avx2", False),  # auto measures
    ],
)
def test_a_precision_the_cpu_emulates_is_warned_of_when_training_starts(
    monkeypatch, precision, flags, warned
):
    monkeypatch.setattr(cpu, "_cpuinfo", lambda: {"model name": "Some CPU", "flags": flags})
    monkeypatch.setenv("RESNETLAB_CALIBRATE", "off")
    config = TrainConfig(model="resnet8", precision=precision, batch_size=4)
    with command_line(), warnings.catch_warnings(record=True) as caught:  # as `train` says it
        warnings.simplefilter("always")
        build_training(config, torch.device("cpu"), num_classes=3, input_size=8)
    said = [str(w.message) for w in caught if issubclass(w.category, SettingWarning)]
    if not warned:
        assert said == []
        return
    hardware = cpu.PRECISION_HARDWARE[precision]
    assert said == [
        f"--precision {precision}: this CPU has no {precision} arithmetic ({hardware}), so "
        "PyTorch emulates it, usually slower than fp32; --precision auto measures which is "
        "faster here"
    ]
