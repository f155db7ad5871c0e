import gzip
import re

import numpy as np
import pytest
import torch

from odin_ood.data import load
from odin_ood.data.idx import read_idx

# Official MNIST label counts (digits 0..9).
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.parametrize(
    "split,counts,first",
    [
        ("train", MNIST_TRAIN_COUNTS, [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]),
        ("test", MNIST_TEST_COUNTS, [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]),
    ],
)
def test_mnist_counts_shapes_and_official_labels(shared_data, split, counts, first):
    ds = load("mnist", root=shared_data, split=split)
    assert ds.images.shape == (sum(counts), 1, 28, 28) and ds.images.dtype == torch.uint8
    assert ds.labels.dtype == torch.int64
    assert np.bincount(ds.labels.numpy()).tolist() == counts
    assert ds.labels[:10].tolist() == first
    assert (ds.mean, ds.std) == ((0.0,), (1.0,))
    x, y = ds[0]
    assert x.dtype == torch.float32 and x.shape == (1, 28, 28) and y == first[0]
    assert float(x.max()) == 1.0 and float(x.min()) == 0.0
    # MNIST convention: white strokes on a black background (mostly zeros).
    assert (ds.images == 0).float().mean() > 0.7


def test_notmnist_has_1000_per_letter(shared_data):
    ds = load("notmnist", root=shared_data)
    assert ds.images.shape == (10000, 1, 28, 28)
    assert np.bincount(ds.labels.numpy()).tolist() == [1000] * 10
    assert ds.classes == tuple("ABCDEFGHIJ")
    assert {s["sha256"][:8] for s in ds.manifest["sources"]}  # provenance recorded
    assert len(ds.manifest["sources"]) == 2


def _write_idx(path, array, compress):
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    raw = header + array.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(raw)
    return raw


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_roundtrip_raw_and_gz(tmp_path, compress):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    p = tmp_path / ("x.gz" if compress else "x")
    _write_idx(p, a, compress)
    np.testing.assert_array_equal(read_idx(p), a)


def test_read_idx_truncated_names_file(tmp_path):
    p = tmp_path / "t10k-images-idx3-ubyte"
    raw = _write_idx(p, np.zeros((5, 28, 28), np.uint8), False)
    p.write_bytes(raw[:-10])
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.*truncated"):
        read_idx(p)


def test_read_idx_truncated_gzip_names_file(tmp_path):
    p = tmp_path / "x.gz"
    _write_idx(p, np.random.default_rng(0).integers(0, 256, (50, 28, 28)), True)
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(ValueError, match=re.escape("x.gz")):
        read_idx(p)


def test_missing_mnist_names_expected_path(tmp_path):
    (tmp_path / "mnist").mkdir()
    with pytest.raises(FileNotFoundError, match=r"mnist/train-images-idx3-ubyte\.gz"):
        load("mnist", root=tmp_path, split="train")


def test_missing_root_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load("mnist", root=tmp_path / "nope")
    monkeypatch.delenv("ODIN_OOD_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="ODIN_OOD_DATA"):
        load("mnist")


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_read_idx_refuses_a_header_larger_than_the_file_before_allocating(tmp_path, compress):
    """N = 2**32 - 1 images of 28x28 declared by a file of 800 bytes: a ValueError naming the file,
    not a MemoryError (the header alone is compared with the file's size)."""
    p = tmp_path / ("x.gz" if compress else "x")
    blob = bytes([0, 0, 0x08, 3]) + np.array([2**32 - 1, 28, 28], ">u4").tobytes() + bytes(784)
    p.write_bytes(gzip.compress(blob) if compress else blob)
    with pytest.raises(ValueError, match=rf"{p.name}: the header declares 3367254359280 bytes of data"):
        read_idx(p)


def test_read_idx_refuses_trailing_data_and_reads_a_large_gz_in_chunks(tmp_path):
    p = tmp_path / "x.gz"
    a = np.random.default_rng(1).integers(0, 256, (3000, 28, 28)).astype(np.uint8)  # 2.4 MB, over one chunk
    raw = _write_idx(p, a, True)
    np.testing.assert_array_equal(read_idx(p), a)
    p.write_bytes(gzip.compress(raw + b"\x00"))
    with pytest.raises(ValueError, match="more than"):
        read_idx(p)
