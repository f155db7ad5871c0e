"""Module paths that moved in 0.x (the core grouped into packages), importable for one release.

``import odin_ood.successors`` (or ``from odin_ood.shared_search import shared_search``) still
works and warns (``DeprecationWarning``) naming the new path: an import hook serves each old path
as a module holding the public and private names of its new home(s), so nothing else is kept at
the package root. Where a package kept the old name (``odin_ood.scores``, ``odin_ood.tuning``,
``odin_ood.metrics``, ``odin_ood.preprocess``, ``odin_ood.detector``), its ``__init__`` re-exports
the old module's names and nothing warns.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Sequence
from typing import Any

MOVED: dict[str, tuple[str, ...]] = {
    "odin_ood.successors": ("odin_ood.scores.energy",),
    "odin_ood.score_family": ("odin_ood.scores.family", "odin_ood.tuning.family"),
    "odin_ood.memory": ("odin_ood.scores.memory",),
    "odin_ood.shared_search": ("odin_ood.tuning.searches", "odin_ood.tuning.shared"),
    "odin_ood.search": ("odin_ood.tuning.searches", "odin_ood.tuning.halving"),
    "odin_ood.calmetric": ("odin_ood.metrics.calmetric",),
    "odin_ood.model_input": ("odin_ood.preprocess.model_input",),
    "odin_ood.resampling": ("odin_ood.preprocess.resampling",),
    "odin_ood.fingerprint": ("odin_ood.detector.fingerprint",),
    "odin_ood.batching": ("odin_ood._utils.batching",),
    "odin_ood.devices": ("odin_ood._utils.devices",),
    "odin_ood.pass_progress": ("odin_ood._utils.progress",),
    "odin_ood._checks": ("odin_ood._utils.checks",),
    "odin_ood.extras": ("odin_ood._utils.extras",),
    "odin_ood.serving.engine": ("odin_ood.runtimes.batches",),
    "odin_ood.scaling.ray_data": ("odin_ood.commands.ray_data",),
}


class _Moved(types.ModuleType):
    """An old path's module: the names of its new home(s), the first home winning a clash.
    Callable when a home's function shares the module's name (``odin_ood.fingerprint``), so that
    importing the old submodule, which binds it on ``odin_ood``, leaves ``odin_ood.fingerprint(model)``
    working."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        function = self.__dict__.get(self.__name__.rsplit(".", 1)[1])
        if not callable(function):
            raise TypeError(f"module {self.__name__!r} is not callable")
        return function(*args, **kwargs)


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(
        self, name: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _Moved(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        homes = MOVED[module.__name__]
        warnings.warn(
            f"{module.__name__} is deprecated and will be removed in the next release: import from "
            f"{' or '.join(homes)}",
            DeprecationWarning,
            stacklevel=2,
        )
        for home in reversed(homes):
            module.__dict__.update(
                {k: v for k, v in vars(importlib.import_module(home)).items() if not k.startswith("__")}
            )
        module.__doc__ = f"Deprecated: moved to {', '.join(homes)}."


def install() -> None:
    """Serve the old paths (once per process)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
