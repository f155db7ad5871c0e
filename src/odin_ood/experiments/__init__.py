"""The paper's experiments, one module per table or figure family, run by suite.

``run_suite(RunConfig(suite="mnist-lenet", out="results/mnist-lenet"))`` (or ``odin-ood reproduce mnist``, both MNIST
models) loads the suite's model and data, scores every dataset once over the T x epsilon grid (cached),
and derives from those scores: the main table (:mod:`main_table`, beside the successors:
:mod:`successor_rows`), the every-image rows at the paper's parameters (:mod:`every_image`), the
parameter sweeps and threshold curves (:mod:`parameters`), the cross-dataset matrix and tuning-size
curve (:mod:`transfer`), the section-5 analyses (:mod:`analysis`), the dataset distances
(:mod:`distances`) and which tuning source transfers (:mod:`tuning_sources`).

The machinery: :mod:`config` (the run's settings and their defaults), :mod:`loading` (the suite's
model and data), :mod:`protocol` (splits, scored sets, the experiment), :mod:`scorer` (scores over
the grid through :mod:`cache`, with :mod:`progress`), :mod:`choose` (the tuned cell per set, by
search), :mod:`bootstrap` (intervals), :mod:`run` (the stages in order) and :mod:`results` (the run
folder: results.json/csv, provenance). Suites live in :mod:`suites`; the paper's own numbers in
:mod:`paper`; several models side by side in :mod:`comparison`.

Imports point down: to :mod:`odin_ood.tuning`, :mod:`odin_ood.metrics`, :mod:`odin_ood.scores`,
:mod:`odin_ood.detector` (fingerprints), :mod:`odin_ood.models`, :mod:`odin_ood.data`,
:mod:`odin_ood.preprocess` and :mod:`odin_ood._utils`; the report and the ``reproduce`` command import this.
"""

from odin_ood.experiments.config import RunConfig
from odin_ood.experiments.run import run_suite
from odin_ood.experiments.suites import SUITES

__all__ = ["SUITES", "RunConfig", "run_suite"]
