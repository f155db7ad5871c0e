"""Resumable row writers for CSV, JSON Lines and Parquet.

The output path exists only once every row is written. Until then rows go to a partial file
(CSV/JSONL: ``OUT.partial``, appended chunk by chunk, each chunk flushed and fsync'ed) or a
parts folder (Parquet: ``OUT.parts/rows-<first index>.parquet``, one file per chunk, each
written to a temporary name and renamed, so a part is whole or absent). Resuming counts the
rows already there (complete lines; a truncated last line is cut off) and continues after
them; ``finish`` renames the partial file, or streams the parts into one Parquet file, part by
part. An interrupted run followed by a resumed one therefore gives exactly the rows of an
uninterrupted one.

Resuming continues only rows written by the same scorer: :meth:`RowWriter.claim` records what
writes the rows (the identity of the detector, the model's weights and computation, the runtime,
the preprocessing, ...: :func:`odin_ood.commands.identity.score_identity`) in ``OUT.identity.json``
before the first row, and on resume compares it; any difference, or a partial output without
that record, is refused in one line naming what differs. Nothing is changed before the first
write: a torn last line is cut, and temporary Parquet parts removed, only then, so a refused
resume leaves every file byte for byte as it was. The record goes with the partial output when
it is published (a distributed shard keeps it until rank 0 has merged the shards).

Only odin-ood's own files are touched: an existing output or partial file must start with the
exact CSV header (JSONL: the first key ``index``; Parquet: exactly these columns) and end in a
row of these columns, or it is refused, unchanged, in one line. Nothing is written through a
symbolic link: a link at the output, partial or parts path is refused, the partial file is opened
with ``ONOFOLLOW`` (created with ``O_EXCL``), temporary Parquet files are created ``O_EXCL``, and
the partial file must still be the one written before it is renamed. A format whose writer cannot
be imported (Parquet without pyarrow) is refused when the writer is made, before any scoring.

Every other file odin-ood writes follows the same rules (:mod:`odin_ood._utils.files`: a link
or a non-regular file is refused, a new file created exclusively, fsync'ed and renamed over it).
``score --overwrite`` follows them too (:class:`RowWriter`): a finished scores file of odin-ood's
is replaced by renaming the new output over it once every row is written.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from odin_ood._utils import extras
from odin_ood._utils.files import NOFOLLOW, check_output_file, new_temporary, not_ours, refuse_link
from odin_ood.commands.identity import differences, read_record, record_of, write_record

COLUMNS = ("index", "source", "predicted_class", "class_name", "confidence", "score", "is_out_of_distribution", "error")
LABELLED = (*COLUMNS, "label")  # inputs that carry labels (WebDataset shards, Parquet): one more column
FORMATS = ("csv", "jsonl", "parquet")
_BLOCK = 1 << 20
_NOT_OURS = not_ours("score", "--output")

Row = dict[str, Any]


def output_format(path: str | os.PathLike) -> str:
    """The format named by the output file's suffix."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise ValueError(f"--output {path}: the suffix must be one of .csv, .jsonl, .parquet")
    return suffix


class RowWriter:
    """Append rows to ``path`` in ``fmt``; ``done`` rows (``last`` the latest) already exist.
    ``keep_record``: the identity record outlives :meth:`finish` (a shard that is merged later).
    ``columns``: :data:`COLUMNS`, or :data:`LABELLED` for inputs that carry labels. ``overwrite``
    (``--overwrite``): a finished output of odin-ood's there is replaced when the new one is
    published (until then it stays as it was; with ``resume`` an interrupted replacement goes on);
    without it an existing output is refused."""

    def __init__(self, path: str | os.PathLike, fmt: str | None = None, resume: bool = False,
                 keep_record: bool = False, columns: tuple[str, ...] = COLUMNS, overwrite: bool = False) -> None:
        self.path, self.columns = Path(path), columns
        self.fmt = fmt or output_format(self.path)
        require_format(self.fmt)
        self.partial = self.path.with_name(self.path.name + (".parts" if self.fmt == "parquet" else ".partial"))
        self.record = record_of(self.path)
        self.keep_record = keep_record
        if not resume:
            check_output_file(self.path, overwrite, "score", "--output")
        self.replacing = overwrite and self.path.exists()
        if self.replacing:
            _count_finished(self.path, self.fmt, self.columns)  # only a scores file of odin-ood's is replaced
        refuse_link(self.path, command="score", option="--output")
        refuse_link(self.partial, folder=self.fmt == "parquet", command="score", option="--output")
        if not resume and os.path.lexists(self.partial):
            raise ValueError(f"{self.partial} exists: pass --resume to keep its rows, or delete it")
        refuse_link(self.record, command="score", option="--output")
        self.identity: tuple[int, int] | None = None  # of the partial file, as last written
        self._repair: int | None = None  # where a torn partial file is cut at the first write (-1: deleted)
        self._pending: dict[str, Any] | None = None  # the identity to record at the first write
        self.done, self.last = self._existing()

    def _existing(self) -> tuple[int, Row | None]:
        if self.path.exists() and not self.replacing:  # a finished output: nothing left to write
            return _count_finished(self.path, self.fmt, self.columns)
        if not self.partial.exists():
            return 0, None
        if self.fmt == "parquet":
            return _count_parts(self.partial, self.columns)
        done, last, self._repair = _count_lines(self.partial, self.fmt, self.columns)
        return done, last

    def claim(self, identity: dict[str, Any]) -> None:
        """Record ``identity`` (JSON: what writes the rows) beside a new output, with its first
        row; for rows that exist already, check that they were written with this identity, else
        refuse (one line naming what differs), every file unchanged."""
        identity = json.loads(json.dumps(identity))
        recorded = read_record(self.record)
        finished = self.path.exists() and not self.replacing
        if not (finished or os.path.lexists(self.partial)):
            self._pending = identity  # written with the first row
            return
        where = self.path if finished else self.partial
        if recorded is None:
            if finished and not self.keep_record:
                return  # a published output: --resume writes nothing to it
            raise ValueError(f"{where} records no identity of the detector, model and runtime that wrote it ({self.record} "
                             "is missing; written by an older odin-ood?): --resume cannot prove it continues the same "
                             "scorer; not touched; delete it, or choose another --output")
        if recorded != identity:
            raise ValueError(f"--resume: {where} was written with another {differences(recorded, identity)}: not "
                             "continued, not touched; resume with what wrote it, or delete it (and "
                             f"{self.record.name}) to score afresh")

    def write(self, rows: list[Row]) -> None:
        """Append ``rows`` durably (flushed and fsync'ed before returning)."""
        if not rows:
            return
        if self.path.exists() and not self.replacing:
            raise RuntimeError(f"{self.path} is already complete")
        self._prepare()
        if self.fmt == "parquet":
            self._write_part(rows)
        else:
            self._append(_encode(rows, self.fmt, self.columns, header=self.done == 0 and not os.path.lexists(self.partial)))
        self.done += len(rows)
        self.last = rows[-1]

    def _prepare(self) -> None:
        """Before the first write: cut a torn last line (delete a file without a whole header),
        remove temporary Parquet parts a killed run left, record the claimed identity."""
        if self._pending is not None:
            write_record(self.record, self._pending)
            self._pending = None
        if self.fmt == "parquet":
            for tmp in self.partial.glob("*.tmp") if self.partial.is_dir() else ():
                tmp.unlink()
        elif self._repair is not None and self._repair < 0:
            self.partial.unlink()
        elif self._repair is not None:
            with open(self.partial, "r+b") as f:
                f.truncate(self._repair)
                f.flush()
                os.fsync(f.fileno())
        self._repair = None

    def _append(self, text: str) -> None:
        """Append to the partial file, never through a symbolic link (a new one is created
        exclusively), flushed and fsync'ed; remembers the file's identity for :meth:`finish`."""
        create = 0 if os.path.lexists(self.partial) else os.O_CREAT | os.O_EXCL
        flags = os.O_WRONLY | os.O_APPEND | create | NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(self.partial, flags, 0o666)
        except OSError as exc:
            raise ValueError(f"{self.partial}: cannot write ({exc.strerror or exc}); it must be a regular file "
                             "odin-ood created, not a symbolic link") from None
        with os.fdopen(fd, "wb") as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ValueError(f"{self.partial} is not a regular file: delete it")
            f.write(text.encode("utf-8"))
            f.flush()
            os.fsync(fd)
            self.identity = (st.st_dev, st.st_ino)

    def _write_part(self, rows: list[Row]) -> None:
        import pyarrow.parquet as pq

        self.partial.mkdir(parents=True, exist_ok=True)
        refuse_link(self.partial, folder=True, command="score", option="--output")
        target = self.partial / f"rows-{self.done:012d}.parquet"
        with new_temporary(target) as (f, tmp):
            pq.write_table(row_table(rows, self.columns), f)
        os.replace(tmp, target)

    def finish(self) -> Path:
        """Publish the output under its final name (idempotent); the identity record goes with
        the partial output unless ``keep_record``."""
        if self.path.exists() and not self.replacing:
            return self.path
        self._prepare()
        if self.fmt == "parquet":
            _join_parts(self.partial, self.path, self.columns)
            shutil.rmtree(self.partial)
        else:
            if not os.path.lexists(self.partial):  # zero rows
                self._append(_encode([], self.fmt, self.columns, header=True))
            st = os.lstat(self.partial)
            if not stat.S_ISREG(st.st_mode) or (self.identity is not None and (st.st_dev, st.st_ino) != self.identity):
                raise ValueError(f"{self.partial} was replaced while scoring: not published; delete it and rerun")
            os.replace(self.partial, self.path)
        self.replacing = False  # published: the output is this run's now
        if not self.keep_record:
            self.record.unlink(missing_ok=True)
        return self.path


def require_format(fmt: str) -> None:
    """Refuse, before anything is scored, a format whose writer cannot be imported."""
    if fmt == "parquet":
        extras.require("parquet", "--output *.parquet", otherwise="or write .csv or .jsonl")


def _check_head(path: Path, fmt: str, columns: tuple[str, ...]) -> None:
    """A CSV/JSONL file is ours only if it starts with odin-ood's header line (CSV) or first key
    (JSONL); a torn first line must be a prefix of it."""
    ours = (",".join(columns) + "\n" if fmt == "csv" else '{"index": ').encode()
    with open(path, "rb") as f:
        head = f.read(len(ours))
    if head != ours[:len(head)]:
        raise ValueError(f"{path}: its first line is not odin-ood's {fmt.upper()} header: {_NOT_OURS}")


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


def _encode(rows: list[Row], fmt: str, columns: tuple[str, ...], header: bool) -> str:
    if fmt == "jsonl":
        return "".join(json.dumps(_jsonable(r, columns), allow_nan=False) + "\n" for r in rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if header:
        w.writerow(columns)
    w.writerows([[_csv_cell(r[c]) for c in columns] for r in rows])
    return buf.getvalue()


def _jsonable(row: Row, columns: tuple[str, ...]) -> Row:
    return {c: (None if isinstance(v, float) and not math.isfinite(v) else v) for c, v in ((c, row[c]) for c in columns)}


def _csv_cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):  # one row per line, always: escape line breaks
        return v.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return repr(v) if isinstance(v, float) else str(v)


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


def _count_lines(path: Path, fmt: str, columns: tuple[str, ...],
                 finished: bool = False) -> tuple[int, Row | None, int | None]:
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
        raise ValueError(f"{path}: its last line is incomplete: {_NOT_OURS}")
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
        raise ValueError(f"{path}: its last line is not an odin-ood row: {_NOT_OURS}") from None


def _count_parts(folder: Path, columns: tuple[str, ...]) -> tuple[int, Row | None]:
    import pyarrow.parquet as pq

    done, last = 0, None  # temporary parts (*.tmp) a killed run left are not counted
    for part in sorted(folder.glob("rows-*.parquet")):
        if int(part.stem.split("-")[1]) != done:
            raise ValueError(f"{folder}: part {part.name} does not continue the {done} rows before it")
        f = pq.ParquetFile(part)
        if not f.schema_arrow.equals(row_table([], columns).schema):
            raise ValueError(f"{part}: not these columns ({', '.join(columns)}): {_NOT_OURS}")
        done += f.metadata.num_rows
        last = part
    return done, (_last_of(pq.read_table(last)) if last else None)


def _count_finished(path: Path, fmt: str, columns: tuple[str, ...]) -> tuple[int, Row | None]:
    if fmt != "parquet":
        return _count_lines(path, fmt, columns, finished=True)[:2]
    import pyarrow.parquet as pq

    try:
        f = pq.ParquetFile(path)
        ours = f.schema_arrow.equals(row_table([], columns).schema)
    except Exception:  # pyarrow raises several types for a file that is not Parquet
        ours = False
    if not ours:
        raise ValueError(f"{path}: not odin-ood's Parquet columns: {_NOT_OURS}")
    n = f.metadata.num_rows
    if n == 0:
        return 0, None
    return n, _last_of(f.read_row_group(f.metadata.num_row_groups - 1))


def _last_of(table: Any) -> Row:  # a pyarrow Table (pyarrow ships no types)
    return table.slice(table.num_rows - 1).to_pylist()[0]


def row_table(rows: list[Row], columns: tuple[str, ...] = COLUMNS) -> Any:
    """``rows`` as a pyarrow Table of ``columns`` with odin-ood's column types (non-finite floats null)."""
    import pyarrow as pa

    types = {"index": pa.int64(), "source": pa.string(), "predicted_class": pa.int64(), "class_name": pa.string(),
             "confidence": pa.float64(), "score": pa.float64(), "is_out_of_distribution": pa.bool_(),
             "error": pa.string(), "label": pa.int64(), "precision": pa.string()}
    schema = pa.schema([(c, types[c]) for c in columns])
    return pa.Table.from_pylist([_jsonable(r, columns) for r in rows], schema=schema)


def _join_parts(folder: Path, target: Path, columns: tuple[str, ...]) -> None:
    import pyarrow.parquet as pq

    with new_temporary(target) as (f, tmp), pq.ParquetWriter(f, row_table([], columns).schema) as out:
        for part in sorted(folder.glob("rows-*.parquet")) if folder.exists() else []:
            out.write_table(pq.read_table(part))
    os.replace(tmp, target)
