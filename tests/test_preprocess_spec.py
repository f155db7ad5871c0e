"""The one Preprocessing type: its JSON form, its validation, and its resize + centre crop against
an independent PIL computation (torchvision's and timm's own transforms: test_preprocess_libraries.py)."""

from __future__ import annotations

import io
import json
import math
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from odin_ood.data.build import resize_images
from odin_ood.preprocess import InputError, Preprocessing, check_min_side, decode, image_tensor
from odin_ood.preprocess.resampling import INTERPOLATIONS


def test_to_dict_from_dict_round_trip_through_json_for_every_resize():
    for p in (
        Preprocessing((1, 28, 28), mean=(0.1307,), std=(0.3081,)),
        Preprocessing(
            (3, 224, 224),
            "resize-shorter-then-center-crop",
            "bicubic",
            235,
            (0.485, 0.456, 0.406),
            (0.229, 0.224, 0.225),
        ),
        Preprocessing((3, 32, 40), "squash", "bilinear"),
    ):
        d = json.loads(json.dumps(p.to_dict()))
        assert Preprocessing.from_dict(d) == p
        assert d["mode"] == ("L" if p.input_shape[0] == 1 else "RGB") and set(d) == {
            "input_shape",
            "mode",
            "resize",
            "resize_size",
            "interpolation",
            "mean",
            "std",
        }


def test_defaults_are_resolved_so_the_file_says_everything():
    assert Preprocessing((3, 32, 40), "squash").resize_size == (32, 40)
    assert Preprocessing((3, 224, 224), "resize-shorter-then-center-crop").resize_size == math.floor(224 / 0.875) == 256
    assert Preprocessing((3, 224, 224)).resize_size is None and Preprocessing((1, 8, 8), std=0.5).std == (0.5,)


@pytest.mark.parametrize(
    "d, message",
    [
        ({"input_shape": [2, 8, 8]}, "C in \\(1, 3\\)"),
        ({"input_shape": [3, 8, 8], "resize": "bilinear"}, "resize must be one of none, squash"),
        ({"input_shape": [3, 8, 8], "resize": "squash", "interpolation": "cubic"}, "interpolation must be one of"),
        ({"input_shape": [3, 8, 8], "resize_size": 9}, "needs resize squash"),
        ({"input_shape": [3, 8, 8], "resize": "squash", "resize_size": [4, 8]}, "at least the input's"),
        ({"input_shape": [3, 8, 8], "resize": "resize-shorter-then-center-crop", "resize_size": [9, 9]}, "an integer"),
        ({"input_shape": [3, 8, 8], "std": [0.2, 0.0, 0.2]}, "std must be > 0"),
        ({"input_shape": [3, 8, 8], "mean": [0.5, 0.5]}, "1 or 3 finite numbers"),
        ({"input_shape": [3, 8, 8], "mean": 0.5}, "mean must be a list"),
        ({"input_shape": [3, 8, 8], "mode": "L"}, "mode 'L' does not match 3 channel"),
        ({"input_shape": [3, 8, 8], "crop": "center"}, "unknown field\\(s\\) 'crop'"),
        ({"resize": "none"}, "no input_shape"),
        ([3, 8, 8], "must be an object"),
    ],
)
def test_bad_preprocessing_is_one_error_naming_the_field(d, message):
    with pytest.raises(ValueError, match=message) as err:
        Preprocessing.from_dict(d, source="detector.json preprocessing")
    assert str(err.value).startswith("detector.json preprocessing") and "\n" not in str(err.value)


def _jpeg(shared_data, size: tuple[int, int]) -> bytes:
    """Tiny ImageNet's first test image (a real JPEG, 64x64) cropped to ``size`` and re-encoded."""
    with zipfile.ZipFile(shared_data / "tiny-imagenet" / "tiny-imagenet-200-test.zip") as z:
        image = Image.open(io.BytesIO(z.read("tiny-imagenet-200/test/images/test_0.JPEG"))).convert("RGB")
    buf = io.BytesIO()
    image.crop((0, 0, *size)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.mark.parametrize("size", [(61, 41), (41, 61), (64, 64)])
def test_resize_shorter_then_center_crop_is_pil_resize_of_the_short_side_and_a_rounded_centre_crop(shared_data, size):
    blob = _jpeg(shared_data, size)
    p = Preprocessing((3, 24, 24), "resize-shorter-then-center-crop", "bicubic", 27)
    w, h = size
    new = (27, int(27 * h / w)) if w <= h else (int(27 * w / h), 27)
    big = Image.open(io.BytesIO(blob)).convert("RGB").resize(new, Image.Resampling.BICUBIC)
    left, top = round((new[0] - 24) / 2.0), round((new[1] - 24) / 2.0)
    want = np.asarray(big, np.float32)[top : top + 24, left : left + 24].transpose(2, 0, 1) / np.float32(255)
    assert torch.equal(image_tensor(decode(blob, p), p), torch.from_numpy(want))


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_squash_resizes_the_whole_image_with_the_data_sets_filter_of_the_same_name(interpolation):
    a = np.random.default_rng(1).integers(0, 256, (30, 44), dtype=np.uint8)
    p = Preprocessing((1, 12, 16), "squash", interpolation)
    x = image_tensor(a, p)[0].numpy() * 255
    assert np.allclose(x, resize_images(a[None, ..., None], (12, 16), interpolation)[0, ..., 0], atol=1e-4)


def test_bilinear_is_torch_without_antialiasing_and_bilinear_antialias_is_pil():
    a = np.random.default_rng(2).integers(0, 256, (32, 32), dtype=np.uint8)
    want = np.rint(a.reshape(16, 2, 16, 2).astype(np.float64).mean(axis=(1, 3)))  # factor 2: the 2x2 mean
    assert np.array_equal(image_tensor(a, Preprocessing((1, 16, 16), "squash", "bilinear"))[0].numpy() * 255, want)
    pil = np.asarray(Image.fromarray(a).resize((16, 16), Image.Resampling.BILINEAR), np.float32)
    got = image_tensor(a, Preprocessing((1, 16, 16), "squash", "bilinear-antialias"))[0].numpy() * 255
    assert np.allclose(got, pil, atol=1e-4) and not np.allclose(pil, want)


def test_for_input_shape_scales_the_resize_size_like_timms_crop_pct():
    p = Preprocessing((3, 224, 224), "resize-shorter-then-center-crop", "bicubic", 256)
    assert p.for_input_shape((3, 256, 256)).resize_size == math.floor(256 / 0.875) == 292
    assert Preprocessing((3, 8, 8), "squash").for_input_shape((3, 16, 12)).resize_size == (16, 12)


@pytest.mark.parametrize(
    "shape, smallest", [((1, 28, 28), 14), ((3, 32, 32), 16), ((3, 224, 224), 16), ((3, 384, 200), 16)]
)
def test_default_min_side_is_half_the_model_side_capped_at_16(shape, smallest):
    # a 1x1 picture is never upscaled into an input, but CIFAR/Tiny ImageNet pictures reach a 224-px network
    spec = Preprocessing(input_shape=shape, resize="squash", interpolation="bilinear")
    check_min_side((smallest, smallest), spec, "ok")  # accepted
    for size in ((smallest - 1, smallest), (smallest, smallest - 1), (1, 1)):
        with pytest.raises(InputError, match=f"at least {smallest}x{smallest}"):
            check_min_side(size, spec, "small")
    check_min_side((3, 3), Preprocessing(input_shape=shape, resize="squash", min_side=3), "flag")
