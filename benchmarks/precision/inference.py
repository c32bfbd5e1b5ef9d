"""Images per second of the predict/eval path (``engine.inference.inference_model``: BN
folded, channels-last) in float32 and in bf16 autocast, taking turns in one process, and
the largest difference of their softmax probabilities: the README's table for
``--precision bf16`` of predict, eval and serve.

    PYTHONPATH=src python benchmarks/precision/inference.py [--rounds 5]

Each round times two passes of each precision after one untimed; prints the median over
rounds of each and their ratio.
"""

import argparse
import statistics
import time

import torch

import resnetlab
from resnetlab.engine.cpu import cpu_info
from resnetlab.engine.inference import inference_model

WORKLOADS = (("resnet18", 224, 32), ("resnet50_keras", 64, 128), ("resnet20", 32, 256))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    info = cpu_info()
    print(
        f"# {info['model']}, {info['capability']}, bf16 {info['bf16']}, amx {info['amx']}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    torch.manual_seed(0)
    for name, size, batch in WORKLOADS:
        options = {"input_size": size} if name.endswith("_keras") else {}
        model = resnetlab.create_model(name, num_classes=10, **options).eval()
        x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
        nets = {
            p: inference_model(model, "cpu", input_size=size, precision=p) for p in ("fp32", "bf16")
        }
        seconds: dict[str, list[float]] = {p: [] for p in nets}
        with torch.inference_mode():
            probs = {p: net(x).softmax(1) for p, net in nets.items()}
            for _ in range(args.rounds):
                for p, net in nets.items():
                    start = time.perf_counter()
                    net(x)
                    net(x)
                    seconds[p].append((time.perf_counter() - start) / 2)
        rate = {p: batch / statistics.median(s) for p, s in seconds.items()}
        gap = float((probs["bf16"] - probs["fp32"]).abs().max())
        print(
            f"{name} {size}px batch {batch}: fp32 {rate['fp32']:.0f} img/s, bf16 "
            f"{rate['bf16']:.0f} img/s, {rate['bf16'] / rate['fp32']:.2f}x; "
            f"largest probability difference {gap:.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
