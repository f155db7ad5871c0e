"""From an image (encoded bytes, a uint8 array or a float array) to the model's input tensor.

One path shared by ``odin-ood score`` and ``odin-ood serve``:

    bytes --decode--> PIL image --convert/resize--> uint8 (H, W, C) --> float (C, H, W) in [0, 1]
          --> (x - input_mean) / input_std  (the normalised input the model takes)

``image_pixels``/``array_pixels`` stop at [0, 1] pixels, what a scoring runtime takes
(:mod:`odin_ood.runtimes`: the exported graph normalises inside); ``image_tensor``/``array_tensor``
go on to the model's input with :func:`normalise`.

Images of more than 8 bits are scaled by their mode's range, never clipped: 16-bit grey
(``I;16``) divides by 65535, so a 16-bit copy of an 8-bit picture (values v * 257) gives
exactly the same input; 32-bit float (``F``) must already lie in [0, 1]; 32-bit integer (``I``)
has no defined range and is refused (415).

Limits are checked before any pixel is decoded: PIL reads the width and height from the
header, so an oversized image (or a decompression bomb, whichever limit trips: ``max_side`` or
PIL's pixel limit) is refused with 413 without allocating it, and so is an image of the wrong
size when resizing is off (422). Every failure is an :class:`InputError` naming the image and
the problem.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

RESIZE_METHODS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "lanczos": Image.Resampling.LANCZOS,
}


class InputError(ValueError):
    """An input image that cannot become a model input; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class InputSpec:
    """What the model takes: ``shape`` (C, H, W), per-channel ``mean``/``std`` (None = raw [0, 1]
    pixels), ``resize`` (a key of :data:`RESIZE_METHODS`, or None to require the exact size) and
    ``max_side`` (the largest width or height accepted before decoding)."""

    shape: tuple[int, int, int]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize: str | None = None
    max_side: int = 4096

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or self.shape[0] not in (1, 3) or min(self.shape) < 1:
            raise ValueError(f"shape must be (C, H, W) with C in (1, 3), got {self.shape}")
        if self.resize is not None and self.resize not in RESIZE_METHODS:
            raise ValueError(f"resize must be one of {sorted(RESIZE_METHODS)} or None, got {self.resize!r}")
        for name in ("mean", "std"):
            v = getattr(self, name)
            if v is not None and len(v) not in (1, self.shape[0]):
                raise ValueError(f"{name} must have 1 or {self.shape[0]} values, got {v}")
        if self.std is not None and min(self.std) <= 0:
            raise ValueError(f"std must be > 0, got {self.std}")


def decode(blob: bytes, spec: InputSpec, label: str = "image") -> Image.Image:
    """Open encoded bytes (PNG, JPEG, ...) with PIL, refusing from the header an image over
    ``spec.max_side`` or PIL's pixel limit (413) or, when ``spec.resize`` is None, of another
    size than the model's (422); then decode the pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(blob))
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise InputError(f"{label}: too many pixels: {exc}", 413) from None
    except Exception as exc:  # PIL raises many types for data it does not recognise
        raise InputError(f"{label}: not an image in a format PIL can decode ({type(exc).__name__})") from None
    w, h = im.size
    if max(w, h) > spec.max_side:
        raise InputError(f"{label}: image is {w}x{h}, larger than the limit of {spec.max_side} pixels a side", 413)
    if spec.resize is None:
        _check_size(im.size, spec, label)
    try:
        im.load()
    except Exception as exc:
        raise InputError(f"{label}: cannot decode image ({type(exc).__name__}: {exc})") from None
    return im


def image_tensor(image: Image.Image | np.ndarray, spec: InputSpec, label: str = "image") -> Tensor:
    """A decoded image (PIL, or uint8 (H, W) / (H, W, C)) as the model's input (C, H, W)."""
    return normalise(image_pixels(image, spec, label), spec)


def image_pixels(image: Image.Image | np.ndarray, spec: InputSpec, label: str = "image") -> Tensor:
    """A decoded image as (C, H, W) float32 pixels in [0, 1] at the model's size: the input of a
    scoring runtime (:mod:`odin_ood.runtimes`), which normalises it as :func:`normalise` does."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise InputError(f"{label}: expected a uint8 (H, W[, C]) array, got {image.dtype} {image.shape}")
        image = Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image)
    c, h, w = spec.shape
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        return _wide_grey(image, spec, label).expand(c, h, w).clone()
    image = image.convert("L" if c == 1 else "RGB")
    image = _sized(image, spec, label)
    pixels = np.asarray(image, dtype=np.uint8).reshape(h, w, c)
    return torch.from_numpy(pixels.transpose(2, 0, 1).copy()).float().div_(255.0)


def _wide_grey(image: Image.Image, spec: InputSpec, label: str) -> Tensor:
    """A 16-bit or float grey image as (1, H, W) floats in [0, 1], scaled by the mode's range."""
    if image.mode == "I":
        raise InputError(f"{label}: 32-bit integer images have no defined pixel range: "
                         "save them as 8- or 16-bit, or as float in [0, 1]", 415)
    a = np.asarray(image, dtype=np.float32)
    if image.mode != "F":
        a = a / np.float32(65535.0)
    elif not np.isfinite(a).all() or a.min() < 0.0 or a.max() > 1.0:
        raise InputError(f"{label}: a float image's values must be finite and lie in [0, 1]")
    resized = _sized(Image.fromarray(a, "F"), spec, label)
    return torch.from_numpy(np.asarray(resized, dtype=np.float32).copy())[None]


def _sized(image: Image.Image, spec: InputSpec, label: str) -> Image.Image:
    """``image`` at the model's size: resized with ``spec.resize``, or refused when that is None."""
    _, h, w = spec.shape
    if image.size == (w, h):
        return image
    if spec.resize is None:
        _check_size(image.size, spec, label)
    return image.resize((w, h), RESIZE_METHODS[spec.resize])


def _check_size(size: tuple[int, int], spec: InputSpec, label: str) -> None:
    _, h, w = spec.shape
    if size != (w, h):
        raise InputError(
            f"{label}: image is {size[0]}x{size[1]} but the model takes {w}x{h} "
            "(resizing is off: start with --resize METHOD to allow it)"
        )


def array_tensor(values: Any, spec: InputSpec, label: str = "array") -> Tensor:
    """A nested float array of shape (C, H, W) with pixel values in [0, 1] as the model's input."""
    return normalise(array_pixels(values, spec, label), spec)


def array_pixels(values: Any, spec: InputSpec, label: str = "array") -> Tensor:
    """A nested float array of shape (C, H, W), checked to hold pixel values in [0, 1], as float32."""
    try:
        a = np.asarray(values, dtype=np.float32)
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise InputError(f"{label}: not a rectangular array of numbers ({exc})") from None
    if a.shape != tuple(spec.shape):
        raise InputError(f"{label}: array has shape {list(a.shape)}, the model takes {list(spec.shape)} (C, H, W)")
    if not np.isfinite(a).all():
        raise InputError(f"{label}: array contains NaN or infinite values")
    if a.min() < 0.0 or a.max() > 1.0:
        raise InputError(f"{label}: pixel values must lie in [0, 1], got [{a.min():g}, {a.max():g}]")
    return torch.from_numpy(a)


def normalise(x: Tensor, spec: InputSpec) -> Tensor:
    """(x - mean) / std per channel, x (C, H, W) or a batch (N, C, H, W); a missing mean or std is
    skipped. Elementwise, so a batch normalises bit for bit as its images one by one."""
    if spec.mean is not None:
        x = x - torch.tensor(spec.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    if spec.std is not None:
        x = x / torch.tensor(spec.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return x
