import itertools

import numpy as np
import pytest
import torch

from odin_ood import odin_scores
from odin_ood.data.noise import uniform_noise
from odin_ood.tuning import tune_from_scores
from odin_ood.tuning.halving import array_scorer, halving_sizes, model_scorer, search

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def smooth_grid(shape=(10, 21), n_in=600, n_out=800, peak=(7, 9), seed=0):
    """Grid scores where the separation of ID from OOD peaks at ``peak`` and falls off smoothly,
    with cell-correlated noise (every cell sees the same images), as real ODIN grids do."""
    rng = np.random.default_rng(seed)
    ti, ej = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    sep = 2.5 - 0.15 * (ti - peak[0]) ** 2 - 0.01 * (ej - peak[1]) ** 2
    base_in, base_out = rng.normal(size=n_in), rng.normal(size=n_out)
    jitter_in = 0.3 * rng.normal(size=(*shape, n_in))
    jitter_out = 0.3 * rng.normal(size=(*shape, n_out))
    return sep[..., None] + base_in + jitter_in, base_out + jitter_out


def test_halving_sizes_hand_worked():
    assert halving_sizes(1000, 3, 100) == [112, 334, 1000]
    assert halving_sizes(1000, 2, 100) == [125, 250, 500, 1000]
    assert halving_sizes(50, 3, 100) == [50]


def test_grid_search_is_the_papers_choice():
    g_in, g_out = smooth_grid(shape=(4, 5), n_in=200, n_out=300, peak=(1, 3), seed=3)
    r = search(array_scorer(g_in, g_out), 200, 300, (4, 5), "grid")
    ref = tune_from_scores(g_in, g_out, range(1, 5), [e / 10 for e in range(5)])
    assert r.index == ref.index
    np.testing.assert_array_equal(r.fpr, ref.metrics["fpr_at_95_tpr"])
    assert r.evaluations == r.grid_evaluations == 4 * 5 * 500


@pytest.mark.parametrize("seed", range(5))
def test_halving_picks_the_grid_cell_at_a_fraction_of_the_cost(seed):
    g_in, g_out = smooth_grid(n_in=500, n_out=1000, seed=seed, peak=(2 + seed, 4 * seed))  # the CIFAR tuning splits
    full = search(array_scorer(g_in, g_out), 500, 1000, (10, 21), "grid")
    halved = search(array_scorer(g_in, g_out), 500, 1000, (10, 21), "halving", seed=seed)
    assert halved.index == full.index
    assert halved.fpr[halved.index] == full.fpr[full.index]
    assert halved.cost_fraction < 0.4
    assert [r["cells"] for r in halved.rounds] == sorted((r["cells"] for r in halved.rounds), reverse=True)


def test_every_cell_image_pair_is_scored_at_most_once():
    g_in, g_out = smooth_grid(shape=(6, 7), n_in=400, n_out=500)
    seen: set = set()

    def counting(side, cells, rows):
        for c in cells:
            for r in rows:
                assert (side, c, int(r)) not in seen
                seen.add((side, c, int(r)))
        return array_scorer(g_in, g_out)(side, cells, rows)

    r = search(counting, 400, 500, (6, 7), "halving", eta=2)
    assert r.evaluations == len(seen) < r.grid_evaluations


def test_last_round_chooses_like_the_grid_among_survivors():
    g_in, g_out = smooth_grid(shape=(5, 6), n_in=300, n_out=300, seed=9)
    r = search(array_scorer(g_in, g_out), 300, 300, (5, 6), "halving", eta=2, min_images=50)
    survivors = np.argwhere(~np.isnan(r.fpr))
    assert len(survivors) == r.rounds[-1]["cells"]
    best = min(map(tuple, survivors), key=lambda c: (r.fpr[c], c))
    assert r.index == best


def test_bad_arguments():
    score = array_scorer(*smooth_grid(shape=(2, 2), n_in=10, n_out=10))
    with pytest.raises(ValueError, match="search must be one of"):
        search(score, 10, 10, (2, 2), "random")
    with pytest.raises(ValueError, match="eta"):
        search(score, 10, 10, (2, 2), "halving", eta=1)


def test_model_scorer_equals_per_cell_odin(digits_model, digits):
    temps, eps = (1.0, 10.0, 1000.0), (0.0, 0.001, 0.003)
    x_in, x_out = digits["x_held"][:40], uniform_noise(40, (1, 8, 8), seed=5)
    score = model_scorer(digits_model, x_in, x_out, temps, eps, batch_size=16)
    rows = np.array([3, 0, 17, 39])
    for cells in ([(i, j) for i in range(3) for j in range(3)], [(2, 1), (0, 2), (2, 0)]):
        got = score("in", cells, rows)
        want = np.stack([odin_scores(digits_model, x_in[rows], temps[i], eps[j]).numpy() for i, j in cells])
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    got = score("out", [(1, 1)], rows)
    np.testing.assert_allclose(
        got[0], odin_scores(digits_model, x_out[torch.as_tensor(rows)], 10.0, 0.001).numpy(), rtol=0, atol=1e-6
    )


def test_fpr_noise_hand_worked():
    from odin_ood.tuning.halving import fpr_noise

    assert fpr_noise(0.1, 100, 100) == pytest.approx(0.03 + np.sqrt(0.0475 / 100))
    assert fpr_noise(0.0, 400, 10, tpr=0.95) == pytest.approx(np.sqrt(0.0475 / 400))


def test_margin_zero_keeps_a_third_and_a_wide_margin_keeps_everything():
    g_in, g_out = smooth_grid(shape=(6, 9), n_in=500, n_out=1000, seed=4)
    pure = search(array_scorer(g_in, g_out), 500, 1000, (6, 9), "halving", margin=0.0)
    cells = [r["cells"] for r in pure.rounds]
    assert cells[0] == 54 and all(np.ceil(a / 3) <= b < a for a, b in itertools.pairwise(cells))  # a third, plus ties
    wide = search(array_scorer(g_in, g_out), 500, 1000, (6, 9), "halving", margin=1e9)
    assert [r["cells"] for r in wide.rounds] == [54, 54, 54]
    full = search(array_scorer(g_in, g_out), 500, 1000, (6, 9), "grid")
    assert wide.index == full.index and np.array_equal(wide.fpr, full.fpr)
