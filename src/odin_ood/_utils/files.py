"""Every file odin-ood writes is written this way: nothing through a symbolic link, and a reader
sees the old file or the whole new one.

A new file is created beside the target under a fresh name, exclusively (``O_EXCL`` with
``O_NOFOLLOW``: never through a link planted at that name), written, flushed and fsync'ed, then
renamed over the target (a rename replaces a link, never follows it). A symbolic link (even a
dangling one) or something not a regular file already at the target is refused, unchanged, in one
line naming the option that chose the path. Used for the detector file, ``fit.json``, the reports,
the exported graph, the caches, training checkpoints and ``score``'s outputs
(:mod:`odin_ood.commands.writers`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BLOCK = 1 << 20


def not_ours(command: str | None, option: str) -> str:
    """Why an existing path is left alone: it is not a file odin-ood (``command``) wrote."""
    who = f"odin-ood {command}" if command else "odin-ood"
    return f"not a file {who} wrote: not touched; choose another {option}, or move it away"


def refuse_link(
    path: str | os.PathLike, folder: bool = False, command: str | None = None, option: str = "path"
) -> None:
    """Refuse (``ValueError``) a symbolic link, even a dangling one, or a path of the wrong kind (a
    folder where a file goes, or the other way round) at ``path``; nothing there is fine."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise ValueError(
            f"{path} is a symbolic link: odin-ood never writes through one; delete it or choose another {option}"
        )
    if not (stat.S_ISDIR(st.st_mode) if folder else stat.S_ISREG(st.st_mode)):
        raise ValueError(f"{path} is not a {'folder' if folder else 'regular file'}: {not_ours(command, option)}")


def check_output_file(path: Path, overwrite: bool, command: str, option: str) -> None:
    """Refuse, before any work, an output file ``path`` that is a symbolic link or not a regular
    file, or that exists when ``overwrite`` is false (``option`` names the flag in the message)."""
    refuse_link(path, command=command, option=option)
    if os.path.lexists(path) and not overwrite:
        raise ValueError(f"{path} exists: choose another {option}, or pass --overwrite")


@contextmanager
def new_temporary(target: Path) -> Iterator[tuple[IO[bytes], Path]]:
    """(binary file, path) of a new file beside ``target``, created exclusively (``O_EXCL``, so
    never through a link; permissions as the umask gives), flushed and fsync'ed when the block
    ends, removed again if the block fails."""
    tmp = target.with_name(f"{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        with os.fdopen(os.open(tmp, flags, 0o666), "wb") as f:
            yield f, tmp
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def replacing(target: str | os.PathLike, command: str | None = None, option: str = "path") -> Iterator[IO[bytes]]:
    """A binary file that becomes ``target`` when the block ends (module docstring); the folder is
    created when missing, a link or non-regular file at ``target`` refused first."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    refuse_link(target, command=command, option=option)
    with new_temporary(target) as (f, tmp):
        yield f
    os.replace(tmp, target)


def write_file(target: str | os.PathLike, data: bytes | str, command: str | None = None, option: str = "path") -> Path:
    """Write ``data`` (text as UTF-8) to ``target`` through :func:`replacing`; returns the path."""
    with replacing(target, command, option) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(target)


def replace_file(source: Path, target: Path, command: str, option: str) -> None:
    """Copy ``source`` over ``target`` through :func:`replacing` (a link at ``target`` refused)."""
    with replacing(target, command, option) as f, open(source, "rb") as src:
        shutil.copyfileobj(src, f, _BLOCK)
