"""Argument checks shared by the public API: each failure names the argument and the problem."""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

_COMMAND_LINE = contextvars.ContextVar("odin_ood_command_line", default=False)
_TRACING: contextvars.ContextVar[bool] = contextvars.ContextVar("odin_ood_tracing", default=False)


@contextlib.contextmanager
def tracing() -> Iterator[None]:
    """While a graph is traced (:mod:`odin_ood.export`), :func:`check_batch` checks shapes and
    dtypes but not values: a traced tensor's values are not known, and reading them would bake
    one batch's answer into the graph. The graph's caller checks its inputs."""
    token = _TRACING.set(True)
    try:
        yield
    finally:
        _TRACING.reset(token)


def short(v: object, limit: int = 60) -> str:
    """repr(v) cut to ``limit`` characters (safe for ints of any size); a cut string keeps its closing quote."""
    text = f"<int of {v.bit_length()} bits>" if isinstance(v, int) and abs(v) > 10**30 else repr(v)
    if len(text) <= limit:
        return text
    quote = text[-1] if isinstance(v, str) else ""
    return text[: limit - 3 - len(quote)] + "..." + quote


def named(api: str, flag: str) -> str:
    """How an error message names an argument: ``flag`` (e.g. ``--weights FILE``) while the
    command line runs (:func:`command_line_wording`), else ``api`` (e.g. ``weights=PATH``)."""
    return flag if _COMMAND_LINE.get() else api


@contextlib.contextmanager
def command_line_wording() -> Iterator[None]:
    """Within this block, :func:`named` gives command-line wording (used by ``odin-ood``'s main)."""
    token = _COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


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
    if not _TRACING.get() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


# The ranges inside which ODIN's maths stays finite and meaningful in float32: logits / T stays
# finite for any trained network's logits when T >= 1e-3, and beyond T = 1e6 every softmax is
# uniform to float32 precision (the paper's grid is 1 ... 1000). epsilon is in pixel units, where
# pixels lie in [0, 1] (the paper's grid is 0 ... 0.004).
TEMPERATURE_RANGE = (1e-3, 1e6)
EPSILON_RANGE = (0.0, 1.0)


def check_temperature(temperature: float, name: str = "temperature") -> float:
    t = _number(temperature, name)
    low, high = TEMPERATURE_RANGE
    if not low <= t <= high:
        raise ValueError(f"{name} must be a finite number in [{low:g}, {high:g}], got {t!r}")
    return t


def check_epsilon(epsilon: float, name: str = "epsilon") -> float:
    e = _number(epsilon, name)
    low, high = EPSILON_RANGE
    if not low <= e <= high:
        raise ValueError(f"{name} must be a finite number in [{low:g}, {high:g}] (pixel units), got {e!r}")
    return e


def check_number(value: object, name: str, low: float, high: float, open_low: bool = False) -> float:
    """A finite number in [low, high] ((low, high] when ``open_low``)."""
    v = _number(value, name)
    if not (math.isfinite(v) and (low < v if open_low else low <= v) and v <= high):
        where = f"{'(' if open_low else '['}{low:g}, {high:g}]"
        raise ValueError(f"{name} must be a finite number in {where}, got {v!r}")
    return v


def _number(value: Any, name: str) -> float:
    """A real number (a Python, numpy or 0-d torch scalar; not a bool or a string) as a float;
    NaN passes through to the caller's range check."""
    if value is None or isinstance(value, (bool, str, bytes)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {short(value)}")
    try:
        return float(value)
    except OverflowError:  # an int too large for a float
        return math.inf
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}") from None


def check_rate(value: float, name: str) -> float:
    v = _number(value, name)
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {v!r}")
    return v


def check_grid(values: Sequence[float], check: Callable[[Any, str], float], name: str) -> tuple[float, ...]:
    values = tuple(check(v, name) for v in values)
    if not values:
        raise ValueError(f"{name} must hold at least one value")
    return values


@overload
def channel_view(values: None, x: Tensor, name: str = ..., positive: bool = ...) -> None: ...
@overload
def channel_view(
    values: Sequence[float] | Tensor | float, x: Tensor, name: str = ..., positive: bool = ...
) -> Tensor: ...
def channel_view(
    values: Sequence[float] | Tensor | float | None, x: Tensor, name: str = "input_std", positive: bool = True
) -> Tensor | None:
    """Per-channel values shaped (1, C, 1, ...) to broadcast over x (N, C, ...)."""
    if values is None:
        return None
    s = torch.as_tensor(values, dtype=x.dtype, device=x.device).flatten()
    if s.numel() not in (1, x.shape[1]):
        raise ValueError(
            f"{name} has {s.numel()} values but the input has {x.shape[1]} channels (shape {tuple(x.shape)})"
        )
    if _TRACING.get():  # the values are the detector's, checked when it was fitted or loaded
        return s.view(1, -1, *([1] * (x.ndim - 2)))
    if not bool(torch.isfinite(s).all()) or (positive and bool((s <= 0).any())):
        raise ValueError(f"{name} must be finite{' and > 0' if positive else ''}, got {s.tolist()}")
    return s.view(1, -1, *([1] * (x.ndim - 2)))


def as_scores(scores: ArrayLike, name: str) -> np.ndarray:
    """A non-empty, finite, 1-D float64 array (accepts lists, numpy arrays and tensors)."""
    if hasattr(scores, "detach"):
        scores = scores.detach().cpu().numpy()
    a = np.asarray(scores, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty: both in- and out-of-distribution scores are needed")
    if not np.isfinite(a).all():
        raise NonFiniteScores(name, np.flatnonzero(~np.isfinite(a)).tolist())
    return a


class NonFiniteScores(ValueError):
    """Scores ``name`` hold NaN or infinite values at ``positions`` (indices into the array)."""

    def __init__(self, name: str, positions: list[int]) -> None:
        super().__init__(
            f"{name} contains NaN or infinite values (at {len(positions)} position(s), first {positions[0]})"
        )
        self.name, self.positions = name, positions


def readable(n: int) -> str:
    """``n`` bytes in MiB below 1 GiB, else GiB (``"10.0 MiB"``, ``"1.50 GiB"``)."""
    return f"{n / 2**20:.1f} MiB" if n < 1 << 30 else f"{n / 2**30:.2f} GiB"
