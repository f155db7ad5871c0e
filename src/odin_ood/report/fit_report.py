"""The small report ``odin-ood fit`` writes beside ``detector.json``: why these parameters.

``fit_report.png``: the tuning grid's FPR at the target TPR as a heatmap (temperature x epsilon)
with the chosen cell outlined (for ID-only tuning, which has no FPR: the mean ID score per epsilon
with the chosen epsilon marked), and the ODIN score histograms of the ID and OOD images of the
evaluation split (the tuning split when there is none) with the threshold delta.
``fit_report.html``: a self-contained page (inline CSS, the PNG embedded) with the parameters,
the metrics on the held-out split (ODIN at the fitted parameters beside the MSP baseline), the
grid as a table and the provenance. Both are drawn from the ``fit.json`` record alone.
"""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from odin_ood._utils.files import write_file
from odin_ood.metrics import METRICS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LABELS = {
    "fpr_at_95_tpr": "FPR at TPR",
    "detection_error": "Detection error",
    "auroc": "AUROC",
    "aupr_in": "AUPR-In",
    "aupr_out": "AUPR-Out",
}
CSS = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:.8em 0;font-size:.9em}td,th{border:1px solid #bbb;padding:3px 7px;"
    "text-align:right}th{background:#f0f0f0}.scroll{max-width:100%;overflow-x:auto}"
    "table.grid{font-size:.75em}table.grid td,table.grid th{padding:2px 4px}"
    "td.chosen{background:#ffe28a;font-weight:bold}img{max-width:100%}"
    ".note{color:#555;font-size:.9em}"
)


def figure_png(record: dict[str, Any], scores: dict[str, np.ndarray]) -> bytes:
    """:func:`fit_figure` as PNG bytes."""
    from odin_ood.report.style import png_bytes

    return png_bytes(fit_figure(record, scores), dpi=90)


def fit_figure(record: dict[str, Any], scores: dict[str, np.ndarray]) -> Figure:
    """The heatmap and the histograms; ``scores`` holds the fitted score's ``id``/``ood`` values."""
    from matplotlib.patches import Rectangle

    from odin_ood.report.style import ID_COLOUR, every_kth, figure, reference_line, step_histograms, wrapped_title

    grid = record["grid"]
    i, j = grid["chosen"]
    fig, (ax, hx) = figure(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [1.4, 1]})
    if is_id_only(record):
        order = np.argsort(grid["epsilons"])
        ax.plot(np.take(grid["epsilons"], order), np.take(grid["mean_id_score"][0], order), "o-", color="tab:blue")
        ax.plot(
            [record["epsilon"]],
            [grid["mean_id_score"][0][j]],
            "o",
            ms=12,
            mfc="none",
            mec="red",
            mew=2.5,
            label=f"chosen epsilon {record['epsilon']:g}",
        )
        ax.set(xlabel="epsilon", ylabel="mean ID score")
        ax.legend(fontsize=8)
        wrapped_title(
            ax, f"tuning split: mean ID score at T={record['temperature']:g}; chosen eps={record['epsilon']:g} (red)"
        )
    else:
        im = ax.imshow(
            100 * np.asarray(grid["fpr_at_95_tpr"], dtype=float), aspect="auto", cmap="viridis_r", origin="lower"
        )
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", lw=2.5))
        shown = every_kth(len(grid["epsilons"]))  # at most 6 labels: a heatmap column each would run together
        ax.set_xticks(shown, [f"{grid['epsilons'][k]:g}" for k in shown])
        ax.set_xticks(range(len(grid["epsilons"])), minor=True)
        ax.set_yticks(range(len(grid["temperatures"])), [f"{t:g}" for t in grid["temperatures"]], fontsize=8)
        ax.set(xlabel="epsilon", ylabel="temperature T")
        wrapped_title(
            ax,
            f"tuning split: FPR (%) at {record['tpr']:.0%} TPR; chosen T={record['temperature']:g}, "
            f"eps={record['epsilon']:g} (red){searched_note(record)}",
        )
        fig.colorbar(im, ax=ax, fraction=0.04, label="FPR (%)")
    shown_scores = {k: s for k, s in scores.items() if s.size}  # no OOD scores: ID-only tuning without a held-out split
    split = record["histogram_split"]
    step_histograms(
        hx,
        shown_scores,
        {"id": ID_COLOUR, "ood": "tab:blue"},
        labels={k: f"{k.upper()} ({split}, n={len(s)})" for k, s in shown_scores.items()},
    )
    reference_line(hx, record["threshold"], f"threshold {record['threshold']:.6g}", "v", color="k", ls="--")
    hx.set(xlabel="score (higher = more in-distribution)", ylabel="density")
    wrapped_title(hx, f"{score_label(record)} scores at the fitted parameters ({split} split)")
    hx.legend(fontsize=8)
    return fig


def searched_note(record: dict[str, Any]) -> str:
    """What the search spent, for titles: empty for the full grid (and records before ``search``)."""
    if record.get("search", "grid") == "grid":
        return ""
    return f"; {record['search']} search, {record['passes_per_image']} passes/image (blank: not scored)"


def is_id_only(record: dict[str, Any]) -> bool:
    """Whether the parameters were chosen on ID data alone (fit records before ``tuning_source``
    existed were tuned against OOD inputs or noise)."""
    return record.get("tuning_source") == "id-only"


def score_label(record: dict[str, Any]) -> str:
    """The fitted score's name for people (fit records before ``score`` existed are ODIN's)."""
    name = record.get("score", "odin")
    return {
        "odin": "ODIN",
        "msp": "MSP",
        "maxlogit": "MaxLogit",
        "energy": "Energy",
        "energy-odin": "Energy + perturbation",
    }.get(name, name)


def report_html(record: dict[str, Any], png: bytes) -> str:
    """A self-contained page; metric cells carry ``data-key="<method>|<metric>"``."""
    tpr = f"{record['tpr']:.0%}"
    held = record.get("heldout")
    if held is not None:
        head = "".join(f"<th>{LABELS[m].replace('TPR', tpr + ' TPR')} (%)</th>" for m in METRICS)
        rows = "".join(
            f"<tr><td>{name}</td>"
            + "".join(f'<td data-key="{key}|{m}">{100 * held[key][m]:.2f}</td>' for m in METRICS)
            + "</tr>"
            for key, name in (("odin", f"{score_label(record)} (fitted)"), ("msp", "MSP baseline"))
        )
        metrics = (
            f"<h2>Held-out split</h2><p>{held['id']['count']} ID vs {held['ood']['count']} OOD images "
            f"({escape(held['ood']['what'])}), none used in tuning. At the threshold the detector keeps "
            f'<b data-key="id_kept">{100 * held["id_kept"]:.2f}%</b> of the ID images and flags '
            f'<b data-key="ood_flagged">{100 * held["ood_flagged"]:.2f}%</b> of the OOD images.</p>'
            f"<table><tr><th>score</th>{head}</tr>{rows}</table>"
        )
    else:
        metrics = "<h2>Held-out split</h2><p>None (<code>--holdout 0</code>): every image tuned.</p>"
    tuning = record["tuning"]
    if is_id_only(record):
        tuned = (
            f"Tuned on {tuning['id']['count']} ID images alone, no OOD images, by the Generalized-ODIN "
            "criterion (Hsu et al. 2020, section 3.3): at the fixed "
            f'<b data-key="temperature">T = {record["temperature"]:g}</b>, the epsilon with the highest mean '
            "ID score is"
        )
        grid_title, cell = "mean ID score at the fixed T", lambda v: f"{v:.8g}"
    else:
        tuned = (
            f"Tuned on {tuning['id']['count']} ID vs {tuning['ood']['count']} OOD images "
            f"({escape(tuning['ood']['what'])}){escape(searched_note(record))}: the grid cell with the lowest "
            f"FPR at {tpr} TPR is "
            f'<b data-key="temperature">T = {record["temperature"]:g}</b>,'
        )
        grid_title, cell = f"FPR (%) at {tpr} TPR", lambda v: "" if v is None else f"{100 * v:.1f}"
    grid = record["grid"]
    values = grid["mean_id_score" if is_id_only(record) else "fpr_at_95_tpr"]
    ci, cj = grid["chosen"]
    grid_rows = "".join(
        f"<tr><th>{t:g}</th>"
        + "".join(
            f"<td{' class=chosen' if (i, j) == (ci, cj) else ''}>{cell(values[i][j])}</td>"
            for j in range(len(grid["epsilons"]))
        )
        + "</tr>"
        for i, t in enumerate(grid["temperatures"])
    )
    eps_head = "".join(f"<th>{e:g}</th>" for e in grid["epsilons"])
    image = base64.b64encode(png).decode()
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>odin-ood fit report</title>
<style>{CSS}</style></head><body>
<h1>odin-ood fit: {escape(record["model"])}</h1>
<p>Score: <b data-key="score">{score_label(record)}</b>. {tuned}
<b data-key="epsilon">&epsilon; = {record["epsilon"]:g}</b>; threshold
<b data-key="threshold">&delta; = {record["threshold"]:.9g}</b> keeps {tpr} of the tuning ID images
(an image is out-of-distribution when its score is &le; &delta;).</p>
{metrics}
<img alt="the tuning grid ({grid_title}) and score histograms" src="data:image/png;base64,{image}">
<h2>Tuning grid: {grid_title} (rows T, columns &epsilon;)</h2>
<div class="scroll"><table class="grid"><tr><th>T \\ &epsilon;</th>{eps_head}</tr>{grid_rows}</table></div>
<p class="note">Higher score = more in-distribution; ID is the positive class. Preprocessing
(as detector.json records it): {escape(_preprocessing(record["preprocessing"]))}.
Duplicates skipped (by content): {record["duplicates"]["id"]} ID, {record["duplicates"]["ood"]} OOD.
Seed {record["seed"]}. odin-ood {escape(record["odin_ood_version"])}; model weights
{escape(record["model_fingerprint"])}. Every number here comes from fit.json beside this page.</p>
</body></html>
"""


def write_fit_report(folder: Path, record: dict[str, Any], scores: dict[str, np.ndarray]) -> tuple[Path, Path]:
    """Write ``fit_report.png`` and ``fit_report.html`` into ``folder``."""
    png = figure_png(record, scores)
    png_path, html_path = folder / "fit_report.png", folder / "fit_report.html"
    write_file(png_path, png, "fit", "--out")
    write_file(html_path, report_html(record, png), "fit", "--out")
    return png_path, html_path


def _preprocessing(p: dict) -> str:
    """The recorded preprocessing in one line: size, mode, resize, interpolation, mean, std."""
    resize = p["resize"] if p["resize"] == "none" else f"{p['resize']} to {p['resize_size']}, {p['interpolation']}"
    return f"size {tuple(p['input_shape'])}, {p['mode']}, resize {resize}, mean {p['mean']}, std {p['std']}"
