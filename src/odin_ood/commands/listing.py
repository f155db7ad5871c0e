"""Files listed once and read safely: the listing of a folder's images (links leaving it
reported, never followed unless asked) and the reading of a listed file through a descriptor
proven to be that very regular file, at most ``--max-image-bytes`` of it. Shared by the inputs
(:mod:`odin_ood.commands.inputs`), WebDataset shards (:mod:`odin_ood.commands.webdataset`) and
Parquet files (:mod:`odin_ood.commands.parquet_images`); names are written with :func:`printable`.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath
from typing import IO

from PIL import Image

from odin_ood.data.images import IMAGE_SUFFIXES
from odin_ood.preprocess import InputError, Preprocessing, decode


def printable(name: str) -> str:
    """``name`` in plain UTF-8, losslessly: a backslash becomes ``\\\\`` and each byte that is not
    UTF-8 (decoded by the OS as a lone surrogate, as ``os.fsdecode`` does) becomes ``\\xNN``."""
    if name.isascii() and "\\" not in name:
        return name
    return name.replace("\\", "\\\\").encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def read_listed(
    path: Path, identity: tuple[int, int, bool], max_bytes: int, spec: Preprocessing, label: str
) -> Image.Image:
    with os.fdopen(open_listed(path, identity, label), "rb") as f:
        try:
            blob = read_capped(f, os.fstat(f.fileno()).st_size, max_bytes, label)
        except OSError as exc:
            raise InputError(f"{label}: cannot read ({exc.strerror or exc})") from None
    return decode(blob, spec, label)


NOFOLLOW = getattr(os, "ONOFOLLOW", 0)
OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


def open_listed(path: Path, identity: tuple[int, int, bool], label: str) -> int:
    """A descriptor of the very file listed at ``path``: opened without blocking (a FIFO swapped
    in opens at once) and without following a final symbolic link the listing did not see, then
    checked on the descriptor itself: a regular file with the listed device and inode. Anything
    swapped in after the listing (a link to outside the folder, a FIFO, another file) is refused."""
    dev, ino, was_link = identity
    try:
        fd = os.open(path, OPEN_FLAGS | (0 if was_link else NOFOLLOW))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"{label}: replaced by a symbolic link after it was listed: not followed") from None
        raise InputError(f"{label}: cannot read ({exc.strerror or exc})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (dev, ino):
        os.close(fd)
        now = "another file" if stat.S_ISREG(st.st_mode) else "not a regular file"
        raise InputError(f"{label}: replaced after it was listed (now {now}): not read")
    return fd


def read_capped(f: IO[bytes], declared: int, limit: int, label: str) -> bytes:
    too_big = f"{label}: over the limit of {limit} bytes per image (--max-image-bytes)"
    if declared > limit:
        raise InputError(f"{too_big}: it is {declared} bytes", 413)
    blob = f.read(limit + 1)
    if len(blob) > limit:
        raise InputError(too_big, 413)
    return blob


def is_image(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES


def walk(root: Path, follow_symlinks: bool) -> list[tuple[str, str, tuple[int, int, bool]]]:
    """(POSIX path relative to ``root``, reason it is skipped or "", (device, inode, is a link)
    of the file it names) for each image file below ``root`` and each link leaving it, sorted by path."""
    real_root = os.path.realpath(root)
    outside = "a symbolic link to outside the input folder: not followed (pass --follow-symlinks to follow it)"
    entries: list[tuple[str, str, tuple[int, int, bool]]] = []
    seen = {real_root}
    for folder, dirs, files in os.walk(root, followlinks=follow_symlinks):
        kept = []
        for d in dirs:
            full = os.path.join(folder, d)
            real = os.path.realpath(full)
            if not os.path.islink(full):
                kept.append(d)
            elif follow_symlinks and real not in seen:  # links are followed once each: no cycles
                seen.add(real)
                kept.append(d)
            elif not follow_symlinks and not _inside(real, real_root):
                entries.append((_relative(full, root), outside, NO_FILE))
        dirs[:] = kept
        for f in files:
            if is_image(f):
                full = os.path.join(folder, f)
                entries.append((_relative(full, root), *check_listed(full, real_root, follow_symlinks, outside)))
    return sorted(entries)


NO_FILE = (0, 0, False)


def check_listed(path: str, real_root: str, follow_symlinks: bool, outside: str) -> tuple[str, tuple[int, int, bool]]:
    """(reason ``path`` is skipped or "", the identity of the file it names)."""
    is_link = os.path.islink(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        return ("a broken symbolic link" if is_link else f"cannot read ({exc.strerror})"), NO_FILE
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file", NO_FILE
    if is_link and not follow_symlinks and not _inside(os.path.realpath(path), real_root):
        return outside, NO_FILE
    return "", (st.st_dev, st.st_ino, is_link)


def _inside(real: str, real_root: str) -> bool:
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def _relative(path: str, root: Path) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")
