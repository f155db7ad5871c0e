"""fit's searches on the committed suites: the shared search against the paper's full grid.

Replays the searches on the grid logits cached by ``benchmarks/grid_logits.py`` (a seeded
sample of each suite's tuning images, ID and one OOD set). Each of ``--splits`` seeded splits
halves the sample into tuning and held-out images per side; the grid chooses its cell on the
tuning half (:func:`odin_ood.tuning.tune_from_scores`), the shared search
(:func:`odin_ood.tuning.shared.shared_search` on :class:`~odin_ood.tuning.shared.ArrayBackend`)
chooses its own, and both are measured on the held-out half: FPR@95, the grid cell's 95%
bootstrap interval, the passes per image each search spent. Also reported: the sign agreement of
grad_x log S(x; T) with T = 1000's, per T, and what a first-order estimate (log S(x~) ~ log S(x) +
e ||grad_x log S / std||_1, from one forward and the 10 backwards, no forward per cell) would have
chosen, unverified. ``--timed`` also runs ``Detector.fit`` with each search on the model, one
tuning split, and records wall seconds (1 thread, grid then shared on the same images).

    python benchmarks/bench_fit_search.py --pairs mnist-lenet:notmnist:1000 --splits 20
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
import grid_logits
from odin_ood.experiments.bootstrap import bootstrap_ci
from odin_ood.metrics import fpr_at_tpr
from odin_ood.tuning import PAPER_EPSILONS, PAPER_TEMPERATURES, tune_from_scores
from odin_ood.tuning.searches import grid_passes
from odin_ood.tuning.shared import ArrayBackend, shared_search


def parser():
    p = common.base_parser(__doc__.splitlines()[0])
    p.add_argument(
        "--pairs",
        nargs="+",
        required=True,
        metavar="SUITE:OOD:N[:N_OOD]",
        help="cached samples to replay (N ID images, N_OOD OOD images; default N_OOD = N)",
    )
    p.add_argument("--splits", type=int, default=20)
    p.add_argument("--cache", type=Path, default=grid_logits.DEFAULT_CACHE)
    p.add_argument("--data-root", default=str(common.DEFAULT_DATA_ROOT))
    p.add_argument("--timed", action="store_true", help="also time Detector.fit per search on the model")
    p.add_argument("--timed-images", type=int, default=None, help="at most this many tuning images per side when timed")
    p.add_argument("--replay", action=argparse.BooleanOptionalAction, default=True, help="replay on the cache")
    return p


def exact_grid(logits: torch.Tensor) -> np.ndarray:
    """(T, E, N) exact ODIN scores from cached logits (T, E, N, C)."""
    return np.stack([torch.softmax(logits[i] / t, -1).amax(-1).numpy() for i, t in enumerate(PAPER_TEMPERATURES)])


def first_order_choice(z_in: dict, z_out: dict, rows_in: np.ndarray, rows_out: np.ndarray) -> tuple[int, int]:
    """The cell minimising tuning FPR under log S(x~; T) ~ log S(x; T) + e * gain(T)."""

    def approx(z, rows):
        logits0 = torch.as_tensor(z["logits"][0, 0, rows]).double()
        log_s = torch.stack([torch.log_softmax(logits0 / t, -1).amax(-1) for t in PAPER_TEMPERATURES]).numpy()
        gain = z["gain"][:, rows]
        return log_s[:, None, :] + np.asarray(PAPER_EPSILONS)[None, :, None] * gain[:, None, :]

    a_in, a_out = approx(z_in, rows_in), approx(z_out, rows_out)
    fpr = np.array([[fpr_at_tpr(a_in[i, j], a_out[i, j]) for j in range(21)] for i in range(10)])
    return np.unravel_index(int(np.argmin(fpr)), fpr.shape)


def replay(suite: str, ood: str, n: int, n_out: int, splits: int, cache: Path) -> tuple[list[dict], dict]:
    id_key = "mnist" if suite.startswith("mnist") else "cifar10-lossless-1000"
    z_in = dict(np.load(grid_logits.cache_path(cache, suite, id_key, n)))
    z_out = dict(np.load(grid_logits.cache_path(cache, suite, ood, n_out)))
    g_in, g_out = exact_grid(torch.as_tensor(z_in["logits"])), exact_grid(torch.as_tensor(z_out["logits"]))
    rows = []
    for seed in range(splits):
        rng = np.random.default_rng(seed)
        p_in, p_out = rng.permutation(g_in.shape[-1]), rng.permutation(g_out.shape[-1])
        (t_in, h_in), (t_out, h_out) = np.array_split(p_in, 2), np.array_split(p_out, 2)
        grid = tune_from_scores(g_in[..., t_in], g_out[..., t_out], PAPER_TEMPERATURES, PAPER_EPSILONS)
        backend = ArrayBackend(z_in["logits"][:, :, t_in], z_out["logits"][:, :, t_out], PAPER_TEMPERATURES)
        shared = shared_search(backend, PAPER_TEMPERATURES, PAPER_EPSILONS)
        fo = first_order_choice(z_in, z_out, t_in, t_out)

        def held(cell, h_in=h_in, h_out=h_out):
            return fpr_at_tpr(g_in[cell][h_in], g_out[cell][h_out])

        low, high = bootstrap_ci(g_in[grid.index][h_in], g_out[grid.index][h_out], resamples=200, seed=seed)[
            "fpr_at_95_tpr"
        ]
        rows.append(
            {
                "split": seed,
                "grid_cell": _cell(grid.index),
                "shared_cell": _cell(shared.index),
                "grid_heldout_fpr": held(grid.index),
                "shared_heldout_fpr": held(shared.index),
                "grid_ci_low": low,
                "grid_ci_high": high,
                "first_order_heldout_fpr": held(fo),
                "shared_passes": shared.passes_per_image,
            }
        )
    agree = np.concatenate([z_in["agree"], z_out["agree"]], axis=1).mean(axis=1)
    return rows, {f"T={t:g}": round(float(a), 4) for t, a in zip(PAPER_TEMPERATURES, agree, strict=True)}


def _cell(index) -> str:
    return f"T={PAPER_TEMPERATURES[index[0]]:g} eps={PAPER_EPSILONS[index[1]]:g}"


def timed_fit(suite_name: str, ood: str, n: int, n_out: int, data_root: str, limit: int | None) -> dict:
    """Detector.fit on the model, grid vs shared, on the first tuning half of the cached sample
    (same images as the replay's split 0), 1 thread, grid and shared interleaved."""
    from odin_ood import Detector
    from odin_ood.experiments import loading, suites

    suite = suites.get(suite_name)
    root = Path(data_root)
    model = loading.load_model(suite, loading.weights_path(suite, root, None), "cpu")
    out = {}
    sides = []
    for key, size in (("mnist" if suite_name.startswith("mnist") else "cifar10-lossless-1000", n), (ood, n_out)):
        spec = next(s for s in suite.id_candidates + suite.ood if s.key == key)
        z = np.load(grid_logits.cache_path(Path(grid_logits.DEFAULT_CACHE), suite_name, key, size))
        ds = loading.load_spec(spec, root, model)
        half = np.array_split(np.random.default_rng(0).permutation(len(z["rows"])), 2)[0][:limit]
        x = ds.images[torch.from_numpy(z["rows"][half])].float() / 255.0
        sides.append(
            (x - torch.tensor(model.input_mean).view(1, -1, 1, 1)) / torch.tensor(model.input_std).view(1, -1, 1, 1)
        )
    for search in ("grid", "shared"):
        det = Detector(model, search=search, normalise=False)  # the sides are normalised
        t0 = time.perf_counter()
        det.fit(sides[0], sides[1])
        out[f"{search}_s"] = round(time.perf_counter() - t0, 1)
        out[f"{search}_cell"] = f"T={det.temperature_:g} eps={det.epsilon_:g}"
        out[f"{search}_passes"] = det.tuning_.passes_per_image
    out["images_per_side"] = len(sides[0])
    out["shared_over_grid_time"] = round(out["shared_s"] / out["grid_s"], 3)
    return out


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads or 1)
    summary_rows, detail, timings = [], {}, {}
    for pair in args.pairs:
        suite, ood, n, *rest = pair.split(":")
        n, n_out = int(n), int(rest[0]) if rest else int(n)
        if args.timed:
            timings[pair] = timed_fit(suite, ood, n, n_out, args.data_root, args.timed_images)
            print(pair, timings[pair], flush=True)
        if not args.replay:
            continue
        rows, agree = replay(suite, ood, n, n_out, args.splits, args.cache)
        detail[pair] = {"rows": rows, "sign_agreement_with_T1000": agree}
        g = np.array([r["grid_heldout_fpr"] for r in rows])
        s = np.array([r["shared_heldout_fpr"] for r in rows])
        inside = [r["shared_heldout_fpr"] <= max(r["grid_ci_high"], r["grid_heldout_fpr"] + 0.01) for r in rows]
        summary_rows.append(
            {
                "suite": suite,
                "ood": ood,
                "id_images": f"{n - n // 2} tune + {n // 2} held-out",
                "ood_images": f"{n_out - n_out // 2} tune + {n_out // 2} held-out",
                "splits": args.splits,
                "grid_fpr95": round(100 * g.mean(), 2),
                "shared_fpr95": round(100 * s.mean(), 2),
                "mean_diff_points": round(100 * (s - g).mean(), 2),
                "worst_diff_points": round(100 * (s - g).max(), 2),
                "within_1pt_or_ci": f"{sum(inside)}/{len(rows)}",
                "first_order_fpr95": round(100 * np.mean([r["first_order_heldout_fpr"] for r in rows]), 2),
                "grid_passes": grid_passes(10, PAPER_EPSILONS),
                "shared_passes": round(float(np.mean([r["shared_passes"] for r in rows])), 1),
                "sign_agree_T1/T10/T100": "/".join(str(agree[k]) for k in ("T=1", "T=10", "T=100")),
            }
        )
        print(summary_rows[-1], flush=True)
    ctx = common.context(torch.device("cpu"), splits=args.splits)
    ctx["load_avg_1min"] = round(os.getloadavg()[0], 2)
    note = (
        "FPR@95 in %, mean over splits of the held-out FPR of each search's chosen cell; within_1pt_or_ci: "
        "splits where the shared search's held-out FPR is at most 1 point above the grid's or inside the grid "
        f"cell's 95% bootstrap interval. Load average {ctx['load_avg_1min']}."
    )
    payload = {
        "benchmark": "bench_fit_search",
        "context": ctx,
        "summary": summary_rows,
        "detail": detail,
        "timed": timings,
    }
    common.write_json(args.out, "bench_fit_search", payload)
    if summary_rows:
        common.append_results(
            args.results,
            "bench_fit_search: shared search vs the paper's grid, replayed on cached grid logits",
            ctx,
            summary_rows,
            note,
        )
    if timings:
        common.append_results(
            args.results,
            "bench_fit_search --timed: Detector.fit wall time per search",
            ctx,
            [{"pair": k, **v} for k, v in timings.items()],
            f"1 thread, grid then shared on the same images; load average {ctx['load_avg_1min']}.",
        )
    return payload


if __name__ == "__main__":
    main()
