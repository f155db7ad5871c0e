"""``odin-ood score`` reads only what it listed and writes only inside its output's folder: an
input swapped after the listing for a link to an outside image or for a FIFO is refused (never
read, never waited on), a planted symbolic link as the partial file is refused (nothing is created
through it), a file odin-ood did not write is never touched by ``--resume``, a missing Parquet
writer is refused before anything is scored; a run that could score no image exits 1."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from odin_ood.cli import main
from odin_ood.commands import inputs, rows, writers
from odin_ood.commands.row_files import read_rows
from serving_support import encode, fit_mnist_detector, score_cli


@pytest.fixture(scope="module")
def setup(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    _, mnist, _ = fit_mnist_detector(shared_data, root / "det", batch_size=8)
    blobs = [encode(mnist.images[5000 + i, 0].numpy()) for i in range(4)]
    return {"root": root, "blobs": blobs}


def folder_of(setup, tmp_path, n=3):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(n):
        (folder / f"{i}.png").write_bytes(setup["blobs"][i])
    return folder


def score(setup, inputs_, output, *extra):
    return score_cli(setup["root"], inputs_, output, *extra, workers=1)


def swap_after_listing(monkeypatch, swap):
    """Run ``swap()`` right after the input folder is listed, before any image is read."""
    real = inputs.walk

    def listed_then_swapped(root, follow_symlinks):
        entries = real(root, follow_symlinks)
        swap()
        return entries

    monkeypatch.setattr(inputs, "walk", listed_then_swapped)  # the name inputs lists folders with


@pytest.mark.parametrize("follow", [False, True])
def test_a_file_swapped_for_a_link_to_outside_after_listing_is_not_read(setup, tmp_path, monkeypatch, follow):
    folder = folder_of(setup, tmp_path)
    outside = tmp_path / "secret.png"
    outside.write_bytes(setup["blobs"][3])
    victim = folder / "1.png"

    def swap():
        victim.unlink()
        victim.symlink_to(outside)

    swap_after_listing(monkeypatch, swap)
    out = tmp_path / "s.jsonl"
    assert score(setup, [folder], out, *(["--follow-symlinks"] if follow else [])) == 0
    got = list(read_rows(out))
    assert [r["error"] == "" for r in got] == [True, False, True]
    assert "after it was listed" in got[1]["error"] and got[1]["score"] is None and got[1]["is_out_of_distribution"]


def test_a_file_swapped_for_a_fifo_is_refused_without_waiting(setup, tmp_path, monkeypatch):
    folder = folder_of(setup, tmp_path)
    victim = folder / "2.png"

    def feed():  # a writer that would hand the reader an image, once one opens the FIFO
        try:
            with open(victim, "wb") as f:
                f.write(setup["blobs"][3])
        except OSError:
            pass

    def swap():
        victim.unlink()
        os.mkfifo(victim)
        threading.Thread(target=feed, daemon=True).start()

    swap_after_listing(monkeypatch, swap)
    out = tmp_path / "s.csv"
    assert score(setup, [folder], out) == 0
    got = list(read_rows(out))
    assert "not a regular file" in got[2]["error"] and got[2]["score"] is None
    assert [r["error"] for r in got[:2]] == ["", ""]
    with open(os.open(victim, os.O_RDONLY | os.O_NONBLOCK), "rb"):  # release the writer if still waiting
        pass


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_planted_partial_symlink_is_refused_and_nothing_is_written_through_it(setup, tmp_path, fmt):
    folder = folder_of(setup, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = elsewhere / "stolen.txt"
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / f"s.{fmt}"
    (out_dir / f"s.{fmt}.partial").symlink_to(target)  # dangling
    for extra in ([], ["--resume"]):
        assert score(setup, [folder], out, *extra) == 2
        assert not target.exists() and not out.exists()
    os.symlink(target, out)
    (out_dir / f"s.{fmt}.partial").unlink()
    assert score(setup, [folder], out, "--resume") == 2  # the output path as a link: refused too
    assert not target.exists() and out.is_symlink()


def test_a_planted_parts_link_is_refused(setup, tmp_path):
    folder = folder_of(setup, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "s.parquet.parts").symlink_to(elsewhere)
    assert score(setup, [folder], tmp_path / "s.parquet", "--resume") == 2
    assert list(elsewhere.iterdir()) == []


FOREIGN = {
    "csv": "id,label,note\n1,cat,ok\n2,dog,no trailing newline",
    "jsonl": '{"id": 1}\n{"id": 2}\n',
    "ours-header-then-garbage.csv": ",".join(writers.COLUMNS) + "\nnot,a,row\n",
}


@pytest.mark.parametrize("name", list(FOREIGN))
def test_resume_never_touches_a_file_odin_ood_did_not_write(setup, tmp_path, capsys, name):
    folder = folder_of(setup, tmp_path)
    text = FOREIGN[name]
    out = tmp_path / (name if "." in name else f"mydata.{name}")
    out.write_text(text)
    assert score(setup, [folder], out, "--resume") == 2
    err = capsys.readouterr().err
    assert "not a file odin-ood score wrote: not touched" in err and "Traceback" not in err
    assert out.read_text() == text
    partial = tmp_path / (out.name + ".partial")
    partial.write_text(text)  # the same as a partial file: not cut, not deleted
    out.unlink()
    assert score(setup, [folder], out, "--resume") == 2
    assert partial.read_text() == text and not out.exists()


def test_resume_never_touches_a_parquet_file_of_other_columns(setup, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "mine.parquet"
    pq.write_table(pa.table({"id": [1, 2]}), out)
    before = out.read_bytes()
    assert score(setup, [folder_of(setup, tmp_path)], out, "--resume") == 2
    assert out.read_bytes() == before


def test_missing_pyarrow_is_refused_before_any_image_is_scored(setup, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    scored = []
    monkeypatch.setattr(rows, "score_rows", lambda *a, **k: scored.append(1))
    out = tmp_path / "s.parquet"
    assert score(setup, [folder_of(setup, tmp_path)], out) == 2
    assert "needs pyarrow" in capsys.readouterr().err
    assert scored == [] and sorted(os.listdir(tmp_path)) == ["in"]


def test_no_image_scored_exits_1_and_says_so(setup, tmp_path, capsys):
    folder = tmp_path / "wrong"
    folder.mkdir()
    from PIL import Image

    for i in range(3):  # 32x32: the wrong size without --resize
        Image.new("L", (32, 32), 40 * i).save(folder / f"{i}.png")
    out = tmp_path / "s.csv"
    assert score(setup, [folder], out) == 1
    err = capsys.readouterr().err
    assert "none of the 3 images could be scored" in err
    assert len(list(read_rows(out))) == 3  # the rows are still written, with the reasons
    (folder / "3.png").write_bytes(setup["blobs"][0])
    assert score(setup, [folder], tmp_path / "t.csv") == 0
    assert "3 of 4 images could not be scored" in capsys.readouterr().err


KILLED = """
import os, signal, sys
from odin_ood._utils import files
from odin_ood.commands import writers

real_append, real_part = writers.RowWriter._append, writers.RowWriter._write_part

def torn(self, text):  # the second chunk: half of it reaches the disk, then the process dies
    if self.done:
        real_append(self, text[:len(text) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    real_append(self, text)

def unrenamed(self, rows):  # the second chunk: a temporary part half written, then the process dies
    if self.done:
        with files.new_temporary(self.partial / f"rows-{self.done:012d}.parquet") as (f, _):
            f.write(b"PAR1 half a part")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    real_part(self, rows)

writers.RowWriter._append, writers.RowWriter._write_part = torn, unrenamed
from odin_ood.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_sigkill_mid_write_then_resume_gives_the_uninterrupted_output(setup, tmp_path, monkeypatch, fmt):
    """A process killed (SIGKILL) in the middle of writing a chunk, resumed with another --chunk,
    writes exactly the uninterrupted output; with a model whose rounding depends on the batch
    position, so the resumed rows must sit at their original positions."""
    import subprocess

    from serving_support import SRC, env

    tests = os.path.dirname(os.path.abspath(__file__))
    monkeypatch.syspath_prepend(tests)
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(20):
        (folder / f"{i:02d}.png").write_bytes(setup["blobs"][i % 4][:-1] if i == 5 else setup["blobs"][i % 4])
    args = [
        str(folder),
        "--detector",
        str(setup["root"] / "det"),
        "--model",
        "position_support:make",
        "--threads",
        "1",
        "--quiet",
        "--workers",
        "1",
    ]
    whole = tmp_path / f"whole.{fmt}"
    assert main(["score", *args, "--chunk", "8", "--output", str(whole)]) == 0
    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    out = tmp_path / f"cut.{fmt}"
    proc = subprocess.run(
        [sys.executable, str(script), "score", *args, "--chunk", "8", "--output", str(out)],
        env=dict(env(), PYTHONPATH=f"{SRC}:{tests}"),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not out.exists()
    assert main(["score", *args, "--chunk", "3", "--output", str(out), "--resume"]) == 0
    if fmt == "parquet":
        assert list(read_rows(out)) == list(read_rows(whole))
    else:
        assert out.read_bytes() == whole.read_bytes()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_overwrite_replaces_a_finished_output_only_when_the_new_one_is_whole(setup, tmp_path, capsys, monkeypatch, fmt):
    """An existing output is refused in one line naming --overwrite (as export's --out is); with
    --overwrite it stays byte for byte while the new run scores (here it is interrupted), the
    interrupted replacement goes on with --resume, and the new rows replace it when all are written."""
    three, four = folder_of(setup, tmp_path, n=3), tmp_path / "four"
    four.mkdir()
    for i in range(4):
        (four / f"{i}.png").write_bytes(setup["blobs"][i])
    out = tmp_path / f"s.{fmt}"
    assert score(setup, [three], out) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert score(setup, [four], out) == 2
    assert capsys.readouterr().err == (
        f"odin-ood score: error: {out} exists: choose another --output, or pass --overwrite\n"
    )

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(writers.RowWriter, "finish", killed)
        with pytest.raises(KeyboardInterrupt):
            score(setup, [four], out, "--overwrite")
    assert out.read_bytes() == before  # the old output is whole until the new one replaces it
    assert score(setup, [four], out, "--overwrite") == 2  # the interrupted replacement's rows are not thrown away
    assert "pass --resume to keep its rows" in capsys.readouterr().err
    assert score(setup, [four], out, "--overwrite", "--resume") == 0  # goes on, then replaces
    assert [r["source"].rsplit("/", 1)[1] for r in read_rows(out)] == ["0.png", "1.png", "2.png", "3.png"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("s.")) == [out.name]


def test_overwrite_never_replaces_a_file_odin_ood_did_not_write(setup, tmp_path, capsys):
    out = tmp_path / "notes.csv"
    out.write_text(FOREIGN["csv"])
    assert score(setup, [folder_of(setup, tmp_path)], out, "--overwrite") == 2
    assert "not a file odin-ood score wrote: not touched" in capsys.readouterr().err
    assert out.read_text() == FOREIGN["csv"]


def test_an_image_is_read_to_its_declared_size_and_on_to_the_limit_when_it_holds_more():
    """read_capped reads the declared size and one byte more, not the whole cap at once; a file
    that grew since it was listed (or a member that lies about its size) is read on to the cap."""
    import io

    from odin_ood.commands.listing import read_capped
    from odin_ood.preprocess import InputError

    data = bytes(range(100))
    assert read_capped(io.BytesIO(data), 100, 100, "x") == data
    assert read_capped(io.BytesIO(data), 10, 150, "x") == data  # grew from 10 to 100 bytes: all of it
    assert read_capped(io.BytesIO(data), 200, 300, "x") == data  # shrank: what is there
    for declared, limit in ((10, 99), (99, 99), (100, 99)):
        with pytest.raises(InputError, match="over the limit of 99 bytes") as e:
            read_capped(io.BytesIO(data), declared, limit, "x")
        assert e.value.status == 413
