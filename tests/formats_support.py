"""Real MNIST/notMNIST images written as the formats large image sets come in: an image folder,
WebDataset tar shards (``key.png`` + ``key.cls`` or ``key.json``) and Parquet files (Hugging
Face's ``{bytes, path}`` image structs, or plain bytes), so a test can score the same images
each way and compare the rows."""

from __future__ import annotations

import io
import json
import tarfile
from contextlib import contextmanager
from pathlib import Path

from serving_support import encode, fit_mnist_detector

Items = list[tuple[str, bytes, int]]


def real_images(shared_data: Path, root: Path, digits: int = 30, letters: int = 10) -> tuple[Items, Path]:
    """(key, PNG bytes, label) of ``digits`` MNIST test digits then ``letters`` notMNIST letters
    (labels 0-9 = A-J), and an MNIST detector (batch size 16) fitted under ``root/det``."""
    _, mnist, notmnist = fit_mnist_detector(shared_data, root / "det", batch_size=16)
    items = [
        (f"{i:03d}", encode(mnist.images[3000 + i, 0].numpy()), int(mnist.labels[3000 + i])) for i in range(digits)
    ]
    items += [
        (f"{digits + i:03d}", encode(notmnist.images[900 + i, 0].numpy()), int(notmnist.labels[900 + i]))
        for i in range(letters)
    ]
    return items, root / "det"


def write_folder(folder: Path, items: Items) -> Path:
    folder.mkdir(parents=True)
    for key, blob, _ in items:
        (folder / f"{key}.png").write_bytes(blob)
    return folder


def add_member(tar: tarfile.TarFile, name: str, data: bytes, **fields) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in fields.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data))


def write_shards(folder: Path, items: Items, per_shard: int = 14) -> list[Path]:
    """``folder/data-000.tar`` ...: each sample ``key.png`` with its label in ``key.cls``, except
    every third one, whose label is in ``key.json`` (``{"label": y}``) written before the image."""
    folder.mkdir(parents=True)
    paths = []
    for s in range(0, len(items), per_shard):
        paths.append(folder / f"data-{s // per_shard:03d}.tar")
        with tarfile.open(paths[-1], "w", format=tarfile.GNU_FORMAT) as tar:
            for n, (key, blob, label) in enumerate(items[s : s + per_shard]):
                if n % 3 == 2:
                    add_member(tar, f"{key}.json", json.dumps({"label": label, "caption": "x"}).encode())
                    add_member(tar, f"{key}.png", blob)
                else:
                    add_member(tar, f"{key}.png", blob)
                    add_member(tar, f"{key}.cls", str(label).encode())
    return paths


def write_parquet(path: Path, items: Items, struct: bool = True, row_group_size: int = 8) -> Path:
    """A Parquet file of ``image`` (``{bytes, path}`` structs, or plain bytes) and ``label``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = [{"bytes": blob, "path": f"{key}.png"} for key, blob, _ in items] if struct else [b for _, b, _ in items]
    kind = pa.struct([("bytes", pa.binary()), ("path", pa.string())]) if struct else pa.binary()
    table = pa.table({"image": pa.array(images, kind), "label": pa.array([y for *_, y in items], pa.int64())})
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


@contextmanager
def killed_mid_write(monkeypatch, whole_writes: int, then_rows: int):
    """``RowWriter.write`` as a run killed while writing: ``whole_writes`` chunks are written,
    then the first ``then_rows`` rows of the next, then KeyboardInterrupt (a partial output that
    ends mid-batch, with its identity record, as an interrupted run leaves it)."""
    from odin_ood.commands import writers

    real, calls = writers.RowWriter.write, []

    def write(self, rows):
        calls.append(len(rows))
        if len(calls) > whole_writes:
            real(self, rows[:then_rows])
            raise KeyboardInterrupt
        real(self, rows)

    monkeypatch.setattr(writers.RowWriter, "write", write)
    try:
        yield calls
    finally:
        monkeypatch.setattr(writers.RowWriter, "write", real)
