"""The members of a zip archive, listed compactly from its central directory and read one at a time.

``zipfile.ZipFile`` builds a ``ZipInfo`` object (several hundred bytes) and a name-table entry
for every member when it opens an archive, so a zip of 200,000 members costs hundreds of MiB
before any image is read. :class:`Members` instead streams the central directory once and keeps,
per member it selects, its name and the offset of its central-directory record (an 8-byte
integer); a ``ZipInfo`` is built for one member only when that member is read, from that record,
exactly as ``zipfile`` builds it, and read through ``zipfile`` (decompression, CRC check). The
archive's own ``ZipInfo`` table is never built.
"""

from __future__ import annotations

import os
import struct
import threading
import zipfile
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import IO

_END = struct.Struct("<4s4H2LH")  # end of central directory record
_LOCATOR64 = struct.Struct("<4sLQL")  # zip64 end of central directory locator
_END64 = struct.Struct("<4sQ2H2L4Q")  # zip64 end of central directory record
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # central directory file header
_MAX_COMMENT = 0xFFFF


class _Archive(zipfile.ZipFile):
    """A read-only ZipFile that skips building its member table (``_RealGetContents``, the only
    step of opening that reads the central directory): members come from :class:`Members`."""

    def _RealGetContents(self) -> None:
        pass


class Members:
    """The members of ``path`` for which ``keep(name)`` holds (directories excluded), sorted by
    name (a name that occurs twice: archive order), as ``names`` and central-directory offsets."""

    def __init__(self, path: Path, keep: Callable[[str], bool]) -> None:
        # held open for info() while the members are read; closed here if the listing fails
        self.file = open(path, "rb")  # noqa: SIM115 -- the object owns the handle past __init__
        try:
            self.lock = threading.Lock()
            start, size, declared = _central_directory(self.file)
            self.concat = start - declared  # bytes before the archive (a zip appended to other data)
            listed: list[tuple[str, int]] = []
            self.file.seek(start)
            position, end = start, start + size
            while position < end:
                fixed = self.file.read(_CENTRAL.size)
                if len(fixed) != _CENTRAL.size or fixed[:4] != b"PK\x01\x02":
                    raise zipfile.BadZipFile("truncated central directory or bad magic number in it")
                head = _CENTRAL.unpack(fixed)
                name = _decode_name(self.file.read(head[12]), head[5])
                self.file.seek(head[13] + head[14], os.SEEK_CUR)
                if not name.endswith("/") and keep(name):
                    listed.append((name, position))
                position += _CENTRAL.size + head[12] + head[13] + head[14]
            listed.sort(key=lambda m: m[0])  # stable: duplicates stay in archive order
            self.names = [m[0] for m in listed]
            self.offsets = array("Q", (m[1] for m in listed))
            self.zip = _Archive(path)
        except BaseException:
            self.file.close()
            raise

    def __len__(self) -> int:
        return len(self.names)

    def info(self, i: int) -> zipfile.ZipInfo:
        """Member i's ZipInfo, from its central-directory record, as ``zipfile`` makes it."""
        with self.lock:
            self.file.seek(self.offsets[i])
            head = _CENTRAL.unpack(self.file.read(_CENTRAL.size))
            name = _decode_name(self.file.read(head[12]), head[5])
            extra, comment = self.file.read(head[13]), self.file.read(head[14])
        x = zipfile.ZipInfo(name)
        x.extra, x.comment = extra, comment
        (
            x.create_version,
            x.create_system,
            x.extract_version,
            x.reserved,
            x.flag_bits,
            x.compress_type,
            t,
            d,
            x.CRC,
            x.compress_size,
            x.file_size,
        ) = head[1:12]
        x.volume, x.internal_attr, x.external_attr = head[15:18]
        x.date_time = ((d >> 9) + 1980, (d >> 5) & 0xF, d & 0x1F, t >> 11, (t >> 5) & 0x3F, (t & 0x1F) * 2)
        x.header_offset = head[18]
        _zip64_sizes(x)
        x.header_offset += self.concat
        return x


def _central_directory(f: IO[bytes]) -> tuple[int, int, int]:
    """(position of the central directory in the file, its size, the offset the archive declares
    for it), from the end records, as ``zipfile`` finds them."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    back = min(size, _END.size + _MAX_COMMENT)
    f.seek(size - back)
    tail = f.read(back)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _END.size:
        raise zipfile.BadZipFile("File is not a zip file")
    end = size - back + at
    *_, cd_size, cd_offset, _ = _END.unpack(tail[at : at + _END.size])
    location = end
    if end >= _LOCATOR64.size + _END64.size:
        f.seek(end - _LOCATOR64.size)
        locator = f.read(_LOCATOR64.size)
        if locator[:4] == b"PK\x06\x07":
            f.seek(end - _LOCATOR64.size - _END64.size)
            record = _END64.unpack(f.read(_END64.size))
            if record[0] != b"PK\x06\x06":
                raise zipfile.BadZipFile("corrupt zip64 end of central directory record")
            cd_size, cd_offset = record[8], record[9]
            location = end - _LOCATOR64.size - _END64.size
    start = location - cd_size
    if start < 0 or cd_offset > start:
        raise zipfile.BadZipFile("bad offset for central directory")
    return start, cd_size, cd_offset


def _decode_name(raw: bytes, flags: int) -> str:
    return raw.decode("utf-8" if flags & 0x800 else "cp437")


def _zip64_sizes(x: zipfile.ZipInfo) -> None:
    """Sizes and offset from a zip64 extra field (header 0x0001), where the record says 0xFFFFFFFF."""
    extra = x.extra
    while len(extra) >= 4:
        kind, length = struct.unpack("<HH", extra[:4])
        if length + 4 > len(extra):
            raise zipfile.BadZipFile(f"corrupt extra field {kind:04x} (size={length})")
        if kind == 0x0001:
            data = extra[4 : length + 4]
            try:
                for field in ("file_size", "compress_size", "header_offset"):
                    if getattr(x, field) == 0xFFFFFFFF:
                        setattr(x, field, struct.unpack("<Q", data[:8])[0])
                        data = data[8:]
            except struct.error:
                raise zipfile.BadZipFile("corrupt zip64 extra field") from None
        extra = extra[length + 4 :]
