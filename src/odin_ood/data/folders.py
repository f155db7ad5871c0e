"""Labelled image sets in the ``<split>/<class>/<file>`` layout, from a folder or a zip.

Order: when every file stem is an integer and no two are equal, the stems are taken as the
images' positions in the official set and images are ordered by them (the lossless
CIFAR-10 zip names each image by its index in the official test set, so this restores the
official order). Otherwise images are ordered by class, then by file name.
Labels are positions in ``classes`` (default: the sorted class folder names).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from odin_ood.data.cache import cached
from odin_ood.data.dataset import ImageDataset
from odin_ood.data.images import ImageSource, decode_images, fingerprint


def _order(members: Sequence[str], labels: Sequence[int]) -> list[int]:
    stems = [PurePosixPath(m).stem for m in members]
    if all(s.isdigit() for s in stems) and len(set(map(int, stems))) == len(stems):
        return sorted(range(len(members)), key=lambda i: int(stems[i]))
    return sorted(range(len(members)), key=lambda i: (labels[i], members[i]))


def load_class_folders(
    path: str | os.PathLike,
    split: str,
    *,
    name: str,
    mean: Sequence[float],
    std: Sequence[float],
    classes: Sequence[str] | None = None,
    workers: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> ImageDataset:
    """Load ``path`` (folder or zip) laid out as ``<split>/<class>/<image>`` as RGB images.

    Every image must sit exactly two levels below ``<split>/`` and every class folder must be
    one of ``classes`` (when given); a wrong layout is an error naming the file.
    """
    path = Path(path)
    with ImageSource(path) as src:
        members = src.images(f"{split}/")
        if not members:
            raise ValueError(f"{path}: no images under '{split}/<class>/<file>' (wrong layout or split?)")
        found = []
        for m in members:
            parts = PurePosixPath(m).parts
            if len(parts) != 3:
                raise ValueError(f"{path}!{m}: expected '{split}/<class>/<file>'")
            found.append(parts[1])
        class_list = tuple(classes) if classes is not None else tuple(sorted(set(found)))
        index = {c: i for i, c in enumerate(class_list)}
        unknown = sorted(set(found) - set(index))
        if unknown:
            raise ValueError(f"{path}: class folders {unknown} are not among {list(class_list)}")
        labels = [index[c] for c in found]
        order = _order(members, labels)
        members = [members[i] for i in order]
        labels = [labels[i] for i in order]
        source = fingerprint(src, members)

        def build() -> ImageDataset:
            images = decode_images(src, members, "RGB", workers=workers)
            manifest = {"sources": [source], "split": split, "format": "class-folders", "members": len(members)}
            return ImageDataset(
                images.transpose(0, 3, 1, 2),
                np.asarray(labels),
                name=name,
                mean=mean,
                std=std,
                manifest=manifest,
                classes=class_list,
            )

        params = {"source": source, "split": split, "classes": class_list, "n": len(members)}
        return cached(name, params, build, cache_dir=cache_dir, use_cache=use_cache)
