"""Independent float64 references for every score family (odin_ood.scores.family.SCORES), written
from the papers' formulas per sample with float64 autograd: nothing here calls odin_ood.

* ODIN (Liang et al., eq. 1-2): x~ = x - eps * sign(-grad_x log S_yhat(x; T)) / std, score
  max_i softmax(f(x~) / T)_i; sign(0) = +1, as the paper's code.
* energy-odin: x~ = x - eps * sign(-grad_x E(x; T)) / std with E(x; T) = T log sum_i exp(f_i / T),
  score E(x~; T).
* energy (Liu et al.): E(x; T); maxlogit (Hendrycks et al.): max_i f_i(x); msp: max_i softmax(f(x))_i.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def float64_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).double().eval()


def _log_softmax_top(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """log S_yhat(x; T), the log-softmax of the predicted class, written out."""
    zt = z / temperature
    m = zt.max()
    log_s = zt - (m + torch.log(torch.exp(zt - m).sum()))
    return log_s[0, int(zt.argmax())]


def _energy(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """T * log(sum_i exp(f_i / T)) with the maximum subtracted first."""
    zt = z / temperature
    m = zt.max(dim=1, keepdim=True).values
    return temperature * (m.squeeze(1) + torch.log(torch.exp(zt - m).sum(dim=1)))


def _softmax_top(z: torch.Tensor, temperature: float) -> torch.Tensor:
    e = torch.exp(z / temperature - (z / temperature).max(dim=1, keepdim=True).values)
    return (e / e.sum(dim=1, keepdim=True)).max(dim=1).values


def _perturbed(model: nn.Module, xi: torch.Tensor, loss_to_raise, epsilon: float, std: float) -> torch.Tensor:
    """xi moved by eps / std along sign(grad of the quantity to raise), sign(0) = +1."""
    xi = xi.unsqueeze(0).requires_grad_(True)
    (g,) = torch.autograd.grad(loss_to_raise(model(xi)), xi)
    sign = torch.where(-g >= 0, 1.0, -1.0).double()
    return xi.detach() - epsilon * sign / std


def reference_odin_float64(
    model: nn.Module, x: torch.Tensor, temperature: float, epsilon: float, std: float = 1.0
) -> torch.Tensor:
    m = float64_copy(model)
    out = []
    for xi in x.double():
        x_tilde = _perturbed(m, xi, lambda z: _log_softmax_top(z, temperature), epsilon, std)
        with torch.no_grad():
            out.append(_softmax_top(m(x_tilde), temperature).item())
    return torch.tensor(out, dtype=torch.float64)


def reference_energy_odin_float64(
    model: nn.Module, x: torch.Tensor, temperature: float, epsilon: float, std: float = 1.0
) -> torch.Tensor:
    m = float64_copy(model)
    out = []
    for xi in x.double():
        x_tilde = _perturbed(m, xi, lambda z: _energy(z, temperature).sum(), epsilon, std)
        with torch.no_grad():
            out.append(_energy(m(x_tilde), temperature).item())
    return torch.tensor(out, dtype=torch.float64)


def reference_energy_float64(model: nn.Module, x: torch.Tensor, temperature: float) -> torch.Tensor:
    with torch.no_grad():
        return _energy(float64_copy(model)(x.double()), temperature)


def reference_scores_float64(
    family: str, model: nn.Module, x: torch.Tensor, temperature: float, epsilon: float
) -> torch.Tensor:
    """The named family's score of every row of ``x`` at (T, epsilon), in float64."""
    if family == "odin":
        return reference_odin_float64(model, x, temperature, epsilon)
    if family == "energy-odin":
        return reference_energy_odin_float64(model, x, temperature, epsilon)
    with torch.no_grad():
        z = float64_copy(model)(x.double())
    if family == "energy":
        return _energy(z, temperature)
    if family == "maxlogit":
        return z.max(dim=1).values
    if family == "msp":
        return _softmax_top(z, 1.0)
    raise KeyError(f"no float64 reference for score family {family!r}: add one here")
