"""The paper's synthetic OOD sets (section 4.2): Gaussian and Uniform noise images.

- Gaussian: every value i.i.d. N(0.5, 1), then clipped to [0, 1]. After clipping,
  P(0) = P(1) = Phi(-0.5) ~= 0.3085, the mean stays 0.5 by symmetry and the variance is
  E[(clip(X) - 0.5)^2] = (2 Phi(0.5) - 1) - phi(0.5) + 0.5 (1 - Phi(0.5)) ~= 0.1851.
- Uniform: every value i.i.d. U[0, 1] (mean 0.5, variance 1/12).

Values are stored as 8-bit pixels, ``round(255 * v)`` (a change of at most 1/510 per value),
like every other dataset. Draws use numpy's PCG64 generator seeded with ``seed``: the same
seed gives the same bytes.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from odin_ood.data.dataset import CIFAR_MEAN, CIFAR_STD, MNIST_MEAN, MNIST_STD, ImageDataset

DEFAULT_COUNT = 10_000
DEFAULT_SHAPE = (3, 32, 32)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.rint(values * 255.0).astype(np.uint8)


def _conventions(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Noise sets are fed to the ID model as is: report that model family's normalisation."""
    return (CIFAR_MEAN, CIFAR_STD) if channels == 3 else (MNIST_MEAN, MNIST_STD)


def noise_images(kind: str, count: int, shape: Sequence[int], seed: int) -> np.ndarray:
    """``count`` images of ``shape`` (C, H, W) as uint8: "gaussian" or "uniform" noise."""
    if count < 1 or len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"count must be >= 1 and shape (C, H, W) positive; got {count}, {shape}")
    rng = np.random.default_rng(seed)
    size = (count, *shape)
    if kind == "gaussian":
        values = np.clip(rng.normal(0.5, 1.0, size).astype(np.float32), 0.0, 1.0)
    elif kind == "uniform":
        values = rng.random(size, dtype=np.float32)
    else:
        raise ValueError(f"kind must be 'gaussian' or 'uniform'; got {kind!r}")
    return _to_uint8(values)


def noise_dataset(kind: str, count: int = DEFAULT_COUNT, shape: Sequence[int] = DEFAULT_SHAPE,
                  seed: int = 0) -> ImageDataset:
    """A seeded noise set (unlabelled) with its recipe in the manifest."""
    shape = tuple(int(s) for s in shape)
    mean, std = _conventions(shape[0])
    recipe = ("N(0.5, 1) clipped to [0, 1]" if kind == "gaussian" else "U[0, 1]")
    manifest = {"kind": kind, "distribution": recipe, "seed": seed, "shape": shape,
                "generator": "numpy PCG64", "numpy": np.__version__, "quantisation": "round(255*v)"}
    return ImageDataset(noise_images(kind, count, shape, seed), name=kind, mean=mean, std=std,
                        manifest=manifest)


def _registry_loader(kind: str):
    def loader(root: str | os.PathLike | None = None, split: str = "test", *,
               count: int = DEFAULT_COUNT, shape: Sequence[int] = DEFAULT_SHAPE,
               seed: int = 0) -> ImageDataset:
        if split != "test":
            raise ValueError(f"{kind} noise has only split 'test'; draw another set with seed=")
        return noise_dataset(kind, count, shape, seed)
    loader.__doc__ = f"{kind.capitalize()} noise set (no files needed; ``root`` is ignored)."
    return loader


load_gaussian = _registry_loader("gaussian")
load_uniform = _registry_loader("uniform")
