"""The paper's synthetic OOD sets (section 4.2): Gaussian and Uniform noise images.

- Gaussian: every value i.i.d. N(0.5, 1), then clipped to [0, 1]. After clipping,
  P(0) = P(1) = Phi(-0.5) ~= 0.3085, the mean stays 0.5 by symmetry and the variance is
  E[(clip(X) - 0.5)^2] = (2 Phi(0.5) - 1) - phi(0.5) + 0.5 (1 - Phi(0.5)) ~= 0.1851.
- Uniform: every value i.i.d. U[0, 1] (mean 0.5, variance 1/12).

Values are drawn by :func:`gaussian_noise` / :func:`uniform_noise` (also used as tensors by
tuning without OOD data) from torch's seeded CPU generator (``torch.Generator``,
Mersenne Twister; the same seed and torch version give the same bytes) and stored as 8-bit
pixels, ``round(255 * v)`` (a change of at most 1/510 per value), like every other dataset. The
manifest records the generator, the draw, the quantisation, the torch and numpy versions and the
sha256 of the pixels; :func:`rebuild` makes the set again from the manifest alone.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from odin_ood.data.dataset import CIFAR_MEAN, CIFAR_STD, MNIST_MEAN, MNIST_STD, ImageDataset

GENERATOR = "torch.Generator() on the CPU (Mersenne Twister mt19937), manual_seed(seed)"
QUANTISATION = "numpy.rint(float32 values * 255.0).astype(uint8)"
_RECIPES = {  # kind -> (distribution, the draw with g = GENERATOR)
    "gaussian": (
        "N(0.5, 1) clipped to [0, 1]",
        "torch.randn(count, *shape, generator=g, dtype=float32).add_(0.5).clamp_(0.0, 1.0)",
    ),
    "uniform": ("U[0, 1]", "torch.rand(count, *shape, generator=g, dtype=float32)"),
}

DEFAULT_COUNT = 10_000
DEFAULT_SHAPE = (3, 32, 32)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def gaussian_noise(n: int, shape: Sequence[int], seed: int = 0) -> Tensor:
    """n images of ``shape`` (C, H, W), values clamp(N(0.5, 1), 0, 1); seeded, on the CPU."""
    return torch.randn(n, *shape, generator=_generator(seed), dtype=torch.float32).add_(0.5).clamp_(0.0, 1.0)


def uniform_noise(n: int, shape: Sequence[int], seed: int = 0) -> Tensor:
    """n images of ``shape`` (C, H, W), values U[0, 1); seeded, on the CPU."""
    return torch.rand(n, *shape, generator=_generator(seed), dtype=torch.float32)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.rint(values * 255.0).astype(np.uint8)


def _conventions(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The conventional statistics of the family the noise imitates (information only)."""
    return (CIFAR_MEAN, CIFAR_STD) if channels == 3 else (MNIST_MEAN, MNIST_STD)


def noise_images(kind: str, count: int, shape: Sequence[int], seed: int) -> np.ndarray:
    """``count`` images of ``shape`` (C, H, W) as uint8: "gaussian" or "uniform" noise."""
    if count < 1 or len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"count must be >= 1 and shape (C, H, W) positive; got {count}, {shape}")
    generators = {"gaussian": gaussian_noise, "uniform": uniform_noise}
    if kind not in generators:
        raise ValueError(f"kind must be 'gaussian' or 'uniform'; got {kind!r}")
    return _to_uint8(generators[kind](count, tuple(shape), seed).numpy())


def noise_dataset(
    kind: str, count: int = DEFAULT_COUNT, shape: Sequence[int] = DEFAULT_SHAPE, seed: int = 0
) -> ImageDataset:
    """A seeded noise set (unlabelled) with its full recipe in the manifest (see :func:`rebuild`)."""
    shape = tuple(int(s) for s in shape)
    images = noise_images(kind, count, shape, seed)
    distribution, draw = _RECIPES[kind]
    manifest = {
        "kind": kind,
        "distribution": distribution,
        "seed": seed,
        "shape": shape,
        "generator": GENERATOR,
        "draw": draw,
        "quantisation": QUANTISATION,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "images_sha256": hashlib.sha256(images.tobytes()).hexdigest(),
    }
    mean, std = _conventions(shape[0])
    return ImageDataset(images, name=kind, mean=mean, std=std, manifest=manifest)


def rebuild(manifest: Mapping[str, Any]) -> np.ndarray:
    """The uint8 images (count, C, H, W) of the noise set that ``manifest`` describes, drawn again
    from its kind, count, shape and seed. A manifest with another generator, draw or quantisation
    is refused, and so are pixels whose sha256 differs from the recorded one (e.g. a torch
    release whose generator draws differently: the manifest names the version that made it)."""
    kind = manifest.get("kind")
    if kind not in _RECIPES:
        raise ValueError(f"not a noise manifest: kind must be one of {sorted(_RECIPES)}, got {kind!r}")
    recipe = {"generator": GENERATOR, "draw": _RECIPES[kind][1], "quantisation": QUANTISATION}
    other = {k: manifest.get(k) for k, v in recipe.items() if manifest.get(k) != v}
    if other:
        raise ValueError(f"this noise manifest was made by another recipe ({other}); this code draws {recipe}")
    images = noise_images(kind, int(manifest["count"]), tuple(int(s) for s in manifest["shape"]), int(manifest["seed"]))
    want = manifest.get("images_sha256")
    if want is not None and hashlib.sha256(images.tobytes()).hexdigest() != want:
        raise ValueError(
            f"rebuilt {kind} noise differs from the recorded sha256 {want} (made with torch "
            f"{manifest.get('torch')}, numpy {manifest.get('numpy')}; this is torch {torch.__version__})"
        )
    return images


def _registry_loader(kind: str) -> Callable[..., ImageDataset]:
    def loader(
        root: str | os.PathLike | None = None,
        split: str = "test",
        *,
        count: int = DEFAULT_COUNT,
        shape: Sequence[int] = DEFAULT_SHAPE,
        seed: int = 0,
    ) -> ImageDataset:
        if split != "test":
            raise ValueError(f"{kind} noise has only split 'test'; draw another set with seed=")
        return noise_dataset(kind, count, shape, seed)

    loader.__doc__ = f"{kind.capitalize()} noise set (no files needed; ``root`` is ignored)."
    return loader


load_gaussian = _registry_loader("gaussian")
load_uniform = _registry_loader("uniform")
