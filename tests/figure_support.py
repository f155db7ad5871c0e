"""Checks that a matplotlib figure reads well, measured with the Agg renderer (no pixel
comparison): the faults issue 33 found in the demo's and the fit report's pictures.

:func:`faults` draws the figure and lists, in words, every fault it finds:

- a numeric axis with more than six tick labels, or two tick labels whose boxes overlap
  ("0.10000.10250.1050" run together);
- a title (or the figure's suptitle) whose box leaves the figure (clipped);
- a reference line (``axhline``/``axvline``) with no entry in any legend of the figure;
- a histogram drawn as opaque bars (a series behind it hidden), or a curve that a later solid
  curve at least as wide could cover entirely.

:func:`rendered_widths` lays an HTML page out in headless Chromium and measures it.
"""

from __future__ import annotations

import html
import itertools
import json
import math
import os
import re
import subprocess
from pathlib import Path

import pytest
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator

MAX_LABELS = 6


def _overlap(a, b, renderer, slack: float = 0.5) -> bool:
    """Whether tick labels ``a`` and ``b`` (Text) overlap: their boxes, or for labels turned by an
    angle that is not a multiple of 90 degrees (whose boxes overlap while the text does not), the
    distance between their baselines against the text's height."""
    angle = math.radians(a.get_rotation())
    ba, bb = a.get_window_extent(renderer), b.get_window_extent(renderer)
    if abs(math.sin(2 * angle)) > 1e-6:
        (xa, ya), (xb, yb) = ba.get_points().mean(0), bb.get_points().mean(0)
        apart = abs(-(xb - xa) * math.sin(angle) + (yb - ya) * math.cos(angle))
        return apart < a.get_fontsize() * a.figure.dpi / 72 - slack
    return ba.x0 < bb.x1 - slack and bb.x0 < ba.x1 - slack and ba.y0 < bb.y1 - slack and bb.y0 < ba.y1 - slack


def _legend_labels(fig: Figure) -> set[str]:
    legends = [ax.get_legend() for ax in fig.axes] + list(fig.legends)
    return {t.get_text() for legend in legends if legend is not None for t in legend.get_texts()}


def _is_reference(ax, line) -> bool:
    return line.get_transform() in (ax.get_yaxis_transform(which="grid"), ax.get_xaxis_transform(which="grid"))


def faults(fig: Figure) -> list[str]:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = fig.bbox
    found = []
    legend_labels = _legend_labels(fig)
    titles = [("suptitle", fig._suptitle)] if fig._suptitle is not None else []
    for n, ax in enumerate(fig.axes):
        if not ax.axison:
            continue
        name = f"axes {n} ({ax.get_title()!r})"
        titles.append((name, ax.title))
        for axis_name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            labels = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
            lo, hi = sorted(ax.get_xlim() if axis_name == "x" else ax.get_ylim())
            shown = [
                t
                for t in labels
                if lo - 1e-9 * (hi - lo) <= (t.get_position()[0 if axis_name == "x" else 1]) <= hi + 1e-9 * (hi - lo)
            ]
            if len(shown) > MAX_LABELS and not isinstance(axis.get_major_locator(), FixedLocator):
                found.append(f"{name}: {len(shown)} {axis_name} tick labels ({[t.get_text() for t in shown]})")
            for i in range(len(shown)):
                for j in range(i + 1, len(shown)):
                    if _overlap(shown[i], shown[j], renderer):
                        found.append(
                            f"{name}: {axis_name} tick labels {shown[i].get_text()!r} and "
                            f"{shown[j].get_text()!r} overlap"
                        )
        for line in ax.get_lines():
            if _is_reference(ax, line) and line.get_label() not in legend_labels:
                found.append(f"{name}: a reference line ({line.get_label()!r}) has no legend entry")
        data = [
            line for line in ax.get_lines() if not _is_reference(ax, line) and line.get_linestyle() not in ("None", "")
        ]
        for i, under in enumerate(data):
            for over in data[i + 1 :]:
                if (
                    over.get_linestyle() == "-"
                    and over.get_linewidth() >= under.get_linewidth()
                    and over.get_zorder() >= under.get_zorder()
                ):
                    found.append(f"{name}: solid curve {over.get_label()!r} can hide {under.get_label()!r}")
        for bars in ax.containers:
            if _opaque_histogram(bars):
                found.append(f"{name}: the opaque histogram {bars.get_label()!r} hides what lies behind it")
    for name, title in titles:
        if title.get_text():
            box = title.get_window_extent(renderer)
            if box.x0 < frame.x0 - 0.5 or box.x1 > frame.x1 + 0.5 or box.y0 < frame.y0 - 0.5 or box.y1 > frame.y1 + 0.5:
                found.append(f"{name}: the title {title.get_text()!r} is clipped by the figure's edge")
    return found


def _opaque_histogram(container) -> bool:
    """Opaque filled bars that touch (``ax.hist``'s default "bar" type; a bar chart of one value
    per class has gaps between its bars)."""
    if not isinstance(container, BarContainer) or len(container.patches) < 2:
        return False
    bars = container.patches
    touching = all(
        abs(a.get_x() + a.get_width() - b.get_x()) <= 1e-9 * max(1.0, abs(b.get_x()))
        for a, b in itertools.pairwise(bars)
    )
    return touching and any(p.get_fill() and p.get_facecolor()[3] >= 1 for p in bars)


CHROMIUM = "/usr/bin/chromium"
_MEASURE = (
    "<script>const b = document.body.getBoundingClientRect(), pad = parseFloat(getComputedStyle(document.body)"
    ".paddingRight); document.body.setAttribute('data-measured', JSON.stringify({page: "
    "document.documentElement.scrollWidth, body: Math.floor(b.right - pad), tables: "
    "[...document.querySelectorAll('table')].map(e => Math.ceil(e.getBoundingClientRect().right))}))</script>"
)


def rendered_widths(page: Path, tmp_path: Path, window: int = 1400) -> dict:
    """{"page": the page's scroll width, "body": the right edge of the body's content, "tables":
    the right edge of each table} in CSS pixels, as headless Chromium lays ``page`` out in a window
    ``window`` pixels wide (skips the test when Chromium is absent)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium)")
    copy = tmp_path / f"measured-{page.name}"
    copy.write_text(page.read_text(encoding="utf-8").replace("</body>", _MEASURE + "</body>"), encoding="utf-8")
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--window-size={window},1000",
            "--dump-dom",
            copy.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return json.loads(html.unescape(re.search(r'data-measured="([^"]*)"', dom).group(1)))
