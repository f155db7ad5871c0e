"""The ``torch`` runtime: the library's eager scoring, on the model's own device."""

from __future__ import annotations

import os

import torch
from torch import Tensor

from odin_ood.detector import Detector
from odin_ood.preprocess import Preprocessing, normalise
from odin_ood.scores import model_device
from odin_ood.scores.precision import eager_support


class EagerRuntime:
    """``detector.outputs_for_model_input(normalise(pixels))``: the preprocessing normalises, the
    detector takes that as the model's input whatever its ``normalise``; any number of rows, in
    batches of ``batch_size``, at the detector's precision (refused where the device has no such
    arithmetic)."""

    name = "torch"
    fixed_batch = False
    exact = True

    def __init__(
        self,
        detector: Detector,
        spec: Preprocessing,
        threads: int | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> None:
        problem = eager_support(detector.precision, model_device(detector.model, torch.device("cpu")))
        if problem is not None:
            raise ValueError(f"--runtime torch --precision {detector.precision}: {problem}")
        self.detector, self.spec = detector, spec

    @property
    def batch_size(self) -> int:
        return self.detector.batch_size

    def outputs(self, pixels: Tensor) -> dict[str, Tensor]:
        return self.detector.outputs_for_model_input(normalise(pixels, self.spec))
