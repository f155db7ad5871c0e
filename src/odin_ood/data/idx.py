"""MNIST and notMNIST from IDX files (LeCun's format), gzipped or raw.

IDX layout: two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions
``d``, then ``d`` big-endian uint32 sizes, then the data in C order. Images are
``(N, 28, 28)`` uint8 (0 = background, 255 = ink: white strokes on black); labels ``(N,)``.
notMNIST here is a 10,000-image sample of letters A-J (labels 0-9) in the same format.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from odin_ood.data.dataset import (
    MNIST_MEAN, MNIST_STD, ImageDataset, find_file, resolve_root, source_record,
)

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_SPLIT_PREFIX = {"train": "train", "test": "t10k"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into an array; any truncation or bad header is an error
    naming the file."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (EOFError, OSError, zlib.error) as exc:
        raise ValueError(f"{path}: cannot read IDX file ({exc}); is it truncated?") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{path}: IDX data is {len(raw)} bytes, header {shape} implies {expected}; truncated or corrupt"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def load_idx_images(
    folder: Path, prefix: str, *, name: str, classes: tuple[str, ...] | None = None
) -> ImageDataset:
    """``<prefix>-images-idx3-ubyte[.gz]`` + ``<prefix>-labels-idx1-ubyte[.gz]`` in ``folder``."""
    img_path = find_file(folder, [f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-images-idx3-ubyte"],
                         f"{name} images")
    lbl_path = find_file(folder, [f"{prefix}-labels-idx1-ubyte.gz", f"{prefix}-labels-idx1-ubyte"],
                         f"{name} labels")
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"{img_path}, {lbl_path}: expected images (N, H, W) and labels (N,); "
            f"got {images.shape} and {labels.shape}"
        )
    manifest = {"sources": [source_record(img_path), source_record(lbl_path)], "format": "idx"}
    return ImageDataset(images[:, None], labels.astype(np.int64), name=name, mean=MNIST_MEAN,
                        std=MNIST_STD, manifest=manifest, classes=classes)


def _split_prefix(split: str) -> str:
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    return _SPLIT_PREFIX[split]


def load_mnist(root: str | os.PathLike | None = None, split: str = "test") -> ImageDataset:
    """MNIST from ``root/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``
    (60,000 train / 10,000 test, 28x28 grey, raw [0,1] pixels: mean 0, std 1)."""
    folder = resolve_root(root) / "mnist"
    return load_idx_images(folder, _split_prefix(split), name="mnist",
                           classes=tuple(str(d) for d in range(10)))


def load_notmnist(root: str | os.PathLike | None = None, split: str = "test", *,
                  deduplicate: bool = False) -> ImageDataset:
    """notMNIST from ``root/notmnist/t10k-*-ubyte[.gz]`` (letters A-J as labels 0-9, 28x28 grey,
    white glyphs on black, values /255 in [0, 1] like MNIST's). notMNIST holds repeated glyphs
    (196 of the 10,000 here); ``deduplicate`` keeps the first image of each content, so that
    no glyph can sit in both a tuning and an evaluation split. The manifest records both choices
    (Hendrycks & Gimpel fed the Udacity pickle's values in [-0.5, 0.5] instead)."""
    from odin_ood.data.content import unique_by_content

    folder = resolve_root(root) / "notmnist"
    ds = load_idx_images(folder, _split_prefix(split), name="notmnist", classes=tuple("ABCDEFGHIJ"))
    ds.manifest["value_range"] = "[0, 1]: uint8 / 255, as MNIST"
    if deduplicate:
        keep = unique_by_content(ds.images.numpy())
        dropped = len(ds) - len(keep)
        ds = ds.subset(keep)
        ds.manifest["duplicates_dropped"] = int(dropped)
    ds.manifest["deduplicate"] = bool(deduplicate)
    return ds
