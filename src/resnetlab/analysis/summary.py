"""A Keras-style model summary: layers, output shapes, parameters, and FLOPs.

Parameters are counted as Keras counts them: trainable ones are the model's parameters,
non-trainable ones are frozen parameters plus floating-point buffers (BN running mean and
variance). FLOPs come from ``torch.utils.flop_counter`` on a real forward pass.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn

from ..errors import ResnetlabError, count_argument, on_command_line, shown
from ..options import INPUT_SIZES, is_input_size


@dataclass
class LayerRow:
    name: str  # module path, e.g. "layer1.0.conv1"
    kind: str  # module class, e.g. "Conv2d"
    output_shape: tuple[int, ...]  # without the batch dimension
    params: int  # parameters owned by this module (counted on its first call only)


@dataclass
class ModelSummary:
    model: str
    input_size: int
    num_classes: int
    layers: list[LayerRow] = dataclasses.field(repr=False)  # print_summary shows them
    trainable: int
    non_trainable: int
    flops: int  # one forward pass of one image; a multiply-add counts as 2
    layout: str = "CHW"  # of the output shapes; "HWC" for Keras's summary

    @property
    def total(self) -> int:
        return self.trainable + self.non_trainable

    @property
    def macs(self) -> int:
        return self.flops // 2

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data.update(total=self.total, macs=self.macs)
        return data


def check_module(model: object, function: str) -> nn.Module:
    """``model`` when it is a built model, else one line saying how to build one."""
    if not isinstance(model, nn.Module):
        hint = f" (create_model({model!r}))" if isinstance(model, str) else ""
        raise ResnetlabError(f"{function} takes a built model{hint}, not {shown(model)}")
    return model


def _check_input_size(value: object, function: str) -> int:
    """``value`` as the image side of ``function``'s pass when it is one that models take
    (``--input-size``'s range), else one line: not torch's error for a kernel larger than
    the map, nor an allocation of the size asked."""
    what = f"{function}'s input_size"
    size = count_argument(value, what, minimum=None)
    if not is_input_size(size):
        raise ResnetlabError(f"{what} must be {INPUT_SIZES}, got {size:,}")
    return size


def _check_name(value: object, function: str) -> None:
    """One line where ``function``'s ``name``, the title its summary shows, is no string."""
    if value is not None and not isinstance(value, str):
        raise ResnetlabError(
            f"{function}'s name must be a string (the model's name to show) or None, got "
            f"{shown(value)}"
        )


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, non-trainable) as Keras reports them."""
    check_module(model, "count_parameters")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    stats = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    return trainable, frozen + stats


def summarize(model: nn.Module, input_size: int, name: str | None = None) -> ModelSummary:
    """Run one ``input_size`` x ``input_size`` image through ``model`` and describe each layer."""
    check_module(model, "summarize")
    input_size = _check_input_size(input_size, "summarize")
    _check_name(name, "summarize")
    from torch.utils.flop_counter import FlopCounterMode  # imports triton where installed

    rows: list[LayerRow] = []
    seen: set[str] = set()

    def hook(module: nn.Module, _inputs, output) -> None:
        module_name = names[module]
        params = 0
        if module_name not in seen:  # modules called more than once (ReLU) own params once
            seen.add(module_name)
            params = sum(p.numel() for p in module.parameters(recurse=False))
        shape = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else ()
        rows.append(LayerRow(module_name, type(module).__name__, shape, params))

    names = {m: n for n, m in model.named_modules() if n and not list(m.children())}
    handles = [m.register_forward_hook(hook) for m in names]
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    x = torch.zeros(1, 3, input_size, input_size, device=param.device, dtype=param.dtype)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    trainable, non_trainable = count_parameters(model)
    return ModelSummary(
        model=name or getattr(model, "model_name", type(model).__name__),
        input_size=input_size,
        num_classes=getattr(model, "num_classes", 0),
        layers=rows,
        trainable=trainable,
        non_trainable=non_trainable,
        flops=counter.get_total_flops(),
    )


def keras_summary(model: nn.Module, input_size: int, name: str | None = None) -> ModelSummary:
    """The summary Keras's ``model.summary()`` prints for the course's model (``resnet50_keras``).

    Keras's layer names and order, shapes as (H, W, C), and its rows that are no module here
    (InputLayer, ZeroPadding2D, Activation, Add, Flatten); a BatchNormalization row counts its
    moving mean and variance too (4 x channels), as Keras does. Auto-named layers are named as
    Keras 3 names them in a fresh session (``activation``, ``activation_1``, ..., ``add``).
    """
    check_module(model, "keras_summary")  # a name is not "str has no Keras counterpart"
    _check_name(name, "keras_summary")
    if not hasattr(model, "keras_layer_names"):
        model_name = name or getattr(model, "model_name", None) or type(model).__name__
        keras, own = (
            ("--keras", "drop --keras") if on_command_line() else ("keras_summary", "use summarize")
        )
        raise ResnetlabError(
            f"{model_name} has no Keras counterpart: {keras} prints the course model's "
            f"(resnet50_keras) table as Keras's model.summary() does; {own} for "
            f"{model_name}'s own table"
        )
    plain = summarize(model, input_size, name=name)
    shapes = {row.name: row.output_shape for row in plain.layers}
    modules = dict(model.named_modules())
    keras_names = model.keras_layer_names()
    counters: dict[str, int] = {}
    rows: list[LayerRow] = []

    def auto(kind: str, base: str, shape: tuple[int, ...]) -> None:
        count = counters[base] = counters.get(base, -1) + 1
        rows.append(LayerRow(f"{base}_{count}" if count else base, kind, shape, 0))

    def layer(module_name: str) -> tuple[int, ...]:
        module = modules[module_name]
        kind = {"Conv2d": "Conv2D", "Linear": "Dense"}.get(type(module).__name__)
        kind = kind or "BatchNormalization"
        params = sum(t.numel() for t in module.parameters(recurse=False))
        params += sum(t.numel() for t in module.buffers(recurse=False) if t.is_floating_point())
        shape = _hwc(shapes[module_name])
        rows.append(LayerRow(keras_names[module_name], kind, shape, params))
        return shape

    side = input_size
    auto("InputLayer", "input_layer", (side, side, 3))
    auto("ZeroPadding2D", "zero_padding2d", (side + 6, side + 6, 3))
    layer("conv1")
    auto("Activation", "activation", layer("bn1"))
    auto("MaxPooling2D", "max_pooling2d", _hwc(shapes["maxpool"]))
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for index in range(len(modules[stage])):
            block = f"{stage}.{index}"
            for conv in ("1", "2"):
                layer(f"{block}.conv{conv}")
                auto("Activation", "activation", layer(f"{block}.bn{conv}"))
            # Keras lists layers by depth in the graph: the shortcut's conv and BN sit
            # beside the last conv and BN of the residual branch.
            shortcut = f"{block}.downsample" in modules
            layer(f"{block}.conv3")
            if shortcut:
                layer(f"{block}.downsample.0")
            shape = layer(f"{block}.bn3")
            if shortcut:
                layer(f"{block}.downsample.1")
            auto("Add", "add", shape)
            auto("Activation", "activation", shape)
    pooled = _hwc(shapes["avgpool"])
    rows.append(LayerRow("avg_pool", "AveragePooling2D", pooled, 0))
    auto("Flatten", "flatten", (pooled[0] * pooled[1] * pooled[2],))
    if "fc" in keras_names:
        layer("fc")
    return dataclasses.replace(plain, layers=rows, layout="HWC")


def _hwc(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(C, H, W) -> (H, W, C); other shapes as they are."""
    return (*shape[1:], shape[0]) if len(shape) == 3 else shape


def training_flops(model: nn.Module, input_size: int) -> int:
    """FLOPs of one training step per image: forward, cross-entropy and backward.

    Counted by ``torch.utils.flop_counter`` (convolutions and matrix products; a multiply-add
    counts as 2) on a batch of two, in training mode. Run it on a model built on the meta
    device (``with torch.device("meta"): create_model(...)``) to count without computing.
    """
    from torch.utils.flop_counter import FlopCounterMode

    check_module(model, "training_flops")
    input_size = _check_input_size(input_size, "training_flops")
    param = next(model.parameters())
    x = torch.zeros(2, 3, input_size, input_size, device=param.device, dtype=param.dtype)
    y = torch.zeros(2, dtype=torch.int64, device=param.device)
    was_training = model.training
    model.train()
    try:
        with FlopCounterMode(display=False) as counter:
            F.cross_entropy(model(x), y).backward()
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    return counter.get_total_flops() // 2


def print_summary(summary: ModelSummary, console: Console | None = None) -> None:
    """Print the summary as a table with totals, like Keras's ``model.summary()``."""
    if not isinstance(summary, ModelSummary):  # the model itself: an AttributeError
        how = "summarize(model, input_size)" if isinstance(summary, nn.Module) else "summarize"
        raise ResnetlabError(
            f"print_summary takes the ModelSummary that {how} returns, not {shown(summary)}"
        )
    if console is not None and not isinstance(console, Console):  # an AttributeError
        raise ResnetlabError(
            f"print_summary's console must be a rich.console.Console or None, got {shown(console)}"
        )
    console = console or Console()
    size = summary.input_size
    table = Table(
        title=f"{summary.model} ({size}x{size}x3 input, {summary.num_classes} classes)",
        title_justify="left",
    )
    table.add_column("Layer (type)")
    table.add_column("Output shape", justify="right")
    table.add_column("Param #", justify="right")
    for row in summary.layers:
        dims = [str(d) for d in row.output_shape]
        shape = "(" + ", ".join(["None", *dims] if summary.layout == "HWC" else dims) + ")"
        table.add_row(f"{row.name} ({row.kind})", shape, f"{row.params:,}")
    console.print(table)
    console.print(f"Total params: {summary.total:,}")
    console.print(f"Trainable params: {summary.trainable:,}")
    console.print(f"Non-trainable params: {summary.non_trainable:,}")
    console.print(
        f"Multiply-adds: {summary.macs / 1e9:,.3f} G ({summary.flops / 1e9:,.3f} GFLOPs) per image"
    )
