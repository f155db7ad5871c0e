"""odin-ood: ODIN out-of-distribution detection (Liang, Li & Srikant, ICLR 2018).

Higher scores mean more in-distribution. The ODIN score lives in :mod:`odin_ood.scores`, the
paper's metrics in :mod:`odin_ood.metrics`, the (T, epsilon) search in :mod:`odin_ood.tuning`
and the fitted detector in :mod:`odin_ood.detector`.

The public names below are imported on first use (PEP 562), so ``import odin_ood.cli`` does not
load torch: the command line sets its OpenMP defaults before torch loads the OpenMP runtime
(:func:`odin_ood._utils.devices.set_cpu_env_defaults`).
"""

from __future__ import annotations

import importlib
from typing import Any

from odin_ood import _moved
from odin_ood._version import __version__

_moved.install()  # the module paths of before the core was grouped into packages, for one release

_PUBLIC = {
    "Detector": "odin_ood.detector",
    "PAPER_EPSILONS": "odin_ood.tuning.grid",
    "PAPER_TEMPERATURES": "odin_ood.tuning.grid",
    "TuningResult": "odin_ood.tuning.grid",
    "energy_odin_scores": "odin_ood.scores.energy",
    "energy_scores": "odin_ood.scores.energy",
    "fingerprint": "odin_ood.detector.fingerprint",
    "maxlogit_scores": "odin_ood.scores.energy",
    "msp_scores": "odin_ood.scores.odin",
    "odin_scores": "odin_ood.scores.odin",
    "tune": "odin_ood.tuning.grid",
}
__all__ = [*sorted(_PUBLIC), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
