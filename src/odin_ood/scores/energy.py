"""ODIN's successors as pure functions, with the conventions of :mod:`odin_ood.scores.odin` (ODIN
and MSP live there): higher = more in-distribution, batched, eval mode with parameter gradients off
(every module's mode restored), computed on the model's device, logits in float32 or wider.

* **Energy** (Liu, Wang, Owens & Li, NeurIPS 2020, eq. 4 with the sign flipped so that higher
  means in-distribution): E(x; T) = T * log sum_i exp(f_i(x) / T), the negative free energy.
  Liu et al. use T = 1.
* **MaxLogit** (Hendrycks et al., ICML 2022): max_i f_i(x), the unnormalised top logit.
* **Energy with ODIN's input perturbation** (ODIN's eq. 2 applied to the energy score):

      x~ = x - epsilon * sign(-grad_x E(x; T)) / std,     score E(x~; T).

  -E is the loss whose gradient step is taken, so the step *raises* the energy score, as eq. 2
  raises the softmax score; in-distribution inputs gain more (the paper's section 5 argument).
  As in ODIN, epsilon is in pixel units and divided by the per-channel ``input_std`` when the
  model sees normalised inputs, and a zero gradient counts as sign +1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from odin_ood._utils.checks import channel_view, check_epsilon, check_temperature
from odin_ood.preprocess.model_input import scoring_input
from odin_ood.scores.passes import Clamp, at_least_fp32, perturbed_logits, prepare, scoring_mode, sign_direction


def energy_from_logits(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """E(x; T) = T * logsumexp(f(x) / T), one value per row (float32 or wider)."""
    t = check_temperature(temperature)
    return t * torch.logsumexp(at_least_fp32(logits) / t, dim=1)


def maxlogit_from_logits(logits: Tensor) -> Tensor:
    """max_i f_i(x), one value per row (float32 or wider)."""
    return at_least_fp32(logits).amax(dim=1)


def _logits(model: nn.Module, x: Tensor, normalise: str | bool) -> Tensor:
    x = prepare(model, scoring_input(model, x, normalise, None)[0])
    with scoring_mode(model), torch.no_grad():
        return model(x)


def energy_scores(model: nn.Module, x: Tensor, temperature: float = 1.0, *, normalise: str | bool = "auto") -> Tensor:
    """Energy score T * logsumexp(f(x) / T) (Liu et al., 2020); one forward without a graph.
    ``normalise`` as :func:`odin_ood.scores.odin.odin_scores` (:mod:`odin_ood.preprocess.model_input`)."""
    return energy_from_logits(_logits(model, x, normalise), temperature)


def maxlogit_scores(model: nn.Module, x: Tensor, *, normalise: str | bool = "auto") -> Tensor:
    """MaxLogit score max_i f_i(x) (Hendrycks et al., 2022); one forward without a graph.
    ``normalise`` as :func:`odin_ood.scores.odin.odin_scores`."""
    return maxlogit_from_logits(_logits(model, x, normalise))


def energy_direction(
    logits: Tensor, x: Tensor, temperature: float, input_std: Tensor | None, retain_graph: bool = False
) -> Tensor:
    """d = sign(-grad_x E(x; T)) / std (zero gradient -> +1), so that x~ = x - epsilon * d.

    ``logits`` must come from a forward of ``x`` with ``x.requires_grad``; the energies are
    summed over the batch, so each row's gradient is its own.
    """
    return sign_direction(-energy_from_logits(logits, temperature).sum(), x, input_std, retain_graph)


def energy_odin_grid_scores(
    model: nn.Module,
    x: Tensor,
    temperature: float,
    epsilons: Sequence[float],
    input_std: Sequence[float] | Tensor | None = None,
    clamp: Clamp | None = None,
) -> tuple[Tensor, Tensor]:
    """(logits f(x), energy scores E(x~; T) for every epsilon: (len(epsilons), N)).

    One forward with an input graph and one input-only backward serve every epsilon (no graph
    when every epsilon is 0); epsilon = 0 reuses the unperturbed logits and each epsilon > 0 costs
    one forward without a graph.
    """
    temperature = check_temperature(temperature)
    epsilons = [check_epsilon(e, "epsilons") for e in epsilons]
    x = prepare(model, x)
    std = channel_view(input_std, x)
    logits, (per_epsilon,) = perturbed_logits(
        model, x, [lambda z, xg, keep: energy_direction(z, xg, temperature, std, keep)], epsilons, clamp
    )
    return logits, torch.stack([energy_from_logits(z, temperature) for z in per_epsilon])


def energy_odin_outputs(
    model: nn.Module,
    x: Tensor,
    temperature: float = 1.0,
    epsilon: float = 0.0014,
    input_std: Sequence[float] | Tensor | None = None,
    clamp: Clamp | None = None,
) -> tuple[Tensor, Tensor]:
    """(logits of the unperturbed input, :func:`energy_odin_scores`)."""
    logits, scores = energy_odin_grid_scores(model, x, temperature, [epsilon], input_std, clamp)
    return logits, scores[0]


def energy_odin_scores(
    model: nn.Module,
    x: Tensor,
    temperature: float = 1.0,
    epsilon: float = 0.0014,
    input_std: Sequence[float] | Tensor | None = None,
    clamp: Clamp | None = None,
    *,
    normalise: str | bool = "auto",
) -> Tensor:
    """Energy score after ODIN's input perturbation: E(x~; T) with
    x~ = x - epsilon * sign(-grad_x E(x; T)) / std (the step increases the energy score).

    ``epsilon`` is in pixel units (divided by the per-channel ``input_std`` when given, as in
    :func:`odin_ood.scores.odin.odin_scores`); ``clamp=(low, high)`` optionally clips x~. Costs one
    forward with an input-only backward and, for epsilon > 0, one forward without a graph.
    ``normalise`` as :func:`odin_ood.scores.odin.odin_scores` (:mod:`odin_ood.preprocess.model_input`).
    """
    x, std = scoring_input(model, x, normalise, input_std)
    return energy_odin_outputs(model, x, temperature, epsilon, std, clamp)[1]
