"""The one preprocessing path of score and serve, against independent numpy/PIL computations."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
from PIL import Image

from odin_ood import Detector
from odin_ood.commands.loading import preprocessing_for
from odin_ood.preprocess import InputError, Preprocessing, array_tensor, decode, image_tensor
from odin_ood.runtimes.batches import fixed_batch_outputs
from odin_ood.runtimes.eager import EagerRuntime

CIFAR = Preprocessing((3, 4, 5), mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010))


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def test_rgb_png_is_normalised_per_channel():
    a = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    x = image_tensor(decode(png(a), CIFAR), CIFAR)
    want = (a.transpose(2, 0, 1) / 255.0 - np.array(CIFAR.mean)[:, None, None]) / np.array(CIFAR.std)[:, None, None]
    assert x.shape == (3, 4, 5) and np.allclose(x.numpy(), want, atol=1e-6)


def test_grey_image_for_an_rgb_model_is_replicated_and_rgb_for_grey_uses_pil_luma():
    g = np.random.default_rng(1).integers(0, 256, (4, 5), dtype=np.uint8)
    x = image_tensor(g, Preprocessing((3, 4, 5)))
    assert torch.equal(x[0], x[1]) and torch.equal(x[0], torch.from_numpy(g / np.float32(255.0)).float())
    rgb = np.random.default_rng(2).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    y = image_tensor(rgb, Preprocessing((1, 4, 5)))
    assert np.array_equal(y[0].numpy() * 255, np.asarray(Image.fromarray(rgb).convert("L"), np.float32))


def test_other_sizes_are_refused_unless_resize_is_asked_and_then_match_pil():
    a = np.random.default_rng(3).integers(0, 256, (10, 12), dtype=np.uint8)
    with pytest.raises(InputError, match="12x10 but the model takes 5x4"):
        image_tensor(a, Preprocessing((1, 4, 5)))
    x = image_tensor(a, Preprocessing((1, 4, 5), resize="squash", interpolation="bilinear-antialias"))
    want = np.asarray(Image.fromarray(a).resize((5, 4), Image.Resampling.BILINEAR), np.float32) / 255
    assert np.allclose(x[0].numpy(), want, atol=1e-7)


def test_size_limit_is_checked_from_the_header_before_decoding():
    blob = png(np.zeros((3000, 10), np.uint8))
    with pytest.raises(InputError, match="10x3000") as err:
        decode(blob[: blob.index(b"IDAT") + 4], Preprocessing((1, 4, 5), max_side=2048))  # no pixel data at all
    assert err.value.status == 413


def test_float_arrays_are_checked_then_normalised():
    a = np.random.default_rng(4).random((3, 4, 5)).astype(np.float32)
    assert np.allclose(
        array_tensor(a.tolist(), CIFAR).numpy(),
        (a - np.array(CIFAR.mean, np.float32)[:, None, None]) / np.array(CIFAR.std, np.float32)[:, None, None],
    )
    for bad, match in [(a[:2], "shape"), (np.where(a > 0.5, np.nan, a), "NaN"), (a + 1, r"\[0, 1\]"), ("x", "numbers")]:
        with pytest.raises(InputError, match=match):
            array_tensor(bad.tolist() if isinstance(bad, np.ndarray) else bad, CIFAR)


def test_input_spec_uses_the_models_normalisation_and_refuses_a_detector_fitted_with_other_statistics(digits_model):
    digits_model = copy.deepcopy(digits_model)
    digits_model.input_shape, digits_model.input_mean, digits_model.input_std = (1, 8, 8), (0.1,), (0.3,)
    spec = preprocessing_for(Detector(digits_model, input_std=(0.3,)))
    assert spec.input_shape == (1, 8, 8) and spec.mean == pytest.approx((0.1,)) and spec.std == pytest.approx((0.3,))
    with pytest.raises(ValueError, match=r"fitted with input_mean \(0.5,\) but the model takes \(0.1,\)"):
        preprocessing_for(Detector(digits_model, input_std=(0.3,), input_mean=(0.5,)))
    del digits_model.input_mean, digits_model.input_std  # a model without statistics: the detector's serve
    spec = preprocessing_for(Detector(digits_model, input_std=(0.3,), input_mean=(0.5,)))
    assert spec.mean == pytest.approx((0.5,)) and spec.std == pytest.approx((0.3,))


def test_fixed_batches_make_results_independent_of_batch_company(digits_model, digits):
    det = Detector(digits_model, temperatures=(1000.0,), epsilons=(0.002,), batch_size=16)
    det.fit(digits["x_held"][:200], torch.rand(100, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    x = digits["x_held"][200:237]
    runtime = EagerRuntime(det, Preprocessing((1, 8, 8)))  # the digits model takes raw pixels: no normalisation
    alone = [fixed_batch_outputs(runtime, x[i : i + 1])["score"] for i in range(len(x))]
    together = fixed_batch_outputs(runtime, x)["score"]
    assert torch.equal(torch.cat(alone), together)


def _saved(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("resize", ["none", "squash"])
def test_sixteen_bit_and_float_images_equal_their_eight_bit_copy(resize):
    a = np.random.default_rng(5).integers(0, 256, (6, 7), dtype=np.uint8)
    spec = Preprocessing(
        (3, 6, 7) if resize == "none" else (3, 4, 5), mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.25), resize=resize
    )
    eight = image_tensor(decode(png(a), spec), spec)
    sixteen = _saved(Image.fromarray(a.astype(np.uint16) * 257), "PNG")
    as_float = _saved(Image.fromarray(a.astype(np.float32) / np.float32(255.0)), "TIFF")
    for blob, mode in ((sixteen, "I;16"), (as_float, "F")):
        im = decode(blob, spec)
        assert im.mode == mode
        x = image_tensor(im, spec)
        if resize == "none":  # exactly the same input: v * 257 / 65535 == v / 255
            assert torch.equal(x, eight)
        else:  # resized in float rather than in uint8: within one 8-bit step
            assert (x - eight).abs().max().item() <= 1 / 255 / min(spec.std) + 1e-6
    white = image_tensor(decode(_saved(Image.fromarray(np.full((6, 7), 65535, np.uint16)), "PNG"), spec), spec)
    assert torch.allclose(white, image_tensor(np.full((6, 7), 255, np.uint8), spec))


def test_float_images_out_of_range_and_32_bit_integers_are_refused():
    spec = Preprocessing((1, 4, 5))
    with pytest.raises(InputError, match=r"lie in \[0, 1\]") as e:
        image_tensor(decode(_saved(Image.fromarray(np.full((4, 5), 2.0, np.float32)), "TIFF"), spec), spec)
    assert e.value.status == 422
    with pytest.raises(InputError, match="32-bit integer") as e:
        image_tensor(Image.fromarray(np.zeros((4, 5), np.int32)), spec)
    assert e.value.status == 415


def test_pixel_bombs_are_413_whichever_limit_trips(monkeypatch):
    from serving_support import png_header

    spec = Preprocessing((1, 28, 28), max_side=100_000)
    for side in (10_000, 20_000):  # over PIL's pixel limit (89 M: a warning) and twice over it (an error)
        with pytest.raises(InputError, match="too many pixels") as e:
            decode(png_header(side, side), spec, "bomb")
        assert e.value.status == 413
    with pytest.raises(InputError, match="larger than the limit of 4096") as e:
        decode(png_header(5000, 10), Preprocessing((1, 28, 28)), "wide")
    assert e.value.status == 413


def test_wrong_size_is_refused_from_the_header_before_decoding(monkeypatch):
    from serving_support import png_header

    def no_decoding(self):
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_decoding)
    with pytest.raises(InputError, match="image is 4096x4096 but the model takes 28x28") as e:
        decode(png_header(4096, 4096), Preprocessing((1, 28, 28)), "big")
    assert e.value.status == 422


def test_an_image_resizing_to_more_pixels_than_the_largest_image_read_is_413_before_resampling(monkeypatch):
    """resize-shorter-then-center-crop keeps the aspect ratio: a 100x2 picture resized to a shorter
    side of 28 would become 1400x28, more pixels than the 100x100 largest image --max-side 100 reads."""
    spec = Preprocessing(
        (1, 28, 28), resize="resize-shorter-then-center-crop", resize_size=28, max_side=100, min_side=1
    )
    assert image_tensor(np.zeros((50, 100), np.uint8), spec).shape == (1, 28, 28)  # 56x28: fine

    def no_resampling(*args, **kwargs):
        raise AssertionError("resampled")

    monkeypatch.setattr("odin_ood.preprocess.images.resample", no_resampling)
    with pytest.raises(
        InputError,
        match=r"thin: image is 100x2, which resizes to 1400x28 before the crop: more than "
        r"the 10000 pixels",
    ) as e:
        image_tensor(np.zeros((2, 100), np.uint8), spec, "thin")
    assert e.value.status == 413
