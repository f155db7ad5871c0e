import hashlib
import json
from math import erf, exp, pi, sqrt

import numpy as np
import pytest
import torch

from odin_ood.data import CIFAR_STD, MNIST_STD, load, noise


def _phi(x):
    return exp(-x * x / 2) / sqrt(2 * pi)


def _cdf(x):
    return 0.5 * (1 + erf(x / sqrt(2)))


def test_gaussian_moments_after_clipping():
    ds = load("gaussian", count=2000)
    v = ds.images.numpy().astype(np.float64) / 255
    # Z = X - 0.5 ~ N(0, 1) clipped to [-0.5, 0.5]: E[Z^2] = (2Phi(a)-1) - 2a phi(a) + 2a^2 (1-Phi(a)).
    a = 0.5
    var = (2 * _cdf(a) - 1) - 2 * a * _phi(a) + 2 * a * a * (1 - _cdf(a))
    assert v.min() == 0 and v.max() == 1
    assert abs(v.mean() - 0.5) < 1e-3
    assert abs(v.var() - var) < 1e-3
    assert abs((v == 0).mean() - _cdf(-0.5)) < 3e-3 and abs((v == 1).mean() - _cdf(-0.5)) < 3e-3


def test_uniform_moments():
    v = load("uniform", count=2000).images.numpy().astype(np.float64) / 255
    assert v.min() == 0 and v.max() == 1
    assert abs(v.mean() - 0.5) < 1e-3 and abs(v.var() - 1 / 12) < 1e-3
    hist = np.bincount((v * 255).round().astype(int).ravel(), minlength=256)[1:-1]
    assert hist.std() / hist.mean() < 0.05  # interior levels equally likely


@pytest.mark.parametrize("name", ["gaussian", "uniform"])
def test_noise_is_seeded(name):
    a, b = load(name, count=50, seed=3), load(name, count=50, seed=3)
    c = load(name, count=50, seed=4)
    assert a.images.numpy().tobytes() == b.images.numpy().tobytes()
    assert not np.array_equal(a.images.numpy(), c.images.numpy())
    assert a.manifest["seed"] == 3 and a.manifest["kind"] == name


def test_noise_defaults_and_shapes():
    ds = load("gaussian")
    assert ds.images.shape == (10000, 3, 32, 32) and (ds.labels == -1).all()
    assert ds.std == CIFAR_STD
    grey = load("uniform", count=10, shape=(1, 28, 28))
    assert grey.images.shape == (10, 1, 28, 28) and grey.std == MNIST_STD
    with pytest.raises(ValueError, match="seed"):
        load("uniform", split="train")


@pytest.mark.parametrize("name,shape", [("gaussian", (3, 32, 32)), ("uniform", (1, 28, 28))])
def test_noise_set_is_rebuilt_from_its_manifest_alone_byte_for_byte(name, shape):
    ds = load(name, count=300, shape=shape, seed=11)
    manifest = json.loads(json.dumps(ds.manifest))  # what a results file or cache keeps
    assert "torch.Generator" in manifest["generator"] and "numpy PCG64" not in json.dumps(manifest)
    images = noise.rebuild(manifest)
    assert images.dtype == np.uint8 and images.tobytes() == ds.images.numpy().tobytes()
    assert hashlib.sha256(images.tobytes()).hexdigest() == manifest["images_sha256"]
    # the recorded draw, followed by hand with torch itself, gives the same bytes
    g = torch.Generator().manual_seed(manifest["seed"])
    n, shp = manifest["count"], tuple(manifest["shape"])
    v = (
        torch.randn(n, *shp, generator=g).add_(0.5).clamp_(0, 1)
        if name == "gaussian"
        else torch.rand(n, *shp, generator=g)
    )
    assert np.rint(v.numpy() * 255.0).astype(np.uint8).tobytes() == images.tobytes()


def test_rebuild_refuses_a_manifest_of_another_recipe_or_other_bytes():
    manifest = json.loads(json.dumps(load("uniform", count=5, shape=(1, 4, 4)).manifest))
    with pytest.raises(ValueError, match="another recipe"):
        noise.rebuild({**manifest, "generator": "numpy PCG64"})
    with pytest.raises(ValueError, match="sha256"):
        noise.rebuild({**manifest, "images_sha256": "0" * 64})
    with pytest.raises(ValueError, match="not a noise manifest"):
        noise.rebuild({**manifest, "kind": "mnist"})
