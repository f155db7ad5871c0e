"""What an image becomes: the :class:`Preprocessing`, one frozen, JSON-serialisable description.

Like timm's resolved data config or torchvision's weights transforms: the input size (C, H, W),
the channel conversion (``mode``: "L" for C = 1, "RGB" for C = 3), how an image of another size
is brought to it (``resize``, ``resize_size``, ``interpolation``, then a centre crop to H x W) and
the per-channel ``mean``/``std``. It is built from whatever knows it (the zoo, timm's data
config, torchvision's weights enum: :mod:`odin_ood.models.library`), attached to the model at
load, saved in the detector file and applied by ``fit``, ``score``, ``serve`` and the export alike
(how: :mod:`odin_ood.preprocess.images`).

``resize`` (:data:`RESIZES`): ``none`` refuses images of another size (the zoo's native size and
the paper's); ``squash`` resizes the whole image to ``resize_size`` (default the input size),
aspect ratio not kept, then centre-crops; ``resize-shorter-then-center-crop`` resizes the
shorter side to ``resize_size`` keeping the aspect ratio (torchvision's rounding:
``long = int(resize_size * long / short)``) and centre-crops (torchvision's
``top = int(round((h - H) / 2))``), which is torchvision's and timm's evaluation transform;
``resize-shorter-then-center-crop-floor`` is the same with ``top = (h - H) // 2``, as the
image processors of Hugging Face transformers crop (:mod:`odin_ood.models.huggingface`).
Interpolation names are :data:`odin_ood.preprocess.resampling.INTERPOLATIONS`, the same everywhere.

A detector file states sizes: an input or resize size over PIL's pixel limit is refused at
construction, one over ``max_side`` a side by :meth:`Preprocessing.check_max_side`.
``max_side`` and ``min_side`` are reading limits, not part of the model's preprocessing: they are
neither saved nor compared.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from PIL import Image

from odin_ood._utils.checks import named
from odin_ood._utils.checks import short as _short
from odin_ood.preprocess.resampling import INTERPOLATIONS

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


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input (see the module docstring): ``input_shape``
    (C, H, W) with C in (1, 3), ``resize`` (a key of :data:`RESIZES`), ``interpolation`` (a key
    of :data:`~odin_ood.preprocess.resampling.INTERPOLATIONS`), ``resize_size`` (``squash``: (h, w), default
    the input's; ``resize-shorter-then-center-crop``: the shorter side, default
    ``floor(max(H, W) / 0.875)``; ``none``: None), per-channel ``mean``/``std`` of [0, 1] pixels
    (None = not normalised) and ``max_side``, the largest width or height read (a limit, not saved);
    ``min_side``, when resizing, the smallest width and height resized (None: half the input's,
    rounded up, at most 16, :func:`check_min_side`; a limit, not saved), so that a 1x1 picture is not
    upscaled into an input."""

    input_shape: tuple[int, ...]  # (C, H, W), checked in __post_init__
    resize: str = "none"
    interpolation: str = "bilinear-antialias"
    resize_size: int | tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    max_side: int = field(default=4096, compare=False)
    min_side: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        shape = tuple(self.input_shape)
        if len(shape) != 3 or not all(_is_int(s) and 1 <= s <= MAX_SIZE for s in shape) or shape[0] not in (1, 3):
            raise ValueError(
                f"input_shape must be (C, H, W) with C in (1, 3) and sizes in [1, {MAX_SIZE}], "
                f"got {_short(self.input_shape)}"
            )
        object.__setattr__(self, "input_shape", tuple(int(s) for s in shape))
        check_pixels(shape[1] * shape[2], f"input_shape {sizes(shape)}")
        if self.resize not in RESIZES:
            raise ValueError(f"resize must be one of {', '.join(RESIZES)}, got {_short(self.resize)}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {_short(self.interpolation)}"
            )
        object.__setattr__(self, "resize_size", self._checked_resize_size())
        for name in ("mean", "std"):
            object.__setattr__(self, name, _per_channel(getattr(self, name), name, shape[0], positive=name == "std"))
        if not _is_int(self.max_side) or self.max_side < 1:
            raise ValueError(f"max_side must be an integer >= 1, got {_short(self.max_side)}")
        if self.min_side is not None and (not _is_int(self.min_side) or self.min_side < 1):
            raise ValueError(f"min_side must be an integer >= 1, got {_short(self.min_side)}")

    def _checked_resize_size(self) -> int | tuple[int, int] | None:
        _, h, w = self.input_shape
        size: Any = self.resize_size  # as given: checked here
        if self.resize == "none":
            if size is not None:
                raise ValueError(
                    f"resize_size {_short(size)} needs resize squash or resize-shorter-then-center-crop, not none"
                )
            return None
        if self.resize == "squash":
            size = (h, w) if size is None else ((size, size) if _is_int(size) else tuple(size))
            if len(size) != 2 or not all(_is_int(s) and 1 <= s <= MAX_SIZE for s in size) or size[0] < h or size[1] < w:
                raise ValueError(
                    f"resize_size for squash must be (h, w) of at least the input's ({h}, {w}), "
                    f"got {_short(self.resize_size)}"
                )
            check_pixels(size[0] * size[1], f"resize_size {sizes(size)}")
            return int(size[0]), int(size[1])
        size = math.floor(max(h, w) / CROP_FRACTION) if size is None else size
        if not _is_int(size) or not max(h, w) <= size <= MAX_SIZE:
            raise ValueError(
                f"resize_size for {self.resize} must be an integer in "
                f"[{max(h, w)}, {MAX_SIZE}] (the shorter side), got {_short(self.resize_size)}"
            )
        check_pixels(size * size, f"resize_size {size} (the shorter side)")
        return int(size)

    def check_max_side(self) -> None:
        """Refuse (``ValueError``) an input or resize height or width over ``max_side``: no image
        read is larger, so none should be made larger (a detector file states these sizes)."""
        size = self.resize_size
        stated: list[tuple[str, int | tuple[int, ...], int]] = [
            ("input_shape", self.input_shape, max(self.input_shape[1:]))
        ]
        if size is not None:
            stated.append(("resize_size", size, max(size) if isinstance(size, tuple) else size))
        for what, value, side in stated:
            if side > self.max_side:
                shown = sizes(value) if isinstance(value, tuple) else value
                raise ValueError(
                    f"{what} {shown} is over the limit of {self.max_side} pixels a side "
                    f"({named('max_side', '--max-side')})"
                )

    @property
    def mode(self) -> str:
        """The PIL mode images are converted to: "L" (grey) for one channel, "RGB" for three."""
        return "L" if self.input_shape[0] == 1 else "RGB"

    def for_input_shape(self, input_shape: Sequence[int]) -> Preprocessing:
        """The same recipe for another input size: ``resize_size`` scales with the height
        (``floor(resize_size * H' / H)``, as timm's ``size / crop_pct``)."""
        c, h, w = (int(s) for s in input_shape)
        shape = (c, h, w)
        if shape == self.input_shape:
            return self
        size = self.resize_size  # validated: (h, w) for squash, an int for the shorter side, None for none
        if isinstance(size, tuple):
            size = (math.floor(size[0] * h / self.input_shape[1]), math.floor(size[1] * w / self.input_shape[2]))
        elif size is not None:
            size = max(math.floor(size * h / self.input_shape[1]), h, w)
        return Preprocessing(
            shape, self.resize, self.interpolation, size, self.mean, self.std, self.max_side, self.min_side
        )

    def resized_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) an image of ``size`` (width, height) is resized to before the crop."""
        resize = self.resize_size  # validated: (h, w) for squash, an int for the shorter side
        if isinstance(resize, tuple):
            return resize[1], resize[0]
        if resize is None:
            raise ValueError("resized_size needs a resize (this Preprocessing has resize none)")
        w, h = size
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = resize, int(resize * long / short)
        return (new_short, new_long) if w <= h else (new_long, new_short)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form saved in ``detector.json`` (``max_side`` is not part of it)."""
        size = self.resize_size
        return {
            "input_shape": list(self.input_shape),
            "mode": self.mode,
            "resize": self.resize,
            "resize_size": list(size) if isinstance(size, tuple) else size,
            "interpolation": self.interpolation,
            "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std),
        }

    @classmethod
    def from_dict(cls, d: Any, source: str = "preprocessing") -> Preprocessing:
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
            raise ValueError(
                f"{source}: mode {_short(d['mode'])} does not match {p.input_shape[0]} channel(s) (expected {p.mode!r})"
            )
        return p

    def differences(self, other: Preprocessing) -> list[tuple[str, Any, Any]]:
        """(field, this value, other value) for each saved field where ``other`` differs (means
        and stds compared to 1e-6)."""
        out = []
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.compare and not (close_values(a, b) if f.name in ("mean", "std") else a == b):
                out.append((f.name, a, b))
        return out


def floats(v: Any) -> tuple[float, ...] | None:
    """None, a number or a sequence/tensor of numbers as a tuple of Python floats (float64, no rounding)."""
    return None if v is None else float_tuple(v)


def float_tuple(v: Any) -> tuple[float, ...]:
    """A number or a sequence/tensor of numbers as a tuple of Python floats (float64, no rounding)."""
    return tuple(float(a) for a in torch.as_tensor(v, dtype=torch.float64).flatten().tolist())


def _per_channel(v: Any, name: str, channels: int, positive: bool = False) -> tuple[float, ...] | None:
    if v is None:
        return None
    try:
        values = float_tuple(v)
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
    return len(a) == len(b) and all(abs(x - y) <= 1e-6 for x, y in zip(a, b, strict=True))


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def check_pixels(pixels: int, what: str) -> None:
    """Refuse a size of more pixels than PIL decodes (``Image.MAX_IMAGE_PIXELS``; None: no limit)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and pixels > limit:
        raise ValueError(
            f"{what} is {pixels} pixels, over PIL's pixel limit of {limit} (Image.MAX_IMAGE_PIXELS): "
            "no image that large is decoded"
        )


def sizes(sizes: tuple[int, ...]) -> str:
    return "x".join(map(str, sizes))
