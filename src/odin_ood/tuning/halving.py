"""Cheaper searches of the T x epsilon grid than scoring every cell on every tuning image.

The paper's tuning (section 4.4) scores all 10 x 21 cells on 1,000 held-out ID and OOD images
and keeps the cell with the lowest FPR at 95% TPR. Scoring a cell costs one forward per image
(plus one input-only backward per temperature), so the grid costs ~211 passes per image.

**Successive halving** (Jamieson & Talwalkar, 2016) spends most of that on the cells that can
win. The tuning images are taken in a seeded order; round r scores the surviving cells on the
first n_r images (n_r grows by ``eta`` per round up to all of them) and keeps the best
1/``eta`` of the cells, ties at the cut kept; the last round scores the survivors on every
tuning image and picks the best of them exactly as the full grid does (lowest FPR, ties to the
first cell in grid order). A cell's scores on images it was already scored on are reused, so
the images of round r cost only their new cells. The search returns the full grid's choice
whenever that cell survives every cut; it cannot be better, and when the winner is cut early
the FPR gap is measured (``benchmarks/bench_search.py``, ``benchmarks/RESULTS.md``).

Both searches work through a score function ``score(side, cells, rows) -> (len(cells), len(rows))``
(side "in" or "out", cells (i, j) indices, rows image indices), so the same code runs on a
model (:func:`model_scorer`) or on precomputed grid arrays (:func:`array_scorer`, used to
measure agreement for free).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from odin_ood.metrics.detection import fpr_at_tpr
from odin_ood.scores.odin import odin_grid_scores
from odin_ood.tuning.searches import REPRODUCE_SEARCHES, Cell, check_search

ScoreFn = Callable[[str, Sequence[Cell], np.ndarray], np.ndarray]


@dataclass
class SearchResult:
    """The chosen cell (grid indices), the search name, the FPR of every cell scored on every
    tuning image (NaN elsewhere) and the cost: cell-image evaluations, against the full grid's."""

    search: str
    index: Cell
    fpr: np.ndarray
    evaluations: int
    grid_evaluations: int
    rounds: list[dict] = field(default_factory=list)

    @property
    def cost_fraction(self) -> float:
        return self.evaluations / self.grid_evaluations


class _Memo:
    """Scores already computed per (side, cell), over a prefix of the image order."""

    def __init__(self, score: ScoreFn, order: dict[str, np.ndarray]) -> None:
        self.score, self.order = score, order
        self.done: dict[tuple[str, Cell], np.ndarray] = {}
        self.evaluations = 0

    def get(self, side: str, cells: Sequence[Cell], n: int) -> np.ndarray:
        """(len(cells), n) scores on the first ``n`` images of ``side``'s order."""
        have = {c: self.done.get((side, c), np.empty(0, np.float32)) for c in cells}
        missing: dict[int, list[Cell]] = {}
        for c in cells:
            if have[c].size < n:
                missing.setdefault(have[c].size, []).append(c)
        for start, group in missing.items():
            rows = self.order[side][start:n]
            new = np.asarray(self.score(side, group, rows), dtype=np.float32)
            self.evaluations += new.size
            for c, s in zip(group, new, strict=True):
                self.done[(side, c)] = np.concatenate([have[c], s])
        return np.stack([self.done[(side, c)][:n] for c in cells])


def _fprs(memo: _Memo, cells: Sequence[Cell], n_in: int, n_out: int, tpr: float) -> np.ndarray:
    s_in, s_out = memo.get("in", cells, n_in), memo.get("out", cells, n_out)
    return np.array([fpr_at_tpr(a, b, tpr) for a, b in zip(s_in, s_out, strict=True)])


def _best(cells: Sequence[Cell], fpr: np.ndarray) -> Cell:
    """Lowest FPR, ties to the first cell in grid order (as :func:`odin_ood.tuning.grid.tune_from_scores`)."""
    order = sorted(range(len(cells)), key=lambda k: (fpr[k], cells[k]))
    return cells[order[0]]


def halving_sizes(n: int, eta: float, min_images: int) -> list[int]:
    """Image counts per round: n, n/eta, n/eta^2, ... down to >= ``min_images``, smallest first."""
    sizes = [n]
    while sizes[-1] / eta >= min_images:
        sizes.append(math.ceil(sizes[-1] / eta))
    return sizes[::-1]


def fpr_noise(fpr: float, m_in: int, m_out: int, tpr: float = 0.95) -> float:
    """A rough standard error of an FPR at ``tpr`` measured on ``m_in`` ID and ``m_out`` OOD
    images: the binomial error of the OOD fraction, sqrt(p(1-p)/m_out), plus that of the ID
    quantile setting the threshold, sqrt(tpr(1-tpr)/m_in) (in TPR units, a conservative proxy)."""
    return math.sqrt(fpr * (1 - fpr) / m_out) + math.sqrt(tpr * (1 - tpr) / m_in)


def search(
    score: ScoreFn,
    n_in: int,
    n_out: int,
    shape: tuple[int, int],
    method: str = "halving",
    *,
    eta: float = 3.0,
    min_images: int = 100,
    margin: float = 2.0,
    tpr: float = 0.95,
    seed: int = 0,
) -> SearchResult:
    """Choose a cell of a ``shape`` = (len(T), len(eps)) grid with ``n_in`` ID and ``n_out`` OOD
    tuning images. ``method="grid"`` scores every cell on every image (the paper);
    ``"halving"`` runs successive halving (module docstring): each cut keeps the best
    1/``eta`` of the cells and also every cell within ``margin`` noise units
    (:func:`fpr_noise`) of the round's best, so a winner unlucky on a small subset survives."""
    check_search(method, REPRODUCE_SEARCHES)
    if eta <= 1:
        raise ValueError(f"eta must be > 1, got {eta}")
    rng = np.random.default_rng(seed)
    memo = _Memo(score, {"in": rng.permutation(n_in), "out": rng.permutation(n_out)})
    cells: list[Cell] = [(i, j) for i in range(shape[0]) for j in range(shape[1])]
    fractions = (
        [1.0] if method == "grid" else [s / max(n_in, n_out) for s in halving_sizes(max(n_in, n_out), eta, min_images)]
    )
    rounds = []
    for r, frac in enumerate(fractions):
        m_in, m_out = max(1, round(frac * n_in)), max(1, round(frac * n_out))
        fpr = _fprs(memo, cells, m_in, m_out, tpr)
        rounds.append({"cells": len(cells), "n_in": m_in, "n_out": m_out})
        if r < len(fractions) - 1:
            keep = max(1, math.ceil(len(cells) / eta))
            cut = max(np.sort(fpr)[keep - 1], fpr.min() + margin * fpr_noise(fpr.min(), m_in, m_out, tpr))
            cells = [c for c, f in zip(cells, fpr, strict=True) if f <= cut]
    full = np.full(shape, np.nan)
    for c, f in zip(cells, fpr, strict=True):
        full[c] = f
    return SearchResult(
        search=method,
        index=_best(cells, fpr),
        fpr=full,
        evaluations=memo.evaluations,
        grid_evaluations=shape[0] * shape[1] * (n_in + n_out),
        rounds=rounds,
    )


def array_scorer(grid_in: np.ndarray, grid_out: np.ndarray) -> ScoreFn:
    """A score function reading precomputed (T, E, N) grid scores (to measure a search for free)."""

    def score(side: str, cells: Sequence[Cell], rows: np.ndarray) -> np.ndarray:
        g = grid_in if side == "in" else grid_out
        return np.stack([g[i, j, rows] for i, j in cells])

    return score


def model_scorer(
    model: nn.Module,
    data_in: Tensor,
    data_out: Tensor,
    temperatures: Sequence[float],
    epsilons: Sequence[float],
    input_std: Sequence[float] | Tensor | None = None,
    batch_size: int = 128,
    prepare: Callable[[Tensor], Tensor] | None = None,
    context: Callable[[], AbstractContextManager[Any]] | None = None,
) -> ScoreFn:
    """A score function running ODIN on the rows asked for. Cells sharing a temperature share
    one input-only backward; when the cells asked form a full rectangle of their temperatures
    and epsilons (the first round), one forward with an input graph serves them all.
    ``prepare`` maps a stored batch (e.g. uint8 images) to the model's input; ``context``
    returns a context manager (e.g. bf16 autocast) to score under."""

    def rect(x: Tensor, ts: list[int], es: list[int]) -> Tensor:
        def fn(b: Tensor) -> Tensor:
            b = prepare(b) if prepare is not None else b
            with context() if context is not None else torch.enable_grad():
                return odin_grid_scores(
                    model, b, [temperatures[i] for i in ts], [epsilons[j] for j in es], input_std
                ).float()

        return torch.cat([fn(b) for b in x.split(batch_size)], dim=-1)

    def score(side: str, cells: Sequence[Cell], rows: np.ndarray) -> np.ndarray:
        x = (data_in if side == "in" else data_out)[torch.as_tensor(rows, dtype=torch.long)]
        ts = sorted({i for i, _ in cells})
        es = sorted({j for _, j in cells})
        if len(cells) == len(ts) * len(es):
            s = rect(x, ts, es)
            return np.stack([s[ts.index(i), es.index(j)].numpy() for i, j in cells])
        out = {}
        for i in ts:
            row = sorted(j for t, j in cells if t == i)
            s = rect(x, [i], row)
            out.update({(i, j): s[0, k].numpy() for k, j in enumerate(row)})
        return np.stack([out[c] for c in cells])

    return score
