"""Energy, MaxLogit and energy with ODIN's perturbation (successors.py) against independent
per-sample float64 computations, plus the conventions shared with odin_scores."""

import pytest
import torch
from torch import nn

from odin_ood import msp_scores
from odin_ood.scores.energy import (
    energy_odin_grid_scores,
    energy_odin_outputs,
    energy_odin_scores,
    energy_scores,
    maxlogit_scores,
)
from reference_support import float64_copy, reference_energy_float64, reference_energy_odin_float64

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.mark.parametrize("temperature", [1.0, 0.5, 10.0])
def test_energy_equals_float64_reference(digits_model, digits, temperature):
    x = digits["x_held"][:64]
    got = energy_scores(digits_model, x, temperature).double()
    assert torch.allclose(got, reference_energy_float64(digits_model, x, temperature), atol=1e-4, rtol=1e-6)


def test_maxlogit_equals_float64_max_of_logits(digits_model, digits):
    x = digits["x_held"][:64]
    with torch.no_grad():
        want = float64_copy(digits_model)(x.double()).max(dim=1).values
    assert torch.allclose(maxlogit_scores(digits_model, x).double(), want, atol=1e-4, rtol=1e-6)


@pytest.mark.parametrize("temperature,epsilon", [(1.0, 0.0), (1.0, 0.002), (10.0, 0.004), (1.0, 0.0014)])
def test_energy_odin_equals_float64_autograd_reference(digits_model, digits, temperature, epsilon):
    x = digits["x_held"][:40]
    got = energy_odin_scores(digits_model, x, temperature, epsilon).double()
    want = reference_energy_odin_float64(digits_model, x, temperature, epsilon)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-6)


def test_energy_odin_step_is_divided_by_input_std(digits_model, digits):
    x = digits["x_held"][:30]
    got = energy_odin_scores(digits_model, x, 1.0, 0.002, input_std=[0.25]).double()
    want = reference_energy_odin_float64(digits_model, x, 1.0, 0.002, std=0.25)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-6)


def test_energy_perturbation_sign_on_a_linear_model_matches_closed_form():
    # f(x) = W x + b: grad_x E(x; T) = W^T softmax(f(x)/T), so x~ = x + eps * sign(W^T p) (ties
    # excluded by the random weights) and the energy score grows for every input.
    torch.manual_seed(3)
    lin = nn.Linear(5, 4).double()
    x = torch.randn(50, 5, dtype=torch.float64)
    T, eps = 2.0, 0.05
    with torch.no_grad():
        p = torch.softmax(lin(x) / T, dim=1)
        x_tilde = x + eps * torch.sign(p @ lin.weight)
        want = T * torch.logsumexp(lin(x_tilde) / T, dim=1)
        before = T * torch.logsumexp(lin(x) / T, dim=1)
    got = energy_odin_scores(lin, x, temperature=T, epsilon=eps)
    assert torch.allclose(got, want, atol=1e-12)
    assert (got > before).all()


def test_energy_grid_equals_per_epsilon_scoring_and_returns_the_unperturbed_logits(digits_model, digits):
    x = digits["x_held"][:32]
    epsilons = [0.0, 0.001, 0.003]
    logits, grid = energy_odin_grid_scores(digits_model, x, 1.0, epsilons)
    for k, e in enumerate(epsilons):
        assert torch.equal(grid[k], energy_odin_scores(digits_model, x, 1.0, e))
    with torch.no_grad():
        assert torch.allclose(logits, digits_model(x), atol=1e-6)
    assert torch.equal(energy_odin_outputs(digits_model, x, 1.0, 0.0)[1], energy_scores(digits_model, x, 1.0))


def test_energy_ranks_differently_from_msp_on_real_digits(digits_model, digits):
    # energy is not a monotone function of the MSP: an independent check that it is its own score
    x = digits["x_held"][:200]
    e, s = energy_scores(digits_model, x), msp_scores(digits_model, x)
    order_e, order_s = e.argsort(), s.argsort()
    assert not torch.equal(order_e, order_s)


@pytest.mark.parametrize(
    "fn,kwargs,match",
    [
        (energy_scores, {"temperature": 0.0}, "temperature"),
        (energy_odin_scores, {"epsilon": -1.0}, "epsilon"),
        (maxlogit_scores, {}, "NaN"),
    ],
)
def test_new_scores_reject_bad_input_with_a_named_error(digits_model, digits, fn, kwargs, match):
    x = digits["x_held"][:4].clone()
    if match == "NaN":
        x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=match):
        fn(digits_model, x, **kwargs)
