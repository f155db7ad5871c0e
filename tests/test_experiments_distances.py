"""MMD, energy distance and the median heuristic against direct double loops (experiments/distances.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from odin_ood.experiments.distances import energy_distance, median_heuristic, mmd2, pairwise_sq_distances


@pytest.fixture()
def samples() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.random((7, 5)), rng.random((7, 5)) * 1.5 + 0.2


def _loop_median(v, w, squared):
    z = np.concatenate([v, w])
    d = [np.sum((z[i] - z[j]) ** 2) for i, j in itertools.combinations(range(len(z)), 2)]
    return float(np.median(d if squared else np.sqrt(d)))


def test_pairwise_sq_distances_match_loop(samples):
    v, w = samples
    loop = np.array([[np.sum((a - b) ** 2) for b in w] for a in v])
    np.testing.assert_allclose(pairwise_sq_distances(v, w), loop, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("squared", [True, False])
def test_median_heuristic_is_median_over_pairs_of_the_pooled_set(samples, squared):
    v, w = samples
    assert median_heuristic(v, w, squared=squared) == pytest.approx(_loop_median(v, w, squared), rel=1e-12)


def test_mmd2_equals_the_unbiased_u_statistic_by_loops(samples):
    v, w = samples
    s = _loop_median(v, w, True)

    def k(a, b):
        return np.exp(-np.sum((a - b) ** 2) / s)

    m = len(v)
    pairs = [(i, j) for i in range(m) for j in range(m) if i != j]
    expected = (
        sum(k(v[i], v[j]) for i, j in pairs)
        + sum(k(w[i], w[j]) for i, j in pairs)
        - 2 * sum(k(v[i], w[j]) for i, j in pairs)
    ) / len(pairs)
    assert mmd2(v, w) == pytest.approx(expected, rel=1e-10)
    # The paper's form: means over unordered pairs (normalised by C(m, 2)) give the same value.
    unordered = list(itertools.combinations(range(m), 2))
    paper = (sum(k(v[i], v[j]) for i, j in unordered) + sum(k(w[i], w[j]) for i, j in unordered)) / len(
        unordered
    ) - sum(k(v[i], w[j]) + k(v[j], w[i]) for i, j in unordered) / len(unordered)
    assert mmd2(v, w) == pytest.approx(paper, rel=1e-10)


def test_energy_distance_equals_appendix_g_by_loops(samples):
    v, w = samples
    m = len(v)

    def d(a, b):
        return np.sqrt(np.sum((a - b) ** 2))

    unordered = list(itertools.combinations(range(m), 2))
    expected = (
        2 / m**2 * sum(d(v[i], w[j]) for i in range(m) for j in range(m))
        - sum(d(v[i], v[j]) for i, j in unordered) / len(unordered)
        - sum(d(w[i], w[j]) for i, j in unordered) / len(unordered)
    )
    assert energy_distance(v, w) == pytest.approx(expected, rel=1e-10)


def test_distances_separate_a_shifted_set_from_a_fresh_draw():
    rng = np.random.default_rng(0)
    a, b, c = rng.random((60, 8)), rng.random((60, 8)), rng.random((60, 8)) + 0.5
    assert mmd2(a, b) < 0.2 * mmd2(a, c)
    assert energy_distance(a, b) < 0.2 * energy_distance(a, c)


def test_mmd2_rejects_unequal_sizes():
    with pytest.raises(ValueError, match="same size"):
        mmd2(np.zeros((3, 2)), np.ones((4, 2)))
