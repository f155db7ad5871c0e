"""CIFAR-80 / CIFAR-20 (section 4.2, "same-manifold datasets"): CIFAR-100's 100 fine classes
split at random into 80 in-distribution and 20 out-of-distribution classes.

The split is a seeded permutation (numpy PCG64): the first 20 classes of
``default_rng(seed).permutation(100)`` are CIFAR-20, the rest CIFAR-80; both lists are kept
sorted and recorded in the manifest. CIFAR-80 labels are remapped to 0..79 by position in the
sorted list of its original class ids; CIFAR-20 is unlabelled (-1) unless ``labelled=True``
(then 0..19 the same way).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from odin_ood.data.dataset import ImageDataset

NUM_CLASSES = 100
NUM_OUT = 20


def split_classes(
    seed: int = 0, num_classes: int = NUM_CLASSES, num_out: int = NUM_OUT
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(in-distribution classes, out-of-distribution classes), each sorted; disjoint, covering
    ``range(num_classes)``."""
    if not 0 < num_out < num_classes:
        raise ValueError(f"num_out must be in 1..{num_classes - 1}; got {num_out}")
    perm = np.random.default_rng(seed).permutation(num_classes)
    return tuple(sorted(int(c) for c in perm[num_out:])), tuple(sorted(int(c) for c in perm[:num_out]))


def select_classes(
    ds: ImageDataset, classes: tuple[int, ...], *, name: str, labelled: bool = True, record: dict | None = None
) -> ImageDataset:
    """The images of ``ds`` whose label is in ``classes``; labels become positions in
    ``classes`` (or -1 when not ``labelled``)."""
    lookup = torch.full((max(int(ds.labels.max()), max(classes)) + 1,), -1, dtype=torch.int64)
    lookup[torch.tensor(classes)] = torch.arange(len(classes))
    keep = torch.nonzero(lookup[ds.labels] >= 0).flatten()
    labels = lookup[ds.labels[keep]] if labelled else torch.full((len(keep),), -1)
    names = tuple(ds.classes[c] for c in classes) if ds.classes is not None and labelled else None
    manifest = dict(ds.manifest, name=name, original_classes=list(classes), **(record or {}))
    return ImageDataset(ds.images[keep], labels, name=name, mean=ds.mean, std=ds.std, manifest=manifest, classes=names)


def _load(which: str, root: Any, split: str, seed: int, labelled: bool) -> ImageDataset:
    from odin_ood.data.cifar import load_cifar100

    inside, outside = split_classes(seed)
    record = {"split_seed": seed, "cifar80_classes": list(inside), "cifar20_classes": list(outside)}
    full = load_cifar100(root, split, label="fine")
    classes = inside if which == "cifar80" else outside
    return select_classes(full, classes, name=which, labelled=labelled, record=record)


def load_cifar80(root: str | os.PathLike | None = None, split: str = "test", *, seed: int = 0) -> ImageDataset:
    """CIFAR-80: the 80 in-distribution classes, labels remapped to 0..79."""
    return _load("cifar80", root, split, seed, True)


def load_cifar20(
    root: str | os.PathLike | None = None, split: str = "test", *, seed: int = 0, labelled: bool = False
) -> ImageDataset:
    """CIFAR-20: the other 20 classes (the OOD set for CIFAR-80 models)."""
    return _load("cifar20", root, split, seed, labelled)
