"""odin-ood: ODIN out-of-distribution detection (Liang, Li & Srikant, ICLR 2018).

Higher scores mean more in-distribution. The ODIN score lives in :mod:`odin_ood.scores`, the
paper's metrics in :mod:`odin_ood.metrics`, the (T, epsilon) search in :mod:`odin_ood.tuning`
and the fitted detector in :mod:`odin_ood.detector`.
"""

from odin_ood._version import __version__

from odin_ood.detector import Detector  # noqa: E402
from odin_ood.fingerprint import fingerprint  # noqa: E402
from odin_ood.scores import msp_scores, odin_scores  # noqa: E402
from odin_ood.successors import energy_odin_scores, energy_scores, maxlogit_scores  # noqa: E402
from odin_ood.tuning import PAPER_EPSILONS, PAPER_TEMPERATURES, TuningResult, tune  # noqa: E402

__all__ = [
    "Detector",
    "PAPER_EPSILONS",
    "PAPER_TEMPERATURES",
    "TuningResult",
    "energy_odin_scores",
    "energy_scores",
    "fingerprint",
    "maxlogit_scores",
    "msp_scores",
    "odin_scores",
    "tune",
    "__version__",
]
