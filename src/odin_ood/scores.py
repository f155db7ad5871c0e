"""MSP and ODIN scores as pure functions of (model, batch, parameters).

Convention throughout odin-ood: a higher score means *more in-distribution*.

ODIN (Liang, Li & Srikant, ICLR 2018, section 3):

* temperature scaling, eq. (1):  S_i(x; T) = exp(f_i(x)/T) / sum_j exp(f_j(x)/T)
* input preprocessing, eq. (2):  x~ = x - epsilon * sign(-grad_x log S_yhat(x; T))

-log S_yhat(x; T) is the cross-entropy of f(x)/T against the predicted label yhat, so
x~ = x - epsilon * sign(grad_x CE(f(x)/T, yhat)); the score is S_yhat(x~; T) = max_i S_i(x~; T).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from odin_ood._checks import channel_view, check_batch, check_epsilon, check_temperature
from odin_ood.model_input import scoring_input

Clamp = tuple[float | Tensor, float | Tensor]


@contextmanager
def scoring_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode with parameter gradients off; every submodule's own mode and every parameter's
    ``requires_grad`` are restored on exit (restoring only the root's mode would overwrite
    submodules that were in a different mode)."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, training in modes:
            m.training = training


def model_device(model: nn.Module, default: torch.device) -> torch.device:
    """The device of the model's first parameter or buffer (``default`` for a stateless model)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return default


def at_least_fp32(logits: Tensor) -> Tensor:
    """Logits in float32 or wider: under bf16/fp16 autocast the model's output is half precision,
    but f(x)/T and the softmax over it are computed in float32."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def softmax_score(logits: Tensor, temperature: float) -> Tensor:
    """S_yhat(x; T) = max_i softmax(f(x)/T)_i (paper eq. 1), one value per row."""
    return F.softmax(at_least_fp32(logits) / temperature, dim=1).amax(dim=1)


def perturbation_direction(
    logits: Tensor, x: Tensor, temperature: float, input_std: Tensor | None, retain_graph: bool = False
) -> Tensor:
    """d = sign(grad_x CE(f(x)/T, yhat)) / std, so that x~ = x - epsilon * d (paper eq. 2).

    ``logits`` must come from a forward of ``x`` with ``x.requires_grad``. A zero gradient counts
    as +1, as in the paper's code (``torch.ge(grad, 0)``). The loss is summed over the batch so
    each row's gradient is its own (no 1/N that could underflow).
    """
    loss = F.cross_entropy(at_least_fp32(logits) / temperature, logits.argmax(dim=1), reduction="sum")
    return sign_direction(loss, x, input_std, retain_graph)


def sign_direction(loss: Tensor, x: Tensor, input_std: Tensor | None, retain_graph: bool = False) -> Tensor:
    """sign(grad_x loss) / std per channel, a zero gradient counting as +1: the step direction
    of eq. 2 for any scalar ``loss`` computed from ``x`` (summed over the batch)."""
    (grad,) = torch.autograd.grad(loss, x, retain_graph=retain_graph)
    direction = torch.where(grad >= 0, 1.0, -1.0).to(x.dtype)
    return direction if input_std is None else direction / input_std


def _prepare(model: nn.Module, x: Tensor) -> Tensor:
    check_batch(x)
    return x.detach().to(model_device(model, x.device))


def perturb(x: Tensor, direction: Tensor, epsilon: float, clamp: Clamp | None = None) -> Tensor:
    """x~ = x - epsilon * direction (paper eq. 2), optionally clipped to ``clamp=(low, high)``:
    each bound one number or one per channel (dimension 1 of x)."""
    x_tilde = x - epsilon * direction
    if clamp is None:
        return x_tilde
    low, high = (channel_view(c, x, f"clamp[{k}]", positive=False) for k, c in enumerate(clamp))
    return torch.clamp(x_tilde, low, high)


def msp_scores(model: nn.Module, x: Tensor, *, normalise: str | bool = "auto") -> Tensor:
    """Maximum softmax probability max_i softmax(f(x))_i (Hendrycks & Gimpel, 2017).

    Higher = more in-distribution. One forward pass without a graph, in eval mode. ``normalise``:
    pixels in [0, 1] go through the model's own normalisation (:mod:`odin_ood.model_input`).
    """
    x = _prepare(model, scoring_input(model, x, normalise, None)[0])
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
    ``input_mean``/``input_std`` (every :func:`odin_ood.models.load` model), which are then
    normalised with them and the step divided by its std (``normalise="auto"``, the default; see
    :mod:`odin_ood.model_input`), or with ``normalise=False`` a batch in whatever space the model takes.
    ``epsilon`` is in pixel units: when the model sees inputs normalised by a per-channel
    ``input_std``, pass it (or let the model's be used) and the step becomes epsilon / std per channel, as the paper's code
    does (63.0/255, 62.1/255, 66.7/255 for its CIFAR models). ``clamp=(low, high)`` (in the model's input units) optionally
    clips x~ (the paper does not). Costs one forward with an input-only backward and one forward
    without a graph; parameter gradients are never computed. At epsilon = 0 (the paper's MNIST
    setting) x~ = x, so the score is S_yhat(x; T) of ONE forward without a graph: no backward.
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
    """(logits f(x) of the unperturbed input, ODIN scores): :func:`odin_scores` plus the
    classifier's own output, which the first pass computes anyway (no extra forward)."""
    temperature = check_temperature(temperature)
    epsilon = check_epsilon(epsilon)
    x = _prepare(model, x)
    std = channel_view(input_std, x)
    with scoring_mode(model):
        if epsilon == 0.0:  # x~ = x: the gradient's sign is not needed
            with torch.no_grad():
                logits = model(x)
            return logits, softmax_score(logits, temperature)
        x = x.requires_grad_(True)
        with torch.enable_grad():
            logits = model(x)
            direction = perturbation_direction(logits, x, temperature, std)
        x, logits = x.detach(), logits.detach()
        with torch.no_grad():
            z = model(perturb(x, direction, epsilon, clamp))
        return logits, softmax_score(z, temperature)


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
    ``cells_per_forward > 1`` stacks that many cells' perturbed inputs (``cells_per_forward * N``
    rows) into one forward, so a small batch fills the device; the rows scale with N, so halving
    the batch on out-of-memory (:func:`odin_ood.batching.map_batches`) still helps. With the
    default 1 the scores are bitwise those of per-cell scoring; stacking changes the shape of
    the kernels' work and may change the last float bits, as another batch size would.
    """
    temperatures = [check_temperature(t, "temperatures") for t in temperatures]
    epsilons = [check_epsilon(e, "epsilons") for e in epsilons]
    if cells_per_forward < 1:
        raise ValueError(f"cells_per_forward must be >= 1, got {cells_per_forward}")
    x = _prepare(model, x)
    std = channel_view(input_std, x)
    needs_direction = any(e > 0.0 for e in epsilons)  # an all-zero epsilon grid needs no backward
    with scoring_mode(model):
        x = x.requires_grad_(needs_direction)
        with torch.set_grad_enabled(needs_direction):
            logits = model(x)
            directions = [
                perturbation_direction(logits, x, t, std, retain_graph=i < len(temperatures) - 1)
                for i, t in enumerate(temperatures) if needs_direction
            ]
        x, logits = x.detach(), logits.detach()
        scores = x.new_empty(len(temperatures), len(epsilons), len(x), dtype=at_least_fp32(logits).dtype)
        for i, t in enumerate(temperatures):
            for j in (j for j, e in enumerate(epsilons) if e == 0.0):
                scores[i, j] = softmax_score(logits, t)
        cells = [(i, j) for i in range(len(temperatures)) for j, e in enumerate(epsilons) if e > 0.0]
        for start in range(0, len(cells), cells_per_forward):
            chunk = cells[start : start + cells_per_forward]
            x_tilde = torch.cat([perturb(x, directions[i], epsilons[j], clamp) for i, j in chunk])
            with torch.no_grad():
                z = model(x_tilde).split(len(x))
            for (i, j), z_cell in zip(chunk, z):
                scores[i, j] = softmax_score(z_cell, temperatures[i])
        return scores


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
    direction_temperature = check_temperature(direction_temperature, "direction_temperature")
    x = _prepare(model, x)
    std = channel_view(input_std, x)
    _, per_epsilon = logits_per_epsilon(
        model, x, epsilons, lambda logits, xg: perturbation_direction(logits, xg, direction_temperature, std), clamp)
    scores = x.new_empty(len(temperatures), len(epsilons), len(x), dtype=at_least_fp32(per_epsilon[0]).dtype)
    for j, z in enumerate(per_epsilon):
        for i, t in enumerate(temperatures):
            scores[i, j] = softmax_score(z, t)
    return scores


def logits_per_epsilon(
    model: nn.Module,
    x: Tensor,
    epsilons: Sequence[float],
    direction: Callable[[Tensor, Tensor], Tensor],
    clamp: Clamp | None = None,
) -> tuple[Tensor, list[Tensor]]:
    """(f(x), [f(x - epsilon * d) for each epsilon]): one forward of ``x`` with an input graph and
    one input-only backward ``d = direction(f(x), x)`` (the step of eq. 2 for the score at hand,
    already divided by the std) serve every epsilon; epsilon = 0 reuses f(x), each epsilon > 0
    costs one forward without a graph. No graph at all when every epsilon is 0."""
    needs_direction = any(e > 0.0 for e in epsilons)
    with scoring_mode(model):
        x = x.requires_grad_(needs_direction)
        with torch.set_grad_enabled(needs_direction):
            logits = model(x)
            d = direction(logits, x) if needs_direction else None
        x, logits = x.detach(), logits.detach()
        per_epsilon = []
        for e in epsilons:
            if e == 0.0:
                per_epsilon.append(logits)
            else:
                with torch.no_grad():
                    per_epsilon.append(model(perturb(x, d, e, clamp)))
    return logits, per_epsilon
