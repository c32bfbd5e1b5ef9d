"""The Keras ResNet50 of the deeplearning.ai course (the seed of this project), layer for layer.

Keras graph, for a 64x64x3 input::

    ZeroPadding2D(3) -> Conv2D(64, 7, strides=2) 'conv1'  -> BatchNormalization 'bn_conv1'
    -> ReLU -> MaxPooling2D(3, strides=2)                           # 32x32 -> 15x15
    -> convolutional_block + identity_blocks, stages 2-5: [3, 4, 6, 3] blocks
       (stride on the first 1x1 of each convolutional block, 3x3 'same', every conv biased)
    -> AveragePooling2D(2, padding='same') -> Flatten -> Dense(classes) 'fc6'

Keras conventions that change numbers: BN ``epsilon=1e-3`` and ``momentum=0.99``, a
moving variance updated with the *biased* batch variance, Glorot-uniform kernels with
zero biases, and Flatten in (H, W, C) order. Each is reproduced here; module names follow
torchvision's ResNet-50 and ``keras_layer_names()`` maps them to the Keras layer names.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ResnetlabError, count_argument
from ..options import INPUT_SIZES, is_input_size
from .blocks import Bottleneck, check_features
from .registry import register_model
from .resnet import ResNet

KERAS_BN_EPS = 1e-3
KERAS_BN_MOMENTUM = 0.01  # Keras momentum 0.99 is the weight of the old value


class KerasBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm that updates its moving variance as Keras does, with the biased variance.

    PyTorch folds the unbiased batch variance ``v * n / (n - 1)`` into ``running_var``;
    Keras folds in ``v``. PyTorch's update is made on a copy and corrected, which keeps the
    fused kernel: with ``m`` the momentum, ``keras = (1 - m) / n * old + (n - 1) / n * torch``.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features, eps=KERAS_BN_EPS, momentum=KERAS_BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.track_running_stats):
            return super().forward(x)
        self.num_batches_tracked.add_(1)
        n = x.numel() // x.shape[1]  # values per channel in the batch
        # Autograd keeps the variance tensor it was given, so the copy is what it gets.
        torch_var = self.running_var.clone()
        out = F.batch_norm(
            x, self.running_mean, torch_var, self.weight, self.bias, True, self.momentum, self.eps
        )
        with torch.no_grad():
            self.running_var.mul_((1 - self.momentum) / n).add_(torch_var, alpha=(n - 1) / n)
        return out


def keras_feature_sizes(input_size: int) -> dict[str, int]:
    """Spatial size after each part of the course's network, as Keras computes it."""
    input_size = count_argument(input_size, "resnet50_keras's input_size", None)
    # Above, its Dense layer grows as the square (12 TB at 10^6); below, the network runs
    # from 5x5 but a model file takes no side under MIN_INPUT_SIZE, as for every model.
    if not is_input_size(input_size):
        raise ResnetlabError(
            f"resnet50_keras's input_size must be {INPUT_SIZES}, got {input_size:,}"
        )
    sizes = {"conv1": (input_size + 2 * 3 - 7) // 2 + 1}  # ZeroPadding(3), 7x7/2 valid
    size = sizes["maxpool"] = (sizes["conv1"] - 3) // 2 + 1  # 3x3/2 valid
    for stage in (2, 3, 4, 5):
        if stage > 2:
            size = (size - 1) // 2 + 1  # 1x1/2 valid conv on both branches
        sizes[f"stage{stage}"] = size
    sizes["avgpool"] = -(-size // 2)  # 2x2/2 'same': ceil(size / 2)
    return sizes


class KerasResNet50(ResNet):
    """The course's ResNet50 for ``input_size`` x ``input_size`` RGB images.

    The classifier's input size depends on ``input_size`` (as Keras's Dense does on
    ``input_shape``): 2048 features at 64x64, ``2048 * s * s`` when the last map is s x s.
    """

    def __init__(self, *, num_classes: int = 6, input_size: int = 64) -> None:
        final_size = keras_feature_sizes(input_size)["avgpool"]
        super().__init__(
            Bottleneck,
            (3, 4, 6, 3),
            num_classes=num_classes,
            stride_in_1x1=True,
            norm_layer=KerasBatchNorm2d,
            bias=True,
        )
        self.input_size = input_size
        self.final_size = final_size
        self.maxpool = nn.MaxPool2d(3, stride=2)  # 'valid': no padding
        # With padding only at the bottom/right, as 'same' pads a 2x2/2 window, ceil mode
        # averages the edge windows over the pixels that exist, as Keras does.
        self.avgpool = nn.AvgPool2d(2, ceil_mode=True)
        self.num_features = self.num_features * self.final_size**2
        self.fc = self._make_classifier(num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(m.weight)  # Keras's glorot_uniform
                nn.init.zeros_(m.bias)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        check_features(x, self.num_features // self.final_size**2)  # 2048
        x = self.avgpool(x)  # (B, 2048, s, s)
        if x.shape[-1] != self.final_size or x.shape[-2] != self.final_size:
            raise ResnetlabError(
                f"resnet50_keras was built for {self.input_size}x{self.input_size} inputs but "
                f"got an input of another size; resize the images or rebuild with "
                f"input_size=<their size>"
            )
        x = x.permute(0, 2, 3, 1).flatten(1)  # Keras's Flatten: (B, s * s * 2048), H, W, C
        return x if pre_logits else self.fc(x)

    def keras_layer_names(self) -> dict[str, str]:
        """Module name -> the course's Keras layer name (``layer1.0.conv1`` ->
        ``res2a_branch2a``)."""
        names = {"conv1": "conv1", "bn1": "bn_conv1"}
        for stage_index, stage in enumerate(self.stages, start=2):
            for block_index, block in enumerate(stage):
                tag = f"{stage_index}{'abcdefghijklmnopqrstuvwxyz'[block_index]}"
                prefix = f"layer{stage_index - 1}.{block_index}"
                for conv, branch in (("1", "2a"), ("2", "2b"), ("3", "2c")):
                    names[f"{prefix}.conv{conv}"] = f"res{tag}_branch{branch}"
                    names[f"{prefix}.bn{conv}"] = f"bn{tag}_branch{branch}"
                if block.downsample is not None:
                    names[f"{prefix}.downsample.0"] = f"res{tag}_branch1"
                    names[f"{prefix}.downsample.1"] = f"bn{tag}_branch1"
        if self.num_classes > 0:
            names["fc"] = f"fc{self.num_classes}"
        return names


@register_model(
    family="keras",
    input_size=64,
    num_classes=6,
    description="the deeplearning.ai course's Keras ResNet50, exact; SIGNS 64x64",
    group="Keras",
    source="the deeplearning.ai course's Keras model; Keras names via keras_layer_names()",
)
def resnet50_keras(*, num_classes: int = 6, input_size: int = 64) -> KerasResNet50:
    return KerasResNet50(num_classes=num_classes, input_size=input_size)
