"""The fitted detector a user keeps: fit / score / predict / save / load.

g(x; delta, T, epsilon) = 1 (out-of-distribution) if S(x~; T) <= delta, else 0 (paper section 3).
``fit`` tunes (T, epsilon) on held-out data (section 4.4) and sets ``threshold_`` (delta) so
that a fraction ``tpr`` of the held-out ID images scores above it. ``score`` selects ODIN (the
default) or one of its successors (:mod:`odin_ood.score_choice`), tuned and thresholded alike.

Saved detectors are one JSON file (never a pickle) recording T, epsilon, delta, the
normalisation, the target TPR, the library version and a fingerprint of the model's weights;
``Detector.load`` refuses a file made for other weights.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from odin_ood import __version__
from odin_ood._checks import check_epsilon, check_rate, check_temperature
from odin_ood.batching import Data, map_batches
from odin_ood.fingerprint import fingerprint
from odin_ood.metrics import METRICS, threshold_at_tpr
from odin_ood.score_choice import check_score, score_outputs, tune_score
from odin_ood.scores import Clamp
from odin_ood.tuning import PAPER_EPSILONS, PAPER_TEMPERATURES

FORMAT = "odin-ood-detector"
FORMAT_VERSION = 1
FILENAME = "detector.json"


class NotFittedError(RuntimeError):
    """The detector was used before ``fit`` or ``load``."""


class Detector:
    """ODIN out-of-distribution detector around a trained classifier.

    ``input_std`` (per channel) divides the perturbation when the model sees normalised inputs;
    ``input_mean`` is only needed to build noise tuning sets for such a model. ``score``:
    "odin" (default), "energy-odin", "energy", "maxlogit" or "msp" (:mod:`odin_ood.score_choice`),
    kept as ``score_name`` (``score`` is the scoring method). Fitted attributes end in ``_``:
    ``temperature_``, ``epsilon_``, ``threshold_``, ``tpr_``, ``model_fingerprint_`` and, after
    ``fit``, ``tuning_`` (the whole grid).
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
        score: str = "odin",
    ) -> None:
        self.model = model
        self.score_name = check_score(score)
        self.input_std = input_std
        self.input_mean = input_mean
        self.temperatures = temperatures
        self.epsilons = epsilons
        self.objective = objective
        self.batch_size = batch_size
        self.clamp = clamp

    # -- fitting -----------------------------------------------------------------------------
    def fit(self, id_data: Data, ood_data: Data | None = None, tpr: float = 0.95) -> "Detector":
        """Tune (T, epsilon) on held-out ``id_data`` vs ``ood_data`` (the paper's Gaussian and
        Uniform noise when None) and set ``threshold_`` so that ``tpr`` of ``id_data`` is kept."""
        tpr = check_rate(tpr, "tpr")
        result = tune_score(
            self.model, id_data, ood_data, self.score_name, self.temperatures, self.epsilons, self.input_std,
            self.objective, input_mean=self.input_mean, tpr=tpr, batch_size=self.batch_size, clamp=self.clamp,
        )
        i, j = result.index
        self._set_fitted(result.temperature, result.epsilon, threshold_below(result.scores_in[i, j], tpr), tpr)
        self.tuning_ = result
        return self

    def _set_fitted(self, temperature: float, epsilon: float, threshold: float, tpr: float) -> None:
        self.temperature_ = check_temperature(temperature)
        self.epsilon_ = check_epsilon(epsilon)
        self.threshold_ = float(threshold)
        self.tpr_ = tpr
        self.model_fingerprint_ = fingerprint(self.model)

    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise NotFittedError("this Detector is not fitted: call fit(...) or Detector.load(...) first")

    # -- using -------------------------------------------------------------------------------
    def outputs(self, x: Data) -> dict[str, Tensor]:
        """Per image: ``predicted_class`` and ``confidence`` (the classifier's own softmax on the
        unperturbed input), ``score`` (ODIN or the chosen score), ``is_out_of_distribution``
        (score <= threshold_)."""
        self._check_fitted()
        both = map_batches(self._batch_outputs, x, self.batch_size, "x")
        logits, score = both[:-1].T, both[-1]
        probs = torch.softmax(logits, dim=1)
        confidence, predicted = probs.max(dim=1)
        return {
            "predicted_class": predicted,
            "confidence": confidence,
            "score": score,
            "is_out_of_distribution": score <= self.threshold_,
        }

    def _batch_outputs(self, x: Tensor) -> Tensor:
        logits, score = score_outputs(self.model, x, self.score_name, self.temperature_, self.epsilon_, self.input_std,
                                      self.clamp)
        return torch.cat([logits, score[:, None]], dim=1).T

    def score(self, x: Data) -> Tensor:
        """Scores at the fitted (T, epsilon) (ODIN's S(x~; T) by default); higher = more in-distribution."""
        return self.outputs(x)["score"]

    def predict(self, x: Data) -> Tensor:
        """g(x): 1 = out-of-distribution (score <= threshold_), 0 = in-distribution."""
        return self.outputs(x)["is_out_of_distribution"].long()

    # -- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
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
            "input_std": _floats_or_none(self.input_std),
            "input_mean": _floats_or_none(self.input_mean),
            "clamp": None if self.clamp is None else [_floats_or_none(c) for c in self.clamp],
            "batch_size": self.batch_size,
            "model_fingerprint": self.model_fingerprint_,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the detector as JSON: to ``path`` if it ends in .json, else to ``path/detector.json``."""
        target = _resolve(Path(path), create=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        os.replace(tmp, target)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike, model: nn.Module) -> "Detector":
        """Read a detector saved by :meth:`save` for ``model``; refuses files made for other weights."""
        target = _resolve(Path(path), create=False)
        if not target.is_file():
            raise FileNotFoundError(f"no detector file at {target} (expected a .json file or a folder holding {FILENAME})")
        try:
            d = json.loads(target.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{target} is not a readable odin-ood detector file: {exc}") from None
        return cls.from_dict(d, model, source=str(target))

    @classmethod
    def from_dict(cls, d: Any, model: nn.Module, source: str = "detector") -> "Detector":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"{source} is not an odin-ood detector file (missing format={FORMAT!r})")
        if d.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{source} has format_version {d.get('format_version')!r}; this library reads {FORMAT_VERSION}")
        try:
            clamp = None if d["clamp"] is None else tuple(_clamp_value(c) for c in d["clamp"])
            det = cls(
                model, input_std=d["input_std"], input_mean=d["input_mean"], objective=str(d["objective"]),
                batch_size=int(d["batch_size"]), clamp=clamp, score=str(d.get("score", "odin")),
            )
            threshold = float(d["threshold"])
            if not math.isfinite(threshold):
                raise ValueError("threshold is not finite")
            det._set_fitted(float(d["temperature"]), float(d["epsilon"]), threshold, check_rate(d["tpr"], "tpr"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source} is a corrupt odin-ood detector file: {type(exc).__name__}: {exc}") from None
        if det.objective not in METRICS:
            raise ValueError(f"{source} is a corrupt odin-ood detector file: unknown objective {det.objective!r}")
        if d.get("model_fingerprint") != det.model_fingerprint_:
            raise ValueError(
                f"{source} was fitted for a model with weights {d.get('model_fingerprint')!r}, but the given "
                f"model's weights are {det.model_fingerprint_!r}: load it with the model it was fitted on"
            )
        return det


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
    return [float(a) for a in torch.as_tensor(v).flatten().tolist()]


def _clamp_value(v: Any) -> float | Tensor:
    return float(v) if isinstance(v, (int, float)) else torch.tensor([float(a) for a in v])


def _resolve(path: Path, create: bool) -> Path:
    if path.suffix == ".json":
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        return path
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path / FILENAME
