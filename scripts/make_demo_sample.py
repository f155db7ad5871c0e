"""Rebuild the demo sample embedded in the package, ``src/odin_ood/assets/demo_sample.npz``.

    PYTHONPATH=src python scripts/make_demo_sample.py --root ../shared/data

Draws, with a fixed seed, 1,000 MNIST test digits (uniformly), 1,000 notMNIST letters (100 per
letter, from the de-duplicated set) and 1,000 Omniglot characters (uniformly, from Hendrycks &
Gimpel's safe alphabets, de-duplicated, black strokes on white), each loaded as
``odin_ood.assets.DEMO_SAMPLE_SOURCES`` says, and stores images, labels and indices in those sets.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from odin_ood import data
from odin_ood.assets import DEMO_SAMPLE_SOURCES

ASSETS = Path(__file__).resolve().parents[1] / "src" / "odin_ood" / "assets"
PER_CLASS = {"mnist": None, "notmnist": 100, "omniglot": None}


def sample_indices(labels: torch.Tensor, per_class: int | None, count: int, seed: int) -> np.ndarray:
    """Sorted indices: ``per_class`` of each label, or ``count`` uniformly without replacement."""
    rng = np.random.default_rng(seed)
    y = labels.numpy()
    if per_class is None:
        return np.sort(rng.choice(len(y), size=count, replace=False))
    picks = [rng.choice(np.flatnonzero(y == c), size=per_class, replace=False) for c in np.unique(y)]
    return np.sort(np.concatenate(picks))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    p.add_argument("--out", type=Path, default=ASSETS)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    arrays = {}
    for name, kwargs in DEMO_SAMPLE_SOURCES.items():
        ds = data.load(name, root=args.root, split="test", **kwargs)
        idx = sample_indices(ds.labels, PER_CLASS[name], 1000, args.seed)
        arrays[f"{name}_images"] = ds.images[idx, 0].numpy()
        arrays[f"{name}_labels"] = ds.labels[idx].numpy().astype(np.int8)
        arrays[f"{name}_indices"] = idx.astype(np.uint16)
    path = args.out / "demo_sample.npz"
    np.savez_compressed(path, **arrays)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
