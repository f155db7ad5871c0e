"""Training recipes: the paper's (section 4.1) and the architectures' original hyper-parameters.

ODIN trains its CIFAR networks with SGD, Nesterov momentum 0.9, learning rate 0.1 divided by 10
at 50% and 75% of training; DenseNet-BC with batch 64 for 300 epochs, Wide ResNet with batch 128
for 200 epochs. The paper does not restate weight decay; we use the architecture papers' values:
1e-4 for DenseNet-BC (Huang et al., 2017), 5e-4 for Wide ResNet (Zagoruyko & Komodakis, 2016) and
1e-4 for the CIFAR ResNets (He et al., 2016, trained 182 epochs with batch 128, which this recipe
approximates with the same 50%/75% schedule). Augmentation is the standard CIFAR one: 4-pixel zero
padding, random 32x32 crop, random horizontal flip.

The MNIST MLP (Appendix A.1) is trained with Adam for 30 epochs. Plain Adam at 1e-3 stalls near
98.0% test accuracy, so we also apply the paper's step schedule (lr / 10 at 50% and 75%) and a
random translation of up to 2 pixels (no flip: digits are not mirror symmetric).
"""

from __future__ import annotations

from dataclasses import dataclass


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
    crop_padding: int = 4  # random crop after zero padding by this many pixels (0 = none)
    flip: bool = True  # random horizontal flip

    def lr_at(self, progress: float) -> float:
        """Learning rate after a fraction ``progress`` in [0, 1] of training:
        ``lr * gamma ** #{m in milestones : progress >= m}``."""
        if not 0.0 <= progress <= 1.0:
            raise ValueError(f"progress must be in [0, 1], got {progress}")
        return self.lr * self.gamma ** sum(progress >= m for m in self.milestones)


RECIPES: dict[str, Recipe] = {
    "densenet": Recipe("densenet", "sgd", lr=0.1, epochs=300, batch_size=64, weight_decay=1e-4),
    "wrn": Recipe("wrn", "sgd", lr=0.1, epochs=200, batch_size=128, weight_decay=5e-4),
    "resnet": Recipe("resnet", "sgd", lr=0.1, epochs=182, batch_size=128, weight_decay=1e-4),
    "mnist-mlp": Recipe("mnist-mlp", "adam", lr=1e-3, epochs=30, batch_size=128, crop_padding=2, flip=False),
}


def recipe(name_or_recipe: str | Recipe) -> Recipe:
    """The named recipe (or the given one unchanged); unknown names list the known ones."""
    if isinstance(name_or_recipe, Recipe):
        return name_or_recipe
    if name_or_recipe not in RECIPES:
        raise ValueError(f"unknown recipe {name_or_recipe!r}; expected one of {list(RECIPES)}")
    return RECIPES[name_or_recipe]
