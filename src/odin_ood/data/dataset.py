"""The in-memory image dataset every loader returns, and where loaders find their files.

An :class:`ImageDataset` holds the whole set as one uint8 tensor ``images`` of shape
``(N, C, H, W)`` and an int64 tensor ``labels`` (``-1`` = unlabelled, as for OOD sets).
Indexing returns ``(x, y)`` with ``x = images[i] / 255`` (float32 in [0, 1]) — the only
transform applied. Normalisation is *not* applied, and never taken from the dataset:
``mean``/``std`` are the conventional channel statistics of the dataset's family (CIFAR's for
32x32 RGB sets, raw pixels for MNIST-like sets), for information only. A checkpoint may have been
trained with other statistics (the public ResNet-20 used ImageNet's), so odin-ood always applies
the model's own ``(x - input_mean) / input_std``. ``manifest`` is JSON-serialisable provenance:
source files with their sha256, seed, build method, count.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from odin_ood._utils.checks import named

# Normalisation conventions (per channel, on [0, 1] pixels).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
# The paper's MNIST classifier (Hendrycks & Gimpel, 2017) takes raw [0, 1] pixels.
MNIST_MEAN = (0.0,)
MNIST_STD = (1.0,)

DATA_ENV = "ODIN_OOD_DATA"


class ImageDataset(Dataset):
    """A labelled image set held in memory; ``ds[i] -> (float32 (C,H,W) in [0,1], int label)``."""

    def __init__(
        self,
        images: torch.Tensor | np.ndarray,
        labels: torch.Tensor | np.ndarray | None = None,
        *,
        name: str,
        mean: Sequence[float],
        std: Sequence[float],
        manifest: dict[str, Any] | None = None,
        classes: Sequence[str] | None = None,
    ) -> None:
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be a uint8 tensor (N, C, H, W); got {images.dtype} {tuple(images.shape)}")
        n, c = images.shape[:2]
        if labels is None:
            labels = torch.full((n,), -1, dtype=torch.int64)
        labels = torch.as_tensor(labels).to(torch.int64)
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},); got {tuple(labels.shape)}")
        if len(mean) != c or len(std) != c:
            raise ValueError(f"mean/std must have {c} entries (one per channel); got {mean}, {std}")
        self.images = images.contiguous()
        self.labels = labels
        self.name = name
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.classes = tuple(classes) if classes is not None else None
        self.manifest = dict(manifest or {})
        self.manifest.setdefault("name", name)
        self.manifest["count"] = n

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index].float().div_(255.0), int(self.labels[index])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole set at once: (float32 (N,C,H,W) in [0,1], int64 labels)."""
        return self.images.float().div_(255.0), self.labels

    def subset(self, indices: Sequence[int] | torch.Tensor | np.ndarray, name: str | None = None) -> ImageDataset:
        """A new dataset holding ``indices`` (same normalisation; manifest records the parent)."""
        idx = torch.as_tensor(indices, dtype=torch.int64)
        manifest = dict(self.manifest, parent=self.manifest.get("name", self.name))
        return ImageDataset(
            self.images[idx],
            self.labels[idx],
            name=name or self.name,
            mean=self.mean,
            std=self.std,
            manifest=manifest,
            classes=self.classes,
        )

    def __repr__(self) -> str:
        return f"ImageDataset({self.name!r}, n={len(self)}, shape={self.shape})"


def resolve_root(root: str | os.PathLike | None) -> Path:
    """The data root: ``root`` if given, else ``$ODIN_OOD_DATA``; it must be an existing folder."""
    if root is None:
        env = os.environ.get(DATA_ENV)
        if not env:
            raise FileNotFoundError(
                f"no data root: pass {named('root=...', '--data-root DIR')} (a folder laid out like DIR/mnist, "
                f"DIR/cifar10, ...) or set ${DATA_ENV}"
            )
        root = env
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"data root {path} does not exist or is not a folder")
    return path


def find_file(folder: Path, candidates: Sequence[str], what: str) -> Path:
    """The first of ``candidates`` (names inside ``folder``) that exists, else a clear error."""
    for name in candidates:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{what}: expected one of {', '.join(str(folder / c) for c in candidates)}")


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (memoised on path, size and mtime)."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _SHA_MEMO[key] = h.hexdigest()
    return _SHA_MEMO[key]


def source_record(path: str | os.PathLike) -> dict[str, str]:
    """Manifest entry for a source file: its path and sha256."""
    return {"path": str(path), "sha256": sha256_file(path)}
