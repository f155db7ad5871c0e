import numpy as np
import pytest

from odin_ood.metrics import evaluate


def released_calmetric_loops(x, y, steps, start=None, end=None):
    """A literal port of the loops of the paper's calMetric.py (grid over [min, max) by default)."""
    start = min(x.min(), y.min()) if start is None else start
    end = max(x.max(), y.max()) if end is None else end
    gap = (end - start) / steps
    total = fpr_sum = 0.0
    for d in np.arange(start, end, gap):
        tpr = np.sum(x >= d) / len(x)
        if 0.9495 <= tpr <= 0.9505:
            fpr_sum += np.sum(y > d) / len(y)
            total += 1
    auroc, fpr_temp = 0.0, 1.0
    for d in np.arange(start, end, gap):
        tpr = np.sum(x >= d) / len(x)
        fpr = np.sum(y > d) / len(y)
        auroc += (-fpr + fpr_temp) * tpr
        fpr_temp = fpr
    auroc += fpr * tpr
    aupr_in, recall_temp = 0.0, 1.0
    for d in np.arange(start, end, gap):
        tp = np.sum(x >= d) / len(x)
        fp = np.sum(y >= d) / len(y)
        if tp + fp == 0:
            continue
        precision = tp / (tp + fp)
        recall = tp
        aupr_in += (recall_temp - recall) * precision
        recall_temp = recall
    aupr_in += recall * precision
    aupr_out, recall_temp = 0.0, 1.0
    for d in np.arange(end, start, -gap):
        fp = np.sum(x < d) / len(x)
        tp = np.sum(y < d) / len(y)
        if tp + fp == 0:
            break
        precision = tp / (tp + fp)
        recall = tp
        aupr_out += (recall_temp - recall) * precision
        recall_temp = recall
    aupr_out += recall * precision
    error = 1.0
    for d in np.arange(start, end, gap):
        error = min(error, (np.sum(x < d) / len(x) + np.sum(y > d) / len(y)) / 2)
    return {
        "fpr_at_95_tpr": fpr_sum / total,
        "detection_error": error,
        "auroc": auroc,
        "aupr_in": aupr_in,
        "aupr_out": aupr_out,
    }


@pytest.mark.parametrize("n_in,n_out", [(400, 400), (300, 900)])
def test_calmetric_mode_equals_the_released_loops(n_in, n_out):
    r = np.random.default_rng(7)
    x, y = r.normal(1.0, 0.5, n_in), r.normal(0.0, 0.7, n_out)
    got = evaluate(x, y, convention="calmetric", steps=3000)
    want = released_calmetric_loops(x, y, 3000)
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-12), k


def test_calmetric_differs_from_exact_where_documented():
    # rate-based precision: with 10x more OOD than ID, real precision is far lower
    r = np.random.default_rng(0)
    x, y = r.normal(1.0, 1.0, 200), r.normal(0.0, 1.0, 2000)
    exact, cal = evaluate(x, y), evaluate(x, y, convention="calmetric", steps=20000)
    assert cal["aupr_in"] > exact["aupr_in"] + 0.2
    # the detection error is the minimum over thresholds, not the one at 95% TPR
    assert cal["detection_error"] < exact["detection_error"]


def test_calmetric_without_a_threshold_in_the_tpr_window_raises():
    with pytest.raises(ValueError, match="TPR in"):
        evaluate(np.array([1.0, 2.0]), np.array([0.0, 0.5]), convention="calmetric", steps=10)


def test_calmetric_hard_coded_range():
    # like the released code's CIFAR-10 baseline range [0.1, 1), wider than the data
    r = np.random.default_rng(1)
    x, y = r.uniform(0.3, 1.0, 500), r.uniform(0.15, 0.6, 500)
    got = evaluate(x, y, convention="calmetric", start=0.1, end=1.0, steps=5000)
    want = released_calmetric_loops(x, y, 5000, start=0.1, end=1.0)
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-12), k
