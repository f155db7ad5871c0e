"""The Python API's default path cannot be got wrong: a ``models.load`` model fed ``data.load``
pixels in [0, 1] (the README's path) is scored through the model's own normalisation, on real
MNIST vs notMNIST with the shipped LeNet. Unnormalised, the same pixels gave FPR@95 97% and AUROC
39% with no warning; normalised by hand, the scores are bitwise those of the default path."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Subset

from odin_ood import Detector, data, models, msp_scores, odin_scores
from odin_ood.metrics import evaluate
from odin_ood.models.zoo import IMAGENET_MEAN, IMAGENET_STD
from odin_ood.preprocess.model_input import PIXEL_TOLERANCE, check_normalise
from odin_ood.preprocess.model_input import pixels as pixels_of
from odin_ood.scores.energy import energy_odin_scores, energy_scores, maxlogit_scores

pytestmark = pytest.mark.usefixtures("torch_one_thread")
N = 1000
LENET = ((0.1307,), (0.3081,))  # models.load("mnist-lenet").input_mean, .input_std


@pytest.fixture(scope="module")
def lenet():
    return models.load("mnist-lenet")


@pytest.fixture(scope="module")
def pixels(shared_data):
    mnist, notmnist = data.load("mnist", root=shared_data), data.load("notmnist", root=shared_data)
    return mnist, notmnist, mnist.images[:N].float() / 255, notmnist.images[:N].float() / 255


def by_hand(model, x):
    return (x - torch.tensor(model.input_mean).view(1, -1, 1, 1)) / torch.tensor(model.input_std).view(1, -1, 1, 1)


def test_odin_scores_on_pixels_give_the_normalised_numbers(lenet, pixels):
    _, _, x_in, x_out = pixels
    got = evaluate(odin_scores(lenet, x_in, 1000, 0.0014), odin_scores(lenet, x_out, 1000, 0.0014))
    assert got["fpr_at_95_tpr"] < 0.15 and got["auroc"] > 0.97, got
    raw = evaluate(
        odin_scores(lenet, x_in, 1000, 0.0014, normalise=False),
        odin_scores(lenet, x_out, 1000, 0.0014, normalise=False),
    )
    assert raw["fpr_at_95_tpr"] > 0.9 and raw["auroc"] < 0.5, raw  # the trap the default now avoids


@pytest.mark.parametrize(
    "fn,kwargs",
    [
        (odin_scores, dict(temperature=1000, epsilon=0.0014)),
        (msp_scores, {}),
        (energy_scores, {}),
        (maxlogit_scores, {}),
        (energy_odin_scores, dict(epsilon=0.002)),
    ],
)
def test_default_path_equals_normalising_by_hand_bitwise(lenet, pixels, fn, kwargs):
    x = pixels[2][:64]
    std = {"input_std": lenet.input_std} if "epsilon" in kwargs else {}
    assert torch.equal(fn(lenet, x, **kwargs), fn(lenet, by_hand(lenet, x), **kwargs, **std, normalise=False))
    assert torch.equal(fn(lenet, x, **kwargs), fn(lenet, x, **kwargs, normalise=True))


def test_inputs_normalised_by_hand_are_refused_under_auto_and_taken_with_normalise_false(lenet, pixels):
    z = by_hand(lenet, pixels[2][:64])
    assert torch.equal(
        odin_scores(lenet, z, 1000, 0.0014, lenet.input_std, normalise=False),
        odin_scores(lenet, pixels[2][:64], 1000, 0.0014),
    )
    with pytest.raises(
        ValueError,
        match=r"x holds values in \[-0.424213, 2.82149\].*'auto' reads it as pixels"
        r".*pass normalise=False",
    ):
        odin_scores(lenet, z, 1000, 0.0014, lenet.input_std)
    with pytest.raises(ValueError, match=r"normalise=True takes pixels in \[0, 1\].*normalise=False"):
        odin_scores(lenet, z, 1000, 0.0014, normalise=True)
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match="normalise must be"):
            check_normalise(bad)


def test_a_model_without_statistics_is_scored_as_given(digits_model, digits):
    x = digits["x_held"][:32]
    assert torch.equal(msp_scores(digits_model, x), msp_scores(digits_model, x, normalise=False))
    with pytest.raises(ValueError, match="declares no input_mean/input_std"):
        msp_scores(digits_model, x, normalise=True)


def test_detector_default_path_fits_and_predicts_on_pixels(lenet, pixels):
    mnist, notmnist, x_in, x_out = pixels
    det = Detector(lenet, temperatures=(1.0, 1000.0), epsilons=(0.0, 0.0014)).fit(x_in[:500], x_out[:500])
    by = Detector(lenet, temperatures=(1.0, 1000.0), epsilons=(0.0, 0.0014), normalise=False).fit(
        by_hand(lenet, x_in[:500]), by_hand(lenet, x_out[:500])
    )
    assert (det.temperature_, det.epsilon_, det.threshold_) == (by.temperature_, by.epsilon_, by.threshold_)
    kept_in = 1 - det.predict(x_in[500:]).float().mean().item()
    caught_out = det.predict(x_out[500:]).float().mean().item()
    assert kept_in > 0.9 and caught_out > 0.85, (kept_in, caught_out)
    # a Dataset of pixels (data.load's ImageDataset) is read the same way, batch by batch
    via_dataset = Detector(lenet, temperatures=(1.0, 1000.0), epsilons=(0.0, 0.0014)).fit(
        Subset(mnist, range(500)), Subset(notmnist, range(500))
    )
    assert via_dataset.threshold_ == det.threshold_
    assert torch.equal(via_dataset.score(Subset(mnist, range(500, 600))), det.score(x_in[500:600]))


def test_detector_default_noise_tuning_on_pixels_uses_one_space(lenet, pixels):
    """Without OOD data, noise is built in pixel space and normalised like the ID pixels."""
    x_in = pixels[2][:400]
    det = Detector(lenet, temperatures=(1000.0,), epsilons=(0.0,)).fit(x_in)
    by = Detector(lenet, temperatures=(1000.0,), epsilons=(0.0,), normalise=False).fit(by_hand(lenet, x_in))
    assert det.threshold_ == by.threshold_


@pytest.mark.parametrize(
    "name,stats,alone",
    [
        ("mnist", LENET, 0),
        ("notmnist", LENET, 8),
        ("omniglot", LENET, 0),
        ("cifar10-lossless-1000", (IMAGENET_MEAN, IMAGENET_STD), 0),
    ],
)
def test_no_batch_of_real_normalised_images_passes_for_pixels(lenet, shared_data, name, stats, alone):
    """What "auto" refuses: inputs normalised by hand (with the LeNet's statistics; ResNet-20's for
    CIFAR-10) lie outside [-0.5, 1.5] (the pixels it takes, overshoot included) in every batch of
    128 of these sets; a lone image rarely lies inside (``alone`` of the set): such inputs need
    ``normalise=False``."""
    assert (lenet.input_mean, lenet.input_std) == LENET
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in stats)
    z = (data.load(name, root=shared_data).tensors()[0] - mean) / std
    low, high = z.flatten(1).amin(1), z.flatten(1).amax(1)
    inside = (low >= -PIXEL_TOLERANCE) & (high <= 1 + PIXEL_TOLERANCE)
    assert int(inside.sum()) == alone
    for batch in z.split(128):
        with pytest.raises(ValueError, match="not pixels"):
            pixels_of(batch, "auto")
