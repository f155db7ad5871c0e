"""Named architectures with their input normalisation, and the one entry point ``load``.

Every model returned here takes the NORMALISED image ``(x - input_mean) / input_std`` (``x`` in
[0, 1] pixel units) and carries ``input_mean``, ``input_std`` (per-channel tuples),
``input_shape`` ``(C, H, W)``, ``num_classes`` and ``arch`` as attributes, so ODIN's pixel-space
perturbation ``epsilon`` can be divided by ``input_std`` without constants in user code.

Normalisations: the DenseNet-BC checkpoints and the Wide ResNets use CIFAR-10's channel
statistics, mean (0.4914, 0.4822, 0.4465), std (0.2023, 0.1994, 0.2010); the public CIFAR ResNet
checkpoints (Idelbayev) were trained with ImageNet's, mean (0.485, 0.456, 0.406), std (0.229,
0.224, 0.225); the MNIST MLP takes raw pixels (mean 0, std 1), as Hendrycks & Gimpel's; the MNIST LeNet MNIST's
pixel statistics (mean 0.1307, std 0.3081), as PyTorch's MNIST example.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from odin_ood._utils.checks import named
from odin_ood.data.dataset import CIFAR_MEAN, CIFAR_STD
from odin_ood.models.checkpoint import load_strict, map_keys, mismatch_report, read_metadata, read_state_dict
from odin_ood.models.densenet import DenseNetBC
from odin_ood.models.lenet import LeNet
from odin_ood.models.mlp import MLP
from odin_ood.models.resnet_cifar import ResNetCifar
from odin_ood.models.wide_resnet import WideResNet
from odin_ood.preprocess.model_input import attach, declare

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MNIST_LENET_MEAN = (0.1307,)
MNIST_LENET_STD = (0.3081,)


@dataclass(frozen=True)
class ModelSpec:
    """A named architecture: how to build it and what input it expects."""

    name: str
    builder: Callable[[int], nn.Module]
    input_mean: tuple[float, ...]
    input_std: tuple[float, ...]
    input_shape: tuple[int, int, int]
    num_classes: int
    recipe: str
    classifier: str  # name of the final linear layer
    tensors: int  # entries of its state dict, BatchNorm's num_batches_tracked counters not counted
    shipped_weights: str | None = None  # file name under odin_ood/assets


_SPECS: dict[str, ModelSpec] = {
    s.name: s
    for s in [
        ModelSpec(
            "densenet-bc-100",
            lambda c: DenseNetBC(100, 12, c),
            CIFAR_MEAN,
            CIFAR_STD,
            (3, 32, 32),
            10,
            "densenet",
            "fc",
            497,
        ),
        ModelSpec(
            "wrn-28-10", lambda c: WideResNet(28, 10, c), CIFAR_MEAN, CIFAR_STD, (3, 32, 32), 10, "wrn", "fc", 130
        ),
        ModelSpec("wrn-40-4", lambda c: WideResNet(40, 4, c), CIFAR_MEAN, CIFAR_STD, (3, 32, 32), 10, "wrn", "fc", 190),
        *(
            ModelSpec(
                f"resnet{d}",
                functools.partial(ResNetCifar, d),
                IMAGENET_MEAN,
                IMAGENET_STD,
                (3, 32, 32),
                10,
                "resnet",
                "linear",
                tensors,
            )
            for d, tensors in ((20, 97), (32, 157), (44, 217), (56, 277), (110, 547))
        ),
        ModelSpec(
            "mnist-mlp",
            lambda c: MLP(784, 256, c),
            (0.0,),
            (1.0,),
            (1, 28, 28),
            10,
            "mnist-mlp",
            "fc4",
            8,
            shipped_weights="mnist_mlp.safetensors",
        ),
        ModelSpec(
            "mnist-lenet",
            LeNet,
            MNIST_LENET_MEAN,
            MNIST_LENET_STD,
            (1, 28, 28),
            10,
            "mnist-lenet",
            "fc2",
            8,
            shipped_weights="mnist_lenet.safetensors",
        ),
    ]
}


def names() -> list[str]:
    """The architecture names accepted by :func:`build` and :func:`load`."""
    return list(_SPECS)


def spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; unknown names raise ``ValueError`` listing the known."""
    if name not in _SPECS:
        raise ValueError(f"unknown model name {name!r}; expected one of {names()}")
    return _SPECS[name]


def build(name: str, num_classes: int | None = None) -> nn.Module:
    """A freshly initialised ``name`` network (training mode) with its input attributes set."""
    s = spec(name)
    num_classes = s.num_classes if num_classes is None else num_classes
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    model = s.builder(num_classes)
    declare(
        model,
        arch=s.name,
        input_mean=s.input_mean,
        input_std=s.input_std,
        input_shape=s.input_shape,
        num_classes=num_classes,
    )
    attach(model)
    return model


def load(
    name_or_path: str | Path,
    weights: str | os.PathLike[str] | None = None,
    num_classes: int | None = None,
    map_location: str | torch.device = "cpu",
    *,
    strip_prefixes: Sequence[str] = (),
    rename_keys: Mapping[str, str] | None = None,
) -> nn.Module:
    """A trained model in eval mode.

    ``load("mnist-mlp")`` and ``load("mnist-lenet")`` return the MNIST models shipped in the package. ``load(NAME,
    weights=FILE)`` builds architecture NAME and loads FILE strictly. ``load(FILE)`` reads the architecture from
    the file's safetensors metadata (files written by ``odin-ood train``) or, failing that,
    recognises it from the checkpoint's key names and shapes. ``num_classes`` defaults to the
    checkpoint's; a different value raises ``ValueError``. ``strip_prefixes`` and ``rename_keys``
    map the checkpoint's keys first (:func:`odin_ood.models.checkpoint.map_keys`), e.g.
    ``strip_prefixes=("encoder.",), rename_keys={"output_layer": "fc"}``; loading stays strict.
    """
    name, weights = _resolve(str(name_or_path), weights)
    state = map_keys(read_state_dict(weights, map_location=map_location), strip_prefixes, rename_keys)
    recognised = None
    if name is None:
        name, recognised = _recognise(state, source=str(weights))  # built once, here
    found = _classes_in(name, state)
    if num_classes is not None and found is not None and num_classes != found:
        raise ValueError(
            f"num_classes={num_classes} requested but {str(weights)!r} has a {found}-class classifier: "
            f"pass --num-classes {found} (num_classes={found}) or leave it out"
        )
    model = recognised if recognised is not None else build(name, num_classes if num_classes is not None else found)
    load_strict(model, state, source=f"{str(weights)!r}")
    return model.to(map_location).eval()


def _resolve(name_or_path: str, weights: str | os.PathLike[str] | None) -> tuple[str | None, Path]:
    """(architecture name or None when unknown yet, weights file)."""
    if name_or_path in _SPECS:
        if weights is not None:
            return name_or_path, Path(weights)
        shipped = _SPECS[name_or_path].shipped_weights
        if shipped is None:
            raise ValueError(
                f"model {name_or_path!r} has no weights shipped with "
                f"odin-ood: pass {named('weights=PATH', '--weights FILE')} "
                f"(a .pth/.th/.tar/.safetensors checkpoint)"
                + named(f", or use build({name_or_path!r}) for an untrained network", "")
            )
        from odin_ood.assets import asset_path

        return name_or_path, asset_path(shipped)
    path = Path(name_or_path)
    if not path.exists():
        raise ValueError(f"{name_or_path!r} is neither a known model name ({names()}) nor an existing file")
    if weights is not None:
        raise ValueError(
            f"pass either a checkpoint path or a model name with {named('weights=PATH', '--weights FILE')}, not both"
        )
    arch = read_metadata(path).get("arch")
    if arch is not None and arch not in _SPECS:
        raise ValueError(f"{name_or_path!r} declares unknown architecture {arch!r}; expected one of {names()}")
    return arch, path


def _classes_in(name: str, state: dict[str, torch.Tensor]) -> int | None:
    """Output size of the classifier stored in ``state`` (None if that layer is absent)."""
    head = state.get(f"{spec(name).classifier}.weight")
    return int(head.shape[0]) if head is not None and head.dim() == 2 else None


def _recognise(state: dict[str, torch.Tensor], source: str) -> tuple[str, nn.Module]:
    """(name, a fresh network (:func:`build`) of the unique known architecture whose keys and shapes
    match ``state`` exactly. Only the candidates are built: an architecture whose classifier is in
    ``state`` and whose state dict has as many tensors as ``state`` (``ModelSpec.tensors``, BatchNorm's
    ``num_batches_tracked`` aside), which an exact match must. For the zoo that is one network
    (two for an MNIST MLP's checkpoint: LeNet's classifier ``fc2`` is a hidden layer of the MLP)."""
    tensors = sum(not k.endswith("num_batches_tracked") for k in state)
    matches = [
        (name, model)
        for name, s in _SPECS.items()
        if s.tensors == tensors and (model := _candidate(name, state)) is not None
    ]
    if len(matches) != 1:
        raise ValueError(
            f"cannot tell the architecture of {source} from its keys "
            f"(matches: {[name for name, _ in matches] or 'none'}); "
            f"{named('call load(NAME, weights=PATH)', 'pass --model NAME --weights FILE')} with NAME one of {names()}"
        )
    return matches[0]


def _candidate(name: str, state: dict[str, torch.Tensor]) -> nn.Module | None:
    """``name`` built for ``state``'s number of classes when its keys and shapes match ``state``."""
    classes = _classes_in(name, state)
    if classes is None or classes < 2:
        return None
    model = build(name, classes)
    return None if mismatch_report(model, state) else model
