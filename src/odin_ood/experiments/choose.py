"""Choosing (T, epsilon) per OOD set on the tuning splits (section 4.4), with a search.

``search="grid"`` scores all cells on every tuning image, as the paper; ``"halving"`` runs
successive halving (:mod:`odin_ood.tuning.halving`). Scores come either from the precomputed grid of
every image (``--eval-grid``, the GPU path: the search only reads arrays) or from the model on
the tuning images alone (the CPU path). On the CPU path the ID tuning scores are shared by all
OOD sets (a cell-image pair is scored once per run) and each set's result is cached, so a killed
run re-tunes at most the set it was on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from odin_ood.experiments.progress import OutOfTime
from odin_ood.tuning.halving import ScoreFn, SearchResult, array_scorer, model_scorer, search
from odin_ood.tuning.searches import Cell

if TYPE_CHECKING:
    from odin_ood.experiments.protocol import Experiment, Scored


@dataclass(frozen=True)
class Tuned:
    """The chosen cell of one OOD set: (T, epsilon), its grid ``index``, the ``search`` that chose
    it, its tuning FPR, the tuning FPR of every cell scored on every tuning image (NaN elsewhere)
    and the cost as a fraction of the full grid's cell-image evaluations."""

    temperature: float
    epsilon: float
    index: tuple[int, int]
    search: str
    value: float
    fpr: np.ndarray
    cost_fraction: float

    def describe(self) -> dict:
        return {
            "temperature": self.temperature,
            "epsilon": self.epsilon,
            "search": self.search,
            "tuning_fpr_at_95_tpr": self.value,
            "cost_fraction_of_grid": round(self.cost_fraction, 4),
        }


def _tuned(result: SearchResult, temperatures: Sequence[float], epsilons: Sequence[float]) -> Tuned:
    i, j = result.index
    return Tuned(
        float(temperatures[i]),
        float(epsilons[j]),
        (i, j),
        result.search,
        float(result.fpr[i, j]),
        result.fpr,
        result.cost_fraction,
    )


class SharedRows:
    """Wraps a score function so every (side, cell, image) is computed once across many searches
    (the ID tuning split is the same for every OOD set)."""

    def __init__(self, score: ScoreFn) -> None:
        self.score = score
        self.known: dict[tuple[str, Cell, int], float] = {}

    def __call__(self, side: str, cells: Sequence[Cell], rows: np.ndarray) -> np.ndarray:
        todo = [c for c in cells if any((side, c, int(r)) not in self.known for r in rows)]
        if todo:
            new = self.score(side, todo, rows)
            for c, s in zip(todo, new, strict=True):
                self.known.update({(side, c, int(r)): float(v) for r, v in zip(rows, s, strict=True)})
        return np.array([[self.known[(side, c, int(r))] for r in rows] for c in cells], dtype=np.float32)


def tuned(exp: Experiment, ood: Scored) -> Tuned:
    """The suite's tuned (T, epsilon) for ``ood`` (:func:`tune_set`), computed once per experiment."""
    if ood.key not in exp.tunings:
        exp.tunings[ood.key] = tune_set(exp, ood)
    return exp.tunings[ood.key]


def tune_set(exp: Experiment, ood: Scored) -> Tuned:
    """The cell chosen for ``ood`` by ``exp.search`` on the tuning splits."""
    s = exp.scorer
    shape = (len(s.temperatures), len(s.epsilons))
    n_in, n_out = exp.id_set.split.tune.size, ood.split.tune.size
    if exp.id_set.grid is not None and ood.grid is not None:
        result = search(array_scorer(exp.id_set.tune(), ood.tune()), n_in, n_out, shape, exp.search, seed=exp.seed)
        return _tuned(result, s.temperatures, s.epsilons)
    key = {
        "model": s.fingerprint,
        "method": "tuning-search",
        "search": exp.search,
        "seed": exp.seed,
        "precision": s.precision,
        "temperatures": s.temperatures,
        "epsilons": s.epsilons,
        "id_tune": _sha(exp.id_set, exp.id_set.split.tune),
        "ood_tune": _sha(ood, ood.split.tune),
    }

    def compute() -> dict[str, np.ndarray]:
        if s.deadline is not None and time.monotonic() > s.deadline:
            raise OutOfTime(f"time limit reached before tuning on {ood.key}")
        grids = _tuning_grids(exp, ood)
        score = array_scorer(*grids) if grids is not None else _model_rows(exp, ood)
        r = search(score, n_in, n_out, shape, exp.search, seed=exp.seed)
        return {"fpr": r.fpr, "index": np.array(r.index), "cost": np.array(r.cost_fraction)}

    found = s.cache.get(key, compute)
    i, j = (int(v) for v in found["index"])
    return Tuned(
        s.temperatures[i],
        s.epsilons[j],
        (i, j),
        exp.search,
        float(found["fpr"][i, j]),
        found["fpr"],
        float(found["cost"]),
    )


def _tuning_grids(exp: Experiment, ood: Scored) -> tuple[np.ndarray, np.ndarray] | None:
    """The full grid on both tuning splits: computed (cached) for ``search="grid"``; for halving
    only when already cached (e.g. by ``benchmarks/bench_search.py``; the same scores the model
    would give, so the same choice), else None."""
    subsets = [s.data.subset(torch.from_numpy(s.split.tune)) for s in (exp.id_set, ood)]
    found_in, found_out = (exp.scorer.grid(sub, compute=exp.search == "grid") for sub in subsets)
    return None if found_in is None or found_out is None else (found_in["grid"], found_out["grid"])


def _sha(scored: Scored, rows: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(scored.data.images[rows].numpy().tobytes()).hexdigest()


def _model_rows(exp: Experiment, ood: Scored) -> ScoreFn:
    """Model scores of tuning images, row indices relative to each split's tuning indices; the
    ID side goes through ``exp``'s shared memo."""
    s = exp.scorer
    id_x = exp.id_set.data.images[exp.id_set.split.tune]
    ood_x = ood.data.images[ood.split.tune]
    fn = model_scorer(
        s.model,
        id_x,
        ood_x,
        s.temperatures,
        s.epsilons,
        input_std=s.input_std,
        batch_size=s.batch_size,
        prepare=s.inputs,
        context=s.autocast,
    )
    if exp.shared_id is None:
        exp.shared_id = SharedRows(fn)
    shared = exp.shared_id

    def score(side: str, cells: Sequence[Cell], rows: np.ndarray) -> np.ndarray:
        return shared(side, cells, rows) if side == "in" else fn(side, cells, rows)

    return score
