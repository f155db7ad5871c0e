"""The fitted detector a user keeps: fit / score_samples / decision_function / predict.

g(x; delta, T, epsilon) = 1 (out-of-distribution) if S(x~; T) <= delta, else 0 (paper section 3).
``fit`` tunes (T, epsilon) on held-out data (section 4.4) and sets ``threshold_`` (delta) so
that a fraction ``tpr`` of the held-out ID images scores above it. ``score_family`` selects ODIN
(the default) or one of its successors (:mod:`odin_ood.scores.family`), tuned and thresholded alike.

In scikit-learn's shape (``sklearn/covariance/_elliptic_envelope.py``): the constructor stores its
arguments unchanged (``get_params``/``set_params``, ``sklearn.base.clone`` works:
:mod:`odin_ood.detector.params`) and ``fit`` checks them, every failure naming the argument;
fitted attributes end in ``_`` and exist only after ``fit`` (or ``Detector.load``);
``score_samples`` (higher = more in-distribution), ``decision_function`` (score - threshold_,
> 0 for in-distribution) and ``predict`` are the names users know. Unlike scikit-learn's outlier
detectors, ``predict`` keeps the paper's g(x): 1 = out-of-distribution, 0 = in-distribution.

The decision fails closed: a score that is not finite (NaN from a broken model, say) is
out-of-distribution, because ``score > threshold_`` is false for NaN. Saved detectors are one
JSON file: :mod:`odin_ood.detector.file`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from odin_ood._utils.batching import Data, map_batches
from odin_ood._utils.checks import check_epsilon, check_number, check_rate, check_temperature, named
from odin_ood.detector import file
from odin_ood.detector.fingerprint import fingerprint
from odin_ood.detector.params import Params, check_params
from odin_ood.metrics.detection import threshold_at_tpr
from odin_ood.models.folding import scoring_copy
from odin_ood.preprocess.model_input import declared, declared_input, model_data, of_model
from odin_ood.preprocess.spec import Preprocessing, floats
from odin_ood.scores.family import score_outputs
from odin_ood.scores.passes import Clamp, model_device
from odin_ood.scores.precision import autocast, check_precision, check_scoring, eager_support
from odin_ood.tuning.family import tune_score
from odin_ood.tuning.grid import DEFAULT_OOD_FREE, PAPER_EPSILONS, PAPER_TEMPERATURES
from odin_ood.tuning.searches import DEFAULT_SEARCH


class NotFittedError(RuntimeError):
    """The detector was used before ``fit`` or ``load``."""


class Detector(Params):
    """ODIN out-of-distribution detector around a trained classifier.

    Normalisation has one source, the model's preprocessing, attached at load
    (:func:`odin_ood.preprocess.declared_input`); ``preprocessing`` (a
    :class:`~odin_ood.preprocess.Preprocessing`, saved in the file) replaces it, and
    ``input_std``/``input_mean``/``input_shape`` override its fields (``input_std=1.0`` for a
    step in the model's input units; ``input_shape`` (C, H, W) for a model that does not say it,
    such as a TorchScript file). ``fit`` resolves them into ``preprocessing_``, ``std_`` (divides
    epsilon) and ``mean_`` (builds the noise tuning set). ``score_family``: "odin" (default),
    "energy-odin", "energy", "maxlogit" or "msp" (:mod:`odin_ood.scores.family`; ``score=`` is
    its old name, deprecated: ``score`` is the scoring method). ``ood_free``: what tunes when
    ``fit`` gets no OOD data, "noise" (default: the paper's Gaussian + Uniform noise) or "id-only"
    (the ID data alone, Generalized-ODIN criterion at T = 1000). ``search``: how ``fit`` searches
    the grid, "shared" (default: <= 20 passes per image on the paper's grid, the chosen cell scored
    exactly, :mod:`odin_ood.tuning.shared`) or "grid" (the paper's: every cell, 211 passes).
    ``optimize=True``: fit and score with a copy of an eval-mode model whose batch norms are folded
    into the convolutions before them and, for a conv net, in channels-last memory
    (:func:`odin_ood.models.folding.scoring_copy`: the same function up to float rounding, one more
    copy of the weights; ``odin-ood score`` and ``serve`` use it), remade when the weights change;
    the default False scores ``model`` as given, bitwise as :func:`odin_ood.odin_scores`.
    ``normalise``: "auto" (default: pixels in [0, 1], normalised with ``mean_``/``std_`` when they
    declare a normalisation; else the model's input as is), True (pixels) or False (the model's
    input as is), decided by these alone, never by the data (:mod:`odin_ood.preprocess.model_input`).
    ``precision``: the model's arithmetic, "fp32" (default), "bf16" or "fp16" (``torch.autocast``
    where the device has it, :mod:`odin_ood.scores.precision`); ``fit`` tunes and sets the threshold
    at it, so the TPR holds for scores at that precision, and records it (``precision_``, and
    ``runtime_``: the runtime whose reduced-precision scores set the threshold, "torch" after
    ``fit``, None at fp32); scoring at another precision is refused.

    Fitted attributes: ``temperature_``, ``epsilon_``, ``threshold_``, ``tpr_``,
    ``model_fingerprint_``, ``preprocessing_``, ``mean_``, ``std_``, ``precision_``, ``runtime_``, and after ``fit``
    (not ``load``) ``tuning_`` (the whole grid). ``model_spec_`` and ``weights_spec_`` (None unless a
    caller sets them: ``odin-ood fit`` and the demo do) say how the model was loaded, e.g.
    ``"torchvision:resnet18"`` and ``"r18.pth"``; they are saved as ``"model"``/``"weights"`` and
    named when a file meets other weights.
    """

    model_spec_: str | None = None
    weights_spec_: str | None = None

    def __init__(
        self,
        model: nn.Module,
        input_std: Sequence[float] | float | None = None,
        input_mean: Sequence[float] | float | None = None,
        temperatures: Sequence[float] = PAPER_TEMPERATURES,
        epsilons: Sequence[float] = PAPER_EPSILONS,
        objective: str = "fpr_at_95_tpr",
        batch_size: int = 128,
        clamp: Clamp | None = None,
        input_shape: Sequence[int] | None = None,
        score_family: str = "odin",
        ood_free: str = DEFAULT_OOD_FREE,
        preprocessing: Preprocessing | None = None,
        optimize: bool = False,
        normalise: str | bool = "auto",
        search: str = DEFAULT_SEARCH,
        precision: str = "fp32",
        **deprecated: Any,
    ) -> None:
        if "score" in deprecated:
            if score_family != "odin":
                raise TypeError("pass score_family= alone (score= is its deprecated name)")
            warnings.warn(
                "Detector(score=...) is deprecated: use score_family=... (score is the scoring method)",
                DeprecationWarning,
                stacklevel=2,
            )
            score_family = deprecated.pop("score")
        if deprecated:
            raise TypeError(f"Detector() got unexpected keyword argument(s) {', '.join(map(repr, deprecated))}")
        self.model = model
        self.input_std = input_std
        self.input_mean = input_mean
        self.temperatures = temperatures
        self.epsilons = epsilons
        self.objective = objective
        self.batch_size = batch_size
        self.clamp = clamp
        self.input_shape = input_shape
        self.score_family = score_family
        self.ood_free = ood_free
        self.preprocessing = preprocessing
        self.optimize = optimize
        self.normalise = normalise
        self.search = search
        self.precision = precision
        self._scoring: tuple[tuple, nn.Module, bool] | None = None

    @property
    def score_name(self) -> str:
        """Deprecated name of ``score_family``."""
        warnings.warn("Detector.score_name is deprecated: use score_family", DeprecationWarning, stacklevel=2)
        return self.score_family

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, id_data: Data, ood_data: Data | None = None, tpr: float = 0.95) -> Detector:
        """Tune (T, epsilon) on held-out ``id_data`` vs ``ood_data`` (when None: as ``ood_free``
        says, against the paper's Gaussian and Uniform noise or on ``id_data`` alone) and set
        ``threshold_`` so that ``tpr`` of ``id_data`` is kept. Checks every constructor argument first."""
        check_params(self, file.channels(self.model))
        tpr = check_rate(tpr, "tpr")
        precision = self._check_precision_support()
        self._fit_normalisation()
        id_data = self._model_data(id_data, "id_data")
        ood_data = None if ood_data is None else self._model_data(ood_data, "ood_data")
        with autocast(precision, model_device(self.model, torch.device("cpu"))):
            result = tune_score(
                self.scoring_model()[0],
                id_data,
                ood_data,
                self.score_family,
                self.temperatures,
                self.epsilons,
                self.std_,
                self.objective,
                input_mean=self.mean_,
                tpr=tpr,
                batch_size=self.batch_size,
                clamp=self.clamp,
                ood_free=self.ood_free,
                search=self.search,
            )
        i, j = result.index
        self._set_fitted(
            result.temperature,
            result.epsilon,
            threshold_below(result.scores_in[i, j], tpr),
            tpr,
            precision,
            None if precision == "fp32" else "torch",
        )
        self.tuning_ = result
        return self

    def _fit_normalisation(self) -> None:
        """``std_``, ``mean_`` and ``preprocessing_`` from the one source (class docstring): the
        arguments where given, else the given preprocessing's, else the model's own."""
        said, given = declared_input(self.model), self.preprocessing
        source = given if given is not None else said
        self.std_ = floats(self.input_std) if self.input_std is not None else source.std
        self.mean_ = floats(self.input_mean) if self.input_mean is not None else source.mean
        if given is not None:
            self.preprocessing_: Preprocessing | None = given
            return
        base = of_model(self.model)
        if self.input_shape is not None:
            shape = tuple(self.input_shape)
            base = Preprocessing(shape) if base is None else base.for_input_shape(shape)
        self.preprocessing_ = None if base is None else dataclasses.replace(base, mean=self.mean_, std=self.std_)

    def _set_fitted(
        self,
        temperature: float,
        epsilon: float,
        threshold: float,
        tpr: float,
        precision: str = "fp32",
        runtime: str | None = None,
    ) -> None:
        """Record the fitted state: (T, epsilon), delta, the TPR, the precision and runtime that
        set delta, the weights' fingerprint and the resolved normalisation."""
        self._fit_normalisation()
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
            warnings.warn(
                f"{broken} of {len(score)} ODIN scores are not finite (NaN or infinite): those images are "
                "reported out-of-distribution (the gate fails closed)",
                RuntimeWarning,
                stacklevel=2,
            )
        return gate_outputs(logits, score, self.threshold_)

    def scoring_model(self) -> tuple[nn.Module, bool]:
        """(the module that scores, whether it takes channels-last inputs): ``self.model`` itself,
        or with ``optimize`` its :func:`scoring_copy`, remade when a weight's storage, version
        counter (bumped by every in-place write), dtype or device changes. A model in training
        mode is scored as given (``scoring_mode`` switches it to eval for the pass)."""
        if not self.optimize or any(m.training for m in self.model.modules()):
            return self.model, False
        key = tuple(
            (t.data_ptr(), t._version, t.dtype, t.device) for t in (*self.model.parameters(), *self.model.buffers())
        )
        if self._scoring is None or self._scoring[0] != key:
            self._scoring = (key, *scoring_copy(self.model))
        return self._scoring[1], self._scoring[2]

    def _model_data(self, data: Data, name: str) -> Data:
        """``data`` as the model takes it: pixels normalised with ``mean_``/``std_`` as
        ``normalise`` says (:func:`odin_ood.preprocess.model_input.model_data`)."""
        return model_data(data, declared(self.model, self.mean_, self.std_), self.normalise, self.batch_size, name)

    def _batch_outputs(self, x: Tensor) -> Tensor:
        model, channels_last = self.scoring_model()
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.precision, x.device):
            logits, score = score_outputs(
                model, x, self.score_family, self.temperature_, self.epsilon_, self.std_, self.clamp
            )
        return torch.cat([logits, score[:, None]], dim=1).T

    def score_samples(self, x: Data) -> Tensor:
        """Scores at the fitted (T, epsilon) (ODIN's S(x~; T) by default); higher = more in-distribution."""
        return self.outputs(x)["score"]

    def score(self, x: Data) -> Tensor:
        """:meth:`score_samples` (the name this method had first)."""
        return self.score_samples(x)

    def decision_function(self, x: Data) -> Tensor:
        """score_samples(x) - threshold_: > 0 for in-distribution (``predict`` 0), <= 0 or NaN for
        out-of-distribution (``predict`` 1), as scikit-learn's outlier detectors."""
        return self.score_samples(x) - self.threshold_

    def predict(self, x: Data) -> Tensor:
        """g(x): 1 = out-of-distribution (score <= threshold_, or not finite), 0 = in-distribution."""
        return self.outputs(x)["is_out_of_distribution"].long()

    # -- persistence (:mod:`odin_ood.detector.file`) ------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON form of the fitted detector (:func:`odin_ood.detector.file.to_dict`)."""
        self._check_fitted()
        return file.to_dict(self)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the detector as JSON: to ``path`` if it ends in .json, else to ``path/detector.json``;
        a symbolic link there is refused, never written through (:mod:`odin_ood._utils.files`)."""
        return file.save(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | os.PathLike, model: nn.Module, max_memory: int | None = None) -> Detector:
        """Read a detector saved by :meth:`save` for ``model`` (:func:`odin_ood.detector.file.read`):
        refuses files made for other weights and fields outside their valid range (``ValueError``
        naming the file and the field), and with ``max_memory`` (bytes) an input size of which one
        image cannot be scored within it, before the model runs on that size."""
        path, d = file.read(path)
        return cls.from_dict(d, model, source=str(path), max_memory=max_memory)

    @classmethod
    def from_dict(cls, d: Any, model: nn.Module, source: str = "detector", max_memory: int | None = None) -> Detector:
        """The detector described by ``d`` (as written by :meth:`to_dict`) for ``model``, every
        field checked (:func:`odin_ood.detector.file.from_dict`)."""
        return file.from_dict(cls, d, model, source, max_memory)


def gate_outputs(logits: Tensor, score: Tensor, threshold: float) -> dict[str, Tensor]:
    """The gate's four outputs from a batch's unperturbed logits and scores: ``predicted_class``
    and ``confidence`` (argmax and max of softmax(f(x))), ``score``, ``is_out_of_distribution``
    = not (score > threshold), so that a NaN score is out-of-distribution."""
    confidence, predicted = torch.softmax(logits, dim=1).max(dim=1)
    return {
        "predicted_class": predicted,
        "confidence": confidence,
        "score": score,
        "is_out_of_distribution": ~(score > threshold),
    }


def threshold_below(scores_in: np.ndarray | Tensor, tpr: float) -> float:
    """delta such that ``score > delta`` keeps a fraction >= ``tpr`` of ``scores_in``: the
    float (in the scores' own precision) just below the 95%-TPR threshold of :mod:`odin_ood.metrics` (which keeps
    ``score >= t``), so both conventions select exactly the same images."""
    s = scores_in.detach().cpu().numpy() if isinstance(scores_in, Tensor) else np.asarray(scores_in)
    dtype = s.dtype.type if s.dtype in (np.float32, np.float64) else np.float64
    return float(np.nextafter(dtype(threshold_at_tpr(s, tpr)), dtype(-np.inf)))
