"""The optional extras of ``pyproject.toml`` (``pip install 'odin-ood[serve]'``): which packages
each holds, which are installed here, and the one-line error that names the extra to install when
a path a user takes needs a package that is missing.

Each place that imports an optional package first calls :func:`require` (``odin-ood serve``,
``--runtime onnxruntime``/``openvino``, ``export``, ``torchvision:``/``timm:``/``hf:``/``onnx:``
models, ``--engine ray``, Parquet files); the command line also turns any other
``ModuleNotFoundError`` of a package listed here into that line (:func:`missing_extra_line`).
Nothing here imports an optional package: presence is ``importlib.util.find_spec``, versions are
the installed distributions' metadata.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Package:
    """A distribution pip installs (``name``) and its import names (any one present will do:
    python-multipart is ``python_multipart``, older releases ``multipart``)."""

    name: str
    modules: tuple[str, ...]


PACKAGES = {
    p.name: p
    for p in (
        Package("fastapi", ("fastapi",)),
        Package("uvicorn", ("uvicorn",)),
        Package("python-multipart", ("python_multipart", "multipart")),
        Package("pyarrow", ("pyarrow",)),
        Package("ray", ("ray",)),
        Package("torchvision", ("torchvision",)),
        Package("timm", ("timm",)),
        Package("transformers", ("transformers",)),
        Package("onnx", ("onnx",)),
        Package("onnxscript", ("onnxscript",)),
        Package("onnxruntime", ("onnxruntime",)),
        Package("openvino", ("openvino",)),
        Package("onnx2torch", ("onnx2torch",)),
    )
}

# extra -> (its packages, what it is for); the same lists as pyproject.toml's optional-dependencies
EXTRAS: dict[str, tuple[tuple[str, ...], str]] = {
    "serve": (("fastapi", "uvicorn", "python-multipart"), "odin-ood serve, the HTTP gate"),
    "parquet": (("pyarrow",), "Parquet inputs and score --output *.parquet"),
    "ray": (("ray", "pyarrow"), "score --engine ray (Ray Data)"),
    "torchvision": (("torchvision",), "--model torchvision:NAME"),
    "timm": (("timm",), "--model timm:NAME"),
    "hf": (("transformers",), "--model hf:PATH (transformers folders)"),
    "onnx2torch": (("onnx", "onnx2torch"), "--model onnx:PATH (ONNX graphs as torch modules)"),
    "onnx": (("onnx", "onnxscript"), "odin-ood export (the gate as one ONNX file)"),
    "onnxruntime": (("onnx", "onnxscript", "onnxruntime"), "--runtime onnxruntime"),
    "openvino": (("onnx", "onnxscript", "openvino"), "--runtime openvino"),
}


class MissingExtra(ImportError, ValueError):
    """A path needs an optional package that is not installed; the message is one line ending in
    the ``pip install 'odin-ood[EXTRA]'`` that brings it (a ``ValueError`` too, so the command line
    prints it as the command's one-line error)."""


def installed(package: str) -> bool:
    """Whether ``package`` (a key of :data:`PACKAGES`) can be found by ``import`` here."""
    for module in PACKAGES[package].modules:
        try:
            if importlib.util.find_spec(module) is not None:
                return True
        except (ImportError, ValueError):  # a parent package that fails, or a module set to None
            continue
    return False


def missing(extra: str) -> list[str]:
    """The packages of ``extra`` that are not installed."""
    return [p for p in EXTRAS[extra][0] if not installed(p)]


def message(extra: str, what: str, packages: list[str], otherwise: str = "") -> str:
    names = ", ".join(packages)
    return (
        f"{what} needs {names}, which {'is' if len(packages) == 1 else 'are'} not installed: "
        f"pip install 'odin-ood[{extra}]'" + (f" ({otherwise})" if otherwise else "")
    )


def require(extra: str, what: str, otherwise: str = "") -> None:
    """Raise :class:`MissingExtra` (one line: ``what`` needs ..., ``pip install 'odin-ood[extra]'``,
    then ``otherwise`` in brackets: another way) unless every package of ``extra`` is installed."""
    lacking = missing(extra)
    if lacking:
        raise MissingExtra(message(extra, what, lacking, otherwise), name=PACKAGES[lacking[0]].modules[0])


def import_optional(module: str, extra: str, what: str) -> Any:
    """``import module`` after :func:`require` (``extra``, ``what``). A package that is installed
    but does not import is a one-line ``ValueError`` too: a dependency of it missing (the extra
    brings it: ``ray[data]``'s pandas), or a build for another torch."""
    require(extra, what)
    try:
        return importlib.import_module(module)
    except Exception as exc:  # a binary mismatch with the installed torch raises OSError, RuntimeError, ...
        import torch

        why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        fix = (
            f"pip install 'odin-ood[{extra}]'"
            if isinstance(exc, ModuleNotFoundError)
            else f"install a {module.partition('.')[0]} build that matches torch {torch.__version__}"
        )
        raise ValueError(f"{what} needs {module}, which is installed but does not import here ({why}); {fix}") from None


def extra_of(module: str) -> tuple[str, str] | None:
    """(extra, package) for a missing import ``module`` (its top-level name) that an extra brings:
    the first extra listing it; None for anything else."""
    top = module.partition(".")[0]
    package = next((p.name for p in PACKAGES.values() if top in p.modules), None)
    if package is None:
        return None
    return next(((extra, package) for extra, (packages, _) in EXTRAS.items() if package in packages), None)


def missing_extra_line(exc: ImportError, what: str) -> str | None:
    """The one line for a ``ModuleNotFoundError`` raised below a command, when the module is part
    of an extra (else None: a real bug, left to its traceback)."""
    found = extra_of(exc.name or "") if isinstance(exc, ModuleNotFoundError) else None
    return None if found is None else message(found[0], what, [found[1]])


def version(package: str) -> str | None:
    """The installed version of ``package`` (a distribution name), or None."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def status() -> dict[str, list[str]]:
    """{extra: the packages it lacks here} for every extra (an empty list: installed)."""
    return {extra: missing(extra) for extra in EXTRAS}


def summary() -> str:
    """One line for ``odin-ood --help``: the extras installed and those not."""
    lacking = status()
    have = [e for e, m in lacking.items() if not m]
    lack = [e for e, m in lacking.items() if m]
    return (
        f"optional extras installed: {', '.join(have) or 'none'}; not installed: {', '.join(lack) or 'none'} "
        "(pip install 'odin-ood[NAME]'; odin-ood doctor lists versions)"
    )
