"""How a batch runs through the model for scoring: the passes every score of :mod:`odin_ood.scores` shares.

* eval mode with parameter gradients off, every submodule's mode restored (:func:`scoring_mode`);
* logits in float32 or wider, whatever autocast gives (:func:`at_least_fp32`);
* the input perturbation of the paper's eq. 2, ``x~ = x - epsilon * d`` with ``d`` the sign of an
  input gradient divided by the per-channel std (:func:`sign_direction`, :func:`perturb`);
* ODIN's loop, written once (:func:`perturbed_logits`): ONE forward of ``x`` with an input graph,
  one input-only backward per direction, and one forward without a graph per perturbed copy.
  Weight gradients are never computed; epsilon = 0 costs no extra pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from odin_ood._utils.checks import channel_view, check_batch

Clamp = tuple[float | Tensor, float | Tensor]
Direction = Callable[[Tensor, Tensor, bool], Tensor]
"""``direction(logits, x, retain_graph)``: the step ``d`` of eq. 2 from a forward of ``x`` with an input graph."""


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
    for b in model.buffers():
        return b.device
    return default


def at_least_fp32(logits: Tensor) -> Tensor:
    """Logits in float32 or wider: under bf16/fp16 autocast the model's output is half precision,
    but f(x)/T and the softmax over it are computed in float32."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def prepare(model: nn.Module, x: Tensor) -> Tensor:
    """``x`` checked (:func:`~odin_ood._utils.checks.check_batch`), detached, on the model's device."""
    check_batch(x)
    return x.detach().to(model_device(model, x.device))


def sign_direction(loss: Tensor, x: Tensor, input_std: Tensor | None, retain_graph: bool = False) -> Tensor:
    """sign(grad_x loss) / std per channel, a zero gradient counting as +1 (as the paper's code,
    ``torch.ge(grad, 0)``): the step direction of eq. 2 for any scalar ``loss`` computed from ``x``
    (summed over the batch, so each row's gradient is its own)."""
    (grad,) = torch.autograd.grad(loss, x, retain_graph=retain_graph)
    direction = torch.where(grad >= 0, 1.0, -1.0).to(x.dtype)
    return direction if input_std is None else direction / input_std


def perturb(x: Tensor, direction: Tensor, epsilon: float, clamp: Clamp | None = None) -> Tensor:
    """x~ = x - epsilon * direction (paper eq. 2), optionally clipped to ``clamp=(low, high)``:
    each bound one number or one per channel (dimension 1 of x)."""
    x_tilde = x - epsilon * direction
    if clamp is None:
        return x_tilde
    low, high = (channel_view(c, x, f"clamp[{k}]", positive=False) for k, c in enumerate(clamp))
    return torch.clamp(x_tilde, low, high)


def perturbed_logits(
    model: nn.Module,
    x: Tensor,
    directions: Sequence[Direction],
    epsilons: Sequence[float],
    clamp: Clamp | None = None,
    cells_per_forward: int = 1,
) -> tuple[Tensor, list[list[Tensor]]]:
    """(f(x), z) with ``z[k][j] = f(x - epsilons[j] * d_k)``, ``d_k = directions[k](f(x), x)``.

    ONE forward of ``x`` with an input graph serves every direction, each an input-only backward
    (the graph kept until the last); epsilon = 0 reuses f(x); every other cell costs a forward
    without a graph, ``cells_per_forward`` cells stacked into one forward of that many times the
    rows (a small batch then fills the device; stacking changes the shape of the kernels' work and
    may change the last float bits, as another batch size would). No graph at all when every
    epsilon is 0. ``x`` must already be the model's input, on its device (:func:`prepare`).
    """
    if cells_per_forward < 1:
        raise ValueError(f"cells_per_forward must be >= 1, got {cells_per_forward}")
    needs_direction = any(e > 0.0 for e in epsilons)
    with scoring_mode(model):
        x = x.requires_grad_(needs_direction)
        with torch.set_grad_enabled(needs_direction):
            logits = model(x)
            d = [
                direction(logits, x, k < len(directions) - 1)
                for k, direction in enumerate(directions)
                if needs_direction
            ]
        x, logits = x.detach(), logits.detach()
        z: list[list[Tensor]] = [[logits] * len(epsilons) for _ in directions]
        cells = [(k, j) for k in range(len(directions)) for j, e in enumerate(epsilons) if e > 0.0]
        for start in range(0, len(cells), cells_per_forward):
            chunk = cells[start : start + cells_per_forward]
            x_tilde = [perturb(x, d[k], epsilons[j], clamp) for k, j in chunk]
            with torch.no_grad():
                # one cell: no split, so a trace with a symbolic batch keeps it symbolic (len() would fix it)
                out = (model(x_tilde[0]),) if len(chunk) == 1 else model(torch.cat(x_tilde)).split(x.shape[0])
            for (k, j), z_cell in zip(chunk, out, strict=True):
                z[k][j] = z_cell
    return logits, z
