"""Median ms of a ResNet-20 training step (fp32, channels-last, 32x32) at a batch and a
thread count, in a process whose OpenMP waiting is whatever the environment sets.

Run by ``small_batch.sh``, which starts one process per setting with the wait policy in
its environment (OpenMP reads it once, when PyTorch loads it) and the CPU calibration off
(``RESNETLAB_CALIBRATE=off``: the fixed defaults, only the thread count given here).
"""

import statistics
import sys
import time

import torch

from resnetlab.engine import TrainConfig
from resnetlab.engine.calibrate import synthetic_batch
from resnetlab.engine.step import build_training

batch, threads = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
config = TrainConfig(model="resnet20", batch_size=batch, precision="fp32", channels_last=True)
parts = build_training(config, torch.device("cpu"), num_classes=10, input_size=32)
x, y = synthetic_batch(batch, 32, 10, channels_last=True)
for _ in range(3):
    parts.step(x, y)
times = []
for _ in range(15):
    start = time.perf_counter()
    parts.step(x, y)
    times.append(time.perf_counter() - start)
print(f"{statistics.median(times) * 1e3:.1f}")
