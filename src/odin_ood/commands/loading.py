"""A fitted detector ready to score images, loaded from the options ``score`` and ``serve`` share:
the model (:class:`~odin_ood.commands.options.ModelOptions`), its detector file (fingerprint
checked) and the :class:`~odin_ood.preprocess.Preprocessing` its images go through.

The detector file records the whole preprocessing and it is applied as recorded: a flag
(``--input-size``, ``--input-mean``, ``--input-std``, ``--resize``, ``--interpolation``,
``--resize-size``) that says otherwise is one error naming each field and both values. A file
written before the preprocessing was recorded loads as it did: its input size, the model's own
mean and std (a detector fitted with other statistics is refused), no resizing unless the
flags ask for it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

import torch

from odin_ood.detector import FILENAME, Detector
from odin_ood.commands.options import ModelOptions
from odin_ood.commands.options import add_model_arguments as add_options
from odin_ood.models.sources import probe
from odin_ood.runtimes import RUNTIMES, Runtime, load_runtime
from odin_ood.preprocess import Preprocessing, close_values, floats

# ModelOptions field -> (its flag, the Preprocessing field it sets)
FLAGS = {"input_shape": ("--input-size", "input_shape"), "input_mean": ("--input-mean", "mean"),
         "input_std": ("--input-std", "std"), "resize": ("--resize", "resize"),
         "interpolation": ("--interpolation", "interpolation"), "resize_size": ("--resize-size", "resize_size")}


def add_detector_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by ``score`` and ``serve``: which detector, :class:`ModelOptions` and
    the scoring runtime."""
    parser.add_argument("--detector", required=True, help="fitted detector: a folder holding detector.json, or a .json file")
    add_options(parser)
    parser.add_argument("--runtime", choices=sorted(RUNTIMES), default="torch",
                        help="where the gate runs: torch (eager), or the exported ONNX graph on onnxruntime or "
                             "openvino (optional packages; exported once per detector, model computation and batch size, cached under "
                             "$ODIN_OOD_CACHE/export)")


def load_scorer(options: ModelOptions, detector: str | os.PathLike, runtime: str = "torch",
                device: torch.device | None = None) -> tuple[Runtime, Preprocessing]:
    """:func:`load_detector`, then the detector on the runtime called ``runtime``
    (:func:`odin_ood.runtimes.load_runtime`, with ``options.threads``)."""
    fitted, preprocessing = load_detector(options, detector, device)
    return load_runtime(runtime, fitted, preprocessing, threads=options.threads), preprocessing


def load_detector(options: ModelOptions, detector: str | os.PathLike, device: torch.device | None = None,
                  optimize: bool = True) -> tuple[Detector, Preprocessing]:
    """The model (``options.load_model``), its detector (``Detector.load``, fingerprint checked
    on the weights as loaded) with its preprocessing (:func:`preprocessing_for`) set, and that
    preprocessing. ``optimize``: score with batch norm folded and channels-last (``Detector.optimize``)."""
    model = options.load_model(device)
    fitted = Detector.load(os.fspath(detector), model)
    fitted.optimize = optimize
    fitted.normalise = False  # odin_ood.preprocess gives the model's normalised input
    if options.batch_size is not None:
        fitted.batch_size = options.batch_size
    preprocessing = preprocessing_for(fitted, options)
    if tuple(getattr(model, "input_shape", None) or ()) != preprocessing.input_shape:
        probe(model, preprocessing.input_shape, options.model)
    fitted.preprocessing = preprocessing
    return fitted, preprocessing


def preprocessing_for(detector: Detector, options: ModelOptions | None = None) -> Preprocessing:
    """What ``detector``'s images go through: the recorded preprocessing (``options``' flags
    must agree with it), or for a detector without one (a file written before it was recorded,
    a ``Detector`` built in Python) :func:`legacy_preprocessing` with the flags applied."""
    options = options or ModelOptions("")
    given = {name: getattr(options, name) for name in FLAGS if getattr(options, name) is not None}
    if detector.preprocessing_recorded_:
        recorded = detector.preprocessing
        _check_flags(recorded, given)
        return dataclasses.replace(recorded, max_side=options.max_side, min_side=options.min_side)
    base = legacy_preprocessing(detector)
    return dataclasses.replace(apply_flags(base, given, max_side=options.max_side), min_side=options.min_side)


def apply_flags(base: Preprocessing, given: dict[str, Any], max_side: int = 4096) -> Preprocessing:
    """``base`` with the resize flags in ``given`` (ModelOptions field -> value) applied; a
    ``--resize-size`` or ``--interpolation`` without resizing is refused (it would do nothing)."""
    resize = given.get("resize", base.resize)
    if resize == "none" and {"interpolation", "resize_size"} & set(given):
        raise ValueError("--interpolation and --resize-size need resizing: add --resize squash or "
                         "--resize resize-shorter-then-center-crop")
    size = given.get("resize_size")
    if size is None:
        size = base.resize_size if resize == base.resize else None
    else:
        size = _resize_size(size, resize)
    return Preprocessing(base.input_shape, resize, given.get("interpolation", base.interpolation), size,
                         base.mean, base.std, max_side)


def _resize_size(size: tuple[int, ...], resize: str) -> int | tuple[int, int]:
    """``--resize-size`` for ``resize``: one number (the shorter side), or H,W (or one number) for squash."""
    if resize.startswith("resize-shorter"):
        if len(size) != 1:
            raise ValueError(f"--resize-size for {resize} is one number (the shorter side), "
                             f"got {_shown(size)}")
        return size[0]
    if len(size) not in (1, 2):
        raise ValueError(f"--resize-size for squash is H,W or one number, got {_shown(size)}")
    return size[0], size[-1]


def legacy_preprocessing(detector: Detector) -> Preprocessing:
    """A detector without a recorded preprocessing, as it always loaded: its input size (else the
    model's) and the model's own ``input_mean``/``input_std`` (the statistics its weights were
    trained with); the detector's recorded values serve a model that does not say; a detector
    fitted for another size or with other statistics is refused (its epsilon step assumed them).
    No resizing (``none``)."""
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
    return Preprocessing(tuple(int(s) for s in shape), mean=mean, std=std)


def _check_flags(recorded: Preprocessing, given: dict[str, Any]) -> None:
    """One error naming every flag that contradicts the recorded preprocessing, with both values."""
    wrong = []
    for name, value in given.items():
        flag, field = FLAGS[name]
        have = getattr(recorded, field)
        if field in ("mean", "std"):
            same = close_values(floats(value), have)
        elif field == "resize_size":
            same = _resize_size(value, recorded.resize) == have
        else:
            same = (tuple(value) if field == "input_shape" else value) == have
        if not same:
            wrong.append(f"{flag} {_shown(value)} but the detector records {field} {_shown(have)}")
    if wrong:
        raise ValueError(f"the detector's {FILENAME} records its preprocessing and applies it as fitted: "
                         f"{'; '.join(wrong)}. Drop the flag(s), or refit with them")


def _shown(v: Any) -> str:
    return ",".join(map(str, v)) if isinstance(v, tuple) else str(v)


def _model_statistic(model: torch.nn.Module, detector: Detector, name: str) -> tuple[float, ...] | None:
    own, stored = floats(getattr(model, name, None)), floats(getattr(detector, name))
    if own is None:
        return stored
    if stored is not None and not close_values(stored, own):
        raise ValueError(f"the detector was fitted with {name} {stored} but the model takes {own}: refit it "
                         f"with {name}=model.{name}")
    return own
