"""The detector a user keeps: the estimator and its file.

* :mod:`~odin_ood.detector.estimator`: :class:`Detector` (fit / score_samples /
  decision_function / predict, in scikit-learn's shape) and the gate's decision;
* :mod:`~odin_ood.detector.params`: its constructor arguments (``get_params``/``set_params``,
  ``sklearn.base.clone``) and their checks;
* :mod:`~odin_ood.detector.file`: the JSON file (``detector.json``): writing it, reading it back
  with every field checked;
* :mod:`~odin_ood.detector.fingerprint`: fingerprints of a model's weights (a file refuses other
  weights) and of its computation (an exported graph or a resumed output is used only for it).

Imports point down: to :mod:`odin_ood.tuning`, :mod:`odin_ood.metrics`, :mod:`odin_ood.scores`,
:mod:`odin_ood.preprocess`, :mod:`odin_ood.models` and :mod:`odin_ood._utils`; the export, the
runtimes, the serving app and the commands import this.
"""

from odin_ood.detector.estimator import Detector, NotFittedError, gate_outputs, threshold_below
from odin_ood.detector.file import FILENAME, FORMAT, FORMAT_VERSION, MAX_FILE_BYTES
from odin_ood.detector.params import MAX_BATCH_SIZE, MAX_CHANNELS, check_batch_size

__all__ = [
    "FILENAME",
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_BATCH_SIZE",
    "MAX_CHANNELS",
    "MAX_FILE_BYTES",
    "Detector",
    "NotFittedError",
    "check_batch_size",
    "gate_outputs",
    "threshold_below",
]
