"""How tuned parameters transfer (Appendix H): the cross-dataset matrix (Figure 14, Tables 10-11)
and FPR vs tuning-set size (Figure 15).

Cross-dataset: (T, epsilon) tuned on set A's tuning split (with the ID tuning split) is applied
to set B's evaluation split; entry [B][A] is the FPR at 95% TPR (threshold set on the ID
evaluation split, as in the main table), so the diagonal is the main table's tuned ODIN FPR.

Tuning-set size: per OOD set, a fixed test part (everything outside a tuning pool of
min(2,000, n/2) images, the pool holding the main tuning split) and tuning sets of increasing
size drawn from the pool, ``repeats`` times each (seeded); FPR at 95% TPR on the test part
against the ID evaluation split, with the chosen cell found on the ID tuning split.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from odin_ood.experiments import paper
from odin_ood.experiments.choose import tuned
from odin_ood.experiments.protocol import Experiment, permutation, select_cell
from odin_ood.metrics import fpr_at_tpr


def cross_dataset(exp: Experiment) -> dict[str, Any]:
    """FPR at 95% TPR on each test set (rows) with the parameters tuned on each set (columns)."""
    keys = [o.key for o in exp.oods]
    i1, j0 = exp.scorer.msp_index()
    fpr, baseline = [], []
    for test in exp.oods:
        row = []
        for source in exp.oods:
            i, j = tuned(exp, source).index
            row.append(fpr_at_tpr(exp.id_set.eval(i, j), test.eval(i, j)))
        fpr.append(row)
        baseline.append(fpr_at_tpr(exp.id_set.eval(i1, j0), test.eval(i1, j0)))
    cross = paper.CROSS.get(exp.paper_row or "", {})
    paper_matrix = [[(cross.get(t.paper_key or "") or {}).get(u.paper_key or "") for u in exp.oods] for t in exp.oods]
    return {
        "sets": keys,
        "labels": [o.label for o in exp.oods],
        "fpr": fpr,
        "msp_fpr": baseline,
        "parameters": {k: [exp.tunings[k].temperature, exp.tunings[k].epsilon] for k in keys},
        "paper": paper_matrix if any(v is not None for r in paper_matrix for v in r) else None,
        "paper_source": "Table 10"
        if exp.paper_row == "Dense-BC CIFAR-10"
        else "Table 11"
        if exp.paper_row == "WRN-28-10 CIFAR-10"
        else None,
    }


def tuning_sizes(pool: int) -> list[int]:
    """200, 400, ..., 2,000 (the paper's) capped by the pool; ten even steps for smaller pools."""
    sizes = [s for s in range(200, 2001, 200) if s <= pool]
    return sizes if len(sizes) >= 3 else sorted({max(2, round(pool * k / 10)) for k in range(1, 11)})


def tuning_size_curve(exp: Experiment, repeats: int = 10) -> dict[str, Any]:
    """Per OOD set: FPR at 95% TPR (test part) for each tuning-set size, over ``repeats`` draws."""
    id_tune = exp.id_set.tune()
    id_eval = exp.id_set.eval()
    out: dict[str, Any] = {"repeats": repeats, "sets": {}}
    for k, ood in enumerate(exp.oods):
        n = len(ood.data)
        pool_size = min(2000, n // 2)
        order = permutation(n, ood.split.seed)  # the split's permutation: its tuning part leads
        pool, test = order[:pool_size], order[pool_size:]
        sizes = tuning_sizes(pool_size)
        rng = np.random.default_rng(exp.seed + 104729 * (k + 1))
        values = []
        for size in sizes:
            draws = []
            for _ in range(repeats):
                pick = rng.choice(pool, size=size, replace=False)
                i, j = select_cell(id_tune, ood.full_grid()[..., pick])
                draws.append(fpr_at_tpr(id_eval[i, j], ood.full_grid()[i, j, test]))
            values.append(draws)
        v = np.asarray(values)
        out["sets"][ood.key] = {
            "label": ood.label,
            "sizes": sizes,
            "test_size": int(test.size),
            "fpr": v.tolist(),
            "mean": v.mean(1).tolist(),
            "std": v.std(1).tolist(),
        }
    return out
