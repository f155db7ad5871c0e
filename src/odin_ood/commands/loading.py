"""A fitted detector ready to score images, loaded from the options ``score`` and ``serve`` share:
the model (:class:`~odin_ood.commands.options.ModelOptions`), its detector file (fingerprint
checked) and the :class:`~odin_ood.preprocess.Preprocessing` its images go through.

The detector file records the whole preprocessing and it is applied as recorded: a flag
(``--input-size``, ``--input-mean``, ``--input-std``, ``--resize``, ``--interpolation``,
``--resize-size``) that says otherwise is one error naming each field and both values. A file
written before the preprocessing was recorded loads as it did: its input size, the model's own
mean and std (a detector fitted with other statistics is refused), no resizing unless the
flags ask for it.

Every size the file states is bounded before the model runs on it: input and resize sizes
against ``--max-side`` and PIL's pixel limit, one image against ``--max-memory``
(:func:`check_bounds`); the file's ``batch_size`` is clamped to what half of ``--max-memory``
holds, with a note on stderr (:func:`bounded_batch`: scores then equal those in batches of the
file's size up to float rounding, each row still bit for bit the library's in batches of the
clamped size).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any

import torch

from odin_ood.commands.options import ModelOptions, add_model_arguments, add_precision_argument
from odin_ood.detector import FILENAME, Detector
from odin_ood.models.sources import probe
from odin_ood.preprocess import Preprocessing, close_values, floats
from odin_ood.preprocess.model_input import declared_input
from odin_ood.runtimes import MEMORY_FACTORS, RUNTIMES, Runtime, load_runtime, runtime_budget
from odin_ood.scores import memory

# ModelOptions field -> (its flag, the Preprocessing field it sets)
FLAGS = {
    "input_shape": ("--input-size", "input_shape"),
    "input_mean": ("--input-mean", "mean"),
    "input_std": ("--input-std", "std"),
    "resize": ("--resize", "resize"),
    "interpolation": ("--interpolation", "interpolation"),
    "resize_size": ("--resize-size", "resize_size"),
}


def add_detector_arguments(parser: argparse.ArgumentParser) -> None:
    """The options shared by ``score`` and ``serve``: which detector, :class:`ModelOptions` and
    the scoring runtime."""
    parser.add_argument(
        "--detector", required=True, help="fitted detector: a folder holding detector.json, or a .json file"
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--runtime",
        choices=sorted(RUNTIMES),
        default="torch",
        help="where the gate runs: torch (eager, the default whatever is installed: the others agree "
        "within 1e-5, see README), or the exported ONNX graph on onnxruntime or openvino (optional "
        "packages; exported once per detector and model computation, cached under "
        "$ODIN_OOD_CACHE/export)",
    )
    add_precision_argument(
        parser,
        "must be the one the detector was fitted at (a reduced precision moves scores "
        "beyond the runtimes' tolerance, so its threshold holds only there)",
    )


def load_scorer(
    options: ModelOptions, detector: str | os.PathLike, runtime: str = "torch", device: torch.device | None = None
) -> tuple[Runtime, Preprocessing]:
    """:func:`load_detector`, then the detector on the runtime called ``runtime``
    (:func:`odin_ood.runtimes.load_runtime`, with ``options.threads``)."""
    fitted, preprocessing = load_detector(options, detector, device, runtime=runtime)
    return load_runtime(runtime, fitted, preprocessing, threads=options.threads), preprocessing


def load_detector(
    options: ModelOptions,
    detector: str | os.PathLike,
    device: torch.device | None = None,
    optimize: bool = True,
    file_batch: bool = True,
    runtime: str = "torch",
) -> tuple[Detector, Preprocessing]:
    """The model (``options.load_model``), its detector (``Detector.load``, fingerprint checked
    on the weights as loaded, sizes bounded by ``options.max_memory``) with its preprocessing
    (:func:`preprocessing_for`, :func:`check_bounds`) set, and that preprocessing. ``optimize``:
    score with batch norm folded and channels-last (``Detector.optimize``). The batch size is
    ``options.batch_size``, else with ``file_batch`` the file's, clamped (:func:`bounded_batch`,
    with the memory the scoring ``runtime`` takes per image, :func:`odin_ood.runtimes.runtime_budget`);
    ``file_batch=False`` leaves it to the caller (serve's ``--max-batch``)."""
    model = options.load_model(device)
    fitted = Detector.load(os.fspath(detector), model, max_memory=options.max_memory)
    fitted.optimize = optimize
    fitted.normalise = False  # odin_ood.preprocess gives the model's normalised input
    fitted.precision = options.precision  # checked against the fitted one by the runtime
    preprocessing = preprocessing_for(fitted, options)
    check_bounds(preprocessing, options.max_memory)
    if declared_input(model).shape != preprocessing.input_shape:
        probe(model, preprocessing.input_shape, options.model)
    fitted.preprocessing_ = preprocessing  # the preprocessing this gate applies (with this run's reading limits)
    if options.batch_size is not None:
        fitted.batch_size = options.batch_size
    elif file_batch:
        fitted.batch_size = bounded_batch(fitted, preprocessing.input_shape, options.max_memory, runtime)
    return fitted, preprocessing


def check_bounds(spec: Preprocessing, budget: int) -> None:
    """Refuse a preprocessing whose input or resize size is over ``spec.max_side``
    (:meth:`~odin_ood.preprocess.Preprocessing.check_max_side`) or of which one image cannot be
    scored within ``budget`` bytes (:func:`odin_ood.scores.memory.check_input`)."""
    spec.check_max_side()
    memory.check_input(spec.input_shape, budget)


def bounded_batch(detector: Detector, shape: tuple[int, ...], budget: int, runtime: str = "torch") -> int:
    """``detector.batch_size`` (the file's), or when its working set does not fit in half of
    ``budget`` the largest batch that does (:func:`odin_ood.scores.memory.batch_limit`), said on stderr;
    on a graph ``runtime``, the working set is counted :data:`odin_ood.runtimes.MEMORY_FACTORS` times.
    A model the ODIN probe cannot run (no input gradient flows through it: an MSP gate over a
    model that scores under ``no_grad``) is bounded by its least working set instead."""
    if detector.batch_size == 1:
        return 1
    planned = runtime_budget(runtime, budget)
    try:
        fits = memory.batch_limit(detector.model, shape, planned)
    except RuntimeError:
        fits = max(1, planned // memory.least_bytes(shape))
    if detector.batch_size <= fits:
        return detector.batch_size
    factor = (
        "" if planned == budget else f" with --runtime {runtime}'s {MEMORY_FACTORS[runtime]}x eager memory per image"
    )
    print(
        f"odin-ood: note: the detector's batch_size {detector.batch_size} does not fit in half of --max-memory "
        f"({memory.readable(budget // 2)}){factor}: scoring in batches of {fits} (scores equal to those in batches of "
        f"{detector.batch_size} up to float rounding; --batch-size or --max-memory sets it)",
        file=sys.stderr,
    )
    return fits


def preprocessing_for(detector: Detector, options: ModelOptions | None = None) -> Preprocessing:
    """What ``detector``'s images go through: the recorded preprocessing (``options``' flags
    must agree with it), or for a detector without one (a file written before it was recorded,
    a ``Detector`` built in Python) :func:`legacy_preprocessing` with the flags applied."""
    options = options or ModelOptions("")
    given = {name: getattr(options, name) for name in FLAGS if getattr(options, name) is not None}
    if detector.preprocessing is not None:  # recorded in the file
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
        raise ValueError(
            "--interpolation and --resize-size need resizing: add --resize squash or "
            "--resize resize-shorter-then-center-crop"
        )
    size = given.get("resize_size")
    size = (base.resize_size if resize == base.resize else None) if size is None else _resize_size(size, resize)
    return Preprocessing(
        base.input_shape, resize, given.get("interpolation", base.interpolation), size, base.mean, base.std, max_side
    )


def _resize_size(size: tuple[int, ...], resize: str) -> int | tuple[int, int]:
    """``--resize-size`` for ``resize``: one number (the shorter side), or H,W (or one number) for squash."""
    if resize.startswith("resize-shorter"):
        if len(size) != 1:
            raise ValueError(f"--resize-size for {resize} is one number (the shorter side), got {_shown(size)}")
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
    said = declared_input(detector.model)
    shape = said.shape
    if detector.input_shape is not None:
        if shape is not None and tuple(shape) != tuple(detector.input_shape):
            raise ValueError(
                f"the detector was fitted for inputs of size {tuple(detector.input_shape)} but the "
                f"model takes {tuple(shape)}"
            )
        shape = tuple(detector.input_shape)
    if shape is None:
        raise ValueError(
            "the model does not say what input size it takes and the detector does not record it: "
            "pass --input-size C,H,W"
        )
    mean = _model_statistic(said.mean, detector, "input_mean")
    std = _model_statistic(said.std, detector, "input_std")
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
        raise ValueError(
            f"the detector's {FILENAME} records its preprocessing and applies it as fitted: "
            f"{'; '.join(wrong)}. Drop the flag(s), or refit with them"
        )


def _shown(v: Any) -> str:
    return ",".join(map(str, v)) if isinstance(v, tuple) else str(v)


def _model_statistic(own: tuple[float, ...] | None, detector: Detector, name: str) -> tuple[float, ...] | None:
    stored = floats(getattr(detector, name))
    if own is None:
        return stored
    if stored is not None and not close_values(stored, own):
        raise ValueError(
            f"the detector was fitted with {name} {stored} but the model takes {own}: refit it with {name}=model.{name}"
        )
    return own
