"""``odin-ood score`` on WebDataset tar shards (:mod:`odin_ood.commands.webdataset`): the same real
images as a folder, a folder of shards, a brace pattern or listed shards give the same rows (each
image at the same batch position, on a model whose rounding depends on it) plus the label of its
``.cls``/``.json`` member; every bad member, sample or shard is an error row and the rest score;
each image member is read once, by offset, and no member name reaches the disk; --resume, --limit
and --chunk keep the rows bit-identical."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from formats_support import add_member, killed_mid_write, real_images, write_folder, write_shards
from odin_ood.cli import main
from odin_ood.commands import webdataset
from odin_ood.commands.row_files import read_rows
from odin_ood.commands.webdataset import expand_braces


@pytest.fixture(scope="module")
def setup(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("wds")
    items, det = real_images(shared_data, root)
    folder = write_folder(root / "imgs", items)
    shards = write_shards(root / "shards", items)
    reference = root / "folder.csv"
    assert score(det, [folder], reference) == 0
    return {"root": root, "items": items, "det": det, "shards": shards, "reference": list(read_rows(reference))}


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


def without_source(rows):
    return [{k: v for k, v in r.items() if k not in ("source", "label")} for r in rows]


@pytest.mark.parametrize("how", ["folder", "pattern", "files"])
def test_shards_score_like_the_same_images_in_a_folder_with_their_labels(setup, tmp_path, how):
    shards = setup["shards"]
    inputs = {
        "folder": [shards[0].parent],
        "pattern": [str(shards[0].parent / "data-{000..002}.tar")],
        "files": shards,
    }[how]
    out = tmp_path / "shards.csv"
    assert score(setup["det"], inputs, out) == 0
    rows = list(read_rows(out))
    assert without_source(rows) == without_source(setup["reference"])  # bit for bit: same batch positions
    assert [r["label"] for r in rows] == [y for *_, y in setup["items"]]
    assert rows[0]["source"] == f"{shards[0]}!000.png" and rows[14]["source"] == f"{shards[1]}!014.png"
    assert len({r["predicted_class"] for r in rows}) > 3 and not any(r["error"] for r in rows)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_resume_limit_and_chunk_keep_the_rows_bit_identical(setup, tmp_path, monkeypatch, fmt):
    folder = setup["shards"][0].parent
    whole = tmp_path / f"whole.{fmt}"
    assert score(setup["det"], [folder], whole, "--chunk", "5") == 0  # rounded up to batches of 16
    other = tmp_path / f"other.{fmt}"
    assert score(setup["det"], [folder], other) == 0
    assert list(read_rows(other)) == list(read_rows(whole))
    first = tmp_path / f"first.{fmt}"
    assert score(setup["det"], [folder, "missing.tar"], first, "--limit", "21") == 0  # later inputs are not listed
    assert list(read_rows(first)) == list(read_rows(whole))[:21]
    cut = tmp_path / f"cut.{fmt}"
    with killed_mid_write(monkeypatch, 1, 5), pytest.raises(KeyboardInterrupt):  # 21 rows: mid-batch
        score(setup["det"], [folder], cut, "--chunk", "5")
    assert score(setup["det"], [folder], cut, "--resume", "--chunk", "40") == 0
    assert list(read_rows(cut)) == list(read_rows(whole))
    if fmt == "csv":
        assert cut.read_bytes() == whole.read_bytes()
        lines = whole.read_text().splitlines(keepends=True)
        partial = tmp_path / "bad.csv.partial"  # the header of an unlabelled run: not continued
        partial.write_text(",".join(lines[0].rstrip("\n").split(",")[:-1]) + "\n")
        assert score(setup["det"], [folder], tmp_path / "bad.csv", "--resume") == 2


def test_every_bad_member_sample_or_shard_is_an_error_row_and_the_rest_score(setup, tmp_path):
    (_, good, label), (_, other, _) = setup["items"][0], setup["items"][1]
    folder = tmp_path / "hostile"
    folder.mkdir()
    with tarfile.open(folder / "a.tar", "w", format=tarfile.PAX_FORMAT) as tar:
        add_member(tar, "k0.png", good)
        add_member(tar, "k0.cls", str(label).encode())
        add_member(tar, "k1.png", b"broken")
        add_member(tar, "k2.cls", b"3")  # a labelled sample without its image
        add_member(tar, "k3.png", other)
        add_member(tar, "k3.cls", b"seven")
        add_member(tar, "k4.png", b"", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        add_member(tar, "k5.png", other)
        add_member(tar, "k5.json", b"{not json")
        add_member(tar, "../../escape.png", good)
        add_member(tar, "/abs/k6.seg.png", good)  # not the sample's image: seg.png
        add_member(tar, "/abs/k6.jpg", other)
        add_member(tar, "k7.png", good)
        add_member(tar, "k7.json", b'{"label": true}')
    (folder / "b.tar").write_bytes(gzip.compress((folder / "a.tar").read_bytes()))
    (folder / "c.tar").write_bytes(b"this is not a tar file at all" * 40)
    damaged = bytearray((folder / "a.tar").read_bytes())
    damaged[2048:2068] = b"\xff" * 20  # the third member's header (after k0.png, k0.cls): bad checksum
    (folder / "d.tar").write_bytes(bytes(damaged))
    huge = io.BytesIO()
    with tarfile.open(fileobj=huge, mode="w") as tar:
        add_member(tar, "h0.png", good)
        info = tarfile.TarInfo("h1.png")
        info.size = 1 << 40  # states a terabyte; the file ends after its header
        tar.fileobj.write(info.tobuf(tarfile.GNU_FORMAT))  # base-256 size field
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "e.tar").write_bytes(huge.getvalue()[:1536])
    (tmp_path / "one.png").write_bytes(good)  # an image file among shards: a row with a null label
    out = tmp_path / "out.jsonl"
    inputs = [tmp_path / "one.png", folder, tmp_path / "more" / "{e,f}.tar"]
    assert score(setup["det"], inputs, out, "--max-image-bytes", "100000") == 0
    rows = {r["source"].removeprefix(f"{tmp_path}/").removeprefix("hostile/"): r for r in read_rows(out)}
    errors = {s: r["error"] for s, r in rows.items() if r["error"]}
    assert {s: r["label"] for s, r in rows.items() if not r["error"]} == {
        "a.tar!k0.png": label,
        "a.tar!../../escape.png": None,
        "a.tar!/abs/k6.jpg": None,
        "d.tar!k0.png": label,
        "more/e.tar!h0.png": None,
        "one.png": None,
    }
    assert rows["a.tar!k0.png"]["score"] == setup["reference"][0]["score"]
    assert not (tmp_path / "escape.png").exists() and not Path("/abs").exists()
    want = {
        "a.tar!k1.png": "not an image",
        "a.tar!k2": "a sample without an image member (it has .cls)",
        "a.tar!k3.png": "label member k3.cls is not a decimal integer",
        "a.tar!k4.png": "not a regular file member",
        "a.tar!k5.png": "label member k5.json is not JSON",
        "a.tar!k7.png": "its label True is not an integer",
        "b.tar": "a gzip-compressed tar",
        "c.tar": "not a readable tar file",
        "d.tar": "damaged at byte 2048: not a tar header",
        "more/e.tar!h1.png": "over the limit of 100000 bytes",
        "more/e.tar": "damaged at byte 1536: unexpected end of data",
        "more/f.tar": "no such shard",
    }
    assert set(errors) == set(want)
    for source, reason in want.items():
        assert reason in errors[source], (source, errors[source])
        assert rows[source]["is_out_of_distribution"] and rows[source]["predicted_class"] == -1
    assert [r["index"] for r in read_rows(out)] == list(range(len(rows)))


def test_a_header_stating_a_huge_block_is_damage_not_an_allocation(setup, tmp_path):
    good = setup["items"][0][1]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        add_member(tar, "ok.png", good)
        add_member(tar, "x" * 200 + ".png", good)  # a long name: written with a pax header
    data = bytearray(buf.getvalue())
    pax = data.index(b"././@PaxHeader")
    data[pax + 124 : pax + 136] = b"77777777777\0"  # the pax block now states 8 GiB
    data[pax + 148 : pax + 156] = b" " * 8
    data[pax + 148 : pax + 156] = b"%06o\0 " % sum(data[pax : pax + 512])  # a valid checksum again
    header = tarfile.TarInfo.frombuf(bytes(data[pax : pax + 512]), "utf-8", "surrogateescape")
    assert header.size == 0o77777777777
    shard = tmp_path / "pax.tar"
    shard.write_bytes(bytes(data))
    listed = webdataset.Shards(str(shard), 1 << 20)
    assert [listed.name(i).removeprefix(f"{shard}") for i in range(len(listed))] == ["!ok.png", ""]
    assert "states a 8589934592-byte block" in listed.errors[1]


def test_each_image_member_is_read_once_by_offset_and_listing_reads_headers_only(setup, tmp_path, monkeypatch):
    reads, listed = [], []
    real_pread, real_read = os.pread, webdataset._Clamped.read

    def pread(fd: int, n: int, at: int) -> bytes:
        reads.append((os.fstat(fd).st_ino, at))
        return real_pread(fd, n, at)

    monkeypatch.setattr(webdataset.os, "pread", pread)
    monkeypatch.setattr(webdataset._Clamped, "read", lambda self, n=-1: listed.append(n) or real_read(self, n))
    out = tmp_path / "out.csv"
    assert score(setup["det"], [setup["shards"][0].parent], out, "--chunk", "16") == 0
    assert len(reads) == len(set(reads)) == len(setup["items"])  # one pread per image member, none twice
    members = 2 * len(setup["items"])
    assert sum(listed) <= 512 * (members + 3 * len(setup["shards"]))  # headers (and end blocks) only
    assert max(listed) == 512


def test_brace_patterns_expand_like_the_shell_and_are_counted_before_they_are_built():
    assert expand_braces("data-{000..002}.tar") == ["data-000.tar", "data-001.tar", "data-002.tar"]
    assert expand_braces("{a,b}-{9..11}.tar") == ["a-9.tar", "a-10.tar", "a-11.tar", "b-9.tar", "b-10.tar", "b-11.tar"]
    assert expand_braces("s{3..1}.tar") == ["s3.tar", "s2.tar", "s1.tar"]
    with pytest.raises(ValueError, match="names over 1000000 shards"):
        expand_braces("{0..999}-{0..999}-{0..9}.tar")
    with pytest.raises(ValueError, match="names over 1000000 shards"):
        expand_braces("{0..99999999999999}.tar")
    with pytest.raises(ValueError, match="unbalanced or nested"):
        expand_braces("a-{{0..2}}.tar")
    with pytest.raises(ValueError, match="neither a list"):
        expand_braces("a-{x}.tar")
