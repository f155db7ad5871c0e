"""Datasets of the ODIN paper, loaded from local files (nothing downloads at run time).

``load(name, root=..., split=...)`` returns an :class:`ImageDataset`; ``names()`` lists them.
"""

from odin_ood.data.dataset import CIFAR_MEAN, CIFAR_STD, MNIST_MEAN, MNIST_STD, ImageDataset
from odin_ood.data.registry import describe, load, names

__all__ = ["ImageDataset", "load", "names", "describe",
           "CIFAR_MEAN", "CIFAR_STD", "MNIST_MEAN", "MNIST_STD"]
