"""``odin_ood.metrics.evaluate`` time on 10^4 ... 10^7 scores (half ID, half OOD), on the CPU.

All five metrics come from one sort of the pooled scores, so the time should grow as n log n:
the benchmark reports seconds / (n log2 n) per size (roughly constant if so) and the slope of
log(time) against log(n) between the two largest sizes (1 for n, a little above for n log n).

    python benchmarks/bench_metrics.py
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from odin_ood.metrics import evaluate


def time_evaluate(n: int, repeats: int, seed: int = 0) -> float:
    """Best of ``repeats`` wall times of evaluate on n scores (ties included: rounded to 1e-4)."""
    rng = np.random.default_rng(seed)
    s_in = np.round(rng.normal(1.0, 1.0, n // 2), 4)
    s_out = np.round(rng.normal(0.0, 1.0, n - n // 2), 4)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        evaluate(s_in, s_out)
        best = min(best, time.perf_counter() - start)
    return best


def parser():
    p = common.base_parser(__doc__.splitlines()[0])
    p.set_defaults(device="cpu")
    p.add_argument("--sizes", type=int, nargs="+", default=[10**4, 10**5, 10**6, 10**7])
    p.add_argument("--repeats", type=int, default=3)
    return p


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    if args.tiny:
        args.sizes, args.repeats = [10**3, 10**4], 1
    common.setup(args)
    rows = []
    for n in args.sizes:
        s = time_evaluate(n, args.repeats)
        rows.append({"n": n, "seconds": s, "ns_per_n_log2_n": 1e9 * s / (n * math.log2(n))})
    a, b = rows[-2], rows[-1]
    slope = math.log(b["seconds"] / a["seconds"]) / math.log(b["n"] / a["n"])
    ctx = common.context(torch.device("cpu"), dtype="float64", tiny=args.tiny)
    payload = {
        "benchmark": "bench_metrics",
        "context": ctx,
        "rows": rows,
        "loglog_slope_last_two": slope,
        "seconds_at_1e6": next((r["seconds"] for r in rows if r["n"] == 10**6), None),
    }
    common.write_json(args.out, "bench_metrics", payload)
    common.append_results(
        args.results,
        "bench_metrics: evaluate on n scores" + (" (tiny)" if args.tiny else ""),
        ctx,
        rows,
        f"log-log slope between the two largest sizes: {slope:.3f} (1.0 = linear; n log n gives slightly above 1).",
    )
    return payload


if __name__ == "__main__":
    main()
