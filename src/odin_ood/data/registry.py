"""Dataset registry: ``load(name, root=..., split=..., **kw)`` and the list behind
``odin-ood datasets``.

``root`` is a folder laid out like the project's shared data (``root/mnist``,
``root/cifar10``, ``root/tiny-imagenet``, ...); when ``None``, ``$ODIN_OOD_DATA`` is used.
Extra keyword arguments go to the named loader (e.g. ``seed``, ``method``, ``cache_dir``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import textwrap
from typing import Any

from odin_ood.data.dataset import ImageDataset

# name -> ("module:function", one-line description)
DATASETS: dict[str, tuple[str, str]] = {
    "mnist": ("idx:load_mnist", "MNIST digits, IDX files root/mnist (60,000 train / 10,000 test)"),
    "notmnist": ("idx:load_notmnist", "notMNIST letters A-J, IDX files root/notmnist (10,000 test)"),
    "cifar10": ("cifar:load_cifar10", "CIFAR-10, official python pickles root/cifar10/cifar-10-batches-py"),
    "cifar10-jpeg": (
        "cifar:load_cifar10_jpeg",
        "CIFAR-10 re-encoded as JPEG, root/cifar10/cifar10-jpeg-{train,test}.zip",
    ),
    "cifar10-lossless-1000": ("cifar:load_cifar10_lossless_1000", "first 1,000 CIFAR-10 test images, lossless PNG zip"),
    "cifar100": ("cifar:load_cifar100", "CIFAR-100, official python pickles root/cifar100/cifar-100-python"),
    "cifar80": (
        "cifar_split:load_cifar80",
        "CIFAR-100's 80 in-distribution classes of a seeded 80/20 split, labels 0..79",
    ),
    "cifar20": ("cifar_split:load_cifar20", "CIFAR-100's other 20 classes (OOD for CIFAR-80), unlabelled"),
    "cifar10bw": ("cifar:load_cifar10bw", "CIFAR-10 in greyscale at 28x28, OOD for MNIST models (built)"),
    "omniglot": (
        "omniglot:load_omniglot",
        "Omniglot characters from the original zips root/omniglot, MNIST-style 28x28",
    ),
    "tinyimagenet": ("tiny_imagenet:load_tiny_imagenet", "Tiny ImageNet 64x64, root/tiny-imagenet (folder or zip)"),
    "tinyimagenet-crop": (
        "tiny_imagenet:load_tinyimagenet_crop",
        "TinyImageNet (crop): random 32x32 patch per test image (built, seeded)",
    ),
    "tinyimagenet-resize": (
        "tiny_imagenet:load_tinyimagenet_resize",
        "TinyImageNet (resize): test images downsampled to 32x32 (built)",
    ),
    "lsun-crop": (
        "published:load_lsun_crop",
        "LSUN (crop): the paper's folder root/LSUN/test, or built from source=...",
    ),
    "lsun-resize": (
        "published:load_lsun_resize",
        "LSUN (resize): the paper's root/LSUN_resize/LSUN_resize, or built from source=...",
    ),
    "isun": ("published:load_isun", "iSUN: the paper's folder root/iSUN/iSUN_patches"),
    "gaussian": ("noise:load_gaussian", "Gaussian noise N(0.5, 1) clipped to [0, 1] (seeded)"),
    "uniform": ("noise:load_uniform", "Uniform noise U[0, 1] (seeded)"),
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


def load(name: str, root: str | os.PathLike | None = None, split: str = "test", **kw: Any) -> ImageDataset:
    """Load dataset ``name`` from ``root`` (default ``$ODIN_OOD_DATA``); see :func:`names`."""
    module, func = DATASETS[_check(name)][0].split(":")
    loader = getattr(importlib.import_module(f"odin_ood.data.{module}"), func)
    return loader(root=root, split=split, **kw)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``odin-ood datasets [--root DIR]``."""
    parser.add_argument(
        "--root", default=None, help="data root to check for each dataset's files (default $ODIN_OOD_DATA)"
    )


def run(args: argparse.Namespace) -> int:
    """Print every dataset name with its description (and, with --root, whether it loads: the
    reason in full under it, wrapped at spaces, never cut inside a word or path)."""
    width = max(map(len, DATASETS))
    columns = max(80, shutil.get_terminal_size((100, 24)).columns)
    for name in DATASETS:
        print(f"{name:<{width}}  {describe(name)}")
        if args.root is not None:
            print(
                textwrap.fill(
                    _status(name, args.root),
                    columns,
                    initial_indent=" " * (width + 2),
                    subsequent_indent=" " * (width + 4),
                    break_long_words=False,
                    break_on_hyphens=False,
                )
            )
    return 0


def _status(name: str, root: str) -> str:
    try:
        ds = load(name, root=root)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        return f"unavailable: {str(exc).splitlines()[0]}"
    return f"ok: {len(ds)} x {'x'.join(map(str, ds.shape))}"
