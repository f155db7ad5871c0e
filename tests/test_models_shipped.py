"""The MNIST MLP shipped in the package and the embedded demo sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from odin_ood import assets, data, models
from odin_ood.training import accuracy

pytestmark = pytest.mark.usefixtures("torch_one_thread")


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
    mnist, notmnist, omniglot = sample["mnist"], sample["notmnist"], sample["omniglot"]
    assert len(mnist) == len(notmnist) == len(omniglot) == 1000
    assert torch.bincount(notmnist.labels).tolist() == [100] * 10
    assert bool((omniglot.labels == -1).all())
    for name, ds in sample.items():
        full = data.load(name, root=shared_data, split="test")
        idx = torch.tensor(ds.manifest["test_set_indices"])
        assert len(set(idx.tolist())) == 1000
        assert torch.equal(ds.images, full.images[idx]) and torch.equal(ds.labels, full.labels[idx])


def test_demo_sample_loads_without_pickle():
    with np.load(assets.asset_path(assets.DEMO_SAMPLE), allow_pickle=False) as z:
        assert all(z[k].dtype in (np.uint8, np.int8, np.uint16) for k in z.files)


def test_shipped_mlp_max_softmax_separates_digits_from_omniglot(shipped):
    """The demo's easy pair: baseline (max softmax) AUROC on the embedded sample, via sklearn."""
    sample = assets.demo_sample()
    with torch.no_grad():
        msp_in = shipped(sample["mnist"].tensors()[0]).softmax(1).amax(1)
        msp_out = shipped(sample["omniglot"].tensors()[0]).softmax(1).amax(1)
    auroc = roc_auc_score([1] * 1000 + [0] * 1000, torch.cat([msp_in, msp_out]).numpy())
    assert auroc > 0.9


def test_missing_asset_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="packaged asset 'nope.bin' is missing"):
        assets.asset_path("nope.bin")
