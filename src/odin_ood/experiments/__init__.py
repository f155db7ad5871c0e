"""The paper's experiments, one module per table or figure family, run by suite.

``run_suite(RunConfig(suite="mnist-lenet", out="results/mnist-lenet"))`` (or ``odin-ood reproduce mnist``, both MNIST
models) loads the suite's model and data, scores every dataset once over the T x epsilon grid (cached),
and derives from those scores: the main table (:mod:`main_table`), the parameter sweeps and
threshold curves (:mod:`parameters`), the cross-dataset matrix and tuning-size curve
(:mod:`transfer`), the section-5 analyses (:mod:`analysis`) and the dataset distances
(:mod:`distances`). Suites live in :mod:`suites`; the paper's own numbers in :mod:`paper`.

Imports point down: to :mod:`odin_ood.tuning`, :mod:`odin_ood.metrics`, :mod:`odin_ood.scores`,
:mod:`odin_ood.detector` (fingerprints), :mod:`odin_ood.models` and :mod:`odin_ood.data`; the report and
the ``reproduce`` command import this.
"""

from odin_ood.experiments.run import RunConfig, run_suite
from odin_ood.experiments.suites import SUITES

__all__ = ["SUITES", "RunConfig", "run_suite"]
