"""Tuning search: successive halving vs the paper's full grid, on a suite's real tuning splits.

For each OOD set of ``--suite`` the ID and OOD tuning splits are exactly the suite's (same
seeds); every cell of the 10x21 grid is scored on every tuning image once (cached), then the
full grid search and successive halving (``odin_ood.tuning.halving``, one run per ``--seeds`` image
order) both read those scores. Recorded per set and seed: the cell each chooses, whether they
agree, the tuning FPR@95 of each choice and the gap, the FPR@95 on the evaluation split of each
choice when they differ, and halving's cost as a fraction of the grid's cell-image evaluations.
``--timed-set`` also times both searches end to end on the model for one set (no cache).

    python benchmarks/bench_search.py --suite mnist
    python benchmarks/bench_search.py --suite cifar10-resnet20 --precision bf16
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from odin_ood.experiments import loading
from odin_ood.experiments.cache import ScoreCache
from odin_ood.experiments.protocol import dataset_seed, split_indices
from odin_ood.experiments.scorer import Scorer
from odin_ood.metrics import fpr_at_tpr
from odin_ood.tuning import PAPER_EPSILONS, PAPER_TEMPERATURES
from odin_ood.tuning.halving import array_scorer, model_scorer, search


def parser():
    p = common.suite_parser(__doc__.splitlines()[0], "mnist-mlp", batch_size=128)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--eta", type=float, default=3.0)
    p.add_argument("--min-images", type=int, default=100)
    p.add_argument("--sets", nargs="*", default=None, help="OOD set keys (default: every loadable set)")
    p.add_argument("--timed-set", default=None, help="also time grid vs halving on the model for this set")
    return p


def tuning_subset(spec, ds, n_tune: int, seed: int):
    split = split_indices(len(ds), min(n_tune, len(ds) // 2), dataset_seed(seed, spec.key))
    return split, ds.subset(torch.from_numpy(split.tune))


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    device = common.setup(args)
    suite, root, model = common.suite_model(args, device)
    temps, eps = (PAPER_TEMPERATURES[:2], PAPER_EPSILONS[:3]) if args.tiny else (PAPER_TEMPERATURES, PAPER_EPSILONS)
    scorer = Scorer(model, temps, eps, ScoreCache(), args.batch_size, progress=False, precision=args.precision)
    id_spec = next(s for s in suite.id_candidates if common.suite_data_loads(s, root, model))
    id_ds = loading.load_spec(id_spec, root, model)
    id_split, id_tune = tuning_subset(id_spec, id_ds, suite.id_tune, 0)
    started = time.perf_counter()
    g_in = scorer.grid(id_tune)["grid"]
    rows, timings = [], {}
    for spec in suite.ood:
        if (args.sets and spec.key not in args.sets) or not common.suite_data_loads(spec, root, model):
            continue
        ds = loading.load_spec(spec, root, model)
        split, tune_ds = tuning_subset(spec, ds, suite.ood_tune, 0)
        t0 = time.perf_counter()
        g_out = scorer.grid(tune_ds)["grid"]
        print(f"{spec.key}: grid on {len(tune_ds)} tuning images in {time.perf_counter() - t0:.0f} s", flush=True)
        score = array_scorer(g_in, g_out)
        shape = (len(temps), len(eps))
        full = search(score, g_in.shape[-1], g_out.shape[-1], shape, "grid")
        for seed in args.seeds:
            h = search(
                score,
                g_in.shape[-1],
                g_out.shape[-1],
                shape,
                "halving",
                eta=args.eta,
                min_images=args.min_images,
                seed=seed,
            )
            row = {
                "set": spec.key,
                "seed": seed,
                "grid_cell": _cell(full.index, temps, eps),
                "halving_cell": _cell(h.index, temps, eps),
                "same_cell": h.index == full.index,
                "tuning_fpr_grid": float(full.fpr[full.index]),
                "tuning_fpr_halving": float(full.fpr[h.index]),
                "cost_fraction": round(h.cost_fraction, 4),
                "rounds": len(h.rounds),
                "eval_fpr_gap": 0.0,
            }
            if h.index != full.index:
                row["eval_fpr_gap"] = _eval_fpr(scorer, id_ds, id_split, ds, split, temps, eps, h.index) - _eval_fpr(
                    scorer, id_ds, id_split, ds, split, temps, eps, full.index
                )
            rows.append(row)
        if args.timed_set == spec.key:
            timings = _timed(scorer, id_tune, tune_ds, temps, eps, args)
    ctx = common.context(
        device, batch_size=args.batch_size, dtype=args.precision, tiny=args.tiny, threads=torch.get_num_threads()
    )
    agree = sum(r["same_cell"] for r in rows)
    summary = (
        f"Suite {args.suite}: halving (eta {args.eta:g}, min {args.min_images} images) chose the full grid's cell "
        f"in {agree}/{len(rows)} (set, seed) runs; mean cost {np.mean([r['cost_fraction'] for r in rows]):.3f} of "
        f"the grid's cell-image evaluations; largest tuning-FPR gap "
        f"{max(r['tuning_fpr_halving'] - r['tuning_fpr_grid'] for r in rows):.4f}, largest eval-FPR gap "
        f"{max(r['eval_fpr_gap'] for r in rows):.4f}. Grids scored in {time.perf_counter() - started:.0f} s "
        f"(cached scores reused)." + (f" Timed on the model ({args.timed_set}): {timings}." if timings else "")
    )
    payload = {
        "benchmark": "bench_search",
        "context": ctx,
        "suite": args.suite,
        "rows": rows,
        "timed": timings,
        "summary": summary,
    }
    common.write_json(args.out, f"bench_search_{args.suite}", payload)
    common.append_results(
        args.results, f"bench_search: {args.suite}, halving vs full 10x21 grid on the tuning splits", ctx, rows, summary
    )
    print(summary)
    return payload


def _cell(index, temps, eps) -> str:
    return f"T={temps[index[0]]:g} eps={eps[index[1]]:g}"


def _eval_fpr(scorer, id_ds, id_split, ds, split, temps, eps, index) -> float:
    T, e = temps[index[0]], eps[index[1]]
    return fpr_at_tpr(scorer.cell(id_ds, T, e)[id_split.eval], scorer.cell(ds, T, e)[split.eval])


def _timed(scorer, id_tune, tune_ds, temps, eps, args) -> dict:
    x_in, x_out = id_tune.images, tune_ds.images
    out = {}
    for method in ("grid", "halving"):
        fn = model_scorer(
            scorer.model,
            x_in,
            x_out,
            temps,
            eps,
            scorer.model.input_std,
            args.batch_size,
            prepare=scorer.inputs,
            context=scorer.autocast,
        )
        t0 = time.perf_counter()
        search(fn, len(x_in), len(x_out), (len(temps), len(eps)), method, eta=args.eta, min_images=args.min_images)
        out[f"{method}_s"] = round(time.perf_counter() - t0, 1)
    out["halving_over_grid"] = round(out["halving_s"] / out["grid_s"], 3)
    return out


if __name__ == "__main__":
    main()
