"""MNIST and notMNIST from IDX files (LeCun's format), gzipped or raw.

IDX layout: two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions
``d``, then ``d`` big-endian uint32 sizes, then the data in C order. Images are
``(N, 28, 28)`` uint8 (0 = background, 255 = ink: white strokes on black); labels ``(N,)``.
notMNIST here is a 10,000-image sample of letters A-J (labels 0-9) in the same format.

A header may state any size up to (2**32 - 1)**d, so what it states is checked before anything
that size is allocated: a raw file must hold exactly the bytes its header declares (compared
with the file's size), a ``.gz`` file no more than deflate can expand its size to
(:data:`DEFLATE_MAX_RATIO`), and it is decompressed one chunk (:data:`CHUNK`) at a time, never
past what the header declares. :class:`IdxItems` reads a file item by item (a scored input):
a raw file in place, a ``.gz`` through an unlinked temporary file of at most ``max_bytes``, so
that a gzip bomb costs one chunk of memory.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np
from numpy.typing import DTypeLike

from odin_ood.data.dataset import (
    MNIST_MEAN,
    MNIST_STD,
    ImageDataset,
    find_file,
    resolve_root,
    source_record,
)

_IDX_TYPES: dict[int, DTypeLike] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_SPLIT_PREFIX = {"train": "train", "test": "t10k"}
CHUNK = 1 << 20
DEFLATE_MAX_RATIO = 1032  # deflate's largest expansion: 258 bytes from 2 bits


def read_idx(path: str | os.PathLike, max_item_bytes: int | None = None) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into an array; any truncation or bad header is an error
    naming the file. The header's sizes are checked against the file's (see the module
    docstring) and only the bytes it declares are read, so a small file cannot decompress into
    more memory than its header says; with ``max_item_bytes``, a header whose items
    (``data[i]``) are larger than that is refused first."""
    path = Path(path)
    with _opened(path) as f:
        shape, dtype, offset = _header(f, path, max_item_bytes)
        data = bytearray()
        _copy_data(f, path, shape, dtype, offset, data.extend)
    return np.frombuffer(data, dtype).reshape(shape).astype(dtype.newbyteorder("="))


class IdxItems:
    """The items (``data[i]``) of an IDX file, read one at a time by position: a raw file in
    place, a ``.gz`` file decompressed chunk by chunk into an unlinked temporary file first, of
    at most ``max_bytes`` (None: no limit). ``shape`` and ``dtype`` are the header's; an item
    over ``max_item_bytes`` is refused from the header."""

    def __init__(
        self, path: str | os.PathLike, max_item_bytes: int | None = None, max_bytes: int | None = None
    ) -> None:
        self.path = Path(path)
        with _opened(self.path) as f:
            self.shape, self.dtype, offset = _header(f, self.path, max_item_bytes)
            self.item_bytes = math.prod(self.shape[1:]) * self.dtype.itemsize
            _check_stored(self.path, self.shape, self.dtype, offset)
            if not _compressed(self.path):
                self.file: IO[bytes] = open(self.path, "rb")  # noqa: SIM115 -- the reader owns it (pread per item)
                self.offset = offset
                return
            total = math.prod(self.shape) * self.dtype.itemsize
            if max_bytes is not None and total > max_bytes:
                from odin_ood._utils.checks import readable

                raise ValueError(
                    f"{self.path}: the header declares {total} bytes of data {self.shape}, over "
                    f"--max-memory ({readable(max_bytes)}): a .gz IDX file is decompressed into a "
                    "temporary file that the budget bounds (gunzip it, or raise --max-memory)"
                )
            self.file, self.offset = tempfile.TemporaryFile(), 0  # noqa: SIM115 -- the reader owns it
            try:
                _copy_data(f, self.path, self.shape, self.dtype, offset, self.file.write)
            except BaseException:
                self.file.close()
                raise

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 0

    def __getitem__(self, i: int) -> np.ndarray:
        """Item ``i`` as an array of ``shape[1:]`` in native byte order; a file cut short since
        it was opened is a ``ValueError``."""
        raw = os.pread(self.file.fileno(), self.item_bytes, self.offset + i * self.item_bytes)
        if len(raw) != self.item_bytes:
            raise ValueError(
                f"{self.path}: item {i} is cut short ({len(raw)} of {self.item_bytes} bytes): "
                "the file changed after it was opened"
            )
        return np.frombuffer(raw, self.dtype).reshape(self.shape[1:]).astype(self.dtype.newbyteorder("="))


def _compressed(path: Path) -> bool:
    return path.suffix == ".gz"


def _opened(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if _compressed(path) else open(path, "rb")


def _header(f: io.BufferedIOBase, path: Path, max_item_bytes: int | None) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, bytes before the data) from the header; items over ``max_item_bytes`` refused."""
    try:
        head = f.read(4)
        if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_TYPES:
            raise ValueError(f"{path}: not an IDX file (bad magic {head.hex()})")
        dims = f.read(4 * head[3])
    except (EOFError, OSError, zlib.error) as exc:
        raise ValueError(f"{path}: cannot read IDX file ({exc}); is it truncated?") from None
    if len(dims) < 4 * head[3]:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(s) for s in np.frombuffer(dims, ">u4"))
    dtype = np.dtype(_IDX_TYPES[head[2]])
    item = math.prod(shape[1:]) * dtype.itemsize
    if max_item_bytes is not None and item > max_item_bytes:
        raise ValueError(
            f"{path}: each item of this IDX file is {item} bytes, over the limit of "
            f"{max_item_bytes} (--max-image-bytes)"
        )
    return shape, dtype, 4 + 4 * head[3]


def _check_stored(path: Path, shape: tuple[int, ...], dtype: np.dtype, offset: int) -> None:
    """Refuse a header that declares other data than the file can hold: a raw file must hold
    exactly that many bytes after its header, a .gz file at most DEFLATE_MAX_RATIO x its size."""
    total, stored = math.prod(shape) * dtype.itemsize, path.stat().st_size
    declared = f"{path}: the header declares {total} bytes of data {shape}"
    if _compressed(path) and total > DEFLATE_MAX_RATIO * stored:
        raise ValueError(
            f"{declared}, more than a gzip file of {stored} bytes can hold (deflate expands at most "
            f"{DEFLATE_MAX_RATIO}-fold): truncated or corrupt"
        )
    if not _compressed(path) and total != stored - offset:
        raise ValueError(
            f"{declared}, but the file holds {stored - offset} after its {offset}-byte header: truncated or corrupt"
        )


def _copy_data(
    f: io.BufferedIOBase,
    path: Path,
    shape: tuple[int, ...],
    dtype: np.dtype,
    offset: int,
    write: Callable[[bytes], object],
) -> None:
    """Pass the data after the header to ``write`` one chunk at a time: exactly the bytes the
    header declares (checked against the file's size first), else a ``ValueError``."""
    _check_stored(path, shape, dtype, offset)
    total, done = math.prod(shape) * dtype.itemsize, 0
    try:
        while done < total:
            chunk = f.read(min(CHUNK, total - done))
            if not chunk:
                break
            write(chunk)
            done += len(chunk)
        extra = f.read(1)
    except (EOFError, OSError, zlib.error) as exc:
        raise ValueError(f"{path}: cannot read IDX file ({exc}); is it truncated?") from None
    if done != total or extra:
        raise ValueError(
            f"{path}: IDX data is {'more than ' if extra else ''}{done} bytes, "
            f"header {shape} implies {total}; truncated or corrupt"
        )


def is_idx(path: str | os.PathLike) -> bool:
    """Whether ``path`` (raw or ``.gz``) starts like an IDX file: two zero bytes and a known type."""
    path = Path(path)
    try:
        with _opened(path) as f:
            head = f.read(4)
    except (EOFError, OSError, zlib.error):
        return False
    return len(head) == 4 and head[0] == 0 and head[1] == 0 and head[2] in _IDX_TYPES and head[3] >= 1


def load_idx_images(folder: Path, prefix: str, *, name: str, classes: tuple[str, ...] | None = None) -> ImageDataset:
    """``<prefix>-images-idx3-ubyte[.gz]`` + ``<prefix>-labels-idx1-ubyte[.gz]`` in ``folder``."""
    img_path = find_file(folder, [f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-images-idx3-ubyte"], f"{name} images")
    lbl_path = find_file(folder, [f"{prefix}-labels-idx1-ubyte.gz", f"{prefix}-labels-idx1-ubyte"], f"{name} labels")
    images, labels = read_idx(img_path), read_idx(lbl_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"{img_path}, {lbl_path}: expected images (N, H, W) and labels (N,); got {images.shape} and {labels.shape}"
        )
    manifest = {"sources": [source_record(img_path), source_record(lbl_path)], "format": "idx"}
    return ImageDataset(
        images[:, None],
        labels.astype(np.int64),
        name=name,
        mean=MNIST_MEAN,
        std=MNIST_STD,
        manifest=manifest,
        classes=classes,
    )


def _split_prefix(split: str) -> str:
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}")
    return _SPLIT_PREFIX[split]


def load_mnist(root: str | os.PathLike | None = None, split: str = "test") -> ImageDataset:
    """MNIST from ``root/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``
    (60,000 train / 10,000 test, 28x28 grey, raw [0,1] pixels: mean 0, std 1)."""
    folder = resolve_root(root) / "mnist"
    return load_idx_images(folder, _split_prefix(split), name="mnist", classes=tuple(str(d) for d in range(10)))


def load_notmnist(
    root: str | os.PathLike | None = None, split: str = "test", *, deduplicate: bool = False
) -> ImageDataset:
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
