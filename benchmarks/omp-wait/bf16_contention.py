"""Seconds per training step of ``resnet50_keras`` (batch 32, 64x64, channels-last) in
float32 and in bf16 autocast, alternating, at a thread count and OpenMP waiting policy set
from outside: the README's table of bf16 beside a busy process on the AMX VM.

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=src python benchmarks/omp-wait/bf16_contention.py --threads 2
    python3 -c "while 1: pass" &  # one busy process beside; kill it after

Prints, for each of three rounds, the mean of three steps per precision (after two
untimed steps of each).
"""

import argparse
import time

import torch

import resnetlab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--model", default="resnet50_keras")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model = resnetlab.create_model(args.model, num_classes=6).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(32, 3, 64, 64).to(memory_format=torch.channels_last)
    y = torch.randint(0, 6, (32,))

    def step(bf16: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for bf16 in (False, True):
        step(bf16)
        step(bf16)
    for round_ in range(3):
        for bf16 in (False, True):
            start = time.perf_counter()
            for _ in range(3):
                step(bf16)
            seconds = (time.perf_counter() - start) / 3
            print(
                f"round {round_ + 1} {'bf16' if bf16 else 'fp32'} {seconds:.3f} s/step", flush=True
            )


if __name__ == "__main__":
    main()
