"""What every figure odin-ood draws shares (the demo's, the fit report's, the paper's figures):
readable ticks, labelled reference lines, titles that fit, series that stay visible.

- :func:`figure` makes the figure with constrained layout (nothing clipped, legends placed
  outside the axes get room).
- :func:`readable_ticks` (called by :func:`finish` on every axes): at most :data:`MAX_TICKS`
  labels on each numeric axis, each with the digits its neighbours need to differ and no more
  (:class:`SignificantFormatter`: ``0.1, 0.105, 0.11``, never ``0.1000 0.1025`` run together
  nor an offset such as ``+1e-1``); a log axis labels decades (or 1-2-5 within less than two).
  Axes whose ticks were named one by one (a heatmap's rows, a bar chart's classes) are left alone.
- :func:`reference_line`: a horizontal or vertical line that always carries a legend label.
- :func:`wrapped_title`: a title broken into lines that fit its axes' width.
- :func:`line_styles`: a colour and a dash pattern per curve (only the first solid), so equal
  curves stay visible one through the other.
- :func:`step_histograms`: one outlined histogram per series on shared bins (the first, the
  reference set, lightly filled), so no series hides another.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import itertools

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, Formatter, LogLocator, MaxNLocator, NullFormatter

MAX_TICKS = 6
PALETTE = [plt.get_cmap("tab10")(i) for i in (0, 1, 2, 4, 5, 6, 7, 8, 9)]  # no red: red marks the ID set
ID_COLOUR = "tab:red"


class SignificantFormatter(Formatter):
    """Tick labels with the fewest decimals that write every tick of the axis exactly (to 1e-6 of
    the smallest gap between ticks): 0.100, 0.105, 0.110; 0, 0.25, 0.50; 1000, 2000 (on a log
    axis each label its own: 0.2, 0.5, 1, 2).
    When a tick lies outside [1e-3, 1e4) (and above 0), or on a linear axis at or beyond 1e6 in
    size, every label is a power of ten: 10^-5, 2x10^-5."""

    def __init__(self) -> None:
        self.decimals = 0
        self.powers = False

    def format_ticks(self, values: Sequence[float]) -> list[str]:
        finite = sorted({float(v) for v in values if math.isfinite(v)})
        if finite:
            gaps = [b - a for a, b in itertools.pairwise(finite) if b > a]
            gap = min(gaps) if gaps else max(abs(finite[0]), 1.0)
            self.powers = any(v != 0 and not 1e-3 <= abs(v) < 1e4 for v in finite) and (
                self._log_scale() or max(map(abs, finite)) >= 1e6
            )
            self.decimals = next((d for d in range(16) if all(abs(round(v, d) - v) <= 1e-6 * gap for v in finite)), 15)
        return [self(v) for v in values]

    def _log_scale(self) -> bool:
        return isinstance(self.axis, Axis) and self.axis.get_scale() == "log"

    def __call__(self, x: float, pos: int | None = None) -> str:
        if not math.isfinite(x):
            return ""
        if self.powers and x != 0:
            exponent = math.floor(math.log10(abs(x)) + 1e-9)
            mantissa = x / 10**exponent
            power = f"10^{{{exponent}}}"
            return f"${power}$" if abs(mantissa - 1) < 1e-6 else f"${mantissa:.2g}\\times{power}$"
        decimals = self.decimals
        if self._log_scale():  # 0.2, 0.5, 1, 2: each value its own digits
            decimals = next(d for d in range(16) if abs(round(x, d) - x) <= 1e-9 * abs(x) or d == 15)
        text = f"{x:.{decimals}f}"
        return "0" if float(text) == 0 else text


def _named_one_by_one(axis: Axis) -> bool:
    """Ticks placed one by one (``set_xticks``: a heatmap's rows, a bar chart's classes; a colour
    bar's short side has none)."""
    return isinstance(axis.get_major_locator(), FixedLocator)


def readable_ticks(ax: Axes) -> None:
    """At most :data:`MAX_TICKS` labels, formatted to their significant digits, on each numeric axis of ``ax``."""
    for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        if _named_one_by_one(axis) or not axis.get_visible() or axis.get_scale() not in ("linear", "log"):
            continue
        lo, hi = sorted(limits)
        decades = math.log10(hi / lo) if axis.get_scale() == "log" and lo > 0 else 0.0
        if decades >= 2:  # decades only, every k-th when there are many
            axis.set_major_locator(LogLocator(base=10, subs=(1.0,), numticks=MAX_TICKS - 1))
        elif decades >= 0.7:
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=MAX_TICKS))
        else:  # a linear axis, or less than a decade of a log one: evenly spaced round values
            axis.set_major_locator(MaxNLocator(nbins=MAX_TICKS - 1, steps=[1, 2, 2.5, 5, 10]))
        axis.set_major_formatter(SignificantFormatter())
        axis.set_minor_formatter(NullFormatter())


def reference_line(ax: Axes, value: float, label: str, orientation: str = "h", **style: Any) -> Line2D:
    """A reference line (``orientation`` "h": y = value, "v": x = value) with a legend ``label``."""
    kw = {"color": "0.35", "ls": ":", "lw": 1.2, **style, "label": label}
    return ax.axhline(value, **kw) if orientation == "h" else ax.axvline(value, **kw)


def wrapped_title(ax: Axes, text: str, fontsize: float = 10.5) -> None:
    """``text`` as ``ax``'s title, broken at word boundaries into lines no wider than the axes."""
    figure = ax.get_figure(root=True)
    if figure is None:
        raise ValueError("the axes belong to no figure")
    width_in = ax.get_position().width * figure.get_figwidth()
    chars = max(20, int(width_in * 72 / (0.5 * fontsize)))  # an average character is ~0.5 em wide
    ax.set_title("\n".join(textwrap.wrap(text, chars)), fontsize=fontsize)


def every_kth(n: int, most: int = MAX_TICKS) -> list[int]:
    """Indices 0, k, 2k, ... of ``n`` named ticks, at most ``most`` of them (the rest would run together)."""
    return list(range(0, n, max(1, -(-(n - 1) // (most - 1)))))


def colours(keys: Iterable[str]) -> dict[str, Any]:
    """One palette colour per key, never the ID set's red."""
    return {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(keys)}


DASHES = [(5, 2), (1.5, 1.5), (6, 2, 1.5, 2)]


def line_styles(keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Colour and line style per key, for curves drawn in this order: the first solid, every
    later one dashed (patterns and phases differ), so a curve drawn over an equal one leaves it
    visible in its gaps."""
    keys = list(keys)
    tint = colours(keys)
    return {
        k: {"color": tint[k], "ls": "-" if i == 0 else ((i - 1) // len(DASHES) * 2.0, DASHES[(i - 1) % len(DASHES)])}
        for i, k in enumerate(keys)
    }


def step_histograms(
    ax: Axes,
    series: dict[str, np.ndarray],
    colour: dict[str, Any],
    bins: int = 60,
    labels: dict[str, str] | None = None,
) -> np.ndarray:
    """Density histograms of every series on shared bins, each an outline (the first series, the
    reference set, also lightly filled), so a series under another stays visible; returns the bins."""
    arrays = {k: np.asarray(v, dtype=float).ravel() for k, v in series.items()}
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays.values()] or [np.zeros(1)])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-6, bins + 1)
    for n, (key, a) in enumerate(arrays.items()):
        name = (labels or {}).get(key, key)
        a = a[np.isfinite(a)]
        if n == 0:
            ax.hist(a, bins=edges.tolist(), density=True, color=colour[key], alpha=0.25, histtype="stepfilled")
        ax.hist(
            a,
            bins=edges.tolist(),
            density=True,
            color=colour[key],
            histtype="step",
            lw=1.6 if n == 0 else 1.3,
            label=name,
        )
    return edges


def figure(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (7, 4.2), **kw: Any) -> tuple[Figure, Any]:
    """``plt.subplots`` with constrained layout (titles, labels and outside legends get room)."""
    return plt.subplots(nrows, ncols, figsize=figsize, layout="constrained", **kw)


def finish(fig: Figure) -> Figure:
    """Readable ticks on every visible axes of ``fig``."""
    for ax in fig.axes:
        if ax.axison:
            readable_ticks(ax)
    return fig


def png_bytes(fig: Figure, dpi: int = 110) -> bytes:
    """``fig`` (after :func:`finish`) as PNG bytes; the figure is closed."""
    finish(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()
