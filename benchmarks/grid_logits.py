"""Cache the logits of every cell of the paper's grid on a sample of a suite's tuning images.

For each image x, each grid temperature T_i and each epsilon e_j the cache holds the logits
f(x - e_j * d(T_i)) with d(T) = sign(grad_x CE(f(x)/T, yhat)) / std (paper eq. 2), so
``softmax(L[i, j] / T).max()`` is the exact grid cell (T_i, e_j) and ``softmax(L[i, j] / T')``
for another T' is the score at T' of the input perturbed along T_i's direction (what sharing one
backward across temperatures computes). Also stored per image and T: the fraction of input
components whose gradient sign agrees with the largest T's, and the first-order gain
||grad_x log S(x; T) / std||_1 (log S(x~) ~ log S(x) + e * gain). The ID and OOD samples are drawn
from the suite's own tuning splits (same seeds as ``odin-ood reproduce``). Written to
``--cache`` (git-ignored, default ``.cache/grid-logits``); :mod:`bench_fit_search` replays the
searches against it.

    python benchmarks/grid_logits.py --suite cifar10-densenet --sets tinyimagenet-crop --n 200
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from odin_ood.experiments import loading
from odin_ood.experiments.protocol import dataset_seed, split_indices
from odin_ood.scores.passes import scoring_mode
from odin_ood.tuning import PAPER_EPSILONS, PAPER_TEMPERATURES

DEFAULT_CACHE = common.ROOT / ".cache" / "grid-logits"


def parser():
    p = common.suite_parser(__doc__.splitlines()[0], "mnist-lenet", batch_size=128)
    p.add_argument("--sets", nargs="+", required=True, help="OOD set keys of the suite")
    p.add_argument("--n", type=int, default=1000, help="images per side (a seeded sample of the tuning split)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--ood-only", action="store_true", help="skip the ID sample (cached with another --n)")
    return p


def cache_path(folder: Path, suite: str, key: str, n: int) -> Path:
    return Path(folder) / f"{suite}__{key}__{n}.npz"


def sample(spec, ds, n_tune: int, n: int) -> np.ndarray:
    """``n`` indices of the suite's tuning split of ``ds`` (seeded, in a random order)."""
    split = split_indices(len(ds), min(n_tune, len(ds) // 2), dataset_seed(0, spec.key))
    return np.random.default_rng(1).permutation(split.tune)[:n]


def batch_logits(model, x, std) -> dict[str, torch.Tensor]:
    """(10, 21, N, C) logits of every grid cell, (10, N) sign agreement and first-order gain."""
    temps, eps = PAPER_TEMPERATURES, PAPER_EPSILONS
    with scoring_mode(model):
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(x)
            grads = [
                torch.autograd.grad(
                    F.cross_entropy(logits / t, logits.argmax(1), reduction="sum"), x, retain_graph=k < len(temps) - 1
                )[0]
                for k, t in enumerate(temps)
            ]
        x, logits = x.detach(), logits.detach()
        out = torch.empty(len(temps), len(eps), len(x), logits.shape[1])
        signs = [torch.where(g >= 0, 1.0, -1.0) for g in grads]
        agree = torch.stack([(s == signs[-1]).flatten(1).float().mean(1) for s in signs])
        gain = torch.stack([(g / std).abs().flatten(1).sum(1) for g in grads])
        with torch.no_grad():
            for i in range(len(temps)):
                for j, e in enumerate(eps):
                    out[i, j] = logits if e == 0 else model(x - e * signs[i] / std)
    return {"logits": out, "agree": agree, "gain": gain}


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    device = common.setup(args)
    suite, root, model = common.suite_model(args, device)
    model = model.to(memory_format=torch.channels_last) if common.has_conv(model) else model
    mean = torch.tensor(model.input_mean).view(1, -1, 1, 1)
    std = torch.tensor(model.input_std).view(1, -1, 1, 1)
    id_spec = next(s for s in suite.id_candidates if common.suite_data_loads(s, root, model))
    specs = [(id_spec, suite.id_tune)] * (not args.ood_only) + [
        (next(s for s in suite.ood if s.key == k), suite.ood_tune) for k in args.sets
    ]
    for spec, n_tune in specs:
        path = cache_path(args.cache, suite.name, spec.key, args.n)
        if path.exists():
            print(f"{path} exists", flush=True)
            continue
        ds = loading.load_spec(spec, root, model)
        rows = sample(spec, ds, n_tune, args.n)
        x = (ds.images[torch.from_numpy(rows)].float() / 255.0 - mean) / std
        x = common.to_device(x, model, device, channels_last=True)
        t0, parts = time.perf_counter(), []
        for start in range(0, len(x), args.batch_size):
            parts.append(batch_logits(model, x[start : start + args.batch_size], std))
            done = start + len(parts[-1]["agree"][0])
            print(f"{spec.key}: {done}/{len(x)} images, {time.perf_counter() - t0:.0f} s", flush=True)
        arrays = {k: torch.cat([p[k] for p in parts], dim=-2 if k == "logits" else -1).numpy() for k in parts[0]}
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, rows=rows, seconds=time.perf_counter() - t0, threads=torch.get_num_threads(), **arrays)
        print(f"wrote {path} ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
