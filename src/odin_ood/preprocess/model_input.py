"""Pixels or the model's input: how the scoring functions and :class:`odin_ood.Detector` read ``x``.

A model from :func:`odin_ood.models.load` takes the normalised image ``(p - input_mean) /
input_std`` of pixels ``p`` in [0, 1], and says so in its ``input_mean``/``input_std``
attributes; ``odin_ood.data.load`` gives pixels in [0, 1]. Fed those pixels unnormalised, the
mnist-lenet scores MNIST vs notMNIST at FPR@95 96.7% and AUROC 40.3% instead of 4.0% and 99.1%,
with nothing to say so. So every scoring function takes ``normalise``, and what it says is decided
once, from what the caller and the model state, never from the data: every image of a call, of
every batch of a DataLoader, and of fit, score and predict on one :class:`~odin_ood.Detector` is
read the same way, whatever the other images are and in whatever order they come.

* ``"auto"`` (default): pixels when the model (or the detector's ``input_mean``/``input_std``)
  declares a normalisation other than the identity, else the model's input as it is.
* ``True``: pixels (refused for a model that declares no normalisation).
* ``False``: ``x`` is the model's input, as it is (what ``odin-ood fit`` passes, and ``score`` and
  ``serve`` through :meth:`~odin_ood.Detector.outputs_for_model_input`: their images are
  normalised by :mod:`odin_ood.preprocess`; ``odin-ood demo`` passes pixels with ``True``).

Pixels are checked, per call (per batch of a DataLoader) and never to decide anything: values in
[-PIXEL_TOLERANCE, 1 + PIXEL_TOLERANCE] = [-0.5, 1.5] are pixels whose overshoot comes from
resampling, clamped to [0, 1] first (one pass of torch's bicubic, a = -0.75, maps [0, 1] into
[-0.4453125, 1.4453125]: at offset 1/2 its weights are (-3/32, 19/32, 19/32, -3/32), so
2 * 3/16 * 19/16 in 2-D); any value outside is refused, naming the range and ``normalise=False``,
rather than read another way (values in [0, 255], or inputs normalised by hand, given under
"auto"). Inputs normalised by hand lie outside that range in every batch of 128 of the MNIST,
notMNIST and Omniglot test images (the LeNet's statistics) and of the 1,000 lossless CIFAR-10
(ResNet-20's); a lone one rarely lies inside (8 of the 10,000 notMNIST letters;
``tests/test_preprocess_model_input.py``): pass ``normalise=False`` for them, not "auto".

Normalising gives exactly the tensor ``(clamp(x, 0, 1) - mean) / std`` (the preprocessing's
arithmetic; the clamp changes nothing in [0, 1]), and epsilon stays in pixel units: the
perturbation step is divided by the same std, as the paper's code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, IterableDataset

from odin_ood._utils.batching import Data, iter_batches
from odin_ood._utils.checks import channel_view, check_batch
from odin_ood.preprocess.spec import Preprocessing, close_values, floats

NORMALISE = ("auto", True, False)
PIXEL_TOLERANCE = 0.5  # how far outside [0, 1] pixels may overshoot (resampling) and still be pixels, clamped


def check_normalise(normalise: object) -> str | bool:
    """One of :data:`NORMALISE`: the string "auto" or a Python bool (not 1, 0 or a numpy bool)."""
    if isinstance(normalise, bool) or (isinstance(normalise, str) and normalise in NORMALISE):
        return normalise
    raise ValueError(f"normalise must be 'auto', True or False, got {normalise!r}")


class Declared(NamedTuple):
    """What a model says about its input, None where it does not say: the
    :class:`~odin_ood.preprocess.spec.Preprocessing` attached at load, the input size (C, H, W) and
    the per-channel mean and std its pixels go through."""

    preprocessing: Preprocessing | None
    shape: tuple[int, ...] | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None


def declared_input(model: nn.Module) -> Declared:
    """The one reader of what a model declares about its input (everything in odin-ood asks here).

    A model from :func:`odin_ood.models.load` carries its :class:`Preprocessing` as
    ``model.preprocessing``, attached once at load by whichever source knows it (:func:`attach`:
    the zoo, torchvision's weights or timm's data config, a transformers image processor, an ONNX
    file's metadata, the user's ``input_shape``/``input_mean``/``input_std``), and for
    compatibility the same values as ``input_shape``, ``input_mean`` and ``input_std`` attributes. A
    model built by hand may carry only those attributes: they are read the same way. Attributes
    that contradict the attached preprocessing (changed after load) are refused (``ValueError``),
    never one silently preferred."""
    shape, mean, std = (getattr(model, name, None) for name in ("input_shape", "input_mean", "input_std"))
    shape = None if shape is None else tuple(int(s) for s in shape)
    mean, std = floats(mean), floats(std)
    attached = getattr(model, "preprocessing", None)
    if not isinstance(attached, Preprocessing):
        return Declared(None, shape, mean, std)
    for name, said, has in (("input_mean", mean, attached.mean), ("input_std", std, attached.std)):
        if said is not None and not close_values(said, has):
            raise ValueError(
                f"the model's {name} {said} contradicts its preprocessing's {name[6:]} {has} (attached "
                f"at load): change model.preprocessing, not model.{name}"
            )
    if shape is not None and shape != attached.input_shape:
        raise ValueError(
            f"the model's input_shape {shape} contradicts its preprocessing's {attached.input_shape} "
            "(attached at load): change model.preprocessing, not model.input_shape"
        )
    return Declared(attached, attached.input_shape, attached.mean, attached.std)


def declare(model: nn.Module, **values: Any) -> None:
    """Set what ``model`` says about itself as plain attributes (``input_shape``, ``input_mean``,
    ``input_std``, ``preprocessing``; the loaders' ``arch``, ``num_classes``, ``class_names``), read
    back by :func:`declared_input`. The one writer: ``nn.Module`` types any other attribute it is
    given as a parameter, buffer or submodule."""
    for name, value in values.items():
        setattr(model, name, value)


def of_model(model: nn.Module) -> Preprocessing | None:
    """The preprocessing a model declares (:func:`declared_input`): the one attached at load, else
    a ``none`` resize at its ``input_shape`` with its ``input_mean``/``input_std``; None when it
    does not say its input size."""
    d = declared_input(model)
    if d.preprocessing is not None or d.shape is None:
        return d.preprocessing
    return Preprocessing(d.shape, mean=d.mean, std=d.std)


def attach(model: nn.Module, library: Preprocessing | None = None) -> Preprocessing | None:
    """Set ``model.preprocessing`` from what its source said, once, at load: ``library``'s geometry
    (its resize, interpolation and resize size, scaled to the model's input size) with the model's
    ``input_mean``/``input_std``, else a ``none`` resize at its ``input_shape``; None when the input
    size is unknown. Called by :func:`odin_ood.models.sources.describe` and
    :func:`odin_ood.models.zoo.build`, after they set the attributes."""
    declare(model, preprocessing=None)
    own = of_model(model)
    if own is not None and library is not None:
        own = dataclasses.replace(library.for_input_shape(own.input_shape), mean=own.mean, std=own.std)
    declare(model, preprocessing=own)
    return own


def declared(
    model: nn.Module, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> tuple[Sequence[float], Sequence[float]] | None:
    """(mean, std) that ``model`` takes its pixels through: ``mean``/``std`` if given, else what the
    model declares (:func:`declared_input`); None when either is unknown or they are the identity."""
    said = declared_input(model)
    mean = mean if mean is not None else said.mean
    std = std if std is not None else said.std
    if mean is None or std is None:
        return None
    m, s = torch.as_tensor(mean, dtype=torch.float64), torch.as_tensor(std, dtype=torch.float64)
    return None if bool((m == 0).all() and (s == 1).all()) else (mean, std)


def reads_pixels(stats: tuple[Sequence[float], Sequence[float]] | None, normalise: str | bool) -> bool:
    """Whether ``x`` is pixels to normalise with ``stats`` (the declared (mean, std), or None): decided
    by ``normalise`` and ``stats`` alone, never by the data (module docstring)."""
    check_normalise(normalise)
    if normalise is True and stats is None:
        raise ValueError(
            "normalise=True, but the model declares no input_mean/input_std: pass input_mean= "
            "and input_std=, or normalise=False"
        )
    return normalise is not False and stats is not None


def pixels(x: Tensor, normalise: str | bool, name: str = "x") -> Tensor:
    """``x`` as pixels in [0, 1]: unchanged inside, clamped within ``PIXEL_TOLERANCE`` of it
    (resampling overshoot), refused beyond (``ValueError`` naming ``normalise=False``)."""
    low, high = (float(v) for v in torch.aminmax(x))
    if low >= 0.0 and high <= 1.0:
        return x
    if low >= -PIXEL_TOLERANCE and high <= 1.0 + PIXEL_TOLERANCE:
        return x.clamp(0.0, 1.0)
    said = (
        "normalise=True takes pixels in [0, 1]"
        if normalise is True
        else "input_mean/input_std are declared, so normalise='auto' reads it as pixels"
    )
    raise ValueError(
        f"{name} holds values in [{low:g}, {high:g}], not pixels in [0, 1] (overshoot within "
        f"{PIXEL_TOLERANCE:g} is clamped): {said}; pass normalise=False if it is already the model's "
        "normalised input"
    )


def model_input(
    x: Tensor, stats: tuple[Sequence[float], Sequence[float]] | None, normalise: str | bool, name: str = "x"
) -> tuple[Tensor, bool]:
    """(the model's input for ``x``, whether it was normalised) under ``normalise`` (module docstring)."""
    if not reads_pixels(stats, normalise) or stats is None:  # reads_pixels is False without stats
        return x, False
    mean, std = stats
    x = pixels(x, normalise, name)
    return (x - channel_view(mean, x, "input_mean", positive=False)) / channel_view(std, x), True


def scoring_input(
    model: nn.Module, x: Tensor, normalise: str | bool, input_std: Sequence[float] | Tensor | None
) -> tuple[Tensor, Sequence[float] | Tensor | None]:
    """(x as the model takes it, the std that divides the step) for one scoring call: normalised
    with the model's own statistics when ``normalise`` says so (then the step's std is
    ``input_std`` or, if None, the model's std)."""
    stats = declared(model)
    x, done = model_input(check_batch(x), stats, normalise)
    return x, (stats[1] if done and input_std is None and stats is not None else input_std)


def model_data(
    data: Data, stats: tuple[Sequence[float], Sequence[float]] | None, normalise: str | bool, batch_size: int, name: str
) -> Data:
    """``data`` as the model takes it, every image read the same way (:func:`reads_pixels`): a
    tensor checked whole before anything is scored; any other data batch by batch, a batch that is
    not pixels refused when it comes (named by its position, from 1)."""
    if not reads_pixels(stats, normalise):
        return data
    if isinstance(data, Tensor):
        return model_input(check_batch(data, name), stats, normalise, name)[0]
    return DataLoader(_Batches(data, stats, normalise, batch_size, name), batch_size=None)


class _Batches(IterableDataset):
    """The batches of ``data`` through :func:`model_input`, each read as pixels."""

    def __init__(
        self,
        data: Data,
        stats: tuple[Sequence[float], Sequence[float]] | None,
        normalise: str | bool,
        batch_size: int,
        name: str,
    ) -> None:
        self.data, self.stats, self.normalise, self.batch_size, self.name = data, stats, normalise, batch_size, name

    def __iter__(self) -> Iterator[Tensor]:
        for k, x in enumerate(iter_batches(self.data, self.batch_size, self.name), start=1):
            yield model_input(x, self.stats, self.normalise, f"{self.name} (batch {k})")[0]
