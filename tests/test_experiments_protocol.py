"""Splits, the vectorised grid tuning, the score cache, the bootstrap and the paper data
(experiments/protocol.py, cache.py, bootstrap.py, paper.py, suites.py)."""

from __future__ import annotations

import numpy as np
import pytest

from odin_ood.experiments import paper, suites
from odin_ood.experiments.bootstrap import bootstrap_ci
from odin_ood.experiments.cache import ScoreCache, entry_path
from odin_ood.experiments.protocol import fpr_grid, select_cell, split_indices
from odin_ood.metrics import evaluate, fpr_at_tpr
from odin_ood.tuning import tune_from_scores


def test_split_is_a_disjoint_seeded_cover():
    s = split_indices(50, 20, seed=4)
    assert s.tune.size == 20 and s.eval.size == 30
    assert np.array_equal(np.sort(np.r_[s.tune, s.eval]), np.arange(50))
    assert np.array_equal(split_indices(50, 20, seed=4).tune, s.tune)
    assert not np.array_equal(split_indices(50, 20, seed=5).tune, s.tune)


def test_split_rejects_a_tuning_part_as_large_as_the_set():
    with pytest.raises(ValueError, match="n_tune"):
        split_indices(10, 10, seed=0)


def test_fpr_grid_and_select_cell_match_metrics_and_tune_from_scores_with_ties():
    rng = np.random.default_rng(1)
    T, E = (1.0, 10.0, 1000.0), (0.0, 0.001, 0.002, 0.003)
    # coarse values so that ties occur both within and across the sets
    s_in = np.round(rng.normal(1.0, 1.0, (3, 4, 97)), 1)
    s_out = np.round(rng.normal(0.0, 1.0, (3, 4, 83)), 1)
    f = fpr_grid(s_in, s_out)
    for i in range(3):
        for j in range(4):
            assert f[i, j] == pytest.approx(fpr_at_tpr(s_in[i, j], s_out[i, j]))
    ref = tune_from_scores(s_in, s_out, T, E)
    assert select_cell(s_in, s_out) == ref.index


@pytest.mark.parametrize("name", ["mnist-lenet", "mnist-mlp", "cifar10-densenet", "cifar10-resnet20"])
def test_paper_parameters_of_runnable_suites_lie_on_the_full_and_quick_grids(name):
    suite = suites.get(name)
    params = [paper.parameters(suite.paper_label, d.paper_key) for d in suite.ood]
    assert any(params)
    for T, eps in filter(None, params):
        for temperatures, epsilons in (suites.grid(suite, False), suites.grid(suite, True)):
            assert T in temperatures and any(abs(eps - e) < 1e-12 for e in epsilons)


def test_paper_numbers_are_the_printed_ones():
    row = paper.table_row("Dense-BC CIFAR-10", "tinyimagenet-crop")
    assert row["msp"]["fpr_at_95_tpr"] == 34.7 and row["odin"]["fpr_at_95_tpr"] == 4.3
    assert row["odin"]["aupr_out"] == 99.1 and row["source"] == "Table 2"
    assert paper.table_row("MNIST", "notmnist")["msp"]["detection_error"] == 7.7
    assert paper.table_row("Dense-BC CIFAR-10", "cifar100")["source"] == "Table 12"
    assert paper.parameters("Dense-BC CIFAR-10", "lsun-crop") == (1000.0, 0.0)
    assert paper.parameters("Dense-BC CIFAR-100", "gaussian") == (1.0, 0.0028)
    assert paper.CROSS["Dense-BC CIFAR-10"]["tinyimagenet-resize"]["lsun-crop"] == (40.7, 14.9)


def test_every_pair_of_tables_2_3_and_12_belongs_to_a_suite():
    covered = {(s.paper_row, d.paper_key) for s in suites.SUITES.values() for d in s.ood}
    missing = [(row, ood) for row, sets in paper.TABLES.items() for ood in sets if (row, ood) not in covered]
    assert not missing


def test_score_cache_hits_recomputes_on_no_cache_and_on_damage(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"grid": np.arange(6, dtype=np.float32).reshape(1, 2, 3)}

    key = {"model": "sha256:x", "data": {"name": "d"}, "method": "odin-grid", "temperatures": [1.0]}
    cache = ScoreCache(tmp_path)
    first = cache.get(key, compute)
    again = cache.get(key, compute)
    assert len(calls) == 1 and cache.hits == 1 and np.array_equal(first["grid"], again["grid"])
    ScoreCache(tmp_path, enabled=False).get(key, compute)
    assert len(calls) == 2
    entry_path(tmp_path, key).write_bytes(b"not a zip")
    with pytest.warns(UserWarning, match="damaged"):
        ScoreCache(tmp_path).get(key, compute)
    assert len(calls) == 3
    other = dict(key, temperatures=[2.0])
    ScoreCache(tmp_path).get(other, compute)
    assert len(calls) == 4


def test_bootstrap_interval_is_seeded_and_contains_the_estimate():
    rng = np.random.default_rng(0)
    s_in, s_out = rng.normal(1, 1, 400), rng.normal(0, 1, 300)
    ci = bootstrap_ci(s_in, s_out, resamples=100, seed=3)
    assert ci == bootstrap_ci(s_in, s_out, resamples=100, seed=3)
    point = evaluate(s_in, s_out)
    for m, (lo, hi) in ci.items():
        assert lo <= point[m] <= hi and hi - lo < 0.25
    assert ci["auroc"][1] - ci["auroc"][0] > 0.01
