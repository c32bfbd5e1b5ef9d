"""Load on `resnetlab serve` over loopback: throughput, latency and errors, batching on and off.

    python benchmarks/serve_load.py                       # resnet18 at 64x64, SIGNS test images
    python benchmarks/serve_load.py --model-file runs/x/best.safetensors --clients 32 --requests 50

For each ``--max-batch`` value a fresh server is started (``resnetlab serve --port 0``) and
``--clients`` concurrent clients each send ``--requests`` images one after another (raw
JPEG bodies, as a phone app would) after a short warm-up. The clients share the machine
with the server, as they do on one host; the comparison of the settings is the point, not
the absolute figures. Each setting's result is one JSON line in ``--results``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch

from resnetlab import create_model, model_info, save_model
from resnetlab.bench.records import environment, load_average
from resnetlab.serve.process import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
SIGNS = ROOT.parent / "shared" / "data" / "signs" / "64x64_SIGNS" / "test_signs"


async def _client(http: httpx.AsyncClient, url: str, bodies: list[bytes], start: int, n: int):
    """``n`` requests one after another; (latency in s, status or error name) each."""
    results = []
    for i in range(n):
        body = bodies[(start + i) % len(bodies)]
        began = time.perf_counter()
        try:
            answer = await http.post(url, content=body, headers={"Content-Type": "image/jpeg"})
            outcome = answer.status_code
        except httpx.HTTPError as e:
            outcome = type(e).__name__
        results.append((time.perf_counter() - began, outcome))
    return results


async def load(url: str, bodies: list[bytes], clients: int, requests: int) -> dict:
    """Every client sends ``requests`` images; throughput, latency percentiles, errors."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=120) as http:
        # Warm-up: every connection opened and the model run a few times before timing.
        await asyncio.gather(*(_client(http, url, bodies, c, 2) for c in range(clients)))
        began = time.perf_counter()
        runs = await asyncio.gather(
            *(_client(http, url, bodies, c * requests, requests) for c in range(clients))
        )
        wall = time.perf_counter() - began
    latencies = np.array([t for run in runs for t, _ in run])
    errors = sorted({str(o) for run in runs for _, o in run if o != 200})
    failed = sum(o != 200 for run in runs for _, o in run)
    return {
        "requests": int(latencies.size),
        "errors": failed,
        "error_kinds": errors,
        "seconds": wall,
        "requests_per_s": (latencies.size - failed) / wall,
        "latency_ms": {
            "p50": float(np.percentile(latencies, 50) * 1000),
            "p90": float(np.percentile(latencies, 90) * 1000),
            "p99": float(np.percentile(latencies, 99) * 1000),
            "max": float(latencies.max() * 1000),
        },
    }


def _model_file(args: argparse.Namespace, folder: Path) -> Path:
    if args.model_file:
        return Path(args.model_file)
    # Serving speed does not depend on the weights: a model of the size a SIGNS model has.
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=6, **model_info(args.model).size_kwargs(64))
    path = folder / f"{args.model}-64px-6classes.safetensors"
    save_model(model, path, class_names=[str(i) for i in range(6)], input_size=64)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-file", help="a model file to serve (default: --model, untrained)")
    p.add_argument("--model", default="resnet18", help="without --model-file (resnet18)")
    p.add_argument("--images", default=str(SIGNS), help="folder of JPEGs (SIGNS test images)")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients (32)")
    p.add_argument("--requests", type=int, default=50, help="requests per client (50)")
    p.add_argument(
        "--max-batch", type=int, nargs="+", default=[1, 16], help="settings compared (1 16)"
    )
    p.add_argument("--max-wait-ms", type=float, default=2.0, help="the server's (2)")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "serve" / "results.jsonl"))
    p.add_argument("--no-save", action="store_true", help="print only")
    args = p.parse_args(argv)

    bodies = [f.read_bytes() for f in sorted(Path(args.images).glob("*.jpg"))]
    if not bodies:
        sys.exit(f"error: no .jpg images in {args.images}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model_file = _model_file(args, Path(tmp))
        for max_batch in args.max_batch:
            flags = ["--max-batch", str(max_batch), "--max-wait-ms", str(args.max_wait_ms)]
            record = {
                "command": " ".join(
                    ["python", "benchmarks/serve_load.py", *(argv or sys.argv[1:])]
                ),
                "kind": "serve",
                "model": args.model_file or args.model,
                "settings": {
                    "max_batch": max_batch,
                    "max_wait_ms": args.max_wait_ms,
                    "clients": args.clients,
                    "requests_per_client": args.requests,
                    "images": len(bodies),
                },
                **environment(torch.device("cpu")),
            }
            log_dir = Path(tmp) / f"server-{max_batch}"
            with ServerProcess(model_file, *flags, log_dir=log_dir, timeout_s=600) as server:
                record["result"] = asyncio.run(
                    load(server.url + "predict", bodies, args.clients, args.requests)
                )
                record["batching"] = server.metadata()["batching"]
            record["load_after"] = load_average()
            rows.append(record)
            _print(record)
            if not args.no_save:
                os.makedirs(Path(args.results).parent, exist_ok=True)
                with open(args.results, "a") as f:
                    f.write(json.dumps(record) + "\n")
    if len(rows) > 1:
        base = rows[0]["result"]["requests_per_s"]
        for r in rows[1:]:
            ratio = r["result"]["requests_per_s"] / base
            print(
                f"max-batch {r['settings']['max_batch']} vs {rows[0]['settings']['max_batch']}: "
                f"{ratio:.2f}x the throughput"
            )
    return 1 if any(r["result"]["errors"] for r in rows) else 0


def _print(record: dict) -> None:
    r, b = record["result"], record["batching"]
    mean_batch = b["images"] / max(1, b["batches"])
    print(
        f"max-batch {record['settings']['max_batch']:>3}: {r['requests_per_s']:7.1f} req/s, "
        f"p50 {r['latency_ms']['p50']:7.1f} ms, p99 {r['latency_ms']['p99']:7.1f} ms, "
        f"errors {r['errors']}, mean batch {mean_batch:.1f} (largest {b['largest_batch']}), "
        f"load {record['load_before']} -> {record['load_after']}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
