"""The metadata of an ONNX file, read without the ``onnx`` package.

Checking a cached graph's key (:func:`odin_ood.export.graph.cached_onnx`) needs only the
``metadata_props`` of its ``ModelProto`` (field 14, entries ``StringStringEntryProto`` with
``key`` = 1 and ``value`` = 2); importing ``onnx`` for it costs more than half a second of every
start-up on a graph runtime. This reads the protobuf wire format (each field a varint tag
``number << 3 | wire type``, then a varint, 8 or 4 bytes, or a varint length and that many bytes)
and skips every other field. The runtime that then loads the file parses the rest.
"""

from __future__ import annotations

from collections.abc import Iterator

MODEL_METADATA_FIELD = 14
_FIXED_SIZES = {1: 8, 5: 4}  # wire types of fixed size: 64-bit, 32-bit


def model_metadata(blob: bytes) -> dict[str, str]:
    """``{key: value}`` of the ``metadata_props`` of the serialized ONNX model ``blob`` (a later
    entry with the same key wins, as for a parsed model's dict). ``ValueError`` when ``blob`` is not
    a well-formed protobuf message: a field running past the end (a truncated file), an unknown
    wire type, field number 0, text that is not UTF-8."""
    view = memoryview(blob)
    out: dict[str, str] = {}
    for number, value in _fields(view):
        if number == MODEL_METADATA_FIELD:
            if not isinstance(value, memoryview):
                raise ValueError("metadata_props holds a number, not an entry")
            entry = {n: v for n, v in _fields(value) if n in (1, 2) and isinstance(v, memoryview)}
            try:
                out[bytes(entry.get(1, b"")).decode()] = bytes(entry.get(2, b"")).decode()
            except UnicodeDecodeError:
                raise ValueError("a metadata entry is not UTF-8 text") from None
    return out


def _fields(view: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of each field of the message ``view``: an int for a varint or a
    fixed-size field, the bytes of a length-delimited one."""
    i = 0
    while i < len(view):
        tag, i = _varint(view, i)
        number, wire = tag >> 3, tag & 7
        value: int | memoryview
        if number == 0:
            raise ValueError("field number 0")
        if wire == 0:
            value, i = _varint(view, i)
        elif wire == 2:
            size, i = _varint(view, i)
            value, i = view[i : i + size], i + size
        elif wire in _FIXED_SIZES:
            value, i = int.from_bytes(view[i : i + _FIXED_SIZES[wire]], "little"), i + _FIXED_SIZES[wire]
        else:
            raise ValueError(f"wire type {wire} of field {number}")
        if i > len(view):
            raise ValueError(f"field {number} runs past the end")
        yield number, value


def _varint(view: memoryview, i: int) -> tuple[int, int]:
    """The base-128 varint at ``view[i]`` (7 bits a byte, least significant first) and the index after it."""
    value = shift = 0
    while True:
        if i >= len(view) or shift > 63:
            raise ValueError("a varint runs past the end")
        byte = view[i]
        value, shift, i = value | (byte & 0x7F) << shift, shift + 7, i + 1
        if byte < 0x80:
            return value, i
