"""Compatibility mode: the metrics exactly as the paper's released ``calMetric.py`` computes them.

The authors' code does not use empirical curves; it sweeps a fixed grid of thresholds
``delta in np.arange(start, end, (end - start) / 100000)`` (hard-coded per setting, e.g.
[0.1, 1) for CIFAR-10 baseline scores and [0.1, 0.12) for its ODIN scores) and computes, with
ID scores X and OOD scores Y:

* FPR@95TPR: the mean of mean(Y > delta) over the grid points whose TPR = mean(X >= delta)
  lies in [0.9495, 0.9505] (an average over a TPR window, not one operating point);
* detection error: min over the grid of 0.5 mean(X < delta) + 0.5 mean(Y > delta) (the best
  threshold, not the 95%-TPR one);
* AUROC: a left Riemann sum over the grid;
* AUPR-In/Out: precision computed from *rates*, tp_rate / (tp_rate + fp_rate), i.e. as if both
  sets had equal size, summed over the grid.

These choices depend on the grid range and resolution, and the rate-based precision differs
from precision whenever the two sets differ in size; so odin-ood's default is the exact
empirical convention of :mod:`odin_ood.metrics.detection`. Use this mode (``evaluate(...,
convention="calmetric")``) to compare with the paper's numbers like for like. By default the
grid spans [min, max) of the pooled scores; pass ``start``/``end`` to mimic a hard-coded range.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from odin_ood._utils.checks import as_scores

TPR_WINDOW = (0.9495, 0.9505)


def threshold_grids(
    s_in: np.ndarray, s_out: np.ndarray, start: float | None, end: float | None, steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """The released code's two sweeps: ``arange(start, end, gap)`` and ``arange(end, start, -gap)``."""
    start = float(min(s_in.min(), s_out.min())) if start is None else float(start)
    end = float(max(s_in.max(), s_out.max())) if end is None else float(end)
    if not end > start:
        raise ValueError(f"the threshold grid needs end > start, got start={start}, end={end}")
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    gap = (end - start) / int(steps)
    return np.arange(start, end, gap), np.arange(end, start, -gap)


def _fraction(sorted_scores: np.ndarray, delta: np.ndarray, op: str) -> np.ndarray:
    """mean(scores OP delta) for each delta, with OP in {'>=', '>', '<'}."""
    n = sorted_scores.size
    if op == ">=":
        return (n - np.searchsorted(sorted_scores, delta, side="left")) / n
    if op == ">":
        return (n - np.searchsorted(sorted_scores, delta, side="right")) / n
    return np.searchsorted(sorted_scores, delta, side="left") / n


def _rate_aupr(tp: np.ndarray, fp: np.ndarray) -> float:
    """The released code's loop: sum (recall_prev - recall) * precision, plus recall * precision.

    Its loops skip (or stop at) grid points where both rates are 0; the rates are monotone
    along the sweep, so dropping those points is the same.
    """
    valid = tp + fp > 0
    tp, fp = tp[valid], fp[valid]
    if tp.size == 0:
        return 0.0
    precision = tp / (tp + fp)
    recall_prev = np.r_[1.0, tp[:-1]]
    return float(np.sum((recall_prev - tp) * precision) + tp[-1] * precision[-1])


def calmetric_evaluate(
    scores_in: ArrayLike,
    scores_out: ArrayLike,
    start: float | None = None,
    end: float | None = None,
    steps: int = 100_000,
) -> dict[str, float]:
    """The five metrics as ``calMetric.py`` computes them (see the module docstring)."""
    x = np.sort(as_scores(scores_in, "scores_in"))
    y = np.sort(as_scores(scores_out, "scores_out"))
    grid, descending = threshold_grids(x, y, start, end, steps)
    tpr, fpr = _fraction(x, grid, ">="), _fraction(y, grid, ">")
    window = (tpr >= TPR_WINDOW[0]) & (tpr <= TPR_WINDOW[1])
    if not window.any():
        raise ValueError(
            f"no threshold of the {grid.size}-point grid gives a TPR in {list(TPR_WINDOW)}; the released "
            "code would divide by zero here. Use convention='exact', a finer grid (steps) or a range (start, end)"
        )
    fpr_prev = np.r_[1.0, fpr[:-1]]
    return {
        "fpr_at_95_tpr": float(fpr[window].mean()),
        "detection_error": float(np.min(0.5 * _fraction(x, grid, "<") + 0.5 * fpr)),
        "auroc": float(np.sum((fpr_prev - fpr) * tpr) + fpr[-1] * tpr[-1]),
        "aupr_in": _rate_aupr(tpr, _fraction(y, grid, ">=")),
        "aupr_out": _rate_aupr(_fraction(y, descending, "<"), _fraction(x, descending, "<")),
    }
