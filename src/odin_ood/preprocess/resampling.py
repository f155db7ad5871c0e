"""Interpolation: one name per filter, used by the preprocessing and by the data sets alike.

====================== ===========================================================================
``nearest``            PIL nearest neighbour (torchvision's and timm's ``nearest`` on PIL images)
``bilinear``           torch ``interpolate(mode="bilinear", align_corners=False, antialias=False)``:
                       each output pixel interpolates the 2x2 input pixels around its centre, no
                       antialiasing (the paper-era resize of scipy/OpenCV; the data sets' default)
``bilinear-antialias`` PIL bilinear: a triangle filter widened by the scale factor (antialiased);
                       what torchvision and timm call ``bilinear`` on PIL images
``bicubic``            PIL bicubic (antialiased); torchvision's and timm's ``bicubic``
``box``                PIL box filter: the mean over each output pixel's footprint
``hamming``            PIL Hamming filter
``lanczos``            PIL Lanczos (a = 3)
``area``               torch ``adaptive_avg_pool2d``; equal to ``box`` for integer factors
``bilinear-antialias-  torch ``interpolate(mode="bilinear", antialias=True)`` on the uint8 image:
torch``                torchvision's ``resize`` of a uint8 tensor, which the image processors of
                       Hugging Face transformers (their default torchvision backend) use; within
                       a grey level or two of PIL's bilinear, not equal to it
``bicubic-torch``      the same with ``mode="bicubic"`` (antialiased)
====================== ===========================================================================

The torch filters run in float32 on the image's values; 8-bit images are then rounded to the
nearest integer and clipped to [0, 255]. The two antialiased torch filters take 8-bit images
where torchvision does (:func:`native_uint8`: bicubic always on a CPU, bilinear on AVX2, AVX512
and ARM CPUs), so that their result is torchvision's bit for bit.
"""

from __future__ import annotations

import platform

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

PIL_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear-antialias": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}
ANTIALIASED_TORCH_FILTERS = {"bilinear-antialias-torch": "bilinear", "bicubic-torch": "bicubic"}
TORCH_FILTERS = ("bilinear", "area", *ANTIALIASED_TORCH_FILTERS)
INTERPOLATIONS = (
    "nearest",
    "bilinear",
    "bilinear-antialias",
    "bicubic",
    "box",
    "hamming",
    "lanczos",
    "area",
    *ANTIALIASED_TORCH_FILTERS,
)
# torchvision's InterpolationMode values and timm's interpolation strings, in the names above
LIBRARY_NAMES = {
    "nearest": "nearest",
    "bilinear": "bilinear-antialias",
    "bicubic": "bicubic",
    "box": "box",
    "hamming": "hamming",
    "lanczos": "lanczos",
}


def torch_resample(x: Tensor, size: tuple[int, int], method: str) -> Tensor:
    """Float (N, C, H, W) images (or uint8 ones, for the antialiased torch filters) at ``size``
    (h, w) with a torch filter (:data:`TORCH_FILTERS`)."""
    if method == "area":
        return F.adaptive_avg_pool2d(x, size)
    if method == "bilinear":
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)
    if method in ANTIALIASED_TORCH_FILTERS:
        return F.interpolate(x, size=size, mode=ANTIALIASED_TORCH_FILTERS[method], align_corners=False, antialias=True)
    raise ValueError(f"{method!r} is not a torch filter ({', '.join(TORCH_FILTERS)})")


def native_uint8(method: str) -> bool:
    """Whether torchvision resizes a uint8 CPU tensor with ``method`` in uint8 (torch's own uint8
    kernel) rather than in float32 then rounded (torchvision's ``_do_native_uint8_resize_on_cpu``)."""
    if method == "bicubic-torch":
        return True
    return method == "bilinear-antialias-torch" and (
        torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") or platform.machine() in ("aarch64", "arm64")
    )


def resample_uint8(batch: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    """uint8 (N, H, W, C) images at ``size`` (h, w) with a torch filter, rounded and clipped."""
    x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).contiguous()
    if native_uint8(method):
        return torch_resample(x, size, method).permute(0, 2, 3, 1).numpy()
    y = torch_resample(x.float(), size, method)
    return y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def resample(image: Image.Image, size: tuple[int, int], method: str) -> Image.Image:
    """A PIL image (8-bit L/RGB, or float F) at ``size`` (width, height) with ``method``."""
    if method in PIL_FILTERS:
        return image.resize(size, PIL_FILTERS[method])
    hw = (size[1], size[0])
    a = np.array(image)  # a writable copy: torch.from_numpy needs one
    if image.mode == "F":
        y = torch_resample(torch.from_numpy(a.astype(np.float32))[None, None], hw, method)[0, 0]
        return Image.fromarray(y.numpy(), "F")
    out = resample_uint8((a if a.ndim == 3 else a[..., None])[None], hw, method)[0]
    return Image.fromarray(out[..., 0] if image.mode == "L" else out, image.mode)
