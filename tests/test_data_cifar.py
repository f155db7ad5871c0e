import numpy as np
import pytest
import torch

from odin_ood.data import CIFAR_MEAN, CIFAR_STD, load
from odin_ood.data.cifar import CIFAR10_CLASSES


def test_cifar10_lossless_1000_official_order(shared_data):
    ds = load("cifar10-lossless-1000", root=shared_data)
    assert ds.images.shape == (1000, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert ds.labels.min() == 0 and ds.labels.max() == 9
    assert np.bincount(ds.labels.numpy()).sum() == 1000
    assert ds.classes == CIFAR10_CLASSES and (ds.mean, ds.std) == (CIFAR_MEAN, CIFAR_STD)
    # Real photos: the mean pixel is near CIFAR's published channel means.
    m = ds.images.float().mean(dim=(0, 2, 3)) / 255
    assert torch.allclose(m, torch.tensor(CIFAR_MEAN), atol=0.03)


def test_cifar10_jpeg_test_balanced_and_cached(shared_data, tmp_path):
    ds = load("cifar10-jpeg", root=shared_data, cache_dir=tmp_path)
    assert ds.images.shape == (10000, 3, 32, 32)
    assert np.bincount(ds.labels.numpy()).tolist() == [1000] * 10
    assert list(tmp_path.glob("cifar10-jpeg-*.npz"))  # cached
    again = load("cifar10-jpeg", root=shared_data, cache_dir=tmp_path)
    assert torch.equal(again.images, ds.images) and torch.equal(again.labels, ds.labels)


def test_cifar10_jpeg_is_close_to_lossless(shared_data):
    """The JPEG copies differ from the originals by ~6/255 per pixel (README): images of the
    same class with the same official rank must match closely."""
    lossless = load("cifar10-lossless-1000", root=shared_data)
    jpeg = load("cifar10-jpeg", root=shared_data)
    cat = CIFAR10_CLASSES.index("cat")
    first_cat_lossless = lossless.images[lossless.labels == cat][0].float()
    first_cat_jpeg = jpeg.images[jpeg.labels == cat][0].float()
    assert (first_cat_lossless - first_cat_jpeg).abs().mean() < 12


@pytest.mark.slow
def test_cifar10_jpeg_train(shared_data):
    ds = load("cifar10-jpeg", root=shared_data, split="train")
    assert ds.images.shape == (50000, 3, 32, 32)
    assert np.bincount(ds.labels.numpy()).tolist() == [5000] * 10
