"""Architectures from torchvision and timm (``torchvision:NAME``, ``timm:NAME``), weights from a
local file.

Both libraries are optional extras (``pip install odin-ood[torchvision]`` / ``[timm]``); the core
never imports them. Nothing is downloaded: the network is built untrained (``weights=None`` /
``pretrained=False``) and the user's ``weights`` file is read like any checkpoint
(``torch.load(weights_only=True)`` or safetensors) and loaded strictly.

Input metadata comes from the library when it has it: torchvision's weight enum for the
architecture (``get_model_weights(NAME).DEFAULT.transforms()``: ``crop_size``, ``mean``, ``std``)
and timm's data config (``resolve_model_data_config``: ``input_size``, ``mean``, ``std``). Note
that torchvision's evaluation transform resizes to ``resize_size`` and then centre-crops; odin-ood
resizes the whole image to the input size (``--resize``), so crop your images first if you want
torchvision's exact preprocessing.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from torch import nn

LIBRARIES = ("torchvision", "timm")


def _import(library: str) -> Any:
    try:
        return importlib.import_module(library)
    except Exception as exc:  # ImportError, or a binary mismatch with the installed torch
        raise ValueError(
            f"{library}:NAME needs {library}, which does not import here ({type(exc).__name__}: {exc}); "
            f"install a {library} build that matches torch {__import__('torch').__version__}"
        ) from None


def build_library_model(library: str, name: str, num_classes: int | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """(untrained ``name`` from ``library``, its input metadata: some of ``input_shape``,
    ``input_mean``, ``input_std``)."""
    if library not in LIBRARIES:
        raise ValueError(f"unknown model library {library!r}; expected one of {LIBRARIES}")
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    if library == "torchvision":
        tv = _import("torchvision")
        if name not in tv.models.list_models():
            raise ValueError(f"torchvision has no model {name!r} (see torchvision.models.list_models())")
        return tv.models.get_model(name, weights=None, **kwargs), _torchvision_metadata(tv, name)
    timm = _import("timm")
    if not timm.is_model(name):
        raise ValueError(f"timm has no model {name!r} (see timm.list_models())")
    model = timm.create_model(name, pretrained=False, **kwargs)
    return model, _timm_metadata(timm, model)


def _torchvision_metadata(tv: Any, name: str) -> dict[str, Any]:
    try:
        transform = tv.models.get_model_weights(name).DEFAULT.transforms()
    except Exception:  # no weight enum for this architecture: no metadata
        return {}
    size = transform.crop_size[0] if isinstance(transform.crop_size, (list, tuple)) else transform.crop_size
    return {"input_shape": (3, int(size), int(size)), "input_mean": tuple(transform.mean),
            "input_std": tuple(transform.std)}


def _timm_metadata(timm: Any, model: nn.Module) -> dict[str, Any]:
    data = timm.data
    resolve = getattr(data, "resolve_model_data_config", None)
    config = resolve(model) if resolve is not None else data.resolve_data_config({}, model=model)
    return {"input_shape": tuple(int(s) for s in config["input_size"]), "input_mean": tuple(config["mean"]),
            "input_std": tuple(config["std"])}


def library_class_names(library: str, name: str, model: nn.Module) -> tuple[str, ...] | None:
    """The names of the classes of ``model`` as its library knows them: the categories of the
    torchvision weights enum for ``name`` (``meta["categories"]``), or for timm the ImageNet
    subset the model's head has (``infer_imagenet_subset``; each description's first name, as
    torchvision writes them). None when the library has none or the head has another size (a
    fine-tuned head)."""
    try:
        if library == "torchvision":
            names = _import("torchvision").models.get_model_weights(name).DEFAULT.meta["categories"]
        else:
            data = _import("timm").data
            subset = data.infer_imagenet_subset(model)
            names = None if subset is None else [d.split(", ")[0] for d in data.ImageNetInfo(subset).label_descriptions()]
    except Exception:  # no weights enum, an older timm: no names
        return None
    classes = getattr(model, "num_classes", None)
    return tuple(str(n) for n in names) if names is not None and len(names) == classes else None


def split_library_spec(spec: str) -> tuple[str, str] | None:
    """``("torchvision", "resnet18")`` for ``"torchvision:resnet18"``; None for other specs."""
    library, sep, name = spec.partition(":")
    if sep and library in LIBRARIES and not Path(spec).exists():
        if not name:
            raise ValueError(f"model spec {spec!r} names no architecture: write {library}:NAME")
        return library, name
    return None
