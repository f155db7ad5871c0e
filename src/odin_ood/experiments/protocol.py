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

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from odin_ood.data import ImageDataset
from odin_ood.experiments.scorer import Scorer
from odin_ood.scores.odin import softmax_score


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


@dataclass
class Scored:
    """A dataset with its cached scores: ``grid`` (T, E, N) ODIN scores of every image at every
    cell (None on the CPU path, which scores only the cells it needs), ``logits`` (N, C) (None for the
    pooled tuning noise on the CPU path: it only tunes)."""

    key: str
    label: str
    data: ImageDataset
    grid: np.ndarray | None
    logits: np.ndarray | None
    split: Split
    paper_key: str | None = None
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> np.ndarray:
        return self.data.labels.numpy()

    def full_grid(self) -> np.ndarray:
        """``grid``; ``ValueError`` where only some cells were scored (the CPU path)."""
        if self.grid is None:
            raise ValueError(f"{self.key}: the full grid was not scored (the CPU path scores the cells it needs)")
        return self.grid

    def full_logits(self) -> np.ndarray:
        """``logits``; ``ValueError`` for a set scored only at grid cells (the pooled tuning noise)."""
        if self.logits is None:
            raise ValueError(f"{self.key}: its logits were not kept (a set used only for tuning)")
        return self.logits

    def tune(self, i: int | None = None, j: int | None = None) -> np.ndarray:
        grid = self.full_grid()
        return grid[..., self.split.tune] if i is None else grid[i, j, self.split.tune]

    def eval(self, i: int | None = None, j: int | None = None) -> np.ndarray:
        grid = self.full_grid()
        return grid[..., self.split.eval] if i is None else grid[i, j, self.split.eval]


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
    i, j = np.unravel_index(int(np.argmin(f)), f.shape)
    return int(i), int(j)


@dataclass
class Experiment:
    """Everything the experiment modules share: the scorer, the scored ID set and OOD sets,
    the paper row to compare with (``paper_row``; ``paper_matches`` is False when it is another
    model's row shown for reference), the tuning ``search`` ("grid" or "halving",
    :mod:`odin_ood.experiments.choose`) and the per-set tunings (filled on first use)."""

    scorer: Scorer
    id_set: Scored
    oods: list[Scored]
    paper_row: str | None
    paper_matches: bool
    seed: int = 0
    search: str = "grid"
    # filled by odin_ood.experiments.choose.tuned (set key -> Tuned) and its shared ID rows
    tunings: dict[str, Any] = field(default_factory=dict)
    shared_id: Any = None

    @property
    def full_grid(self) -> bool:
        """True when every image was scored at every cell (sweeps, cross-dataset and tuning-size
        curves need it)."""
        return self.id_set.grid is not None

    def scores(self, scored: Scored, temperature: float, epsilon: float) -> np.ndarray:
        """ODIN scores of every image of ``scored`` at (T, epsilon): from the grid when it holds
        the cell, else one cached pass (:meth:`Scorer.cell`)."""
        ij = self.scorer.grid_index(temperature, epsilon)
        if ij is not None and scored.grid is not None:
            return scored.grid[ij[0], ij[1]]
        return self.scorer.cell(scored.data, temperature, epsilon)

    def scores_at(
        self, scored: Scored, temperature: float, epsilon: float, rows: np.ndarray, score: str = "odin"
    ) -> np.ndarray:
        """``score`` of the images ``rows`` of ``scored`` at (T, epsilon): from the grid or a
        pass over the whole set when either is at hand, else one cached pass over those rows only
        (content-addressed, so all the rows in order share the whole set's entry)."""
        ij = self.scorer.grid_index(temperature, epsilon)
        if score == "odin" and ij is not None and scored.grid is not None:
            return scored.grid[ij[0], ij[1], rows]
        whole = self.scorer.cell_outputs(scored.data, temperature, epsilon, compute=False, score=score)
        if whole is not None:
            return whole["scores"][rows]
        return self.scorer.cell(scored.data.subset(torch.from_numpy(rows)), temperature, epsilon, score)

    def msp(self, scored: Scored) -> np.ndarray:
        """Baseline scores of every image: the grid's (T=1, eps=0) cell, else the max softmax
        of the logits (bitwise the same computation)."""
        if scored.grid is not None:
            i, j = self.scorer.msp_index()
            return scored.grid[i, j]
        return softmax_score(torch.from_numpy(scored.full_logits()), 1.0).numpy()
