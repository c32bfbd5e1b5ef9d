"""Images per second of the predict/eval path (``engine.inference.inference_model``: BN
folded, channels-last) in float32 and in bf16 autocast, taking turns in one process, and
the largest difference of their softmax probabilities from float32's: the README's table
for ``--precision bf16`` of predict, eval and serve.

    PYTHONPATH=src python benchmarks/precision/inference.py [--rounds 5]
        [--variants fp32,bf16,bf16-onednn,fp16,fp16-onednn]

A variant is a precision; with ``-onednn`` the model is built without its input size, so
that every convolution stays ``nn.Conv2d`` (oneDNN), without the matrix-product path the
inference path gives the convolutions of 2x2 and smaller maps. Each round times two passes
of each variant after one untimed; prints the median over rounds of each and its ratio to
the first variant's.
"""

import argparse
import statistics
import time

import torch

import resnetlab
from resnetlab.engine.cpu import cpu_info
from resnetlab.engine.inference import inference_model

WORKLOADS = (
    ("resnet18", 224, 32),
    ("resnet18", 64, 64),
    ("resnet50_keras", 64, 128),
    ("resnet20", 32, 256),
)
ONEDNN = "-onednn"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--variants", default="fp32,bf16", help="comma-separated, see above")
    args = parser.parse_args()
    variants = args.variants.split(",")
    info = cpu_info()
    print(
        f"# {info['model']}, {info['capability']}, bf16 {info['bf16']}, fp16 {info['fp16']}, "
        f"amx {info['amx']}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    torch.manual_seed(0)
    for name, size, batch in WORKLOADS:
        options = {"input_size": size} if name.endswith("_keras") else {}
        model = resnetlab.create_model(name, num_classes=10, **options).eval()
        x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
        nets = {
            v: inference_model(
                model,
                "cpu",
                input_size=None if v.endswith(ONEDNN) else size,
                precision=v.removesuffix(ONEDNN),
            )
            for v in variants
        }
        seconds: dict[str, list[float]] = {v: [] for v in nets}
        with torch.inference_mode():
            probs = {v: net(x).softmax(1) for v, net in nets.items()}
            for _ in range(args.rounds):
                for v, net in nets.items():
                    start = time.perf_counter()
                    net(x)
                    net(x)
                    seconds[v].append((time.perf_counter() - start) / 2)
        rate = {v: batch / statistics.median(s) for v, s in seconds.items()}
        first = variants[0]
        rates = ", ".join(
            f"{v} {rate[v]:.0f} img/s" + (f" ({rate[v] / rate[first]:.2f}x)" if v != first else "")
            for v in variants
        )
        gaps = ", ".join(
            f"{v} {float((probs[v] - probs['fp32']).abs().max()):.4f}"
            for v in variants
            if v != "fp32" and "fp32" in probs
        )
        print(
            f"{name} {size}px batch {batch}: {rates}"
            + (f"; largest probability difference from fp32: {gaps}" if gaps else ""),
            flush=True,
        )


if __name__ == "__main__":
    main()
