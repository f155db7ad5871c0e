"""``odin-ood score`` on Parquet files of encoded images (:mod:`odin_ood.commands.parquet_images`):
Hugging Face ``{bytes, path}`` structs and plain bytes give the rows of the same images in a folder
(same batch positions, on a model whose rounding depends on them) plus the label column; every
bad row is an error row; what a row group states is bounded before it is read (and a dictionary
column is not expanded); wrong columns are one line; --limit, --chunk and --resume hold."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from formats_support import killed_mid_write, real_images, write_folder, write_parquet
from odin_ood.cli import main
from odin_ood.commands.parquet_images import ParquetImages
from odin_ood.commands.row_files import read_rows
from odin_ood.preprocess import Preprocessing


@pytest.fixture(scope="module")
def setup(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("parquet")
    items, det = real_images(shared_data, root)
    reference = root / "folder.csv"
    assert score(det, [write_folder(root / "imgs", items)], reference) == 0
    return {"root": root, "items": items, "det": det, "reference": list(read_rows(reference))}


def score(det, inputs, output, *extra) -> int:
    return main(
        [
            "score",
            *map(str, inputs),
            "--output",
            str(output),
            "--detector",
            str(det),
            "--model",
            "position_support:make",
            "--threads",
            "1",
            "--quiet",
            *extra,
        ]
    )


def scores_only(rows):
    return [{k: v for k, v in r.items() if k not in ("source", "label")} for r in rows]


@pytest.mark.parametrize("struct", [True, False], ids=["hf-struct", "bytes"])
def test_parquet_scores_like_the_same_images_in_a_folder_with_labels(setup, tmp_path, monkeypatch, struct):
    path = write_parquet(tmp_path / "images.parquet", setup["items"], struct=struct, row_group_size=7)
    whole = tmp_path / "whole.csv"
    assert score(setup["det"], [path], whole, "--chunk", "5") == 0
    rows = list(read_rows(whole))
    assert scores_only(rows) == scores_only(setup["reference"])
    assert [r["label"] for r in rows] == [y for *_, y in setup["items"]]
    assert [r["source"] for r in rows[:2]] == [f"{path}!0", f"{path}!1"]
    other = tmp_path / "other.csv"
    assert score(setup["det"], [path], other) == 0
    assert other.read_bytes() == whole.read_bytes()
    first = tmp_path / "first.parquet"
    assert score(setup["det"], [path], first, "--limit", "19") == 0
    assert list(read_rows(first)) == rows[:19]
    cut = tmp_path / "cut.csv"
    with killed_mid_write(monkeypatch, 1, 8), pytest.raises(KeyboardInterrupt):  # 24 rows: mid-batch
        score(setup["det"], [path], cut, "--chunk", "5")
    assert score(setup["det"], [path], cut, "--resume") == 0
    assert cut.read_bytes() == whole.read_bytes()


def test_bad_rows_are_error_rows_and_an_oversized_row_group_is_not_read(setup, tmp_path):
    (_, good, y0), (_, other, y1) = setup["items"][0], setup["items"][1]
    kind = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    images = [
        {"bytes": good, "path": "a.png"},
        None,
        {"bytes": None, "path": "/etc/passwd"},
        {"bytes": b"broken", "path": None},
        {"bytes": other * 40, "path": None},
    ]
    small = pa.table({"image": pa.array(images, kind), "label": pa.array([y0, None, 2, 3, 4], pa.int64())})
    big = pa.table({"image": pa.array([{"bytes": other, "path": None}] * 200, kind), "label": pa.array([y1] * 200)})
    path = tmp_path / "mixed.parquet"
    with pq.ParquetWriter(path, small.schema, use_dictionary=False) as w:
        w.write_table(small)
        w.write_table(big)
        w.write_table(small.slice(0, 1))
    out = tmp_path / "out.jsonl"
    assert score(setup["det"], [path], out, "--max-image-bytes", "10000", "--max-memory", "200KiB") == 0
    rows = list(read_rows(out))
    assert len(rows) == 206 and [r["label"] for r in rows[:5]] == [y0, None, 2, 3, 4]
    assert [r["error"] == "" for r in rows] == [True] + [False] * 204 + [True]
    assert rows[0]["score"] == rows[-1]["score"] == setup["reference"][0]["score"]
    reasons = [
        "no image (null)",
        "holds only a path (/etc/passwd), no image bytes",
        "not an image",
        "over the limit of 10000 bytes per image",
        "its row group (1) states",
    ]
    for row, reason in zip(rows[1:6], reasons, strict=True):
        assert reason in row["error"] and row["predicted_class"] == -1 and row["is_out_of_distribution"]
    assert all("over a quarter of --max-memory" in r["error"] for r in rows[5:205])


def test_a_dictionary_encoded_column_is_read_as_the_footer_states_it(setup, tmp_path):
    image = setup["items"][5][1] + bytes(10_000)  # a PNG and 10 KB of trailing zeros, in 300 rows: 3 MB decoded
    path = tmp_path / "repeated.parquet"
    pq.write_table(pa.table({"image": pa.array([image] * 300, pa.binary())}), path, use_dictionary=True)
    parquet = ParquetImages(path, "image", "label", 1 << 20, max_memory=256 * 1024)
    assert parquet.group_bytes[0] < 40_000 and parquet.labels is None
    before = pa.total_allocated_bytes()
    assert parquet.load(299, Preprocessing((1, 28, 28))).size == (28, 28)  # PIL ignores the trailing bytes
    assert pa.total_allocated_bytes() - before < 4 * parquet.group_bytes[0]
    assert len(parquet) == 300


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "no column 'picture' (--image-column); its columns are image, label"),
        ("ints", "column 'image' is int64: expected encoded image bytes"),
        ("labels", "--label-column label holds string, not integers"),
        ("garbage", "not a readable Parquet file"),
    ],
)
def test_wrong_columns_or_files_are_refused_in_one_line(setup, tmp_path, capsys, case, message):
    path = tmp_path / "f.parquet"
    if case == "garbage":
        path.write_bytes(b"PAR1 not really")
    else:
        image = pa.array([1, 2]) if case == "ints" else pa.array([b"x", b"y"])
        label = pa.array(["cat", "dog"]) if case == "labels" else pa.array([0, 1])
        pq.write_table(pa.table({"image": image, "label": label}), path)
    extra = ["--image-column", "picture"] if case == "missing" else []
    assert score(setup["det"], [path], tmp_path / "o.csv", *extra) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    if case == "labels":
        # labels dropped; b"x" is no image, so every row is an error row: exit 1, rows written
        assert score(setup["det"], [path], tmp_path / "o.csv", "--label-column", "") == 1
