"""Choosing (T, epsilon) on held-out data (paper section 4.4): one module per search.

* :mod:`~odin_ood.tuning.grid`: the paper's grid, every cell on every tuning image
  (:func:`tune`, :class:`TuningResult`), and tuning without OOD data (noise, or the ID data alone);
* :mod:`~odin_ood.tuning.shared`: the shared search, the grid at a tenth of its passes with the
  chosen cell scored exactly (the default of :class:`odin_ood.Detector`);
* :mod:`~odin_ood.tuning.halving`: successive halving over the cells (the experiments');
* :mod:`~odin_ood.tuning.searches`: what they share: the one :data:`Cell` type, the one
  :data:`SEARCHES` table, the grid's cost in passes;
* :mod:`~odin_ood.tuning.family`: tuning any score family the same way (:func:`tune_score`).

Imports point down: to :mod:`odin_ood.scores`, :mod:`odin_ood.metrics`, :mod:`odin_ood.data`
(the noise sets) and :mod:`odin_ood._utils`; the detector and the experiments import this.
"""

from odin_ood.tuning.family import tune_score
from odin_ood.tuning.grid import (
    DEFAULT_OOD_FREE,
    ID_ONLY_OBJECTIVE,
    ID_ONLY_TEMPERATURE,
    NOISE_SIZE,
    OOD_FREE,
    PAPER_EPSILONS,
    PAPER_TEMPERATURES,
    TuningResult,
    check_ood_free,
    grid_scores,
    id_only_from_scores,
    noise_ood_set,
    tune,
    tune_from_scores,
    tune_id_only,
)
from odin_ood.tuning.searches import (
    DEFAULT_SEARCH,
    REPRODUCE_DEFAULT_SEARCH,
    REPRODUCE_SEARCHES,
    SEARCHES,
    TUNE_SEARCHES,
    Cell,
    check_search,
    grid_passes,
)

__all__ = [
    "DEFAULT_OOD_FREE",
    "DEFAULT_SEARCH",
    "ID_ONLY_OBJECTIVE",
    "ID_ONLY_TEMPERATURE",
    "NOISE_SIZE",
    "OOD_FREE",
    "PAPER_EPSILONS",
    "PAPER_TEMPERATURES",
    "REPRODUCE_DEFAULT_SEARCH",
    "REPRODUCE_SEARCHES",
    "SEARCHES",
    "TUNE_SEARCHES",
    "Cell",
    "TuningResult",
    "check_ood_free",
    "check_search",
    "grid_passes",
    "grid_scores",
    "id_only_from_scores",
    "noise_ood_set",
    "tune",
    "tune_from_scores",
    "tune_id_only",
    "tune_score",
]
