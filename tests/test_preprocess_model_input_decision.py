"""``normalise`` is decided once, the same for every image: never from the other images of a call,
their order or how a DataLoader batches them (issue 28, break 3). Real images, real models: the
shipped MNIST LeNet on MNIST vs notMNIST, ResNet-20 on CIFAR-10 vs Tiny ImageNet resized with
torch's bicubic (which overshoots [0, 1]), and DigitsNet (no declared statistics)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from odin_ood import Detector, data, models, msp_scores, odin_scores
from odin_ood.preprocess import Preprocessing, normalise
from odin_ood.preprocess.model_input import PIXEL_TOLERANCE
from odin_ood.runtimes.eager import EagerRuntime

pytestmark = pytest.mark.usefixtures("torch_one_thread")
KEYS = ("predicted_class", "confidence", "score", "is_out_of_distribution")


def by_hand(model, x):
    return (x - torch.tensor(model.input_mean).view(1, -1, 1, 1)) / torch.tensor(model.input_std).view(1, -1, 1, 1)


def bicubic(x: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)


@pytest.fixture(scope="module")
def lenet_case(shared_data):
    """The LeNet fitted on 100 + 100 pixels; 200 other digits and 200 letters to decide."""
    mnist, notmnist = (data.load(n, root=shared_data).images.float() / 255 for n in ("mnist", "notmnist"))
    model = models.load("mnist-lenet")
    det = Detector(model, temperatures=(1000.0,), epsilons=(0.0014,)).fit(mnist[:100], notmnist[:100])
    return det, torch.cat([mnist[1000:1200], notmnist[1000:1200]])


@pytest.fixture(scope="module")
def resnet_case(shared_data):
    """ResNet-20 fitted on 40 CIFAR-10 + 40 Tiny ImageNet pixels (bicubic 64 -> 32); 32 + 32 others."""
    cifar = data.load("cifar10-lossless-1000", root=shared_data).images.float() / 255
    tiny = bicubic(data.load("tinyimagenet", root=shared_data).images[:112].float() / 255, 32)
    model = models.load("resnet20", weights=shared_data / "models" / "resnet20-cifar10.th")
    det = Detector(model, temperatures=(1000.0,), epsilons=(0.0014,), batch_size=16).fit(
        cifar[:40], tiny[:40].clamp(0, 1)
    )
    return det, torch.cat([cifar[500:532], tiny[80:112]])


def test_one_pass_of_torchs_bicubic_stays_within_the_pixel_tolerance():
    """Why 0.5: torch's cubic (a = -0.75) at offset 1/2 weighs (-3/32, 19/32, 19/32, -3/32), so one
    pass maps [0, 1] into [-0.4453125, 1.4453125] (2 * 3/16 * 19/16 in 2-D), reached by halving
    the 0/1 image that is 1 where both weights have the same sign; random 0/1 images at other
    scales, antialiased or not, stay inside."""
    a = torch.tensor([1.0, 1.0, 0.0, 0.0]).repeat(4)
    worst = (a[:, None] * a[None, :] + (1 - a[:, None]) * (1 - a[None, :]))[None, None]
    assert bicubic(worst, 8).max().item() == 1.4453125 and bicubic(1 - worst, 8).min().item() == -0.4453125
    images = (torch.rand(256, 1, 8, 8, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    for size in (4, 5, 7, 12, 31):
        for antialias in (False, True):
            y = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False, antialias=antialias)
            assert y.min() > -PIXEL_TOLERANCE and y.max() < 1 + PIXEL_TOLERANCE


def test_one_pixel_at_1_plus_1ulp_changes_no_other_images_decision(lenet_case):
    det, x = lenet_case
    bumped = x.clone()
    bumped[3, 0, 14, 14] = torch.nextafter(torch.tensor(1.0), torch.tensor(2.0))
    want, got = det.outputs(x), det.outputs(bumped)
    others = torch.arange(len(x)) != 3
    for key in KEYS:
        assert torch.equal(got[key][others], want[key][others]), key
        assert torch.equal(got[key], det.outputs(bumped.clamp(0, 1))[key]), key  # the one pixel read as 1.0
    refused_digits = int(want["is_out_of_distribution"][:200].sum())
    assert refused_digits < 20 and int(got["is_out_of_distribution"][:200].sum()) == refused_digits
    assert torch.equal(
        odin_scores(det.model, bumped, 1000, 0.0014)[others], odin_scores(det.model, x, 1000, 0.0014)[others]
    )


def test_a_bicubic_resized_batch_decides_as_the_same_images_clamped(lenet_case, resnet_case):
    det, x = lenet_case
    resized = bicubic(bicubic(x, 32), 28)  # 28 -> 32 -> 28: overshoots [0, 1] by more than 0.1
    assert resized.min() < -0.1 and resized.max() > 1.1 and resized.abs().max() < 1 + PIXEL_TOLERANCE
    want = det.outputs(resized.clamp(0, 1))
    got = det.outputs(resized)
    for key in KEYS:
        assert torch.equal(got[key], want[key]), key
    assert torch.equal(msp_scores(det.model, resized), msp_scores(det.model, resized.clamp(0, 1)))
    # ResNet-20: Tiny ImageNet resized to 32 x 32 by bicubic, beside CIFAR-10 images within [0, 1]
    det, x = resnet_case
    assert ((x[32:] < 0) | (x[32:] > 1)).flatten(1).any(1).sum() >= 24 and not ((x[:32] < 0) | (x[:32] > 1)).any()
    got, want = det.outputs(x), det.outputs(x.clamp(0, 1))
    for key in KEYS:
        assert torch.equal(got[key], want[key]), key
    # the CIFAR-10 images are normalised exactly as by hand, and classified as such
    by = det.outputs_for_model_input(by_hand(det.model, x[:32]))
    assert torch.equal(got["score"][:32], by["score"])
    assert torch.equal(got["predicted_class"][:32], by["predicted_class"])


def _split_calls(fn, x: torch.Tensor, sizes: list[int]) -> dict[str, torch.Tensor]:
    parts = [fn(chunk) for chunk in x.split(sizes)]
    return {key: torch.cat([p[key] for p in parts]) for key in KEYS}


def assert_same_per_image(got: dict, want: dict, threshold: float) -> None:
    """Per image: the same class, scores within 1e-6 (batching may change float rounding) and the
    same decision wherever the score is not within 1e-6 of the threshold."""
    assert torch.equal(got["predicted_class"], want["predicted_class"])
    for key in ("confidence", "score"):
        assert (got[key].double() - want[key].double()).abs().max().item() <= 1e-6, key
    clear = (want["score"].double() - threshold).abs() > 1e-6
    assert clear.float().mean() > 0.9
    assert torch.equal(got["is_out_of_distribution"][clear], want["is_out_of_distribution"][clear])


@pytest.mark.parametrize("case", ["lenet_case", "resnet_case"])
def test_an_images_decision_does_not_depend_on_the_other_images_or_their_order(case, request):
    det, x = request.getfixturevalue(case)
    if case == "lenet_case":  # 100 LeNet images, 25 of them resized 28 -> 32 -> 28 by bicubic (overshooting)
        x = torch.cat([x[::5], bicubic(bicubic(x[2::16], 32), 28)])
    want = det.outputs(x)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    inverse = torch.argsort(perm)
    permuted = det.outputs(x[perm])
    assert_same_per_image({k: v[inverse] for k, v in permuted.items()}, want, det.threshold_)
    assert_same_per_image(_split_calls(det.outputs, x, [1, 7, 24, len(x) - 32]), want, det.threshold_)
    loader = DataLoader(TensorDataset(x[perm]), batch_size=5)  # another order, another batch size
    assert_same_per_image({k: v[inverse] for k, v in det.outputs(loader).items()}, want, det.threshold_)
    # the functions too: one image per call gives what the whole call gives
    whole = odin_scores(det.model, x, det.temperature_, det.epsilon_)
    one_by_one = torch.cat(
        [odin_scores(det.model, x[i : i + 1], det.temperature_, det.epsilon_) for i in range(len(x))]
    )
    assert (whole.double() - one_by_one.double()).abs().max().item() <= 1e-6


def test_a_model_without_statistics_decides_the_same_whatever_the_batch(digits_model, digits):
    x = digits["x_held"][:48] * 1.3 - 0.1  # DigitsNet declares nothing: any range is its own input, never clamped
    det = Detector(digits_model, temperatures=(1000.0,), epsilons=(0.002,)).fit(digits["x_held"][100:200])
    want = det.outputs(x)
    assert torch.equal(
        want["score"],
        Detector(digits_model, temperatures=(1000.0,), epsilons=(0.002,), normalise=False)
        .fit(digits["x_held"][100:200])
        .outputs(x)["score"],
    )
    assert_same_per_image(_split_calls(det.outputs, x, [1, 20, 27]), want, det.threshold_)


def test_data_that_is_not_pixels_is_refused_under_auto_naming_normalise(lenet_case):
    det, x = lenet_case
    z = by_hand(det.model, x[:64])  # already normalised: values in [-0.42, 2.82]
    calls = (lambda: det.predict(z), lambda: odin_scores(det.model, z, 1000, 0.0014), lambda: msp_scores(det.model, z))
    for call in calls:
        with pytest.raises(
            ValueError,
            match=r"x holds values in \[-0.424.*, 2.82.*\], not pixels in \[0, 1\].*"
            r"normalise=False",
        ):
            call()
    assert torch.equal(det.outputs_for_model_input(z)["score"], det.outputs(x[:64])["score"])
    with pytest.raises(ValueError, match=r"x holds values in \[0, 255\]"):
        det.predict(x[:8] * 255)  # 8-bit values: refused, not read as the model's input
    with pytest.raises(ValueError, match=r"normalise=True takes pixels in \[0, 1\].*normalise=False"):
        odin_scores(det.model, z, 1000, 0.0014, normalise=True)


def test_a_later_batch_that_is_not_pixels_is_refused_never_read_another_way(lenet_case):
    det, x = lenet_case
    z = by_hand(det.model, x[:40])
    # first batch normalised, later ones pixels: refused at the first batch (it used to read all as given)
    with pytest.raises(ValueError, match=r"x \(batch 1\) holds values in .*normalise=False"):
        det.predict(DataLoader(TensorDataset(torch.cat([z[:10], x[10:40]])), batch_size=10))
    # pixels first, then a batch in 8-bit values: refused at that batch
    with pytest.raises(ValueError, match=r"x \(batch 3\) holds values in \[0, 255\]"):
        det.predict(DataLoader(TensorDataset(torch.cat([x[:20], x[20:30] * 255, x[30:40]])), batch_size=10))


def test_fit_reads_id_and_ood_data_the_same_way(lenet_case):
    det, x = lenet_case
    z = by_hand(det.model, x[200:300])
    with pytest.raises(ValueError, match=r"ood_data holds values in .*normalise=False"):
        Detector(det.model, temperatures=(1000.0,), epsilons=(0.0,)).fit(x[:100], z)  # each read its own way
    grid = dict(temperatures=(1000.0,), epsilons=(0.0,))
    by = Detector(det.model, **grid, normalise=False).fit(by_hand(det.model, x[:100]), z)
    assert Detector(det.model, **grid).fit(x[:100], x[200:300]).threshold_ == by.threshold_


def test_the_torch_runtime_states_it_passes_the_models_input(lenet_case):
    """The eager runtime normalises pixels with the preprocessing and gives the detector the model's
    input as such, whatever the detector's own ``normalise`` says (``odin-ood score``/``serve``)."""
    det, x = lenet_case
    model = det.model
    spec = Preprocessing(tuple(model.input_shape), mean=tuple(model.input_mean), std=tuple(model.input_std))
    got = EagerRuntime(det, spec).outputs(x[:64])
    want = det.outputs_for_model_input(normalise(x[:64], spec))
    assert det.normalise == "auto" and all(torch.equal(got[k], want[k]) for k in KEYS)
    assert torch.equal(got["score"], det.outputs(x[:64])["score"])
