"""``odin_ood.models.load``: any PyTorch classifier from one model spec.

A spec is one of (first match wins):

============================  =====================================================  ============
spec                          what is loaded                                          runs code?
============================  =====================================================  ============
``torchvision:NAME``          torchvision's architecture NAME, ``weights`` file       no (weights)
``timm:NAME``                 timm's architecture NAME, ``weights`` file              no (weights)
``hf:PATH``                   a transformers folder (:mod:`.huggingface`)             no
``onnx:PATH``, ``*.onnx``     an ONNX graph made a torch module (:mod:`.onnx`)        no
``torchscript:PATH``, ``*.ts``  a TorchScript archive                                 **yes**
``export:PATH``, ``*.pt2``    a ``torch.export`` program                              **yes**
an existing file              a checkpoint of a zoo architecture (:mod:`.zoo`)        no
a zoo name                    :func:`odin_ood.models.names`, ``weights`` optional     no
``package.module:factory``    ``factory()`` from the user's importable module         **yes**
============================  =====================================================  ============

Checkpoints (``weights``) are read with ``torch.load(weights_only=True)`` or safetensors, their
keys mapped if asked (``strip_prefixes``, ``rename_keys``), and loaded strictly. Every model
comes back in eval mode on ``map_location`` with its ``preprocessing`` (a
:class:`~odin_ood.preprocess.Preprocessing`, attached once here whenever the input size is known:
the library's evaluation transform for torchvision and timm models, else a ``none`` resize; read
through :func:`odin_ood.preprocess.declared_input`, the one reader), the same values as
``input_shape``, ``input_mean``, ``input_std`` attributes (None when unknown) and ``num_classes``,
taken from the arguments, else the library's metadata, else the model's own attributes;
torchvision and timm models also carry ``class_names`` (the weights' categories, None when
unknown or the head has another size);
``hf:`` models carry their image processor's preprocessing and ``id2label``, ``onnx:`` models
what the file's metadata says. When the input shape is
known (and for every non-zoo model) a batch of zeros is run through the model first, so a wrong
input size is a one-line ``ValueError`` at load time, not a failure in the middle of a run.
"""

from __future__ import annotations

import importlib
import itertools
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from odin_ood._utils.checks import named
from odin_ood.models import zoo
from odin_ood.models.checkpoint import head_classes, load_strict, map_keys, read_state_dict
from odin_ood.models.huggingface import load_huggingface, split_huggingface_spec
from odin_ood.models.library import build_library_model, split_library_spec
from odin_ood.models.onnx import load_onnx, split_onnx_spec
from odin_ood.models.packaged import EXPORT_SUFFIXES, TORCHSCRIPT_SUFFIXES, load_packaged, packaging_of
from odin_ood.preprocess.model_input import attach, declare

_FACTORY = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
_PACKAGING_PREFIXES = {"torchscript:": "torchscript", "export:": "export"}
FORMS = (
    "a zoo name",
    "a checkpoint file",
    "torchvision:NAME",
    "timm:NAME",
    "hf:PATH",
    "onnx:PATH (or *.onnx)",
    "torchscript:PATH (or *.ts)",
    "export:PATH (or *.pt2)",
    "package.module:factory",
)
PROBE_BATCH = 3


def load(
    spec: str | os.PathLike,
    weights: str | os.PathLike | None = None,
    num_classes: int | None = None,
    map_location: str | torch.device = "cpu",
    *,
    input_shape: Sequence[int] | None = None,
    input_mean: Sequence[float] | None = None,
    input_std: Sequence[float] | None = None,
    strip_prefixes: Sequence[str] = (),
    rename_keys: Mapping[str, str] | None = None,
) -> nn.Module:
    """A trained classifier in eval mode from ``spec`` (see the module docstring).

    ``weights``: a checkpoint for a zoo name, ``torchvision:``/``timm:`` (required there: nothing
    is downloaded) or a factory's model. ``num_classes`` defaults to the checkpoint's: a
    ``torchvision:``/``timm:`` checkpoint whose head has another size than the architecture's
    default (a fine-tuned head) builds the network with that many classes. ``input_shape`` (C, H, W), ``input_mean`` and
    ``input_std`` (per channel, pixel values in [0, 1]) set what the model expects where its
    source does not say, or override it. ``strip_prefixes`` and ``rename_keys`` map a checkpoint's
    keys before the strict check (:func:`odin_ood.models.checkpoint.map_keys`), e.g.
    ``strip_prefixes=("encoder.",), rename_keys={"output_layer": "fc"}``.
    """
    text = os.fspath(spec)
    mapping: dict[str, Any] = {"strip_prefixes": tuple(strip_prefixes), "rename_keys": dict(rename_keys or {})}
    overrides = {"input_shape": input_shape, "input_mean": input_mean, "input_std": input_std}
    library = split_library_spec(text)
    packaging, path = _packaging(text)
    converted = _converted(text)
    if library is not None:
        if weights is None:
            raise ValueError(
                f"{text} needs {named('weights=FILE', '--weights FILE')}: odin-ood never downloads weights"
            )
        model, metadata = build_library_model(*library, num_classes=num_classes)
        state = map_keys(read_state_dict(weights), **mapping)
        found = head_classes(model, state)
        if found is not None and num_classes is not None:
            raise ValueError(
                f"{str(weights)!r} holds a {found}-class head but num_classes={num_classes} was asked: "
                f"pass --num-classes {found} (num_classes={found}), or weights of a {num_classes}-class head"
            )
        if found is not None:  # a fine-tuned head: the checkpoint says how many classes
            model, metadata = build_library_model(*library, num_classes=found)
        load_strict(model, state, source=f"{str(weights)!r}")
        return describe(model, text, map_location, {**metadata, **_given(overrides)}, num_classes)
    if packaging is not None or converted is not None:
        if weights is not None or mapping["strip_prefixes"] or mapping["rename_keys"]:
            raise ValueError(
                f"{text} carries its own weights: drop "
                f"{named('weights= and any key mapping', '--weights, --strip-prefix and --rename-key')}"
            )
        if converted is not None:
            model, metadata = converted()
        else:
            assert packaging is not None  # the branch's condition
            model, metadata = load_packaged(path, packaging, map_location), {}
        return describe(model, text, map_location, {**metadata, **_given(overrides)}, num_classes)
    if Path(text).exists() or text in zoo.names():
        archive = packaging_of(Path(text)) if Path(text).is_file() else None
        if archive is not None:
            raise ValueError(
                f"{text!r} is a {archive} archive, which runs code when loaded; if you trust it, "
                f"pass it as {archive}:{text}"
            )
        model = zoo.load(text, weights=weights, num_classes=num_classes, map_location=map_location, **mapping)
        if not _given(overrides):
            return model
        return describe(model, text, map_location, _given(overrides), num_classes)
    if _FACTORY.match(text):
        model = _from_factory(text)
        if weights is not None:
            load_strict(model, map_keys(read_state_dict(weights), **mapping), source=f"{str(weights)!r}")
        return describe(model, text, map_location, _given(overrides), num_classes)
    raise ValueError(
        f"model {text!r} is neither a known model name ({', '.join(zoo.names())}) nor an existing "
        f"file, nor any of: {', '.join(FORMS[2:])}"
    )


def _packaging(text: str) -> tuple[str | None, Path]:
    for prefix, packaging in _PACKAGING_PREFIXES.items():
        if text.startswith(prefix):
            return packaging, Path(text[len(prefix) :])
    suffix = Path(text).suffix.lower()
    if suffix in TORCHSCRIPT_SUFFIXES:
        return "torchscript", Path(text)
    if suffix in EXPORT_SUFFIXES:
        return "export", Path(text)
    return None, Path(text)


def _converted(text: str) -> Callable[[], tuple[nn.Module, dict[str, Any]]] | None:
    """The loader of an ``hf:`` folder or an ``onnx:`` graph named by ``text``; None for other specs."""
    folder, graph = split_huggingface_spec(text), split_onnx_spec(text)
    if folder is not None:
        return lambda: load_huggingface(folder)
    return None if graph is None else lambda: load_onnx(graph)


def _given(overrides: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in overrides.items() if v is not None}


def _from_factory(spec: str) -> nn.Module:
    """``factory()`` from ``package.module:factory``, importable from the current folder too (as
    uvicorn does for its apps). Importing the module runs its code."""
    module_name, attr = spec.split(":")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ValueError(
            f"model {spec}: cannot import {module_name!r} ({type(exc).__name__}: {exc}); the module "
            "must be installed, on PYTHONPATH or under the current folder"
        ) from None
    finally:
        if added:
            sys.path.remove(cwd)
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"model {spec}: {module_name!r} has no callable {attr!r}")
    try:
        model = factory()
    except Exception as exc:
        raise ValueError(f"model {spec}: the factory raised {type(exc).__name__}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"model {spec}: the factory returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def describe(
    model: nn.Module,
    source: str,
    map_location: str | torch.device = "cpu",
    metadata: dict[str, Any] | None = None,
    num_classes: int | None = None,
) -> nn.Module:
    """Set ``input_shape``/``input_mean``/``input_std`` from ``metadata`` (else keep the model's
    own, else None), attach the model's preprocessing (``metadata``'s geometry with those values:
    :func:`odin_ood.preprocess.attach`) and ``class_names`` when it has them, move to
    ``map_location``, eval mode, and probe the input shape when known: ``num_classes`` becomes
    the width of the logits (and class names of another count are dropped)."""
    metadata = metadata or {}
    if "class_names" in metadata:
        declare(model, class_names=metadata["class_names"])
    said: dict[str, tuple[Any, ...] | None] = {}
    for key in ("input_shape", "input_mean", "input_std"):
        value = metadata.get(key, getattr(model, key, None))
        said[key] = None if value is None else tuple((int if key == "input_shape" else float)(v) for v in value)
    declare(model, **said)
    shape, std = said["input_shape"], said["input_std"]
    channels = shape[0] if shape else None
    for key in ("input_mean", "input_std"):
        value = said[key]
        if value is not None and channels is not None and len(value) not in (1, channels):
            raise ValueError(f"{source}: {key} has {len(value)} values but the input has {channels} channels")
    if std is not None and min(std) <= 0:
        raise ValueError(f"{source}: input_std must be > 0, got {std}")
    attach(model, metadata.get("preprocessing"))
    model = model.to(map_location).eval()
    if shape is not None:
        found = probe(model, shape, source)
        if num_classes is not None and num_classes != found:
            raise ValueError(f"num_classes={num_classes} requested but {source} gives {found} logits")
        declare(model, num_classes=found)
        names = getattr(model, "class_names", None)
        if names is not None and len(names) != found:
            declare(model, class_names=None)
    elif num_classes is not None:
        declare(model, num_classes=num_classes)
    return model


def probe(model: nn.Module, shape: Sequence[int], source: str = "the model") -> int:
    """Run a batch of zeros of ``shape`` through ``model``; the number of classes, or a
    ``ValueError`` saying that the model does not take that input."""
    device = next(
        itertools.chain((t.device for t in model.parameters()), (t.device for t in model.buffers())),
        torch.device("cpu"),
    )
    x = torch.zeros(PROBE_BATCH, *shape, device=device)
    size = "x".join(str(s) for s in shape)
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ValueError(
            f"{source} does not take inputs of size {size} in a batch of {PROBE_BATCH} (check "
            f"--input-size; export .pt2 programs with a dynamic batch dimension): "
            f"{type(exc).__name__}: {first}"
        ) from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != PROBE_BATCH or out.shape[1] < 2:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"{source} maps {PROBE_BATCH} inputs of size {size} to {got}: expected class logits "
            f"of shape ({PROBE_BATCH}, classes >= 2)"
        )
    return int(out.shape[1])
