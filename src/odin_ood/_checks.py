"""Argument checks shared by the public API: each failure names the argument and the problem."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor


def check_batch(x: object, name: str = "x") -> Tensor:
    """A non-empty floating batch of rank >= 2 (N, ...) with finite values."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"{name} must be a batch of shape (N, ...) with rank >= 2, got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)})")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def check_temperature(temperature: float, name: str = "temperature") -> float:
    t = float(temperature)
    if not math.isfinite(t) or t <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {temperature!r}")
    return t


def check_epsilon(epsilon: float, name: str = "epsilon") -> float:
    e = float(epsilon)
    if not math.isfinite(e) or e < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {epsilon!r}")
    return e


def check_rate(value: float, name: str) -> float:
    v = float(value)
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value!r}")
    return v


def check_grid(values: Sequence[float], check, name: str) -> tuple[float, ...]:
    values = tuple(check(v, name) for v in values)
    if not values:
        raise ValueError(f"{name} must hold at least one value")
    return values


def channel_view(
    values: Sequence[float] | Tensor | None, x: Tensor, name: str = "input_std", positive: bool = True
) -> Tensor | None:
    """Per-channel values shaped (1, C, 1, ...) to broadcast over x (N, C, ...)."""
    if values is None:
        return None
    s = torch.as_tensor(values, dtype=x.dtype, device=x.device).flatten()
    if s.numel() not in (1, x.shape[1]):
        raise ValueError(f"{name} has {s.numel()} values but the input has {x.shape[1]} channels (shape {tuple(x.shape)})")
    if not bool(torch.isfinite(s).all()) or (positive and bool((s <= 0).any())):
        raise ValueError(f"{name} must be finite{' and > 0' if positive else ''}, got {s.tolist()}")
    return s.view(1, -1, *([1] * (x.ndim - 2)))
