"""BatchNorm running statistics that lag behind the weights, and recomputing them.

In evaluation a BN layer normalises with running averages of the batch statistics it saw
in training. Those start at mean 0 and variance 1 and follow the batches with weight
``momentum`` per step: PyTorch's 0.1 forgets the start within about 40 steps, Keras's
0.99 (PyTorch momentum 0.01) only after about 460. A model evaluated before then, or
while a high learning rate still moves the weights faster than the averages follow, is
evaluated with statistics of another network: the course's model on SIGNS showed chance
accuracy after two epochs, ResNet-18 a validation loss of 371,527, ResNet-20 with scale
jitter a validation at chance after its third epoch, at the peak of its learning rate.

``recalibrate`` recomputes the statistics for the current weights from
``CALIBRATION_BATCHES`` training batches, as ``torch.optim.swa_utils.update_bn`` does, in
forward passes only: about as many images as PyTorch's momentum 0.1 averages over, at a
tenth of an epoch's cost for a thousand images. The batches are augmented as in training:
the weights are fitted to the statistics of augmented batches, and those of clean images
(no black borders of pad-and-crop, no zoom) took one network from 98% to 78% validation
accuracy, against the 98% that statistics of augmented batches restored.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Collection, Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

# The running averages lag while their initial values still weigh more than this.
LAG_WEIGHT = 0.01
# Batches of training images (of the training batch size, at most CALIBRATION_IMAGES in
# all) whose statistics replace the running averages.
CALIBRATION_BATCHES = 10
CALIBRATION_IMAGES = 512


def calibration_size(batch_size: int, num_images: int) -> int:
    """Images to recalibrate on: ``CALIBRATION_BATCHES`` batches, at most
    ``CALIBRATION_IMAGES``, at most all of them."""
    return min(CALIBRATION_BATCHES * batch_size, CALIBRATION_IMAGES, num_images)


def batchnorm_layers(model: nn.Module) -> list[_BatchNorm]:
    """The model's BN layers that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


def lag_steps(model: nn.Module) -> int:
    """Steps after which the initial values weigh less than ``LAG_WEIGHT`` in every BN
    layer's running averages (0 without BN; momentum None averages evenly and never lags)."""
    momenta = [m.momentum for m in batchnorm_layers(model) if m.momentum]
    if not momenta:
        return 0
    return math.ceil(math.log(LAG_WEIGHT) / math.log(1 - min(momenta)))


@torch.no_grad()
def recalibrate(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    autocast: contextlib.AbstractContextManager | None = None,
    keep: Collection[str] = (),
) -> int:
    """Replace every BN layer's running mean and variance by the average over ``batches``
    of its batch mean and batch variance (unbiased, or as the layer folds it in: Keras's
    biased), computed in training mode with the current weights. Nothing else changes
    (``num_batches_tracked`` included).

    Args:
        keep: names of BN layers that keep their statistics (those of frozen stages): they
            normalise with them during the passes, as in training, and are left as they are.

    Returns:
        The number of images used.
    """
    kept = [m for name, m in model.named_modules() if name in keep]
    layers = [m for m in batchnorm_layers(model) if m not in kept]
    saved = [
        (m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum)
        for m in layers
    ]
    for layer in layers:
        # The first batch's momentum of 1 weighs the old values by 0, which keeps a NaN or
        # an infinity (an fp16 forward that overflowed): start from clean ones instead.
        layer.reset_running_stats()
    modes = {m: m.training for m in model.modules()}
    model.train()
    for layer in kept:
        layer.eval()
    images, done = 0, False
    try:
        for count, x in enumerate(batches, 1):
            # A momentum of 1/count makes the running statistics the even average of the
            # batch statistics: the layers' own kernels average them, in the pass that
            # computes them anyway (the first batch's replace the reset values).
            for layer in layers:
                layer.momentum = 1 / count
            with autocast or contextlib.nullcontext():
                model(x)
            images += len(x)
        done = True
    finally:
        for module, mode in modes.items():
            module.training = mode
        for layer, (mean, var, tracked, momentum) in zip(layers, saved, strict=True):
            layer.momentum = momentum
            ran = bool(layer.num_batches_tracked)  # counted from the reset: 0 if it was skipped
            if not (done and images and ran):  # stopped, or nothing seen: those from before
                layer.running_mean.copy_(mean)
                layer.running_var.copy_(var)
            layer.num_batches_tracked.copy_(tracked)
    return images
