"""Architectures from torchvision and timm (``torchvision:NAME[:WEIGHTS]``, ``timm:NAME``), weights
from a local file.

Both libraries are optional extras (``pip install odin-ood[torchvision]`` / ``[timm]``); the core
never imports them. Nothing is downloaded: the network is built untrained (``weights=None`` /
``pretrained=False``) and the user's ``weights`` file is read like any checkpoint
(``torch.load(weights_only=True)`` or safetensors) and loaded strictly.

The model's own evaluation transform comes with it, as a :class:`~odin_ood.preprocess.Preprocessing`:

- ``timm:NAME``: the resolved data config (``timm.data.resolve_data_config({}, model=m)``):
  ``input_size``, ``interpolation``, ``crop_pct`` (resize to ``floor(size / crop_pct)``),
  ``crop_mode`` (``center``: the shorter side, then a centre crop; ``squash``: both sides, then a
  centre crop; ``border``, and ``center`` at a non-square size, are not followed: ``resize none``,
  choose ``--resize`` at fit), ``mean``, ``std``; class names from timm's ImageNet info
  when the head has that subset's classes.
- ``torchvision:NAME:WEIGHTS`` (e.g. ``torchvision:resnet50:IMAGENET1K_V1``): that weights enum's
  ``transforms()`` (``resize_size``, ``crop_size``, ``interpolation``, ``mean``, ``std``) and
  ``meta["categories"]``; ``torchvision:NAME`` uses the architecture's ``DEFAULT`` weights enum,
  and an architecture without one the standard ImageNet transform (resize 256, crop 224,
  bilinear, ImageNet mean/std). Class names only when the head has as many classes.

Library interpolation names map to odin-ood's (:mod:`odin_ood.preprocess.resampling`): torchvision's and
timm's ``bilinear`` on PIL images is ``bilinear-antialias``, ``bicubic`` is ``bicubic``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from torch import nn

from odin_ood._utils import extras
from odin_ood.models.zoo import IMAGENET_MEAN, IMAGENET_STD
from odin_ood.preprocess import CROP_FRACTION, Preprocessing
from odin_ood.preprocess.resampling import LIBRARY_NAMES

LIBRARIES = ("torchvision", "timm")
STANDARD_IMAGENET = Preprocessing(
    (3, 224, 224), "resize-shorter-then-center-crop", "bilinear-antialias", 256, IMAGENET_MEAN, IMAGENET_STD
)


def build_library_model(library: str, name: str, num_classes: int | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """(untrained ``name`` from ``library``, its metadata: ``preprocessing`` (a
    :class:`Preprocessing`), ``input_shape``, ``input_mean``, ``input_std`` and ``class_names``
    (None when unknown; :func:`odin_ood.models.sources.describe` drops them for a head of
    another size))."""
    if library not in LIBRARIES:
        raise ValueError(f"unknown model library {library!r}; expected one of {LIBRARIES}")
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    if library == "torchvision":
        tv = extras.import_optional("torchvision", "torchvision", "torchvision:NAME")
        name, _, enum = name.partition(":")
        if name not in tv.models.list_models():
            raise ValueError(f"torchvision has no model {name!r} (see torchvision.models.list_models())")
        preprocessing, categories = torchvision_preprocessing(tv, name, enum or None)
        arguments = torchvision_arguments(tv, name, enum) if enum else {}
        model = tv.models.get_model(name, weights=None, **{**arguments, **kwargs})
    else:
        timm = extras.import_optional("timm", "timm", "timm:NAME")
        if not timm.is_model(name):
            raise ValueError(f"timm has no model {name!r} (see timm.list_models())")
        model = timm.create_model(name, pretrained=False, **kwargs)
        preprocessing, categories = timm_preprocessing(timm, model, name)
    return model, {
        "preprocessing": preprocessing,
        "input_shape": preprocessing.input_shape,
        "input_mean": preprocessing.mean,
        "input_std": preprocessing.std,
        "class_names": None if categories is None else tuple(categories),
    }


def torchvision_preprocessing(tv: Any, name: str, enum: str | None = None) -> tuple[Preprocessing, list[str] | None]:
    """(the evaluation transform of weights ``enum`` of architecture ``name`` (default: its
    ``DEFAULT``; the standard ImageNet transform when it has no weights enum), its categories)."""
    try:
        weights_enum = tv.models.get_model_weights(name)
    except Exception:  # no weights enum for this architecture
        weights_enum = None
    if weights_enum is None:
        if enum is not None:
            raise ValueError(f"torchvision:{name} has no weights enum, so no {enum!r}: write torchvision:{name}")
        return STANDARD_IMAGENET, None
    try:
        weights = weights_enum[enum] if enum is not None else weights_enum.DEFAULT
    except KeyError:
        raise ValueError(
            f"torchvision:{name} has no weights {enum!r}; its {weights_enum.__name__} has "
            f"{', '.join(w.name for w in weights_enum)}"
        ) from None
    t = weights.transforms()
    crop, resize = _one(t.crop_size), _one(t.resize_size)
    p = Preprocessing(
        (3, crop, crop),
        "resize-shorter-then-center-crop",
        _interpolation(t.interpolation.value, name),
        resize,
        tuple(t.mean),
        tuple(t.std),
    )
    return p, list(weights.meta.get("categories") or []) or None


def torchvision_arguments(tv: Any, name: str, enum: str) -> dict[str, Any]:
    """The constructor arguments torchvision's builder of ``name`` sets from weights ``enum``
    (``_ovewrite_named_param`` in torchvision/models/*.py): ``num_classes`` for all, the input size
    of the vision transformers, ``transform_input`` of the Inception networks and their auxiliary
    heads as the builder leaves them (Inception-v3 keeps its, GoogLeNet drops its)."""
    weights = tv.models.get_model_weights(name)[enum]
    arguments: dict[str, Any] = {"num_classes": len(weights.meta["categories"])}
    family = tv.models.get_model_builder(name).__module__.rsplit(".", 1)[-1]
    if family == "vision_transformer":
        arguments["image_size"] = weights.meta["min_size"][0]
    elif family == "maxvit":
        arguments["input_size"] = weights.meta["min_size"]
    elif family == "inception":  # the auxiliary head is kept (unused in eval mode)
        arguments.update(transform_input=True, aux_logits=True, init_weights=False)
    elif family == "googlenet":  # the builder drops the auxiliary heads after loading
        arguments.update(transform_input=True, aux_logits=False, init_weights=False)
    return arguments


def timm_preprocessing(timm: Any, model: nn.Module, name: str) -> tuple[Preprocessing, list[str] | None]:
    """(the evaluation transform of timm's resolved data config for ``model`` (``resize none``
    where odin-ood has no equivalent), ImageNet class descriptions when timm can tell the
    model's label subset)."""
    config = timm.data.resolve_data_config({}, model=model)
    shape = tuple(int(s) for s in config["input_size"])
    crop_pct = config.get("crop_pct") or CROP_FRACTION
    mode = config.get("crop_mode") or "center"
    interpolation = _interpolation(config.get("interpolation", "bilinear"), f"timm:{name}")
    if mode == "squash":
        size: int | tuple[int, int] = (math.floor(shape[1] / crop_pct), math.floor(shape[2] / crop_pct))
        p = Preprocessing(shape, "squash", interpolation, size, tuple(config["mean"]), tuple(config["std"]))
    elif mode == "center" and shape[1] == shape[2]:
        p = Preprocessing(
            shape,
            "resize-shorter-then-center-crop",
            interpolation,
            math.floor(shape[1] / crop_pct),
            tuple(config["mean"]),
            tuple(config["std"]),
        )
    else:  # border mode, or centre mode at a non-square size (timm's ResizeKeepRatio): not followed
        p = Preprocessing(shape, "none", mean=tuple(config["mean"]), std=tuple(config["std"]))
    return p, _timm_categories(timm, model)


def _timm_categories(timm: Any, model: nn.Module) -> list[str] | None:
    try:
        subset = timm.data.infer_imagenet_subset(model)
        return list(timm.data.ImageNetInfo(subset).label_descriptions()) if subset else None
    except Exception:  # an older timm, or no label files: indices only
        return None


def _interpolation(name: str, source: str) -> str:
    if name not in LIBRARY_NAMES:
        raise ValueError(f"{source}: interpolation {name!r} has no odin-ood equivalent ({', '.join(LIBRARY_NAMES)})")
    return LIBRARY_NAMES[name]


def _one(size: Any) -> int:
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def split_library_spec(spec: str) -> tuple[str, str] | None:
    """``("torchvision", "resnet18")`` for ``"torchvision:resnet18"``; None for other specs."""
    library, sep, name = spec.partition(":")
    if sep and library in LIBRARIES and not Path(spec).exists():
        if not name:
            raise ValueError(f"model spec {spec!r} names no architecture: write {library}:NAME")
        return library, name
    return None
