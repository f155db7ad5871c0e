"""``odin-ood score`` decodes the next batches while one is scored (``--prefetch``,
:func:`odin_ood._utils.prefetch.map_ahead`): the output is byte for byte the sequential path's
(``--prefetch 0``) on real images with a corrupt file and an image of the wrong size, the images
decoded ahead never exceed the depth (clamped to the chunk, so --max-memory bounds them), and an
error raised in a decoding thread is the same one-line error, with the same rows kept."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from odin_ood._utils.prefetch import map_ahead
from odin_ood.commands import rows
from odin_ood.commands.inputs import Inputs
from odin_ood.commands.row_files import read_rows
from odin_ood.commands.rows import prefetch_depth
from serving_support import decoded, encode, fit_mnist_detector, library_outputs, score_cli

BATCH = 4
IMAGES = 30  # 7 whole batches and a padded one, with the two bad files among them


@pytest.fixture(scope="module")
def setup(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("prefetch")
    det, mnist, _ = fit_mnist_detector(shared_data, root / "det", batch_size=BATCH)
    folder = root / "in"
    folder.mkdir()
    for i in range(IMAGES - 2):
        (folder / f"{i:02d}.png").write_bytes(encode(mnist.images[4000 + i, 0].numpy()))
    (folder / "09b_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a whole image")  # in batch 2
    (folder / "17b_wrong_size.png").write_bytes(encode(mnist.images[0, 0, :20, :24].numpy()))  # 24x20: batch 4
    return {"root": root, "det": det, "folder": folder}


def score(setup, output, *extra):
    return score_cli(setup["root"], [setup["folder"]], output, *extra, workers=2)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_overlapped_rows_are_byte_identical_to_the_sequential_path(setup, tmp_path, fmt):
    sequential = tmp_path / f"sequential.{fmt}"
    assert score(setup, sequential, "--prefetch", "0") == 0
    for extra in (("--prefetch", "2"), ("--prefetch", "5", "--chunk", "8"), ("--prefetch", "1", "--chunk", "12")):
        out = tmp_path / f"overlapped{'_'.join(extra)}.{fmt}"
        assert score(setup, out, *extra) == 0
        assert out.read_bytes() == sequential.read_bytes(), extra
    got = list(read_rows(sequential))
    files = sorted(setup["folder"].iterdir())
    assert [r["source"] for r in got] == [str(p) for p in files]
    bad = {"09b_broken.png": "not an image", "17b_wrong_size.png": "image is 24x20 but the model takes 28x28"}
    for r, p in zip(got, files, strict=True):
        if p.name in bad:
            assert bad[p.name] in r["error"] and r["score"] is None and r["predicted_class"] == -1
    # independently: the library on the same batches (an unreadable image is a zero image in its place)
    x = torch.stack([torch.zeros(1, 28, 28) if p.name in bad else decoded(p.read_bytes()) for p in files])
    want = library_outputs(setup["det"], x)
    good = [k for k, p in enumerate(files) if p.name not in bad]
    assert [got[k]["score"] for k in good] == [want["score"][k] for k in good]
    assert [got[k]["predicted_class"] for k in good] == [want["predicted_class"][k] for k in good]


@pytest.mark.parametrize("prefetch, chunk, depth", [(2, None, 2), (5, 8, 1), (3, 4, 0), (0, None, 0)])
def test_images_decoded_ahead_never_exceed_the_depth(setup, tmp_path, monkeypatch, prefetch, chunk, depth):
    """Every image is read while at most ``depth`` batches lie between its batch and the one being
    scored; and the look-ahead happens: each batch waits (up to a minute) for the reading of the
    batch ``depth`` after it, which a path without look-ahead would never start."""
    lock, progress = threading.Condition(), {"scored": 0, "ahead": [], "loaded": set()}
    real_load, real_score = Inputs.load, rows.score_rows

    def load(self, i, spec):
        with lock:
            progress["ahead"].append(i // BATCH - progress["scored"])
            progress["loaded"].add(i)
            lock.notify_all()
        return real_load(self, i, spec)

    def score_rows(runtime, spec, inputs, indices, *a, **k):
        k_batch = indices[0] // BATCH
        with lock:  # the reading of batch k + depth has begun before batch k is scored
            assert lock.wait_for(lambda: min((k_batch + depth) * BATCH, IMAGES - 1) in progress["loaded"], 60)
        out = real_score(runtime, spec, inputs, indices, *a, **k)
        with lock:
            progress["scored"] += 1
        return out

    monkeypatch.setattr(Inputs, "load", load)
    monkeypatch.setattr(rows, "score_rows", score_rows)
    out = tmp_path / "s.csv"
    assert score(setup, out, "--prefetch", str(prefetch), *(["--chunk", str(chunk)] if chunk else [])) == 0
    assert len(progress["ahead"]) == IMAGES and progress["scored"] == -(-IMAGES // BATCH)
    assert max(progress["ahead"]) == depth


def test_an_error_in_a_decoding_thread_is_the_same_one_line_error(setup, tmp_path, monkeypatch, capsys):
    """Not an unreadable image (that is a row) but a failure of the reading itself, e.g. a Parquet
    file that stops parsing: one line on stderr, exit 2, the chunks before it kept for --resume."""
    real_load = Inputs.load

    def load(self, i, spec):
        if i == 21:  # batch 5, in the third chunk of 8
            raise ValueError(f"{self.source(i)}: the reader broke")
        return real_load(self, i, spec)

    monkeypatch.setattr(Inputs, "load", load)
    outcomes = []
    for prefetch in ("0", "3"):
        out = tmp_path / f"p{prefetch}.csv"
        code = score(setup, out, "--prefetch", prefetch, "--chunk", "8")
        partial = out.with_name(out.name + ".partial")
        outcomes.append((code, capsys.readouterr().err, partial.read_bytes(), out.exists()))
    assert outcomes[0] == outcomes[1]
    code, err, kept, published = outcomes[0]
    assert code == 2 and not published
    assert err == f"odin-ood score: error: {sorted(setup['folder'].iterdir())[21]}: the reader broke\n"
    assert kept.count(b"\n") == 1 + 16  # the header and the two whole chunks before the failing one


def test_prefetch_depth_is_clamped_to_the_chunk_and_refused_below_zero(setup, tmp_path, capsys):
    assert prefetch_depth(2, 4096, 64) == 2
    assert prefetch_depth(5, 8, 4) == 1 and prefetch_depth(2, 4, 4) == 0
    with pytest.raises(ValueError, match="--prefetch must be >= 0"):
        prefetch_depth(-1, 8, 4)
    assert score(setup, tmp_path / "s.csv", "--prefetch", "-1") == 2
    assert capsys.readouterr().err == "odin-ood score: error: --prefetch must be >= 0, got -1\n"


def test_map_ahead_gives_each_group_in_order_and_raises_at_its_turn():
    def fn(x):
        if x == 7:
            raise KeyError(x)
        return x * x

    groups = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    with ThreadPoolExecutor(2) as pool:
        assert list(map_ahead(fn, groups[:2] + groups[3:], pool, 2)) == [[0, 1, 4], [9, 16, 25], [81]]
        got = map_ahead(fn, groups, pool, 1)
        assert next(got) == [0, 1, 4] and next(got) == [9, 16, 25]
        with pytest.raises(KeyError):
            next(got)
    assert list(map_ahead(fn, groups[:2], None, 3)) == [[0, 1, 4], [9, 16, 25]]
