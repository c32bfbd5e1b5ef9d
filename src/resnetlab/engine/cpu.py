"""The CPU: what it is, and the convolution paths a CPU training run can take.

Which implementation of a convolution is fastest depends on the CPU. oneDNN (PyTorch's
``nn.Conv2d`` on the CPU) is tuned for large feature maps; on small ones its backward pass
can be several times slower than the same convolution written as one matrix product over
unfolded patches (ResNet-18's 512-channel 3x3 convolution on a 2x2 map: 61 ms against 22 ms
on one 2-core machine), while on another machine oneDNN wins the same contest. So nothing
here is chosen by a fixed rule for training: ``engine.calibrate`` times both paths for every
convolution shape a model has, on the machine at hand, and ``use_matmul_convs`` gives the
convolutions that won the matrix-product path. ``keep_freed_memory`` keeps the memory a
training step frees for the next one (no page faults per step).
"""

from __future__ import annotations

import ctypes
import platform
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import option

# Largest output map (pixels) on which a k x k convolution (k > 1) is a matrix-product
# candidate: unfolding copies each input pixel k * k times, which on larger maps costs more
# than the matrix product saves. 1x1 convolutions are candidates on any map (no unfolding).
MATMUL_MAX_PIXELS = 16

# The inference path's fixed rule (it is not calibrated): 2x2 maps and smaller.
SMALL_MAP_PIXELS = 4


@lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's entries of ``/proc/cpuinfo`` (empty where there is none)."""
    info: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        if not line.strip():
            if info:
                break
            continue
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), re.sub(r"\s+", " ", value).strip())
    return info


def cpu_name() -> str:
    """The processor's model name, e.g. ``AMD EPYC``."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_capability() -> str | None:
    """The vector instruction set PyTorch's CPU kernels use here: ``AVX512``, ``AVX2``..."""
    get = getattr(torch.backends.cpu, "get_cpu_capability", None)
    return get() if get is not None else None


def cpu_info() -> dict[str, Any]:
    """What a measurement on this CPU depends on: model, family, instruction sets.

    ``bf16`` is hardware bfloat16 arithmetic (x86 AVX512_BF16 or AMX, Arm's BF16
    extension), without which bf16 autocast is emulated and slower than float32; ``fp16``
    likewise for float16 (x86 AVX512_FP16 or AMX-FP16, Arm's half-precision SIMD).
    """
    info = _cpuinfo()
    flags = _flags(info)
    return {
        "model": cpu_name(),
        "family": "/".join(info[k] for k in ("cpu family", "model", "stepping") if k in info)
        or None,
        "capability": cpu_capability(),
        "bf16": bool(flags & {"avx512_bf16", "amx_bf16", "bf16"}),
        "fp16": bool(flags & {"avx512_fp16", "amx_fp16", "asimdhp"}),
        "amx": bool(flags & {"amx_bf16", "amx_tile"}),
    }


def _flags(info: dict[str, str]) -> set[str]:
    """The instruction-set flags of ``/proc/cpuinfo``'s entries (x86's flags, Arm's
    Features)."""
    return set((info.get("flags") or info.get("Features") or "").split())


# The instructions that do each reduced precision's arithmetic, by name.
PRECISION_HARDWARE = {"bf16": "AVX512_BF16 or AMX", "fp16": "AVX512_FP16 or AMX-FP16"}


def slow_precision_note(precision: str, *, fix: str | None = None) -> str | None:
    """A line when ``--precision`` names a reduced precision this CPU has no arithmetic for:
    PyTorch then emulates it, usually slower than float32 (fp16 at about half its speed
    on an AVX-512 CPU without FP16); or fp16 on a CPU whose matrix tiles (AMX) take bf16
    and not fp16, where fp16 ran at 0.4x to 0.9x of float32 (an AMX Xeon, AVX512_FP16)."""
    if precision not in PRECISION_HARDWARE:
        return None
    flags = _flags(_cpuinfo())
    if precision == "fp16" and "amx_bf16" in flags and "amx_fp16" not in flags:
        return (
            f"{option('precision', 'fp16')}: this CPU's matrix tiles (AMX) multiply bf16, not "
            "fp16, so fp16 runs on its vector units, slower than fp32 where measured; "
            f"{option('precision', 'bf16')} uses the tiles"
        )
    if cpu_info()[precision]:
        return None
    fix = fix or f"{option('precision', 'auto')} measures which is faster here"
    return (
        f"{option('precision', precision)}: this CPU has no {precision} arithmetic "
        f"({PRECISION_HARDWARE[precision]}), so PyTorch emulates it, usually slower than "
        f"fp32; {fix}"
    )


@dataclass(frozen=True)
class ConvShape:
    """One convolution as a model runs it: its geometry and the map it reads."""

    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    bias: bool
    height: int  # of the input map
    width: int
    input_grad: bool  # False for the stem, whose input (the image) needs no gradient

    @property
    def out_size(self) -> tuple[int, int]:
        return (
            (self.height + 2 * self.padding[0] - self.kernel[0]) // self.stride[0] + 1,
            (self.width + 2 * self.padding[1] - self.kernel[1]) // self.stride[1] + 1,
        )

    @property
    def key(self) -> str:
        """``128x8x8>256 k3x3 s2 p1``: input channels x map > output channels, geometry."""
        k, s, p = self.kernel, self.stride, self.padding
        text = f"{self.in_channels}x{self.height}x{self.width}>{self.out_channels} k{k[0]}x{k[1]}"
        text += f" s{s[0]}" if s[0] == s[1] else f" s{s[0]}x{s[1]}"
        text += f" p{p[0]}" if p[0] == p[1] else f" p{p[0]}x{p[1]}"
        return text + (" bias" if self.bias else "") + ("" if self.input_grad else " no-dx")

    @property
    def matmul_candidate(self) -> bool:
        """Whether the matrix-product path is worth timing for this shape."""
        if self.kernel == (1, 1) and self.padding == (0, 0):
            return True
        height, width = self.out_size
        return height * width <= MATMUL_MAX_PIXELS

    def module(self) -> nn.Conv2d:
        return nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel,
            stride=self.stride,
            padding=self.padding,
            bias=self.bias,
        )


class MatmulConv2d(nn.Conv2d):
    """``nn.Conv2d`` computed on the CPU as one matrix product.

    A 1x1 convolution is a product with the (strided) feature map itself; a larger kernel a
    product with its unfolded patches. The result keeps the input's memory format. Same
    parameters, state-dict keys and results (up to rounding) as ``nn.Conv2d``; on other
    devices it is ``nn.Conv2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.ndim != 4:
            return super().forward(x)
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not (
            x.is_contiguous()
        )
        if self.kernel_size == (1, 1) and self.padding == (0, 0):
            out = self._pointwise(x, channels_last)
        else:
            out = self._unfolded(x, channels_last)
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)[:, None, None]
        return out

    def _pointwise(self, x: torch.Tensor, channels_last: bool) -> torch.Tensor:
        if self.stride != (1, 1):
            x = x[:, :, :: self.stride[0], :: self.stride[1]]
        batch, channels, height, width = x.shape
        # (B * H * W, C_in) rows: a view of a channels-last map.
        rows = x.permute(0, 2, 3, 1).reshape(-1, channels)
        return self._product(rows, (batch, height, width), channels_last)

    def _unfolded(self, x: torch.Tensor, channels_last: bool) -> torch.Tensor:
        height, width = _output_size(self, x)
        # (B, C_in * kh * kw, h * w) patches, as (B * h * w, C_in * kh * kw) rows.
        patches = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)
        rows = patches.transpose(1, 2).reshape(-1, patches.shape[1])
        return self._product(rows, (x.shape[0], height, width), channels_last)

    def _product(
        self, rows: torch.Tensor, size: tuple[int, int, int], channels_last: bool
    ) -> torch.Tensor:
        """``rows`` times the weight as one (B * h * w, C_out) product, shaped (B, C_out, h,
        w) in the input's layout. Folded here, not left to ``matmul``: a batched operand
        against the weight matrix is folded into one product only while the weight needs a
        gradient; autocast's bf16 copy of it under ``no_grad`` (BN recalibration, validation)
        does not, and a batched product of the weight repeated B times took 10 to 20 times as
        long (ResNet-18's 4x4 maps, batch 32)."""
        weight = self.weight.reshape(self.out_channels, -1)  # (C_out, C_in * kh * kw)
        # C_out named, not -1: an empty batch's zero rows leave -1 undecided.
        out = rows @ weight.t()  # (B * h * w, C_out)
        out = out.view(*size, self.out_channels).permute(0, 3, 1, 2)  # channels-last
        return out if channels_last else out.contiguous()


def _output_size(conv: nn.Conv2d, x: torch.Tensor) -> tuple[int, int]:
    size = []
    for dim in (0, 1):
        extent = x.shape[-2 + dim] + 2 * conv.padding[dim] - conv.kernel_size[dim]
        size.append(extent // conv.stride[dim] + 1)
    return size[0], size[1]


def _convertible(m: nn.Module) -> bool:
    return (
        type(m) in (nn.Conv2d, MatmulConv2d)
        and m.groups == 1
        and m.dilation == (1, 1)
        and m.padding_mode == "zeros"
        and isinstance(m.padding, tuple)
    )


def conv_shapes(model: nn.Module, input_size: int) -> dict[nn.Conv2d, ConvShape]:
    """The shape of every convolution that could take the matrix-product path, as the model
    runs at ``input_size`` (found by one forward pass of a single blank image)."""
    convs = [m for m in model.modules() if _convertible(m)]
    shapes: dict[nn.Conv2d, ConvShape] = {}

    def record(module: nn.Module, inputs: tuple, _output: torch.Tensor) -> None:
        x = inputs[0]
        shapes[module] = ConvShape(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            module.stride,
            module.padding,
            module.bias is not None,
            x.shape[-2],
            x.shape[-1],
            x.requires_grad,  # depends on parameters: its gradient is computed in training
        )

    if not convs:  # nothing to convert; and a model without weights cannot run
        return shapes
    handles = [conv.register_forward_hook(record) for conv in convs]
    param = next(model.parameters())
    was_training = model.training
    try:
        with torch.enable_grad():
            model.eval()(torch.zeros(1, 3, input_size, input_size, dtype=param.dtype))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return shapes


def use_matmul_convs(
    model: nn.Module, input_size: int, chosen: Collection[str] | Callable[[ConvShape], bool]
) -> nn.Module:
    """Give the chosen convolutions of ``model`` the matrix-product path, in place.

    Args:
        model: a model on the CPU.
        input_size: the image side it will see.
        chosen: ``ConvShape.key`` values (a calibration's choice), or a rule on the shape.

    Their weights get the default (NCHW) layout, which the matrix product reads without a
    copy, also when the model is channels-last.
    """
    if not chosen:
        return model
    picks = chosen if callable(chosen) else (lambda shape: shape.key in chosen)
    for conv, shape in conv_shapes(model, input_size).items():
        if picks(shape):
            to_matmul(conv)
    return model


def to_matmul(conv: nn.Conv2d) -> MatmulConv2d:
    """``conv`` (in place) on the matrix-product path, its weight in the default layout."""
    conv.__class__ = MatmulConv2d
    with torch.no_grad():
        conv.weight.data = conv.weight.data.contiguous()
    return conv


def use_small_map_convs(model: nn.Module, input_size: int) -> nn.Module:
    """The inference path's fixed rule: output maps of ``SMALL_MAP_PIXELS`` or fewer."""

    def small(shape: ConvShape) -> bool:
        height, width = shape.out_size
        return height * width <= SMALL_MAP_PIXELS

    return use_matmul_convs(model, input_size, small)


# mallopt's parameters: the free memory at the top of the heap above which glibc gives it back
# to the OS, the largest request served from the heap rather than by a mapping of its own,
# and how many such mappings it may hold.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4


@lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Keep the memory a training step frees in the process, for the next step to reuse;
    True where the C library took the setting (glibc), False elsewhere (nothing changes).

    A training step allocates and frees its activations, several times the model's size.
    glibc gives large freed blocks back to the operating system (each request above its
    mmap threshold, 128 KiB to 32 MiB, is a separate mapping), so the next step takes page
    faults to get them back: 11,000 to 19,000 per step for ResNet-18 at 64 px or ResNet-20 at
    batch 128, up to a sixth of the step's time on one 2-core VM. Serving every request
    below 1 GiB from the heap and never trimming it makes later steps fault-free, at no cost
    in peak memory: the process holds what its largest step needed, which it reached
    anyway. PyTorch's CUDA allocator does the same for GPU memory. The setting is for the
    whole process, once.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    return mallopt is not None and keep_in_heap(mallopt)


def keep_in_heap(mallopt: Callable[[int, int], int]) -> bool:
    """Set glibc's ``mallopt`` to serve requests below 1 GiB from the heap and never trim it.
    Older glibc refuses an mmap threshold above 32 MiB (on 64-bit), which would leave the
    largest activations mapped and faulted in every step: there no request is mapped."""
    in_heap = mallopt(_M_MMAP_THRESHOLD, 1 << 30) or mallopt(_M_MMAP_MAX, 0)
    return bool(in_heap and mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1))
