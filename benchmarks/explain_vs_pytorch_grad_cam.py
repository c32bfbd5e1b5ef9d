"""Time resnetlab's CAMs against pytorch-grad-cam's on the same model, inputs and layer.

Both run in this process, in alternating rounds (so a busy machine slows both alike), and
the ratio of median times is reported; the maps are checked to agree first. Appends one
JSON line per (model, method) to benchmarks/explain/<machine>.jsonl.

    PYTHONPATH=src python benchmarks/explain_vs_pytorch_grad_cam.py [--rounds 5]

Needs ``pip install grad-cam`` (in the dev extra).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

import resnetlab
from resnetlab.bench.records import environment, load_average
from resnetlab.explain import class_activation_maps

REFERENCE = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "layercam": LayerCAM,
    "scorecam": ScoreCAM,
}
# (model, input side, images per call for the gradient methods, for Score-CAM)
CASES = [("resnet20", 64, 32, 2), ("resnet18", 64, 32, 1)]


def _timed(fn, times: list[float]) -> None:
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/explain")
    args = parser.parse_args()
    env = environment(torch.device("cpu"))
    out = Path(args.out) / f"{env['machine']}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    for name, side, batch, score_batch in CASES:
        model = resnetlab.create_model(name, num_classes=6).eval()
        layer = model.stages[-1]
        for method, reference in REFERENCE.items():
            n = score_batch if method == "scorecam" else batch
            x = torch.randn(n, 3, side, side)
            targets = torch.arange(n) % 6
            cam = reference(model=model, target_layers=[layer])
            cam.batch_size = 64  # Score-CAM's masked images per pass, as ours

            def ours(x=x, targets=targets, method=method, model=model):
                return class_activation_maps(model, x, method=method, targets=targets).maps

            def theirs(x=x, targets=targets, cam=cam):
                return cam(x, targets=[ClassifierOutputTarget(int(t)) for t in targets])

            agreement = float(np.corrcoef(ours().numpy().ravel(), theirs().ravel())[0, 1])
            ours_t, theirs_t = [], []
            for _ in range(args.rounds):
                _timed(ours, ours_t)
                _timed(theirs, theirs_t)
            record = {
                "benchmark": "explain-vs-pytorch-grad-cam",
                "model": name,
                "input_size": side,
                "method": method,
                "images": n,
                "rounds": args.rounds,
                "ours_s": ours_t,
                "pytorch_grad_cam_s": theirs_t,
                "speedup": statistics.median(theirs_t) / statistics.median(ours_t),
                "map_correlation": agreement,
                **env,
                "load_after": load_average(),
            }
            with out.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(
                f"{name} {side}px {method:9s} {n:2d} images: ours "
                f"{statistics.median(ours_t):.3f} s, pytorch-grad-cam "
                f"{statistics.median(theirs_t):.3f} s, x{record['speedup']:.2f} "
                f"(maps agree: r={agreement:.4f})",
                flush=True,
            )
    print(f"appended to {out}")


if __name__ == "__main__":
    main()
