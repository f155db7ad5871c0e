"""Batch norm folding (odin_ood.models.folding): the same function, checked against float64
references, ODIN's input gradient, and the zoo's real checkpoints on real CIFAR-10 images."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from odin_ood import Detector, data, fingerprint, models, odin_scores
from odin_ood.detector import threshold_below
from odin_ood.models.folding import fold_batch_norm, foldable_pairs, scoring_copy

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def with_batch_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` in eval mode with random batch-norm statistics and affine parameters (a fresh
    network's are mean 0, var 1, gamma 1, beta 0: folding them would change nothing)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model.eval()


def batch_norms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize(
    "name, folded, total",
    [
        ("resnet20", 19, 19),
        ("densenet-bc-100", 48, 99),
        ("wrn-40-4", 19, 37),
        ("mnist-lenet", 0, 0),
        ("mnist-mlp", 0, 0),
    ],
)
def test_foldable_batch_norms_per_zoo_architecture(name, folded, total):
    model = models.build(name).eval()
    assert (len(foldable_pairs(model)), batch_norms(model)) == (folded, total)
    assert batch_norms(fold_batch_norm(model)) == total - folded


@pytest.mark.parametrize("name", ["resnet20", "densenet-bc-40", "wrn-16-2"])
def test_folded_network_in_float64_is_the_same_function_and_input_gradient(name):
    builders = {
        "densenet-bc-40": lambda: models.densenet.DenseNetBC(40, 12, 10),
        "wrn-16-2": lambda: models.wide_resnet.WideResNet(16, 2, 10),
    }
    model = with_batch_statistics(builders.get(name, lambda: models.build(name))()).double()
    folded = fold_batch_norm(model)
    assert batch_norms(folded) < batch_norms(model)
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    y, y_folded = model(x), folded(x)
    torch.testing.assert_close(y_folded, y, rtol=0, atol=1e-10)
    (g,) = torch.autograd.grad(y.logsumexp(1).sum(), x)
    (g_folded,) = torch.autograd.grad(y_folded.logsumexp(1).sum(), x)
    torch.testing.assert_close(g_folded, g, rtol=0, atol=1e-10)


def test_fold_leaves_the_model_and_its_fingerprint_alone():
    model = with_batch_statistics(models.build("resnet20"))
    before, state = fingerprint(model), copy.deepcopy(model.state_dict())
    folded = fold_batch_norm(model)
    assert fingerprint(model) == before and fingerprint(folded) != before
    assert all(torch.equal(t, state[k]) for k, t in model.state_dict().items())
    assert batch_norms(model) == 19 and folded.input_std == model.input_std and not folded.training


def test_training_mode_model_is_returned_unchanged():
    model = with_batch_statistics(models.build("resnet20")).train()
    assert fold_batch_norm(model) is model
    model.eval().layer2[0].bn1.train()  # one batch norm still using batch statistics
    assert fold_batch_norm(model) is model
    assert fold_batch_norm(model.eval()) is not model


class ConvFeedsTwo(nn.Module):
    """conv -> bn, but the convolution's output is also added to the result: not foldable."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.conv2 = nn.Conv2d(3, 3, 1)
        self.drop = nn.Dropout(0.3)
        self.bn2 = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.conv(x)
        return self.bn(u) + u + self.bn2(self.drop(self.conv2(x)))


class Untraceable(nn.Module):
    """Data-dependent control flow at the top (fx cannot trace it) around a foldable child."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) if x.sum() > 0 else -self.body(x)


@pytest.mark.parametrize(
    "module, pairs",
    [
        (ConvFeedsTwo(), [("conv2", "bn2")]),  # through an eval dropout; conv's second consumer keeps bn
        (Untraceable(), [("body.0", "body.1")]),  # the traceable child is searched
        (nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3)), []),  # BN before the convolution
    ],
)
def test_only_a_batch_norm_reading_a_convolution_alone_is_folded(module, pairs):
    module = with_batch_statistics(module).double()
    assert foldable_pairs(module) == pairs
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(fold_batch_norm(module)(x), module(x), rtol=0, atol=1e-12)


def test_scoring_copy_is_channels_last_only_for_conv_nets():
    mlp = models.load("mnist-mlp")
    assert scoring_copy(mlp) == (mlp, False)
    lenet = models.load("mnist-lenet")
    copied, channels_last = scoring_copy(lenet)
    assert (
        channels_last and copied is not lenet and copied.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    )
    assert lenet.conv1.weight.is_contiguous()


@pytest.fixture(scope="module")
def cifar(shared_data):
    return data.load("cifar10-lossless-1000", root=shared_data)


def pixels_to_model(ds, model, start: int, stop: int) -> torch.Tensor:
    x = ds.tensors()[0][start:stop].float()
    return (x - torch.tensor(model.input_mean).view(1, 3, 1, 1)) / torch.tensor(model.input_std).view(1, 3, 1, 1)


def check_real_checkpoint(model, cifar, held_out: int, scored: int) -> None:
    """Folded logits within 1e-5 of a float64 reference (as the unfolded float32 ones are), ODIN
    scores at the paper's parameters within 1e-5, and the same decisions at a threshold set on
    held-out images with the unfolded model."""
    before = fingerprint(model)
    x_held, x = pixels_to_model(cifar, model, 0, held_out), pixels_to_model(cifar, model, held_out, held_out + scored)
    folded, _ = scoring_copy(model)
    with torch.no_grad():
        reference = copy.deepcopy(model).double()(x.double())
        assert (folded(x).double() - reference).abs().max() <= 1e-5 * reference.abs().max()
    plain = odin_scores(model, torch.cat([x_held, x]), 1000.0, 0.0014, model.input_std, normalise=False)
    fast = Detector(model, temperatures=(1000.0,), epsilons=(0.0014,), batch_size=64, optimize=True, normalise=False)
    fast._set_fitted(1000.0, 0.0014, threshold_below(plain[:held_out], 0.95), 0.95)
    assert fast.scoring_model()[1]  # the optimised copy is what scores
    fast_scores = fast.score(x)
    torch.testing.assert_close(fast_scores, plain[held_out:], rtol=0, atol=1e-5)
    assert torch.equal(fast.predict(x), (~(plain[held_out:] > fast.threshold_)).long())
    assert fast.model_fingerprint_ == before == fingerprint(model)


def test_resnet20_checkpoint_folded_scores_and_decisions(shared_data, cifar):
    model = models.load("resnet20", weights=shared_data / "models" / "resnet20-cifar10.th")
    check_real_checkpoint(model, cifar, held_out=128, scored=128)


@pytest.mark.slow
def test_densenet_checkpoint_folded_scores_and_decisions(shared_data, cifar):
    model = models.load("densenet-bc-100", weights=shared_data / "models" / "densenet-bc-100-cifar10.pth.tar")
    check_real_checkpoint(model, cifar, held_out=64, scored=64)


def test_detector_refolds_after_the_weights_change():
    model = with_batch_statistics(models.build("resnet20"))
    det = Detector(model, temperatures=(1000.0,), epsilons=(0.0014,), batch_size=8, optimize=True, normalise=False)
    det._set_fitted(1000.0, 0.0014, 0.1, 0.95)
    x = torch.randn(8, 3, 32, 32)  # the model's input
    first = det.score(x)
    with torch.no_grad():
        model.layer1[0].bn1.running_mean.add_(0.5)
    want = odin_scores(model, x, 1000.0, 0.0014, model.input_std, normalise=False)
    torch.testing.assert_close(det.score(x), want, rtol=0, atol=1e-6)
    assert not torch.equal(det.score(x), first)
    assert Detector(model).scoring_model() == (model, False)  # the default scores the model as given


@pytest.mark.libraries
def test_torchvision_resnet_folds_every_batch_norm_including_the_downsampling_ones():
    torchvision = pytest.importorskip("torchvision")
    model = with_batch_statistics(torchvision.models.resnet18(num_classes=10)).double()
    folded = fold_batch_norm(model)
    assert (len(foldable_pairs(model)), batch_norms(folded)) == (20, 0)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(folded(x), model(x), rtol=0, atol=1e-10)
