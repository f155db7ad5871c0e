"""Weight initialisation shared by the CIFAR architectures."""

from __future__ import annotations

from torch import nn


def he_init(model: nn.Module) -> None:
    """He-normal convolutions, ``W ~ N(0, 2 / (k*k*c_out))`` (fan-out, as in the DenseNet and WRN
    papers' code), unit BatchNorm scale, zero BatchNorm shift and zero linear bias."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
