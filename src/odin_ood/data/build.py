"""Building the paper's derived OOD sets from raw images (section 4.2, Appendix A.1).

- ``crop``: random ``size x size`` patches, ``per_image`` per source image, top-left corner
  uniform over all valid positions (numpy PCG64 seeded with ``seed``).
- ``resize``: the whole image downsampled to ``size x size`` (aspect ratio not kept, as
  "downsampling each image to size 32x32" implies).

How an image is downsampled moves detection results by tens of FPR points on the resize set,
so ``method`` is explicit and recorded in the manifest. Its names are the interpolations of
:mod:`odin_ood.preprocess.resampling` (the same names ``--interpolation`` takes): ``nearest``, ``bilinear``
(torch, *without* antialiasing: each output pixel interpolates the 2x2 input pixels around its
centre), ``bilinear-antialias`` (PIL bilinear), ``bicubic``, ``box``, ``hamming``, ``lanczos``
(PIL) and ``area`` (torch ``adaptive_avg_pool``, equal to ``box`` for integer factors).

Default: ``bilinear`` (no antialiasing). The paper's published resize sets predate
antialiased resizing in the usual tools of 2017 (``scipy.misc.imresize``/OpenCV ``INTER_LINEAR``
bilinear, torchvision ``Scale``), and their aliasing artefacts are part of what makes them
separable; this is our best reading, not a documented fact — compare methods when it matters.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from odin_ood.data.dataset import CIFAR_MEAN, CIFAR_STD, ImageDataset
from odin_ood.preprocess.resampling import INTERPOLATIONS, PIL_FILTERS, resample, resample_uint8

RESIZE_METHODS = INTERPOLATIONS
DEFAULT_RESIZE_METHOD = "bilinear"


def check_method(method: str) -> str:
    if method not in RESIZE_METHODS:
        raise ValueError(f"method must be one of {RESIZE_METHODS}; got {method!r}")
    return method


def _pil_resize(image: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    im = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    out = np.asarray(resample(im, (size[1], size[0]), method))
    return out[..., None] if out.ndim == 2 else out


def resize_images(
    images: np.ndarray | Sequence[np.ndarray], size: int | tuple[int, int] = 32, method: str = DEFAULT_RESIZE_METHOD
) -> np.ndarray:
    """Resize uint8 ``(H, W, C)`` images (an ``(N, H, W, C)`` array or a list of any sizes) to
    ``size``; returns ``(N, h, w, C)`` uint8."""
    check_method(method)
    hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if method in PIL_FILTERS:
        return np.stack([_pil_resize(np.asarray(im), hw, method) for im in images])
    if isinstance(images, np.ndarray):
        return resample_uint8(images, hw, method)
    return np.concatenate([resample_uint8(np.asarray(im)[None], hw, method) for im in images])


def random_crops(
    images: np.ndarray | Sequence[np.ndarray], size: int = 32, per_image: int = 1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``per_image`` random ``size x size`` patches of each ``(H, W, C)`` image.

    Returns patches ``(N * per_image, size, size, C)`` (patches of image ``i`` at rows
    ``i * per_image ...``) and their top-left corners ``(N * per_image, 2)`` as (row, col).
    """
    if per_image < 1:
        raise ValueError(f"per_image must be >= 1; got {per_image}")
    rng = np.random.default_rng(seed)
    patches, corners = [], []
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        if h < size or w < size:
            raise ValueError(f"image {i} is {h}x{w}, smaller than the {size}x{size} crop")
        rows = rng.integers(0, h - size + 1, per_image)
        cols = rng.integers(0, w - size + 1, per_image)
        for r, c in zip(rows, cols, strict=True):
            patches.append(image[r : r + size, c : c + size])
            corners.append((r, c))
    return np.stack(patches), np.asarray(corners, dtype=np.int64)


def to_grey(images: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma L = 0.299 R + 0.587 G + 0.114 B of ``(N, H, W, 3)`` uint8 images,
    in PIL's fixed point (``convert("L")``: weights 19595, 38470, 7471 / 2^16, rounded);
    returns ``(N, H, W, 1)`` uint8."""
    weights = np.array([19595, 38470, 7471], dtype=np.int64)
    grey = (images.astype(np.int64) @ weights + 0x8000) >> 16
    return grey.astype(np.uint8)[..., None]


def crop_dataset(
    images: np.ndarray | Sequence[np.ndarray],
    *,
    name: str,
    sources: list[dict],
    size: int = 32,
    per_image: int = 1,
    seed: int = 0,
) -> ImageDataset:
    """An OOD set of random crops (see :func:`random_crops`), with its recipe in the manifest.
    Like all 32x32 RGB sets it reports CIFAR's channel statistics (information only: the model's
    ``input_mean``/``input_std`` normalise it)."""
    patches, _ = random_crops(images, size, per_image, seed)
    manifest = {
        "sources": sources,
        "build": "crop",
        "size": size,
        "per_image": per_image,
        "seed": seed,
        "generator": "numpy PCG64",
        "numpy": np.__version__,
    }
    return ImageDataset(patches.transpose(0, 3, 1, 2), name=name, mean=CIFAR_MEAN, std=CIFAR_STD, manifest=manifest)


def resize_dataset(
    images: np.ndarray | Sequence[np.ndarray],
    *,
    name: str,
    sources: list[dict],
    size: int = 32,
    method: str = DEFAULT_RESIZE_METHOD,
) -> ImageDataset:
    """An OOD set of whole images downsampled to ``size`` with ``method`` (recorded)."""
    small = resize_images(images, size, method)
    manifest = {
        "sources": sources,
        "build": "resize",
        "size": size,
        "method": method,
        "torch": torch.__version__,
        "pillow": Image.__version__,
    }
    return ImageDataset(small.transpose(0, 3, 1, 2), name=name, mean=CIFAR_MEAN, std=CIFAR_STD, manifest=manifest)
