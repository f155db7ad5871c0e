"""Image files from a folder or a zip, decoded in parallel into uint8 arrays.

:class:`ImageSource` addresses the files of a folder or a zip archive by their POSIX path
relative to it, so every loader works the same on an extracted copy and on the archive.
:func:`decode_images` reads the bytes once and decodes them with PIL in worker processes
(chunks of images per task; serial below a few thousand images, where start-up would
dominate). Decoding is the expensive step: loaders cache its result (see ``cache.py``).
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Literal, overload

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp")
_PARALLEL_MIN = 4000  # below this, decode in-process
_CHUNK = 1000


class ImageSource:
    """The files of a folder or a ``.zip``, as sorted POSIX paths relative to it."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        if self.path.is_dir():
            self.members = sorted(p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file())
        elif self.path.is_file():
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise ValueError(f"{self.path}: not a readable zip archive ({exc}); truncated?") from exc
            self.members = sorted(i.filename for i in self._zip.infolist() if not i.is_dir())
        else:
            raise FileNotFoundError(f"{self.path}: no such folder or zip archive")

    def read(self, member: str) -> bytes:
        """The bytes of one file; a damaged archive member is an error naming it."""
        try:
            if self._zip is not None:
                return self._zip.read(member)
            return (self.path / member).read_bytes()
        except (zipfile.BadZipFile, OSError, EOFError, KeyError) as exc:
            raise ValueError(f"{self.path}!{member}: cannot read ({exc})") from exc

    def images(self, under: str = "") -> list[str]:
        """Image files (by suffix) whose path starts with ``under``."""
        return [m for m in self.members if m.startswith(under) and PurePosixPath(m).suffix.lower() in IMAGE_SUFFIXES]

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _decode_one(label: str, blob: bytes, mode: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(blob)) as im:
            im.load()
            return np.asarray(im.convert(mode), dtype=np.uint8)
    except Exception as exc:  # PIL raises many types for corrupt data
        raise ValueError(f"{label}: cannot decode image ({type(exc).__name__}: {exc})") from exc


def _decode_chunk(labels: Sequence[str], blobs: Sequence[bytes], mode: str) -> list[np.ndarray]:
    return [_decode_one(lab, b, mode) for lab, b in zip(labels, blobs, strict=True)]


@overload
def decode_images(
    source: ImageSource,
    members: Sequence[str],
    mode: str = ...,
    *,
    workers: int | None = ...,
    stack: Literal[True] = ...,
) -> np.ndarray: ...
@overload
def decode_images(
    source: ImageSource, members: Sequence[str], mode: str = ..., *, workers: int | None = ..., stack: Literal[False]
) -> list[np.ndarray]: ...
def decode_images(
    source: ImageSource,
    members: Sequence[str],
    mode: str = "RGB",
    *,
    workers: int | None = None,
    stack: bool = True,
) -> np.ndarray | list[np.ndarray]:
    """Decode ``members`` of ``source`` with PIL, converted to ``mode`` ("RGB" or "L").

    Returns an ``(N, H, W, C)`` uint8 array when ``stack`` (all images must share a size; the
    first that does not is named), else a list of ``(H, W, C)`` arrays. ``workers`` processes
    decode in parallel (default: the CPU count, at most 8).
    """
    labels = [f"{source.path}!{m}" for m in members]
    blobs = [source.read(m) for m in members]
    workers = min(8, os.cpu_count() or 1) if workers is None else workers
    if workers > 1 and len(blobs) >= _PARALLEL_MIN:
        starts = range(0, len(blobs), _CHUNK)
        with ProcessPoolExecutor(workers) as pool:
            parts = pool.map(
                _decode_chunk,
                [labels[s : s + _CHUNK] for s in starts],
                [blobs[s : s + _CHUNK] for s in starts],
                [mode] * len(starts),
            )
            arrays = [a for part in parts for a in part]
    else:
        arrays = _decode_chunk(labels, blobs, mode)
    arrays = [a[..., None] if a.ndim == 2 else a for a in arrays]
    if not stack:
        return arrays
    if not arrays:
        return np.zeros((0, 0, 0, len(mode)), np.uint8)
    first = arrays[0].shape
    for lab, a in zip(labels, arrays, strict=True):
        if a.shape != first:
            raise ValueError(f"{lab}: image is {a.shape}, expected {first} like {labels[0]}")
    return np.stack(arrays)


def fingerprint(source: ImageSource, members: Sequence[str]) -> dict[str, str]:
    """Identity of the bytes behind ``members``: the sha256 of a zip file, or for a folder a
    sha256 over each member's name, size and modification time (cheap; no file is read)."""
    from odin_ood.data.dataset import sha256_file

    if source.path.is_file():
        return {"path": str(source.path), "sha256": sha256_file(source.path)}
    h = hashlib.sha256()
    for m in members:
        st = (source.path / m).stat()
        h.update(f"{m}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return {"path": str(source.path), "listing_sha256": h.hexdigest()}
