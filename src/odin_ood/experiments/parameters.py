"""Effects of the parameters (section 5.1, Figures 3, 4, 7-9) and of the threshold (Figure 13).

Sweeps are read off the cached grid on the EVALUATION splits: FPR at 95% TPR and AUROC vs T at
epsilon = 0 (temperature scaling alone), vs epsilon at T = 1 (input preprocessing alone) and vs
epsilon at the set's tuned T (both). Figure 13: TPR (ID eval) and FPR (each OOD eval) as the
threshold delta moves, at the paper's (T, epsilon) when it has them, else the tuned ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from odin_ood.experiments import paper
from odin_ood.experiments.choose import tuned
from odin_ood.experiments.protocol import Experiment
from odin_ood.metrics import threshold_at_tpr, tpr_fpr_at_thresholds
from odin_ood.tuning.grid import tune_from_scores

SWEEP_METRICS = ("fpr_at_95_tpr", "auroc", "detection_error")


def sweeps(exp: Experiment) -> dict[str, Any]:
    """Per OOD set: each metric of ``SWEEP_METRICS`` over the whole grid (T x eps, eval splits),
    and the indices of the three slices of Figures 3, 4, 7-9."""
    s = exp.scorer
    i1, j0 = s.msp_index()
    out: dict[str, Any] = {
        "temperatures": list(s.temperatures),
        "epsilons": list(s.epsilons),
        "t1_index": i1,
        "eps0_index": j0,
        "sets": {},
    }
    for ood in exp.oods:
        grid = tune_from_scores(exp.id_set.eval(), ood.eval(), s.temperatures, s.epsilons).metrics
        out["sets"][ood.key] = {
            "label": ood.label,
            "best_t_index": tuned(exp, ood).index[0],
            **{m: grid[m].tolist() for m in SWEEP_METRICS},
        }
    return out


def threshold_curves(exp: Experiment, points: int = 200) -> dict[str, Any]:
    """Figure 13: TPR and FPR vs delta; delta at 95% TPR is set on the ID tuning split."""
    params = [paper.parameters(exp.paper_row, o.paper_key) for o in exp.oods]
    T, eps = next((p for p in params if p is not None), None) or (
        tuned(exp, exp.oods[0]).temperature,
        tuned(exp, exp.oods[0]).epsilon,
    )
    id_all = exp.scores(exp.id_set, T, eps)
    s_in = id_all[exp.id_set.split.eval]
    outs = {o.key: exp.scores(o, T, eps)[o.split.eval] for o in exp.oods}
    pooled = np.concatenate([s_in, *outs.values()])
    delta = np.unique(np.quantile(pooled, np.linspace(0.0, 1.0, points)))
    tpr, _ = tpr_fpr_at_thresholds(s_in, s_in[:1], delta)
    return {
        "temperature": T,
        "epsilon": eps,
        "delta": delta.tolist(),
        "tpr": tpr.tolist(),
        "delta_at_95": threshold_at_tpr(id_all[exp.id_set.split.tune], 0.95),
        "fpr": {k: tpr_fpr_at_thresholds(s_in, v, delta)[1].tolist() for k, v in outs.items()},
        "labels": {o.key: o.label for o in exp.oods},
    }
