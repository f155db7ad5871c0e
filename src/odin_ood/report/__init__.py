"""The report: figures (:mod:`plots`) and a self-contained HTML page (:mod:`html`) rendered from
a suite's ``results.json``."""

from odin_ood.report.html import write_report

__all__ = ["write_report"]
