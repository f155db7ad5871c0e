"""The report's figures, drawn from ``results.json`` with matplotlib's Agg backend (no display).

Each function takes the whole results dict and returns a matplotlib Figure; :func:`render_all`
writes them as PNG files and returns {name: (title, png bytes)}. Figure numbers are the paper's.
Every figure is laid out, ticked and labelled by :mod:`odin_ood.report.style` (constrained
layout, at most six tick labels to their significant digits, labelled reference lines).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from odin_ood._utils.files import write_file
from odin_ood.report.style import ID_COLOUR, colours, every_kth, figure, line_styles, png_bytes, reference_line

OUTSIDE: dict[str, Any] = {
    "loc": "outside right upper",
    "fontsize": 7,
}  # a figure legend beside the panels, over no data


def _axes(n: int, ncols: int = 3, size: tuple[float, float] = (4.2, 3.3)) -> tuple[Figure, np.ndarray]:
    nrows = max(1, -(-n // ncols))
    ncols = min(n, ncols)
    fig, axes = figure(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes.flat


def _labels(results: dict) -> dict[str, str]:
    return {r["ood"]: r["label"] for r in results["main_table"]["rows"]}


def roc(results: dict) -> Figure:
    """Figure 1: ROC curves of MSP (red) and tuned ODIN (blue) per OOD set."""
    labels = _labels(results)
    curves = results["main_table"]["roc"]
    fig, axes = _axes(len(curves))
    for ax, (key, c) in zip(axes, curves.items(), strict=False):
        ax.plot(c["msp"]["fpr"], c["msp"]["tpr"], color="tab:red", label="Baseline (MSP)")
        ax.plot(c["odin-tuned"]["fpr"], c["odin-tuned"]["tpr"], "--", color="tab:blue", label="ODIN (tuned)")
        reference_line(ax, 0.95, "95% TPR")
        ax.set(title=labels[key], xlabel="FPR", ylabel="TPR", xlim=(0, 1), ylim=(0, 1.01))
        ax.legend(loc="lower right", fontsize=8)
    return fig


def sweeps(results: dict) -> Figure:
    """Figures 3, 4, 7-9: FPR at 95% TPR and AUROC vs T (eps = 0), vs eps (T = 1), vs eps (tuned T)."""
    s = results["sweeps"]
    T, E = np.array(s["temperatures"]), np.array(s["epsilons"])
    styles = line_styles(s["sets"])
    fig, axes = figure(2, 3, figsize=(16, 7), squeeze=False)
    for row, metric, name in ((0, "fpr_at_95_tpr", "FPR at 95% TPR"), (1, "auroc", "AUROC")):
        for key, d in s["sets"].items():
            g = np.array(d[metric])
            kw = {**styles[key], "marker": "o", "ms": 3, "label": f"{d['label']} (tuned T={T[d['best_t_index']]:g})"}
            axes[row, 0].plot(T, g[:, s["eps0_index"]], **kw)
            axes[row, 1].plot(E, g[s["t1_index"], :], **kw)
            axes[row, 2].plot(E, g[d["best_t_index"], :], **kw)
        axes[row, 0].set(xscale="log", xlabel="temperature T (epsilon = 0)", ylabel=name)
        axes[row, 1].set(xlabel="epsilon (T = 1)", ylabel=name)
        axes[row, 2].set(xlabel="epsilon (at each set's tuned T)", ylabel=name)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), **OUTSIDE)
    fig.suptitle("Effects of T and epsilon on the evaluation splits (Figures 3, 4, 7-9)")
    return fig


def threshold(results: dict) -> Figure:
    """Figure 13: TPR and FPR vs the threshold delta."""
    t = results["threshold"]
    styles = line_styles(t["fpr"])
    fig, ax = figure(figsize=(9, 4.2))
    ax.plot(t["delta"], t["tpr"], color=ID_COLOUR, lw=2, label="TPR (in-distribution)")
    for key, f in t["fpr"].items():
        ax.plot(t["delta"], f, **styles[key], label=f"FPR {t['labels'][key]}")
    reference_line(ax, t["delta_at_95"], "delta at 95% TPR (ID tuning split)", "v")
    ax.set(xlabel="threshold delta", ylabel="rate", title=f"T = {t['temperature']:g}, epsilon = {t['epsilon']:g}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the curves, not over them
    return fig


def cross_dataset(results: dict) -> Figure:
    """Figure 14 / Tables 10-11: FPR at 95% TPR on each test set (rows) tuned on each set (columns)."""
    c = results["cross_dataset"]
    m = 100 * np.array(c["fpr"])
    n = len(c["sets"])
    fig, ax = figure(figsize=(1.3 * n + 3, 0.8 * n + 2))
    im = ax.imshow(m, cmap="viridis_r", vmin=0, vmax=max(1.0, m.max()))
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{m[i, j]:.1f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if m[i, j] > 0.6 * max(1.0, m.max()) else "black",
            )
    ax.set_xticks(range(n), c["labels"], rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(n), c["labels"], fontsize=8)
    ax.set(xlabel="tuned on", ylabel="tested on", title="FPR at 95% TPR (%) across datasets")
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def tuning_size(results: dict) -> Figure:
    """Figure 15: FPR at 95% TPR vs tuning-set size (mean and +/- 1 std over repeats)."""
    t = results["tuning_size"]
    styles = line_styles(t["sets"])
    fig, ax = figure(figsize=(9, 4.2))
    for key, d in t["sets"].items():
        mean, std = np.array(d["mean"]) * 100, np.array(d["std"]) * 100
        ax.errorbar(d["sizes"], mean, yerr=std, **styles[key], marker="o", ms=3, capsize=2, label=d["label"])
    ax.set(
        xlabel="tuning-set size (OOD images)",
        ylabel="FPR at 95% TPR (%)",
        title=f"mean +/- 1 std over {t['repeats']} draws",
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def accuracy(results: dict) -> Figure:
    """Figure 16: accuracy above (a) and below (b) the threshold for each TPR."""
    a = results["accuracy"]
    fig, axes = figure(1, 2, figsize=(11, 3.8))
    if "skipped" in a:
        for ax in axes:
            ax.text(0.5, 0.5, a["skipped"], ha="center")
        return fig
    styles = line_styles(a["methods"])
    for name, d in a["methods"].items():
        lab = "MSP" if name == "msp" else f"ODIN (T={d['temperature']:g}, eps={d['epsilon']:g})"
        for ax, part in zip(axes, ("above", "below"), strict=True):
            y = [np.nan if v is None else 100 * v for v in d[part]]
            ax.plot(100 * np.array(a["tprs"]), y, **styles[name], marker="o", label=lab)
    for ax, part in zip(axes, ("(a) above", "(b) below"), strict=True):
        reference_line(ax, 100 * a["accuracy"], "overall accuracy")
        ax.set(xlabel="TPR (%)", ylabel="test accuracy (%)", title=f"{part} the threshold")
        ax.legend(fontsize=7)
    return fig


def _series(ax: Axes, centres: Sequence[float], values: dict, labels: dict, id_key: str, log: bool = False) -> None:
    styles = {
        id_key: {"color": ID_COLOUR, "ls": "-", "lw": 2.2},
        **{k: {**style, "lw": 1.2} for k, style in line_styles([k for k in values if k != id_key]).items()},
    }
    x = 10 ** np.array(centres) if log else np.array(centres)
    for key in styles:  # the ID set first: the thinner curves drawn over it leave it visible
        y = np.array([np.nan if e is None else e for e in values[key]], dtype=float)
        ax.plot(x, y, **styles[key], label=labels[key] + (" (ID)" if key == id_key else ""))
    if log:
        ax.set_xscale("log")


def section5(results: dict) -> Figure:
    """Figures 5a-e, 10-12: density of U1, E[U2|U1], density of the gradient norm (T = 1000) and
    E[norm | S] at T = 1 and T = 1000."""
    a = results["analysis"]
    labels, id_key = a["labels"], a["id_key"]
    fig, axes = figure(2, 3, figsize=(15, 7.5))
    _series(axes[0, 0], a["u1_density"]["centres"], a["u1_density"]["density"], labels, id_key)
    axes[0, 0].set(xlabel="U1", ylabel="density", title="(a) density of U1")
    _series(axes[0, 1], a["u2_given_u1"]["centres"], a["u2_given_u1"]["mean"], labels, id_key)
    axes[0, 1].set(xlabel="U1", ylabel="E[U2 | U1]", title="(b) E[U2 | U1]")
    for ax, T, what in ((axes[0, 2], "1000", "density"), (axes[1, 0], "1000", "cond"), (axes[1, 1], "1", "cond")):
        g = a["gradient"][T]
        if what == "density":
            _series(ax, g["density"]["centres"], g["density"]["density"], labels, id_key, log=True)
            ax.set(
                xlabel="||grad_x log S(x; T)||_1", ylabel="density of log10 norm", title=f"(c) gradient norm, T = {T}"
            )
        else:
            _series(ax, g["norm_given_score"]["centres"], g["norm_given_score"]["mean"], labels, id_key)
            ax.set(xlabel="softmax score S(x; T)", ylabel="E[norm | S]", title=f"E[gradient norm | S], T = {T}")
    axes[1, 2].axis("off")
    handles, names = axes[0, 0].get_legend_handles_labels()
    axes[1, 2].legend(handles, names, loc="center", fontsize=9)
    return fig


def profiles(results: dict) -> Figure:
    """Figures 5f-g, 17: the network's output for each class on one ID and one OOD image."""
    p = results["profiles"]
    fig, axes = figure(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, side, colour in ((axes[0], "id", ID_COLOUR), (axes[1], "ood", "tab:blue")):
        d = p[side]
        ax.bar(range(len(d["logits"])), d["logits"], color=colour)
        named = every_kth(len(p["classes"]), 20)  # 100 class names side by side would run together
        ax.set_xticks(named, [p["classes"][k] for k in named], rotation=45, ha="right", fontsize=8)
        title = f"{d['set']} #{d['index']}" + (f" ({d['label']})" if d.get("label") else "")
        ax.set(title=title, ylabel="output f_i(x)")
    return fig


def distances(results: dict) -> Figure:
    """Figure 2: tuned ODIN's FPR at 95% TPR and detection error vs MMD and energy distance."""
    rows = results["distances"]["rows"]
    tuned = {r["ood"]: r["metrics"] for r in results["main_table"]["rows"] if r["method"] == "odin-tuned"}
    fig, axes = figure(1, 2, figsize=(12, 4))
    tint = colours(r["ood"] for r in rows)
    for ax, dist, name in (
        (axes[0], "mmd2", "MMD^2 (RBF, median heuristic)"),
        (axes[1], "energy", "energy distance D^2"),
    ):
        for r in rows:  # one colour per set, one marker per metric: no labels written over each other
            for metric, marker in (("fpr_at_95_tpr", "o"), ("detection_error", "s")):
                ax.scatter(
                    [r[dist]],
                    [100 * tuned[r["ood"]][metric]],
                    marker=marker,
                    color=tint[r["ood"]],
                    alpha=0.8,
                    label=r["label"] if metric == "fpr_at_95_tpr" else None,
                )
        ax.set(xlabel=name, ylabel="tuned ODIN (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    markers = [
        Line2D([], [], ls="", marker=m, color="k", label=lab)
        for m, lab in (("o", "FPR at 95% TPR"), ("s", "detection error"))
    ]
    fig.legend([*markers, *handles], [h.get_label() for h in markers] + labels, **OUTSIDE)
    return fig


FIGURES: dict[str, tuple[str, Callable[[dict], Figure]]] = {
    "fig01_roc": ("Figure 1: ROC curves, MSP vs tuned ODIN", roc),
    "fig03_sweeps": ("Figures 3, 4, 7-9: effects of T and epsilon", sweeps),
    "fig13_threshold": ("Figure 13: TPR and FPR vs threshold", threshold),
    "fig14_cross_dataset": ("Figure 14 / Tables 10-11: parameters tuned on one set, tested on another", cross_dataset),
    "fig15_tuning_size": ("Figure 15: FPR at 95% TPR vs tuning-set size", tuning_size),
    "fig16_accuracy": ("Figure 16: classification accuracy above / below the threshold", accuracy),
    "fig05_section5": ("Figures 5a-e, 10-12: U1, U2 and gradient norms", section5),
    "fig05_profiles": ("Figures 5f-g, 17: outputs per class for one ID and one OOD image", profiles),
    "fig02_distances": ("Figure 2: detection performance vs dataset distance", distances),
}


# The results entry each figure draws from; a figure is left out when it is absent (a partial
# run) or says {"skipped": reason} (e.g. the sweeps on the CPU path).
FIGURE_DATA = {
    "fig01_roc": "main_table",
    "fig03_sweeps": "sweeps",
    "fig13_threshold": "threshold",
    "fig14_cross_dataset": "cross_dataset",
    "fig15_tuning_size": "tuning_size",
    "fig16_accuracy": "accuracy",
    "fig05_section5": "analysis",
    "fig05_profiles": "profiles",
    "fig02_distances": "distances",
}


def figure_skipped(results: dict, name: str) -> str | None:
    """Why figure ``name`` cannot be drawn from ``results``, or None when it can."""
    entry = results.get(FIGURE_DATA[name])
    if entry is None:
        return "not computed (incomplete run)"
    return entry.get("skipped") if isinstance(entry, dict) and name != "fig16_accuracy" else None


def render_all(results: dict, out: str | Path) -> dict[str, tuple[str, bytes]]:
    """Draw every figure that ``results`` holds data for, write ``<out>/<name>.png`` and return
    {name: (title, png bytes)}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pngs = {}
    for name, (title, draw) in FIGURES.items():
        if figure_skipped(results, name):
            continue
        data = png_bytes(draw(results))
        write_file(out / f"{name}.png", data, "reproduce", "--out")
        pngs[name] = (title, data)
    return pngs
