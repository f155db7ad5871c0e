"""ID-only tuning on real data: the shipped MNIST LeNet on 64 digits of the embedded demo sample,
and an independent float64 reference of the Generalized-ODIN criterion at T = 1000."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from odin_ood import models, odin_scores
from odin_ood.assets import demo_sample

# at T = 1000 the LeNet's mean score of these digits peaks inside this grid (at 0.16), not at an end
WIDE_EPSILONS = (0.0, 0.004, 0.02, 0.08, 0.16, 0.3)


def lenet_and_digits() -> tuple[nn.Module, torch.Tensor]:
    """The shipped LeNet and 64 demo digits, normalised as it expects (give them with ``normalise=False``)."""
    model = models.load("mnist-lenet")
    pixels = demo_sample()["mnist"].images[:64].float() / 255
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (model.input_mean, model.input_std))
    return model, (pixels - mean) / std


def float64_id_only_choice(model: nn.Module, x: torch.Tensor, epsilons: tuple[float, ...]) -> tuple[float, np.ndarray]:
    """Per epsilon, float64 ODIN scores at T = 1000 one call at a time, their mean; the argmax."""
    model64, x64 = copy.deepcopy(model).double(), x.double()
    means = np.array(
        [
            odin_scores(model64, x64, 1000.0, e, input_std=model.input_std, normalise=False).mean().item()
            for e in epsilons
        ]
    )
    return epsilons[int(np.argmax(means))], means
