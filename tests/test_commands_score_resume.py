"""``odin-ood score --resume`` continues only what it can prove it continues: a partial output
interrupted mid-write (a torn last line) and resumed with a re-fitted detector, another runtime,
a model with the same weights but other code, or with no record of what wrote it, is refused
in one line with exit status 2 and every byte left as it was; resumed with the same detector,
model and runtime, it gives the uninterrupted output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from odin_ood import Detector, models
from odin_ood._utils import files
from odin_ood.cli import main
from odin_ood.commands import writers
from odin_ood.commands.row_files import read_rows
from serving_support import encode, fit_mnist_detector

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def setup(shared_data, tmp_path_factory):
    """The shipped MNIST MLP's detector (T and epsilon from the grid), the same model re-fitted
    with T = 1000, epsilon = 0 (another threshold), and 20 real images as PNG files."""
    root = tmp_path_factory.mktemp("resume")
    det, mnist, notmnist = fit_mnist_detector(shared_data, root / "det", batch_size=8)
    refit = Detector(models.load("mnist-mlp"), temperatures=(1000.0,), epsilons=(0.0,), batch_size=8)
    refit.fit(mnist.images[300:500].float() / 255, notmnist.images[300:500].float() / 255)
    assert (refit.temperature_, refit.epsilon_, refit.threshold_) != (det.temperature_, det.epsilon_, det.threshold_)
    refit.save(root / "refit")
    folder = root / "imgs"
    folder.mkdir()
    for i in range(20):
        (folder / f"{i:02d}.png").write_bytes(encode((mnist if i % 2 else notmnist).images[6000 + i, 0].numpy()))
    return root


@pytest.fixture(autouse=True)
def _importable(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))  # position_support


def run_score(root, out, *extra, detector="det"):
    args = [
        "score",
        str(root / "imgs"),
        "--output",
        str(out),
        "--detector",
        str(root / detector),
        "--model",
        "mnist-mlp",
        "--threads",
        "1",
        "--quiet",
        "--workers",
        "1",
        "--chunk",
        "8",
        *extra,
    ]
    return main(args)


def interrupted(root, out, monkeypatch):
    """A run killed while writing its second chunk: half of that chunk reaches the disk (CSV,
    JSONL: a torn last line; Parquet: a half-written temporary part)."""
    real_append, real_part = writers.RowWriter._append, writers.RowWriter._write_part

    def torn(self, text):
        if self.done:
            real_append(self, text[: len(text) // 2])
            raise KeyboardInterrupt
        real_append(self, text)

    def unrenamed(self, rows):
        if self.done:
            with files.new_temporary(self.partial / f"rows-{self.done:012d}.parquet") as (f, _):
                f.write(b"PAR1 half a part")
            raise KeyboardInterrupt
        real_part(self, rows)

    with monkeypatch.context() as m:
        m.setattr(writers.RowWriter, "_append", torn)
        m.setattr(writers.RowWriter, "_write_part", unrenamed)
        with pytest.raises(KeyboardInterrupt):
            run_score(root, out)
    assert not out.exists()


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_resume_with_a_refitted_detector_is_refused_and_touches_nothing(setup, tmp_path, monkeypatch, capsys, fmt):
    out = tmp_path / f"s.{fmt}"
    interrupted(setup, out, monkeypatch)
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert run_score(setup, out, "--resume", detector="refit") == 2
    line = one_line(capsys)
    assert "--resume" in line and "detector" in line, line
    assert snapshot(tmp_path) == before  # the torn line is not even cut
    whole = tmp_path / "whole" / f"s.{fmt}"
    whole.parent.mkdir()
    assert run_score(setup, whole) == 0
    assert run_score(setup, out, "--resume") == 0  # the detector that wrote it continues it
    assert list(read_rows(out)) == list(read_rows(whole))
    assert sorted(os.listdir(tmp_path)) == ["s." + fmt, "whole"]  # no record left beside the output


def test_resume_with_another_runtime_is_refused(setup, tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out = tmp_path / "s.csv"
    interrupted(setup, out, monkeypatch)
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert run_score(setup, out, "--resume", "--runtime", "onnxruntime") == 2
    line = one_line(capsys)
    assert "runtime" in line and "torch" in line and "onnxruntime" in line, line
    assert snapshot(tmp_path) == before


def test_resume_with_the_same_weights_under_other_code_is_refused(setup, tmp_path, monkeypatch, capsys):
    out = tmp_path / "s.jsonl"
    interrupted(setup, out, monkeypatch)
    before = snapshot(tmp_path)
    capsys.readouterr()
    # position_support:make is the MNIST MLP's weights (same fingerprint) with another forward
    assert run_score(setup, out, "--resume", "--model", "position_support:make") == 2
    assert "model" in one_line(capsys)
    assert snapshot(tmp_path) == before


def test_resume_of_a_partial_output_that_records_no_identity_is_refused(setup, tmp_path, monkeypatch, capsys):
    out = tmp_path / "s.csv"
    interrupted(setup, out, monkeypatch)
    (record,) = [p for p in tmp_path.iterdir() if p.name not in ("s.csv.partial",)]
    record.unlink()  # as written by an odin-ood without the record
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert run_score(setup, out, "--resume") == 2
    assert "records no" in one_line(capsys)
    assert snapshot(tmp_path) == before
