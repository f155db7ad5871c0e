"""The official CIFAR python-pickle loaders, on fixtures written in exactly that format."""

import pickle
import pickletools

import numpy as np
import pytest

from fixtures.formats import write_cifar10, write_cifar100
from odin_ood.data import CIFAR_MEAN, load
from odin_ood.data.cifar import read_cifar_pickle


def test_fixture_is_in_the_python2_format(tmp_path):
    write_cifar10(tmp_path / "b")
    raw = (tmp_path / "b" / "test_batch").read_bytes()
    ops = {op.name for op, _, _ in pickletools.genops(raw)}
    assert raw[:2] == b"\x80\x02" and "SHORT_BINSTRING" in ops and "BINUNICODE" not in ops
    assert b"numpy.core.multiarray\n_reconstruct" in raw


@pytest.mark.parametrize("split,n", [("train", 20), ("test", 4)])
def test_cifar10_pickles_pixels_and_labels(tmp_path, split, n):
    truth = write_cifar10(tmp_path / "cifar10" / "cifar-10-batches-py")
    ds = load("cifar10", root=tmp_path, split=split)
    images, labels = truth[split]
    assert ds.images.shape == (n, 3, 32, 32)
    # Independent layout check: channel planes of the row, image[y, x, c].
    np.testing.assert_array_equal(ds.images.permute(0, 2, 3, 1).numpy(), images)
    assert ds.labels.tolist() == labels.tolist()
    assert ds.classes[3] == "cat" and ds.mean == CIFAR_MEAN
    assert len(ds.manifest["sources"]) == (5 if split == "train" else 1)


@pytest.mark.parametrize("label", ["fine", "coarse"])
def test_cifar100_pickles_fine_and_coarse(tmp_path, label):
    truth = write_cifar100(tmp_path / "cifar100" / "cifar-100-python")
    ds = load("cifar100", root=tmp_path, split="test", label=label)
    x, fine, coarse = truth["test"]
    np.testing.assert_array_equal(ds.images.permute(0, 2, 3, 1).numpy(), x)
    assert ds.labels.tolist() == (fine if label == "fine" else coarse).tolist()
    assert len(ds.classes) == (100 if label == "fine" else 20)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_pickle_with_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({"data": _Evil()}, protocol=2))
    with pytest.raises(ValueError, match=r"test_batch.*refusing to load global .*system"):
        read_cifar_pickle(path)
    assert not (tmp_path / "PWNED").exists()


def test_truncated_pickle_names_file(tmp_path):
    write_cifar10(tmp_path / "cifar10" / "cifar-10-batches-py")
    path = tmp_path / "cifar10" / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ValueError, match="test_batch"):
        load("cifar10", root=tmp_path)


def test_missing_batch_names_expected_path(tmp_path):
    write_cifar10(tmp_path / "cifar10" / "cifar-10-batches-py")
    (tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        load("cifar10", root=tmp_path, split="train")
