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
import shutil
import stat
from pathlib import Path
from typing import Any

from odin_ood._utils import extras
from odin_ood._utils.files import NOFOLLOW, check_output_file, new_temporary, refuse_link
from odin_ood.commands.identity import differences, read_record, record_of, write_record
from odin_ood.commands.row_files import (
    COLUMNS,
    Row,
    count_finished,
    count_lines,
    count_parts,
    jsonable,
    output_format,
    row_table,
)


class RowWriter:
    """Append rows to ``path`` in ``fmt``; ``done`` rows (``last`` the latest) already exist.
    ``keep_record``: the identity record outlives :meth:`finish` (a shard that is merged later).
    ``columns``: :data:`COLUMNS`, or :data:`LABELLED` for inputs that carry labels. ``overwrite``
    (``--overwrite``): a finished output of odin-ood's there is replaced when the new one is
    published (until then it stays as it was; with ``resume`` an interrupted replacement goes on);
    without it an existing output is refused."""

    def __init__(
        self,
        path: str | os.PathLike,
        fmt: str | None = None,
        resume: bool = False,
        keep_record: bool = False,
        columns: tuple[str, ...] = COLUMNS,
        overwrite: bool = False,
    ) -> None:
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
            count_finished(self.path, self.fmt, self.columns)  # only a scores file of odin-ood's is replaced
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
            return count_finished(self.path, self.fmt, self.columns)
        if not self.partial.exists():
            return 0, None
        if self.fmt == "parquet":
            return count_parts(self.partial, self.columns)
        done, last, self._repair = count_lines(self.partial, self.fmt, self.columns)
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
            raise ValueError(
                f"{where} records no identity of the detector, model and runtime that wrote it ({self.record} "
                "is missing; written by an older odin-ood?): --resume cannot prove it continues the same "
                "scorer; not touched; delete it, or choose another --output"
            )
        if recorded != identity:
            raise ValueError(
                f"--resume: {where} was written with another {differences(recorded, identity)}: not "
                "continued, not touched; resume with what wrote it, or delete it (and "
                f"{self.record.name}) to score afresh"
            )

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
            self._append(
                _encode(rows, self.fmt, self.columns, header=self.done == 0 and not os.path.lexists(self.partial))
            )
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
            raise ValueError(
                f"{self.partial}: cannot write ({exc.strerror or exc}); it must be a regular file "
                "odin-ood created, not a symbolic link"
            ) from None
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


def _encode(rows: list[Row], fmt: str, columns: tuple[str, ...], header: bool) -> str:
    if fmt == "jsonl":
        return "".join(json.dumps(jsonable(r, columns), allow_nan=False) + "\n" for r in rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if header:
        w.writerow(columns)
    w.writerows([[_csv_cell(r[c]) for c in columns] for r in rows])
    return buf.getvalue()


def _csv_cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):  # one row per line, always: escape line breaks
        return v.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return repr(v) if isinstance(v, float) else str(v)


def _join_parts(folder: Path, target: Path, columns: tuple[str, ...]) -> None:
    import pyarrow.parquet as pq

    with new_temporary(target) as (f, tmp), pq.ParquetWriter(f, row_table([], columns).schema) as out:
        for part in sorted(folder.glob("rows-*.parquet")) if folder.exists() else []:
            out.write_table(pq.read_table(part))
    os.replace(tmp, target)
