"""ODIN images/s on ResNet-20 by thread count and OpenMP wait policy, on an idle and a loaded CPU.

Each configuration (threads 1 or 2, ``OMP_WAIT_POLICY`` unset or PASSIVE) runs in a fresh
process, because the OpenMP runtime reads the policy once, when torch loads it. The load is a
second process spinning ``--load-threads`` busy threads (pure Python in separate processes, so
they hold a core each), started before and stopped after the loaded measurements. Configurations
are interleaved within each repeat; a figure is the median over ``--repeats`` of one process's
median batch rate. ODIN is ``odin_scores`` at T = 1000, eps = 0.0014 on CIFAR-10 images.

    python benchmarks/bench_threads.py --repeats 3
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

CONFIGS = [(1, None), (2, None), (1, "PASSIVE"), (2, "PASSIVE")]
WORKER = """
import json, statistics, sys, time, torch
sys.path.insert(0, {bench!r})
import common
from odin_ood.scores import odin_scores
torch.set_num_threads({threads})
from pathlib import Path
model = common.load_model("resnet20", torch.device("cpu"), Path({weights!r}), channels_last=True)
x = common.load_images("cifar10-lossless-1000", model, {batch}, {root!r})
x = x.contiguous(memory_format=torch.channels_last)
odin_scores(model, x, 1000.0, 0.0014, model.input_std, normalise=False)
rates = []
for _ in range({batches}):
    t0 = time.perf_counter()
    odin_scores(model, x, 1000.0, 0.0014, model.input_std, normalise=False)
    rates.append(len(x) / (time.perf_counter() - t0))
print(json.dumps(statistics.median(rates)))
"""


def parser():
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--data-root", default=str(common.DEFAULT_DATA_ROOT))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=5, help="timed batches per process")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--load-threads", type=int, default=2)
    return p


def _spin() -> None:
    while True:
        pass


def measure(threads: int, policy: str | None, args) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    weights = str(Path(args.data_root) / "models" / "resnet20-cifar10.th")
    code = WORKER.format(
        bench=str(Path(__file__).resolve().parent),
        threads=threads,
        weights=weights,
        batch=args.batch_size if not args.tiny else 8,
        root=args.data_root,
        batches=args.batches if not args.tiny else 1,
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    rates: dict[tuple, list[float]] = {}
    loads: dict[str, list[float]] = {"idle": [], "loaded": []}
    for _ in range(args.repeats if not args.tiny else 1):
        for condition in ("idle", "loaded"):
            spinners = [
                mp.Process(target=_spin, daemon=True) for _ in range(args.load_threads * (condition == "loaded"))
            ]
            for s in spinners:
                s.start()
            time.sleep(1.0 if spinners else 0.0)
            for threads, policy in CONFIGS:
                rates.setdefault((condition, threads, policy), []).append(measure(threads, policy, args))
            loads[condition].append(os.getloadavg()[0])
            for s in spinners:
                s.terminate()
                s.join()
    rows = []
    for condition in ("idle", "loaded"):
        base = statistics.median(rates[(condition, 1, None)])
        for threads, policy in CONFIGS:
            r = statistics.median(rates[(condition, threads, policy)])
            rows.append(
                {
                    "machine": f"{condition} (+{args.load_threads} spinning)"
                    if condition == "loaded"
                    else "no added load",
                    "threads": threads,
                    "OMP_WAIT_POLICY": policy or "unset (active)",
                    "images_per_s": round(r, 1),
                    "vs_1_thread_unset": round(r / base, 2),
                    "load_avg_1min": round(statistics.median(loads[condition]), 2),
                }
            )
    import torch

    ctx = common.context(torch.device("cpu"), batch_size=args.batch_size, repeats=args.repeats)
    ctx["threads"] = "1 and 2 (per row)"
    summary = (
        "Each figure is the median over repeats of one fresh process's median batch rate; configurations "
        "interleaved; 'loaded' adds a process spinning on every core it is given."
    )
    payload = {"benchmark": "bench_threads", "context": ctx, "rows": rows, "summary": summary}
    common.write_json(args.out, "bench_threads", payload)
    common.append_results(
        args.results, "bench_threads: ODIN on ResNet-20 by threads and OMP_WAIT_POLICY", ctx, rows, summary
    )
    for r in rows:
        print(r)
    return payload


if __name__ == "__main__":
    main()
