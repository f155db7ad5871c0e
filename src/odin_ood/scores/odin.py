"""MSP and ODIN scores as pure functions of (model, batch, parameters). Start here.

Convention throughout odin-ood: a higher score means *more in-distribution*.

ODIN (Liang, Li & Srikant, ICLR 2018, section 3):

* temperature scaling, eq. (1):  S_i(x; T) = exp(f_i(x)/T) / sum_j exp(f_j(x)/T)
* input preprocessing, eq. (2):  x~ = x - epsilon * sign(-grad_x log S_yhat(x; T))

-log S_yhat(x; T) is the cross-entropy of f(x)/T against the predicted label yhat, so
x~ = x - epsilon * sign(grad_x CE(f(x)/T, yhat)); the score is S_yhat(x~; T) = max_i S_i(x~; T).
The passes (one forward with an input graph, an input-only backward, a forward of x~) are
:func:`odin_ood.scores.passes.perturbed_logits`, shared with the energy family.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from odin_ood._utils.checks import channel_view, check_epsilon, check_temperature
from odin_ood.preprocess.model_input import scoring_input
from odin_ood.scores.passes import Clamp, at_least_fp32, perturbed_logits, prepare, scoring_mode, sign_direction


def softmax_score(logits: Tensor, temperature: float) -> Tensor:
    """S_yhat(x; T) = max_i softmax(f(x)/T)_i (paper eq. 1), one value per row."""
    return F.softmax(at_least_fp32(logits) / temperature, dim=1).amax(dim=1)


def perturbation_direction(
    logits: Tensor, x: Tensor, temperature: float, input_std: Tensor | None, retain_graph: bool = False
) -> Tensor:
    """d = sign(grad_x CE(f(x)/T, yhat)) / std, so that x~ = x - epsilon * d (paper eq. 2).

    ``logits`` must come from a forward of ``x`` with ``x.requires_grad``. A zero gradient counts
    as +1, as in the paper's code. The loss is summed over the batch so each row's gradient is its
    own (no 1/N that could underflow).
    """
    loss = F.cross_entropy(at_least_fp32(logits) / temperature, logits.argmax(dim=1), reduction="sum")
    return sign_direction(loss, x, input_std, retain_graph)


def msp_scores(model: nn.Module, x: Tensor, *, normalise: str | bool = "auto") -> Tensor:
    """Maximum softmax probability max_i softmax(f(x))_i (Hendrycks & Gimpel, 2017).

    Higher = more in-distribution. One forward pass without a graph, in eval mode. ``normalise``:
    pixels in [0, 1] go through the model's own normalisation (:mod:`odin_ood.preprocess.model_input`).
    """
    x = prepare(model, scoring_input(model, x, normalise, None)[0])
    with scoring_mode(model), torch.no_grad():
        return softmax_score(model(x), 1.0)


def odin_scores(
    model: nn.Module,
    x: Tensor,
    temperature: float = 1000.0,
    epsilon: float = 0.0014,
    input_std: Sequence[float] | Tensor | None = None,
    clamp: Clamp | None = None,
    *,
    normalise: str | bool = "auto",
) -> Tensor:
    """ODIN score (paper eq. 1-2): max_i softmax(f(x~)/T)_i with
    x~ = x - epsilon * sign(-grad_x log S_yhat(x; T)).

    Higher = more in-distribution. ``x``: pixels in [0, 1] for a model that declares its
    normalisation (every :func:`odin_ood.models.load` model), which are then normalised with it
    and the step divided by its std (``normalise="auto"``, the default; see
    :mod:`odin_ood.preprocess.model_input`), or with ``normalise=False`` a batch in whatever space
    the model takes. ``epsilon`` is in pixel units: when the model sees inputs normalised by a
    per-channel ``input_std``, pass it (or let the model's be used) and the step becomes
    epsilon / std per channel, as the paper's code does (63.0/255, 62.1/255, 66.7/255 for its
    CIFAR models). ``clamp=(low, high)`` (in the model's input units) optionally clips x~ (the
    paper does not). Costs one forward with an input-only backward and one forward without a
    graph; parameter gradients are never computed. At epsilon = 0 (the paper's MNIST setting)
    x~ = x, so the score is S_yhat(x; T) of ONE forward without a graph: no backward.
    """
    x, std = scoring_input(model, x, normalise, input_std)
    return odin_outputs(model, x, temperature, epsilon, std, clamp)[1]


def odin_outputs(
    model: nn.Module,
    x: Tensor,
    temperature: float = 1000.0,
    epsilon: float = 0.0014,
    input_std: Sequence[float] | Tensor | None = None,
    clamp: Clamp | None = None,
) -> tuple[Tensor, Tensor]:
    """(logits f(x) of the unperturbed input, ODIN scores): :func:`odin_scores` on the model's
    input plus the classifier's own output, which the first pass computes anyway (no extra forward)."""
    temperature, epsilon = check_temperature(temperature), check_epsilon(epsilon)
    logits, scores = odin_grid_outputs(model, x, [temperature], [epsilon], input_std, clamp)
    return logits, scores[0, 0]


def odin_grid_scores(
    model: nn.Module,
    x: Tensor,
    temperatures: Sequence[float],
    epsilons: Sequence[float],
    input_std: Sequence[float] | Tensor | None = None,
    clamp: Clamp | None = None,
    cells_per_forward: int = 1,
) -> Tensor:
    """ODIN scores for every (T, epsilon) of a grid on one batch: a tensor (len(T), len(eps), N).

    Shares work across the grid, with results equal to calling :func:`odin_scores` per cell:
    the unperturbed logits do not depend on T, so ONE forward with an input graph serves every
    temperature; each T then needs one input-only backward (the sign depends on T); epsilon = 0
    reuses the unperturbed logits; each cell with epsilon > 0 costs one forward without a graph.
    ``cells_per_forward > 1`` stacks that many cells' perturbed inputs into one forward
    (:func:`~odin_ood.scores.passes.perturbed_logits`); the rows scale with N, so halving the
    batch on out-of-memory (:func:`odin_ood._utils.batching.map_batches`) still helps. With the
    default 1 the scores are bitwise those of per-cell scoring.
    """
    return odin_grid_outputs(model, x, temperatures, epsilons, input_std, clamp, cells_per_forward)[1]


def odin_grid_outputs(
    model: nn.Module,
    x: Tensor,
    temperatures: Sequence[float],
    epsilons: Sequence[float],
    input_std: Sequence[float] | Tensor | None = None,
    clamp: Clamp | None = None,
    cells_per_forward: int = 1,
) -> tuple[Tensor, Tensor]:
    """(f(x), :func:`odin_grid_scores`): the loop of eq. 2 with one direction per temperature."""
    temperatures = [check_temperature(t, "temperatures") for t in temperatures]
    epsilons = [check_epsilon(e, "epsilons") for e in epsilons]
    x = prepare(model, x)
    std = channel_view(input_std, x)
    directions = [lambda z, xg, keep, t=t: perturbation_direction(z, xg, t, std, keep) for t in temperatures]
    logits, z = perturbed_logits(model, x, directions, epsilons, clamp, cells_per_forward)
    scores = [torch.stack([softmax_score(z_cell, t) for z_cell in row]) for row, t in zip(z, temperatures, strict=True)]
    return logits, torch.stack(scores)


def odin_shared_direction_scores(
    model: nn.Module,
    x: Tensor,
    temperatures: Sequence[float],
    epsilons: Sequence[float],
    direction_temperature: float,
    input_std: Sequence[float] | Tensor | None = None,
    clamp: Clamp | None = None,
) -> Tensor:
    """S(x - epsilon * d(T_d); T) for every T and epsilon: a tensor (len(T), len(eps), N).

    ONE input-only backward, at ``direction_temperature`` T_d, gives the direction
    d(T_d) = sign(grad_x CE(f(x)/T_d, yhat)) / std of eq. 2; each epsilon > 0 costs one forward of
    x - epsilon * d(T_d), whose logits give the score at every T for free. The cell (T, epsilon)
    is exact when T = T_d or epsilon = 0; otherwise it approximates ODIN's cell by perturbing
    along T_d's direction instead of T's. For large T the two agree: grad_x log S_yhat(x; T) =
    (1/T) (grad f_yhat - sum_i softmax_i(f/T) grad f_i) -> (1/T) grad (f_yhat - mean_i f_i), whose
    sign no longer depends on T (agreement measured in benchmarks/RESULTS.md)."""
    temperatures = [check_temperature(t, "temperatures") for t in temperatures]
    epsilons = [check_epsilon(e, "epsilons") for e in epsilons]
    t_d = check_temperature(direction_temperature, "direction_temperature")
    x = prepare(model, x)
    std = channel_view(input_std, x)
    _, (per_epsilon,) = perturbed_logits(
        model, x, [lambda z, xg, keep: perturbation_direction(z, xg, t_d, std, keep)], epsilons, clamp
    )
    return torch.stack([torch.stack([softmax_score(z, t) for z in per_epsilon]) for t in temperatures])
