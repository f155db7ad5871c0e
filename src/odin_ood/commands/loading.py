"""A fitted detector ready to score images, loaded from the options ``score`` and ``serve`` share:
the model (:class:`~odin_ood.commands.options.ModelOptions`), its detector file (fingerprint
checked) and the input spec the detector's model takes."""

from __future__ import annotations

import argparse
import os

import torch

from odin_ood.detector import Detector
from odin_ood.commands.options import ModelOptions
from odin_ood.commands.options import add_model_arguments as add_options
from odin_ood.preprocess import InputSpec
from odin_ood.runtimes import RUNTIMES, Runtime, load_runtime


def add_detector_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by ``score`` and ``serve``: which detector, :class:`ModelOptions` and
    the scoring runtime."""
    parser.add_argument("--detector", required=True, help="fitted detector: a folder holding detector.json, or a .json file")
    add_options(parser)
    parser.add_argument("--runtime", choices=sorted(RUNTIMES), default="torch",
                        help="where the gate runs: torch (eager), or the exported ONNX graph on onnxruntime or "
                             "openvino (optional packages; exported once per detector and batch size, cached under "
                             "$ODIN_OOD_CACHE/export)")


def load_detector(options: ModelOptions, detector: str | os.PathLike,
                  device: torch.device | None = None) -> tuple[Detector, InputSpec]:
    """The model (``options.load_model``), its detector (``Detector.load``, fingerprint checked)
    and the input spec (the model's normalisation, see :func:`input_spec`)."""
    model = options.load_model(device)
    fitted = Detector.load(os.fspath(detector), model)
    if options.batch_size is not None:
        fitted.batch_size = options.batch_size
    return fitted, input_spec(fitted, resize=options.resize, max_side=options.max_side)


def load_scorer(options: ModelOptions, detector: str | os.PathLike, runtime: str = "torch",
                device: torch.device | None = None) -> tuple[Runtime, InputSpec]:
    """:func:`load_detector`, then the detector on the runtime called ``runtime``
    (:func:`odin_ood.runtimes.load_runtime`, with ``options.threads``)."""
    fitted, spec = load_detector(options, detector, device)
    return load_runtime(runtime, fitted, spec, threads=options.threads), spec


def input_spec(detector: Detector, resize: str | None = None, max_side: int = 4096) -> InputSpec:
    """The :class:`InputSpec` of a detector's model: its input size and the model's own
    ``input_mean``/``input_std`` (the statistics its weights were trained with: the single source
    of truth). The detector's recorded values serve a model that does not say; a detector fitted
    for another size or with other statistics is refused (its epsilon step assumed them)."""
    model = detector.model
    shape = getattr(model, "input_shape", None)
    if detector.input_shape is not None:
        if shape is not None and tuple(shape) != tuple(detector.input_shape):
            raise ValueError(f"the detector was fitted for inputs of size {tuple(detector.input_shape)} but the "
                             f"model takes {tuple(shape)}")
        shape = detector.input_shape
    if shape is None:
        raise ValueError("the model does not say what input size it takes and the detector does not record it: "
                         "pass --input-size C,H,W")
    mean = _model_statistic(model, detector, "input_mean")
    std = _model_statistic(model, detector, "input_std")
    return InputSpec(tuple(int(s) for s in shape), mean, std, resize, max_side)


def _model_statistic(model: torch.nn.Module, detector: Detector, name: str) -> tuple[float, ...] | None:
    own, stored = _floats(getattr(model, name, None)), _floats(getattr(detector, name))
    if own is None:
        return stored
    if stored is not None and (len(stored) != len(own) or any(abs(a - b) > 1e-6 for a, b in zip(stored, own))):
        raise ValueError(f"the detector was fitted with {name} {stored} but the model takes {own}: refit it "
                         f"with {name}=model.{name}")
    return own


def _floats(v: object) -> tuple[float, ...] | None:
    if v is None:
        return None
    return tuple(float(a) for a in torch.as_tensor(v, dtype=torch.float64).flatten().tolist())
