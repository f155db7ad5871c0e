"""Tiny ImageNet (64x64 RGB, 200 classes) in its distribution layout, and the paper's
TinyImageNet (crop) / (resize) OOD sets built from its 10,000 test images.

Layout (a folder, or a zip holding it), under ``root/tiny-imagenet/``::

    tiny-imagenet-200/wnids.txt                      class ids, one per line (label order)
    tiny-imagenet-200/train/<wnid>/images/<wnid>_<k>.JPEG
    tiny-imagenet-200/val/images/val_<k>.JPEG        + val/val_annotations.txt (file, wnid, box)
    tiny-imagenet-200/test/images/test_<k>.JPEG      unlabelled

Sources tried in order: ``tiny-imagenet-200/`` (extracted), ``tiny-imagenet-200.zip``,
``tiny-imagenet-200-test.zip`` (test split only). Images are ordered by the number in their
file name; the few greyscale images are converted to RGB. Decoded sets are cached.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from odin_ood.data.build import (
    DEFAULT_RESIZE_METHOD,
    check_method,
    crop_dataset,
    resize_dataset,
)
from odin_ood.data.cache import cached
from odin_ood.data.dataset import CIFAR_MEAN, CIFAR_STD, ImageDataset, resolve_root, sha256_file
from odin_ood.data.images import ImageSource, decode_images, fingerprint

_ROOT = "tiny-imagenet-200"
_SPLITS = ("train", "val", "test")


def find_tiny_imagenet(root: str | os.PathLike | None, split: str) -> Path:
    """The folder or zip holding ``split`` under ``root/tiny-imagenet``."""
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}; got {split!r}")
    folder = resolve_root(root) / "tiny-imagenet"
    candidates = [folder / _ROOT, folder / f"{_ROOT}.zip"]
    if split == "test":
        candidates.append(folder / f"{_ROOT}-test.zip")
    for c in candidates:
        if c.exists():
            return c
    raise FileNotFoundError(
        f"Tiny ImageNet {split}: expected one of {', '.join(map(str, candidates))} holding {_ROOT}/{split}/..."
    )


def _number(member: str) -> tuple[str, int]:
    stem = PurePosixPath(member).stem
    m = re.search(r"(\d+)$", stem)
    return (stem[: m.start()] if m else stem, int(m.group(1)) if m else -1)


def _text(src: ImageSource, member: str) -> str:
    if member not in src.members:
        raise FileNotFoundError(f"{src.path}: missing {member}")
    return src.read(member).decode("utf-8")


def _members_and_labels(src: ImageSource, prefix: str, split: str) -> tuple[list[str], list[int], list[str] | None]:
    base = f"{prefix}{split}/"
    members = sorted(src.images(base), key=_number)
    if not members:
        raise ValueError(f"{src.path}: no images under {base} (expected {base}...*.JPEG)")
    if split == "test":
        return members, [-1] * len(members), None
    wnids = _text(src, f"{prefix}wnids.txt").split()
    index = {w: i for i, w in enumerate(wnids)}
    if split == "train":
        members = sorted(members, key=lambda m: (index.get(PurePosixPath(m).parts[-3], -1), _number(m)))
        owners = [PurePosixPath(m).parts[-3] for m in members]
    else:
        table = dict(
            line.split("\t")[:2] for line in _text(src, f"{base}val_annotations.txt").splitlines() if line.strip()
        )
        owners = [table.get(PurePosixPath(m).name, "?") for m in members]
    unknown = sorted({o for o in owners if o not in index})
    if unknown:
        raise ValueError(f"{src.path}: {split} classes {unknown[:5]} are not in wnids.txt")
    return members, [index[o] for o in owners], wnids


def load_tiny_imagenet(
    root: str | os.PathLike | None = None,
    split: str = "test",
    *,
    path: str | os.PathLike | None = None,
    workers: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> ImageDataset:
    """Tiny ImageNet ``split`` as 64x64 RGB (test: 10,000 unlabelled images).
    ``path`` overrides the search under ``root`` (a folder or zip in the layout above)."""
    source_path = Path(path) if path is not None else find_tiny_imagenet(root, split)
    with ImageSource(source_path) as src:
        prefix = f"{_ROOT}/" if any(m.startswith(f"{_ROOT}/") for m in src.members) else ""
        members, labels, wnids = _members_and_labels(src, prefix, split)
        source = fingerprint(src, members)

        def build() -> ImageDataset:
            images = decode_images(src, members, "RGB", workers=workers)
            manifest = {"sources": [source], "split": split, "format": "tiny-imagenet-200"}
            return ImageDataset(
                images.transpose(0, 3, 1, 2),
                np.asarray(labels),
                name="tinyimagenet",
                mean=CIFAR_MEAN,
                std=CIFAR_STD,
                manifest=manifest,
                classes=wnids,
            )

        params = {"source": source, "split": split, "n": len(members)}
        return cached("tinyimagenet", params, build, cache_dir=cache_dir, use_cache=use_cache)


def _built_from_test(name: str, root: Any, split: str, recipe: dict, make: Any, kw: dict) -> ImageDataset:
    """Build ``name`` from the decoded test images with ``make(images_nhwc, sources)``,
    cached under the recipe and the source's sha256."""
    if split != "test":
        raise ValueError(f"{name} is built from the Tiny ImageNet test split only; got {split!r}")
    unknown = set(kw) - {"path", "workers", "cache_dir", "use_cache"}
    if unknown:
        raise TypeError(f"{name}: unexpected arguments {sorted(unknown)}")
    path = Path(kw["path"]) if kw.get("path") else find_tiny_imagenet(root, "test")
    sources = [{"path": str(path), "sha256": sha256_file(path) if path.is_file() else None}]
    cache_kw = {k: kw[k] for k in ("cache_dir", "use_cache") if k in kw}

    def build() -> ImageDataset:
        tiny = load_tiny_imagenet(root, "test", path=path, workers=kw.get("workers"), **cache_kw)
        return make(tiny.images.permute(0, 2, 3, 1).numpy(), sources)

    use = cache_kw.pop("use_cache", True) and sources[0]["sha256"] is not None
    return cached(name, {"sources": sources, **recipe}, build, use_cache=use, **cache_kw)


def load_tinyimagenet_crop(
    root: str | os.PathLike | None = None,
    split: str = "test",
    *,
    seed: int = 0,
    per_image: int = 1,
    size: int = 32,
    published: bool = False,
    **kw: Any,
) -> ImageDataset:
    """TinyImageNet (crop): ``per_image`` random ``size`` x ``size`` patches per test image
    (default one each: 10,000), seeded. ``published=True`` loads the paper's own folder
    ``root/Imagenet/test`` instead."""
    if published:
        from odin_ood.data.published import load_published

        return load_published("tinyimagenet-crop", root, **kw)
    return _built_from_test(
        "tinyimagenet-crop",
        root,
        split,
        {"seed": seed, "per_image": per_image, "size": size},
        lambda images, sources: crop_dataset(
            images, name="tinyimagenet-crop", sources=sources, size=size, per_image=per_image, seed=seed
        ),
        kw,
    )


def load_tinyimagenet_resize(
    root: str | os.PathLike | None = None,
    split: str = "test",
    *,
    method: str = DEFAULT_RESIZE_METHOD,
    size: int = 32,
    published: bool = False,
    **kw: Any,
) -> ImageDataset:
    """TinyImageNet (resize): each test image downsampled to ``size`` x ``size`` with ``method``
    (see ``build.py``). ``published=True`` loads ``root/Imagenet_resize/Imagenet_resize``."""
    if published:
        from odin_ood.data.published import load_published

        return load_published("tinyimagenet-resize", root, **kw)
    check_method(method)
    return _built_from_test(
        "tinyimagenet-resize",
        root,
        split,
        {"method": method, "size": size},
        lambda images, sources: resize_dataset(
            images, name="tinyimagenet-resize", sources=sources, size=size, method=method
        ),
        kw,
    )
