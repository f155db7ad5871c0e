"""The files ``odin-ood score`` writes, as data: their columns and types (CSV, JSON Lines,
Parquet), reading them back typed as written (:func:`read_rows`), and what resuming needs to know
of a partial or finished output: how many rows it holds, its last row and where a torn last line
starts (:func:`count_lines`, :func:`count_parts`, :func:`count_finished`), refusing a file that is
not odin-ood's in one line. Writing, resuming and publishing live in :mod:`odin_ood.commands.writers`."""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from odin_ood._utils.files import not_ours

COLUMNS = ("index", "source", "predicted_class", "class_name", "confidence", "score", "is_out_of_distribution", "error")
LABELLED = (*COLUMNS, "label")  # inputs that carry labels (WebDataset shards, Parquet): one more column
FORMATS = ("csv", "jsonl", "parquet")
_BLOCK = 1 << 20
NOT_OURS = not_ours("score", "--output")

Row = dict[str, Any]


def output_format(path: str | os.PathLike) -> str:
    """The format named by the output file's suffix."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise ValueError(f"--output {path}: the suffix must be one of .csv, .jsonl, .parquet")
    return suffix


def _check_head(path: Path, fmt: str, columns: tuple[str, ...]) -> None:
    """A CSV/JSONL file is ours only if it starts with odin-ood's header line (CSV) or first key
    (JSONL); a torn first line must be a prefix of it."""
    ours = (",".join(columns) + "\n" if fmt == "csv" else '{"index": ').encode()
    with open(path, "rb") as f:
        head = f.read(len(ours))
    if head != ours[: len(head)]:
        raise ValueError(f"{path}: its first line is not odin-ood's {fmt.upper()} header: {NOT_OURS}")


def read_rows(path: str | os.PathLike, fmt: str | None = None) -> Iterator[Row]:
    """The rows of a file written by :class:`RowWriter`, typed as written."""
    path = Path(path)
    fmt = fmt or output_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        yield from pq.read_table(path).to_pylist()
    elif fmt == "jsonl":
        with open(path, encoding="utf-8") as f:
            yield from (json.loads(line) for line in f)
    else:
        with open(path, encoding="utf-8", newline="") as f:
            yield from (_typed_csv(r) for r in csv.DictReader(f))


def jsonable(row: Row, columns: tuple[str, ...]) -> Row:
    return {
        c: (None if isinstance(v, float) and not math.isfinite(v) else v) for c, v in ((c, row[c]) for c in columns)
    }


def _typed_csv(r: dict[str, str]) -> Row:
    return {
        "index": int(r["index"]),
        "source": _unescape(r["source"]),
        "predicted_class": int(r["predicted_class"]),
        "class_name": _unescape(r["class_name"]) if r["class_name"] else None,
        "confidence": float(r["confidence"]) if r["confidence"] else None,
        "score": float(r["score"]) if r["score"] else None,
        "is_out_of_distribution": r["is_out_of_distribution"] == "true",
        "error": _unescape(r["error"]),
        **({"label": int(r["label"]) if r["label"] else None} if "label" in r else {}),
        **({"precision": r["precision"]} if "precision" in r else {}),
    }


def _unescape(s: str) -> str:
    return re.sub(r"\\(.)", lambda m: _UNESCAPE.get(m.group(1), m.group(1)), s)


_UNESCAPE = {"n": "\n", "r": "\r", "\\": "\\"}


def count_lines(
    path: Path, fmt: str, columns: tuple[str, ...], finished: bool = False
) -> tuple[int, Row | None, int | None]:
    """Complete lines of a CSV/JSONL file odin-ood wrote (header excluded), the last row, and
    where a partial file's torn last line starts (-1: not even a whole CSV header; None: not
    torn; a finished file has none: it is not ours). Changes nothing (:meth:`RowWriter.write`
    cuts it); reads blocks, so memory stays bounded for any file size."""
    _check_head(path, fmt, columns)
    lines, end, size = 0, 0, path.stat().st_size
    with open(path, "rb") as f:
        offset = 0
        while block := f.read(_BLOCK):
            lines += block.count(b"\n")
            last = block.rfind(b"\n")
            if last >= 0:
                end = offset + last + 1
            offset += len(block)
    if end < size and finished:
        raise ValueError(f"{path}: its last line is incomplete: {NOT_OURS}")
    rows = lines - (1 if fmt == "csv" and lines else 0)
    cut = -1 if fmt == "csv" and lines == 0 else (end if end < size else None)
    return rows, (_last_row(path, end, fmt, columns) if rows else None), cut


def _last_row(path: Path, end: int, fmt: str, columns: tuple[str, ...]) -> Row:
    with open(path, "rb") as f:
        f.seek(max(0, end - 65536))
        text = f.read(end - f.tell()).decode("utf-8", "replace")
    line = text.rstrip("\n").rsplit("\n", 1)[-1]
    try:
        if fmt == "jsonl":
            row = json.loads(line)
            if list(row) != list(columns):
                raise KeyError("columns")
            return row
        return _typed_csv(dict(zip(columns, next(csv.reader([line])), strict=True)))
    except (ValueError, KeyError, TypeError, StopIteration):
        raise ValueError(f"{path}: its last line is not an odin-ood row: {NOT_OURS}") from None


def count_parts(folder: Path, columns: tuple[str, ...]) -> tuple[int, Row | None]:
    import pyarrow.parquet as pq

    done, last = 0, None  # temporary parts (*.tmp) a killed run left are not counted
    for part in sorted(folder.glob("rows-*.parquet")):
        if int(part.stem.split("-")[1]) != done:
            raise ValueError(f"{folder}: part {part.name} does not continue the {done} rows before it")
        f = pq.ParquetFile(part)
        if not f.schema_arrow.equals(row_table([], columns).schema):
            raise ValueError(f"{part}: not these columns ({', '.join(columns)}): {NOT_OURS}")
        done += f.metadata.num_rows
        last = part
    return done, (_last_of(pq.read_table(last)) if last else None)


def count_finished(path: Path, fmt: str, columns: tuple[str, ...]) -> tuple[int, Row | None]:
    if fmt != "parquet":
        return count_lines(path, fmt, columns, finished=True)[:2]
    import pyarrow.parquet as pq

    try:
        f = pq.ParquetFile(path)
        ours = f.schema_arrow.equals(row_table([], columns).schema)
    except Exception:  # pyarrow raises several types for a file that is not Parquet
        ours = False
    if not ours:
        raise ValueError(f"{path}: not odin-ood's Parquet columns: {NOT_OURS}")
    n = f.metadata.num_rows
    if n == 0:
        return 0, None
    return n, _last_of(f.read_row_group(f.metadata.num_row_groups - 1))


def _last_of(table: Any) -> Row:  # a pyarrow Table (pyarrow ships no types)
    return table.slice(table.num_rows - 1).to_pylist()[0]


def row_table(rows: list[Row], columns: tuple[str, ...] = COLUMNS) -> Any:
    """``rows`` as a pyarrow Table of ``columns`` with odin-ood's column types (non-finite floats null)."""
    import pyarrow as pa

    types = {
        "index": pa.int64(),
        "source": pa.string(),
        "predicted_class": pa.int64(),
        "class_name": pa.string(),
        "confidence": pa.float64(),
        "score": pa.float64(),
        "is_out_of_distribution": pa.bool_(),
        "error": pa.string(),
        "label": pa.int64(),
        "precision": pa.string(),
    }
    schema = pa.schema([(c, types[c]) for c in columns])
    return pa.Table.from_pylist([jsonable(r, columns) for r in rows], schema=schema)
