"""The gate exported as one ONNX graph and run on ONNX Runtime and OpenVINO gives eager torch's
outputs on real images: scores within 1e-5, the same classes and the same decisions (zoo networks:
the shipped MNIST LeNet on MNIST vs notMNIST, ResNet-20 and (slow) DenseNet-BC-100 on CIFAR-10 vs
TinyImageNet (crop));
every score family exports; an operator without a rule is one error naming it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from odin_ood import Detector, data, models
from odin_ood.preprocess import Preprocessing, normalise
from odin_ood.runtimes import RUNTIMES, load_runtime
from odin_ood.runtimes.eager import EagerRuntime
from odin_ood.serving.engine import fixed_batch_outputs

pytestmark = pytest.mark.usefixtures("torch_one_thread")
GRAPH_RUNTIMES = [pytest.param(name, marks=pytest.mark.skipif(
    __import__("importlib").util.find_spec(package) is None, reason=f"{package} is not installed"))
    for name, package in (("onnxruntime", "onnxruntime"), ("openvino", "openvino"))]


def pixels(ds, rows: slice) -> torch.Tensor:
    return ds.images[rows].float() / 255.0


def spec_of(model) -> Preprocessing:
    return Preprocessing(tuple(model.input_shape), mean=tuple(model.input_mean), std=tuple(model.input_std))


def fitted(model, id_pixels, ood_pixels, batch_size: int, **kwargs) -> Detector:
    spec = spec_of(model)
    det = Detector(model, batch_size=batch_size, normalise=False, **kwargs)  # given the model's input
    return det.fit(normalise(id_pixels, spec), normalise(ood_pixels, spec))


def assert_same_gate(got: dict, want: dict) -> None:
    assert torch.equal(got["predicted_class"], want["predicted_class"])
    assert (got["score"].double() - want["score"].double()).abs().max().item() <= 1e-5
    assert (got["confidence"].double() - want["confidence"].double()).abs().max().item() <= 1e-5
    assert torch.equal(got["is_out_of_distribution"], want["is_out_of_distribution"])


@pytest.fixture(scope="module")
def mnist(shared_data):
    return data.load("mnist", root=shared_data), data.load("notmnist", root=shared_data)


@pytest.fixture(scope="module")
def lenet_odin(mnist, tmp_path_factory):
    """The shipped LeNet with ODIN at T = 1000, epsilon = 0.0014 (the backward path), fitted on
    200 + 200 real images; 600 others (not a multiple of the batch: the last batch is padded)."""
    digits, letters = mnist
    model = models.load("mnist-lenet")
    det = fitted(model, pixels(digits, slice(0, 200)), pixels(letters, slice(0, 200)), 32,
                 temperatures=(1000.0,), epsilons=(0.0014,))
    x = torch.cat([pixels(digits, slice(5000, 5300)), pixels(letters, slice(5000, 5300))])
    return det, x, tmp_path_factory.mktemp("export-cache")


@pytest.mark.parametrize("name", GRAPH_RUNTIMES)
def test_exported_lenet_odin_gate_equals_eager_on_mnist_and_notmnist(lenet_odin, name):
    det, x, cache = lenet_odin
    spec = spec_of(det.model)
    want = fixed_batch_outputs(EagerRuntime(det, spec), x)
    runtime = load_runtime(name, det, spec, threads=1, cache_dir=cache)
    got = fixed_batch_outputs(runtime, x)
    assert_same_gate(got, want)
    # the gate discriminates: most digits kept, most letters refused (a broken graph would not)
    ood = got["is_out_of_distribution"].double()
    assert ood[:300].mean() < 0.2 and ood[300:].mean() > 0.5
    assert len(list(cache.glob("*.onnx"))) == 1  # exported once, shared by both runtimes


@pytest.mark.parametrize("score", ["energy-odin", "energy", "maxlogit", "msp"])
def test_every_score_family_exports_with_the_eager_gate(mnist, score, tmp_path):
    pytest.importorskip("onnxruntime")
    digits, letters = mnist
    det = fitted(models.load("mnist-lenet"), pixels(digits, slice(0, 150)), pixels(letters, slice(0, 150)), 50,
                 score=score, epsilons=(0.0014,))
    x = torch.cat([pixels(digits, slice(6000, 6100)), pixels(letters, slice(6000, 6100))])
    spec = spec_of(det.model)
    got = fixed_batch_outputs(load_runtime("onnxruntime", det, spec, threads=1, cache_dir=tmp_path), x)
    assert_same_gate(got, fixed_batch_outputs(EagerRuntime(det, spec), x))


CIFAR_NETWORKS = {"resnet20": "resnet20-cifar10.th", "densenet-bc-100": "densenet-bc-100-cifar10.pth.tar"}


@pytest.fixture(scope="module", params=["resnet20", pytest.param("densenet-bc-100", marks=pytest.mark.slow)])
def cifar_odin(request, shared_data, tmp_path_factory):
    """A CIFAR-10 network of the zoo with ODIN at T = 1000, epsilon = 0.0014 (DenseNet-BC-100's
    export takes minutes: slow)."""
    model = models.load(request.param, weights=shared_data / "models" / CIFAR_NETWORKS[request.param])
    cifar = data.load("cifar10-lossless-1000", root=shared_data)
    crop = data.load("tinyimagenet-crop", root=shared_data)
    det = fitted(model, pixels(cifar, slice(0, 200)), pixels(crop, slice(0, 200)), 64,
                 temperatures=(1000.0,), epsilons=(0.0014,))
    x = torch.cat([pixels(cifar, slice(200, 500)), pixels(crop, slice(200, 500))])
    return det, x, tmp_path_factory.mktemp("export-cache")


@pytest.mark.parametrize("name", GRAPH_RUNTIMES)
def test_exported_cifar_odin_gate_equals_eager_on_cifar10_and_tinyimagenet_crop(cifar_odin, name):
    det, x, cache = cifar_odin
    spec = spec_of(det.model)
    got = fixed_batch_outputs(load_runtime(name, det, spec, threads=1, cache_dir=cache), x)
    assert_same_gate(got, fixed_batch_outputs(EagerRuntime(det, spec), x))


class PooledNet(nn.Module):
    """A conv net ending in fractional max pooling, whose operator ONNX has no translation for."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 4, 3), nn.Linear(4, 3)
        self.input_shape, self.input_mean, self.input_std = (1, 8, 8), (0.5,), (0.25,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.conv(x)
        samples = torch.full((len(z), 4, 2), 0.5)
        return self.fc(F.fractional_max_pool2d(z, 2, output_size=1, _random_samples=samples).flatten(1))


def test_operator_without_export_rule_is_one_error_naming_it(tmp_path):
    pytest.importorskip("onnxscript")
    from odin_ood.export import UnsupportedOperator

    det = Detector(PooledNet(), temperatures=(1000.0,), epsilons=(0.001,), batch_size=4)
    det.fit(torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0)),
            torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(1)))
    with pytest.raises(UnsupportedOperator, match=r"uses aten\.fractional_max_pool2d\.default, .*--runtime torch"):
        load_runtime("onnxruntime", det, spec_of(det.model), cache_dir=tmp_path)
    assert not list(tmp_path.glob("*.onnx"))  # nothing half-written is left


def test_unknown_runtime_name_is_refused_with_the_choices(lenet_odin):
    det = lenet_odin[0]
    with pytest.raises(ValueError, match=r"--runtime must be one of \['onnxruntime', 'openvino', 'torch'\]"):
        load_runtime("tensorflow", det, spec_of(det.model))
    assert sorted(RUNTIMES) == ["onnxruntime", "openvino", "torch"]
