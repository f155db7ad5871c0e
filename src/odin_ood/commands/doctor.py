"""``odin-ood doctor``: what this installation can do, for a bug report or a first run.

    odin-ood doctor

Prints odin-ood's and Python's versions, torch's version and the device ``--device auto`` picks
(CUDA devices with their names, MPS, else the CPU and its threads), the data root
(``$ODIN_OOD_DATA``) and cache (``$ODIN_OOD_CACHE``), the core packages' versions, and every
optional extra (:mod:`odin_ood._utils.extras`): installed with its packages' versions, or what it lacks
and the ``pip install 'odin-ood[EXTRA]'`` line that brings it. Reads metadata only: no optional
package is imported, nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

from odin_ood._utils import extras
from odin_ood._version import __version__

CORE = ("torch", "numpy", "scikit-learn", "safetensors", "pillow", "tqdm", "matplotlib")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", default=None, help="the data root to report (default: $ODIN_OOD_DATA)")


def run(args: argparse.Namespace) -> int:
    print("\n".join(report(args.data_root, dict(os.environ))))
    return 0


def report(data_root: str | None, environ: dict[str, str]) -> list[str]:
    """The lines ``odin-ood doctor`` prints."""
    from odin_ood.data.cache import CACHE_ENV, cache_folder
    from odin_ood.data.dataset import DATA_ENV

    root = data_root if data_root is not None else environ.get(DATA_ENV)
    where = "--data-root" if data_root is not None else f"${DATA_ENV}"
    if root:
        state = "a folder" if Path(root).expanduser().is_dir() else "MISSING: no such folder"
        data = f"data root ({where}): {root} ({state}; `odin-ood datasets --root {root}` checks each dataset)"
    else:
        data = f"data root: none (${DATA_ENV} is not set; dataset names such as mnist need --data-root DIR)"
    lines = [
        f"odin-ood {__version__} on Python {platform.python_version()} ({sys.executable}), {platform.platform()}",
        device_line(),
        data,
        f"cache: {cache_folder(environ.get(CACHE_ENV) or None)} "
        f"({'from $' + CACHE_ENV if environ.get(CACHE_ENV) else '$' + CACHE_ENV + ' unset: the default'})",
        "core: " + ", ".join(f"{p} {extras.version(p) or 'MISSING'}" for p in CORE),
        "optional extras (pip install 'odin-ood[NAME]'):",
    ]
    width = max(map(len, extras.EXTRAS))
    for extra, (packages, purpose) in extras.EXTRAS.items():
        lacking = extras.missing(extra)
        if lacking:
            state = f"not installed (lacks {', '.join(lacking)}): pip install 'odin-ood[{extra}]'"
        else:
            state = "installed: " + ", ".join(f"{p} {extras.version(p) or '(version unknown)'}" for p in packages)
        lines.append(f"  {extra:<{width}}  {purpose}; {state}")
    return lines


def device_line() -> str:
    """torch's version and what ``--device auto`` runs on."""
    import torch

    from odin_ood._utils.devices import resolve_device

    device = resolve_device("auto")
    if device.type == "cuda":
        names = ", ".join(f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count()))
        where = f"CUDA {torch.version.cuda}: {names}"
    elif device.type == "mps":
        where = "Apple MPS"
    else:
        where = f"the CPU, {torch.get_num_threads()} threads (no CUDA or MPS device)"
    return f"torch {torch.__version__}; --device auto runs on {where}"
