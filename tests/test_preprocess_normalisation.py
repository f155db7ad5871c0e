"""The model's ``input_mean``/``input_std`` are the single source of truth wherever odin-ood
normalises: ResNet-20 (trained with ImageNet statistics) on the lossless CIFAR-10 images, whose
dataset reports CIFAR's, through the experiment path and the serving path."""

from __future__ import annotations

import pytest
import torch

from odin_ood import Detector, data, models
from odin_ood.commands.inputs import Inputs
from odin_ood.commands.loading import preprocessing_for
from odin_ood.experiments.cache import ScoreCache
from odin_ood.experiments.scorer import Scorer
from odin_ood.models.zoo import IMAGENET_MEAN, IMAGENET_STD
from odin_ood.preprocess import image_pixels, image_tensor, normalise
from odin_ood.runtimes.batches import fixed_batch_outputs
from odin_ood.runtimes.eager import EagerRuntime

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def resnet20(shared_data):
    return models.load("resnet20", weights=shared_data / "models" / "resnet20-cifar10.th")


@pytest.fixture(scope="module")
def cifar(shared_data):
    return data.load("cifar10-lossless-1000", root=shared_data)


def normalised(ds, mean, std) -> torch.Tensor:
    return (ds.tensors()[0].double() - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).double().mean().item()


@torch.no_grad()
def test_resnet20_loses_accuracy_with_the_datasets_statistics(resnet20, cifar):
    # what the test below guards against: the dataset's statistics are CIFAR's, not the model's
    assert cifar.mean == data.CIFAR_MEAN and resnet20.input_mean == IMAGENET_MEAN
    own = accuracy(resnet20(normalised(cifar, IMAGENET_MEAN, IMAGENET_STD).float()), cifar.labels)
    dataset = accuracy(resnet20(normalised(cifar, cifar.mean, cifar.std).float()), cifar.labels)
    assert own == pytest.approx(0.915, abs=1e-9) and dataset == pytest.approx(0.912, abs=1e-9)


def test_experiment_scorer_feeds_resnet20_its_own_statistics(resnet20, cifar, tmp_path):
    scorer = Scorer(resnet20, (1000.0,), (0.0,), ScoreCache(tmp_path), batch_size=250, progress=False)
    x = scorer.inputs(cifar.images)
    assert torch.allclose(x.double(), normalised(cifar, IMAGENET_MEAN, IMAGENET_STD), atol=1e-6)
    assert accuracy(torch.from_numpy(scorer.logits(x)), cifar.labels) == pytest.approx(0.915, abs=1e-9)


def test_serving_path_feeds_resnet20_its_own_statistics(resnet20, cifar, shared_data):
    want = normalised(cifar, IMAGENET_MEAN, IMAGENET_STD)
    noise = torch.rand(50, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    det = Detector(resnet20, input_std=resnet20.input_std, temperatures=(1000.0,), epsilons=(0.0,), batch_size=250)
    det.fit(cifar.tensors()[0][:50], noise)  # pixels, both: normalised alike with the model's statistics
    spec = preprocessing_for(det)
    inputs = Inputs(["cifar10-lossless-1000"], data_root=str(shared_data))  # as `odin-ood score ... DATASET`
    pixels = torch.stack([image_pixels(inputs.load(i, spec), spec) for i in range(len(inputs))])
    assert torch.allclose(normalise(pixels, spec).double(), want, atol=1e-6)
    assert torch.equal(
        normalise(pixels[:9], spec), torch.stack([image_tensor(inputs.load(i, spec), spec) for i in range(9)])
    )
    predicted = fixed_batch_outputs(EagerRuntime(det, spec), pixels)["predicted_class"]
    assert (predicted == cifar.labels).double().mean().item() == pytest.approx(0.915, abs=1e-9)
    # a detector fitted with the dataset's statistics would normalise with CIFAR's: refused
    with pytest.raises(ValueError, match=r"fitted with input_mean .* but the model takes"):
        preprocessing_for(Detector(resnet20, input_std=cifar.std, input_mean=cifar.mean))
