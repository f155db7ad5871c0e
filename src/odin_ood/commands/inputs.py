"""The images to score, in one deterministic order, addressable by index.

An input argument is an image folder (every image file below it, sorted by relative POSIX
path), a ``.zip`` (its image members, sorted by name, duplicates in archive order), one image
file, an IDX file of images (MNIST's format, raw or ``.gz``: unsigned bytes (N, H, W) or
(N, H, W, C); image i is named ``FILE!i``), WebDataset tar shards (a ``.tar``, a folder of them or
a brace pattern: :mod:`odin_ood.commands.webdataset`), a Parquet file with an image column
(:mod:`odin_ood.commands.parquet_images`) or a dataset name known to ``odin_ood.data``
(``mnist`` or ``mnist:train``; images in the dataset's order). Arguments are concatenated in the
order given; ``limit`` keeps the first images only (arguments after it are not even listed).
Shards and Parquet files carry a ``label`` per image (``labelled``). Only the file listing is held in memory; images are
read one at a time, at most ``max_image_bytes`` each (checked from the file's or member's declared size before reading,
and again while reading: a zip member may lie about its size). An IDX file's images are read one at a
time too (:class:`odin_ood.data.idx.IdxItems`: in place, or a ``.gz`` through a temporary file
of at most ``max_memory`` bytes), its header checked against the file's size first, and each is
refused (413) when over ``--max-side`` like the same picture in a PNG.

``source(i)`` names image i (``folder/a/b.png``, ``archive.zip!a/b.png``, ``mnist:test/17``),
written losslessly in UTF-8 (see :func:`printable`); ``load(i)`` returns its decoded pixels or
raises :class:`InputError` (the row's error) for an image that cannot be read: a damaged zip
member, a file over the byte cap, an I/O error, a skipped symlink. Members of a zip are read
from the archive by index, never extracted, so no name inside it can reach a path outside it
and a name that occurs twice is scored twice, once per member. Symbolic links below a folder
whose target lies outside it are not followed unless ``follow_symlinks`` (each such entry still
gets its row, with the reason); neither are links to folders inside it (their images are listed
under their real path). The listing records each file's device and inode; a file is read only
through a descriptor that was opened without blocking and without following a link the listing
did not see, and that is that very regular file, so whatever is swapped in after the listing (a
link to outside, a FIFO, another file) gets an error row and is never read or waited on. A zip
is listed compactly (:mod:`odin_ood.commands.zips`).
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
from PIL import Image

from odin_ood._utils.checks import short
from odin_ood.commands.listing import is_image, printable, read_capped, read_listed, walk
from odin_ood.commands.zips import Members
from odin_ood.data.images import IMAGE_SUFFIXES
from odin_ood.preprocess import InputError, Preprocessing, check_side, decode
from odin_ood.scores.memory import DEFAULT_MAX_MEMORY

if TYPE_CHECKING:
    from odin_ood.commands.parquet_images import ParquetImages
    from odin_ood.commands.webdataset import Shards

MAX_IMAGE_BYTES = 32 * 1024 * 1024
LARGEST_IMAGE_BYTES = 1 << 30  # --max-image-bytes at most: read() takes it as a C size


class _Folder:
    def __init__(self, path: Path, max_bytes: int, follow_symlinks: bool) -> None:
        self.path, self.max_bytes = path, max_bytes
        self.prefix = printable(f"{path}/")
        self.entries = walk(path, follow_symlinks)  # (relative name, reason it is skipped or "", identity)

    def __len__(self) -> int:
        return len(self.entries)

    def name(self, i: int) -> str:
        return self.prefix + printable(self.entries[i][0])

    def load(self, i: int, spec: Preprocessing) -> Image.Image:
        member, skipped, identity = self.entries[i]
        label = self.name(i)
        if skipped:
            raise InputError(f"{label}: {skipped}")
        return read_listed(self.path / member, identity, self.max_bytes, spec, label)


class _File:
    """One image file given as an input (read like a folder's, through its listed identity)."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        st = os.stat(path)
        self.path, self.max_bytes, self.label = path, max_bytes, printable(str(path))
        self.identity = (st.st_dev, st.st_ino, os.path.islink(path))

    def __len__(self) -> int:
        return 1

    def name(self, i: int) -> str:
        return self.label

    def load(self, i: int, spec: Preprocessing) -> Image.Image:
        return read_listed(self.path, self.identity, self.max_bytes, spec, self.label)


class _Idx:
    """The images of an IDX file (unsigned bytes, (N, H, W) or (N, H, W, C) with C = 1 or 3),
    read one at a time."""

    def __init__(self, path: Path, max_bytes: int, max_memory: int) -> None:
        from odin_ood.data.idx import IdxItems

        label = printable(str(path))
        try:
            self.images = IdxItems(path, max_item_bytes=max_bytes, max_bytes=max_memory)
        except ValueError as exc:
            raise ValueError(f"input {exc}") from None
        shape = self.images.shape
        if self.images.dtype != np.uint8 or not (len(shape) == 3 or (len(shape) == 4 and shape[3] in (1, 3))):
            raise ValueError(
                f"input {label}: an IDX file of {self.images.dtype} {shape}, not images: expected "
                "unsigned bytes (N, H, W) or (N, H, W, C) with C = 1 or 3 (a labels file?)"
            )
        self.prefix = f"{label}!"

    def __len__(self) -> int:
        return len(self.images)

    def name(self, i: int) -> str:
        return f"{self.prefix}{i}"

    def load(self, i: int, spec: Preprocessing) -> np.ndarray:
        h, w = self.images.shape[1:3]
        check_side((w, h), spec, self.name(i))
        try:
            return self.images[i]
        except ValueError as exc:
            raise InputError(f"{self.name(i)}: {exc}") from None


class _Zip:
    def __init__(self, path: Path, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        try:
            self.members = Members(path, is_image)
        except Exception as exc:  # a damaged central directory: BadZipFile, struct.error, UnicodeDecodeError...
            raise ValueError(f"input {path}: not a readable zip archive ({type(exc).__name__}: {exc})") from None
        self.prefix = printable(f"{path}!")

    def __len__(self) -> int:
        return len(self.members)

    def name(self, i: int) -> str:
        return self.prefix + printable(self.members.names[i])

    def load(self, i: int, spec: Preprocessing) -> Image.Image:
        label = self.name(i)
        try:
            info = self.members.info(i)
            with self.members.zip.open(info) as f:
                blob = read_capped(f, info.file_size, self.max_bytes, label)
        except InputError:
            raise
        except Exception as exc:  # damaged member: encrypted, unknown method, bad deflate data, CRC...
            raise InputError(f"{label}: cannot read this zip member ({type(exc).__name__}: {exc})") from None
        return decode(blob, spec, label)


class _Dataset:
    def __init__(self, name: str, split: str, root: str | None) -> None:
        from odin_ood import data

        self.dataset = data.load(name, root=root, split=split)
        self.prefix = f"{name}:{split}/"

    def __len__(self) -> int:
        return len(self.dataset)

    def name(self, i: int) -> str:
        return f"{self.prefix}{i}"

    def load(self, i: int, spec: Preprocessing) -> np.ndarray:
        return self.dataset.images[i].permute(1, 2, 0).numpy()


_Part = Union[_Folder, _Zip, _File, _Idx, _Dataset, "Shards", "ParquetImages"]


class Inputs:
    """The concatenation of input folders, zips, image and IDX files, shards, Parquet files and
    datasets (see the module docstring); Parquet's ``image_column``/``label_column`` and row group
    budget (a quarter of ``max_memory``) are :class:`~odin_ood.commands.parquet_images.ParquetImages`'."""

    def __init__(
        self,
        arguments: Sequence[str | os.PathLike],
        data_root: str | None = None,
        max_image_bytes: int = MAX_IMAGE_BYTES,
        follow_symlinks: bool = False,
        max_memory: int = DEFAULT_MAX_MEMORY,
        image_column: str = "image",
        label_column: str = "label",
        limit: int | None = None,
    ) -> None:
        if not arguments:
            raise ValueError(
                "no INPUT given: pass image folders, zips, image or IDX files, shards, Parquet files or dataset names"
            )
        if not 1 <= max_image_bytes <= LARGEST_IMAGE_BYTES:
            raise ValueError(f"--max-image-bytes must lie in [1, {LARGEST_IMAGE_BYTES}], got {short(max_image_bytes)}")
        if limit is not None and limit < 1:
            raise ValueError(f"--limit must be >= 1, got {short(limit)}")
        self.parts: list[_Part] = []
        self.starts = [0]
        for a in arguments:
            if limit is not None and self.starts[-1] >= limit:
                break
            self.parts.append(
                _part(
                    str(a),
                    data_root,
                    max_image_bytes,
                    follow_symlinks,
                    max_memory,
                    (image_column, label_column),
                    None if limit is None else limit - self.starts[-1],
                )
            )
            self.starts.append(self.starts[-1] + len(self.parts[-1]))
        self.length = self.starts[-1] if limit is None else min(limit, self.starts[-1])
        self.labelled = labelled(arguments)

    def __len__(self) -> int:
        return self.length

    def _locate(self, i: int) -> tuple[_Part, int]:
        if not 0 <= i < len(self):
            raise IndexError(f"input index {i} out of range 0..{len(self) - 1}")
        k = bisect.bisect_right(self.starts, i) - 1
        return self.parts[k], i - self.starts[k]

    def source(self, i: int) -> str:
        part, j = self._locate(i)
        return part.name(j)

    def label(self, i: int) -> int | None:
        """Image i's label (shards' ``.cls``/``.json``, Parquet's label column), else None."""
        from odin_ood.commands.parquet_images import ParquetImages
        from odin_ood.commands.webdataset import Shards

        part, j = self._locate(i)
        return part.label(j) if isinstance(part, (Shards, ParquetImages)) else None

    def load(self, i: int, spec: Preprocessing) -> Image.Image | np.ndarray:
        """The pixels of image i; an unreadable or undecodable image raises ``InputError`` naming it."""
        part, j = self._locate(i)
        return part.load(j, spec)


def kind(argument: str) -> str:
    """What an input argument names: folder, shards, zip, parquet, file (one image), idx or dataset."""
    from odin_ood.commands.webdataset import is_pattern, is_shard_folder
    from odin_ood.data.idx import is_idx

    path = Path(argument)
    if path.is_dir():
        return "shards" if is_shard_folder(path) else "folder"
    suffix = path.suffix.lower()
    if path.is_file() and suffix in (".zip", ".tar", ".parquet"):
        return {".zip": "zip", ".tar": "shards", ".parquet": "parquet"}[suffix]
    if path.is_file() and is_image(path.name):
        return "file"
    if path.is_file() and is_idx(path):
        return "idx"
    return "shards" if is_pattern(argument) else "dataset"


def labelled(arguments: Sequence[str | os.PathLike]) -> bool:
    """Whether rows of these inputs have a ``label`` column: some argument is shards or Parquet."""
    return any(kind(str(a)) in ("shards", "parquet") for a in arguments)


def _part(
    argument: str,
    data_root: str | None,
    max_bytes: int,
    follow_symlinks: bool,
    max_memory: int,
    columns: tuple[str, str],
    limit: int | None,
) -> _Part:
    from odin_ood.commands.parquet_images import ParquetImages
    from odin_ood.commands.webdataset import Shards

    path, what = Path(argument), kind(argument)
    if what == "folder":
        part: _Part = _Folder(path, max_bytes, follow_symlinks)
    elif what == "shards":
        part = Shards(argument, max_bytes, follow_symlinks, limit)
    elif what == "zip":
        part = _Zip(path, max_bytes)
    elif what == "parquet":
        part = ParquetImages(path, *columns, max_bytes, max_memory, limit)
    elif what == "file":
        return _File(path, max_bytes)
    elif what == "idx":
        part = _Idx(path, max_bytes, max_memory)
    else:
        return _dataset(argument, path, data_root)
    if not len(part):
        raise ValueError(f"input {printable(argument)}: no image files found")
    return part


def _dataset(argument: str, path: Path, data_root: str | None) -> _Dataset:
    from odin_ood import data

    name, _, split = argument.partition(":")
    if name in data.names():
        return _Dataset(name, split or "test", data_root)
    if path.exists():
        raise ValueError(
            f"input {printable(argument)}: not a folder, a .zip archive, an image file "
            f"({', '.join(sorted(IMAGE_SUFFIXES))}) or an IDX file"
        )
    raise ValueError(
        f"input {printable(argument)}: no such folder or zip, and not a dataset name ({', '.join(data.names())})"
    )
