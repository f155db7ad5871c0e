"""Models that cannot become one traced ONNX graph: the shipped MNIST LeNet (same weights, same
fingerprint, so one detector file serves them all) with one construct added. ``--model
export_support:<factory>`` loads them (with this folder on the import path)."""

from __future__ import annotations

import torch

from odin_ood import models
from odin_ood.models.lenet import LeNet


class Branching(LeNet):
    """Data-dependent control flow: which logits it returns depends on the pixel values."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x)
        if x.mean() > 5.0:  # data-dependent control flow
            return -logits
        return logits


class BrightPixelCount(LeNet):
    """A data-dependent shape: the number of bright pixels, read from ``nonzero``'s length (a
    traced graph would keep the example's count for every image)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bright = len(torch.nonzero(x.flatten(1) > 2.0))
        return super().forward(x) * (1.0 + bright * 1e-4)


class TupleOutput(LeNet):
    """Returns (logits, input) instead of the logits."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        return super().forward(x), x


class InPlaceInput(LeNet):
    """Clamps its input in place (ODIN's input requires a gradient: autograd refuses, eagerly too)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.clamp_(min=-1.0)
        return super().forward(x)


class InverseErf(LeNet):
    """A monotone squashing of the logits with erfinv, which torch.onnx's exporter cannot translate."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.erfinv(torch.tanh(super().forward(x)) * 0.9)


class FixedBatch(LeNet):
    """Reads the batch size as a Python number and builds a shape from it (as code written for one
    deployment batch does): a graph of it holds one batch size, not a dynamic one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = int(x.shape[0])
        return super().forward(x).reshape(n, 10)


def _like_lenet(cls: type[LeNet]) -> LeNet:
    base = models.load("mnist-lenet")
    model = cls()
    model.load_state_dict(base.state_dict())
    for name in ("input_shape", "input_mean", "input_std", "num_classes"):
        setattr(model, name, getattr(base, name))
    return model.eval()


def branching() -> LeNet:
    return _like_lenet(Branching)


def bright_pixel_count() -> LeNet:
    return _like_lenet(BrightPixelCount)


def tuple_output() -> LeNet:
    return _like_lenet(TupleOutput)


def in_place_input() -> LeNet:
    return _like_lenet(InPlaceInput)


def inverse_erf() -> LeNet:
    return _like_lenet(InverseErf)


def fixed_batch() -> LeNet:
    return _like_lenet(FixedBatch)
