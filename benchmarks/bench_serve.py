"""Throughput of the HTTP gate: requests/s, images/s and p50/p99 latency.

Fits an ODIN detector for the shipped MNIST MLP on real MNIST/notMNIST images, starts
``odin-ood serve`` on a free loopback port, sends ``--requests`` requests (``--images`` PNGs each)
from ``--clients`` concurrent clients, writes the figures as JSON and appends one line to
benchmarks/RESULTS.md. Everything stays on 127.0.0.1 and is bounded by the request count.

    PYTHONPATH=src python benchmarks/bench_serve.py --data ../shared/data --requests 2000 --clients 16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from serving_support import encode, fit_mnist_detector, start_server, stop_server  # noqa: E402

HEADER = """# Benchmark results

CPU figures, this machine; GPU figures pending a GPU run.

| date | benchmark | device | setting | requests/s | images/s | p50 ms | p99 ms |
|---|---|---|---|---|---|---|---|
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--images", type=int, default=1, help="images per request")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--json", default=str(HERE / "bench_serve.json"))
    p.add_argument("--results", default=str(HERE / "RESULTS.md"))
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        det, mnist, notmnist = fit_mnist_detector(Path(args.data), Path(tmp) / "det", batch_size=args.max_batch)
        pool = np.concatenate([mnist.images[5000:5128, 0].numpy(), notmnist.images[:128, 0].numpy()])
        blobs = [encode(im) for im in pool]
        proc, url = start_server(["--detector", str(Path(tmp) / "det"), "--model", "mnist-mlp",
                                  "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms),
                                  "--max-images", str(max(args.images, 1)), "--no-auth"])
        try:
            figures = load(url, blobs, args)
        finally:
            stop_server(proc)
    figures.update(device=f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})",
                   setting=f"mnist-mlp, {args.clients} clients, {args.images} PNG/request, "
                           f"max-batch {args.max_batch}, wait {args.max_wait_ms} ms")
    Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    results = Path(args.results)
    if not results.exists():
        results.write_text(HEADER)
    with open(results, "a") as f:
        f.write(f"| {time.strftime('%Y-%m-%d')} | bench_serve.py | {figures['device']} | {figures['setting']} | "
                f"{figures['requests_per_s']:.0f} | {figures['images_per_s']:.0f} | "
                f"{figures['p50_ms']:.1f} | {figures['p99_ms']:.1f} |\n")
    print(json.dumps(figures, indent=2))
    return 0


def load(url: str, blobs: list[bytes], args: argparse.Namespace) -> dict:
    def client(k: int) -> tuple[list[float], list[int]]:
        latencies, statuses = [], []
        with httpx.Client(base_url=url, timeout=60.0) as c:
            for j in range(k, args.requests, args.clients):
                files = [("images", (f"{i}.png", blobs[(j + i) % len(blobs)])) for i in range(args.images)]
                t = time.perf_counter()
                r = c.post("/v1/predict", files=files)
                latencies.append(time.perf_counter() - t)
                statuses.append(r.status_code)
        return latencies, statuses

    health = httpx.get(url + "/healthz").json()
    start = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        parts = list(pool.map(client, range(args.clients)))
    seconds = time.perf_counter() - start
    after = httpx.get(url + "/healthz").json()
    lat = np.array([x for p in parts for x in p[0]]) * 1000
    statuses = [s for p in parts for s in p[1]]
    return {
        "requests": args.requests, "seconds": seconds, "errors": sum(s != 200 for s in statuses),
        "requests_per_s": args.requests / seconds, "images_per_s": args.requests * args.images / seconds,
        "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
        "mean_images_per_batch": (after["images"] - health["images"]) / max(1, after["batches"] - health["batches"]),
    }


if __name__ == "__main__":
    raise SystemExit(main())
