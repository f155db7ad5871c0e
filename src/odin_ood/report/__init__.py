"""The report: figures (:mod:`plots`) and a self-contained HTML page (:mod:`html`) rendered from
a suite's ``results.json``; the tuning-source section (:mod:`sources`), several models side by side
(:mod:`comparison`), the small report ``odin-ood fit`` writes (:mod:`fit_report`) and what every
figure shares (:mod:`style`).

Imports point down: to :mod:`odin_ood.experiments` (a suite's results), :mod:`odin_ood.metrics` and
:mod:`odin_ood._utils`; the commands and the demo import this.
"""

from odin_ood.report.html import write_report

__all__ = ["write_report"]
