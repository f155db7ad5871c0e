"""The shared search: the (T, epsilon) grid at a tenth of its passes, the chosen cell scored exactly.

Cost is counted in passes per tuning image (:mod:`odin_ood.tuning.searches`: the paper's grid
costs 211 on the 10 x 21 grid).

1. **Survey** (every tuning image): one forward with an input graph, ONE backward at the largest
   temperature T_d, and one forward along its direction d(T_d) at every second positive epsilon
   of the grid (E_s); each forward's logits give S(x - e d(T_d); T) at every T for free
   (:func:`odin_ood.scores.odin.odin_shared_direction_scores`). Cost 2 + |E_s| (12 on the paper's
   grid). These approximate ODIN's cells, exactly where T = T_d or e = 0: for large T the sign of
   grad_x log S(x; T) stops depending on T (measured: benchmarks/RESULTS.md).
2. **Verify** (every tuning image, exact ODIN): the best surveyed cell with its grid neighbours in
   epsilon (the epsilons the survey skipped), and the next best surveyed cell; cells sharing a T
   share one forward with an input graph and one backward. Cost 2 + (its epsilons > 0) per T:
   at most 8 more on the paper's grid.
3. **Choose** among the exactly scored cells (the e = 0 column, T_d's surveyed row, the verified
   cells) by the objective, ties to the first cell in grid order, as
   :func:`odin_ood.tuning.grid.tune_from_scores` does over the whole grid.

So the chosen cell's scores are ODIN's exactly (the threshold is set on them), at most 20 passes
per image on the paper's grid instead of 211. Where the survey's worst case would cost as much as
the grid (a small grid), the grid runs instead (:func:`runs_shared`: the one place that rule is written). The same code
runs on a model (:class:`ModelBackend`) and on cached grid logits (:class:`ArrayBackend`, which
``benchmarks/bench_fit_search.py`` uses to replay the search on many tuning splits).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor, nn

from odin_ood._utils.batching import Data, map_batches
from odin_ood.metrics.detection import LOWER_IS_BETTER, METRICS, evaluate
from odin_ood.scores.odin import odin_grid_scores, odin_shared_direction_scores
from odin_ood.scores.passes import Clamp
from odin_ood.tuning.searches import Cell, check_search, grid_passes


def survey_epsilons(epsilons: Sequence[float]) -> list[int]:
    """Indices of the surveyed epsilons: every zero, and every second positive epsilon in
    increasing order starting from the second (the largest one always; the first when it is the
    only one), so that each skipped epsilon lies between surveyed ones."""
    positive = sorted((e, j) for j, e in enumerate(epsilons) if e > 0)
    picked = [j for k, (_, j) in enumerate(positive) if k % 2 == 1 or k == len(positive) - 1]
    return sorted([j for j, e in enumerate(epsilons) if e == 0] + picked)


def worst_case_passes(epsilons: Sequence[float]) -> int:
    """Most passes per image the shared search can spend: the survey, then the best cell with two
    neighbours (one T) and one more cell (another T)."""
    positive = sum(e > 0 for e in epsilons)
    surveyed = sum(epsilons[j] > 0 for j in survey_epsilons(epsilons))
    return 1 + (positive > 0) + surveyed + (2 + min(3, positive)) + 3 * (positive > 0)


def runs_shared(search: str, temperatures: Sequence[float], epsilons: Sequence[float]) -> bool:
    """Whether ``search`` runs the shared search on this grid: it was asked for, and its worst case
    costs fewer passes than the grid (on a small grid it would not: the grid runs instead)."""
    return check_search(search) == "shared" and worst_case_passes(epsilons) < grid_passes(len(temperatures), epsilons)


def planned_passes(search: str, temperatures: Sequence[float], epsilons: Sequence[float]) -> int:
    """Passes per image ``search`` plans on this grid: the shared search's worst case where it runs
    (:func:`runs_shared`), else the grid's."""
    if runs_shared(search, temperatures, epsilons):
        return worst_case_passes(epsilons)
    return grid_passes(len(temperatures), epsilons)


class Backend(Protocol):
    """Scores of one side ("in" or "out") of the tuning data."""

    def survey(self, side: str, direction: int, eps: list[int]) -> np.ndarray:
        """(|T|, len(eps), N): S(x - e d(T_direction); T) for every T of the grid."""

    def exact(self, side: str, t: int, eps: list[int]) -> np.ndarray:
        """(len(eps), N): ODIN's exact scores at (T_t, e) for each e."""


@dataclass
class SharedResult:
    """The chosen cell, the exact metrics and scores of every exactly scored cell (NaN
    elsewhere), the surveyed objective (NaN where not surveyed) and the passes per image."""

    index: Cell
    metrics: dict[str, np.ndarray]
    scores_in: np.ndarray
    scores_out: np.ndarray
    surveyed: np.ndarray
    verified: list[Cell]
    passes_per_image: int


def _ranked(values: np.ndarray, cells: list[Cell], objective: str) -> list[Cell]:
    sign = 1.0 if objective in LOWER_IS_BETTER else -1.0
    return sorted(cells, key=lambda c: (sign * values[c], c))


def _neighbours(epsilons: Sequence[float], j: int) -> list[int]:
    """j and the grid epsilons just below and above it, positive ones only."""
    order = sorted(range(len(epsilons)), key=lambda k: epsilons[k])
    k = order.index(j)
    return [order[m] for m in range(max(0, k - 1), min(len(order), k + 2)) if epsilons[order[m]] > 0]


def shared_search(
    backend: Backend,
    temperatures: Sequence[float],
    epsilons: Sequence[float],
    objective: str = "fpr_at_95_tpr",
    tpr: float = 0.95,
) -> SharedResult:
    """Run the survey, verify and choose steps of the module docstring on ``backend``."""
    if objective not in METRICS:
        raise ValueError(f"objective must be one of {METRICS}, got {objective!r}")
    shape = (len(temperatures), len(epsilons))
    direction = int(np.argmax(temperatures))
    cols = survey_epsilons(epsilons)
    s_in, s_out = backend.survey("in", direction, cols), backend.survey("out", direction, cols)
    passes = 1 + any(epsilons[j] > 0 for j in cols) + sum(epsilons[j] > 0 for j in cols)
    surveyed = np.full(shape, np.nan)
    for i in range(shape[0]):
        for k, j in enumerate(cols):
            surveyed[i, j] = evaluate(s_in[i, k], s_out[i, k], tpr=tpr)[objective]
    exact_in = np.full((*shape, s_in.shape[-1]), np.nan, dtype=np.float32)
    exact_out = np.full((*shape, s_out.shape[-1]), np.nan, dtype=np.float32)
    known = [(i, j) for i in range(shape[0]) for j in cols if i == direction or epsilons[j] == 0]
    for i, j in known:
        exact_in[i, j], exact_out[i, j] = s_in[i, cols.index(j)], s_out[i, cols.index(j)]
    ranked = _ranked(surveyed, [(i, j) for i in range(shape[0]) for j in cols], objective)
    best = ranked[0]
    verify = [(best[0], j) for j in _neighbours(epsilons, best[1])]
    verify += [c for c in ranked if c not in known and c not in verify][:1]
    verify = [c for c in verify if c not in known]
    for t in sorted({i for i, _ in verify}):
        eps = sorted(j for i, j in verify if i == t)
        exact_in[t, eps], exact_out[t, eps] = backend.exact("in", t, eps), backend.exact("out", t, eps)
        passes += 2 + len(eps)
    scored = sorted(set(known) | set(verify))
    metrics = {m: np.full(shape, np.nan) for m in METRICS}
    for c in scored:
        for m, v in evaluate(exact_in[c], exact_out[c], tpr=tpr).items():
            metrics[m][c] = v
    index = _ranked(metrics[objective], scored, objective)[0]
    return SharedResult(
        index=index,
        metrics=metrics,
        scores_in=exact_in,
        scores_out=exact_out,
        surveyed=surveyed,
        verified=sorted(verify),
        passes_per_image=passes,
    )


class ArrayBackend:
    """Scores from cached logits (|T|, |E|, N, C) per side: ``logits[i, j]`` = f(x - e_j d(T_i))."""

    def __init__(self, logits_in: np.ndarray, logits_out: np.ndarray, temperatures: Sequence[float]) -> None:
        self.logits = {"in": torch.as_tensor(logits_in), "out": torch.as_tensor(logits_out)}
        self.temperatures = [float(t) for t in temperatures]

    def _score(self, z: Tensor, t: float) -> np.ndarray:
        return torch.softmax(z / t, dim=-1).amax(dim=-1).numpy()

    def survey(self, side: str, direction: int, eps: list[int]) -> np.ndarray:
        z = self.logits[side][direction, eps]
        return np.stack([self._score(z, t) for t in self.temperatures])

    def exact(self, side: str, t: int, eps: list[int]) -> np.ndarray:
        return self._score(self.logits[side][t, eps], self.temperatures[t])


class ModelBackend:
    """Scores of ``model`` on the ID (``"in"``) and OOD (``"out"``) tuning data, batch by batch."""

    def __init__(
        self,
        model: nn.Module,
        data_in: Data,
        data_out: Data,
        temperatures: Sequence[float],
        epsilons: Sequence[float],
        input_std: Sequence[float] | Tensor | None = None,
        batch_size: int = 128,
        clamp: Clamp | None = None,
    ) -> None:
        self.model, self.data = model, {"in": data_in, "out": data_out}
        self.temperatures, self.epsilons = tuple(temperatures), tuple(epsilons)
        self.input_std, self.batch_size, self.clamp = input_std, batch_size, clamp

    def _map(self, fn: Callable[[Tensor], Tensor], side: str) -> np.ndarray:
        return map_batches(fn, self.data[side], self.batch_size, "id_data" if side == "in" else "ood_data").numpy()

    def survey(self, side: str, direction: int, eps: list[int]) -> np.ndarray:
        e = [self.epsilons[j] for j in eps]
        return self._map(
            lambda x: odin_shared_direction_scores(
                self.model, x, self.temperatures, e, self.temperatures[direction], self.input_std, self.clamp
            ),
            side,
        )

    def exact(self, side: str, t: int, eps: list[int]) -> np.ndarray:
        e = [self.epsilons[j] for j in eps]
        return self._map(
            lambda x: odin_grid_scores(self.model, x, [self.temperatures[t]], e, self.input_std, self.clamp)[0], side
        )
