"""How an image becomes a model's input, as a :class:`~odin_ood.preprocess.spec.Preprocessing` says:

    bytes --decode--> PIL image --convert(mode)--> resize --> centre crop to (H, W)
          --> float (C, H, W) in [0, 1] --> (x - mean) / std  (the normalised input the model takes)

``image_pixels``/``array_pixels`` stop at [0, 1] pixels, what a scoring runtime takes
(:mod:`odin_ood.runtimes`: the exported graph normalises inside); ``image_tensor``/``array_tensor``
go on to the model's input with :func:`normalise`. Resampling: :mod:`odin_ood.preprocess.resampling`.

Images of more than 8 bits are scaled by their mode's range, never clipped: 16-bit grey
(``I;16``) divides by 65535, so a 16-bit copy of an 8-bit picture (values v * 257) gives
exactly the same input; 32-bit float (``F``) must already lie in [0, 1]; 32-bit integer (``I``)
has no defined range and is refused (415).

Limits are checked before any pixel is decoded: PIL reads the width and height from the
header, so an oversized image (or a decompression bomb, whichever limit trips: ``max_side`` or
PIL's pixel limit) is refused with 413 without allocating it, and so is an image of the wrong
size when ``resize`` is ``none`` (422); an image that would be resized to more pixels than
``max_side`` squared (a thin picture under resize-shorter-then-center-crop) is refused (413)
before resampling. Every failure is an :class:`InputError` naming the image and the problem.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from odin_ood._utils.checks import named
from odin_ood.preprocess.resampling import resample
from odin_ood.preprocess.spec import Preprocessing, check_pixels


class InputError(ValueError):
    """An input image that cannot become a model input; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def decode(blob: bytes, spec: Preprocessing, label: str = "image") -> Image.Image:
    """Open encoded bytes (PNG, JPEG, ...) with PIL, refusing from the header an image over
    ``spec.max_side`` or PIL's pixel limit (413) or, when ``spec.resize`` is none, of another
    size than the model's (422); then decode the pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(blob))
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise InputError(f"{label}: too many pixels: {exc}", 413) from None
    except Exception as exc:  # PIL raises many types for data it does not recognise
        raise InputError(f"{label}: not an image in a format PIL can decode ({type(exc).__name__})") from None
    check_side(im.size, spec, label)
    if spec.resize == "none":
        _check_size(im.size, spec, label)
    try:
        im.load()
    except Exception as exc:
        raise InputError(f"{label}: cannot decode image ({type(exc).__name__}: {exc})") from None
    return im


def check_side(size: tuple[int, int], spec: Preprocessing, label: str) -> None:
    """Refuse (413) an image of ``size`` (width, height) over ``spec.max_side`` a side or PIL's
    pixel limit, before its pixels are read."""
    w, h = size
    if max(w, h) > spec.max_side:
        raise InputError(f"{label}: image is {w}x{h}, larger than the limit of {spec.max_side} pixels a side", 413)
    try:
        check_pixels(w * h, f"image {w}x{h}")
    except ValueError as exc:
        raise InputError(f"{label}: too many pixels: {exc}", 413) from None


def image_tensor(image: Image.Image | np.ndarray, spec: Preprocessing, label: str = "image") -> Tensor:
    """A decoded image (PIL, or uint8 (H, W) / (H, W, C)) as the model's input (C, H, W)."""
    return normalise(image_pixels(image, spec, label), spec)


def image_pixels(image: Image.Image | np.ndarray, spec: Preprocessing, label: str = "image") -> Tensor:
    """A decoded image as (C, H, W) float32 pixels in [0, 1] at the model's size: the input of a
    scoring runtime (:mod:`odin_ood.runtimes`), which normalises it as :func:`normalise` does."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise InputError(f"{label}: expected a uint8 (H, W[, C]) array, got {image.dtype} {image.shape}")
        image = Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image)
    c, h, w = spec.input_shape
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        return _wide_grey(image, spec, label).expand(c, h, w).clone()
    image = _sized(image.convert(spec.mode), spec, label)
    pixels = np.asarray(image, dtype=np.uint8).reshape(h, w, c)
    return torch.from_numpy(pixels.transpose(2, 0, 1).copy()).float().div_(255.0)


def _wide_grey(image: Image.Image, spec: Preprocessing, label: str) -> Tensor:
    """A 16-bit or float grey image as (1, H, W) floats in [0, 1], scaled by the mode's range."""
    if image.mode == "I":
        raise InputError(
            f"{label}: 32-bit integer images have no defined pixel range: "
            "save them as 8- or 16-bit, or as float in [0, 1]",
            415,
        )
    a = np.asarray(image, dtype=np.float32)
    if image.mode != "F":
        a = a / np.float32(65535.0)
    elif not np.isfinite(a).all() or a.min() < 0.0 or a.max() > 1.0:
        raise InputError(f"{label}: a float image's values must be finite and lie in [0, 1]")
    resized = _sized(Image.fromarray(a, "F"), spec, label)
    return torch.from_numpy(np.asarray(resized, dtype=np.float32).copy())[None]


def _sized(image: Image.Image, spec: Preprocessing, label: str) -> Image.Image:
    """``image`` at the model's size: resized and centre-cropped as ``spec`` says, or refused
    when its resize is none."""
    _, h, w = spec.input_shape
    if spec.resize == "none":
        _check_size(image.size, spec, label)
        return image
    check_min_side(image.size, spec, label)
    target = spec.resized_size(image.size)
    largest = min(spec.max_side**2, Image.MAX_IMAGE_PIXELS or spec.max_side**2)
    if target[0] * target[1] > largest:
        raise InputError(
            f"{label}: image is {image.size[0]}x{image.size[1]}, which resizes to {target[0]}x{target[1]} "
            f"before the crop: more than the {largest} pixels of the largest image read "
            f"({named('max_side', '--max-side')} squared, PIL's pixel limit)",
            413,
        )
    if target != image.size:
        image = resample(image, target, spec.interpolation)
    # resize_size >= the input size (checked at construction): the crop always fits
    if spec.resize == "resize-shorter-then-center-crop-floor":
        left, top = (target[0] - w) // 2, (target[1] - h) // 2
    else:
        left, top = round((target[0] - w) / 2.0), round((target[1] - h) / 2.0)
    return image if (left, top, target) == (0, 0, (w, h)) else image.crop((left, top, left + w, top + h))


# the default smallest side resized never exceeds this (a 16x16 picture, not a 1x1 one)
MIN_SIDE_CAP = 16


def check_min_side(size: tuple[int, int], spec: Preprocessing, label: str) -> None:
    """Refuse (422) an image to be resized whose width or height is below ``spec.min_side``
    (default: half the model's width or height, rounded up, but at most :data:`MIN_SIDE_CAP`
    pixels, so that the 32-pixel CIFAR and 64-pixel Tiny ImageNet pictures users bring to a
    224-pixel network still resize): upscaling a few pixels makes up an input the model never saw,
    which a softmax may well call in-distribution."""
    _, h, w = spec.input_shape
    low_w, low_h = (
        (spec.min_side,) * 2
        if spec.min_side is not None
        else (min(-(-w // 2), MIN_SIDE_CAP), min(-(-h // 2), MIN_SIDE_CAP))
    )
    if size[0] < low_w or size[1] < low_h:
        raise InputError(
            f"{label}: image is {size[0]}x{size[1]}, too small to resize to the model's {w}x{h} "
            f"(at least {low_w}x{low_h}; --min-side sets the smallest side accepted)"
        )


def _check_size(size: tuple[int, int], spec: Preprocessing, label: str) -> None:
    _, h, w = spec.input_shape
    if size != (w, h):
        raise InputError(
            f"{label}: image is {size[0]}x{size[1]} but the model takes {w}x{h} "
            "(resizing is off: the preprocessing's resize is none; fit with --resize squash or "
            "resize-shorter-then-center-crop to accept other sizes)"
        )


def array_tensor(values: Any, spec: Preprocessing, label: str = "array") -> Tensor:
    """A nested float array of shape (C, H, W) with pixel values in [0, 1] as the model's input."""
    return normalise(array_pixels(values, spec, label), spec)


def array_pixels(values: Any, spec: Preprocessing, label: str = "array") -> Tensor:
    """A nested float array of shape (C, H, W), checked to hold pixel values in [0, 1], as float32."""
    try:
        a = np.asarray(values, dtype=np.float32)
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise InputError(f"{label}: not a rectangular array of numbers ({exc})") from None
    if a.shape != tuple(spec.input_shape):
        raise InputError(
            f"{label}: array has shape {list(a.shape)}, the model takes {list(spec.input_shape)} (C, H, W)"
        )
    if not np.isfinite(a).all():
        raise InputError(f"{label}: array contains NaN or infinite values")
    if a.min() < 0.0 or a.max() > 1.0:
        raise InputError(f"{label}: pixel values must lie in [0, 1], got [{a.min():g}, {a.max():g}]")
    return torch.from_numpy(a)


def normalise(x: Tensor, spec: Preprocessing) -> Tensor:
    """(x - mean) / std per channel, x (C, H, W) or (N, C, H, W); a missing mean or std is skipped."""
    if spec.mean is not None:
        x = x - torch.tensor(spec.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    if spec.std is not None:
        x = x / torch.tensor(spec.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return x
