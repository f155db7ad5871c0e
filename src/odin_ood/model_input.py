"""Pixels or the model's own input: how the scoring functions and :class:`odin_ood.Detector` read ``x``.

A model from :func:`odin_ood.models.load` takes the normalised image ``(p - input_mean) /
input_std`` of pixels ``p`` in [0, 1], and says so in its ``input_mean``/``input_std``
attributes; ``odin_ood.data.load`` gives pixels in [0, 1]. Fed those pixels unnormalised, the
mnist-lenet scores MNIST vs notMNIST at FPR@95 96.7% and AUROC 40.3% instead of 4.0% and 99.1%,
with nothing to say so. So every scoring function takes ``normalise``:

* ``"auto"`` (default): when the model declares a normalisation other than the identity and
  ``x`` lies within [0, 1], ``x`` is pixels and is normalised with the model's statistics;
  otherwise ``x`` is taken as the model's input, as it is (a normalised batch almost always
  holds values below 0: one lies within [0, 1] only if every one of its pixels is at least the
  mean; measured with the models' statistics, 0 of the 10,000 MNIST and notMNIST test images,
  0 of 3,260 Omniglot, 0 of 1,000 CIFAR-10, 0 of 10,000 TinyImageNet (resize) and 1 of 10,000
  TinyImageNet (crop) images do, and no batch of 128 of any of them (the MNIST-sized sets are
  checked by ``tests/test_model_input.py``).
* ``True``: ``x`` is pixels in [0, 1] (refused otherwise) and is normalised.
* ``False``: ``x`` is the model's input, as it is (what ``odin-ood score``/``serve`` pass: their
  images are normalised by :mod:`odin_ood.preprocess`).

Normalising gives exactly the tensor ``(x - mean) / std`` (the preprocessing's arithmetic), and
epsilon stays in pixel units: the perturbation step is divided by the same std, as the paper's code.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, IterableDataset

from odin_ood._checks import channel_view, check_batch
from odin_ood.batching import Data, iter_batches

NORMALISE = ("auto", True, False)


def check_normalise(normalise: object) -> str | bool:
    if not any(normalise is v or normalise == v and isinstance(normalise, str) for v in NORMALISE):
        raise ValueError(f"normalise must be 'auto', True or False, got {normalise!r}")
    return normalise  # type: ignore[return-value]


def declared(model: nn.Module, mean: Sequence[float] | None = None,
             std: Sequence[float] | None = None) -> tuple[Sequence[float], Sequence[float]] | None:
    """(mean, std) that ``model`` takes its pixels through: ``mean``/``std`` if given, else its
    ``input_mean``/``input_std`` attributes; None when either is unknown or they are the identity."""
    mean = mean if mean is not None else getattr(model, "input_mean", None)
    std = std if std is not None else getattr(model, "input_std", None)
    if mean is None or std is None:
        return None
    m, s = torch.as_tensor(mean, dtype=torch.float64), torch.as_tensor(std, dtype=torch.float64)
    return None if bool((m == 0).all() and (s == 1).all()) else (mean, std)


def model_input(x: Tensor, stats: tuple[Sequence[float], Sequence[float]] | None, normalise: str | bool,
                name: str = "x") -> tuple[Tensor, bool]:
    """(the model's input for ``x``, whether it was normalised) under ``normalise`` (module docstring)."""
    check_normalise(normalise)
    if normalise is False or stats is None:
        if normalise is True and stats is None:
            raise ValueError("normalise=True, but the model declares no input_mean/input_std: pass input_mean= "
                             "and input_std=, or normalise=False")
        return x, False
    pixels = bool(x.min() >= 0) and bool(x.max() <= 1)
    if not pixels:
        if normalise is True:
            raise ValueError(f"normalise=True takes pixels in [0, 1], but {name} holds values in "
                             f"[{float(x.min()):g}, {float(x.max()):g}]: pass normalise=False for inputs already "
                             "normalised")
        return x, False
    mean, std = stats
    return (x - channel_view(mean, x, "input_mean", positive=False)) / channel_view(std, x), True


def scoring_input(model: nn.Module, x: Tensor, normalise: str | bool,
                  input_std: Sequence[float] | Tensor | None) -> tuple[Tensor, Sequence[float] | Tensor | None]:
    """(x as the model takes it, the std that divides the step) for one scoring call: normalised
    with the model's own statistics when ``normalise`` says so (then the step's std is
    ``input_std`` or, if None, the model's ``input_std``)."""
    stats = declared(model)
    x, done = model_input(check_batch(x), stats, normalise)
    return x, (input_std if input_std is not None or not done else stats[1])


def model_data(data: Data, stats: tuple[Sequence[float], Sequence[float]] | None, normalise: str | bool,
               batch_size: int, name: str) -> Data:
    """``data`` as the model takes it: a tensor decided whole; any other data batch by batch, with
    the first batch deciding for all (a later batch that contradicts it is refused), so that one
    data set is never read half as pixels and half as normalised inputs."""
    check_normalise(normalise)
    if normalise is False or stats is None and normalise == "auto":
        return data
    if isinstance(data, Tensor):
        return model_input(data, stats, normalise, name)[0]
    return DataLoader(_Batches(data, stats, normalise, batch_size, name), batch_size=None)


class _Batches(IterableDataset):
    """The batches of ``data`` through :func:`model_input`, one decision for all of them."""

    def __init__(self, data: Data, stats, normalise: str | bool, batch_size: int, name: str) -> None:
        self.data, self.stats, self.normalise, self.batch_size, self.name = data, stats, normalise, batch_size, name

    def __iter__(self) -> Iterator[Tensor]:
        decided = None
        for x in iter_batches(self.data, self.batch_size, self.name):
            y, done = model_input(x, self.stats, self.normalise if decided is None else decided, self.name)
            if decided is None:
                decided = done
            yield y
