"""Tables 2/3 (and 12): MSP vs ODIN on every OOD set, five metrics, with bootstrap intervals,
plus ODIN at the paper's published parameters (Appendix A.2) and the ROC curves of Figure 1;
beyond the paper, ODIN's successors on the same splits (:mod:`successor_rows`).

Per OOD set: MSP = grid cell (T=1, eps=0); "ODIN (tuned)" = the cell minimising FPR at 95% TPR
on the tuning splits (section 4.4); "ODIN (paper parameters)" = the paper's (T, eps) for this
model and set. All metrics are measured on the evaluation splits only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from odin_ood.experiments import paper, successor_rows
from odin_ood.experiments.bootstrap import bootstrap_ci
from odin_ood.experiments.choose import tuned
from odin_ood.experiments.protocol import Experiment, Scored
from odin_ood.metrics import evaluate, roc_points

PAPER_METHODS = ("msp", "odin-tuned", "odin-paper")
METHODS = PAPER_METHODS + successor_rows.METHODS
METHOD_LABELS = {
    "msp": "Baseline (MSP)",
    "odin-tuned": "ODIN (tuned, sec. 4.4)",
    "odin-paper": "ODIN (paper's T, eps)",
    **successor_rows.METHOD_LABELS,
}


def method_scores(exp: Experiment, ood: Scored, method: str) -> tuple[np.ndarray, np.ndarray, float, float] | None:
    """(ID eval scores, OOD eval scores, T, epsilon) of a method, or None when it does not apply
    (no paper parameters for this set)."""
    if method in successor_rows.METHODS:
        return successor_rows.method_scores(exp, ood, method)
    ids = exp.id_set
    if method == "msp":
        return exp.msp(ids)[ids.split.eval], exp.msp(ood)[ood.split.eval], 1.0, 0.0
    if method == "odin-tuned":
        t = tuned(exp, ood)
        T, eps = t.temperature, t.epsilon
    else:
        params = paper.parameters(exp.paper_row, ood.paper_key)
        if params is None:
            return None
        T, eps = params
    return exp.scores(ids, T, eps)[ids.split.eval], exp.scores(ood, T, eps)[ood.split.eval], T, eps


def roc_curve(s_in: np.ndarray, s_out: np.ndarray, max_points: int = 400) -> dict[str, list[float]]:
    """The ROC curve (FPR, TPR), thinned to at most ``max_points`` points (endpoints kept)."""
    p = roc_points(s_in, s_out)
    fpr, tpr = np.r_[0.0, p.fpr], np.r_[0.0, p.tpr]
    keep = np.unique(np.linspace(0, fpr.size - 1, min(max_points, fpr.size)).round().astype(int))
    return {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist()}


def main_table(exp: Experiment, resamples: int = 200) -> dict[str, Any]:
    """Rows (one per OOD set and method) with metrics, 95% bootstrap intervals and the paper's
    numbers; and the ROC curves of MSP and tuned ODIN per set."""
    rows: list[dict[str, Any]] = []
    roc: dict[str, dict[str, Any]] = {}
    for k, ood in enumerate(exp.oods):
        ref = paper.table_row(exp.paper_row, ood.paper_key)
        roc[ood.key] = {}
        for method in METHODS:
            found = method_scores(exp, ood, method)
            if found is None:
                continue
            s_in, s_out, T, eps = found
            rows.append(
                {
                    "ood": ood.key,
                    "label": ood.label,
                    "method": method,
                    "temperature": T,
                    "epsilon": eps,
                    "search": tuned(exp, ood).search if method == "odin-tuned" else None,
                    "metrics": evaluate(s_in, s_out),
                    "ci95": bootstrap_ci(s_in, s_out, resamples, seed=exp.seed + 7919 * k + METHODS.index(method)),
                    "paper": None
                    if ref is None or method not in PAPER_METHODS
                    else {
                        "values": ref["msp" if method == "msp" else "odin"],
                        "unit": "percent",
                        "source": ref["source"],
                    },
                    "n_in": int(s_in.size),
                    "n_out": int(s_out.size),
                }
            )
            if method in ("msp", "odin-tuned"):
                roc[ood.key][method] = roc_curve(s_in, s_out)
    return {
        "rows": rows,
        "roc": roc,
        "bootstrap": {
            "resamples": resamples,
            "level": 0.95,
            "method": "percentile, ID and OOD resampled independently",
        },
    }
