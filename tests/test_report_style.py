"""report/style.py: tick labels to their significant digits, and every figure of the reproduction
report, drawn from each committed ``docs/results/**/results.json``, free of the faults of issue 33
(run-together or crowded ticks, unlabelled reference lines, clipped titles, hidden series),
checked with matplotlib's renderer (tests/figure_support.py), not by comparing pixels."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from figure_support import faults
from odin_ood.report.plots import FIGURES, figure_skipped
from odin_ood.report.style import (
    SignificantFormatter,
    figure,
    finish,
    line_styles,
    reference_line,
    step_histograms,
    wrapped_title,
)

RESULTS = sorted((Path(__file__).resolve().parents[1] / "docs" / "results").rglob("results.json"))


def labels(values, scale="linear"):
    fig, ax = plt.subplots()
    ax.set_xscale(scale)
    formatter = SignificantFormatter()
    ax.xaxis.set_major_formatter(formatter)
    try:
        return formatter.format_ticks(values)
    finally:
        plt.close(fig)


@pytest.mark.parametrize(
    "values,expected",
    [
        ([0.1, 0.105, 0.11, 0.115, 0.12], ["0.100", "0.105", "0.110", "0.115", "0.120"]),
        ([0.1, 0.1025, 0.105], ["0.1000", "0.1025", "0.1050"]),
        ([0.0, 0.25, 0.5, 0.75, 1.0], ["0", "0.25", "0.50", "0.75", "1.00"]),
        ([0, 1000, 2000], ["0", "1000", "2000"]),
        ([-0.0004, 0.0, 0.0004], ["-0.0004", "0", "0.0004"]),
        ([0.1 + 0.2, 0.6], ["0.3", "0.6"]),  # float noise (0.30000000000000004) is not a digit
    ],
)
def test_tick_labels_have_the_digits_their_neighbours_need(values, expected):
    assert labels(values) == expected


def test_log_tick_labels_beyond_plain_numbers_are_powers_of_ten():
    assert labels([1e-12, 1e-9, 1e-6, 1e-3], "log") == ["$10^{-12}$", "$10^{-9}$", "$10^{-6}$", "$10^{-3}$"]
    assert labels([0.2, 0.5, 1, 2, 5], "log") == ["0.2", "0.5", "1", "2", "5"]


def old_style_histograms():
    """The demo's ODIN panel and ROC as drawn before issue 33 (default ticks, opaque bars,
    an unlabelled 95% line, tight layout with a long title)."""
    rng = np.random.default_rng(0)
    fig, (ax, roc) = plt.subplots(1, 2, figsize=(9, 3.5))
    bins = np.linspace(0.1, 0.12, 60)
    ax.hist(0.1 + 0.02 * rng.random(500), bins=bins, label="MNIST")
    ax.hist(0.1 + 0.002 * rng.random(500), bins=bins, label="Omniglot")
    ax.legend()
    roc.plot([0, 0.1, 1], [0, 0.9, 1], label="ODIN")
    roc.axhline(0.95, color="grey")
    roc.legend()
    ax.set_title(
        "tuning split: FPR (%) at 95% TPR; chosen T=5, eps=0 (red); shared search, 16 passes/image (blank: not scored)"
    )
    fig.tight_layout()
    return fig


def test_the_checks_find_each_fault_of_the_old_pictures():
    fig = old_style_histograms()
    found = "\n".join(faults(fig))
    plt.close(fig)
    for fault in ("overlap", "tick labels (", "reference line", "opaque histogram", "clipped"):
        assert fault in found, (fault, found)


def test_the_shared_helpers_draw_the_same_data_without_a_fault():
    rng = np.random.default_rng(0)
    fig, (ax, roc) = figure(1, 2, figsize=(9, 3.5))
    step_histograms(
        ax,
        {"MNIST": 0.1 + 0.02 * rng.random(500), "Omniglot": 0.1 + 0.002 * rng.random(500)},
        {"MNIST": "tab:red", "Omniglot": "tab:blue"},
    )
    ax.legend()
    styles = line_styles(["ODIN", "MSP"])
    roc.plot([0, 0.1, 1], [0, 0.9, 1], **styles["ODIN"], label="ODIN")
    roc.plot([0, 0.1, 1], [0, 0.9, 1], **styles["MSP"], label="MSP")  # the same curve: dashed over solid
    reference_line(roc, 0.95, "95% TPR")
    roc.legend()
    wrapped_title(
        ax,
        "tuning split: FPR (%) at 95% TPR; chosen T=5, eps=0 (red); shared search, 16 passes/image (blank: not scored)",
    )
    assert faults(finish(fig)) == []
    plt.close(fig)


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: str(p.parent.relative_to(p.parents[2])))
def test_every_report_figure_of_the_committed_runs_reads_well(path):
    results = json.loads(path.read_text())
    drawn = 0
    for name, (_, draw) in FIGURES.items():
        if figure_skipped(results, name):
            continue
        fig = finish(draw(results))
        assert faults(fig) == [], name
        plt.close(fig)
        drawn += 1
    assert drawn >= 5


def test_the_report_page_of_the_widest_committed_run_fits_1400_px(tmp_path):
    from figure_support import rendered_widths
    from odin_ood.report.html import render_html

    path = next(p for p in RESULTS if p.parent.name == "cifar10-densenet-quick")
    page = tmp_path / "report.html"
    page.write_text(render_html(json.loads(path.read_text()), {}), encoding="utf-8")
    width = rendered_widths(page, tmp_path)
    assert width["page"] <= 1400 and max(width["tables"]) <= width["body"], width
