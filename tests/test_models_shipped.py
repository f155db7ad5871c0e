"""The MNIST MLP shipped in the package and the embedded demo sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from odin_ood import assets, data, models
from odin_ood.training import accuracy


@pytest.fixture(scope="module")
def shipped():
    return models.load("mnist-mlp")


def test_shipped_mlp_reaches_its_stated_accuracy_on_the_full_mnist_test_set(shipped, shared_data):
    test = data.load("mnist", root=shared_data, split="test")
    info = assets.mnist_mlp_info()
    measured = accuracy(shipped, test, device="cpu")
    assert measured == pytest.approx(info["test_accuracy"], abs=1e-4)
    assert measured >= 0.985


def test_shipped_mlp_attributes_and_size(shipped):
    assert (shipped.arch, shipped.num_classes, shipped.input_shape) == ("mnist-mlp", 10, (1, 28, 28))
    assert shipped.input_mean == (0.0,) and shipped.input_std == (1.0,)
    assert not shipped.training
    assert assets.asset_path("mnist_mlp.safetensors").stat().st_size < 1_000_000


def test_demo_sample_is_the_recorded_test_images(shared_data):
    sample = assets.demo_sample()
    mnist, notmnist = sample["mnist"], sample["notmnist"]
    assert len(mnist) == len(notmnist) == 1000
    assert torch.bincount(notmnist.labels).tolist() == [100] * 10
    for name, ds in (("mnist", mnist), ("notmnist", notmnist)):
        full = data.load(name, root=shared_data, split="test")
        idx = torch.tensor(ds.manifest["test_set_indices"])
        assert len(set(idx.tolist())) == 1000
        assert torch.equal(ds.images, full.images[idx]) and torch.equal(ds.labels, full.labels[idx])


def test_demo_sample_loads_without_pickle():
    with np.load(assets.asset_path(assets.DEMO_SAMPLE), allow_pickle=False) as z:
        assert all(z[k].dtype in (np.uint8, np.uint16) for k in z.files)


def test_shipped_mlp_separates_digits_from_letters_on_the_demo_sample(shipped):
    """Sanity of the pair the demo is built on: max softmax is higher on digits than letters."""
    sample = assets.demo_sample()
    with torch.no_grad():
        msp_in = shipped(sample["mnist"].tensors()[0]).softmax(1).amax(1)
        msp_out = shipped(sample["notmnist"].tensors()[0]).softmax(1).amax(1)
    assert float(msp_in.mean()) > float(msp_out.mean()) + 0.1


def test_missing_asset_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="packaged asset 'nope.bin' is missing"):
        assets.asset_path("nope.bin")
