"""The OOD folders distributed with the paper's code, and LSUN sets built from raw images.

The paper's code ships five folders of images (its test sets, unlabelled); under ``root``:

====================== =========================================  ===========================
name                   folder                                     contents
====================== =========================================  ===========================
tinyimagenet-crop      ``Imagenet/test/*.jpg``                    TinyImageNet (crop)
tinyimagenet-resize    ``Imagenet_resize/Imagenet_resize/*.jpg``  TinyImageNet (resize)
lsun-crop              ``LSUN/test/*.jpg``                        LSUN (crop)
lsun-resize            ``LSUN_resize/LSUN_resize/*.jpg``          LSUN (resize)
isun                   ``iSUN/iSUN_patches/*.jpeg``               iSUN (8,925 images)
====================== =========================================  ===========================

Images are loaded at their stored size, as the paper's code feeds them (no resizing or
cropping), in natural file-name order, converted to RGB. A folder or a zip with the same
relative layout both work (``path=`` points at the image folder or zip directly).

LSUN itself is not distributed as 32x32 images; with ``source=`` (a folder or zip of the
LSUN test images, any sizes) ``lsun-crop``/``lsun-resize`` are built like the Tiny ImageNet
sets (see ``build.py``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from odin_ood.data.build import DEFAULT_RESIZE_METHOD, check_method, crop_dataset, resize_dataset
from odin_ood.data.cache import cached
from odin_ood.data.dataset import CIFAR_MEAN, CIFAR_STD, ImageDataset, resolve_root
from odin_ood.data.images import ImageSource, decode_images, fingerprint

PUBLISHED_FOLDERS = {
    "tinyimagenet-crop": "Imagenet/test",
    "tinyimagenet-resize": "Imagenet_resize/Imagenet_resize",
    "lsun-crop": "LSUN/test",
    "lsun-resize": "LSUN_resize/LSUN_resize",
    "isun": "iSUN/iSUN_patches",
}


def _natural(member: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", member)]


def _flat_images(src: ImageSource, what: str) -> list[str]:
    members = sorted(src.images(), key=_natural)
    if not members:
        raise ValueError(f"{src.path}: no images found for {what}")
    return members


def load_published(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    path: str | os.PathLike | None = None,
    workers: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> ImageDataset:
    """One of the paper's published OOD folders (``PUBLISHED_FOLDERS``), unlabelled."""
    if name not in PUBLISHED_FOLDERS:
        raise KeyError(f"no published folder for {name!r}; known: {', '.join(PUBLISHED_FOLDERS)}")
    folder = Path(path) if path is not None else resolve_root(root) / PUBLISHED_FOLDERS[name]
    if not folder.exists():
        raise FileNotFoundError(
            f"{name}: expected the paper's folder {folder} holding its images "
            f"(layout {PUBLISHED_FOLDERS[name]}/<image>)"
        )
    with ImageSource(folder) as src:
        members = _flat_images(src, name)
        source = fingerprint(src, members)

        def build() -> ImageDataset:
            images = decode_images(src, members, "RGB", workers=workers)
            manifest = {"sources": [source], "format": f"published {PUBLISHED_FOLDERS[name]}"}
            return ImageDataset(
                images.transpose(0, 3, 1, 2), name=name, mean=CIFAR_MEAN, std=CIFAR_STD, manifest=manifest
            )

        return cached(
            f"{name}-published", {"source": source, "n": len(members)}, build, cache_dir=cache_dir, use_cache=use_cache
        )


def _raw_lsun(source: str | os.PathLike, workers: int | None) -> tuple[list, list[dict]]:
    with ImageSource(source) as src:
        members = _flat_images(src, "LSUN source images")
        images = decode_images(src, members, "RGB", workers=workers, stack=False)
        return images, [fingerprint(src, members)]


def load_lsun_crop(
    root: str | os.PathLike | None = None,
    split: str = "test",
    *,
    source: str | os.PathLike | None = None,
    seed: int = 0,
    per_image: int = 1,
    size: int = 32,
    workers: int | None = None,
    **kw: Any,
) -> ImageDataset:
    """LSUN (crop): the published ``root/LSUN/test``, or built from raw LSUN images ``source``
    (random ``size`` x ``size`` patches, ``per_image`` each, seeded)."""
    if source is None:
        return load_published("lsun-crop", root, workers=workers, **kw)
    images, sources = _raw_lsun(source, workers)
    return crop_dataset(images, name="lsun-crop", sources=sources, size=size, per_image=per_image, seed=seed)


def load_lsun_resize(
    root: str | os.PathLike | None = None,
    split: str = "test",
    *,
    source: str | os.PathLike | None = None,
    method: str = DEFAULT_RESIZE_METHOD,
    size: int = 32,
    workers: int | None = None,
    **kw: Any,
) -> ImageDataset:
    """LSUN (resize): the published ``root/LSUN_resize/LSUN_resize``, or built from raw LSUN
    images ``source`` (each downsampled to ``size`` x ``size`` with ``method``)."""
    if source is None:
        return load_published("lsun-resize", root, workers=workers, **kw)
    check_method(method)
    images, sources = _raw_lsun(source, workers)
    return resize_dataset(images, name="lsun-resize", sources=sources, size=size, method=method)


def load_isun(root: str | os.PathLike | None = None, split: str = "test", **kw: Any) -> ImageDataset:
    """iSUN as published with the paper: ``root/iSUN/iSUN_patches/*.jpeg``."""
    return load_published("isun", root, **kw)
