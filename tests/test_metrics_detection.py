import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from odin_ood.metrics import (
    aupr_in,
    aupr_out,
    auroc,
    detection_error,
    evaluate,
    fpr_at_tpr,
    threshold_at_tpr,
    tpr_fpr_at_thresholds,
)


def sklearn_reference(s_in, s_out):
    y = np.r_[np.ones(len(s_in)), np.zeros(len(s_out))]
    s = np.r_[s_in, s_out]
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    k = int(np.argmax(tpr >= 0.95))
    return {
        "fpr_at_95_tpr": fpr[k],
        "detection_error": 0.5 * (1 - tpr[k]) + 0.5 * fpr[k],
        "auroc": roc_auc_score(y, s),
        "aupr_in": average_precision_score(y, s),
        "aupr_out": average_precision_score(1 - y, -s),
    }


CASES = {
    "random": lambda r: (r.normal(1.0, 1.0, 1000), r.normal(0.0, 1.0, 1000)),
    "imbalanced": lambda r: (r.normal(0.5, 1.0, 137), r.normal(0.0, 1.5, 4000)),
    "heavily_tied": lambda r: (np.round(r.normal(1.0, 1.0, 800), 1), np.round(r.normal(0.0, 1.0, 1500), 1)),
    "tied_across_sets": lambda r: (r.integers(0, 4, 500).astype(float), r.integers(0, 3, 300).astype(float)),
    "separable": lambda r: (r.uniform(2, 3, 300), r.uniform(0, 1, 200)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_evaluate_equals_scikit_learn(case):
    s_in, s_out = CASES[case](np.random.default_rng(42))
    got, want = evaluate(s_in, s_out), sklearn_reference(s_in, s_out)
    assert set(got) == set(want)
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-12), k


def test_individual_functions_agree_with_evaluate():
    r = np.random.default_rng(3)
    s_in, s_out = r.normal(1, 1, 400), np.round(r.normal(0, 1, 300), 2)
    e = evaluate(s_in, s_out)
    assert fpr_at_tpr(s_in, s_out) == e["fpr_at_95_tpr"]
    assert detection_error(s_in, s_out) == e["detection_error"]
    assert auroc(s_in, s_out) == e["auroc"]
    assert aupr_in(s_in, s_out) == e["aupr_in"]
    assert aupr_out(s_in, s_out) == e["aupr_out"]


def test_fpr_at_95_tpr_with_all_scores_tied():
    # one threshold only: everything is kept, so TPR = FPR = 1; AUROC is chance
    e = evaluate(np.full(100, 0.3), np.full(50, 0.3))
    assert e["fpr_at_95_tpr"] == 1.0 and e["auroc"] == 0.5
    assert e["detection_error"] == 0.5
    assert e["aupr_in"] == pytest.approx(100 / 150)


def test_hand_worked_example():
    # ID 1..20 (20 scores), OOD 0.5, 5.5, 10.5: keeping >= 2 gives TPR 19/20 = 0.95, and OOD
    # 5.5, 10.5 are kept: FPR 2/3, P_e = 0.5*0.05 + 0.5*2/3.
    s_in = np.arange(1, 21, dtype=float)
    s_out = np.array([0.5, 5.5, 10.5])
    e = evaluate(s_in, s_out)
    assert e["fpr_at_95_tpr"] == pytest.approx(2 / 3)
    assert e["detection_error"] == pytest.approx(0.025 + 1 / 3)
    # AUROC: pairs (in > out): 20 + 15 + 10 = 45 of 60
    assert e["auroc"] == pytest.approx(45 / 60)
    assert threshold_at_tpr(s_in, 0.95) == 2.0


def test_paper_table2_relation_between_fpr_and_detection_error():
    # at TPR exactly 95%, P_e = 2.5% + FPR/2: Table 2 pairs 34.7 -> 19.9 and 4.3 -> 4.7 (rounded)
    for fpr_percent, pe_percent in [(34.7, 19.9), (4.3, 4.7), (12.3, 8.7), (95.4, 50.2)]:
        n = 1000
        s_in = np.linspace(1.0, 2.0, n)  # threshold at the 95% point keeps 950
        t = threshold_at_tpr(s_in)
        n_above = round(fpr_percent / 100 * n)
        s_out = np.r_[np.full(n_above, t + 0.5), np.full(n - n_above, t - 0.5)]
        e = evaluate(s_in, s_out)
        assert e["fpr_at_95_tpr"] == pytest.approx(fpr_percent / 100)
        assert abs(100 * e["detection_error"] - pe_percent) <= 0.05 + 1e-9


def test_accepts_tensors_and_lists():
    s_in, s_out = [0.9, 0.8, 0.7], [0.1, 0.75]
    assert evaluate(torch.tensor(s_in), torch.tensor(s_out)) == evaluate(np.array(s_in), s_out)


def test_tpr_fpr_at_thresholds_uses_the_detector_rule():
    # kept as ID when score > threshold
    tpr, fpr = tpr_fpr_at_thresholds([1, 2, 3, 4], [0, 1, 2], [0.5, 2.0, 4.0])
    assert tpr.tolist() == [1.0, 0.5, 0.0]
    assert fpr.tolist() == pytest.approx([2 / 3, 0.0, 0.0])


@pytest.mark.parametrize(
    "s_in,s_out,kwargs,match",
    [
        ([], [0.1], {}, "scores_in is empty"),
        ([0.1], [], {}, "scores_out is empty"),
        ([0.1, float("nan")], [0.1], {}, "NaN"),
        ([[0.1]], [0.1], {}, "1-D"),
        ([0.1], [0.2], {"tpr": 1.0}, "tpr"),
        ([0.1], [0.2], {"tpr": 0.0}, "tpr"),
        ([0.1], [0.2], {"convention": "paper"}, "convention"),
    ],
)
def test_bad_input(s_in, s_out, kwargs, match):
    with pytest.raises(ValueError, match=match):
        evaluate(s_in, s_out, **kwargs)
