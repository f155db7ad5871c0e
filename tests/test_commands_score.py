"""``odin-ood score`` end to end on real PNG/JPEG files of MNIST and notMNIST, a zip, a dataset
name and the shipped MNIST MLP: rows equal the library's, order is deterministic, an interrupted
run resumed gives exactly the rows of an uninterrupted one."""

from __future__ import annotations

import zipfile

import pytest
import torch

from odin_ood.commands import writers
from odin_ood.commands.row_files import read_rows
from serving_support import decoded, encode, fit_mnist_detector, library_outputs, score_cli


@pytest.fixture(scope="module")
def setup(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("score")
    det, mnist, notmnist = fit_mnist_detector(shared_data, root / "det", batch_size=16)
    folder = root / "digits"
    for i in range(40):  # nested folders, names that sort differently as numbers and as text
        sub = folder / ("b" if i % 3 else "a")
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"{i}.png").write_bytes(encode(mnist.images[2000 + i, 0].numpy()))
    (folder / "notes.txt").write_text("not an image: ignored by suffix")
    with zipfile.ZipFile(root / "letters.zip", "w") as z:
        for i in range(25):
            z.writestr(f"letters/{i:02d}.jpg", encode(notmnist.images[700 + i, 0].numpy(), "JPEG"))
        z.writestr("letters/zz_broken.png", b"\x89PNG\r\n\x1a\n broken")
    return {"root": root, "det": det, "mnist": mnist, "folder": folder, "zip": root / "letters.zip"}


def run_score(setup, output, *extra, inputs=None):
    return score_cli(setup["root"], inputs or [setup["folder"], setup["zip"]], output, *extra, workers=2)


def expected_rows(setup) -> list[dict]:
    """Independently: sorted file names, PIL decoding, Detector.outputs in batches of 16."""
    files = sorted(p for p in setup["folder"].rglob("*.png"))
    sources = [str(p) for p in files]
    blobs = [p.read_bytes() for p in files]
    with zipfile.ZipFile(setup["zip"]) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".jpg"))
        blobs += [z.read(n) for n in names]
        sources += [f"{setup['zip']}!{n}" for n in names]
    out = library_outputs(setup["det"], torch.stack([decoded(b) for b in blobs]))
    rows = [
        {"index": i, "source": s, **{k: v[i] for k, v in out.items()}, "class_name": None, "error": ""}
        for i, s in enumerate(sources)
    ]
    rows.append(
        {
            "index": len(rows),
            "source": f"{setup['zip']}!letters/zz_broken.png",
            "predicted_class": -1,
            "class_name": None,
            "confidence": None,
            "score": None,
            "is_out_of_distribution": True,
            "error": None,
        }
    )
    return rows


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_rows_equal_the_library_in_sorted_order(setup, tmp_path, fmt):
    out = tmp_path / f"scores.{fmt}"
    assert run_score(setup, out) == 0
    got = list(read_rows(out))
    want = expected_rows(setup)
    assert "zz_broken.png: not an image" in got[-1]["error"]
    got[-1]["error"] = None
    assert got == want
    assert sum(r["is_out_of_distribution"] for r in got[:40]) < sum(r["is_out_of_distribution"] for r in got[40:])


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_interrupted_then_resumed_run_gives_exactly_the_uninterrupted_rows(setup, tmp_path, monkeypatch, fmt):
    whole = tmp_path / f"whole.{fmt}"
    assert run_score(setup, whole, "--chunk", "7") == 0
    out = tmp_path / f"cut.{fmt}"
    real_write, calls = writers.RowWriter.write, []

    def interrupted(self, rows):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(len(rows))
        real_write(self, rows)

    monkeypatch.setattr(writers.RowWriter, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_score(setup, out, "--chunk", "7")
    monkeypatch.setattr(writers.RowWriter, "write", real_write)
    assert not out.exists() and calls == [16, 16, 16]  # --chunk 7 is rounded up to whole batches of 16
    if fmt != "parquet":  # a torn last line, as a kill during a write leaves it
        with open(out.with_name(out.name + ".partial"), "a") as f:
            f.write('21,"half a ro')
    assert run_score(setup, out, "--chunk", "5") == 2  # a partial run exists: refused without --resume
    assert run_score(setup, out, "--chunk", "5", "--resume") == 0
    if fmt == "parquet":
        assert list(read_rows(out)) == list(read_rows(whole))
    else:
        assert out.read_bytes() == whole.read_bytes()
    assert run_score(setup, out, "--resume") == 0  # already complete: unchanged
    assert list(read_rows(out)) == list(read_rows(whole))


def test_existing_output_and_foreign_partial_are_refused(setup, tmp_path, capsys, monkeypatch):
    out = tmp_path / "s.csv"
    assert run_score(setup, out) == 0
    assert run_score(setup, out) == 2
    assert "exists: choose another --output, or pass --overwrite" in capsys.readouterr().err
    partial = tmp_path / "p.csv.partial"
    partial.write_text(",".join(writers.COLUMNS) + "\n0,/elsewhere/x.png,1,,0.5,0.5,false,\n")
    assert run_score(setup, tmp_path / "p.csv", "--resume") == 2
    assert "records no identity" in capsys.readouterr().err
    with monkeypatch.context() as m:  # this scorer's identity record, as a run killed before its first row leaves it
        m.setattr(writers.RowWriter, "_append", lambda self, text: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            run_score(setup, tmp_path / "q.csv")
    (tmp_path / "q.csv.identity.json").rename(tmp_path / "p.csv.identity.json")
    assert run_score(setup, tmp_path / "p.csv", "--resume") == 2
    assert "written for other inputs" in capsys.readouterr().err


def test_dataset_name_input_scores_the_dataset_in_order(setup, shared_data, tmp_path):
    out = tmp_path / "n.jsonl"
    assert run_score(setup, out, "--data-root", str(shared_data), inputs=["notmnist"]) == 0
    rows = list(read_rows(out))
    ds = __import__("odin_ood").data.load("notmnist", root=shared_data)
    want = library_outputs(setup["det"], ds.images.float() / 255)
    assert len(rows) == len(ds) == 10000
    assert [r["source"] for r in rows[:2]] == ["notmnist:test/0", "notmnist:test/1"]
    assert [r["score"] for r in rows] == want["score"]
    assert [r["predicted_class"] for r in rows] == want["predicted_class"]


def test_unknown_input_and_bad_suffix_name_the_problem(setup, tmp_path, capsys):
    assert run_score(setup, tmp_path / "x.csv", inputs=[str(tmp_path / "nowhere")]) == 2
    assert "not a dataset name" in capsys.readouterr().err
    assert run_score(setup, tmp_path / "x.txt") == 2
    assert ".csv, .jsonl, .parquet" in capsys.readouterr().err
