"""What keeping freed memory in the process (``engine.cpu.keep_freed_memory``) saves.

``bench train`` runs ours and the peer in one process, so the setting, which is for the
whole process, reaches both sides and its ratios leave it out. Here each measurement is a
process of its own: a training step of resnetlab's model (the run's layout and precision,
SGD), or with ``--inference`` a forward pass of the model as ``predict`` runs it (BN folded,
channels-last, under ``torch.inference_mode``), timed over ``--steps`` steps after three
untimed ones, with and without the setting, the two alternating ``--repeats`` times.
Appends one JSON line per process to ``benchmarks/freed-memory/<machine>.jsonl`` and prints
it: page faults per step, median and fastest step, peak memory, the CPU and its load.

    PYTHONPATH=src python benchmarks/freed-memory/run.py --model resnet20 --batch-size 128
    PYTHONPATH=src python benchmarks/freed-memory/run.py --inference --model resnet50 \
        --input-size 224 --batch-size 32
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from resnetlab.bench.records import load_average, machine_slug
from resnetlab.engine.cpu import cpu_info

STEP = """
import contextlib, json, resource, statistics, sys, time
import torch
from resnetlab.engine.cpu import keep_freed_memory, use_small_map_convs
from resnetlab.engine.inference import fold_batchnorm
from resnetlab.models import create_model, model_info

mode, name, batch, size, precision, steps, task = sys.argv[1:8]
batch, steps = int(batch), int(steps)
kept = keep_freed_memory() if mode == "keep" else False
torch.manual_seed(0)
info = model_info(name)
size = int(size) if size != "-" else info.input_size
model = create_model(name, num_classes=10, **info.size_kwargs(size))
model = model.to(memory_format=torch.channels_last)
x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 10, (batch,))
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, foreach=True)
dtype = torch.bfloat16 if precision == "bf16" else None
autocast = (lambda: torch.autocast("cpu", dtype=dtype)) if dtype else contextlib.nullcontext

if task == "inference":  # inference_model's steps, without its keep_freed_memory()
    model = fold_batchnorm(model.eval()).to(memory_format=torch.channels_last)
    use_small_map_convs(model, size)

def train_step():
    optimizer.zero_grad(set_to_none=True)
    with autocast():
        logits = model(x)
    torch.nn.functional.cross_entropy(logits.float(), y).backward()
    optimizer.step()

def inference_step():
    with torch.inference_mode(), autocast():
        model(x)

step = inference_step if task == "inference" else train_step
for _ in range(3):
    step()
usage = resource.getrusage(resource.RUSAGE_SELF)
seconds = []
for _ in range(steps):
    start = time.perf_counter()
    step()
    seconds.append(time.perf_counter() - start)
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({
    "mode": mode, "kept": kept, "task": task, "model": name, "batch": batch, "size": size,
    "precision": precision, "faults_per_step": (after.ru_minflt - usage.ru_minflt) / steps,
    "median_ms": statistics.median(seconds) * 1e3, "fastest_ms": min(seconds) * 1e3,
    "peak_rss_mib": after.ru_maxrss / 1024,
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--input-size", default="-", help="default: the model's")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--inference", action="store_true", help="forward passes, not steps")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": "src"}
    out = Path(__file__).parent / f"{machine_slug(torch.device('cpu'))}.jsonl"
    for _ in range(args.repeats):
        for mode in ("default", "keep"):
            command = [sys.executable, "-c", STEP, mode, args.model, str(args.batch_size)]
            command += [args.input_size, args.precision, str(args.steps)]
            command.append("inference" if args.inference else "training")
            before = load_average()
            done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
            record = json.loads(done.stdout)
            record.update(
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                cpu=cpu_info(),
                threads=torch.get_num_threads(),
                torch=torch.__version__,
                load_before=before,
            )
            with out.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
