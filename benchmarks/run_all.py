"""Every benchmark in one invocation: a few minutes on one H100/H200, seconds with ``--tiny``.

    python benchmarks/run_all.py --weights densenet-bc-100-cifar10.pth.tar --data-root DATA --out OUT
    python benchmarks/run_all.py --tiny --device cpu --out /tmp/bench     # smoke test (CI)

Each benchmark writes ``OUT/<name>.json`` and appends its section to ``--results``; a failing
benchmark is recorded in ``OUT/run_all.json`` and the others still run (exit status 1 then).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_metrics
import bench_reproduce
import bench_scoring
import bench_tuning
import common


def plan(args: argparse.Namespace) -> list[tuple[str, object, list[str]]]:
    """(label, module, argv) of each run: full sizes, or tiny ones on small models."""
    common_argv = ["--device", args.device, "--results", str(args.results or "")]
    if args.threads:
        common_argv += ["--threads", str(args.threads)]
    weights = ["--weights", str(args.weights)] if args.weights else []
    data = ["--data-root", str(args.data_root or "")]
    if args.tiny:
        tiny = [*common_argv, "--tiny"]
        return [
            (
                "scoring",
                bench_scoring,
                [
                    *tiny,
                    "--models",
                    "mnist-mlp",
                    "resnet20",
                    "--dtypes",
                    "fp32",
                    "bf16",
                    "--channels-last",
                    "--baseline",
                ],
            ),
            ("tuning", bench_tuning, [*tiny, "--model", "mnist-mlp", *data]),
            ("metrics", bench_metrics, tiny),
            (
                "reproduce",
                bench_reproduce,
                [*tiny, "--model", "mnist-mlp", "--data-root", "", "--dtypes", "fp32", "bf16"],
            ),
        ]
    return [
        (
            "scoring",
            bench_scoring,
            common_argv
            + weights
            + ["--batch-size", "256", "--batches", "20", "--dtypes", "fp32", "bf16", "--channels-last", "--baseline"],
        ),
        (
            "scoring_eps0",
            bench_scoring,
            common_argv + weights + ["--batch-size", "256", "--batches", "20", "--epsilon", "0"],
        ),
        (
            "scoring_compile",
            bench_scoring,
            common_argv
            + weights
            + ["--models", "densenet-bc-100", "--batch-size", "256", "--batches", "20", "--compile"],
        ),
        ("tuning", bench_tuning, common_argv + weights + data + ["--n", "500", "--batch-size", "256"]),
        ("metrics", bench_metrics, ["--device", "cpu", *common_argv[2:]]),
        (
            "reproduce",
            bench_reproduce,
            common_argv + weights + data + ["--dtypes", "fp32", "bf16", "--cells-per-forward", "8"],
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--weights", type=Path, default=None, help="DenseNet-BC-100 CIFAR-10 checkpoint")
    p.add_argument(
        "--data-root",
        type=common.optional_path,
        default=common.DEFAULT_DATA_ROOT,
        help="real data folder ('' = synthetic data)",
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--results", type=common.optional_path, default=common.DEFAULT_RESULTS, help="'' = none")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--tiny", action="store_true")
    args = p.parse_args(argv)
    status = {}
    for label, module, run_argv in plan(args):
        start = time.perf_counter()
        try:
            module.main([*run_argv, "--out", str(args.out / label)])
            status[label] = {"ok": True}
        except Exception as e:  # one failure must not lose the other figures of a GPU run
            traceback.print_exc()
            status[label] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        status[label]["seconds"] = time.perf_counter() - start
        print(f"[run_all] {label}: {status[label]}", flush=True)
    common.write_json(args.out, "run_all", {"tiny": args.tiny, "device": args.device, "status": status})
    return 0 if all(s["ok"] for s in status.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
