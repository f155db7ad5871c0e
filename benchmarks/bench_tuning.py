"""Tuning grid cost: naive per-cell scoring vs the shared-work grid, in one run.

Naive: every cell (T, eps) scores the ID and OOD images with ``odin_scores`` (eps > 0: forward
with an input graph, input-only backward, forward; eps = 0: one forward). Shared
(``odin_ood.tuning.grid_scores``, what ``tune()`` runs): per batch one forward with a graph for
all T, one backward per T, and the eps > 0 cells stacked ``cells_per_forward`` at a time into
larger forwards. Both pick (T, eps) by FPR at 95% TPR; the benchmark records whether the scores
are identical (``torch.equal``), their largest difference, and whether the optimum is the same.

The floor of shared/naive by pass count: with T temperatures, C cells with eps > 0 and Z with
eps = 0, and an input-only backward costing b forwards, shared = 1 + T b + C and naive =
C (2 + b) + Z forward-equivalents. b is measured on the model's first batch (median of 5 rounds
of >= 0.2 s blocks); the floor is reported at the measured b and at b = 1 and 2 (the 10 x 21
grid: 0.35 and 0.27). Per-call overhead (many small calls cell by cell) can put a small model
below the floor.

    python benchmarks/bench_tuning.py --model resnet20 --weights resnet20-cifar10.th --n 200 --cells-per-forward 1
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from odin_ood import PAPER_EPSILONS, PAPER_TEMPERATURES, odin_scores
from odin_ood._utils.batching import map_batches
from odin_ood._utils.checks import channel_view
from odin_ood.scores.odin import perturbation_direction
from odin_ood.scores.passes import scoring_mode
from odin_ood.tuning import grid_scores, tune_from_scores


def naive_grid(model, x, temps, eps, input_std, batch_size) -> torch.Tensor:
    return torch.stack(
        [
            torch.stack(
                [
                    map_batches(
                        lambda b, t=t, e=e: odin_scores(model, b, t, e, input_std, normalise=False), x, batch_size
                    )
                    for e in eps
                ]
            )
            for t in temps
        ]
    )


def passes(temps, eps) -> dict[str, int]:
    """Passes over each image (forward or input-only backward) of each method."""
    perturbed = sum(e > 0 for e in eps) * len(temps)
    return {
        "passes_naive": 3 * perturbed + (len(temps) * len(eps) - perturbed),
        "passes_shared": 1 + len(temps) + perturbed,
    }


def floor_ratio(temps, eps, backward_cost: float) -> float:
    """shared / naive in forward-equivalents when an input-only backward costs ``backward_cost``
    forwards and nothing else costs time (see the module docstring)."""
    perturbed = sum(e > 0 for e in eps) * len(temps)
    zero = len(temps) * len(eps) - perturbed
    return (1 + len(temps) * backward_cost + perturbed) / (perturbed * (2 + backward_cost) + zero)


def backward_cost(model, x, input_std, device, rounds: int = 5, min_block_s: float = 0.2) -> dict[str, float]:
    """Seconds of a forward without a graph and of a forward with an input graph plus the
    input-only backward on batch ``x``. Each is timed as a block of repetitions lasting at least
    ``min_block_s`` (small models take milliseconds), the two blocks back to back in each of
    ``rounds`` rounds; medians, and ``backward_over_forward`` = b = median of (both / forward - 1)."""

    def forward():
        with torch.no_grad():
            model(x)

    def forward_backward():
        xg = x.detach().requires_grad_(True)
        perturbation_direction(model(xg), xg, 1000.0, std)

    def block(fn, k):
        return common.timed(lambda: [fn() for _ in range(k)], device)[1] / k

    std = channel_view(input_std, x)
    with scoring_mode(model):
        k = max(1, int(min_block_s / max(block(forward, 1), 1e-6)))
        times = [(block(forward, k), block(forward_backward, k)) for _ in range(rounds)]
    return {
        "forward_s": statistics.median(f for f, _ in times),
        "forward_backward_s": statistics.median(b for _, b in times),
        "backward_over_forward": statistics.median(b / f - 1.0 for f, b in times),
    }


def parser():
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument("--model", default="densenet-bc-100")
    p.add_argument("--weights", type=Path, default=None)
    p.add_argument(
        "--data-root",
        type=common.optional_path,
        default=common.DEFAULT_DATA_ROOT,
        help="real data folder ('' = synthetic data)",
    )
    p.add_argument("--n", type=int, default=500, help="ID images, and as many OOD images")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--temperatures", type=float, nargs="+", default=list(PAPER_TEMPERATURES))
    p.add_argument("--epsilons", type=float, nargs="+", default=list(PAPER_EPSILONS))
    p.add_argument("--cells-per-forward", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--dtype", default="fp32", choices=list(common.DTYPES))
    return p


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    if args.tiny:
        args.n, args.batch_size = 16, 8
        args.temperatures, args.epsilons, args.cells_per_forward = [1.0, 1000.0], [0.0, 0.001, 0.002], [1, 4]
    device = common.setup(args)
    model = common.load_model(args.model, device, args.weights)
    x_in, x_out, source = common.id_ood_pair(args.model, model, args.n, args.data_root)
    x_in, x_out = x_in.to(device), x_out.to(device)
    temps, eps, std = args.temperatures, args.epsilons, model.input_std
    with common.precision(device, args.dtype):
        grid_scores(model, x_in[: args.batch_size], temps[:1], eps[:2], std, args.batch_size)  # warm-up
        cost = backward_cost(model, x_in[: args.batch_size], std, device)
        (naive_in, naive_out), naive_s = common.timed(
            lambda: [naive_grid(model, x, temps, eps, std, args.batch_size) for x in (x_in, x_out)], device
        )
        naive = tune_from_scores(naive_in, naive_out, temps, eps)
        rows = []
        for k in args.cells_per_forward:
            with common.peak_memory(device) as mem:
                (s_in, s_out), shared_s = common.timed(
                    lambda k=k: [
                        grid_scores(model, x, temps, eps, std, args.batch_size, cells_per_forward=k)
                        for x in (x_in, x_out)
                    ],
                    device,
                )
            shared = tune_from_scores(s_in, s_out, temps, eps)
            diff = max((s_in - naive_in).abs().max().item(), (s_out - naive_out).abs().max().item())
            rows.append(
                {
                    "cells_per_forward": k,
                    "naive_s": naive_s,
                    "shared_s": shared_s,
                    "shared_over_naive": shared_s / naive_s,
                    "identical_scores": bool(torch.equal(s_in, naive_in) and torch.equal(s_out, naive_out)),
                    "max_abs_diff": diff,
                    "same_optimum": (shared.temperature, shared.epsilon) == (naive.temperature, naive.epsilon),
                    "same_metrics": bool(
                        np.array_equal(shared.metrics["fpr_at_95_tpr"], naive.metrics["fpr_at_95_tpr"])
                    ),
                    "optimum": f"T={shared.temperature:g} eps={shared.epsilon:g}",
                    "peak_mib": mem["peak_mib"],
                }
            )
    ctx = common.context(device, batch_size=args.batch_size, dtype=args.dtype, tiny=args.tiny)
    payload = {
        "benchmark": "bench_tuning",
        "context": ctx,
        "model": args.model,
        "n_in": len(x_in),
        "n_out": len(x_out),
        "data": source,
        "grid": [len(temps), len(eps)],
        **passes(temps, eps),
        **cost,
        "floor_at_measured_b": floor_ratio(temps, eps, cost["backward_over_forward"]),
        "floor_b1": floor_ratio(temps, eps, 1.0),
        "floor_b2": floor_ratio(temps, eps, 2.0),
        "naive_optimum": f"T={naive.temperature:g} eps={naive.epsilon:g}",
        "rows": rows,
    }
    common.write_json(args.out, "bench_tuning", payload)
    title = f"bench_tuning: {args.model}, {len(temps)}x{len(eps)} grid, {args.n}+{args.n} images" + (
        " (tiny)" if args.tiny else ""
    )
    common.append_results(
        args.results,
        title,
        ctx,
        rows,
        f"Data: {source}. Passes per image: naive {payload['passes_naive']}, "
        f"shared {payload['passes_shared']}. Input-only backward = "
        f"{cost['backward_over_forward']:.2f} forwards (batch {args.batch_size}): floor of "
        f"shared/naive {payload['floor_at_measured_b']:.3f} (b = 1: {payload['floor_b1']:.3f}, "
        f"b = 2: {payload['floor_b2']:.3f}).",
    )
    return payload


if __name__ == "__main__":
    main()
