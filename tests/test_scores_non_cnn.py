"""ODIN's gradient step beyond CNNs, through the Python API: a small vision transformer trained here
on a slice of real MNIST, and an MLP on tabular data with a known structure (scikit-learn's
make_blobs). Both are trained in the test in seconds on one thread."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs
from torch import nn

from odin_ood import data, msp_scores, odin_scores, tune
from odin_ood.metrics import evaluate
from reference_support import reference_odin_float64

pytestmark = pytest.mark.usefixtures("torch_one_thread")


class TinyViT(nn.Module):
    """ViT (Dosovitskiy et al., 2021) at toy size: 7x7 patches of a 28x28 image, a class token,
    learned position embeddings, two pre-norm encoder layers, a linear head."""

    def __init__(self, dim: int = 32, depth: int = 2, classes: int = 10) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, dim, kernel_size=7, stride=7)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 17, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, 4, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1) + self.pos
        return self.head(self.norm(self.encoder(tokens))[:, 0])


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float, batch: int = 64) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (batch,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def mnist_vit(shared_data):
    train_set = data.load("mnist", root=shared_data, split="train")
    test_set = data.load("mnist", root=shared_data, split="test")
    x = train_set.images[:3000].float() / 255
    torch.manual_seed(0)
    model = train(TinyViT(), x, train_set.labels[:3000], steps=300, lr=3e-3)
    x_test = test_set.images[:500].float() / 255
    notmnist = data.load("notmnist", root=shared_data).images[:200].float() / 255
    return model, x_test, test_set.labels[:500], notmnist


def test_tiny_vit_learns_mnist(mnist_vit):
    model, x, y, _ = mnist_vit
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.8


@pytest.mark.parametrize("temperature,epsilon", [(1.0, 0.002), (1000.0, 0.0014)])
def test_odin_on_a_vision_transformer_equals_the_float64_reference(mnist_vit, temperature, epsilon):
    model, x, _, notmnist = mnist_vit
    batch = torch.cat([x[:12], notmnist[:12]])
    got = odin_scores(model, batch, temperature, epsilon).double()
    want = reference_odin_float64(model, batch, temperature, epsilon)
    assert torch.allclose(got, want, atol=2e-5, rtol=0)


def test_the_gradient_step_raises_the_softmax_score_of_a_vision_transformer(mnist_vit):
    """Paper section 3: x~ moves against the gradient of the loss, so S(x~; T) > S(x; T) for
    (almost) every image at a small epsilon; the step through attention must keep that sign."""
    model, x, _, _ = mnist_vit
    before = odin_scores(model, x, 1.0, 0.0)
    after = odin_scores(model, x, 1.0, 0.002)
    assert (after > before).float().mean() > 0.95
    assert torch.allclose(before, msp_scores(model, x), atol=1e-6)  # the no-grad pass may take a fused kernel


@pytest.fixture(scope="module")
def tabular():
    """Known structure (scikit-learn's make_blobs): three Gaussian classes in 10 features, unit
    spread, centres drawn from N(0, 1.2^2 I); the OOD points form a fourth blob at the centroid of
    the three centres, where the class boundaries meet and a classifier should not be confident."""
    centres = np.random.default_rng(0).normal(0.0, 1.2, (3, 10))
    x, y = make_blobs(n_samples=3000, centers=centres, cluster_std=1.0, random_state=0)
    ood, _ = make_blobs(n_samples=1000, centers=centres.mean(0, keepdims=True), cluster_std=1.0, random_state=1)
    x, ood = torch.tensor(x, dtype=torch.float32), torch.tensor(ood, dtype=torch.float32)
    mean, std = x[:2000].mean(0), x[:2000].std(0)
    model = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 3))
    torch.manual_seed(0)
    train(model, (x[:2000] - mean) / std, torch.tensor(y[:2000]), steps=400, lr=3e-3, batch=128)
    return {
        "model": model,
        "x_in": (x[2000:] - mean) / std,
        "y_in": torch.tensor(y[2000:]),
        "x_out": (ood - mean) / std,
        "std": std,
    }


def test_mlp_on_tabular_data_learns_the_classes(tabular):
    with torch.no_grad():
        accuracy = (tabular["model"](tabular["x_in"]).argmax(1) == tabular["y_in"]).float().mean().item()
    assert accuracy > 0.95


def test_odin_on_feature_vectors_with_per_feature_std_equals_the_float64_reference(tabular):
    """x is (N, features): input_std holds one value per feature, and epsilon is in raw feature
    units, so the step in standardised space is epsilon / std per feature."""
    model, x, std = tabular["model"], torch.cat([tabular["x_in"][:20], tabular["x_out"][:20]]), tabular["std"]

    class Raw(nn.Module):  # the same classifier on raw features: the reference's step is epsilon
        def __init__(self):
            super().__init__()
            self.inner = model
            self.register_buffer("std", std)

        def forward(self, raw):
            return self.inner(raw / self.std)

    got = odin_scores(model, x, 10.0, 0.05, input_std=std).double()
    want = reference_odin_float64(Raw(), x * std, 10.0, 0.05)
    assert torch.allclose(got, want, atol=1e-5, rtol=0)
    assert torch.equal(odin_scores(model, x, 10.0, 0.05), odin_scores(model, x, 10.0, 0.05, input_std=[1.0]))


def test_odin_tuned_on_feature_vectors_beats_msp_on_unseen_outliers(tabular):
    """tune() on 500 + 500 held-out vectors (the paper's grid), evaluated on the other 500 + 500:
    ODIN's FPR at 95% TPR and AUROC beat the MSP baseline's (measured: 53.6% vs 67.8% FPR)."""
    model, std = tabular["model"], tabular["std"]
    x_in, x_out = tabular["x_in"], tabular["x_out"]
    result = tune(model, x_in[:500], x_out[:500], input_std=std)
    odin = evaluate(
        odin_scores(model, x_in[500:], result.temperature, result.epsilon, input_std=std),
        odin_scores(model, x_out[500:], result.temperature, result.epsilon, input_std=std),
    )
    msp = evaluate(msp_scores(model, x_in[500:]), msp_scores(model, x_out[500:]))
    assert odin["fpr_at_95_tpr"] < msp["fpr_at_95_tpr"] - 0.05
    assert odin["auroc"] > msp["auroc"]
