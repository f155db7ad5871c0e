"""Dataset registry: ``load(name, root=..., split=..., **kw)`` and the list behind
``odin-ood datasets``.

``root`` is a folder laid out like the project's shared data (``root/mnist``,
``root/cifar10``, ``root/tiny-imagenet``, ...); when ``None``, ``$ODIN_OOD_DATA`` is used.
Extra keyword arguments go to the named loader (e.g. ``seed``, ``method``, ``cache_dir``).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from odin_ood.data.dataset import ImageDataset

# name -> ("module:function", one-line description)
DATASETS: dict[str, tuple[str, str]] = {
    "mnist": ("idx:load_mnist", "MNIST digits, IDX files root/mnist (60,000 train / 10,000 test)"),
    "notmnist": ("idx:load_notmnist", "notMNIST letters A-J, IDX files root/notmnist (10,000 test)"),
    "cifar10": ("cifar:load_cifar10",
                "CIFAR-10, official python pickles root/cifar10/cifar-10-batches-py"),
    "cifar10-jpeg": ("cifar:load_cifar10_jpeg",
                     "CIFAR-10 re-encoded as JPEG, root/cifar10/cifar10-jpeg-{train,test}.zip"),
    "cifar10-lossless-1000": ("cifar:load_cifar10_lossless_1000",
                              "first 1,000 CIFAR-10 test images, lossless PNG zip"),
    "cifar100": ("cifar:load_cifar100",
                 "CIFAR-100, official python pickles root/cifar100/cifar-100-python"),
}


def names() -> list[str]:
    """All registered dataset names."""
    return list(DATASETS)


def describe(name: str) -> str:
    """One-line description of a registered dataset."""
    return DATASETS[_check(name)][1]


def _check(name: str) -> str:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return name


def load(name: str, root: str | os.PathLike | None = None, split: str = "test",
         **kw: Any) -> ImageDataset:
    """Load dataset ``name`` from ``root`` (default ``$ODIN_OOD_DATA``); see :func:`names`."""
    module, func = DATASETS[_check(name)][0].split(":")
    loader = getattr(importlib.import_module(f"odin_ood.data.{module}"), func)
    return loader(root=root, split=split, **kw)
