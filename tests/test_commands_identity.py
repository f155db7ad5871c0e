"""Every row of ``odin-ood score`` is fixed by its image and its index, whatever the chunking, a
resume after a torn line, or a failed image before it: checked with a classifier whose rounding
depends on the batch position (``position_support``), against ``Detector.outputs`` on all the
inputs in order (an image that cannot be scored is a zero image there)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from odin_ood import Detector
from odin_ood.cli import main
from odin_ood.commands import writers
from odin_ood.commands.row_files import read_rows
from position_support import make
from serving_support import decoded, encode, fit_mnist_detector, library_outputs

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def setup(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("identity")
    det, mnist, notmnist = fit_mnist_detector(shared_data, root / "det", batch_size=8)
    folder = root / "imgs"
    folder.mkdir()
    blobs = [encode((mnist if i % 3 else notmnist).images[4000 + i, 0].numpy()) for i in range(21)]
    blobs[3] = b"not an image"  # an error row early on: the images after it keep their positions
    for i, b in enumerate(blobs):
        (folder / f"{i:02d}.png").write_bytes(b)
    x = torch.stack([torch.zeros(1, 28, 28) if i == 3 else decoded(b) for i, b in enumerate(blobs)])
    odd = Detector.load(root / "det", make())
    want = library_outputs(odd, x)  # batches [8k, 8k + 8), position i mod 8
    plain = library_outputs(det, x)
    assert want["score"] != plain["score"]  # the model does depend on the position
    return {"root": root, "folder": folder, "want": want}


@pytest.fixture(autouse=True)
def _importable(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))


def run_score(setup, output, *extra):
    return main(
        [
            "score",
            str(setup["folder"]),
            "--output",
            str(output),
            "--detector",
            str(setup["root"] / "det"),
            "--model",
            "position_support:make",
            "--threads",
            "1",
            "--quiet",
            "--workers",
            "1",
            *extra,
        ]
    )


def check(setup, path) -> None:
    rows = list(read_rows(path))
    assert [r["index"] for r in rows] == list(range(21))
    assert rows[3]["predicted_class"] == -1 and "not an image" in rows[3]["error"]
    good = [i for i in range(21) if i != 3]
    for key in ("score", "confidence", "predicted_class"):
        assert [rows[i][key] for i in good] == [setup["want"][key][i] for i in good], key


@pytest.mark.parametrize("chunk", ["1", "3", "8", "13", "4096"])
def test_every_chunk_gives_the_rows_of_the_library_on_all_inputs(setup, tmp_path, chunk):
    out = tmp_path / "s.csv"
    assert run_score(setup, out, "--chunk", chunk) == 0
    check(setup, out)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_resume_after_a_torn_line_with_another_chunk_is_byte_identical(setup, tmp_path, monkeypatch, fmt):
    whole = tmp_path / f"whole.{fmt}"
    assert run_score(setup, whole, "--chunk", "8") == 0
    check(setup, whole)
    out = tmp_path / f"cut.{fmt}"
    real_write = writers.RowWriter.write

    def interrupted(self, rows):
        if self.done:
            raise KeyboardInterrupt
        real_write(self, rows)

    monkeypatch.setattr(writers.RowWriter, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_score(setup, out, "--chunk", "8")
    monkeypatch.setattr(writers.RowWriter, "write", real_write)
    partial = out.with_name(out.name + ".partial")
    text = partial.read_bytes()
    partial.write_bytes(text[: text.rindex(b"\n", 0, len(text) - 1) + 9])  # row 7 torn: 7 whole rows remain
    assert run_score(setup, out, "--chunk", "5", "--resume") == 0
    assert out.read_bytes() == whole.read_bytes()


@pytest.mark.parametrize("world", [1, 2, 3])
def test_ranks_take_whole_aligned_batches_covering_every_input_once(world):
    from odin_ood.commands.rows import Shard

    for n in range(1, 40):
        for b in (1, 3, 8):
            shards = [list(Shard(n, b, r, world)) for r in range(world)]
            assert sorted(i for s in shards for i in s) == list(range(n))
            for r, s in enumerate(shards):
                batches = [s[k : k + b] for k in range(0, len(s), b)]
                assert all(
                    batch == list(range(batch[0], batch[0] + len(batch)))
                    and batch[0] % b == 0
                    and (batch[0] // b) % world == r
                    for batch in batches
                )


def test_a_graph_runtime_s_rows_do_not_depend_on_the_chunk_and_keep_the_tolerance(setup, tmp_path):
    """The exported graph takes any batch size, but ``score`` still runs it in full batches at
    fixed positions: its rows are the same bytes whatever ``--chunk``, and within SCORE_TOLERANCE
    of the library's (the position-dependent model is traced into the graph as it is)."""
    pytest.importorskip("onnxruntime")
    from odin_ood.runtimes import SCORE_TOLERANCE

    outputs = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a graph of any batch size, not the fallback of one size
        for chunk in ("1", "13", "4096"):
            out = tmp_path / f"graph-{chunk}.csv"
            assert run_score(setup, out, "--chunk", chunk, "--runtime", "onnxruntime") == 0
            outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]
    rows = list(read_rows(tmp_path / "graph-1.csv"))
    good = [i for i in range(21) if i != 3]
    assert max(abs(rows[i]["score"] - setup["want"]["score"][i]) for i in good) <= SCORE_TOLERANCE
    assert [rows[i]["predicted_class"] for i in good] == [setup["want"]["predicted_class"][i] for i in good]
