import numpy as np
import pytest
import torch

from id_only_support import WIDE_EPSILONS, float64_id_only_choice, lenet_and_digits
from odin_ood import PAPER_EPSILONS, PAPER_TEMPERATURES, odin_scores, tune
from odin_ood.data.noise import gaussian_noise, uniform_noise
from odin_ood.metrics import evaluate
from odin_ood.tuning import grid_scores, id_only_from_scores, noise_ood_set, tune_from_scores, tune_id_only

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_paper_grid():
    assert PAPER_TEMPERATURES == (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
    assert len(PAPER_EPSILONS) == 21 and PAPER_EPSILONS[0] == 0 and PAPER_EPSILONS[-1] == 0.004
    assert np.allclose(np.diff(PAPER_EPSILONS), 0.0002)
    assert PAPER_EPSILONS[7] == 0.0014  # the paper's CIFAR-10 value, exactly representable as written


def test_shared_work_grid_equals_naive_per_cell_computation(digits_model, digits):
    temps, eps = (1.0, 10.0, 1000.0), (0.0, 0.001, 0.003)
    x_in, x_out = digits["x_held"][:96], uniform_noise(96, (1, 8, 8), seed=5)
    shared_in = grid_scores(digits_model, x_in, temps, eps, batch_size=32)
    shared_out = grid_scores(digits_model, x_out, temps, eps, batch_size=32)
    naive_in = torch.stack([torch.stack([odin_scores(digits_model, x_in, t, e) for e in eps]) for t in temps])
    naive_out = torch.stack([torch.stack([odin_scores(digits_model, x_out, t, e) for e in eps]) for t in temps])
    assert torch.equal(shared_in, naive_in)  # identical, not merely close
    assert torch.equal(shared_out, naive_out)
    result = tune(digits_model, x_in, x_out, temps, eps, batch_size=32)
    fprs = np.array([[evaluate(naive_in[i, j], naive_out[i, j])["fpr_at_95_tpr"] for j in range(3)] for i in range(3)])
    i, j = np.unravel_index(np.argmin(fprs), fprs.shape)
    assert (result.temperature, result.epsilon) == (temps[i], eps[j])
    assert result.value == fprs[i, j]
    assert np.array_equal(result.metrics["fpr_at_95_tpr"], fprs)


def test_ties_go_to_the_first_cell_and_other_objectives():
    s_in = np.zeros((2, 2, 4)) + np.array([3.0, 4.0, 5.0, 6.0])
    s_out = np.zeros((2, 2, 3)) + np.array([0.0, 1.0, 2.0])  # every cell separates perfectly
    r = tune_from_scores(s_in, s_out, [1.0, 2.0], [0.0, 0.1])
    assert (r.temperature, r.epsilon, r.value) == (1.0, 0.0, 0.0)
    s_out2 = s_out.copy()
    s_out2[1, 1] = [3.5, 0.0, 0.0]  # hurts AUROC only in cell (1, 1)
    r2 = tune_from_scores(s_in, s_out2, [1.0, 2.0], [0.0, 0.1], objective="auroc")
    assert r2.metrics["auroc"][1, 1] < 1.0 and r2.value == 1.0
    assert len(r2.table()) == 4 and r2.table()[3]["temperature"] == 2.0


def test_tune_against_noise_picks_a_detector_that_beats_msp(digits_model, digits):
    x = digits["x_held"][:200]
    r = tune(digits_model, x, temperatures=(1.0, 1000.0), epsilons=(0.0, 0.002), noise_size=200, ood_free="noise")
    assert r.scores_out.shape == (2, 2, 400)  # Gaussian + Uniform, 200 each
    msp_cell = r.metrics["fpr_at_95_tpr"][0, 0]
    assert r.value <= msp_cell


def test_without_ood_data_the_default_is_noise(digits_model, digits):
    """No source won on every suite; noise, with the smallest worst case, is the default
    (docs/results/README.md)."""
    x = digits["x_held"][:100]
    r = tune(digits_model, x, temperatures=(1.0, 1000.0), epsilons=(0.0, 0.002), noise_size=50)
    ref = tune(digits_model, x, temperatures=(1.0, 1000.0), epsilons=(0.0, 0.002), noise_size=50, ood_free="noise")
    assert r.objective == "fpr_at_95_tpr" and r.scores_out.shape == (2, 2, 100)
    assert (r.temperature, r.epsilon) == (ref.temperature, ref.epsilon)
    np.testing.assert_array_equal(r.scores_out, ref.scores_out)


def test_noise_set_in_normalised_space():
    like = torch.zeros(4, 3, 5, 5)
    raw = noise_ood_set(like, n=10, seed=3)
    norm = noise_ood_set(like, n=10, input_mean=[0.5, 0.4, 0.3], input_std=[0.2, 0.25, 0.5], seed=3)
    assert torch.allclose(norm[:, 1], (raw[:, 1] - 0.4) / 0.25)
    assert torch.equal(raw[:10], gaussian_noise(10, (3, 5, 5), 3))
    assert torch.equal(raw[10:], uniform_noise(10, (3, 5, 5), 4))
    with pytest.raises(ValueError, match="input_mean"):
        noise_ood_set(like, n=10, input_std=[0.2, 0.2, 0.2])


def test_noise_moments_match_the_paper_definition():
    g = gaussian_noise(2000, (3, 8, 8), seed=0).double()
    u = uniform_noise(2000, (3, 8, 8), seed=0).double()
    assert g.min() >= 0 and g.max() <= 1 and u.min() >= 0 and u.max() < 1
    # clip(N(0.5, 1), 0, 1): P(0) = P(1) = Phi(-0.5) = 0.3085; mean 0.5 by symmetry
    assert (g == 0).double().mean().item() == pytest.approx(0.3085, abs=0.005)
    assert g.mean().item() == pytest.approx(0.5, abs=0.005)
    assert u.mean().item() == pytest.approx(0.5, abs=0.005) and u.var().item() == pytest.approx(1 / 12, abs=0.002)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"temperatures": ()}, "temperatures"),
        ({"temperatures": (0.0,)}, "temperatures"),
        ({"epsilons": (-0.001,)}, "epsilons"),
        ({"objective": "accuracy"}, "objective"),
    ],
)
def test_tune_bad_arguments(digits_model, digits, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tune(digits_model, digits["x_held"][:8], digits["x_held"][8:16], **kwargs)


def test_tune_rejects_empty_and_nan_data(digits_model, digits):
    with pytest.raises(ValueError, match="id_data"):
        tune(digits_model, torch.zeros(0, 1, 8, 8), digits["x_held"][:8], (1.0,), (0.0,))
    bad = digits["x_held"][:8].clone()
    bad[3, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="ood_data contains NaN"):
        tune(digits_model, digits["x_held"][:8], bad, (1.0,), (0.0,))


def test_cell_stacking_keeps_scores_within_float_rounding_and_the_same_optimum_on_real_mnist(shared_data):
    # Stacking cells changes the batch shape of the GEMMs, hence possibly the last bits (as a
    # different batch_size does; measured up to 2.3e-6 here): the tuned cell is the same.
    from odin_ood import data, models

    model = models.load("mnist-mlp")
    x_in = data.load("mnist", root=shared_data).images[:64].float() / 255
    x_out = data.load("notmnist", root=shared_data).images[:64].float() / 255
    temps, eps = (1.0, 100.0, 1000.0), (0.0, 0.001, 0.002, 0.004)
    runs = [tune(model, x_in, x_out, temps, eps, batch_size=16, cells_per_forward=k) for k in (1, 12)]
    assert np.abs(runs[0].scores_in - runs[1].scores_in).max() <= 1e-5
    assert np.abs(runs[0].scores_out - runs[1].scores_out).max() <= 1e-5
    assert runs[0].index == runs[1].index and np.array_equal(runs[0].metrics["auroc"], runs[1].metrics["auroc"])


def test_id_only_criterion_hand_worked_ties_go_to_the_smallest_epsilon_not_the_first():
    # epsilons in decreasing order: np.argmax would return 0.001 (index 1), the rule says 0.0
    epsilons = (0.002, 0.001, 0.0)
    scores = np.array(
        [
            [0.125, 0.125, 0.125, 0.125],  # mean 0.125
            [0.75, 0.25, 0.5, 0.5],  # mean 0.5 (tie)
            [0.5, 0.5, 0.5, 0.5],
        ],
        dtype=np.float32,
    )  # mean 0.5 (tie)
    r = id_only_from_scores(scores, 1000.0, epsilons)  # (E, N) is read as (1, E, N)
    assert (r.temperature, r.epsilon, r.value, r.objective) == (1000.0, 0.0, 0.5, "mean_id_score")
    assert r.index == (0, 2) and r.temperatures == (1000.0,) and r.epsilons == epsilons
    assert np.array_equal(r.metrics["mean_id_score"], [[0.125, 0.5, 0.5]])
    assert r.scores_in.shape == (1, 3, 4) and r.scores_out.shape == (1, 3, 0)
    assert r.table()[2] == {"temperature": 1000.0, "epsilon": 0.0, "mean_id_score": 0.5}
    scores[2, 0] = 0.25  # the 0.0 row's mean drops to 0.4375: 0.001 is the only maximum
    assert id_only_from_scores(scores[None], 1.0, epsilons).epsilon == 0.001


def test_id_only_criterion_refuses_more_than_one_temperature_or_no_images():
    with pytest.raises(ValueError, match="shape"):
        id_only_from_scores(np.zeros((2, 3, 4)), 1000.0, (0.0, 0.001, 0.002))
    with pytest.raises(ValueError, match="N >= 1"):
        id_only_from_scores(np.zeros((1, 3, 0)), 1000.0, (0.0, 0.001, 0.002))


@pytest.fixture(scope="module")
def lenet_digits():
    return lenet_and_digits()


def test_tune_id_only_equals_a_float64_loop_over_epsilon_at_t_1000(lenet_digits):
    model, x = lenet_digits
    r = tune(model, x, epsilons=WIDE_EPSILONS, input_std=model.input_std, batch_size=32, ood_free="id-only")
    epsilon, means = float64_id_only_choice(model, x, WIDE_EPSILONS)
    assert 0 < WIDE_EPSILONS.index(epsilon) < len(WIDE_EPSILONS) - 1  # a real choice, not a grid end
    assert (r.temperature, r.epsilon, r.temperatures) == (1000.0, epsilon, (1000.0,))
    assert np.allclose(r.metrics["mean_id_score"][0], means, rtol=0, atol=1e-7)
    assert r.value == pytest.approx(means.max())
    assert r.scores_in.shape == (1, len(WIDE_EPSILONS), 64) and r.scores_out.shape == (1, len(WIDE_EPSILONS), 0)
    assert r.objective == "mean_id_score"
    assert r.index == tune_id_only(model, x, 1000.0, WIDE_EPSILONS, model.input_std).index


def test_ood_free_is_ignored_with_ood_data_and_checked_always(digits_model, digits):
    x_in, x_out = digits["x_held"][:16], digits["x_held"][16:32]
    grid = dict(temperatures=(1.0, 10.0), epsilons=(0.0, 0.002))
    with_ood = tune(digits_model, x_in, x_out, **grid, ood_free="id-only")
    assert with_ood.objective == "fpr_at_95_tpr" and with_ood.scores_out.shape == (2, 2, 16)
    for bad in ("id_only", "none", None):
        with pytest.raises(ValueError, match="ood_free must be one of"):
            tune(digits_model, x_in, x_out, **grid, ood_free=bad)
