"""Where the library runs: the device named on the command line (``"auto"`` picks one), and the
CPU runtime defaults of the command line.

**OpenMP wait policy.** torch's CPU kernels run on an OpenMP pool whose idle threads, by
default, spin for a while at every barrier. With other work on the machine (a laptop, a CI
runner, several jobs) a spinning thread holds a core that the thread it waits for needs: ODIN on
ResNet-20 with 2 threads ran at 0.20-0.25 of the 1-thread speed (benchmarks/RESULTS.md,
bench_threads). ``OMP_WAIT_POLICY=PASSIVE`` makes waiting threads sleep instead, which recovered
the loss. The runtime reads the variable once, when torch loads it, so
:func:`set_cpu_env_defaults` must run before ``import torch``: the ``odin-ood`` entry point
(:mod:`odin_ood.cli`) calls it first; library users set the variable in their environment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

CPU_ENV_DEFAULTS: dict[str, str] = {"OMP_WAIT_POLICY": "PASSIVE"}


def set_cpu_env_defaults(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set each variable of :data:`CPU_ENV_DEFAULTS` that ``environ`` does not already set (a
    user's own value wins); returns those set. Has no effect on a runtime already loaded, so it
    returns {} once torch is imported."""
    if "torch" in sys.modules:
        return {}
    added = {k: v for k, v in CPU_ENV_DEFAULTS.items() if k not in environ}
    environ.update(added)
    return added


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else MPS, else CPU; anything else as given."""
    import torch

    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
