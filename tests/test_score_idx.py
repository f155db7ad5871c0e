"""``odin-ood score`` and ``fit`` on single image files and IDX files (MNIST's format), and class
names in rows: each input form gives the same rows as the same pictures in a folder of PNGs, and
as the library on PIL-decoded pixels; a file that is neither is one error line."""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest
import torch
from named_models import DIGIT_NAMES
from serving_support import decoded, encode, fit_mnist_detector, library_outputs

from odin_ood.cli import main
from odin_ood.commands.writers import read_rows


@pytest.fixture(scope="module")
def setup(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    det, mnist, notmnist = fit_mnist_detector(shared_data, root / "det", batch_size=8)
    digits = mnist.images[4000:4012, 0].numpy()
    return {"root": root, "det": det, "digits": digits, "letters": notmnist.images[700:704, 0].numpy()}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array, written from the format's definition: 0, 0, type 0x08,
    the number of dimensions, each size as a big-endian uint32, then the bytes in C order."""
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def score(setup, inputs, output, *extra, model="mnist-mlp"):
    return main(["score", *map(str, inputs), "--output", str(output), "--detector", str(setup["root"] / "det"),
                 "--model", model, "--threads", "1", "--quiet", "--workers", "1", *extra])


def test_single_files_and_idx_files_score_like_the_library(setup, tmp_path):
    digits, letters = setup["digits"], setup["letters"]
    files = []
    for i, a in enumerate(letters):
        files.append(tmp_path / f"letter{i}.png")
        files[-1].write_bytes(encode(a))
    raw, packed = tmp_path / "digits-idx3-ubyte", tmp_path / "digits-idx3-ubyte.gz"
    raw.write_bytes(idx_bytes(digits[:6]))
    packed.write_bytes(gzip.compress(idx_bytes(digits[6:, :, :, None])))  # (N, H, W, 1) too
    assert score(setup, [files[0], raw, *files[1:], packed], tmp_path / "s.jsonl") == 0
    rows = list(read_rows(tmp_path / "s.jsonl"))
    sources = ([str(files[0])] + [f"{raw}!{i}" for i in range(6)] + [str(f) for f in files[1:]]
               + [f"{packed}!{i}" for i in range(6)])
    assert [r["source"] for r in rows] == sources and [r["index"] for r in rows] == list(range(len(sources)))
    pixels = [letters[0], *digits[:6], *letters[1:], *digits[6:]]
    want = library_outputs(setup["det"], torch.stack([decoded(encode(a)) for a in pixels]))
    for k, row in enumerate(rows):
        assert row["error"] == "" and row["class_name"] is None
        assert (row["predicted_class"], row["score"]) == (want["predicted_class"][k], want["score"][k])


def test_fit_takes_idx_files_like_the_same_images_as_a_dataset(setup, shared_data, tmp_path):
    """fit on the real MNIST test IDX file given as a path equals fit on the dataset name."""
    common = ["--model", "mnist-mlp", "--temperatures", "1,1000", "--epsilons", "0,0.0014", "--limit", "120",
              "--threads", "1", "--quiet", "--workers", "1", "--data-root", str(shared_data)]
    ood = str(shared_data / "notmnist" / "t10k-images-idx3-ubyte.gz")
    assert main(["fit", "--id", "mnist", "--ood", ood, "--out", str(tmp_path / "a"), *common]) == 0
    assert main(["fit", "--id", str(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz"), "--ood", "notmnist",
                 "--out", str(tmp_path / "b"), *common]) == 0
    a, b = (json.loads((tmp_path / d / "fit.json").read_text()) for d in "ab")
    assert a["grid"] == b["grid"] and a["threshold"] == b["threshold"] and a["heldout"]["odin"] == b["heldout"]["odin"]


def test_class_names_of_the_model_are_in_the_rows(setup, tmp_path):
    files = []
    for i, a in enumerate(setup["digits"][:5]):
        files.append(tmp_path / f"d{i}.png")
        files[-1].write_bytes(encode(a))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "s.csv"
    assert score(setup, [*files, tmp_path / "broken.png"], out, model="named_models:mnist_mlp_with_names") == 0
    rows = list(read_rows(out))
    want = library_outputs(setup["det"], torch.stack([decoded(encode(a)) for a in setup["digits"][:5]]))
    assert [r["class_name"] for r in rows[:5]] == [DIGIT_NAMES[c] for c in want["predicted_class"]]
    assert rows[5]["predicted_class"] == -1 and rows[5]["class_name"] is None


LABELS = bytes([0, 0, 0x08, 1]) + struct.pack(">I", 3) + bytes([1, 2, 3])
BAD_FILES = [
    ("labels", "labels-idx1-ubyte", LABELS, "not images: expected unsigned bytes (N, H, W)"),
    ("truncated", "x-idx3-ubyte", bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 5, 28, 28) + bytes(100),
     "truncated or corrupt"),
    ("text", "notes.txt", b"hello", "not a folder, a .zip archive, an image file"),
]


@pytest.mark.parametrize("name,filename,blob,message", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_a_file_that_is_no_input_is_one_error_line(setup, tmp_path, capsys, name, filename, blob, message):
    (tmp_path / filename).write_bytes(blob)
    assert score(setup, [tmp_path / filename], tmp_path / "s.csv") == 2
    err = capsys.readouterr().err
    assert err.startswith("odin-ood score: error: input ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "s.csv").exists()


def test_an_idx_file_of_images_over_the_byte_cap_is_refused_before_reading(setup, tmp_path, capsys):
    (tmp_path / "big-idx3-ubyte").write_bytes(idx_bytes(setup["digits"]))
    assert score(setup, [tmp_path / "big-idx3-ubyte"], tmp_path / "s.csv", "--max-image-bytes", "700") == 2
    err = capsys.readouterr().err
    assert "each item of this IDX file is 784 bytes, over the limit of 700" in err and err.count("\n") == 1
