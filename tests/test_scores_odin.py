import copy

import pytest
import torch
from torch import nn

from odin_ood import msp_scores, odin_scores
from odin_ood.scores.odin import odin_grid_scores, odin_outputs, softmax_score
from odin_ood.scores.passes import perturb
from reference_support import reference_odin_float64

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.mark.parametrize("temperature,epsilon", [(1.0, 0.0), (1000.0, 0.0014), (10.0, 0.004), (1.0, 0.002)])
def test_odin_equals_float64_reference(digits_model, digits, temperature, epsilon):
    x = digits["x_held"][:40]
    got = odin_scores(digits_model, x, temperature, epsilon).double()
    want = reference_odin_float64(digits_model, x, temperature, epsilon)
    assert torch.allclose(got, want, atol=1e-5, rtol=0)


def test_sign_convention_on_linear_model_matches_closed_form():
    # f(x) = W x + b, two classes: grad_x log S_yhat = (1 - p_yhat)/T (W_yhat - W_other), so
    # eq. (2) moves x by +eps * sign(W_yhat - W_other): the margin, hence the score, grows.
    torch.manual_seed(1)
    lin = nn.Linear(6, 2).double()
    x = torch.randn(32, 6, dtype=torch.float64)
    T, eps = 2.0, 0.05
    with torch.no_grad():
        logits = lin(x)
        yhat = logits.argmax(1)
        w_diff = lin.weight[yhat] - lin.weight[1 - yhat]
        x_tilde = x + eps * torch.sign(w_diff)
        want = torch.softmax(lin(x_tilde) / T, 1).max(1).values
    got = odin_scores(lin, x, temperature=T, epsilon=eps)
    assert torch.allclose(got, want, atol=1e-12)
    assert (got > torch.softmax(logits / T, 1).max(1).values).all()


def test_input_std_equals_pixel_space_step_through_normalising_wrapper(digits_model, digits):
    mean, std = torch.tensor([0.3]), torch.tensor([0.2])

    class Normalising(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, p):
            return self.inner((p - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1))

    p = digits["x_held"][:50]
    pixel = odin_scores(Normalising(digits_model), p, 1000.0, 0.002)
    normalised = odin_scores(digits_model, (p - 0.3) / 0.2, 1000.0, 0.002, input_std=[0.2])
    assert torch.allclose(pixel, normalised, atol=1e-6)
    # and without input_std the normalised-space step is a different (too small) step
    wrong = odin_scores(digits_model, (p - 0.3) / 0.2, 1000.0, 0.002)
    assert not torch.allclose(pixel, wrong, atol=1e-6)


def test_scoring_leaves_parameters_and_mode_untouched(digits_model, digits):
    model = copy.deepcopy(digits_model).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    odin_scores(model, digits["x_held"][:32], 1000.0, 0.002)
    msp_scores(model, digits["x_held"][:32])
    odin_grid_scores(model, digits["x_held"][:8], [1.0, 10.0], [0.0, 0.001])
    assert model.training  # mode restored
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())
    # BatchNorm statistics were not updated: scoring ran in eval mode
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_restores_each_submodule_mode_not_only_the_root(digits_model, digits):
    wrapper = nn.Sequential(digits_model)  # a new root in train mode around an eval-mode model
    odin_scores(wrapper, digits["x_held"][:4])
    assert wrapper.training and not digits_model.training


def test_scores_are_computed_in_eval_mode(digits_model, digits):
    x = digits["x_held"][:16]
    trained = copy.deepcopy(digits_model).train()
    assert torch.equal(odin_scores(trained, x), odin_scores(digits_model, x))


def test_msp_is_max_softmax(digits_model, digits):
    x = digits["x_held"][:20]
    with torch.no_grad():
        want = torch.softmax(digits_model(x).double(), 1).max(1).values
    assert torch.allclose(msp_scores(digits_model, x).double(), want, atol=1e-6)
    # ODIN at T=1, eps=0 is exactly the MSP
    assert torch.allclose(odin_scores(digits_model, x, 1.0, 0.0), msp_scores(digits_model, x), atol=1e-7)


def test_odin_outputs_returns_unperturbed_logits(digits_model, digits):
    x = digits["x_held"][:10]
    logits, scores = odin_outputs(digits_model, x, 1000.0, 0.002)
    with torch.no_grad():
        assert torch.allclose(logits, digits_model(x), atol=1e-6)
    assert torch.equal(scores, odin_scores(digits_model, x, 1000.0, 0.002))


def test_clamp_option_bounds_the_perturbed_input():
    # identity "model": the score sees x~ directly, so clamping is observable
    x = torch.tensor([[0.999, 0.0], [0.0, 0.999]])
    free = odin_scores(nn.Identity(), x, temperature=1.0, epsilon=0.01)
    clamped = odin_scores(nn.Identity(), x, temperature=1.0, epsilon=0.01, clamp=(0.0, 1.0))
    with torch.no_grad():
        want = torch.softmax(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), 1).max(1).values
        want_free = torch.softmax(torch.tensor([[1.009, -0.01], [-0.01, 1.009]]), 1).max(1).values
    assert torch.allclose(clamped, want, atol=1e-6)
    assert torch.allclose(free, want_free, atol=1e-6)


def test_per_channel_clamp_bounds_each_channel_not_the_width():
    # 3 channels of 2 x 3 pixels: a 1-D bound of length C must clip channel c to its own range
    # (broadcasting it along the last axis would mix channels with columns)
    x = torch.linspace(-1, 2, 3 * 2 * 3).view(1, 3, 2, 3)
    direction = torch.ones_like(x)
    low, high = torch.tensor([0.0, -0.5, 0.2]), torch.tensor([1.0, 0.5, 1.5])
    got = perturb(x, direction, 0.1, (low, high))
    want = torch.stack([(x[:, c] - 0.1).clamp(float(low[c]), float(high[c])) for c in range(3)], 1)
    assert torch.equal(got, want)
    assert torch.equal(perturb(x, direction, 0.1, (low.view(3, 1, 1), high.view(3, 1, 1))), want)


@pytest.mark.parametrize(
    "x,kwargs,match",
    [
        (torch.full((2, 1, 8, 8), float("nan")), {}, "NaN"),
        (torch.zeros(64), {}, "rank"),
        (torch.zeros(0, 1, 8, 8), {}, "empty"),
        (torch.zeros(2, 1, 8, 8, dtype=torch.long), {}, "floating"),
        (torch.zeros(2, 1, 8, 8), {"temperature": 0.0}, "temperature"),
        (torch.zeros(2, 1, 8, 8), {"temperature": -1.0}, "temperature"),
        (torch.zeros(2, 1, 8, 8), {"epsilon": -0.1}, "epsilon"),
        (torch.zeros(2, 1, 8, 8), {"input_std": [0.1, 0.2]}, "input_std"),
        (torch.zeros(2, 1, 8, 8), {"input_std": [0.0]}, "input_std"),
    ],
)
def test_bad_input_is_rejected_with_a_named_error(digits_model, x, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        odin_scores(digits_model, x, **kwargs)


@pytest.mark.parametrize("cells_per_forward", [1, 3, 100])
def test_grid_stacking_cells_per_forward_equals_per_cell_scoring(digits_model, digits, cells_per_forward):
    # epsilon = 0 in the middle, a clamp and a normalised-space std: every branch of the grid
    x = digits["x_held"][:24]
    temps, eps = (1.0, 20.0, 1000.0), (0.002, 0.0, 0.001, 0.004)
    kw = dict(input_std=[0.5], clamp=(0.0, 1.0))
    got = odin_grid_scores(digits_model, x, temps, eps, cells_per_forward=cells_per_forward, **kw)
    want = torch.stack([torch.stack([odin_scores(digits_model, x, t, e, **kw) for e in eps]) for t in temps])
    assert torch.equal(got, want)  # identical, not merely close


def test_grid_rejects_cells_per_forward_below_one(digits_model, digits):
    with pytest.raises(ValueError, match="cells_per_forward"):
        odin_grid_scores(digits_model, digits["x_held"][:2], [1.0], [0.001], cells_per_forward=0)


def test_half_precision_logits_are_scored_in_float32():
    logits = torch.tensor([[10.0, 9.5, -3.0], [0.25, 0.5, 0.125]]).to(torch.bfloat16)
    got = softmax_score(logits, 1000.0)
    assert got.dtype == torch.float32
    assert torch.equal(got, torch.softmax(logits.float() / 1000.0, 1).amax(1))
    assert softmax_score(logits.double(), 2.0).dtype == torch.float64  # wider stays wider


def test_odin_under_bf16_autocast_is_close_to_fp32(digits_model, digits):
    x = digits["x_held"][:64]
    fp32 = odin_scores(digits_model, x, 1000.0, 0.002)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = odin_scores(digits_model, x, 1000.0, 0.002)
    assert bf16.dtype == torch.float32
    assert (bf16 - fp32).abs().max() < 1e-3 * fp32.mean()  # T = 1000 compresses scores near 1/K


class _BackwardForbidden(torch.autograd.Function):
    """Identity whose backward raises: any gradient pass through the model fails loudly."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise AssertionError("a backward pass ran")


class _NoBackward(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(_BackwardForbidden.apply(x))


@pytest.mark.parametrize("temperature", [1.0, 1000.0])
def test_odin_at_epsilon_zero_runs_no_backward_and_equals_float64_reference(digits_model, digits, temperature):
    x = digits["x_held"][:40]
    guarded = _NoBackward(digits_model)
    with pytest.raises(AssertionError, match="backward"):
        odin_scores(guarded, x, temperature, 0.001)  # the guard works: eps > 0 needs the backward
    got = odin_scores(guarded, x, temperature, 0.0, input_std=[0.5])
    logits, scores = odin_outputs(guarded, x, temperature, 0.0)
    assert torch.equal(got, scores) and logits.grad_fn is None
    want = reference_odin_float64(digits_model, x, temperature, 0.0)
    assert torch.allclose(got.double(), want, atol=1e-6, rtol=0)
    # the shared-work grid: an all-zero epsilon grid needs no backward either, same scores
    grid = odin_grid_scores(guarded, x, (temperature, 2.0), (0.0,))
    assert torch.equal(grid[0, 0], got)


def test_detector_and_serving_at_epsilon_zero_run_no_backward(digits_model, digits):
    # Detector.fit (the grid), Detector.outputs and the serving path (fixed-size batches) all
    # go through the epsilon = 0 branch: the guarded model would raise on any backward
    from odin_ood import Detector
    from odin_ood.preprocess import Preprocessing
    from odin_ood.runtimes.batches import fixed_batch_outputs
    from odin_ood.runtimes.eager import EagerRuntime

    guarded = _NoBackward(digits_model)
    ood = torch.rand(60, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    det = Detector(guarded, temperatures=(1.0, 1000.0), epsilons=(0.0,), batch_size=16)
    det.fit(digits["x_held"][:60], ood)
    x = digits["x_held"][60:97]
    served = fixed_batch_outputs(EagerRuntime(det, Preprocessing((1, 8, 8))), x)["score"]
    with torch.no_grad():
        want = torch.softmax(digits_model(x).double() / det.temperature_, 1).amax(1)
    assert det.epsilon_ == 0.0 and torch.allclose(served.double(), want, atol=1e-6, rtol=0)
    assert torch.allclose(det.score(x), odin_scores(digits_model, x, det.temperature_, 0.0), atol=1e-7, rtol=0)
