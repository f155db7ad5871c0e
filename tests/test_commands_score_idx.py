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
from odin_ood.cli import main
from odin_ood.commands.row_files import read_rows
from serving_support import decoded, encode, fit_mnist_detector, library_outputs


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
    return main(
        [
            "score",
            *map(str, inputs),
            "--output",
            str(output),
            "--detector",
            str(setup["root"] / "det"),
            "--model",
            model,
            "--threads",
            "1",
            "--quiet",
            "--workers",
            "1",
            *extra,
        ]
    )


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
    sources = (
        [str(files[0])]
        + [f"{raw}!{i}" for i in range(6)]
        + [str(f) for f in files[1:]]
        + [f"{packed}!{i}" for i in range(6)]
    )
    assert [r["source"] for r in rows] == sources and [r["index"] for r in rows] == list(range(len(sources)))
    pixels = [letters[0], *digits[:6], *letters[1:], *digits[6:]]
    want = library_outputs(setup["det"], torch.stack([decoded(encode(a)) for a in pixels]))
    for k, row in enumerate(rows):
        assert row["error"] == "" and row["class_name"] is None
        assert (row["predicted_class"], row["score"]) == (want["predicted_class"][k], want["score"][k])


def test_fit_takes_idx_files_like_the_same_images_as_a_dataset(setup, shared_data, tmp_path):
    """fit on the real MNIST test IDX file given as a path equals fit on the dataset name."""
    common = [
        "--model",
        "mnist-mlp",
        "--temperatures",
        "1,1000",
        "--epsilons",
        "0,0.0014",
        "--limit",
        "120",
        "--threads",
        "1",
        "--quiet",
        "--workers",
        "1",
        "--data-root",
        str(shared_data),
    ]
    ood = str(shared_data / "notmnist" / "t10k-images-idx3-ubyte.gz")
    assert main(["fit", "--id", "mnist", "--ood", ood, "--out", str(tmp_path / "a"), *common]) == 0
    assert (
        main(
            [
                "fit",
                "--id",
                str(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz"),
                "--ood",
                "notmnist",
                "--out",
                str(tmp_path / "b"),
                *common,
            ]
        )
        == 0
    )
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
    (
        "truncated",
        "x-idx3-ubyte",
        bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 5, 28, 28) + bytes(100),
        "truncated or corrupt",
    ),
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


def idx_header(shape: tuple[int, ...]) -> bytes:
    return bytes([0, 0, 0x08, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("odin-ood score: error: input ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_idx_images_over_max_side_are_refused_like_the_same_picture_as_a_png(setup, tmp_path):
    pictures = np.pad(setup["digits"][:3], ((0, 0), (6, 6), (6, 6)))  # 40x40, for a 28x28 model
    (tmp_path / "d-idx3-ubyte").write_bytes(idx_bytes(pictures))
    (tmp_path / "pngs").mkdir()
    for i, a in enumerate(pictures):
        (tmp_path / "pngs" / f"{i}.png").write_bytes(encode(a))
    assert score(setup, [tmp_path / "pngs", tmp_path / "d-idx3-ubyte"], tmp_path / "s.jsonl", "--max-side", "30") == 1
    rows = list(read_rows(tmp_path / "s.jsonl"))
    assert len(rows) == 6 and all(r["predicted_class"] == -1 for r in rows)
    reasons = {r["error"].split(": ", 1)[1] for r in rows}
    assert reasons == {"image is 40x40, larger than the limit of 30 pixels a side"}, reasons


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_an_idx_header_declaring_more_images_than_the_file_holds_is_one_line(setup, tmp_path, capsys, compress):
    """N = 2**32 - 1 images of 28x28 (3.4 TB) declared by a file of a few bytes: refused from the header and
    the file's size, before anything that size is allocated."""
    blob = idx_header((2**32 - 1, 28, 28)) + bytes(784)
    path = tmp_path / ("n-idx3-ubyte.gz" if compress else "n-idx3-ubyte")
    path.write_bytes(gzip.compress(blob) if compress else blob)
    assert score(setup, [path], tmp_path / "s.csv") == 2
    err = one_error_line(capsys)
    assert "declares 3367254359280 bytes of data" in err, err
    assert ("more than a gzip file of" if compress else "but the file holds 784 after its 16-byte header") in err, err
    assert not (tmp_path / "s.csv").exists()


def test_a_gz_idx_decompressing_past_the_memory_budget_is_refused_before_decompressing(setup, tmp_path, capsys):
    """An honest gzip bomb: 4,000 blank 28x28 images (3.1 MB) in a file of a few kB, with --max-memory 2MiB."""
    path = tmp_path / "blank-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((4000, 28, 28), np.uint8))))
    assert path.stat().st_size < 10_000
    assert score(setup, [path], tmp_path / "s.csv", "--max-memory", "2MiB") == 2
    err = one_error_line(capsys)
    assert "declares 3136000 bytes of data" in err and "over --max-memory (2.0 MiB)" in err, err


def test_a_gz_idx_costs_one_chunk_of_memory_whatever_its_size(tmp_path):
    """64 MB of blank images in a gzip file of 64 kB: listed and read image by image within a few MiB of
    Python memory (the whole file is never held)."""
    import tracemalloc

    from odin_ood.commands.inputs import Inputs
    from odin_ood.preprocess import Preprocessing

    n = 80_000
    path = tmp_path / "bomb-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(idx_header((n, 28, 28)))
        block = bytes(784 * 1000)
        for _ in range(n // 1000):
            f.write(block)
    assert path.stat().st_size < 200_000
    spec = Preprocessing((1, 28, 28))
    tracemalloc.start()
    try:
        inputs = Inputs([str(path)])
        assert len(inputs) == n and inputs.source(n - 1) == f"{path}!{n - 1}"
        last = inputs.load(n - 1, spec)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert last.shape == (28, 28) and not last.any()
    assert peak < 8 << 20, peak  # today's whole read holds 62.7 MB twice
