"""odin-ood: ODIN out-of-distribution detection (Liang, Li & Srikant, ICLR 2018).

Higher scores mean more in-distribution. The ODIN score lives in :mod:`odin_ood.scores`, the
paper's metrics in :mod:`odin_ood.metrics`, the (T, epsilon) search in :mod:`odin_ood.tuning`
and the fitted detector in :mod:`odin_ood.detector`.

The public names below are imported on first use (PEP 562), so ``import odin_ood.cli`` does not
load torch: the command line sets its OpenMP defaults before torch loads the OpenMP runtime
(:func:`odin_ood.devices.set_cpu_env_defaults`).
"""

from __future__ import annotations

import importlib
from typing import Any

from odin_ood._version import __version__

# the submodule odin_ood.fingerprint shares the function's name: bind the function now, so that
# importing the submodule later cannot leave the module object in its place
from odin_ood.fingerprint import fingerprint  # noqa: E402

_PUBLIC = {
    "Detector": "odin_ood.detector",
    "PAPER_EPSILONS": "odin_ood.tuning",
    "PAPER_TEMPERATURES": "odin_ood.tuning",
    "TuningResult": "odin_ood.tuning",
    "energy_odin_scores": "odin_ood.successors",
    "energy_scores": "odin_ood.successors",
    "maxlogit_scores": "odin_ood.successors",
    "msp_scores": "odin_ood.scores",
    "odin_scores": "odin_ood.scores",
    "tune": "odin_ood.tuning",
}
__all__ = sorted([*_PUBLIC, "fingerprint"]) + ["__version__"]


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
