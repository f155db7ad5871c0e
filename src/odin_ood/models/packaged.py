"""Classifiers packaged with their computation: TorchScript archives and ``torch.export`` programs.

Both formats carry the network's graph as well as its weights, so no architecture name is needed
to load them. **Both run code from the file**: a TorchScript archive holds TorchScript source that
is compiled and executed, and ``torch.export.load`` unpickles parts of a ``.pt2`` archive with
``weights_only=False``. So they are loaded only when the user names the format
(``torchscript:PATH``, a ``.ts``/``.torchscript`` file, ``export:PATH`` or a ``.pt2`` file); a file
given as a plain checkpoint (``.pt``, ``.pth``, ...) that turns out to be one of them is refused
with that hint, never executed.

ODIN needs the gradient of the loss with respect to the input; both formats keep ATen operators,
which autograd differentiates like an eager module (tests/test_models_sources.py compares ODIN
scores with the eager model's).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch
from torch import nn

TORCHSCRIPT_SUFFIXES = (".ts", ".torchscript")
EXPORT_SUFFIXES = (".pt2",)


class Packaged(nn.Module):
    """A loaded TorchScript module or exported program, usable as an ordinary ``nn.Module``.

    An exported program's train/eval behaviour is fixed when it is exported (``torch.export``
    refuses ``.train()``/``.eval()``), so for those ``train(mode)`` only records the flag;
    TorchScript modules follow it as eager modules do. Export in eval mode.
    """

    def __init__(self, inner: nn.Module, packaging: str) -> None:
        super().__init__()
        self.inner = inner
        self.packaging = packaging

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)

    def train(self, mode: bool = True) -> Packaged:
        if self.packaging == "torchscript":
            return super().train(mode)
        self.training = mode
        return self


def packaging_of(path: Path) -> str | None:
    """``"torchscript"`` or ``"export"`` when the file's contents are such an archive (read from
    the zip's member names only; nothing is loaded), else None."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    if any(n.split("/", 1)[-1] == "archive_format" for n in names):
        return "export"
    if any("/code/__torch__" in n for n in names):
        return "torchscript"
    return None


def load_packaged(path: Path, packaging: str, map_location: str | torch.device = "cpu") -> Packaged:
    """Load a TorchScript archive (``packaging="torchscript"``) or a ``torch.export`` program
    (``"export"``) from ``path``. Runs code from the file: see the module docstring."""
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    found = packaging_of(path)
    if found != packaging:
        what = "a TorchScript archive" if packaging == "torchscript" else "a torch.export program (.pt2)"
        raise ValueError(f"{str(path)!r} is not {what}" + (f" (it is a {found} archive)" if found else ""))
    try:
        if packaging == "torchscript":
            inner = torch.jit.load(str(path), map_location=map_location)
        else:
            inner = torch.export.load(str(path)).module().to(map_location)
    except Exception as exc:  # torch raises many types for damaged archives
        raise ValueError(
            f"cannot load {packaging} archive {str(path)!r}: {type(exc).__name__}: {_first_line(exc)}"
        ) from None
    return Packaged(inner, packaging)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
