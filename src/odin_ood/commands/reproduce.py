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

from odin_ood.experiments.comparison import compare
from odin_ood.experiments.config import STAGES, RunConfig
from odin_ood.experiments.loading import availability
from odin_ood.experiments.run import run_suite
from odin_ood.experiments.scorer import PRECISIONS
from odin_ood.experiments.suites import COMPOSITES, SUITES
from odin_ood.experiments.tuning_sources import EVAL_LIMIT_CPU
from odin_ood.report import write_report
from odin_ood.report.comparison import write_comparison
from odin_ood.tuning.searches import REPRODUCE_DEFAULT_SEARCH, REPRODUCE_SEARCHES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", nargs="?", choices=[*COMPOSITES, *SUITES], help="the suite to run")
    parser.add_argument("--list", action="store_true", help="list the suites and whether each can run")
    parser.add_argument(
        "--data-root", default=None, help="data folder laid out like shared/data (default $ODIN_OOD_DATA)"
    )
    parser.add_argument(
        "--weights", default=None, help="model checkpoint (default: the suite's file under the data root)"
    )
    parser.add_argument(
        "--num-classes",
        type=int,
        default=None,
        metavar="N",
        help="classes of the checkpoint's head (default: the suite's)",
    )
    parser.add_argument("--out", default=None, help="results folder (default results/SUITE[-quick])")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1 ...")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: subsample every set (--limit, default 200) and use a reduced 4x4 grid",
    )
    parser.add_argument("--limit", type=int, default=None, help="at most this many images per dataset")
    parser.add_argument(
        "--temperatures",
        type=_floats,
        default=None,
        help="comma-separated temperatures (default: the paper's 10, or the quick grid)",
    )
    parser.add_argument(
        "--epsilons",
        type=_floats,
        default=None,
        help="comma-separated epsilons (default: the paper's 21, or the quick grid); e.g. 0 for the "
        "paper's MNIST setting",
    )
    parser.add_argument("--no-cache", action="store_true", help="recompute scores even when cached")
    parser.add_argument("--cache-dir", default=None, help="score cache folder (default $ODIN_OOD_CACHE/scores)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every split, subsample and bootstrap")
    parser.add_argument("--batch-size", type=int, default=128, help="images per forward pass")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (on a shared, loaded CPU 1 beats 2: benchmarks/RESULTS.md)",
    )
    parser.add_argument(
        "--search",
        choices=REPRODUCE_SEARCHES,
        default=REPRODUCE_DEFAULT_SEARCH,
        help="how (T, eps) is chosen on the tuning splits (default "
        f"{REPRODUCE_DEFAULT_SEARCH}): the paper's full grid, "
        "or successive halving over it (0.3-0.6 of the cost; picked the grid's cell in 50/50 MNIST "
        "runs but 7/10 on ResNet-20 TinyImageNet crop, within 2 tuning-FPR points: "
        "benchmarks/RESULTS.md)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="model arithmetic; bf16 autocast keeps scores in float32 (gap in benchmarks/RESULTS.md)",
    )
    parser.add_argument(
        "--eval-grid",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="score every image at every grid cell (needed for the sweeps, cross-dataset and tuning-size "
        "figures; default: on with --quick, a GPU or the cheap MNIST suites, "
        "off otherwise on a CPU, where only the cells needed are scored)",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="start no new chunk after this many seconds; write what finished, marked incomplete "
        "(0 = only report what the cache already holds)",
    )
    parser.add_argument(
        "--sources-limit",
        type=int,
        default=EVAL_LIMIT_CPU,
        metavar="N",
        help="without --eval-grid, the tuning-source comparison evaluates a seeded subsample of at most "
        f"N images per evaluation split (default {EVAL_LIMIT_CPU})",
    )
    parser.add_argument(
        "--sources-oracle",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="without --eval-grid, include the tuning-source comparison's oracle (the best cell on the "
        "evaluated images, found by the search: its costliest part)",
    )
    parser.add_argument(
        "--stop-after",
        choices=STAGES,
        default=None,
        help="stop after this stage and write its rows, marked incomplete (rerun to continue)",
    )
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
        config = RunConfig(
            suite=part,
            out=str(folder),
            data_root=args.data_root,
            weights=args.weights,
            device=device,
            quick=args.quick,
            limit=args.limit,
            cache_dir=args.cache_dir,
            use_cache=not args.no_cache,
            seed=args.seed,
            batch_size=args.batch_size,
            progress=not args.no_progress,
            temperatures=args.temperatures,
            epsilons=args.epsilons,
            search=args.search,
            precision=args.precision,
            eval_grid=args.eval_grid,
            stop_after=args.stop_after,
            time_limit=args.time_limit,
            sources_limit=args.sources_limit,
            sources_oracle=args.sources_oracle,
            num_classes=args.num_classes,
        )
        results[part] = run_suite(config)
        report = write_report(results[part], folder)
        _print_rows(part, results[part])
        print(
            f"report: {report}" + ("" if results[part]["complete"] else "  (INCOMPLETE: rerun the command to continue)")
        )
    if args.suite in COMPOSITES:
        comparison = compare(results)
        report = write_comparison(
            comparison, out, f"odin-ood: suite {args.suite} ({', '.join(parts)})", COMPOSITES[args.suite].description
        )
        for line in comparison["findings"]:
            print(line)
        print(f"report: {report}")
    return 0


def _print_rows(part: str, results: dict) -> None:
    for row in results["every_image"]:
        print(
            f"{part:<12} {row['label']:<45} every image ({row['n_out']}/{row['n_out_total']}) T={row['temperature']:g} "
            f"eps={row['epsilon']:g}: FPR95 MSP {100 * row['msp']['fpr_at_95_tpr']:5.1f} -> ODIN "
            f"{100 * row['odin']['fpr_at_95_tpr']:5.1f}"
        )
    for row in results.get("main_table", {}).get("rows", []):
        m = row["metrics"]
        print(
            f"{part:<12} {row['label']:<45} {row['method']:<11} FPR95 {100 * m['fpr_at_95_tpr']:5.1f}  "
            f"AUROC {100 * m['auroc']:5.1f}"
        )
    for s in results["skipped"]:
        print(f"skipped {s['label']}: {s['reason']}")
