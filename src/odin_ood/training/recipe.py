"""Training recipes: the paper's (section 4.1) and the architectures' original hyper-parameters.

ODIN trains its CIFAR networks with SGD, Nesterov momentum 0.9, learning rate 0.1 divided by 10
at 50% and 75% of training; DenseNet-BC with batch 64 for 300 epochs, Wide ResNet with batch 128
for 200 epochs. The paper does not restate weight decay; we use the architecture papers' values:
1e-4 for DenseNet-BC (Huang et al., 2017), 5e-4 for Wide ResNet (Zagoruyko & Komodakis, 2016) and
1e-4 for the CIFAR ResNets (He et al., 2016, trained 182 epochs with batch 128, which this recipe
approximates with the same 50%/75% schedule).

Augmentation is opt-in (``crop_padding=0, flip=False`` by default). The CIFAR recipes turn on the
standard CIFAR augmentation (4-pixel zero padding, random 32x32 crop, random horizontal flip)
because the paper sets them "identical to the original Wide ResNet and DenseNet implementations",
which train with it. The MNIST recipes have none: their sources train without augmentation.

"mnist-mlp" is Hendrycks & Gimpel's recipe (public notebook ``MNIST_Softmax_Stats``), which the
paper's Appendix A.1 cites: Adam, lr 1e-3 dropped to 1e-4 from epoch 20 of 30, batch 128, all
60,000 training images, and an L2 penalty ``1e-5 * sum ||W||^2 / 2`` (TensorFlow's ``l2_loss``)
on the three hidden weight matrices only (not the biases, not the output layer).
"mnist-lenet" is PyTorch's MNIST example: SGD, lr 0.01, momentum 0.9 (not Nesterov), batch 64,
20 epochs, constant learning rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Recipe:
    """Optimiser, schedule and augmentation of one training run."""

    name: str
    optimizer: str  # "sgd" (Nesterov when nesterov=True) or "adam"
    lr: float
    epochs: int
    batch_size: int
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = True
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of training where lr *= gamma
    gamma: float = 0.1
    crop_padding: int = 0  # random crop after zero padding by this many pixels (0 = none)
    flip: bool = False  # random horizontal flip
    l2_penalty: float = 0.0  # coefficient c of the loss term c * sum ||W||^2 / 2 ...
    l2_parameters: tuple[str, ...] = ()  # ... over these named parameters

    def penalty(self, named: Mapping[str, torch.Tensor]) -> torch.Tensor | float:
        """``l2_penalty * sum_W ||W||^2 / 2`` over ``l2_parameters`` (0 when there are none);
        a name missing from ``named`` raises ``ValueError``."""
        if not self.l2_penalty or not self.l2_parameters:
            return 0.0
        missing = [n for n in self.l2_parameters if n not in named]
        if missing:
            raise ValueError(f"recipe {self.name!r} penalises parameters {missing} that the model does not have")
        return self.l2_penalty * 0.5 * sum(named[n].pow(2).sum() for n in self.l2_parameters)

    def lr_at(self, progress: float) -> float:
        """Learning rate after a fraction ``progress`` in [0, 1] of training:
        ``lr * gamma ** #{m in milestones : progress >= m}`` (up to 1e-12, so that epoch
        20 of 30 reaches the milestone 2/3 despite rounding)."""
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress must be in [0, 1], got {progress}")
        return self.lr * self.gamma ** sum(progress >= m - 1e-12 for m in self.milestones)


RECIPES: dict[str, Recipe] = {
    "densenet": Recipe(
        "densenet", "sgd", lr=0.1, epochs=300, batch_size=64, weight_decay=1e-4, crop_padding=4, flip=True
    ),
    "wrn": Recipe("wrn", "sgd", lr=0.1, epochs=200, batch_size=128, weight_decay=5e-4, crop_padding=4, flip=True),
    "resnet": Recipe("resnet", "sgd", lr=0.1, epochs=182, batch_size=128, weight_decay=1e-4, crop_padding=4, flip=True),
    "mnist-mlp": Recipe(
        "mnist-mlp",
        "adam",
        lr=1e-3,
        epochs=30,
        batch_size=128,
        milestones=(2 / 3,),
        l2_penalty=1e-5,
        l2_parameters=("fc1.weight", "fc2.weight", "fc3.weight"),
    ),
    "mnist-lenet": Recipe("mnist-lenet", "sgd", lr=0.01, epochs=20, batch_size=64, nesterov=False, milestones=()),
}


def recipe(name_or_recipe: str | Recipe) -> Recipe:
    """The named recipe (or the given one unchanged); unknown names list the known ones."""
    if isinstance(name_or_recipe, Recipe):
        return name_or_recipe
    if name_or_recipe not in RECIPES:
        raise ValueError(f"unknown recipe {name_or_recipe!r}; expected one of {list(RECIPES)}")
    return RECIPES[name_or_recipe]
