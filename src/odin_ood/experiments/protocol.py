"""The evaluation protocol of section 4.4, computed once per dataset.

* Splits: each OOD set is permuted with a seed and its first ``ood_tune`` images (1,000 in the
  paper) tune (T, epsilon); the rest are evaluated. The ID test set is split the same way
  (``id_tune`` images, at most half the set, hold out for tuning; the rest are evaluated). The
  paper does not state an ID split; ours is recorded in every result.
* Scores: ODIN scores of EVERY image of a dataset at every cell of the T x epsilon grid, one
  call of :func:`odin_ood.tuning.grid_scores` per chunk, plus the classifier's logits (one
  forward): arrays (T, E, N) and (N, C), cached on disk. MSP is the grid cell (T=1, eps=0).
  The per-set tuning, the cross-dataset matrix, the T/eps sweeps, the tuning-size curve and
  the paper-parameter column are all derived from these arrays without recomputation; a
  parameter off the grid (e.g. WRN's epsilon 0.0005) is scored once on its own and cached.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from odin_ood.data import ImageDataset
from odin_ood.experiments.cache import ScoreCache
from odin_ood.fingerprint import fingerprint
from odin_ood.metrics import evaluate
from odin_ood.scores import odin_scores
from odin_ood.tuning import TuningResult, grid_scores, tune_from_scores

CHUNK = 1024  # images per progress step


@dataclass(frozen=True)
class Split:
    """Index arrays into a dataset: ``tune`` (held out for choosing T, epsilon) and ``eval``."""

    tune: np.ndarray
    eval: np.ndarray
    seed: int

    def describe(self) -> dict[str, int]:
        return {"tune": int(self.tune.size), "eval": int(self.eval.size), "seed": self.seed}


def dataset_seed(base: int, key: str) -> int:
    """A per-dataset seed derived from the suite seed and the dataset key (stable across runs)."""
    return (int(base) * 1_000_003 + zlib.crc32(key.encode())) % (2**31)


def permutation(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n)


def split_indices(n: int, n_tune: int, seed: int) -> Split:
    """First ``n_tune`` indices of a seeded permutation tune; the rest evaluate."""
    if not 0 < n_tune < n:
        raise ValueError(f"n_tune must be in 1..{n - 1} for a set of {n} images, got {n_tune}")
    perm = permutation(n, seed)
    return Split(tune=np.sort(perm[:n_tune]), eval=np.sort(perm[n_tune:]), seed=seed)


def subsample(ds: ImageDataset, limit: int | None, seed: int) -> ImageDataset:
    """At most ``limit`` images of ``ds`` (a seeded random subset, recorded in the manifest)."""
    if limit is None or len(ds) <= limit:
        return ds
    idx = np.sort(permutation(len(ds), seed)[:limit])
    sub = ds.subset(torch.from_numpy(idx))
    sub.manifest["subsample"] = {"limit": int(limit), "seed": int(seed), "of": len(ds)}
    return sub


def images_sha256(ds: ImageDataset) -> str:
    return hashlib.sha256(ds.images.numpy().tobytes()).hexdigest()


@dataclass
class Scored:
    """A dataset with its cached scores: ``grid`` (T, E, N) ODIN scores, ``logits`` (N, C)."""

    key: str
    label: str
    data: ImageDataset
    grid: np.ndarray
    logits: np.ndarray
    split: Split
    paper_key: str | None = None
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> np.ndarray:
        return self.data.labels.numpy()

    def tune(self, i: int | None = None, j: int | None = None) -> np.ndarray:
        return self.grid[..., self.split.tune] if i is None else self.grid[i, j, self.split.tune]

    def eval(self, i: int | None = None, j: int | None = None) -> np.ndarray:
        return self.grid[..., self.split.eval] if i is None else self.grid[i, j, self.split.eval]


class Scorer:
    """Scores datasets with one model over one grid, through the cache.

    Inputs are pixel images in [0, 1] mapped to the model's space, ``(x - input_mean) /
    input_std``; epsilon is in pixel units (``input_std`` divides the step, as the paper's code).
    """

    def __init__(self, model: nn.Module, temperatures: Sequence[float], epsilons: Sequence[float],
                 cache: ScoreCache, batch_size: int = 128, progress: bool = True) -> None:
        self.model = model
        self.temperatures = tuple(float(t) for t in temperatures)
        self.epsilons = tuple(float(e) for e in epsilons)
        self.cache = cache
        self.batch_size = batch_size
        self.progress = progress
        self.fingerprint = fingerprint(model)
        self.mean = torch.tensor(model.input_mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(model.input_std, dtype=torch.float32).view(1, -1, 1, 1)

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) -> the model's normalised float input."""
        return (images.float().div_(255.0) - self.mean) / self.std

    def _key(self, ds: ImageDataset, method: str, **extra: Any) -> dict[str, Any]:
        return {"model": self.fingerprint, "data": ds.manifest, "images_sha256": images_sha256(ds),
                "method": method, **extra}

    def _chunks(self, ds: ImageDataset, what: str):
        starts = range(0, len(ds), CHUNK)
        return tqdm(starts, desc=f"{what} {ds.name}", unit="chunk", disable=not self.progress, leave=False)

    def grid(self, ds: ImageDataset) -> dict[str, np.ndarray]:
        """{"grid": (T, E, N) float32, "logits": (N, C) float32} for every image of ``ds``."""
        key = self._key(ds, "odin-grid", temperatures=self.temperatures, epsilons=self.epsilons)

        def compute() -> dict[str, np.ndarray]:
            grids, logits = [], []
            for s in self._chunks(ds, "grid"):
                x = self.inputs(ds.images[s:s + CHUNK])
                grids.append(grid_scores(self.model, x, self.temperatures, self.epsilons,
                                         input_std=self.model.input_std, batch_size=self.batch_size).numpy())
                logits.append(self.logits(x))
            return {"grid": np.concatenate(grids, axis=-1).astype(np.float32),
                    "logits": np.concatenate(logits).astype(np.float32)}

        return self.cache.get(key, compute)

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> np.ndarray:
        device = next(self.model.parameters()).device
        return torch.cat([self.model(b.to(device)).float().cpu() for b in x.split(self.batch_size)]).numpy()

    def cell(self, ds: ImageDataset, temperature: float, epsilon: float) -> np.ndarray:
        """ODIN scores at one (T, epsilon) off the grid (cached)."""
        key = self._key(ds, "odin-cell", temperature=float(temperature), epsilon=float(epsilon))

        def compute() -> dict[str, np.ndarray]:
            parts = [odin_scores(self.model, self.inputs(ds.images[s:s + CHUNK]).to(next(self.model.parameters()).device),
                                 temperature, epsilon, input_std=self.model.input_std).cpu().numpy()
                     for s in self._chunks(ds, f"T={temperature:g} eps={epsilon:g}")]
            return {"scores": np.concatenate(parts).astype(np.float32)}

        return self.cache.get(key, compute)["scores"]

    def grid_index(self, temperature: float, epsilon: float) -> tuple[int, int] | None:
        """(i, j) of a cell on the grid (epsilon compared to 1e-12), or None when off the grid."""
        i = [k for k, t in enumerate(self.temperatures) if abs(t - temperature) < 1e-9]
        j = [k for k, e in enumerate(self.epsilons) if abs(e - epsilon) < 1e-12]
        return (i[0], j[0]) if i and j else None

    def scores_at(self, scored: Scored, temperature: float, epsilon: float) -> np.ndarray:
        """All scores of ``scored`` at (T, epsilon): from the grid when on it, else computed once."""
        ij = self.grid_index(temperature, epsilon)
        return scored.grid[ij[0], ij[1]] if ij is not None else self.cell(scored.data, temperature, epsilon)

    def msp_index(self) -> tuple[int, int]:
        ij = self.grid_index(1.0, 0.0)
        if ij is None:
            raise ValueError("the grid must contain T=1 and epsilon=0 (the MSP baseline)")
        return ij


def fpr_grid(scores_in: np.ndarray, scores_out: np.ndarray, tpr: float = 0.95) -> np.ndarray:
    """FPR at ``tpr`` for every grid cell at once: (T, E, n) and (T, E, m) -> (T, E).

    Same operating point as :func:`odin_ood.metrics.fpr_at_tpr`: the threshold is the
    ceil(tpr * n)-th largest ID score v, and FPR = mean(scores_out >= v).
    """
    n = scores_in.shape[-1]
    keep = int(np.ceil(tpr * n - 1e-9))
    v = np.sort(scores_in, axis=-1)[..., n - keep]
    return (scores_out >= v[..., None]).mean(axis=-1)


def select_cell(scores_in: np.ndarray, scores_out: np.ndarray, tpr: float = 0.95) -> tuple[int, int]:
    """The cell minimising FPR at ``tpr``, ties to the first in grid order (as ``tune_from_scores``)."""
    f = fpr_grid(scores_in, scores_out, tpr)
    return tuple(int(k) for k in np.unravel_index(int(np.argmin(f)), f.shape))  # type: ignore[return-value]


def tune_on(id_set: Scored, ood: Scored, scorer: Scorer) -> TuningResult:
    """Section 4.4: the grid cell minimising FPR at 95% TPR on the tuning splits."""
    return tune_from_scores(id_set.tune(), ood.tune(), scorer.temperatures, scorer.epsilons)


def evaluate_cell(id_set: Scored, ood: Scored, i: int, j: int) -> dict[str, float]:
    """The five metrics of cell (i, j) on the evaluation splits."""
    return evaluate(id_set.eval(i, j), ood.eval(i, j))


@dataclass
class Experiment:
    """Everything the experiment modules share: the scorer, the scored ID set and OOD sets,
    the paper row to compare with (``paper_row``; ``paper_matches`` is False when it is another
    model's row shown for reference) and the per-set tunings (filled by the main table)."""

    scorer: Scorer
    id_set: Scored
    oods: list[Scored]
    paper_row: str | None
    paper_matches: bool
    seed: int = 0
    tunings: dict[str, TuningResult] = field(default_factory=dict)

    def tuning(self, ood: Scored) -> TuningResult:
        if ood.key not in self.tunings:
            self.tunings[ood.key] = tune_on(self.id_set, ood, self.scorer)
        return self.tunings[ood.key]
