"""Training the paper's networks with the paper's recipe (section 4.1, Appendix A.1).

* :mod:`~odin_ood.training.recipe`: the recipes (optimiser, schedule, weight decay) by architecture;
* :mod:`~odin_ood.training.loop`: the training loop and test accuracy;
* :mod:`~odin_ood.training.augment`: random crops and flips on batched tensors;
* :mod:`~odin_ood.training.state`: resumable checkpoints (safetensors and JSON).

Imports point down: to :mod:`odin_ood.models`, :mod:`odin_ood.data`, :mod:`odin_ood.preprocess`
and :mod:`odin_ood._utils`; only the ``train`` command imports this.
"""

from odin_ood.training.augment import random_crop_flip
from odin_ood.training.loop import TrainResult, accuracy, train
from odin_ood.training.recipe import RECIPES, Recipe, recipe

__all__ = ["RECIPES", "Recipe", "TrainResult", "accuracy", "random_crop_flip", "recipe", "train"]
