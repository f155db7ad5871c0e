"""A classifier that kills its own process the first time it scores in a Ray worker: the shipped
MNIST MLP with position-dependent rounding (:mod:`position_support`), whose ``forward`` SIGKILLs
the process when ``$ODIN_OOD_TEST_KILL_ONCE`` names a file that does not exist yet (it creates it
first) and the process is not ``$ODIN_OOD_TEST_DRIVER_PID``. A run that survives it loses no row."""

from __future__ import annotations

import os
import signal

import torch

from position_support import OddRowsMLP
from position_support import make as make_position_model


class KillOnceMLP(OddRowsMLP):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        marker = os.environ.get("ODIN_OOD_TEST_KILL_ONCE")
        if marker and str(os.getpid()) != os.environ.get("ODIN_OOD_TEST_DRIVER_PID") and not os.path.exists(marker):
            with open(marker, "w") as f:
                f.write(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return super().forward(x)


def make() -> KillOnceMLP:
    model = KillOnceMLP()
    base = make_position_model()
    model.load_state_dict(base.state_dict())
    for name in ("input_shape", "input_mean", "input_std"):
        setattr(model, name, getattr(base, name))
    return model.eval()
