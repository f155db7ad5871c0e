"""``odin-ood reproduce SUITE``: run a suite of the paper's experiments and write the report.

Writes ``report.html`` (self-contained), ``results.json``, ``results.csv`` and the figures as
PNG into ``--out`` (default ``results/SUITE``, ``results/SUITE-quick`` with ``--quick``).
``odin-ood reproduce --list`` shows every suite and whether its model is available. A composite
(``mnist``: ``mnist-lenet`` and ``mnist-mlp``) runs each of its suites into ``--out/<suite>`` and
writes a side-by-side ``report.html`` and ``comparison.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from odin_ood.experiments.run import RunConfig, availability, run_suite
from odin_ood.experiments.comparison import compare
from odin_ood.experiments.suites import COMPOSITES, SUITES
from odin_ood.report import write_report
from odin_ood.report.comparison import write_comparison


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", nargs="?", choices=[*COMPOSITES, *SUITES], help="the suite to run")
    parser.add_argument("--list", action="store_true", help="list the suites and whether each can run")
    parser.add_argument("--data-root", default=None, help="data folder laid out like shared/data (default $ODIN_OOD_DATA)")
    parser.add_argument("--weights", default=None, help="model checkpoint (default: the suite's file under the data root)")
    parser.add_argument("--out", default=None, help="results folder (default results/SUITE[-quick])")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1 ...")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: subsample every set (--limit, default 200) and use a reduced 4x4 grid")
    parser.add_argument("--limit", type=int, default=None, help="at most this many images per dataset")
    parser.add_argument("--temperatures", type=_floats, default=None,
                        help="comma-separated temperatures (default: the paper's 10, or the quick grid)")
    parser.add_argument("--epsilons", type=_floats, default=None,
                        help="comma-separated epsilons (default: the paper's 21, or the quick grid); e.g. 0 for the "
                             "paper's MNIST setting")
    parser.add_argument("--no-cache", action="store_true", help="recompute scores even when cached")
    parser.add_argument("--cache-dir", default=None, help="score cache folder (default $ODIN_OOD_CACHE/scores)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every split, subsample and bootstrap")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    if args.list:
        for name, suite in SUITES.items():
            print(f"{name:<20} {availability(name, args.data_root, args.weights)}\n{'':<20} {suite.description}")
        for name, composite in COMPOSITES.items():
            print(f"{name:<20} runs {', '.join(composite.parts)} and reports them side by side")
        return 0
    if args.suite is None:
        raise ValueError("name a suite (or pass --list)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    out = Path(args.out or f"results/{args.suite}{'-quick' if args.quick else ''}")
    parts = COMPOSITES[args.suite].parts if args.suite in COMPOSITES else (args.suite,)
    results = {}
    for part in parts:
        folder = out / part if args.suite in COMPOSITES else out
        config = RunConfig(suite=part, out=str(folder), data_root=args.data_root, weights=args.weights, device=device,
                           quick=args.quick, limit=args.limit, cache_dir=args.cache_dir, use_cache=not args.no_cache,
                           seed=args.seed, batch_size=args.batch_size, progress=not args.no_progress,
                           temperatures=args.temperatures, epsilons=args.epsilons)
        results[part] = run_suite(config)
        report = write_report(results[part], folder)
        for row in results[part]["main_table"]["rows"]:
            m = row["metrics"]
            print(f"{part:<12} {row['label']:<40} {row['method']:<11} FPR95 {100 * m['fpr_at_95_tpr']:5.1f}  "
                  f"AUROC {100 * m['auroc']:5.1f}")
        for s in results[part]["skipped"]:
            print(f"skipped {s['label']}: {s['reason']}")
    if args.suite in COMPOSITES:
        comparison = compare(results)
        report = write_comparison(comparison, out, f"odin-ood: suite {args.suite} ({', '.join(parts)})",
                                  COMPOSITES[args.suite].description)
        for line in comparison["findings"]:
            print(line)
    print(f"report: {report}")
    return 0
