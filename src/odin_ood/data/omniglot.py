"""Omniglot handwritten characters as an OOD set for MNIST models (Appendix A.1).

Source: the original Omniglot zips (or their extracted folders) under ``root/omniglot/``,
each holding ``<zip stem>/<alphabet>/<character>/<id>.png``: 105x105, 1-bit, black strokes
on white. Every ``*.zip`` there is read (members directly, no extraction), in name order,
then alphabet/character/file order; an extracted folder is used where no zip of that name is.

Conversion to the MNIST convention (the choice is ours; the paper does not say):
1. invert, so strokes are white (255) on black (0) like MNIST;
2. downsample 105 -> 28 with ``method`` (default ``"box"``: each output pixel is the mean of
   its 3.75x3.75 footprint), which turns the 1-bit strokes into anti-aliased grey edges as in
   MNIST, whose digits were anti-aliased when size-normalised. Strokes stay thin (Omniglot
   pens are ~2 px wide at 28x28), and characters are not re-centred by mass as MNIST's are.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from odin_ood.data.build import check_method, resize_images
from odin_ood.data.dataset import MNIST_MEAN, MNIST_STD, ImageDataset, resolve_root, sha256_file
from odin_ood.data.images import ImageSource, decode_images

DEFAULT_METHOD = "box"


def omniglot_sources(root: str | os.PathLike | None) -> list[Path]:
    """The zips (or extracted folders) under ``root/omniglot``, in name order."""
    folder = resolve_root(root) / "omniglot"
    zips = sorted(folder.glob("*.zip")) if folder.is_dir() else []
    folders = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    sources = zips + [f for f in folders if not (folder / f"{f.name}.zip").exists()]
    if not sources:
        raise FileNotFoundError(
            f"Omniglot: expected zips such as {folder / 'images_background.zip'} (or extracted "
            f"folders) holding <set>/<alphabet>/<character>/<id>.png"
        )
    return sorted(sources)


def load_omniglot(root: str | os.PathLike | None = None, split: str = "test", *,
                  size: int = 28, method: str = DEFAULT_METHOD,
                  workers: int | None = None) -> ImageDataset:
    """All Omniglot images found under ``root/omniglot`` as (N, 1, size, size) MNIST-style
    images (white strokes on black), unlabelled."""
    if split != "test":
        raise ValueError(f"omniglot is an OOD set with only split 'test'; got {split!r}")
    check_method(method)
    parts, records = [], []
    for path in omniglot_sources(root):
        with ImageSource(path) as src:
            members = src.images()
            bad = [m for m in members if len(Path(m).parts) != 4]
            if bad or not members:
                raise ValueError(f"{path}: expected <set>/<alphabet>/<character>/<id>.png; "
                                 f"found {bad[:1] or 'no images'}")
            parts.append(decode_images(src, members, "L", workers=workers))
        records.append({"path": str(path), "images": len(members),
                        **({"sha256": sha256_file(path)} if path.is_file() else {})})
    inverted = 255 - np.concatenate(parts)
    small = resize_images(inverted, size, method)
    manifest = {"sources": records, "convert": f"invert, resize {size}x{size} ({method})",
                "method": method}
    return ImageDataset(small.transpose(0, 3, 1, 2), name="omniglot", mean=MNIST_MEAN,
                        std=MNIST_STD, manifest=manifest)
