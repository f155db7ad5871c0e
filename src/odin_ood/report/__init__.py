"""The report: figures (:mod:`plots`) and a self-contained HTML page (:mod:`html`) rendered from
a suite's ``results.json``.

Imports point down: to :mod:`odin_ood.experiments` (a suite's results) and :mod:`odin_ood.metrics`;
the commands import this.
"""

from odin_ood.report.html import write_report

__all__ = ["write_report"]
