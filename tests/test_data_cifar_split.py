import numpy as np
import pytest

from fixtures.formats import write_cifar100
from odin_ood.data import load
from odin_ood.data.cifar_split import split_classes


def test_split_is_disjoint_and_covers_100_classes():
    inside, outside = split_classes(seed=0)
    assert len(inside) == 80 and len(outside) == 20
    assert set(inside).isdisjoint(outside) and set(inside) | set(outside) == set(range(100))
    assert split_classes(seed=0) == (inside, outside)
    assert split_classes(seed=1)[1] != outside


@pytest.fixture
def cifar100_root(tmp_path):
    truth = write_cifar100(tmp_path / "cifar100" / "cifar-100-python", per_class=2)
    return tmp_path, truth


def test_cifar80_remaps_labels_and_keeps_pixels(cifar100_root):
    root, truth = cifar100_root
    x, fine, _ = truth["test"]
    inside, _outside = split_classes(seed=0)
    ds = load("cifar80", root=root, split="test")
    assert len(ds) == 160 and sorted(set(ds.labels.tolist())) == list(range(80))
    assert ds.manifest["cifar80_classes"] == list(inside) and ds.manifest["split_seed"] == 0
    original = np.asarray(inside)[ds.labels.numpy()]  # back to CIFAR-100 ids
    # Each image must be one of the two images of its original class, independently looked up.
    for img, cls in zip(ds.images.permute(0, 2, 3, 1).numpy(), original, strict=True):
        assert any(np.array_equal(img, x[i]) for i in np.flatnonzero(fine == cls))
    assert ds.classes[0] == f"fine{inside[0]}"


def test_cifar20_is_the_complement(cifar100_root):
    root, truth = cifar100_root
    _x, fine, _ = truth["test"]
    ood = load("cifar20", root=root)
    idd = load("cifar80", root=root)
    assert len(ood) + len(idd) == len(fine) and (ood.labels == -1).all()
    labelled = load("cifar20", root=root, labelled=True)
    outside = split_classes(seed=0)[1]
    assert sorted(set(labelled.labels.tolist())) == list(range(20))
    counts = np.bincount(np.asarray(outside)[labelled.labels.numpy()], minlength=100)
    assert counts[list(outside)].tolist() == [2] * 20 and counts.sum() == 40
    other = load("cifar20", root=root, seed=5)
    assert other.manifest["cifar20_classes"] != ood.manifest["cifar20_classes"]
