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


def read_idx(path: str | os.PathLike, max_item_bytes: int | None = None) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into an array; any truncation or bad header is an error
    naming the file. Only the bytes the header declares are read (and one more, to catch trailing
    data), so a small file cannot decompress into more memory than its header says; with
    ``max_item_bytes``, a header whose items (``data[i]``) are larger than that is refused first."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_TYPES:
                raise ValueError(f"{path}: not an IDX file (bad magic {head.hex()})")
            dims = f.read(4 * head[3])
            if len(dims) < 4 * head[3]:
                raise ValueError(f"{path}: truncated IDX header")
            shape = tuple(int(s) for s in np.frombuffer(dims, ">u4"))
            dtype = np.dtype(_IDX_TYPES[head[2]])
            item = int(np.prod(shape[1:])) * dtype.itemsize
            if max_item_bytes is not None and item > max_item_bytes:
                raise ValueError(f"{path}: each item of this IDX file is {item} bytes, over the limit of "
                                 f"{max_item_bytes} (--max-image-bytes)")
            size = int(np.prod(shape)) * dtype.itemsize
            raw = f.read(size + 1)
    except (EOFError, OSError, zlib.error) as exc:
        raise ValueError(f"{path}: cannot read IDX file ({exc}); is it truncated?") from exc
    if len(raw) != size:
        raise ValueError(f"{path}: IDX data is {'more than ' if len(raw) > size else ''}{len(raw)} bytes, "
                         f"header {shape} implies {size}; truncated or corrupt")
    return np.frombuffer(raw, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def is_idx(path: str | os.PathLike) -> bool:
    """Whether ``path`` (raw or ``.gz``) starts like an IDX file: two zero bytes and a known type."""
    path = Path(path)
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            head = f.read(4)
    except (EOFError, OSError, zlib.error):
        return False
    return len(head) == 4 and head[0] == 0 and head[1] == 0 and head[2] in _IDX_TYPES and head[3] >= 1


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
