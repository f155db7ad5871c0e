"""WebDataset tar shards as score/fit inputs: listed once, in the shards' own order, read by offset.

A WebDataset shard is a plain (uncompressed) tar whose members are grouped into *samples* by
key: ``dir/key.jpg``, ``dir/key.cls``, ``dir/key.json`` share the key ``dir/key`` (the member
name up to the first dot of its last component, as ``webdataset`` splits it) and follow each
other. An input is one ``.tar`` file, a folder whose top level holds ``.tar`` files (and no
image files or subfolders: that is an image folder), or a brace pattern such as
``data-{000000..000999}.tar`` or ``{train,val}.tar`` (expanded like the shell; at most
:data:`MAX_SHARDS` names, counted before any is made). Shards are taken in the order given
(a folder: sorted by name).

**One row per image member**, in the shards' order: a member whose extension (everything after
the first dot) is an image suffix (``jpg``, ``png``, ...; ``seg.png`` is not the sample's image).
Its ``label`` is the sample's ``.cls`` member (a decimal integer), else the ``label`` or ``cls``
integer of its ``.json`` member, else null. Every sample yields at least one row, so nothing
vanishes: a sample without an image member gets an error row (named by its key), as does a
label member that is not an integer or not JSON, a member that is not a regular file, a member
over ``--max-image-bytes`` (its size is read from its header, before its data) or one the file is
too short to hold. A shard that cannot be read (missing, not a tar, compressed, damaged part way:
the rest of it cannot be found) is one error row naming the shard and the byte where it broke;
the other shards still score.

**How it is read.** Listing reads the tar headers once, in order, seeking over member data
(``tarfile`` on a file whose reads are clamped to :data:`MAX_HEADER_BYTES`: a header stating a
larger pax or long-name block is damage, not an allocation); it keeps per row only the member's
name, offset, size and label (the small ``.cls``/``.json`` members are read then, once). An
image member's bytes are read once, when its row is scored, with one ``pread`` at its offset
through a descriptor checked to be the listed shard (device and inode, no link swapped in).
No member name ever becomes a path on disk and nothing is extracted. Random access by offset is
what keeps rows independent of the run (``--resume`` restarts mid-shard, torchrun ranks and Ray
workers take alternate batches) without reading any member twice; it is also why compressed
shards (``.tar.gz``) are refused: they can only be read from the start.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import tarfile
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from PIL import Image

from odin_ood.commands.listing import check_listed, is_image, open_listed, printable
from odin_ood.data.images import IMAGE_SUFFIXES
from odin_ood.preprocess import InputError, Preprocessing, decode

MAX_SHARDS = 1_000_000
MAX_HEADER_BYTES = 1 << 20  # a pax or GNU long-name block larger than this is damage
MAX_CLS_BYTES = 64
MAX_JSON_BYTES = 1 << 20
_NO_LABEL = -(1 << 63)
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
_BRACES = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")


def is_pattern(argument: str) -> bool:
    """Whether ``argument`` is a brace pattern of shard names (and not an existing path)."""
    return bool(_BRACES.search(argument)) and not os.path.lexists(argument)


def expand_braces(pattern: str, limit: int = MAX_SHARDS) -> list[str]:
    """The names of a shell brace pattern: ``{a,b}`` alternatives and ``{N..M}`` integer ranges
    (zero-padded to the wider bound when either starts with 0), every group expanded, left to
    right. More than ``limit`` names is refused before any is built."""
    outside = _BRACES.sub("", pattern)
    if "{" in outside or "}" in outside:
        raise ValueError(f"input {printable(pattern)}: unbalanced or nested braces")
    groups, count = [], 1
    for m in _BRACES.finditer(pattern):
        groups.append(_alternatives(m.group(1), pattern, limit))
        count *= len(groups[-1])
        if count > limit:
            raise ValueError(f"input {printable(pattern)}: names over {limit} shards")
    pieces = _BRACES.split(pattern)[::2]
    return ["".join(p + c for p, c in zip(pieces, (*combo, ""), strict=True)) for combo in itertools.product(*groups)]


def _alternatives(body: str, pattern: str, limit: int) -> list[str]:
    m = _RANGE.match(body)
    if m is None:
        if "," not in body:
            raise ValueError(f"input {printable(pattern)}: {{{body}}} is neither a list {{a,b}} nor a range {{N..M}}")
        return body.split(",")
    lo, hi = m.groups()
    step = 1 if int(hi) >= int(lo) else -1
    numbers = range(int(lo), int(hi) + step, step)
    if len(numbers) > limit:
        raise ValueError(f"input {printable(pattern)}: names over {limit} shards")
    padded = any(len(b.lstrip("-")) > 1 and b.lstrip("-").startswith("0") for b in (lo, hi))
    width = max(len(lo), len(hi)) if padded else 0
    return [f"{n:0{width}d}" for n in numbers]


def is_shard_folder(path: Path) -> bool:
    """A folder whose top level holds ``.tar`` files and no image file or subfolder."""
    try:
        entries = list(os.scandir(path))
    except OSError:
        return False
    tars = [e for e in entries if e.name.lower().endswith(".tar")]
    others = [e for e in entries if e.is_dir(follow_symlinks=False) or is_image(e.name)]
    return bool(tars) and not others


def shard_paths(argument: str) -> list[Path]:
    """The shards an argument names: a ``.tar`` file, a shard folder's ``.tar`` files (sorted),
    or a brace pattern's expansion (each must name a ``.tar``)."""
    path = Path(argument)
    if path.is_dir():
        return sorted(path / e.name for e in os.scandir(path) if e.name.lower().endswith(".tar"))
    if os.path.lexists(argument):
        return [path]
    names = expand_braces(argument)
    bad = next((n for n in names if not n.lower().endswith(".tar")), None)
    if bad is not None:
        raise ValueError(
            f"input {printable(argument)}: a brace pattern must name .tar shards, e.g. "
            f"data-{{000..009}}.tar (it gives {printable(bad)})"
        )
    return [Path(n) for n in names]


class Shards:
    """The image members of WebDataset shards (see the module docstring), at most ``limit``
    rows: ``name(i)``, ``label(i)`` and ``load(i, spec)``."""

    def __init__(self, argument: str, max_bytes: int, follow_symlinks: bool = False, limit: int | None = None) -> None:
        self.max_bytes, self.limit = max_bytes, limit
        self.shards: list[tuple[Path, tuple[int, int, bool]]] = []
        self.shard_of, self.offsets, self.sizes, self.labels = array("L"), array("Q"), array("Q"), array("q")
        self.members: list[str | None] = []  # None: a row for the whole shard (it could not be read)
        self.errors: dict[int, str] = {}
        folder = Path(argument) if Path(argument).is_dir() else None
        for path in shard_paths(argument):
            if self._full():
                break
            reason = self._list(path, folder, follow_symlinks)
            if reason:
                self._add(None, error=reason)

    def __len__(self) -> int:
        return len(self.members)

    def name(self, i: int) -> str:
        shard = printable(str(self.shards[self.shard_of[i]][0]))
        member = self.members[i]
        return shard if member is None else f"{shard}!{printable(member)}"

    def label(self, i: int) -> int | None:
        return None if self.labels[i] == _NO_LABEL else self.labels[i]

    def load(self, i: int, spec: Preprocessing) -> Image.Image:
        """The image of row i: its member's bytes, read with one ``pread`` at the listed offset."""
        label = self.name(i)
        if i in self.errors:
            raise InputError(f"{label}: {self.errors[i]}")
        path, identity = self.shards[self.shard_of[i]]
        fd = open_listed(path, identity, label)
        try:
            blob = os.pread(fd, self.sizes[i], self.offsets[i])
        except OSError as exc:
            raise InputError(f"{label}: cannot read ({exc.strerror or exc})") from None
        finally:
            os.close(fd)
        if len(blob) != self.sizes[i]:
            raise InputError(f"{label}: the shard ends inside this member (it changed after it was listed?)")
        return decode(blob, spec, label)

    def _full(self) -> bool:
        return self.limit is not None and len(self.members) >= self.limit

    def _add(
        self, member: str | None, offset: int = 0, size: int = 0, label: int | None = None, error: str = ""
    ) -> None:
        if self._full():
            return
        if error:
            self.errors[len(self.members)] = error
        self.shard_of.append(len(self.shards) - 1)
        self.members.append(member)
        self.offsets.append(offset)
        self.sizes.append(size)
        self.labels.append(_NO_LABEL if label is None else label)

    def _list(self, path: Path, folder: Path | None, follow_symlinks: bool) -> str:
        """Append the rows of one shard; returns why the rest of it cannot be read, or ""."""
        if not os.path.lexists(path):
            self.shards.append((path, (0, 0, False)))
            return "no such shard"
        if folder is None:
            st = os.stat(path)
            reason, identity = "", (st.st_dev, st.st_ino, os.path.islink(path))
        else:
            outside = "a symbolic link to outside the shard folder: not followed (pass --follow-symlinks to follow it)"
            reason, identity = check_listed(str(path), os.path.realpath(folder), follow_symlinks, outside)
        self.shards.append((path, identity))
        if reason:
            return reason
        try:
            fd = open_listed(path, identity, "")
        except InputError as exc:
            return str(exc).lstrip(": ")
        with os.fdopen(fd, "rb") as f:
            kind = next((k for magic, k in _COMPRESSED.items() if f.read(6).startswith(magic)), None)
            if kind is not None:
                return (
                    f"a {kind}-compressed tar: shards are read by offset, so only plain tar files can be "
                    "(decompress it, e.g. with gunzip)"
                )
            f.seek(0)
            size = os.fstat(fd).st_size
            for sample in _samples(_Clamped(f, size)):
                if isinstance(sample, str):
                    return sample
                self._add_sample(sample, f, size)
                if self._full():
                    break
        return ""

    def _add_sample(self, members: list[tarfile.TarInfo], f: IO[bytes], size: int) -> None:
        label, label_error = _sample_label(members, f)
        images = [m for m in members if _image_extension(m.name)]
        if not images:
            found = ", ".join(sorted({"." + _extension(m.name) for m in members}))
            self._add(_key(members[0].name), label=label, error=f"a sample without an image member (it has {found})")
        for m in images:
            error = label_error
            if not m.isreg():
                error = "not a regular file member (a link or device inside the tar): not read"
            elif m.size > self.max_bytes:
                error = f"over the limit of {self.max_bytes} bytes per image (--max-image-bytes): it is {m.size} bytes"
            elif m.offset_data + m.size > size:
                error = (
                    f"truncated: the member states {m.size} bytes but the shard ends "
                    f"{size - m.offset_data} bytes after its header"
                )
            self._add(m.name, m.offset_data, m.size, label, error)


def _samples(f: _Clamped) -> Iterator[list[tarfile.TarInfo] | str]:
    """The shard's samples (runs of members sharing a key, directories left out), in order; a
    string (why) where the shard cannot be read further."""
    try:
        # typeshed's file protocol asks write() and close(), which reading never calls
        tar = tarfile.open(fileobj=f, mode="r:")  # type: ignore[call-overload]  # noqa: SIM115 -- reads the caller's file, which it does not close
    except tarfile.TarError as exc:
        yield f"not a readable tar file ({exc})"
        return
    run: list[tarfile.TarInfo] = []
    while True:
        try:
            info = tar.next()
        except tarfile.TarError as exc:
            if run:
                yield run
            yield f"damaged at byte {min(tar.offset, f.size)}: {exc}; the members after it cannot be found"
            return
        if info is None:
            break
        tar.members.clear()  # tarfile keeps every TarInfo it lists: memory would grow with the shard
        if info.isdir():
            continue
        if run and _key(run[0].name) != _key(info.name):
            yield run
            run = []
        run.append(info)
    if run:
        yield run
    if not f.ends_cleanly(tar.offset):
        yield f"damaged at byte {tar.offset}: not a tar header; the members after it cannot be found"


def _sample_label(members: list[tarfile.TarInfo], f: IO[bytes]) -> tuple[int | None, str]:
    """(label, why a label member is bad or ""): the ``.cls`` member, else the ``.json`` member's
    ``label`` or ``cls`` integer, else None."""
    by_ext = {_extension(m.name).lower(): m for m in members if m.isreg()}
    for ext, limit in (("cls", MAX_CLS_BYTES), ("json", MAX_JSON_BYTES)):
        m = by_ext.get(ext)
        if m is None:
            continue
        what = f"label member {printable(m.name)}"
        if m.size > limit:
            return None, f"{what} is {m.size} bytes, over {limit}"
        f.seek(m.offset_data)
        text = f.read(m.size)
        try:
            if ext == "cls":
                return int(text.decode("ascii").strip()), ""
            value = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            return None, f"{what} is not {'a decimal integer' if ext == 'cls' else 'JSON'}"
        found = next((value[k] for k in ("label", "cls") if isinstance(value, dict) and k in value), None)
        if found is None:
            return None, ""
        if not isinstance(found, int) or isinstance(found, bool):
            return None, f"{what}: its label {found!r} is not an integer"
        return found, ""
    return None, ""


class _Clamped:
    """A shard file as ``tarfile`` reads it while listing: no read past the end and none over
    :data:`MAX_HEADER_BYTES` (``tarfile`` reads only headers here, never member data)."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self.f, self.size = f, size

    def read(self, n: int = -1) -> bytes:
        if n > MAX_HEADER_BYTES:
            raise tarfile.ReadError(f"a header states a {n}-byte block (over {MAX_HEADER_BYTES}): not read")
        return self.f.read(max(0, min(n if n >= 0 else MAX_HEADER_BYTES, self.size - self.f.tell())))

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.f.seek(offset, whence)

    def tell(self) -> int:
        return self.f.tell()

    def ends_cleanly(self, offset: int) -> bool:
        """Whether the archive ends at ``offset``: the end of the file or an all-zero block."""
        self.f.seek(offset)
        block = self.f.read(tarfile.BLOCKSIZE)
        return not block.strip(b"\0")


def _key(name: str) -> str:
    """The sample key of a member: its name up to the first dot of its last component."""
    folder, _, base = name.rpartition("/")
    return (folder + "/" if folder else "") + base.split(".", 1)[0]


def _extension(name: str) -> str:
    """Everything after the first dot of the last component (``seg.png`` for ``a/k.seg.png``)."""
    base = name.rpartition("/")[2]
    return base.split(".", 1)[1] if "." in base else ""


def _image_extension(name: str) -> bool:
    return "." + _extension(name).lower() in IMAGE_SUFFIXES
