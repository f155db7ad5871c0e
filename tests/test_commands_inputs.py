"""``odin-ood score`` on hostile inputs: damaged zip members, duplicate member names, files over
the byte cap, names that are not UTF-8, symbolic links leaving the folder, a model whose scores
are NaN, and untrusted files that must end in one ``error:`` line. Each image that cannot be
scored gets a row with the reason; the run goes on and nothing else is lost."""

from __future__ import annotations

import io
import json
import os
import re
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from odin_ood.cli import main
from odin_ood.commands import writers
from odin_ood.commands.inputs import Inputs
from odin_ood.commands.row_files import read_rows
from serving_support import decoded, encode, fit_mnist_detector, library_outputs, nan_mnist_detector


@pytest.fixture(scope="module")
def setup(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    det, mnist, notmnist = fit_mnist_detector(shared_data, root / "det", batch_size=8)
    digits = [mnist.images[3000 + i, 0].numpy() for i in range(6)]
    letters = [notmnist.images[900 + i, 0].numpy() for i in range(6)]
    return {"root": root, "det": det, "digits": digits, "letters": letters}


def score(setup, inputs, output, *extra, detector=None, model=("--model", "mnist-mlp")):
    return main(
        [
            "score",
            *map(str, inputs),
            "--output",
            str(output),
            "--detector",
            str(detector or setup["root"] / "det"),
            *model,
            "--threads",
            "1",
            "--quiet",
            "--workers",
            "2",
            *extra,
        ]
    )


def library(setup, blobs: list[bytes]) -> dict[str, list]:
    return library_outputs(setup["det"], torch.stack([decoded(b) for b in blobs]))


def test_damaged_zip_members_become_error_rows_and_the_run_goes_on(setup, tmp_path):
    good = [encode(setup["digits"][0]), encode(setup["letters"][1])]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a_good.png", good[0])
        for name in ("b_encrypted.png", "c_method99.png", "d_bad_deflate.png"):
            z.writestr(name, encode(setup["digits"][2]))
        z.writestr("e_good.png", good[1])
    data = bytearray(buf.getvalue())
    infos = {i.filename: i for i in zipfile.ZipFile(io.BytesIO(bytes(data))).infolist()}

    def patch(name: str, local: int, central: int, value: int) -> None:  # little-endian 16-bit fields
        c = data.index(name.encode(), data.index(b"PK\x01\x02")) - 46
        for offset in (infos[name].header_offset + local, c + central):
            data[offset : offset + 2] = value.to_bytes(2, "little")

    patch("b_encrypted.png", 6, 8, 0x1)  # general purpose flag bit 0: encrypted
    patch("c_method99.png", 8, 10, 99)  # compression method 99 (AES): not supported
    start = infos["d_bad_deflate.png"].header_offset + 30 + len("d_bad_deflate.png")
    data[start + 10 : start + 40] = b"\xff" * 30  # corrupt deflate data
    archive = tmp_path / "damaged.zip"
    archive.write_bytes(bytes(data))

    assert score(setup, [archive], tmp_path / "s.jsonl") == 0
    rows = list(read_rows(tmp_path / "s.jsonl"))
    assert [r["source"].split("!")[1] for r in rows] == sorted(infos)
    want = library(setup, good)
    for row, k in ((rows[0], 0), (rows[4], 1)):
        assert row["error"] == "" and row["score"] == want["score"][k]
    for row in rows[1:4]:
        assert row["predicted_class"] == -1 and row["score"] is None and row["is_out_of_distribution"]
        assert "cannot read this zip member" in row["error"]
    assert "encrypted" in rows[1]["error"] and "compression method" in rows[2]["error"]


def test_duplicate_member_names_are_each_scored_by_index(setup, tmp_path):
    blobs = [encode(setup["digits"][3]), encode(setup["letters"][3])]
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(tmp_path / "dup.zip", "w") as z:
        for b in blobs:
            z.writestr("same.png", b)
    assert score(setup, [tmp_path / "dup.zip"], tmp_path / "d.csv") == 0
    rows = list(read_rows(tmp_path / "d.csv"))
    assert [r["index"] for r in rows] == [0, 1]
    assert [r["score"] for r in rows] == library(setup, blobs)["score"]
    assert rows[0]["score"] != rows[1]["score"]


def test_a_zip_of_many_members_is_listed_compactly(tmp_path):
    """70,000 members (a zip64 end record): listing keeps a name and an offset per member, not
    zipfile's table (about 570 bytes a member, measured with tracemalloc on the old listing)."""
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w") as z:
        for i in range(70000):
            z.writestr(f"{i:06d}.png", b"")
    tracemalloc.start()
    try:
        listed = Inputs([path])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(listed) == 70000 and listed.source(69999) == f"{path}!069999.png"
    assert peak / 70000 < 300


def test_a_zip_after_other_data_reads_its_members(setup, tmp_path):
    blobs = [encode(setup["digits"][4]), encode(setup["letters"][4])]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for k, b in enumerate(blobs):
            z.writestr(f"{k}.png", b)
    (tmp_path / "sfx.zip").write_bytes(b"#!/bin/sh\nexit 0\n" * 50 + buf.getvalue())  # like a self-extracting zip
    assert score(setup, [tmp_path / "sfx.zip"], tmp_path / "z.csv") == 0
    assert [r["score"] for r in read_rows(tmp_path / "z.csv")] == library(setup, blobs)["score"]


def test_images_over_the_byte_cap_are_error_rows_read_no_further(setup, tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    small = encode(setup["digits"][4])
    (folder / "a_small.png").write_bytes(small)
    noise = np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8)
    (folder / "b_big.png").write_bytes(encode(noise))
    assert len(small) < 2000 < (folder / "b_big.png").stat().st_size
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bomb.png", bytes(64 << 20))  # 64 MiB of zeros in a zip of 64 kB
    assert (tmp_path / "bomb.zip").stat().st_size < 200_000
    assert score(setup, [folder], tmp_path / "cap.csv", "--max-image-bytes", "2000") == 0
    rows = list(read_rows(tmp_path / "cap.csv"))
    assert rows[0]["score"] == library(setup, [small])["score"][0]
    assert "over the limit of 2000 bytes per image" in rows[1]["error"] and rows[1]["is_out_of_distribution"]
    assert (
        score(setup, [tmp_path / "bomb.zip"], tmp_path / "bomb.csv") == 1
    )  # default cap: 32 MiB; nothing scored: exit 1
    (row,) = read_rows(tmp_path / "bomb.csv")
    assert f"it is {64 << 20} bytes" in row["error"] and "over the limit of 33554432 bytes" in row["error"]


def name_bytes(source: str) -> bytes:
    """Undo the lossless escape of a row's source: ``\\\\`` -> backslash, ``\\xNN`` -> byte NN."""
    return re.sub(
        rb"\\(\\|x[0-9a-f]{2})",
        lambda m: b"\\" if m.group(1) == b"\\" else bytes([int(m.group(1)[1:], 16)]),
        source.encode("utf-8"),
    )


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_names_that_are_not_utf8_are_written_losslessly_and_resume_matches_them(setup, tmp_path, monkeypatch, fmt):
    folder = tmp_path / "names"
    folder.mkdir()
    raw = [b"a-\xff\xfe.png", b"b-back\\slash.png", b"c-\\xff.png", "d-caf\u00e9.png".encode()]
    for k, name in enumerate(raw):
        with open(os.fsencode(folder) + b"/" + name, "wb") as f:
            f.write(encode(setup["digits"][k]))
    whole = tmp_path / f"whole.{fmt}"
    assert score(setup, [folder], whole) == 0
    rows = list(read_rows(whole))
    assert [name_bytes(r["source"]) for r in rows] == [os.fsencode(folder) + b"/" + n for n in sorted(raw)]
    assert len({r["source"] for r in rows}) == 4  # b"\xff" and the text "\xff" stay apart
    assert [r["score"] for r in rows] == library(setup, [encode(setup["digits"][k]) for k in range(4)])["score"]

    out, real_write = tmp_path / f"cut.{fmt}", writers.RowWriter.write
    calls = []

    def interrupted(self, chunk):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        real_write(self, chunk)

    one = ("--chunk", "1", "--batch-size", "1")  # a chunk is a whole batch: one image per write
    assert score(setup, [folder], tmp_path / f"ones.{fmt}", *one) == 0
    monkeypatch.setattr(writers.RowWriter, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        score(setup, [folder], out, *one)
    monkeypatch.setattr(writers.RowWriter, "write", real_write)
    assert score(setup, [folder], out, *one, "--resume") == 0
    assert list(read_rows(out)) == list(read_rows(tmp_path / f"ones.{fmt}"))
    assert [r["source"] for r in read_rows(out)] == [r["source"] for r in rows]


def test_symlinks_leaving_the_folder_get_a_row_unless_followed(setup, tmp_path):
    outside, folder = tmp_path / "outside", tmp_path / "in"
    (outside / "sub").mkdir(parents=True)
    folder.mkdir()
    blobs = {k: encode(setup["digits"][k]) for k in range(3)}
    (folder / "real.png").write_bytes(blobs[0])
    (outside / "o.png").write_bytes(blobs[1])
    (outside / "sub" / "x.png").write_bytes(blobs[2])
    (folder / "link_in.png").symlink_to(folder / "real.png")
    (folder / "link_out.png").symlink_to(outside / "o.png")
    (folder / "dir_out").symlink_to(outside / "sub")
    (folder / "broken.png").symlink_to(tmp_path / "nowhere.png")

    assert score(setup, [folder], tmp_path / "s.jsonl") == 0
    rows = {r["source"][len(str(folder)) + 1 :]: r for r in read_rows(tmp_path / "s.jsonl")}
    assert sorted(rows) == ["broken.png", "dir_out", "link_in.png", "link_out.png", "real.png"]
    assert rows["broken.png"]["error"].endswith("a broken symbolic link")
    for name in ("dir_out", "link_out.png"):
        assert "outside the input folder: not followed (pass --follow-symlinks" in rows[name]["error"]
        assert rows[name]["is_out_of_distribution"] and rows[name]["score"] is None
    real = library(setup, [blobs[0]])["score"][0]
    assert rows["real.png"]["score"] == rows["link_in.png"]["score"] == real

    assert score(setup, [folder], tmp_path / "f.jsonl", "--follow-symlinks") == 0
    rows = {r["source"][len(str(folder)) + 1 :]: r for r in read_rows(tmp_path / "f.jsonl")}
    assert sorted(rows) == ["broken.png", "dir_out/x.png", "link_in.png", "link_out.png", "real.png"]
    want = library(setup, [blobs[2], blobs[1]])["score"]
    assert [rows["dir_out/x.png"]["score"], rows["link_out.png"]["score"]] == want


def test_nan_scores_are_out_of_distribution_with_the_reason(setup, tmp_path, capsys):
    weights = nan_mnist_detector(tmp_path)
    folder = tmp_path / "d"
    folder.mkdir()
    for k in range(3):
        (folder / f"{k}.png").write_bytes(encode(setup["digits"][k]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no raw RuntimeWarning counting the padded rows too
        assert (
            score(
                setup,
                [folder],
                tmp_path / "n.csv",
                detector=tmp_path / "det",
                model=("--model", "mnist-mlp", "--weights", str(weights)),
            )
            == 0
        )
    assert "3 of 3 images have a score that is not finite" in capsys.readouterr().err
    rows = list(read_rows(tmp_path / "n.csv"))
    assert len(rows) == 3
    for r in rows:
        assert r["is_out_of_distribution"] and r["score"] is None and "not finite" in r["error"]


def _detector_with(tmp_path, text: str) -> Path:
    p = tmp_path / "edited.json"
    p.write_text(text)
    return p


UNTRUSTED = [
    ("nested 100,000 deep", lambda d: '{"format": ' + "[" * 100000 + "]" * 100000 + "}", "nested too deeply"),
    ("input_std abc", lambda d: json.dumps({**d, "input_std": "abc"}), "input_std"),
    ("batch_size 10**12", lambda d: json.dumps({**d, "batch_size": 10**12}), "batch_size must lie in [1, 65536]"),
    ("temperature 1e-300", lambda d: json.dumps({**d, "temperature": 1e-300}), "temperature must be"),
    ("clamp NaN", lambda d: json.dumps({**d, "clamp": [float("nan"), float("nan")]}), "clamp[0] must be"),
    ("epsilon 1e6", lambda d: json.dumps({**d, "epsilon": 1e6}), "epsilon must be"),
    ("mean 10**400", lambda d: _with_preprocessing(d, mean=[10**400]), "mean must be 1 or 1 finite numbers"),
    ("std 10**400", lambda d: _with_preprocessing(d, std=[10**400]), "std must be 1 or 1 finite numbers"),
    (
        "resize_size 65536",
        lambda d: _with_preprocessing(d, resize="resize-shorter-then-center-crop", resize_size=65536),
        "PIL's pixel limit",
    ),
    (
        "resize_size 5000",
        lambda d: _with_preprocessing(d, resize="resize-shorter-then-center-crop", resize_size=5000),
        "resize_size 5000 is over the limit of 4096 pixels a side (--max-side)",
    ),
    ("input_shape 65536x65536", lambda d: json.dumps({**d, "input_shape": [1, 65536, 65536]}), "PIL's pixel limit"),
    (
        "input_shape 5000x100",
        lambda d: _with_preprocessing(d, input_shape=[1, 5000, 100]),
        "input_shape 1x5000x100 is over the limit of 4096 pixels a side (--max-side)",
    ),
    (
        "input_shape 4000x4000",
        lambda d: _with_preprocessing(d, input_shape=[1, 4000, 4000]),
        "one input of 1x4000x4000 needs at least",
    ),
]


def _with_preprocessing(d: dict, **fields) -> str:
    shape = {"input_shape": fields["input_shape"]} if "input_shape" in fields else {}
    return json.dumps({**d, **shape, "preprocessing": {**d["preprocessing"], **fields}})


@pytest.mark.parametrize("case,edit,message", UNTRUSTED, ids=[c[0] for c in UNTRUSTED])
def test_untrusted_detector_files_end_in_one_error_line(setup, tmp_path, capsys, case, edit, message):
    d = json.loads((setup["root"] / "det" / "detector.json").read_text())
    assert score(setup, ["mnist"], tmp_path / "x.csv", detector=_detector_with(tmp_path, edit(d))) == 2
    err = capsys.readouterr().err
    assert err.startswith("odin-ood score: error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "x.csv").exists()


def test_corrupt_safetensors_model_ends_in_one_error_line(setup, tmp_path, capsys):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": ' + os.urandom(64))
    assert score(setup, ["mnist"], tmp_path / "x.csv", model=("--model", str(bad))) == 2
    err = capsys.readouterr().err
    assert err.startswith("odin-ood score: error: ") and err.count("\n") == 1 and "not a readable safetensors" in err


def test_a_byte_cap_too_large_to_read_with_is_one_error_line(setup, tmp_path, capsys):
    (tmp_path / "a.png").write_bytes(encode(setup["digits"][0]))
    assert score(setup, [tmp_path], tmp_path / "x.csv", "--max-image-bytes", "9" * 30) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("odin-ood score: error: --max-image-bytes must lie in [1, 1073741824]") and err.count("\n") == 1
    )
