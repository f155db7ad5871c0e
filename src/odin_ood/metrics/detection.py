"""The paper's detection metrics (section 4.3) as pure functions of (scores_in, scores_out).

Conventions, used everywhere in odin-ood:

* A higher score means more in-distribution; an image is kept as in-distribution when
  ``score >= threshold`` (the ROC convention of scikit-learn).
* In-distribution (ID) is the **positive** class for TPR, FPR, FPR@95TPR, detection error,
  AUROC and AUPR-In; AUPR-Out makes OOD the positive class and ranks by the negated score.
* ``fpr_at_95_tpr``: the FPR at the first threshold, scanning from high to low scores, whose
  TPR is >= 0.95 (the exact empirical operating point, no interpolation).
* ``detection_error``: P_e = 0.5 (1 - TPR) + 0.5 FPR at that same operating point (the paper's
  P_e; e.g. Table 2's FPR 34.7% pairs with P_e 19.9% = 0.5*5% + 0.5*34.7%).
* ``aupr_in``/``aupr_out``: average precision (step-wise area, as scikit-learn's
  ``average_precision_score``), not a trapezoid.
* All values are fractions in [0, 1].

Every metric is computed from one sort of the pooled scores (``roc_points``), so ``evaluate``
on 10^6 scores takes a fraction of a second; the tests check each value against
scikit-learn. ``evaluate(..., convention="calmetric")`` reproduces the paper's released
evaluation code instead (see :mod:`odin_ood.metrics.calmetric`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from odin_ood._utils.checks import as_scores, check_rate
from odin_ood.metrics.calmetric import calmetric_evaluate

METRICS = ("fpr_at_95_tpr", "detection_error", "auroc", "aupr_in", "aupr_out")
LOWER_IS_BETTER = frozenset({"fpr_at_95_tpr", "detection_error"})


@dataclass(frozen=True)
class RocPoints:
    """Counts at every distinct threshold, from the highest score down.

    ``tp[k]``/``fp[k]``: ID/OOD scores >= ``thresholds[k]``; ``n_in``/``n_out``: totals.
    """

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    n_in: int
    n_out: int

    @property
    def tpr(self) -> np.ndarray:
        return self.tp / self.n_in

    @property
    def fpr(self) -> np.ndarray:
        return self.fp / self.n_out


def roc_points(scores_in: ArrayLike, scores_out: ArrayLike) -> RocPoints:
    """One sort of the pooled scores, grouping ties (as scikit-learn's ``roc_curve``)."""
    s_in, s_out = as_scores(scores_in, "scores_in"), as_scores(scores_out, "scores_out")
    scores = np.concatenate([s_in, s_out])
    is_in = np.concatenate([np.ones(s_in.size, bool), np.zeros(s_out.size, bool)])
    order = np.argsort(-scores, kind="stable")
    scores, is_in = scores[order], is_in[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    tp = np.cumsum(is_in)[last_of_tie]
    fp = last_of_tie + 1 - tp
    return RocPoints(scores[last_of_tie], tp, fp, s_in.size, s_out.size)


def _operating_index(points: RocPoints, tpr: float) -> int:
    # tp is non-decreasing and reaches n_in at the last threshold, so a match always exists.
    return int(np.searchsorted(points.tp, np.ceil(tpr * points.n_in - 1e-9), side="left"))


def fpr_at_tpr(scores_in: ArrayLike, scores_out: ArrayLike, tpr: float = 0.95) -> float:
    """FPR at the first threshold (high to low) whose TPR >= ``tpr``; ID is positive."""
    points = roc_points(scores_in, scores_out)
    return float(points.fpr[_operating_index(points, check_rate(tpr, "tpr"))])


def threshold_at_tpr(scores_in: ArrayLike, tpr: float = 0.95) -> float:
    """The highest threshold t with mean(scores_in >= t) >= ``tpr`` (a score value of the data)."""
    s = np.sort(as_scores(scores_in, "scores_in"))
    keep = int(np.ceil(check_rate(tpr, "tpr") * s.size - 1e-9))
    return float(s[s.size - keep])


def detection_error(scores_in: ArrayLike, scores_out: ArrayLike, tpr: float = 0.95) -> float:
    """P_e = 0.5 (1 - TPR) + 0.5 FPR at the operating point of :func:`fpr_at_tpr` (section 4.3)."""
    points = roc_points(scores_in, scores_out)
    k = _operating_index(points, check_rate(tpr, "tpr"))
    return float(0.5 * (1.0 - points.tpr[k]) + 0.5 * points.fpr[k])


def auroc(scores_in: ArrayLike, scores_out: ArrayLike) -> float:
    """Area under the ROC curve (trapezoid through the tie-grouped points): P(s_in > s_out) + P(tie)/2."""
    points = roc_points(scores_in, scores_out)
    return _auroc(points)


def aupr_in(scores_in: ArrayLike, scores_out: ArrayLike) -> float:
    """Average precision with ID as the positive class, ranking by the score."""
    return _aupr_in(roc_points(scores_in, scores_out))


def aupr_out(scores_in: ArrayLike, scores_out: ArrayLike) -> float:
    """Average precision with OOD as the positive class, ranking by the negated score."""
    return _aupr_out(roc_points(scores_in, scores_out))


def _auroc(p: RocPoints) -> float:
    fpr, tpr = np.r_[0.0, p.fpr], np.r_[0.0, p.tpr]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def _average_precision(tp: np.ndarray, fp: np.ndarray, n_pos: int) -> float:
    recall_steps = np.diff(np.r_[0, tp]) / n_pos
    return float(np.sum(recall_steps * tp / np.maximum(tp + fp, 1)))


def _aupr_in(p: RocPoints) -> float:
    return _average_precision(p.tp, p.fp, p.n_in)


def _aupr_out(p: RocPoints) -> float:
    # Thresholds on -score, high to low = scores low to high; "-s >= -t_k" means "s <= t_k",
    # i.e. everything not above t_k: the complement of the counts at the next higher threshold.
    ood = p.n_out - np.r_[0, p.fp[:-1]]
    ind = p.n_in - np.r_[0, p.tp[:-1]]
    return _average_precision(ood[::-1], ind[::-1], p.n_out)


def evaluate(
    scores_in: ArrayLike,
    scores_out: ArrayLike,
    tpr: float = 0.95,
    convention: str = "exact",
    **calmetric_options: Any,
) -> dict[str, float]:
    """All five metrics of the paper: ``fpr_at_95_tpr``, ``detection_error``, ``auroc``,
    ``aupr_in``, ``aupr_out`` (fractions in [0, 1]; ID positive; higher score = more ID).

    ``convention="exact"`` (default) uses the empirical curves described in this module.
    ``convention="calmetric"`` reproduces the paper's released ``calMetric.py`` (threshold grid,
    FPR averaged over a TPR window, rate-based precision; see :mod:`odin_ood.metrics.calmetric`), to
    compare with the paper's tables like for like.
    """
    if convention == "calmetric":
        return calmetric_evaluate(scores_in, scores_out, **calmetric_options)
    if convention != "exact":
        raise ValueError(f"convention must be 'exact' or 'calmetric', got {convention!r}")
    if calmetric_options:
        raise TypeError(f"options {sorted(calmetric_options)} apply only to convention='calmetric'")
    points = roc_points(scores_in, scores_out)
    k = _operating_index(points, check_rate(tpr, "tpr"))
    return {
        "fpr_at_95_tpr": float(points.fpr[k]),
        "detection_error": float(0.5 * (1.0 - points.tpr[k]) + 0.5 * points.fpr[k]),
        "auroc": _auroc(points),
        "aupr_in": _aupr_in(points),
        "aupr_out": _aupr_out(points),
    }


def tpr_fpr_at_thresholds(
    scores_in: ArrayLike, scores_out: ArrayLike, thresholds: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """TPR and FPR when keeping ``score > threshold`` as ID (the detector g's rule), per threshold."""
    s_in, s_out = np.sort(as_scores(scores_in, "scores_in")), np.sort(as_scores(scores_out, "scores_out"))
    t = np.asarray(thresholds, dtype=np.float64)
    tpr = 1.0 - np.searchsorted(s_in, t, side="right") / s_in.size
    fpr = 1.0 - np.searchsorted(s_out, t, side="right") / s_out.size
    return tpr, fpr
