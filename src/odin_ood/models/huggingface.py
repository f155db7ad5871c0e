"""Image classifiers of Hugging Face transformers from a local folder (``hf:PATH``).

``PATH`` is what ``save_pretrained`` writes: ``config.json``, the weights and
``preprocessor_config.json``. The network is ``AutoModelForImageClassification.from_pretrained(PATH,
local_files_only=True, dtype=torch.float32)`` (nothing is downloaded, ``trust_remote_code`` is never
set: a folder that needs code of its own is refused), wrapped so that it returns its logits
tensor; ``config.id2label`` gives the class names (None when they are transformers' placeholders
``LABEL_0``, ``LABEL_1``, ...). transformers is an optional extra (``pip install odin-ood[hf]``).

The preprocessing is that of ``AutoImageProcessor.from_pretrained(PATH)``, expressed as a
:class:`~odin_ood.preprocess.Preprocessing` so that odin-ood's input equals the processor's
``pixel_values``. transformers 5 returns the processor of its torchvision backend when torchvision
imports (the "fast" one) and its PIL backend otherwise; odin-ood follows whichever it returns:

- resize (``resample`` 2 = bilinear, 3 = bicubic): the torchvision backend resizes uint8 tensors
  with torch's antialiased kernel, odin-ood's ``bilinear-antialias-torch`` / ``bicubic-torch``
  (equal bit for bit); the PIL backend uses PIL's filters (``bilinear-antialias``, ``bicubic``, ...);
- ``size`` ``{"height", "width"}``: ``squash`` to that size; ``{"shortest_edge"}`` with
  ``do_center_crop``: the shorter side to ``shortest_edge`` (long side ``int(s * long / short)``),
  then a centre crop to ``crop_size`` with offsets rounded down
  (``resize-shorter-then-center-crop-floor``); ConvNeXt's processor: ``shortest_edge`` below 384
  resizes the shorter side to ``int(shortest_edge / crop_pct)`` and crops ``shortest_edge``
  square, 384 and more squashes to ``shortest_edge`` square;
- ``rescale_factor`` r and ``image_mean``/``image_std`` m, s: the model takes ``(255 r p - m) / s``
  for pixels p in [0, 1], i.e. mean ``m / (255 r)`` and std ``s / (255 r)`` in odin-ood's terms
  (m and s themselves for the usual r = 1/255).

The pixels (after resize and crop) are then bit-identical; the normalised values agree to float32
rounding (within 1e-6): the torchvision backend computes ``(255 p - 255 m) / (255 s)``, odin-ood
``(p - m) / s``. Every image is converted to RGB first (as ``do_convert_rgb`` does). A processor
odin-ood cannot express (a class with transforms of its own such as BEiT's or LeViT's, ``do_pad``,
no ``do_resize``, a ``size`` with ``longest_edge``, a ``shortest_edge`` without a centre crop, a
crop larger than the resized image, another ``resample``) is a ``ValueError`` naming the field.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from odin_ood._utils import extras
from odin_ood.models.packaged import _first_line
from odin_ood.preprocess import Preprocessing

PREFIX = "hf:"
# the transforms of transformers' standard image processor; a class that redefines any of them
# (other than ConvNeXt's resize, followed below) transforms images in a way of its own
_STANDARD_STEPS = (
    "process_image",
    "convert_to_rgb",
    "resize",
    "center_crop",
    "rescale",
    "normalize",
    "rescale_and_normalize",
    "pad",
    "_preprocess",
    "_preprocess_image_like_inputs",
    "preprocess",
)
_CONVNEXT = ("ConvNextImageProcessor", "ConvNextImageProcessorPil")
# PIL's resampling codes, which preprocessor_config.json's "resample" holds, in odin-ood's names
_PIL_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear-antialias", 3: "bicubic", 4: "box", 5: "hamming"}
_TORCH_NAMES = {2: "bilinear-antialias-torch", 3: "bicubic-torch"}


class Logits(nn.Module):
    """A transformers image classifier as a function from ``pixel_values`` to the logits tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


def load_huggingface(folder: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """(the classifier saved in ``folder`` returning logits, its metadata: ``preprocessing``,
    ``input_shape``, ``input_mean``, ``input_std``, ``class_names``)."""
    path = Path(folder)
    source = f"{PREFIX}{folder}"
    if not path.is_dir():
        raise ValueError(
            f"{source}: {str(path)!r} is not a folder (save_pretrained writes config.json, the weights "
            "and preprocessor_config.json into one)"
        )
    for name in ("config.json", "preprocessor_config.json"):
        if not (path / name).is_file():
            raise ValueError(
                f"{source}: the folder has no {name} (save the model and its image processor there "
                "with save_pretrained)"
            )
    transformers = extras.import_optional("transformers", "hf", "hf:PATH")
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # its "Loading weights" bar is not odin-ood's output
    try:
        model = transformers.AutoModelForImageClassification.from_pretrained(
            path, local_files_only=True, dtype=torch.float32
        )
        processor = transformers.AutoImageProcessor.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # transformers raises many types for folders it cannot read
        raise ValueError(f"{source}: transformers cannot load it ({type(exc).__name__}: {_first_line(exc)})") from None
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
    preprocessing = processor_preprocessing(processor, source)
    return Logits(model), {
        "preprocessing": preprocessing,
        "input_shape": preprocessing.input_shape,
        "input_mean": preprocessing.mean,
        "input_std": preprocessing.std,
        "class_names": class_names(model.config),
    }


def class_names(config: Any) -> tuple[str, ...] | None:
    """``config.id2label`` in class order; None when it holds transformers' ``LABEL_i`` placeholders."""
    labels = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    if sorted(labels) != list(range(len(labels))) or all(v == f"LABEL_{k}" for k, v in labels.items()):
        return None
    return tuple(labels[k] for k in range(len(labels)))


def processor_preprocessing(processor: Any, source: str = "the image processor") -> Preprocessing:
    """The :class:`Preprocessing` equal to ``processor`` (a transformers image processor of the
    torchvision or PIL backend; see the module docstring), or a ``ValueError`` naming the field
    odin-ood cannot follow."""
    kind = type(processor).__name__
    where = f"{source}: {kind}"
    backend = getattr(processor, "backend", None)
    standard = _backend_class(backend)
    if standard is None or not isinstance(backend, str):
        raise ValueError(f"{where} has backend {backend!r}; odin-ood follows the torchvision and pil backends")
    allowed = ("resize", "_preprocess") if kind in _CONVNEXT else ()
    own = [
        step
        for step in _STANDARD_STEPS
        if step not in allowed and getattr(type(processor), step, None) is not getattr(standard, step, None)
    ]
    if own:
        raise ValueError(
            f"{where} transforms images its own way ({', '.join(own)}): odin-ood follows only the "
            "standard resize, centre crop, rescale and normalise"
        )
    if getattr(processor, "do_pad", None):
        raise ValueError(f"{where}: do_pad=True pads each batch to its largest image; odin-ood needs one input size")
    if not getattr(processor, "do_resize", None):
        raise ValueError(
            f"{where}: do_resize is not set, so inputs keep each image's size; odin-ood needs one input size"
        )
    layout = getattr(processor, "data_format", None)
    if (getattr(layout, "value", layout) or "channels_first") != "channels_first":
        raise ValueError(f"{where}: data_format {layout!r} is not channels_first")
    interpolation = _interpolation(getattr(processor, "resample", None), backend, where)
    shape, resize, resize_size = _geometry(processor, kind, where)
    mean, std = _statistics(processor, where)
    try:
        return Preprocessing(shape, resize, interpolation, resize_size, mean, std)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _backend_class(backend: Any) -> type | None:
    from transformers.image_processing_backends import PilBackend, TorchvisionBackend

    return {"torchvision": TorchvisionBackend, "pil": PilBackend}.get(backend)


def _interpolation(resample: Any, backend: str, where: str) -> str:
    names = _TORCH_NAMES if backend == "torchvision" else _PIL_NAMES
    code = getattr(resample, "value", resample)
    if not isinstance(code, int) or code not in names:
        raise ValueError(
            f"{where}: resample {resample!r} has no odin-ood equivalent on the {backend} backend "
            f"(odin-ood follows {', '.join(f'{k} ({v})' for k, v in names.items())})"
        )
    return names[code]


def _sizes(value: Any) -> dict[str, int]:
    """A processor's ``size``/``crop_size`` (a SizeDict or a dict) as {key: value} without the unset keys."""
    items = dict(value).items() if value is not None else ()
    return {k: int(v) for k, v in items if v is not None}


def _geometry(processor: Any, kind: str, where: str) -> tuple[tuple[int, int, int], str, Any]:
    """(input shape, resize, resize_size) of the processor's resize and centre crop."""
    size = _sizes(getattr(processor, "size", None))
    crop = _sizes(getattr(processor, "crop_size", None)) if getattr(processor, "do_center_crop", None) else None
    if crop is not None and set(crop) != {"height", "width"}:
        raise ValueError(f"{where}: crop_size {crop} must give height and width")
    if kind in _CONVNEXT and set(size) == {"shortest_edge"}:
        if crop is not None:
            raise ValueError(f"{where}: do_center_crop=True crops a second time after ConvNeXt's own crop")
        edge = size["shortest_edge"]
        if edge >= 384:  # transformers' ConvNeXt: squash, no crop
            return (3, edge, edge), "squash", (edge, edge)
        crop_pct = float(getattr(processor, "crop_pct", None) or 224 / 256)
        return (3, edge, edge), "resize-shorter-then-center-crop-floor", int(edge / crop_pct)
    if set(size) == {"height", "width"}:
        h, w = size["height"], size["width"]
        if crop is None:
            return (3, h, w), "squash", (h, w)
        for side, full, cut in (("height", h, crop["height"]), ("width", w, crop["width"])):
            # odin-ood's squash crop rounds its offset to even; transformers' rounds down
            if cut > full or (full - cut) // 2 != round((full - cut) / 2.0):
                raise ValueError(
                    f"{where}: crop_size {side} {cut} from a resized {side} of {full}: odin-ood's squash "
                    "crops only a smaller size whose margin rounds the same down and to even"
                )
        return (3, crop["height"], crop["width"]), "squash", (h, w)
    if set(size) == {"shortest_edge"}:
        if crop is None:
            raise ValueError(
                f"{where}: size {size} without do_center_crop gives inputs whose size depends on the "
                "image's aspect ratio; odin-ood needs one input size"
            )
        if max(crop.values()) > size["shortest_edge"]:
            raise ValueError(
                f"{where}: crop_size {crop} is larger than the resized shorter side "
                f"{size['shortest_edge']} (transformers would pad with zeros)"
            )
        return (3, crop["height"], crop["width"]), "resize-shorter-then-center-crop-floor", size["shortest_edge"]
    raise ValueError(
        f"{where}: size {size} is not followed (odin-ood follows height and width, or shortest_edge with a centre crop)"
    )


def _statistics(processor: Any, where: str) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """(mean, std) of [0, 1] pixels equal to the processor's rescale and normalise."""
    scale = 255.0 * (float(processor.rescale_factor) if processor.do_rescale else 1.0)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"{where}: rescale_factor {processor.rescale_factor!r} must be > 0")
    if abs(scale - 1.0) < 1e-12:
        scale = 1.0
    if not processor.do_normalize:
        return (None, None) if scale == 1.0 else ((0.0,), (1.0 / scale,))
    mean, std = (_three(getattr(processor, f"image_{n}"), f"image_{n}", where) for n in ("mean", "std"))
    return tuple(m / scale for m in mean), tuple(s / scale for s in std)


def _three(value: Any, field: str, where: str) -> tuple[float, ...]:
    values = [value] if isinstance(value, (int, float)) else list(value or [])
    if len(values) not in (1, 3):
        raise ValueError(f"{where}: {field} {value!r} must be 1 or 3 numbers (RGB)")
    return tuple(float(v) for v in values) * (3 // len(values))


def split_huggingface_spec(spec: str) -> Path | None:
    """The folder of ``hf:PATH``; None for other specs."""
    if not spec.startswith(PREFIX):
        return None
    if spec == PREFIX:
        raise ValueError("model spec 'hf:' names no folder: write hf:PATH")
    return Path(spec[len(PREFIX) :])
