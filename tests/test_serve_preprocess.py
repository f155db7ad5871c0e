"""The one preprocessing path of score and serve, against independent numpy/PIL computations."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
from PIL import Image

from odin_ood import Detector
from odin_ood.serving.engine import fixed_batch_outputs, input_spec
from odin_ood.serving.preprocess import InputError, InputSpec, array_tensor, decode, image_tensor

CIFAR = InputSpec((3, 4, 5), mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010))


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
    x = image_tensor(g, InputSpec((3, 4, 5)))
    assert torch.equal(x[0], x[1]) and torch.equal(x[0], torch.from_numpy(g / np.float32(255.0)).float())
    rgb = np.random.default_rng(2).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    y = image_tensor(rgb, InputSpec((1, 4, 5)))
    assert np.array_equal(y[0].numpy() * 255, np.asarray(Image.fromarray(rgb).convert("L"), np.float32))


def test_other_sizes_are_refused_unless_resize_is_asked_and_then_match_pil():
    a = np.random.default_rng(3).integers(0, 256, (10, 12), dtype=np.uint8)
    with pytest.raises(InputError, match="12x10 but the model takes 5x4"):
        image_tensor(a, InputSpec((1, 4, 5)))
    x = image_tensor(a, InputSpec((1, 4, 5), resize="bilinear"))
    want = np.asarray(Image.fromarray(a).resize((5, 4), Image.Resampling.BILINEAR), np.float32) / 255
    assert np.allclose(x[0].numpy(), want, atol=1e-7)


def test_size_limit_is_checked_from_the_header_before_decoding():
    blob = png(np.zeros((3000, 10), np.uint8))
    with pytest.raises(InputError, match="10x3000") as err:
        decode(blob[:blob.index(b"IDAT") + 4], InputSpec((1, 4, 5), max_side=2048))  # no pixel data at all
    assert err.value.status == 413


def test_float_arrays_are_checked_then_normalised():
    a = np.random.default_rng(4).random((3, 4, 5)).astype(np.float32)
    assert np.allclose(array_tensor(a.tolist(), CIFAR).numpy(),
                       (a - np.array(CIFAR.mean, np.float32)[:, None, None]) / np.array(CIFAR.std, np.float32)[:, None, None])
    for bad, match in [(a[:2], "shape"), (np.where(a > 0.5, np.nan, a), "NaN"), (a + 1, r"\[0, 1\]"), ("x", "numbers")]:
        with pytest.raises(InputError, match=match):
            array_tensor(bad.tolist() if isinstance(bad, np.ndarray) else bad, CIFAR)


def test_input_spec_takes_the_detectors_normalisation_over_the_models(digits_model):
    digits_model = copy.deepcopy(digits_model)
    digits_model.input_shape, digits_model.input_mean, digits_model.input_std = (1, 8, 8), (0.0,), (1.0,)
    det = Detector(digits_model, input_std=(0.3,), input_mean=(0.1,))
    spec = input_spec(det)
    assert spec.shape == (1, 8, 8) and spec.mean == pytest.approx((0.1,)) and spec.std == pytest.approx((0.3,))


def test_fixed_batches_make_results_independent_of_batch_company(digits_model, digits):
    det = Detector(digits_model, temperatures=(1000.0,), epsilons=(0.002,), batch_size=16)
    det.fit(digits["x_held"][:200], torch.rand(100, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    x = digits["x_held"][200:237]
    alone = [fixed_batch_outputs(det, x[i:i + 1])["score"] for i in range(len(x))]
    together = fixed_batch_outputs(det, x)["score"]
    assert torch.equal(torch.cat(alone), together)
