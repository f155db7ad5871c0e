"""How an image becomes a model's input: one :class:`Preprocessing`, applied by every command.

A :class:`Preprocessing` is a frozen, JSON-serialisable description (like timm's resolved data
config or torchvision's weights transforms): the input size (C, H, W), the channel conversion
(``mode``: "L" for C = 1, "RGB" for C = 3), how an image of another size is brought to it
(``resize``, ``resize_size``, ``interpolation``, then a centre crop to H x W) and the per-channel
``mean``/``std``. It is built from whatever knows it (the zoo, timm's data config, torchvision's
weights enum: :mod:`odin_ood.models.library`), saved in the detector file and applied by
``fit``, ``score``, ``serve`` and the export alike:

    bytes --decode--> PIL image --convert(mode)--> resize --> centre crop to (H, W)
          --> float (C, H, W) in [0, 1] --> (x - mean) / std  (the normalised input the model takes)

``image_pixels``/``array_pixels`` stop at [0, 1] pixels, what a scoring runtime takes
(:mod:`odin_ood.runtimes`: the exported graph normalises inside); ``image_tensor``/``array_tensor``
go on to the model's input with :func:`normalise`.

``resize`` (:data:`RESIZES`): ``none`` refuses images of another size (the zoo's native size and
the paper's); ``squash`` resizes the whole image to ``resize_size`` (default the input size),
aspect ratio not kept, then centre-crops; ``resize-shorter-then-center-crop`` resizes the
shorter side to ``resize_size`` keeping the aspect ratio (torchvision's rounding:
``long = int(resize_size * long / short)``) and centre-crops (torchvision's
``top = int(round((h - H) / 2))``), which is torchvision's and timm's evaluation transform;
``resize-shorter-then-center-crop-floor`` is the same with ``top = (h - H) // 2``, as the
image processors of Hugging Face transformers crop (:mod:`odin_ood.models.huggingface`).
Interpolation names are :data:`odin_ood.resampling.INTERPOLATIONS`, the same everywhere.

Images of more than 8 bits are scaled by their mode's range, never clipped: 16-bit grey
(``I;16``) divides by 65535, so a 16-bit copy of an 8-bit picture (values v * 257) gives
exactly the same input; 32-bit float (``F``) must already lie in [0, 1]; 32-bit integer (``I``)
has no defined range and is refused (415).

Limits are checked before any pixel is decoded: PIL reads the width and height from the
header, so an oversized image (or a decompression bomb, whichever limit trips: ``max_side`` or
PIL's pixel limit) is refused with 413 without allocating it, and so is an image of the wrong
size when ``resize`` is ``none`` (422). ``max_side`` is a reading limit, not part of the model's
preprocessing: it is neither saved nor compared. Every failure is an :class:`InputError` naming
the image and the problem.

A detector file states sizes too: an input or resize size over PIL's pixel limit is refused at
construction, one over ``max_side`` a side by :meth:`Preprocessing.check_max_side`, and an image
that would be resized to more pixels than ``max_side`` squared (a thin picture under
resize-shorter-then-center-crop) is refused (413) before resampling.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from odin_ood._checks import named, short as _short
from odin_ood.resampling import INTERPOLATIONS, resample

RESIZES = {
    "none": "refuse images of another size than the input size",
    "squash": "resize the whole image to resize_size (aspect ratio not kept), then centre-crop to the input size",
    "resize-shorter-then-center-crop": "resize the shorter side to resize_size keeping the aspect ratio, then "
                                       "centre-crop to the input size (torchvision's and timm's evaluation transform)",
    "resize-shorter-then-center-crop-floor": "the same, but the crop's offsets are rounded down "
                                             "(the centre crop of Hugging Face transformers' image processors)",
}
CROP_FRACTION = 0.875  # the usual ImageNet evaluation crop, 224 of 256 (timm's DEFAULT_CROP_PCT)
MAX_SIZE = 65_536
_KEYS = ("input_shape", "mode", "resize", "resize_size", "interpolation", "mean", "std")


class InputError(ValueError):
    """An input image that cannot become a model input; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input (see the module docstring): ``input_shape``
    (C, H, W) with C in (1, 3), ``resize`` (a key of :data:`RESIZES`), ``interpolation`` (a key
    of :data:`~odin_ood.resampling.INTERPOLATIONS`), ``resize_size`` (``squash``: (h, w), default
    the input's; ``resize-shorter-then-center-crop``: the shorter side, default
    ``floor(max(H, W) / 0.875)``; ``none``: None), per-channel ``mean``/``std`` of [0, 1] pixels
    (None = not normalised) and ``max_side``, the largest width or height read (a limit, not saved);
    ``min_side``, when resizing, the smallest width and height resized (None: half the input's,
    rounded up, at most 16, :func:`check_min_side`; a limit, not saved), so that a 1x1 picture is not
    upscaled into an input."""

    input_shape: tuple[int, int, int]
    resize: str = "none"
    interpolation: str = "bilinear-antialias"
    resize_size: int | tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    max_side: int = field(default=4096, compare=False)
    min_side: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        shape = tuple(self.input_shape)
        if (len(shape) != 3 or not all(_is_int(s) and 1 <= s <= MAX_SIZE for s in shape) or shape[0] not in (1, 3)):
            raise ValueError(f"input_shape must be (C, H, W) with C in (1, 3) and sizes in [1, {MAX_SIZE}], "
                             f"got {_short(self.input_shape)}")
        object.__setattr__(self, "input_shape", tuple(int(s) for s in shape))
        _check_pixels(shape[1] * shape[2], f"input_shape {_sizes(shape)}")
        if self.resize not in RESIZES:
            raise ValueError(f"resize must be one of {', '.join(RESIZES)}, got {_short(self.resize)}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {_short(self.interpolation)}")
        object.__setattr__(self, "resize_size", self._checked_resize_size())
        for name in ("mean", "std"):
            object.__setattr__(self, name, _per_channel(getattr(self, name), name, shape[0], positive=name == "std"))
        if not _is_int(self.max_side) or self.max_side < 1:
            raise ValueError(f"max_side must be an integer >= 1, got {_short(self.max_side)}")
        if self.min_side is not None and (not _is_int(self.min_side) or self.min_side < 1):
            raise ValueError(f"min_side must be an integer >= 1, got {_short(self.min_side)}")

    def _checked_resize_size(self) -> int | tuple[int, int] | None:
        _, h, w = self.input_shape
        size = self.resize_size
        if self.resize == "none":
            if size is not None:
                raise ValueError(f"resize_size {_short(size)} needs resize squash or resize-shorter-then-center-crop, "
                                 "not none")
            return None
        if self.resize == "squash":
            size = (h, w) if size is None else ((size, size) if _is_int(size) else tuple(size))
            if len(size) != 2 or not all(_is_int(s) and 1 <= s <= MAX_SIZE for s in size) or size[0] < h or size[1] < w:
                raise ValueError(f"resize_size for squash must be (h, w) of at least the input's ({h}, {w}), "
                                 f"got {_short(self.resize_size)}")
            _check_pixels(size[0] * size[1], f"resize_size {_sizes(size)}")
            return int(size[0]), int(size[1])
        size = math.floor(max(h, w) / CROP_FRACTION) if size is None else size
        if not _is_int(size) or not max(h, w) <= size <= MAX_SIZE:
            raise ValueError(f"resize_size for {self.resize} must be an integer in "
                             f"[{max(h, w)}, {MAX_SIZE}] (the shorter side), got {_short(self.resize_size)}")
        _check_pixels(size * size, f"resize_size {size} (the shorter side)")
        return int(size)

    def check_max_side(self) -> None:
        """Refuse (``ValueError``) an input or resize height or width over ``max_side``: no image
        read is larger, so none should be made larger (a detector file states these sizes)."""
        size = self.resize_size
        stated = [("input_shape", self.input_shape, max(self.input_shape[1:]))]
        if size is not None:
            stated.append(("resize_size", size, max(size) if isinstance(size, tuple) else size))
        for what, value, side in stated:
            if side > self.max_side:
                shown = _sizes(value) if isinstance(value, tuple) else value
                raise ValueError(f"{what} {shown} is over the limit of {self.max_side} pixels a side "
                                 f"({named('max_side', '--max-side')})")

    @property
    def mode(self) -> str:
        """The PIL mode images are converted to: "L" (grey) for one channel, "RGB" for three."""
        return "L" if self.input_shape[0] == 1 else "RGB"

    def for_input_shape(self, input_shape: tuple[int, int, int]) -> "Preprocessing":
        """The same recipe for another input size: ``resize_size`` scales with the height
        (``floor(resize_size * H' / H)``, as timm's ``size / crop_pct``)."""
        shape = tuple(int(s) for s in input_shape)
        if shape == self.input_shape:
            return self
        size = self.resize_size
        if self.resize == "squash":
            size = (math.floor(size[0] * shape[1] / self.input_shape[1]), math.floor(size[1] * shape[2] / self.input_shape[2]))
        elif self.resize != "none":
            size = max(math.floor(size * shape[1] / self.input_shape[1]), shape[1], shape[2])
        return Preprocessing(shape, self.resize, self.interpolation, size, self.mean, self.std, self.max_side,
                             self.min_side)

    def resized_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) an image of ``size`` (width, height) is resized to before the crop."""
        if self.resize == "squash":
            return self.resize_size[1], self.resize_size[0]
        w, h = size
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = self.resize_size, int(self.resize_size * long / short)
        return (new_short, new_long) if w <= h else (new_long, new_short)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form saved in ``detector.json`` (``max_side`` is not part of it)."""
        size = self.resize_size
        return {"input_shape": list(self.input_shape), "mode": self.mode, "resize": self.resize,
                "resize_size": list(size) if isinstance(size, tuple) else size, "interpolation": self.interpolation,
                "mean": None if self.mean is None else list(self.mean),
                "std": None if self.std is None else list(self.std)}

    @classmethod
    def from_dict(cls, d: Any, source: str = "preprocessing") -> "Preprocessing":
        """The :class:`Preprocessing` written by :meth:`to_dict`; anything else is a ``ValueError``
        naming ``source`` and the field."""
        if not isinstance(d, dict):
            raise ValueError(f"{source} must be an object with {', '.join(_KEYS)}, got {_short(d)}")
        unknown = sorted(set(d) - set(_KEYS))
        if unknown:
            raise ValueError(f"{source} has unknown field(s) {', '.join(map(repr, unknown))}")
        if "input_shape" not in d:
            raise ValueError(f"{source} has no input_shape")
        given = {k: d[k] for k in ("input_shape", "resize", "interpolation", "resize_size", "mean", "std") if k in d}
        for name in ("input_shape", "mean", "std"):
            if given.get(name) is not None and not isinstance(given[name], list):
                raise ValueError(f"{source}: {name} must be a list, got {_short(given[name])}")
        if isinstance(given.get("resize_size"), list):
            given["resize_size"] = tuple(given["resize_size"])
        try:
            p = cls(**given)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from None
        if "mode" in d and d["mode"] != p.mode:
            raise ValueError(f"{source}: mode {_short(d['mode'])} does not match {p.input_shape[0]} channel(s) "
                             f"(expected {p.mode!r})")
        return p

    def differences(self, other: "Preprocessing") -> list[tuple[str, Any, Any]]:
        """(field, this value, other value) for each saved field where ``other`` differs (means
        and stds compared to 1e-6)."""
        out = []
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.compare and not (close_values(a, b) if f.name in ("mean", "std") else a == b):
                out.append((f.name, a, b))
        return out


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
        _check_pixels(w * h, f"image {w}x{h}")
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
        raise InputError(f"{label}: 32-bit integer images have no defined pixel range: "
                         "save them as 8- or 16-bit, or as float in [0, 1]", 415)
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
    largest = min(spec.max_side ** 2, Image.MAX_IMAGE_PIXELS or spec.max_side ** 2)
    if target[0] * target[1] > largest:
        raise InputError(f"{label}: image is {image.size[0]}x{image.size[1]}, which resizes to {target[0]}x{target[1]} "
                         f"before the crop: more than the {largest} pixels of the largest image read "
                         f"({named('max_side', '--max-side')} squared, PIL's pixel limit)", 413)
    if target != image.size:
        image = resample(image, target, spec.interpolation)
    # resize_size >= the input size (checked at construction): the crop always fits
    if spec.resize == "resize-shorter-then-center-crop-floor":
        left, top = (target[0] - w) // 2, (target[1] - h) // 2
    else:
        left, top = int(round((target[0] - w) / 2.0)), int(round((target[1] - h) / 2.0))
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
    low_w, low_h = ((spec.min_side,) * 2 if spec.min_side is not None
                    else (min(-(-w // 2), MIN_SIDE_CAP), min(-(-h // 2), MIN_SIDE_CAP)))
    if size[0] < low_w or size[1] < low_h:
        raise InputError(f"{label}: image is {size[0]}x{size[1]}, too small to resize to the model's {w}x{h} "
                         f"(at least {low_w}x{low_h}; --min-side sets the smallest side accepted)")


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
        raise InputError(f"{label}: array has shape {list(a.shape)}, the model takes {list(spec.input_shape)} (C, H, W)")
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


def of_model(model: torch.nn.Module) -> Preprocessing | None:
    """The preprocessing a model declares: its ``preprocessing`` attribute (set by
    :func:`odin_ood.models.load` from the library's transform) with its ``input_mean`` and
    ``input_std`` attributes, else a ``none`` resize at its ``input_shape``; None when the model
    does not say its input shape."""
    shape = getattr(model, "input_shape", None)
    if shape is None:
        return None
    mean, std = floats(getattr(model, "input_mean", None)), floats(getattr(model, "input_std", None))
    own = getattr(model, "preprocessing", None)
    if isinstance(own, Preprocessing):
        own = own.for_input_shape(tuple(shape))
        return Preprocessing(own.input_shape, own.resize, own.interpolation, own.resize_size, mean, std)
    return Preprocessing(tuple(shape), mean=mean, std=std)


def floats(v: Any) -> tuple[float, ...] | None:
    """None, a number or a sequence/tensor of numbers as a tuple of Python floats (float64, no rounding)."""
    if v is None:
        return None
    return tuple(float(a) for a in torch.as_tensor(v, dtype=torch.float64).flatten().tolist())


def _per_channel(v: Any, name: str, channels: int, positive: bool = False) -> tuple[float, ...] | None:
    if v is None:
        return None
    try:
        values = floats(v)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be 1 or {channels} numbers, got {_short(v)}") from None
    except OverflowError:  # an integer too large for a float (JSON allows 10**400)
        raise ValueError(f"{name} must be 1 or {channels} finite numbers, got {_short(v)}") from None
    if isinstance(v, (list, tuple)) and not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in v):
        raise ValueError(f"{name} must be 1 or {channels} numbers, got {_short(v)}")
    if len(values) not in (1, channels) or not all(math.isfinite(a) for a in values):
        raise ValueError(f"{name} must be 1 or {channels} finite numbers, got {_short(v)}")
    if positive and min(values) <= 0:
        raise ValueError(f"{name} must be > 0, got {_short(v)}")
    return values


def close_values(a: tuple[float, ...] | None, b: tuple[float, ...] | None) -> bool:
    """Both None, or the same number of values each within 1e-6."""
    if a is None or b is None:
        return a is b
    return len(a) == len(b) and all(abs(x - y) <= 1e-6 for x, y in zip(a, b))


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _check_pixels(pixels: int, what: str) -> None:
    """Refuse a size of more pixels than PIL decodes (``Image.MAX_IMAGE_PIXELS``; None: no limit)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and pixels > limit:
        raise ValueError(f"{what} is {pixels} pixels, over PIL's pixel limit of {limit} (Image.MAX_IMAGE_PIXELS): "
                         "no image that large is decoded")


def _sizes(sizes: tuple[int, ...]) -> str:
    return "x".join(map(str, sizes))
