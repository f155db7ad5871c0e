"""The MNIST models shipped in the package and the embedded demo sample."""

from __future__ import annotations

import re

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


@pytest.mark.parametrize("name,floor", [("mnist-mlp", 0.985), ("mnist-lenet", 0.985)])
def test_shipped_models_reach_their_stated_accuracy_on_the_full_mnist_test_set(name, floor, shared_data):
    test = data.load("mnist", root=shared_data, split="test")
    info = assets.model_info(name)
    measured = accuracy(models.load(name), test, device="cpu")
    assert measured == pytest.approx(info["test_accuracy"], abs=1e-4)
    assert measured >= floor and info["test_set"].startswith("MNIST t10k, 10,000")


@pytest.mark.parametrize(
    "name,mean,std,kb", [("mnist-mlp", (0.0,), (1.0,), 700), ("mnist-lenet", (0.1307,), (0.3081,), 60)]
)
def test_shipped_model_attributes_and_size(name, mean, std, kb):
    model = models.load(name)
    assert (model.arch, model.num_classes, model.input_shape) == (name, 10, (1, 28, 28))
    assert model.input_mean == mean and model.input_std == std
    assert not model.training
    assert assets.asset_path(f"{name.replace('-', '_')}.safetensors").stat().st_size < kb * 1024


def test_demo_sample_is_the_recorded_test_images(shared_data):
    sample = assets.demo_sample()
    mnist, notmnist, omniglot = sample["mnist"], sample["notmnist"], sample["omniglot"]
    assert len(mnist) == len(notmnist) == len(omniglot) == 1000
    assert torch.bincount(notmnist.labels).tolist() == [100] * 10
    assert bool((omniglot.labels == -1).all())
    for name, ds in sample.items():
        full = data.load(name, root=shared_data, split="test", **assets.DEMO_SAMPLE_SOURCES[name])
        idx = torch.tensor(ds.manifest["test_set_indices"])
        assert len(set(idx.tolist())) == 1000
        assert torch.equal(ds.images, full.images[idx]) and torch.equal(ds.labels, full.labels[idx])


def test_demo_sample_loads_without_pickle():
    with np.load(assets.asset_path(assets.DEMO_SAMPLE), allow_pickle=False) as z:
        assert all(z[k].dtype in (np.uint8, np.int8, np.uint16) for k in z.files)


@pytest.mark.parametrize("name,invert,floor", [("mnist-lenet", False, 0.99), ("mnist-mlp", True, 0.9)])
def test_shipped_models_max_softmax_separates_digits_from_omniglot(name, invert, floor):
    """Baseline (max softmax) AUROC on the embedded sample, via sklearn: the LeNet on Omniglot as
    stored, the MLP on inverted Omniglot (its better polarity, as in Hendrycks & Gimpel's notebook)."""
    sample, model = assets.demo_sample(), models.load(name)
    mean, std = torch.tensor(model.input_mean).view(1, -1, 1, 1), torch.tensor(model.input_std).view(1, -1, 1, 1)
    omniglot = sample["omniglot"].tensors()[0]
    with torch.no_grad():
        msp_in = model((sample["mnist"].tensors()[0] - mean) / std).softmax(1).amax(1)
        msp_out = model(((1 - omniglot if invert else omniglot) - mean) / std).softmax(1).amax(1)
    auroc = roc_auc_score([1] * 1000 + [0] * 1000, torch.cat([msp_in, msp_out]).numpy())
    assert auroc > floor


def test_missing_asset_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match=re.escape("packaged asset 'nope.bin' is missing")):
        assets.asset_path("nope.bin")
