"""A classifier whose rounding depends on the row's position in its batch, as float32 matrix
kernels' does on some CPUs (issue 23 measured 1 ulp at odd positions of a 64-image batch): the
shipped MNIST MLP (same weights, same fingerprint) with the logits of odd rows scaled by
1 + 2**-10. A run whose rows depend on which batch position an image landed in shows it at once.
``--model position_support:make`` loads it (with this folder on the import path)."""

from __future__ import annotations

import torch

from odin_ood import models
from odin_ood.models.mlp import MLP


class OddRowsMLP(MLP):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x)
        odd = (torch.arange(x.shape[0], device=x.device) % 2).to(logits.dtype)[:, None]
        return logits * (1 + odd * 2.0**-10)


def make() -> OddRowsMLP:
    base = models.load("mnist-mlp")
    model = OddRowsMLP()
    model.load_state_dict(base.state_dict())
    for name in ("input_shape", "input_mean", "input_std"):
        setattr(model, name, getattr(base, name))
    return model.eval()
