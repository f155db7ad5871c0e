"""Wall time of one Table-2 block: one model, four OOD sets, full-grid tuning + evaluation.

Protocol (paper section 4.4): the first ``--n-tune`` images of the ID set and of each OOD set
are held out for tuning the paper's 10 x 21 grid by FPR at 95% TPR (the ID grid scores are
computed once and shared by the four OOD sets); the other images are scored by MSP and by ODIN
at the chosen (T, eps) and evaluated. Data loading is timed apart. With ``--dtypes fp32 bf16``
the block runs in both precisions and the FPR differences (in points) are reported.

Data: ID = CIFAR-10 test as JPEG (the only 10,000-image CIFAR-10 test set available here: a
shifted ID distribution for the pretrained DenseNet, fine for timing, not for the paper's
figures); OOD = TinyImageNet (crop), TinyImageNet (resize), Gaussian, Uniform from
``odin_ood.data``. Without the files (``--data-root``), synthetic images of the right shape are
used and the output says so.

    python benchmarks/bench_reproduce.py --weights densenet-bc-100-cifar10.pth.tar --data-root DATA
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from odin_ood import PAPER_EPSILONS, PAPER_TEMPERATURES, msp_scores, odin_scores
from odin_ood._utils.batching import map_batches
from odin_ood.metrics import evaluate
from odin_ood.tuning import grid_scores, tune_from_scores

ID_SET = "cifar10-jpeg"
OOD_SETS = ("tinyimagenet-crop", "tinyimagenet-resize", "gaussian", "uniform")


def load_sets(model, n: int, data_root: Path | None) -> tuple[dict[str, torch.Tensor], str]:
    sets = {name: common.load_images(name, model, n, data_root) for name in (ID_SET, *OOD_SETS)}
    if all(x is not None and len(x) == n for x in sets.values()):
        return sets, "real (odin_ood.data)"
    g = torch.Generator().manual_seed(0)
    return {name: torch.randn((n, *model.input_shape), generator=g) for name in sets}, "synthetic N(0, 1) inputs"


def run_block(model, sets, args, device, dtype: str) -> dict:
    std, temps, eps, k = model.input_std, args.temperatures, args.epsilons, args.n_tune
    x_id = sets[ID_SET]

    def grid(x):
        return grid_scores(model, x, temps, eps, std, args.batch_size, cells_per_forward=args.cells_per_forward)

    def odin(x, t, e):
        return map_batches(lambda b: odin_scores(model, b, t, e, std, normalise=False), x, args.batch_size)

    def block():
        id_grid = grid(x_id[:k])
        id_msp = map_batches(lambda b: msp_scores(model, b, normalise=False), x_id[k:], args.batch_size)
        id_odin: dict[tuple[float, float], torch.Tensor] = {}
        out = {}
        for name in OOD_SETS:
            x = sets[name]
            chosen = tune_from_scores(id_grid, grid(x[:k]), temps, eps)
            cell = (chosen.temperature, chosen.epsilon)
            if cell not in id_odin:
                id_odin[cell] = odin(x_id[k:], *cell)
            out[name] = {
                "temperature": cell[0],
                "epsilon": cell[1],
                "msp": evaluate(
                    id_msp, map_batches(lambda b: msp_scores(model, b, normalise=False), x[k:], args.batch_size)
                ),
                "odin": evaluate(id_odin[cell], odin(x[k:], *cell)),
            }
        return out

    with common.precision(device, dtype), common.peak_memory(device) as mem:
        results, seconds = common.timed(block, device)
    return {"dtype": dtype, "seconds": seconds, "peak_mib": mem["peak_mib"], "sets": results}


def parser():
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--model", default="densenet-bc-100")
    p.add_argument("--weights", type=Path, default=None, help="checkpoint (without: untrained, timing only)")
    p.add_argument(
        "--data-root",
        type=common.optional_path,
        default=common.DEFAULT_DATA_ROOT,
        help="real data folder ('' = synthetic data)",
    )
    p.add_argument("--n", type=int, default=10000, help="images per set")
    p.add_argument("--n-tune", type=int, default=1000, help="held-out images per set for tuning")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--cells-per-forward", type=int, default=1)
    p.add_argument("--temperatures", type=float, nargs="+", default=list(PAPER_TEMPERATURES))
    p.add_argument("--epsilons", type=float, nargs="+", default=list(PAPER_EPSILONS))
    p.add_argument("--dtypes", nargs="+", default=["fp32"], choices=list(common.DTYPES))
    return p


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    if args.tiny:
        args.n, args.n_tune, args.batch_size = 24, 12, 12
        args.temperatures, args.epsilons = [1.0, 1000.0], [0.0, 0.002]
    device = common.setup(args)
    model = common.load_model(args.model, device, args.weights)
    (sets, source), load_s = common.timed(lambda: load_sets(model, args.n, args.data_root), device)
    sets = {name: x.to(device) for name, x in sets.items()}
    if not args.tiny:  # warm-up (cuDNN autotuning) outside the timed block
        run_block(
            model,
            {n: x[: 2 * args.batch_size] for n, x in sets.items()},
            argparse_like(args, n_tune=args.batch_size),
            device,
            args.dtypes[0],
        )
    runs = [run_block(model, sets, args, device, d) for d in args.dtypes]
    if len(runs) > 1:
        for run in runs[1:]:
            for name, r in run["sets"].items():
                r["fpr_points_vs_" + runs[0]["dtype"]] = 100 * (
                    r["odin"]["fpr_at_95_tpr"] - runs[0]["sets"][name]["odin"]["fpr_at_95_tpr"]
                )
    ctx = common.context(device, batch_size=args.batch_size, dtype=",".join(args.dtypes), tiny=args.tiny)
    payload = {
        "benchmark": "bench_reproduce",
        "context": ctx,
        "model": args.model,
        "weights": str(args.weights) if args.weights else "untrained (timing only)",
        "data": source,
        "n_per_set": args.n,
        "n_tune": args.n_tune,
        "grid": [len(args.temperatures), len(args.epsilons)],
        "cells_per_forward": args.cells_per_forward,
        "load_seconds": load_s,
        "runs": runs,
    }
    common.write_json(args.out, "bench_reproduce", payload)
    rows = [
        {
            "dtype": r["dtype"],
            "ood": name,
            "seconds_whole_block": r["seconds"],
            "T": s["temperature"],
            "eps": s["epsilon"],
            "msp_fpr95": s["msp"]["fpr_at_95_tpr"],
            "odin_fpr95": s["odin"]["fpr_at_95_tpr"],
            "odin_auroc": s["odin"]["auroc"],
            "fpr_points_vs_fp32": s.get("fpr_points_vs_fp32"),
        }
        for r in runs
        for name, s in r["sets"].items()
    ]
    common.append_results(
        args.results,
        f"bench_reproduce: Table-2 block, {args.model}, 4 OOD sets x {args.n}" + (" (tiny)" if args.tiny else ""),
        ctx,
        rows,
        f"Data: {source}; weights: {payload['weights']}; grid {len(args.temperatures)}x{len(args.epsilons)} "
        f"tuned on {args.n_tune} per set, "
        f"data loading {load_s:.1f} s (not in the block time).",
    )
    return payload


def argparse_like(args, **changes):
    return type(args)(**{**vars(args), **changes})


if __name__ == "__main__":
    main()
