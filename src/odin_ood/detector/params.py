"""The detector's constructor arguments in scikit-learn's shape, and their checks.

:class:`Params` gives ``get_params``/``set_params`` with the semantics of scikit-learn's
``BaseEstimator`` (the parameters are the constructor's arguments, read back unchanged from the
attributes of the same names; ``deep=True`` adds ``name__sub`` for a parameter that has
``get_params`` itself; ``set_params(name__sub=...)`` sets it there), so ``sklearn.base.clone``
works, without importing scikit-learn when odin-ood loads (it takes longer to import than torch).

:func:`check_params` checks every argument when ``fit`` (or ``Detector.from_dict``) runs, each
failure a ``ValueError`` or ``TypeError`` that names the argument and what was expected.
"""

from __future__ import annotations

import inspect
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from odin_ood._utils.checks import check_epsilon, check_grid, check_temperature, named, short
from odin_ood.metrics.detection import METRICS
from odin_ood.preprocess.model_input import check_normalise
from odin_ood.preprocess.spec import Preprocessing, close_values, float_tuple, floats
from odin_ood.scores.family import check_score
from odin_ood.scores.precision import check_precision
from odin_ood.tuning.grid import check_ood_free
from odin_ood.tuning.searches import check_search

MAX_BATCH_SIZE = 1 << 16
MAX_CHANNELS = 4096
MAX_INPUT_SIDE = 65_536


class Params:
    """``get_params``/``set_params`` over the constructor's arguments (module docstring)."""

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return sorted(
            p.name
            for p in signature.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's arguments, as given (``deep``: with those of nested estimators)."""
        out: dict[str, Any] = {}
        for name in self._param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params().items())
            out[name] = value
        return out

    def set_params(self, **params: Any) -> Params:
        """Set constructor arguments (``name__sub`` for a nested estimator's); checked at the next
        ``fit``. Returns ``self``."""
        valid = self.get_params(deep=True)
        nested: dict[str, dict[str, Any]] = defaultdict(dict)
        for key, value in params.items():
            name, delim, sub = key.partition("__")
            if name not in valid:
                raise ValueError(
                    f"invalid parameter {name!r} for {type(self).__name__}: valid parameters are {self._param_names()}"
                )
            if delim:
                nested[name][sub] = value
            else:
                setattr(self, name, value)
                valid[name] = value
        for name, sub_params in nested.items():
            valid[name].set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        shown = []
        for name in self._param_names():
            value = getattr(self, name, None)  # None: in repr() of a half-made detector
            if name in defaults and defaults[name] is not inspect.Parameter.empty and _same(value, defaults[name]):
                continue
            text = f"<{type(value).__name__}>" if isinstance(value, nn.Module) else short(value, 80)
            shown.append(f"{name}={text}")
        return f"{type(self).__name__}({', '.join(shown)})"


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a is b or a == b)
    except (TypeError, ValueError, RuntimeError):  # tensors compare element-wise
        return False


def check_params(det: Any, channels: int | None) -> None:
    """Every constructor argument of ``det`` (a :class:`odin_ood.Detector`) checked; ``channels``
    the model's C when known (per-channel values then have 1 or C entries)."""
    if not isinstance(det.model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(det.model).__name__}")
    for name, positive in (("input_std", True), ("input_mean", False)):
        check_channels(getattr(det, name), name, channels, positive)
    check_grid(det.temperatures, check_temperature, "temperatures")
    check_grid(det.epsilons, check_epsilon, "epsilons")
    check_objective(det.objective)
    check_batch_size(det.batch_size)
    check_clamp(det.clamp, channels)
    if det.input_shape is not None:
        check_input_shape(det.input_shape)
    check_score(det.score_family)
    check_ood_free(det.ood_free)
    check_normalise(det.normalise)
    check_search(det.search)
    check_precision(det.precision, named("precision", "--precision"))
    if not isinstance(det.optimize, bool):
        raise TypeError(f"optimize must be True or False, got {short(det.optimize)}")
    if det.preprocessing is not None:
        if not isinstance(det.preprocessing, Preprocessing):
            raise TypeError(
                f"preprocessing must be an odin_ood.preprocess.Preprocessing or None, got "
                f"{type(det.preprocessing).__name__}"
            )
        check_agrees(det.preprocessing, det.input_std, det.input_mean, det.input_shape)


def check_channels(v: Any, name: str, channels: int | None, positive: bool = False) -> tuple[float, ...] | None:
    """None, or one number or 1 or C finite numbers (> 0 when ``positive``), as floats."""
    return None if v is None else _channel_values(v, name, channels, positive)


def _channel_values(v: Any, name: str, channels: int | None, positive: bool = False) -> tuple[float, ...]:
    try:
        values = float_tuple(v)
    except (TypeError, ValueError, RuntimeError, OverflowError):
        raise ValueError(f"{name} must be one number or 1 or C numbers, got {short(v)}") from None
    allowed = {1, channels} if channels is not None else set(range(1, MAX_CHANNELS + 1))
    if len(values) not in allowed:
        raise ValueError(f"{name} has {len(values)} values; the model takes {channels or 'C'} channels (1 or C values)")
    if not all(math.isfinite(a) for a in values) or (positive and min(values) <= 0):
        raise ValueError(f"{name} must be finite{' and > 0' if positive else ''}, got {short(v)}")
    return values


def check_clamp(v: Any, channels: int | None) -> None:
    """None or (low, high), each a number or 1 or C numbers, low <= high."""
    if v is None:
        return
    if not isinstance(v, (tuple, list)) or len(v) != 2 or v[0] is None or v[1] is None:
        raise ValueError(f"clamp must be None or (low, high), got {short(v)}")
    low, high = (_channel_values(c, f"clamp[{k}]", channels) for k, c in enumerate(v))
    if 1 not in (len(low), len(high)) and len(low) != len(high):
        raise ValueError(f"clamp low has {len(low)} values and high {len(high)}: give 1 or C values each")
    if any(
        a > b
        for a, b in zip(
            low * len(high) if len(low) == 1 else low, high * len(low) if len(high) == 1 else high, strict=True
        )
    ):
        raise ValueError(f"clamp low {list(low)} exceeds high {list(high)}")


def check_input_shape(v: Any) -> tuple[int, ...]:
    """1 to 4 integer sizes, each in [1, 65536]."""
    if isinstance(v, (str, bytes)) or not isinstance(v, (Sequence, Tensor)) or not 1 <= len(v) <= 4:
        raise ValueError(f"input_shape must be 1 to 4 sizes (C, H, W), got {short(v)}")
    if not all(isinstance(a, int) and not isinstance(a, bool) and 1 <= a <= MAX_INPUT_SIDE for a in v):
        raise ValueError(f"input_shape sizes must be integers in [1, {MAX_INPUT_SIDE}], got {short(v)}")
    return tuple(v)


def check_objective(v: Any) -> str:
    if not isinstance(v, str) or v not in METRICS:
        raise ValueError(f"objective must be one of {sorted(METRICS)}, got {short(v)}")
    return v


def check_batch_size(value: Any, name: str = "batch_size") -> int:
    """An int in [1, MAX_BATCH_SIZE] (a larger batch would try to allocate absurd amounts of memory)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if not 1 <= value <= MAX_BATCH_SIZE:
        raise ValueError(f"{name} must lie in [1, {MAX_BATCH_SIZE}], got {short(value)}")
    return value


def check_agrees(p: Preprocessing, std: Any, mean: Any, shape: Sequence[int] | None) -> None:
    """Refuse an ``input_std``, ``input_mean`` or ``input_shape`` that the preprocessing contradicts."""
    for name, given, recorded in (("input_std", std, p.std), ("input_mean", mean, p.mean)):
        if given is not None and not close_values(floats(given), recorded):
            raise ValueError(f"{name} {floats(given)} disagrees with the preprocessing's {name[6:]} {recorded}")
    if shape is not None and tuple(shape) != p.input_shape:
        raise ValueError(f"input_shape {tuple(shape)} disagrees with the preprocessing's {p.input_shape}")
