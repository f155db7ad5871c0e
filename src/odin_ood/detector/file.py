"""The detector file: one JSON object (never a pickle), its writing and its checked reading.

It records T, epsilon, delta, the whole preprocessing (``"preprocessing"``: input size, channel
mode, resize method and size, interpolation, mean, std; :class:`odin_ood.preprocess.Preprocessing`),
the target TPR, the library version and a fingerprint of the model's weights
(:func:`odin_ood.detector.fingerprint.fingerprint`); files written before the preprocessing was
recorded load as before, their preprocessing rebuilt from ``input_shape``/``input_mean``/
``input_std``. Reading refuses a file made for other weights and checks every field against the
range where ODIN's maths stays finite (:func:`odin_ood._utils.checks.check_temperature`). The
file's ``"score"`` is the detector's ``score_family``. Writing goes through
:func:`odin_ood._utils.files.write_file`: nothing is written through a symbolic link.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from odin_ood._utils.checks import check_number, check_rate, named
from odin_ood._utils.checks import short as _short
from odin_ood._utils.files import write_file
from odin_ood._version import __version__
from odin_ood.detector.params import MAX_CHANNELS, check_batch_size, check_input_shape, check_objective, check_params
from odin_ood.preprocess.model_input import declared_input
from odin_ood.preprocess.spec import Preprocessing
from odin_ood.scores import memory
from odin_ood.scores.family import check_parameters, check_score, check_threshold
from odin_ood.scores.passes import Clamp, model_device, scoring_mode
from odin_ood.scores.precision import check_precision

FORMAT = "odin-ood-detector"
FORMAT_VERSION = 1
FILENAME = "detector.json"
MAX_FILE_BYTES = 1 << 20  # a detector file is well under 1 KiB; anything this large is not one


def to_dict(det: Any) -> dict[str, Any]:
    """The JSON form of a fitted :class:`odin_ood.Detector`."""
    preprocessing = det.preprocessing_
    shape = det.input_shape if det.input_shape is not None or preprocessing is None else preprocessing.input_shape
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "odin_ood_version": __version__,
        "score": det.score_family,
        "temperature": det.temperature_,
        "epsilon": det.epsilon_,
        "threshold": det.threshold_,
        "tpr": det.tpr_,
        "objective": det.objective,
        "input_std": _floats_or_none(det.std_),
        "input_mean": _floats_or_none(det.mean_),
        "input_shape": None if shape is None else [int(s) for s in shape],
        "preprocessing": None if preprocessing is None else preprocessing.to_dict(),
        "clamp": None if det.clamp is None else [_floats_or_none(c) for c in det.clamp],
        "batch_size": det.batch_size,
        "model_fingerprint": det.model_fingerprint_,
        **({} if det.precision_ == "fp32" else {"precision": det.precision_, "runtime": det.runtime_}),
        **{
            key: value
            for key, value in (("model", det.model_spec_), ("weights", det.weights_spec_))
            if value is not None
        },
    }


def save(d: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``d`` as JSON to ``path`` if it ends in .json, else to ``path/detector.json``."""
    return write_file(_resolve(Path(path), create=True), json.dumps(d, indent=2) + "\n")


def read(path: str | os.PathLike) -> tuple[Path, Any]:
    """(the file, its JSON) for a .json file or a folder holding ``detector.json``, at most
    ``MAX_FILE_BYTES``; anything unreadable is a ``ValueError`` naming the file."""
    target = _resolve(Path(path), create=False)
    if not target.is_file():
        raise FileNotFoundError(f"no detector file at {target} (expected a .json file or a folder holding {FILENAME})")
    try:
        with open(target, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
        return target, json.loads(raw)
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON, UTF-8 or a 5000-digit int
        reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise ValueError(f"{target} is not a readable odin-ood detector file: {reason}") from None


def from_dict(cls: type, d: Any, model: nn.Module, source: str = "detector", max_memory: int | None = None) -> Any:
    """The detector (of class ``cls``) described by ``d`` for ``model``, every field checked:
    temperature and epsilon in the ranges of the file's score family (ODIN's T >= 1, T = 1 and
    epsilon = 0 where the family fixes them: :func:`odin_ood.scores.family.check_parameters`),
    threshold in [1/K, 1] for the softmax scores with K the model's classes (below 1/K the gate
    keeps every input; finite for energy and MaxLogit), tpr in (0, 1), finite normalisation and
    clamp with 1 or C values, 1 <= batch_size <= MAX_BATCH_SIZE, input sizes no larger than PIL
    decodes and, with ``max_memory``, within that budget
    (:func:`odin_ood.scores.memory.check_input`), before the model runs on that size."""
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ValueError(f"{source} is not an odin-ood detector file (missing format={FORMAT!r})")
    if d.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{source} has format_version {_short(d.get('format_version'))}; this library reads {FORMAT_VERSION}"
        )
    c = channels(model)
    with _fields_of(source):
        det = cls(
            model,
            input_std=_per_channel(d["input_std"], "input_std", c, positive=True),
            input_mean=_per_channel(d["input_mean"], "input_mean", c),
            objective=check_objective(d["objective"]),
            batch_size=check_batch_size(d["batch_size"]),
            clamp=_clamp(d["clamp"], c),
            input_shape=None if d.get("input_shape") is None else _input_shape(d["input_shape"]),
            score_family=check_score(d.get("score", "odin")),
            preprocessing=_preprocessing(d.get("preprocessing")),
        )
        precision, runtime = _precision(d)
        det.precision = precision
        check_params(det, c)
    if max_memory is not None:  # before _num_classes runs the model on the file's input size
        try:
            recorded = det.preprocessing.input_shape if det.preprocessing is not None else None
            for shape in filter(None, (det.input_shape, recorded)):
                memory.check_input(shape, max_memory)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None
    with _fields_of(source):
        det.model_spec_, det.weights_spec_ = _text(d.get("model"), "model"), _text(d.get("weights"), "weights")
        temperature, epsilon = check_parameters(det.score_family, d["temperature"], d["epsilon"])
        threshold = check_threshold(det.score_family, d["threshold"], _num_classes(model, det.input_shape))
        det._set_fitted(temperature, epsilon, threshold, check_rate(d["tpr"], "tpr"), precision, runtime)
    if d.get("model_fingerprint") != det.model_fingerprint_:
        raise ValueError(
            f"{source} was fitted for {_fitted_with(det.model_spec_, det.weights_spec_)} with weights "
            f"{_short(d.get('model_fingerprint'), 80)}, but the given model's weights are "
            f"{det.model_fingerprint_!r}: "
            f"{named('load it with the model it was fitted on', 'pass the --model and --weights it was fitted with')}"
        )
    return det


def _text(v: Any, field: str) -> str | None:
    """An optional text field (at most 4096 characters)."""
    if v is not None and not (isinstance(v, str) and len(v) <= 4096):
        raise ValueError(f"{field} must be a string of at most 4096 characters, got {_short(v)}")
    return v


def _fitted_with(model: str | None, weights: str | None) -> str:
    """How the file names the model it was fitted for (nothing for files before it was recorded)."""
    if model is None:
        return "a model"
    return named(
        f"the model {model!r}" + (f" (weights={weights!r})" if weights else ""),
        f"--model {model}" + (f" --weights {weights}" if weights else ""),
    )


def channels(model: Any) -> int | None:
    """C, the model's input channels, when it declares its input size."""
    shape = declared_input(model).shape if isinstance(model, nn.Module) else None
    return int(shape[0]) if shape is not None else None


@contextlib.contextmanager
def _fields_of(source: str) -> Iterator[None]:
    """A missing field or one out of its range, as the ``ValueError`` that names ``source``."""
    try:
        yield
    except KeyError as exc:
        raise ValueError(f"{source} is a corrupt odin-ood detector file: field {exc} is missing") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source} is a corrupt odin-ood detector file: {exc}") from None


def _floats_or_none(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    return [float(a) for a in torch.as_tensor(v, dtype=torch.float64).flatten().tolist()]  # no float32 rounding


def _num_classes(model: nn.Module, input_shape: Sequence[int] | None) -> int | None:
    """K: the model's ``num_classes`` attribute (every :func:`odin_ood.models.load` model has
    one), else the width of its logits on one zero input of ``input_shape`` (the model's or the
    file's), else None (unknown: the softmax threshold is then only checked against [0, 1])."""
    k = getattr(model, "num_classes", None)
    if isinstance(k, int) and k >= 1:
        return k
    shape = declared_input(model).shape or input_shape
    if shape is None:
        return None
    try:
        with scoring_mode(model), torch.no_grad():
            logits = model(torch.zeros(1, *shape, device=model_device(model, torch.device("cpu"))))
    except RuntimeError:  # the model does not take that shape: scoring will say so
        return None
    return int(logits.shape[-1]) if isinstance(logits, Tensor) and logits.ndim == 2 else None


def _per_channel(v: Any, name: str, channels: int | None, positive: bool = False) -> Any:
    """None, one number, or a list of 1 or C finite numbers (> 0 when ``positive``)."""
    if v is None:
        return None
    values = v if isinstance(v, list) else [v]
    allowed = {1, channels} if channels is not None else set(range(1, MAX_CHANNELS + 1))
    if len(values) not in allowed:
        raise ValueError(f"{name} has {len(values)} values; the model takes {channels or 'C'} channels (1 or C values)")
    low = 0.0 if positive else -math.inf
    out = [check_number(a, name, low, math.inf, open_low=positive) for a in values]
    return out if isinstance(v, list) else out[0]


def _clamp(v: Any, channels: int | None) -> Clamp | None:
    """None or [low, high], each a number or 1 or C numbers, low <= high."""
    if v is None:
        return None
    if not isinstance(v, list) or len(v) != 2:
        raise ValueError("clamp must be null or [low, high]")
    if any(c is None for c in v):
        raise ValueError(f"clamp must be null or [low, high] with numbers for both, got {_short(v)}")
    low, high = (_per_channel(c, f"clamp[{k}]", channels) for k, c in enumerate(v))
    if not bool((torch.as_tensor(low) <= torch.as_tensor(high)).all()):
        raise ValueError(f"clamp low {low} exceeds high {high}")
    bound_low, bound_high = (c if isinstance(c, float) else torch.tensor(c).view(-1, 1, 1) for c in (low, high))
    return bound_low, bound_high


def _input_shape(v: Any) -> tuple[int, ...]:
    """A list of 1 to 4 positive integers, each at most 65,536 (the model's (C, H, W) or similar),
    of at most three times PIL's pixel limit values (an RGB image that large: no larger input is
    made from an image)."""
    if not isinstance(v, list):
        raise ValueError(f"input_shape must be a list of 1 to 4 sizes, got {_short(v)}")
    check_input_shape(v)
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and math.prod(v) > 3 * limit:
        raise ValueError(
            f"input_shape {'x'.join(map(str, v))} holds {math.prod(v)} values, over 3 x PIL's pixel limit "
            f"of {limit} (Image.MAX_IMAGE_PIXELS): no image that large is decoded"
        )
    return tuple(v)


def _precision(d: dict) -> tuple[str, str | None]:
    """(precision, runtime) a file records: ("fp32", None) when absent (fp32, every runtime);
    below fp32, the runtime whose scores set the threshold (a name, checked when it scores)."""
    precision = check_precision(d.get("precision", "fp32"), "precision")
    runtime = d.get("runtime")
    if precision == "fp32" and runtime is None:
        return precision, None
    if precision == "fp32" or not (isinstance(runtime, str) and runtime.isidentifier() and len(runtime) <= 40):
        raise ValueError(
            f"runtime must be the name of the runtime a {precision} threshold was fitted on "
            f"(fp32: none), got {_short(runtime)}"
        )
    return precision, runtime


def _preprocessing(v: Any) -> Preprocessing | None:
    """None (a file written before the preprocessing was recorded) or a valid preprocessing."""
    return None if v is None else Preprocessing.from_dict(v)


def _resolve(path: Path, create: bool) -> Path:
    if path.suffix == ".json":
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        return path
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path / FILENAME
