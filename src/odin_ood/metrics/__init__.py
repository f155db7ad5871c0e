"""The paper's detection metrics (section 4.3) as pure functions of (scores_in, scores_out).

* :mod:`~odin_ood.metrics.detection`: FPR at 95% TPR, detection error, AUROC, AUPR-In/Out from
  one sort of the pooled scores, exact and checked against scikit-learn (:func:`evaluate`);
* :mod:`~odin_ood.metrics.calmetric`: the same metrics exactly as the paper's released
  ``calMetric.py`` computes them (``evaluate(..., convention="calmetric")``).

ID is the positive class for FPR@95TPR and AUPR-In; higher scores mean more in-distribution.
Imports only :mod:`odin_ood._utils`: the tuning, the detector and the experiments import this.
"""

from odin_ood.metrics.calmetric import calmetric_evaluate
from odin_ood.metrics.detection import (
    LOWER_IS_BETTER,
    METRICS,
    RocPoints,
    aupr_in,
    aupr_out,
    auroc,
    detection_error,
    evaluate,
    fpr_at_tpr,
    roc_points,
    threshold_at_tpr,
    tpr_fpr_at_thresholds,
)

__all__ = [
    "LOWER_IS_BETTER",
    "METRICS",
    "RocPoints",
    "aupr_in",
    "aupr_out",
    "auroc",
    "calmetric_evaluate",
    "detection_error",
    "evaluate",
    "fpr_at_tpr",
    "roc_points",
    "threshold_at_tpr",
    "tpr_fpr_at_thresholds",
]
