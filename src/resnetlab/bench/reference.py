"""The peers a benchmark compares with, and the plain training loop they run in.

For the ImageNet ResNets the peer is torchvision's model. torchvision has no CIFAR ResNets
and no Keras ResNet50, so for those the peer is the same architecture written the usual
way, in this file: straightforward modules with ``F.relu`` and ``F.pad`` shortcuts, run
eagerly in NCHW and float32. Its parameter counts equal our models' (tested); its code
shares nothing with ``resnetlab.models``.

``PlainLoop`` is the training loop as tutorials and torchvision's reference script write it:
``zero_grad``, forward, loss, ``backward``, ``step`` with the optimizer's default
implementation, and ``loss.item()`` every step for the running loss a progress display
shows (which waits for the device each step).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.config import TrainConfig
from ..errors import ResnetlabError, option
from ..models import model_info
from ..models.cifar import BOTTLENECK_DEPTHS
from ..models.keras_resnet50 import keras_feature_sizes


class _UsualBasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = (planes - in_planes) // 2 if stride != 1 or in_planes != planes else None
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            shortcut = x
            if self.pad is not None:  # option A: subsample, zero channels on both sides
                shortcut = x[:, :, :: self.stride, :: self.stride]
                shortcut = F.pad(shortcut, (0, 0, 0, 0, self.pad, self.pad))
            out = out + shortcut
        return F.relu(out)


class UsualCifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet (or plain net) of ``depth = 6n + 2``, written the usual way."""

    def __init__(self, depth: int, num_classes: int = 10, residual: bool = True) -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(n):
                first_stride = stride if i == 0 else 1
                layers.append(_UsualBasicBlock(in_planes, planes, first_stride, residual))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


class _UsualKerasBlock(nn.Module):
    """The course's convolutional block (``stride`` and a projection) or identity block."""

    def __init__(self, in_channels: int, filters: tuple[int, int, int], stride: int) -> None:
        super().__init__()
        f1, f2, f3 = filters
        self.branch = nn.Sequential(
            nn.Conv2d(in_channels, f1, 1, stride=stride),
            nn.BatchNorm2d(f1, eps=1e-3, momentum=0.01),
            nn.ReLU(),
            nn.Conv2d(f1, f2, 3, padding=1),
            nn.BatchNorm2d(f2, eps=1e-3, momentum=0.01),
            nn.ReLU(),
            nn.Conv2d(f2, f3, 1),
            nn.BatchNorm2d(f3, eps=1e-3, momentum=0.01),
        )
        self.shortcut = None
        if stride != 1 or in_channels != f3:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, f3, 1, stride=stride),
                nn.BatchNorm2d(f3, eps=1e-3, momentum=0.01),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.branch(x) + shortcut)


class UsualKerasResNet50(nn.Module):
    """The deeplearning.ai course's ResNet50, ported from Keras layer by layer the usual way."""

    def __init__(self, num_classes: int = 6, input_size: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.ZeroPad2d(3),
            nn.Conv2d(3, 64, 7, stride=2),
            nn.BatchNorm2d(64, eps=1e-3, momentum=0.01),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2),
        )
        blocks, channels = [], 64
        for stage, (base, count) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3))):
            filters = (base, base, 4 * base)
            for i in range(count):
                stride = 2 if i == 0 and stage > 0 else 1
                blocks.append(_UsualKerasBlock(channels, filters, stride))
                channels = 4 * base
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AvgPool2d(2, ceil_mode=True)
        final = keras_feature_sizes(input_size)["avgpool"]
        self.fc = nn.Linear(2048 * final * final, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.blocks(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


@dataclass
class Peer:
    model: nn.Module
    description: str  # what it is, for the printed result and the record
    usual_way: bool  # always eager, NCHW, float32, whatever the benchmark's settings


def peer_model(name: str, *, num_classes: int, input_size: int) -> Peer:
    """The model ``name`` is compared with: torchvision's or timm's, else the usual-way
    reference."""
    info = model_info(name)
    if info.family == "imagenet":
        if name.startswith("plain"):
            raise ResnetlabError(
                f"torchvision has no {name} (a plain net) and there is no reference for it; "
                f"compare resnet{name[len('plain') :]} instead"
            )
        return _library_peer(name, num_classes)
    if info.family == "cifar":
        residual = name.startswith("resnet")
        depth = name.removeprefix("resnet").removeprefix("plain")
        basic = depth.isdigit() and int(depth) not in BOTTLENECK_DEPTHS
        if not basic or info.group != "CIFAR ResNet":
            raise ResnetlabError(
                f"there is no peer for {name}: torchvision has no CIFAR nets, and the one "
                "written the usual way is of the basic-block ResNets and plain nets of He et "
                "al. (2015) only (resnet8..resnet1202, plain8..plain110); leave out "
                f"{option('vs')} to time ours alone"
            )
        model = UsualCifarResNet(int(depth), num_classes, residual=residual)
        kind = "ResNet" if residual else "plain net"
        return Peer(
            model,
            f"CIFAR {kind}-{depth} written the usual way (torchvision has none): "
            f"eager, NCHW, float32",
            usual_way=True,
        )
    model = UsualKerasResNet50(num_classes, input_size)
    return Peer(
        model,
        "the course's Keras ResNet50 ported the usual way (torchvision has none): "
        "eager, NCHW, float32",
        usual_way=True,
    )


def _library_peer(name: str, num_classes: int) -> Peer:
    """torchvision's model of that name, else timm's (the ResNet-C/D/S, SE and v2 nets)."""
    import torchvision

    if name in torchvision.models.list_models(module=torchvision.models):
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
        return Peer(model, f"torchvision.models.{name}", usual_way=False)
    try:
        import timm
    except ImportError:
        raise ResnetlabError(
            f"the peer of {name} is timm's model: pip install 'resnetlab[timm]'"
        ) from None
    model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    return Peer(model, f"timm {name}", usual_way=False)


class PlainLoop:
    """One training step per call, written as tutorials write it (see the module docstring).

    Args:
        model: the peer's model, already on its device.
        config: the optimizer and its hyperparameters (same as ours), and label smoothing.
        amp_dtype: autocast dtype, or None for float32; float16 adds a ``GradScaler``.
    """

    def __init__(
        self, model: nn.Module, config: TrainConfig, amp_dtype: torch.dtype | None
    ) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.amp_dtype = amp_dtype
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        params, wd = model.parameters(), config.weight_decay
        if config.optimizer == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(
                params,
                lr=config.lr,
                momentum=config.momentum,
                weight_decay=wd,
                nesterov=config.nesterov and config.momentum > 0,
            )
        elif config.optimizer == "adam":
            self.optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=wd)
        else:
            self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=wd)
        self.scaler = torch.amp.GradScaler(self.device.type) if amp_dtype == torch.float16 else None
        self.running_loss = 0.0

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.optimizer.zero_grad()
        context = (
            torch.autocast(self.device.type, dtype=self.amp_dtype)
            if self.amp_dtype is not None
            else contextlib.nullcontext()
        )
        with context:
            loss = self.criterion(self.model(x), y)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.running_loss += loss.item()
