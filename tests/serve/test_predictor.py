"""The server's model object, on its own."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import resnetlab
from resnetlab.serve import Predictor, RequestError


class Weightless(nn.Module):
    """A model with no PyTorch weights, as one run by another runtime is: fixed logits."""

    def __init__(self, meta: resnetlab.ModelMeta) -> None:
        super().__init__()
        self.meta = meta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x.mean((1, 2, 3)), -x.mean((1, 2, 3)), x[:, 0, 0, 0]], 1)


def test_any_model_with_meta_serves_and_maps_need_weights(model_file, image_files):
    meta = resnetlab.read_model_meta(model_file)
    predictor = Predictor(Weightless(meta))
    pixels = predictor.decode(image_files["red.png"].read_bytes(), "red.png")
    assert pixels.shape == (meta.input_size, meta.input_size, 3)
    probs = predictor(torch.from_numpy(pixels)[None])
    assert probs.shape == (1, 3) and float(probs.sum()) == pytest.approx(1.0)
    assert "PyTorch weights" in predictor.cam_problem()  # /metadata: "cam": false
    with pytest.raises(RequestError, match="PyTorch weights") as refused:
        predictor.cam_png(pixels)
    assert refused.value.status == 501
