"""A Parquet file of encoded images as a score/fit input (the layout of Hugging Face ``datasets``
exports): one row per table row, in the file's order, named ``FILE!row``.

The image column (``--image-column``, default ``image``) holds encoded bytes (binary) or
``{bytes, path}`` structs (Hugging Face's ``Image`` feature); only the bytes are read: a row whose
bytes are null gets an error row even if it names a path, since no path written inside a file is
ever opened. An integer label column (``--label-column``, default ``label``; absent: null labels)
is carried into the rows. Every bad row (null, over ``--max-image-bytes``, not an image) is an
error row; a file that is not Parquet, or whose image column is missing or of another type, is
refused before anything is scored.

**Bounded before it is read.** pyarrow reads a row group's column chunk whole, so what a row
group's image column states in the footer (its uncompressed pages, plus 16 bytes of offsets per
row) is checked first: a row group stating more than a quarter of ``--max-memory`` is not read
and each of its rows gets an error row saying so (rewrite the file with smaller row groups).
Dictionary-encoded image columns are read as dictionaries, so a value repeated in many rows is
held once and what is read is what the footer states. Row groups are read under a lock, once each
while their rows are scored (the last two are kept), the label column once at listing (checked
against the budget in the same way).
"""

from __future__ import annotations

import bisect
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from PIL import Image

from odin_ood._utils import extras
from odin_ood.commands.listing import open_listed, printable
from odin_ood.preprocess import InputError, Preprocessing, decode

_OFFSET_BYTES = 16  # per row: offsets of the value and of the dictionary index
_KEPT_GROUPS = 2


class ParquetImages:
    """The rows of one Parquet file (see the module docstring), at most ``limit``."""

    def __init__(
        self,
        path: Path,
        image_column: str,
        label_column: str,
        max_bytes: int,
        max_memory: int,
        limit: int | None = None,
    ) -> None:
        pq = extras.import_optional("pyarrow.parquet", "parquet", f"input {printable(str(path))}: reading Parquet")
        self.label_text = printable(str(path))
        self.max_bytes, self.column = max_bytes, image_column
        st = os.stat(path)
        self.file = os.fdopen(open_listed(path, (st.st_dev, st.st_ino, os.path.islink(path)), self.label_text), "rb")
        try:
            meta = pq.ParquetFile(self.file).metadata
            schema = meta.schema.to_arrow_schema()
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError... for a file that is not Parquet
            self.file.close()
            raise ValueError(
                f"input {self.label_text}: not a readable Parquet file ({type(exc).__name__}: {exc})"
            ) from None
        self.struct = _image_type(schema, image_column, self.label_text)
        leaves = [f"{image_column}.bytes", f"{image_column}.path"] if self.struct else [image_column]
        self.parquet = pq.ParquetFile(self.file, read_dictionary=leaves[:1])
        self.group_limit = max(1, max_memory // 4)
        self.starts, self.group_bytes = [0], []
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            stated = sum(
                group.column(c).total_uncompressed_size
                for c in range(group.num_columns)
                if group.column(c).path_in_schema in leaves
            )
            self.group_bytes.append(stated + _OFFSET_BYTES * group.num_rows)
            self.starts.append(self.starts[-1] + group.num_rows)
        self.length = self.starts[-1] if limit is None else min(limit, self.starts[-1])
        self.labels = self._labels(schema, label_column, max_memory)
        self.lock = threading.Lock()
        self.groups: OrderedDict[int, Any] = OrderedDict()

    def __len__(self) -> int:
        return self.length

    def name(self, i: int) -> str:
        return f"{self.label_text}!{i}"

    def label(self, i: int) -> int | None:
        return None if self.labels is None else self.labels[i].as_py()

    def load(self, i: int, spec: Preprocessing) -> Image.Image:
        label = self.name(i)
        g = bisect.bisect_right(self.starts, i) - 1
        value = self._group(g, label)[i - self.starts[g]].as_py()
        if self.struct and value is not None:
            path, value = value.get("path"), value.get("bytes")
            if value is None and path is not None:
                raise InputError(
                    f"{label}: holds only a path ({printable(path)}), no image bytes: paths written "
                    "inside a file are never opened"
                )
        if value is None:
            raise InputError(f"{label}: no image (null)")
        if len(value) > self.max_bytes:
            raise InputError(
                f"{label}: over the limit of {self.max_bytes} bytes per image (--max-image-bytes): "
                f"it is {len(value)} bytes",
                413,
            )
        return decode(value, spec, label)

    def _group(self, g: int, label: str) -> Any:
        """Row group g's image column, read once while its rows are scored (under the lock)."""
        if self.group_bytes[g] > self.group_limit:
            raise InputError(
                f"{label}: its row group ({g}) states {self.group_bytes[g]} bytes of images, over a "
                f"quarter of --max-memory ({self.group_limit} bytes): not read; rewrite the file with "
                "smaller row groups (pyarrow.parquet.write_table(..., row_group_size=N))",
                413,
            )
        with self.lock:
            if g not in self.groups:
                try:
                    self.groups[g] = self.parquet.read_row_group(g, columns=[self.column]).column(0)
                except Exception as exc:  # a damaged page: pyarrow raises ArrowInvalid, OSError...
                    raise InputError(f"{label}: cannot read its row group ({g}): {type(exc).__name__}: {exc}") from None
                while len(self.groups) > _KEPT_GROUPS:
                    self.groups.popitem(last=False)
            return self.groups[g]

    def _labels(self, schema: Any, column: str, max_memory: int) -> Any:
        """The integer label column of the rows listed (None: the file has no such column),
        bounded like a row group (8 bytes a row) before it is read."""
        import pyarrow as pa

        if not column or column not in schema.names:
            return None
        if not pa.types.is_integer(schema.field(column).type):
            raise ValueError(
                f"input {self.label_text}: --label-column {column} holds {schema.field(column).type}, "
                "not integers (pass --label-column '' to carry no labels)"
            )
        groups = range(bisect.bisect_left(self.starts, self.length))
        if 8 * self.starts[len(groups)] > max(1, max_memory // 4):
            raise ValueError(
                f"input {self.label_text}: its {self.starts[len(groups)]} labels take over a quarter of "
                "--max-memory: raise it, or pass --label-column ''"
            )
        try:
            return self.parquet.read_row_groups(list(groups), columns=[column]).column(0)
        except Exception as exc:  # a damaged page: pyarrow raises ArrowInvalid, OSError...
            raise ValueError(
                f"input {self.label_text}: cannot read --label-column {column} ({type(exc).__name__}: {exc})"
            ) from None


def _image_type(schema: Any, column: str, label: str) -> bool:
    """Whether the image column is a ``{bytes, path}`` struct (else binary); anything else is refused."""
    import pyarrow as pa

    if column not in schema.names:
        raise ValueError(
            f"input {label}: no column {column!r} (--image-column); its columns are {', '.join(schema.names)}"
        )
    kind = schema.field(column).type
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return False
    if (
        pa.types.is_struct(kind)
        and kind.get_field_index("bytes") >= 0
        and (pa.types.is_binary(kind.field("bytes").type) or pa.types.is_large_binary(kind.field("bytes").type))
    ):
        return True
    raise ValueError(
        f"input {label}: column {column!r} is {kind}: expected encoded image bytes (binary) or {{bytes, path}} structs"
    )
