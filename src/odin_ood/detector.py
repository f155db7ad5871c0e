"""The fitted detector a user keeps: fit / score / predict / save / load.

g(x; delta, T, epsilon) = 1 (out-of-distribution) if S(x~; T) <= delta, else 0 (paper section 3).
``fit`` tunes (T, epsilon) on held-out data (section 4.4) and sets ``threshold_`` (delta) so
that a fraction ``tpr`` of the held-out ID images scores above it. ``score`` selects ODIN (the
default) or one of its successors (:mod:`odin_ood.score_family`), tuned and thresholded alike.

Saved detectors are one JSON file (never a pickle) recording T, epsilon, delta, the whole
preprocessing (``"preprocessing"``: input size, channel mode, resize method and size,
interpolation, mean, std; :class:`odin_ood.preprocess.Preprocessing`), the target TPR, the
library version and a fingerprint of the model's weights; files written before it was recorded
load as before, their preprocessing rebuilt from ``input_shape``/``input_mean``/``input_std``.
``Detector.load`` refuses a file made for other weights, and checks every field against the
range where ODIN's maths stays finite (see :func:`odin_ood._checks.check_temperature`).

The decision fails closed: a score that is not finite (NaN from a broken model, say) is
out-of-distribution, because ``score > threshold_`` is false for NaN.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from odin_ood._version import __version__
from odin_ood._checks import check_epsilon, check_number, check_rate, check_temperature, named, short as _short
from odin_ood import memory
from odin_ood.batching import Data, map_batches
from odin_ood.fingerprint import fingerprint
from odin_ood.metrics import METRICS, threshold_at_tpr
from odin_ood.models.folding import scoring_copy
from odin_ood.precision import autocast, check_precision, check_scoring, eager_support
from odin_ood.preprocess import Preprocessing, close_values, floats, of_model
from odin_ood.model_input import check_normalise, declared, model_data
from odin_ood.score_family import check_parameters, check_score, check_threshold, score_outputs, tune_score
from odin_ood.scores import Clamp, model_device, scoring_mode
from odin_ood.shared_search import DEFAULT_SEARCH, check_search
from odin_ood.tuning import DEFAULT_OOD_FREE, PAPER_EPSILONS, PAPER_TEMPERATURES, check_ood_free

FORMAT = "odin-ood-detector"
FORMAT_VERSION = 1
FILENAME = "detector.json"
MAX_FILE_BYTES = 1 << 20  # a detector file is well under 1 KiB; anything this large is not one
MAX_BATCH_SIZE = 1 << 16
MAX_CHANNELS = 4096


class NotFittedError(RuntimeError):
    """The detector was used before ``fit`` or ``load``."""


class Detector:
    """ODIN out-of-distribution detector around a trained classifier.

    ``input_std`` (per channel) divides the perturbation when the model sees normalised inputs;
    ``input_mean`` is only needed to build noise tuning sets for such a model. Both default to the
    model's own ``input_std``/``input_mean`` attributes when it has them (every model that
    :func:`odin_ood.models.load` returns does): the model's statistics are the single source of
    truth (``std_``, ``mean_``; pass ``input_std=1.0`` for a step in the model's input units). ``input_shape``
    (C, H, W) is only recorded, so that ``odin-ood score``/``serve`` know what a model that does
    not say it (a TorchScript or ``.pt2`` file) takes. ``score``: "odin" (default), "energy-odin",
    "energy", "maxlogit" or "msp" (:mod:`odin_ood.score_family`), kept as ``score_name`` (``score``
    is the scoring method). ``ood_free``: what tunes when ``fit`` gets no OOD data, "noise"
    (default: the paper's Gaussian + Uniform noise) or "id-only" (the ID data alone, Generalized-ODIN
    criterion at T = 1000, :func:`odin_ood.tuning.id_only_from_scores`). ``preprocessing`` (a
    :class:`~odin_ood.preprocess.Preprocessing`): how images become this model's inputs, saved in
    the file; when not given, the model's own (:func:`odin_ood.preprocess.of_model`) with this
    detector's ``input_shape``, mean and std. ``optimize=True``: fit and
    score with a copy of an eval-mode model whose batch norms are folded into the convolutions
    before them and, for a conv net, in channels-last memory (:func:`odin_ood.models.folding.scoring_copy`:
    the same function up to float rounding, ODIN scores within 1e-7 on the zoo's networks, one
    more copy of the weights in memory; ``odin-ood score`` and ``serve`` use it); the copy is
    remade when the model's weights change; the fingerprint is always that of ``model`` itself.
    The default False scores ``model`` as given, bitwise as :func:`odin_ood.odin_scores`. ``search``:
    how ``fit`` searches the grid, "shared" (default: <= 20 passes per image on the paper's grid,
    the chosen cell scored exactly, :mod:`odin_ood.shared_search`) or "grid" (the paper's: every
    cell, 211 passes). Fitted attributes end in ``_``: ``temperature_``, ``epsilon_``,
    ``threshold_``, ``tpr_``, ``model_fingerprint_``, after ``fit`` ``tuning_`` (the whole grid);
    ``preprocessing_recorded_`` is False while the preprocessing is derived from the model (no
    ``preprocessing`` given, or a file written before it was recorded). ``normalise``: "auto"
    (default: pixels in [0, 1], normalised with ``mean_``/``std_``, when they declare a
    normalisation; else the model's input as is), True (pixels) or False (the model's input as
    is): decided by these alone, never by the data, so ``fit``, ``score`` and ``predict`` read every
    image the same way whatever the other images of a call and their order; pixels overshooting
    [0, 1] by at most 0.5 (resampling) are clamped, data beyond is refused
    (:mod:`odin_ood.model_input`). :meth:`outputs_for_model_input` takes the model's input as is.
    ``precision``: the model's arithmetic, "fp32" (default), "bf16" or "fp16" (``torch.autocast``
    where the device has it, :mod:`odin_ood.precision`); ``fit`` tunes and sets the threshold at it,
    so the TPR holds for scores at that precision, and records it (``precision_``, and
    ``runtime_``: the runtime whose reduced-precision scores set the threshold, "torch" after
    ``fit``, None at fp32); scoring at another precision is refused.
    """

    def __init__(
        self,
        model: nn.Module,
        input_std: Sequence[float] | None = None,
        input_mean: Sequence[float] | None = None,
        temperatures: Sequence[float] = PAPER_TEMPERATURES,
        epsilons: Sequence[float] = PAPER_EPSILONS,
        objective: str = "fpr_at_95_tpr",
        batch_size: int = 128,
        clamp: Clamp | None = None,
        input_shape: Sequence[int] | None = None,
        score: str = "odin",
        ood_free: str = DEFAULT_OOD_FREE,
        preprocessing: Preprocessing | None = None,
        optimize: bool = False,
        normalise: str | bool = "auto",
        search: str = DEFAULT_SEARCH,
        precision: str = "fp32",
    ) -> None:
        if preprocessing is not None:
            _check_agrees(preprocessing, input_std, input_mean, input_shape)
        self.model = model
        self.normalise = check_normalise(normalise)
        self.score_name = check_score(score)
        self.ood_free = check_ood_free(ood_free)
        self.search = check_search(search)
        self.input_std = input_std
        self.input_mean = input_mean
        self.temperatures = temperatures
        self.epsilons = epsilons
        self.objective = objective
        self.batch_size = batch_size
        self.clamp = clamp
        self.input_shape = input_shape
        self._preprocessing = preprocessing
        self.preprocessing_recorded_ = preprocessing is not None
        self.optimize = optimize
        self.precision = precision
        self._scoring: tuple[tuple, nn.Module, bool] | None = None

    @property
    def std_(self) -> Sequence[float] | None:
        """The per-channel std that divides epsilon: ``input_std``, else the given preprocessing's,
        else the model's own ``input_std`` attribute (set by :func:`odin_ood.models.load`), else
        None (raw inputs)."""
        if self.input_std is not None:
            return self.input_std
        return self._preprocessing.std if self._preprocessing is not None else getattr(self.model, "input_std", None)

    @property
    def mean_(self) -> Sequence[float] | None:
        """``input_mean``, else the given preprocessing's, else the model's own ``input_mean``, else None."""
        if self.input_mean is not None:
            return self.input_mean
        return self._preprocessing.mean if self._preprocessing is not None else getattr(self.model, "input_mean", None)

    @property
    def preprocessing(self) -> Preprocessing | None:
        """How an image becomes this detector's model input: the one given (or loaded from the
        file), else the model's own at ``input_shape`` with ``mean_``/``std_``; None when the
        input size is unknown."""
        if self._preprocessing is not None:
            return self._preprocessing
        base = of_model(self.model)
        if self.input_shape is not None:
            shape = tuple(self.input_shape)
            base = Preprocessing(shape) if base is None else base.for_input_shape(shape)
        if base is None:
            return None
        return Preprocessing(base.input_shape, base.resize, base.interpolation, base.resize_size,
                             floats(self.mean_), floats(self.std_))

    @preprocessing.setter
    def preprocessing(self, value: Preprocessing) -> None:
        _check_agrees(value, self.input_std, self.input_mean, self.input_shape)
        self._preprocessing = value
        self.preprocessing_recorded_ = True

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, id_data: Data, ood_data: Data | None = None, tpr: float = 0.95) -> "Detector":
        """Tune (T, epsilon) on held-out ``id_data`` vs ``ood_data`` (when None: as ``ood_free``
        says, against the paper's Gaussian and Uniform noise or on ``id_data`` alone) and set
        ``threshold_`` so that ``tpr`` of ``id_data`` is kept."""
        tpr = check_rate(tpr, "tpr")
        precision = self._check_precision_support()
        id_data = self._model_data(id_data, "id_data")
        ood_data = None if ood_data is None else self._model_data(ood_data, "ood_data")
        with autocast(precision, model_device(self.model, torch.device("cpu"))):
            result = tune_score(
                self.scoring_model()[0], id_data, ood_data, self.score_name, self.temperatures, self.epsilons, self.std_,
                self.objective, input_mean=self.mean_, tpr=tpr, batch_size=self.batch_size, clamp=self.clamp,
                ood_free=self.ood_free, search=self.search,
            )
        i, j = result.index
        self._set_fitted(result.temperature, result.epsilon, threshold_below(result.scores_in[i, j], tpr), tpr,
                         precision, None if precision == "fp32" else "torch")
        self.tuning_ = result
        return self

    def _set_fitted(self, temperature: float, epsilon: float, threshold: float, tpr: float, precision: str = "fp32",
                    runtime: str | None = None) -> None:
        self.temperature_ = check_temperature(temperature)
        self.epsilon_ = check_epsilon(epsilon)
        self.threshold_ = check_number(threshold, "threshold", -math.inf, math.inf)
        self.tpr_ = tpr
        self.precision_, self.runtime_ = check_precision(precision, "precision"), runtime
        self.model_fingerprint_ = fingerprint(self.model)

    def _check_precision_support(self) -> str:
        """``precision``, checked: a known name the model's device computes in hardware."""
        precision = check_precision(self.precision, named("precision", "--precision"))
        problem = eager_support(precision, model_device(self.model, torch.device("cpu")))
        if problem is not None:
            raise ValueError(f"{named('precision', '--precision')} {precision}: {problem}")
        return precision

    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise NotFittedError("this Detector is not fitted: call fit(...) or Detector.load(...) first")

    # -- using -------------------------------------------------------------------------------
    def outputs(self, x: Data) -> dict[str, Tensor]:
        """Per image: ``predicted_class`` and ``confidence`` (the classifier's own softmax on the
        unperturbed input), ``score`` (ODIN or the chosen score), ``is_out_of_distribution`` (not
        score > threshold_: score <= threshold_, or a score that is not finite, with a ``RuntimeWarning``)."""
        self._check_fitted()
        return self.outputs_for_model_input(self._model_data(x, "x"))

    def outputs_for_model_input(self, z: Data) -> dict[str, Tensor]:
        """:meth:`outputs` for ``z`` already the model's input, never normalised here whatever
        ``normalise`` says: what a scoring runtime calls once its preprocessing has normalised the
        pixels (:class:`odin_ood.runtimes.eager.EagerRuntime`). At ``precision`` (that of ``fit``)."""
        self._check_fitted()
        check_scoring(self.precision_, self.runtime_, self.precision, "torch")
        both = map_batches(self._batch_outputs, z, self.batch_size, "x")
        logits, score = both[:-1].T, both[-1]
        broken = int((~torch.isfinite(score)).sum())
        if broken:
            warnings.warn(f"{broken} of {len(score)} ODIN scores are not finite (NaN or infinite): those images are "
                          "reported out-of-distribution (the gate fails closed)", RuntimeWarning, stacklevel=2)
        return gate_outputs(logits, score, self.threshold_)

    def scoring_model(self) -> tuple[nn.Module, bool]:
        """(the module that scores, whether it takes channels-last inputs): ``self.model`` itself,
        or with ``optimize`` its :func:`scoring_copy`, remade when a weight's storage, version
        counter (bumped by every in-place write), dtype or device changes. A model in training
        mode is scored as given (``scoring_mode`` switches it to eval for the pass)."""
        if not self.optimize or any(m.training for m in self.model.modules()):
            return self.model, False
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device)
                    for t in (*self.model.parameters(), *self.model.buffers()))
        if self._scoring is None or self._scoring[0] != key:
            self._scoring = (key, *scoring_copy(self.model))
        return self._scoring[1], self._scoring[2]

    def _model_data(self, data: Data, name: str) -> Data:
        """``data`` as the model takes it: pixels normalised with ``mean_``/``std_`` as
        ``normalise`` says (:func:`odin_ood.model_input.model_data`)."""
        return model_data(data, declared(self.model, self.mean_, self.std_), self.normalise, self.batch_size, name)

    def _batch_outputs(self, x: Tensor) -> Tensor:
        model, channels_last = self.scoring_model()
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.precision, x.device):
            logits, score = score_outputs(model, x, self.score_name, self.temperature_, self.epsilon_, self.std_,
                                          self.clamp)
        return torch.cat([logits, score[:, None]], dim=1).T

    def score(self, x: Data) -> Tensor:
        """Scores at the fitted (T, epsilon) (ODIN's S(x~; T) by default); higher = more in-distribution."""
        return self.outputs(x)["score"]

    def predict(self, x: Data) -> Tensor:
        """g(x): 1 = out-of-distribution (score <= threshold_, or not finite), 0 = in-distribution."""
        return self.outputs(x)["is_out_of_distribution"].long()

    # -- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        preprocessing = self.preprocessing
        shape = self.input_shape if self.input_shape is not None or preprocessing is None else preprocessing.input_shape
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "odin_ood_version": __version__,
            "score": self.score_name,
            "temperature": self.temperature_,
            "epsilon": self.epsilon_,
            "threshold": self.threshold_,
            "tpr": self.tpr_,
            "objective": self.objective,
            "input_std": _floats_or_none(self.std_),
            "input_mean": _floats_or_none(self.mean_),
            "input_shape": None if shape is None else [int(s) for s in shape],
            "preprocessing": None if preprocessing is None else preprocessing.to_dict(),
            "clamp": None if self.clamp is None else [_floats_or_none(c) for c in self.clamp],
            "batch_size": self.batch_size,
            "model_fingerprint": self.model_fingerprint_,
            **({} if self.precision_ == "fp32" else {"precision": self.precision_, "runtime": self.runtime_}),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the detector as JSON: to ``path`` if it ends in .json, else to ``path/detector.json``."""
        target = _resolve(Path(path), create=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        os.replace(tmp, target)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike, model: nn.Module, max_memory: int | None = None) -> "Detector":
        """Read a detector saved by :meth:`save` for ``model``; refuses files made for other weights
        and fields outside their valid range (``ValueError`` naming the file and the field), and
        with ``max_memory`` (bytes) an input size of which one image cannot be scored within it
        (:func:`odin_ood.memory.check_input`), before the model runs on that size."""
        target = _resolve(Path(path), create=False)
        if not target.is_file():
            raise FileNotFoundError(f"no detector file at {target} (expected a .json file or a folder holding {FILENAME})")
        try:
            with open(target, "rb") as f:
                raw = f.read(MAX_FILE_BYTES + 1)
            if len(raw) > MAX_FILE_BYTES:
                raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
            d = json.loads(raw)
        except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON, UTF-8 or a 5000-digit int
            reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
            raise ValueError(f"{target} is not a readable odin-ood detector file: {reason}") from None
        return cls.from_dict(d, model, source=str(target), max_memory=max_memory)

    @classmethod
    def from_dict(cls, d: Any, model: nn.Module, source: str = "detector", max_memory: int | None = None) -> "Detector":
        """The detector described by ``d`` (as written by :meth:`to_dict`) for ``model``, every
        field checked: temperature and epsilon in the ranges of the file's score family (ODIN's
        T >= 1, T = 1 and epsilon = 0 where the family fixes them:
        :func:`odin_ood.score_family.check_parameters`), threshold in [1/K, 1] for the softmax
        scores with K the model's classes (below 1/K the gate keeps every input; finite for energy
        and MaxLogit), tpr in (0, 1),
        finite normalisation and clamp with 1 or C values, 1 <= batch_size <= MAX_BATCH_SIZE, input
        sizes no larger than PIL decodes and, with ``max_memory``, within that budget (see :meth:`load`)."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"{source} is not an odin-ood detector file (missing format={FORMAT!r})")
        if d.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{source} has format_version {_short(d.get('format_version'))}; "
                             f"this library reads {FORMAT_VERSION}")
        channels = _channels(model)
        with _fields_of(source):
            det = cls(
                model, input_std=_per_channel(d["input_std"], "input_std", channels, positive=True),
                input_mean=_per_channel(d["input_mean"], "input_mean", channels),
                objective=_objective(d["objective"]), batch_size=check_batch_size(d["batch_size"]),
                clamp=_clamp(d["clamp"], channels),
                input_shape=None if d.get("input_shape") is None else _input_shape(d["input_shape"]),
                score=check_score(d.get("score", "odin")),
                preprocessing=_preprocessing(d.get("preprocessing")),
            )
        if max_memory is not None:  # before _num_classes runs the model on the file's input size
            try:
                recorded = det._preprocessing.input_shape if det._preprocessing is not None else None
                for shape in filter(None, (det.input_shape, recorded)):
                    memory.check_input(shape, max_memory)
            except ValueError as exc:
                raise ValueError(f"{source}: {exc}") from None
        with _fields_of(source):
            temperature, epsilon = check_parameters(det.score_name, d["temperature"], d["epsilon"])
            threshold = check_threshold(det.score_name, d["threshold"], _num_classes(model, det.input_shape))
            det._set_fitted(temperature, epsilon, threshold, check_rate(d["tpr"], "tpr"), *_precision(d))
            det.precision = det.precision_
        if d.get("model_fingerprint") != det.model_fingerprint_:
            raise ValueError(
                f"{source} was fitted for a model with weights {_short(d.get('model_fingerprint'), 80)}, but the given "
                f"model's weights are {det.model_fingerprint_!r}: "
                f"{named('load it with the model it was fitted on', 'pass the --model and --weights it was fitted with')}"
            )
        return det


@contextlib.contextmanager
def _fields_of(source: str) -> Iterator[None]:
    """A missing field or one out of its range, as the ``ValueError`` that names ``source``."""
    try:
        yield
    except KeyError as exc:
        raise ValueError(f"{source} is a corrupt odin-ood detector file: field {exc} is missing") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source} is a corrupt odin-ood detector file: {exc}") from None


def gate_outputs(logits: Tensor, score: Tensor, threshold: float) -> dict[str, Tensor]:
    """The gate's four outputs from a batch's unperturbed logits and scores: ``predicted_class``
    and ``confidence`` (argmax and max of softmax(f(x))), ``score``, ``is_out_of_distribution``
    = not (score > threshold), so that a NaN score is out-of-distribution."""
    confidence, predicted = torch.softmax(logits, dim=1).max(dim=1)
    return {"predicted_class": predicted, "confidence": confidence, "score": score,
            "is_out_of_distribution": ~(score > threshold)}


def check_batch_size(value: Any, name: str = "batch_size") -> int:
    """An int in [1, MAX_BATCH_SIZE] (a larger batch would try to allocate absurd amounts of memory)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if not 1 <= value <= MAX_BATCH_SIZE:
        raise ValueError(f"{name} must lie in [1, {MAX_BATCH_SIZE}], got {_short(value)}")
    return value


def threshold_below(scores_in: np.ndarray | Tensor, tpr: float) -> float:
    """delta such that ``score > delta`` keeps a fraction >= ``tpr`` of ``scores_in``: the
    float (in the scores' own precision) just below the 95%-TPR threshold of :mod:`odin_ood.metrics` (which keeps
    ``score >= t``), so both conventions select exactly the same images."""
    s = scores_in.detach().cpu().numpy() if isinstance(scores_in, Tensor) else np.asarray(scores_in)
    dtype = s.dtype.type if s.dtype in (np.float32, np.float64) else np.float64
    return float(np.nextafter(dtype(threshold_at_tpr(s, tpr)), dtype(-np.inf)))


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
    shape = getattr(model, "input_shape", None) or input_shape
    if shape is None:
        return None
    try:
        with scoring_mode(model), torch.no_grad():
            logits = model(torch.zeros(1, *shape, device=model_device(model, torch.device("cpu"))))
    except RuntimeError:  # the model does not take that shape: scoring will say so
        return None
    return int(logits.shape[-1]) if isinstance(logits, Tensor) and logits.ndim == 2 else None


def _channels(model: nn.Module) -> int | None:
    shape = getattr(model, "input_shape", None)
    return int(shape[0]) if shape is not None else None


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
    low, high = (_per_channel(c, f"clamp[{k}]", channels) for k, c in enumerate(v))
    if not bool((torch.as_tensor(low) <= torch.as_tensor(high)).all()):
        raise ValueError(f"clamp low {low} exceeds high {high}")
    return tuple(c if isinstance(c, float) else torch.tensor(c).view(-1, 1, 1) for c in (low, high))


def _input_shape(v: Any) -> tuple[int, ...]:
    """A list of 1 to 4 positive integers, each at most 65,536 (the model's (C, H, W) or similar),
    of at most three times PIL's pixel limit values (an RGB image that large: no larger input is
    made from an image)."""
    if not isinstance(v, list) or not 1 <= len(v) <= 4:
        raise ValueError(f"input_shape must be a list of 1 to 4 sizes, got {_short(v)}")
    if not all(isinstance(a, int) and not isinstance(a, bool) and 1 <= a <= 65_536 for a in v):
        raise ValueError(f"input_shape sizes must be integers in [1, 65536], got {_short(v)}")
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and math.prod(v) > 3 * limit:
        raise ValueError(f"input_shape {'x'.join(map(str, v))} holds {math.prod(v)} values, over 3 x PIL's pixel limit "
                         f"of {limit} (Image.MAX_IMAGE_PIXELS): no image that large is decoded")
    return tuple(v)


def _precision(d: dict) -> tuple[str, str | None]:
    """(precision, runtime) a file records: ("fp32", None) when absent (fp32, every runtime);
    below fp32, the runtime whose scores set the threshold (a name, checked when it scores)."""
    precision = check_precision(d.get("precision", "fp32"), "precision")
    runtime = d.get("runtime")
    if precision == "fp32" and runtime is None:
        return precision, None
    if precision == "fp32" or not (isinstance(runtime, str) and runtime.isidentifier() and len(runtime) <= 40):
        raise ValueError(f"runtime must be the name of the runtime a {precision} threshold was fitted on "
                         f"(fp32: none), got {_short(runtime)}")
    return precision, runtime


def _preprocessing(v: Any) -> Preprocessing | None:
    """None (a file written before the preprocessing was recorded) or a valid preprocessing."""
    return None if v is None else Preprocessing.from_dict(v)


def _check_agrees(p: Preprocessing, std: Any, mean: Any, shape: Sequence[int] | None) -> None:
    """Refuse an ``input_std``, ``input_mean`` or ``input_shape`` that the preprocessing contradicts."""
    for name, given, recorded in (("input_std", std, p.std), ("input_mean", mean, p.mean)):
        if given is not None and not close_values(floats(given), recorded):
            raise ValueError(f"{name} {floats(given)} disagrees with the preprocessing's {name[6:]} {recorded}")
    if shape is not None and tuple(shape) != p.input_shape:
        raise ValueError(f"input_shape {tuple(shape)} disagrees with the preprocessing's {p.input_shape}")


def _objective(v: Any) -> str:
    if not isinstance(v, str) or v not in METRICS:
        raise ValueError(f"objective must be one of {sorted(METRICS)}, got {_short(v)}")
    return v


def _resolve(path: Path, create: bool) -> Path:
    if path.suffix == ".json":
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        return path
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path / FILENAME
