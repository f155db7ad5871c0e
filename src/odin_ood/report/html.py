"""A self-contained HTML report (inline CSS, PNGs embedded as base64; no scripts, fonts or links
to fetch), with our numbers beside the paper's and the provenance of every number.

Table cells carry ``data-key="<set>|<method>|<metric>"`` (``|paper`` for the paper's value), so
tools and tests can read the numbers back and check them against ``results.json``.
"""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path
from typing import Any

from odin_ood._utils.files import write_file
from odin_ood.experiments.main_table import METHOD_LABELS
from odin_ood.experiments.paper import DISTANCES
from odin_ood.metrics import LOWER_IS_BETTER, METRICS
from odin_ood.report.plots import FIGURES, figure_skipped, render_all
from odin_ood.report.sources import tuning_sources_html

METRIC_LABELS = {
    "fpr_at_95_tpr": "FPR at 95% TPR &darr;",
    "detection_error": "Detection error &darr;",
    "auroc": "AUROC &uarr;",
    "aupr_in": "AUPR-In &uarr;",
    "aupr_out": "AUPR-Out &uarr;",
}

CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:2em auto;max-width:1400px;color:#222;
padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.85em}
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:right}th{background:#f0f0f0}
td.l,th.l{text-align:left}td.paper{color:#7a4b00;background:#fff8e8}td.best{font-weight:bold}
.ci{color:#777;font-size:.85em}.banner{background:#ffe9a8;border:2px solid #e0a800;padding:.8em;font-weight:bold}
.note{background:#eef4ff;border-left:4px solid #4a7bd0;padding:.5em .8em}
figure{margin:1.5em 0}figure img{max-width:100%;border:1px solid #ddd}figcaption{font-style:italic;color:#444}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:.8em}
"""


def pct(v: float | None) -> str:
    return "&ndash;" if v is None else f"{100 * v:.1f}"


def _cell(value: str, key: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f'<td data-key="{escape(key)}"{attr}>{value}</td>'


def main_table_html(results: dict) -> str:
    rows = results["main_table"]["rows"]
    head = "".join(f'<th colspan="2">{METRIC_LABELS[m]}</th>' for m in METRICS)
    sub = "".join("<th>ours [95% CI]</th><th>paper</th>" for _ in METRICS)
    out = [
        f'<table class="main"><tr><th class="l" rowspan="2">OOD set</th><th class="l" rowspan="2">method</th>'
        '<th rowspan="2">T</th><th rowspan="2">&epsilon;</th>'
        f'<th rowspan="2">n ID / OOD (eval)</th>{head}</tr><tr>{sub}</tr>'
    ]
    by_set: dict[str, list[dict]] = {}
    for r in rows:
        by_set.setdefault(r["ood"], []).append(r)
    for key, group in by_set.items():
        for r in group:
            cells = []
            for m in METRICS:
                values = [g["metrics"][m] for g in group]
                best = min(values) if m in LOWER_IS_BETTER else max(values)
                lo, hi = r["ci95"][m]
                cells.append(
                    _cell(
                        f'{pct(r["metrics"][m])} <span class="ci">[{pct(lo)}, {pct(hi)}]</span>',
                        f"{key}|{r['method']}|{m}",
                        "best" if r["metrics"][m] == best else "",
                    )
                )
                p = r["paper"]["values"][m] if r["paper"] else None
                cells.append(_cell("&ndash;" if p is None else f"{p:.1f}", f"{key}|{r['method']}|{m}|paper", "paper"))
            out.append(
                f'<tr><td class="l">{escape(r["label"])}</td><td class="l">{METHOD_LABELS[r["method"]]}</td>'
                f"<td>{r['temperature']:g}</td><td>{r['epsilon']:g}</td><td>{r['n_in']} / {r['n_out']}</td>"
                + "".join(cells)
                + "</tr>"
            )
    out.append("</table>")
    return "\n".join(out)


def cross_table_html(results: dict) -> str:
    c = results["cross_dataset"]
    head = "".join(f"<th>{escape(lab)}</th>" for lab in c["labels"])
    params = "".join(f"<td>T={c['parameters'][k][0]:g}<br>&epsilon;={c['parameters'][k][1]:g}</td>" for k in c["sets"])
    out = [
        f'<table><tr><th class="l">tested on \\ tuned on</th><th>MSP</th>{head}</tr>'
        f'<tr><td class="l"><i>tuned parameters</i></td><td></td>{params}</tr>'
    ]
    for i, test in enumerate(c["sets"]):
        cells = []
        for j, tuned in enumerate(c["sets"]):
            paper = c["paper"][i][j] if c["paper"] else None
            extra = f' <span class="ci">(paper {paper[1]:g})</span>' if paper else ""
            cells.append(
                _cell(pct(c["fpr"][i][j]) + extra, f"{test}|tuned-on:{tuned}|fpr_at_95_tpr", "best" if i == j else "")
            )
        out.append(
            f'<tr><td class="l">{escape(c["labels"][i])}</td>{_cell(pct(c["msp_fpr"][i]), f"{test}|msp|fpr_at_95_tpr")}'
            + "".join(cells)
            + "</tr>"
        )
    out.append("</table>")
    note = f"<p>Paper values in brackets: {c['paper_source']} (ODIN FPR, same model row).</p>" if c["paper"] else ""
    return "\n".join(out) + note


def distances_html(results: dict) -> str:
    d = results["distances"]
    tuned = {r["ood"]: r["metrics"] for r in results["main_table"]["rows"] if r["method"] == "odin-tuned"}
    out = [
        '<table><tr><th class="l">OOD set</th><th>m per set</th><th>2&sigma;&sup2;</th><th>MMD&sup2;</th>'
        "<th>energy D&sup2;</th><th>tuned ODIN FPR</th><th>tuned ODIN det. error</th></tr>"
    ]
    for r in d["rows"]:
        mmd, energy = _cell(f"{r['mmd2']:.4f}", r["ood"] + "|mmd2"), _cell(f"{r['energy']:.3f}", r["ood"] + "|energy")
        out.append(
            f'<tr><td class="l">{escape(r["label"])}</td><td>{r["m"]}</td><td>{r["two_sigma_sq"]:.1f}</td>{mmd}{energy}'
            f"<td>{pct(tuned[r['ood']]['fpr_at_95_tpr'])}</td><td>{pct(tuned[r['ood']]['detection_error'])}</td></tr>"
        )
    out.append("</table>")
    ref = "; ".join(
        f"{idn} vs {k}: MMD {v[0]:g}, energy {v[1]:g}" for idn, rows in DISTANCES.items() for k, v in rows.items()
    )
    return (
        "\n".join(out) + f"<p>Computed on {escape(d['space'])}, kernel width: {escape(d['bandwidth'])}. "
        f"<b>Paper</b> (Appendix G, CIFAR-100/80 as ID, not available here): {escape(ref)}.</p>"
    )


def tuning_html(results: dict) -> str:
    """The cells chosen on the tuning splits so far (a run stopped before its evaluation stage)."""
    out = [
        '<table class="main"><tr><th class="l">OOD set</th><th>T</th><th>&epsilon;</th><th>search</th>'
        "<th>tuning FPR95</th><th>cost (fraction of the grid)</th></tr>"
    ]
    out += [
        f'<tr><td class="l">{escape(k)}</td><td>{t["temperature"]:g}</td><td>{t["epsilon"]:g}</td>'
        f"<td>{escape(t['search'])}</td>"
        f"<td>{pct(t['tuning_fpr_at_95_tpr'])}</td><td>{t['cost_fraction_of_grid']:.2f}</td></tr>"
        for k, t in results["tuning"].items()
    ]
    return "\n".join([*out, "</table>"])


def every_image_html(results: dict) -> str:
    """MSP and ODIN at the paper's (T, epsilon) on every ID and OOD image (nothing tuned, nothing
    held out), FPR at 95% TPR and AUROC beside the paper's."""
    rows = results.get("every_image") or []
    if not rows:
        return "<p>Not computed.</p>"
    out = [
        '<table class="main"><tr><th class="l">OOD set</th><th>T</th><th>&epsilon;</th><th>n ID / OOD</th>'
        "<th>FPR95 MSP</th><th>paper</th><th>FPR95 ODIN</th><th>paper</th><th>AUROC MSP</th><th>paper</th>"
        "<th>AUROC ODIN</th><th>paper</th></tr>"
    ]
    for r in rows:
        paper = r["paper"]

        def ref(metric: str, method: str, paper: dict | None = paper) -> str:
            return "&ndash;" if paper is None else f"{paper[method][metric]:.1f}"

        n = f"{r['n_in']} / {r['n_out']}" + ("" if r["complete"] else f" <b>of {r['n_out_total']} (partial)</b>")
        params = "" if r.get("paper_parameters", True) else " (paper gives none: same as the other sets)"
        out.append(
            f'<tr><td class="l">{escape(r["label"])}{params}</td><td>{r["temperature"]:g}</td><td>{r["epsilon"]:g}</td>'
            f'<td>{n}</td><td>{pct(r["msp"]["fpr_at_95_tpr"])}</td><td class="paper">{ref("fpr_at_95_tpr", "msp")}</td>'
            f'<td>{pct(r["odin"]["fpr_at_95_tpr"])}</td><td class="paper">{ref("fpr_at_95_tpr", "odin")}</td>'
            f'<td>{pct(r["msp"]["auroc"])}</td><td class="paper">{ref("auroc", "msp")}</td>'
            f'<td>{pct(r["odin"]["auroc"])}</td><td class="paper">{ref("auroc", "odin")}</td></tr>'
        )
    out.append("</table>")
    precision = rows[0].get("precision", "fp32")
    return "\n".join(out) + (
        f"<p>Model arithmetic: {escape(precision)} (scores in float32). MSP is the max softmax of "
        "the logits of the same pass.</p>"
    )


def provenance_html(results: dict) -> str:
    p = results["provenance"]
    same = "same model" if p["paper_row_matches_model"] else "a different model: reference only"
    items = [
        ("library", p["library"]),
        ("device", p["device"]),
        ("platform", p["platform"]),
        ("date (UTC)", p["date_utc"]),
        ("command", p["command"]),
        ("model", p["model"]),
        ("grid", p["grid"]),
        ("paper row compared", f"{p['paper_row']} ({same})"),
        ("settings", p["config"]),
        ("score cache", p["cache"]),
        ("timings (s)", p["timings_s"]),
    ]
    out = (
        ["<table>"]
        + [
            f'<tr><th class="l">{escape(k)}</th><td class="l"><pre>{escape(json.dumps(v, indent=1))}</pre></td></tr>'
            for k, v in items
        ]
        + ["</table>", "<h3>Datasets (sources, checksums, construction, splits)</h3>"]
    )
    for d in [p["datasets"]["id"], *p["datasets"]["ood"]]:
        out.append(
            f"<details><summary>{escape(d['label'])} &mdash; {d['n']} images, split {escape(json.dumps(d['split']))}"
            f"</summary><pre>{escape(json.dumps(d, indent=1))}</pre></details>"
        )
    return "\n".join(out)


def _figure(name: str, title: str, png: bytes) -> str:
    return (
        f'<figure id="{name}"><img alt="{escape(title)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f"<figcaption>{escape(title)}</figcaption></figure>"
    )


def render_html(results: dict, figures: dict[str, tuple[str, bytes]]) -> str:
    p = results["provenance"]
    cfg = p["config"]
    quick = ""
    if results["quick"]:
        quick = (
            '<p class="banner">QUICK RUN (--quick): every set '
            f"subsampled to at most {cfg['limit']} images, reduced grid "
            f"T &isin; {cfg['temperatures']}, &epsilon; &isin; {cfg['epsilons']}, "
            f"{cfg['resamples']} bootstrap resamples. "
            "A smoke run: its numbers are noisy and not comparable with the paper's.</p>"
        )
    if not results.get("complete", True):
        quick += (
            '<p class="banner">INCOMPLETE RUN: only the stages shown below finished (rows marked partial cover '
            "the images scored so far). Rerun the same command to continue; cached passes are reused."
            + (f" Stopped: {escape(results['stopped'])}." if results.get("stopped") else "")
            + "</p>"
        )
    same = p["paper_row_matches_model"]
    paper_note = (
        "No matching row in the paper."
        if p["paper_row"] is None
        else "Columns marked <b>paper</b> (shaded) are copied from "
        f"the paper, row &ldquo;{escape(p['paper_row'])}&rdquo;"
        + ("" if same else " &mdash; <b>a different model</b>, shown for reference only")
        + ". Everything else is computed by this run."
    )
    skipped = "".join(
        f"<li><b>{escape(s['label'])}</b> ({s['role']}): {escape(s['reason'])}</li>" for s in results["skipped"]
    )
    figures_skipped = "".join(
        f"<li>{escape(FIGURES[n][0])}: {escape(why)}</li>" for n in FIGURES if (why := figure_skipped(results, n))
    )
    ids = p["datasets"]["id"]
    acc = p["model"]["id_eval_accuracy"]
    sections = [
        f"<h1>odin-ood: reproducing ODIN &mdash; suite <code>{escape(results['suite'])}</code></h1>",
        f"<p>{escape(results['description'])}</p>",
        quick,
        f'<p class="note">{paper_note} Our metrics are the exact empirical ones of <code>odin_ood.metrics</code> '
        "(ID positive; percentages), measured on the evaluation splits only.</p>",
        f"<p>Model <code>{escape(p['model']['name'])}</code> ({escape(str(p['model']['weights']))}); "
        f"ID set {escape(ids['label'])}: {ids['n']} images"
        + (
            f", {ids['split']['tune']} held out for tuning, {ids['split']['eval']} evaluated"
            if ids.get("split")
            else ""
        )
        + f"; accuracy on the evaluated ID images: {pct(acc) if acc is not None else '&ndash;'}%. "
        "Each OOD set: at most 1,000 images tune (T, &epsilon;), the rest "
        f"are evaluated (section 4.4). Device: {escape(p['device'])}; "
        f"total time {p['timings_s']['total']:.0f} s.</p>",
        "<h2>Table 2/3 at the paper's parameters on every image</h2>",
        every_image_html(results),
        *(
            [
                "<h2>Table 2/3: baseline vs ODIN (evaluation splits)</h2>",
                main_table_html(results),
                "<p>ODIN (tuned): (T, &epsilon;) chosen on the tuning splits "
                f"by the <b>{escape(results.get('search', 'grid'))}</b> "
                "search (grid: the paper's, every cell on every tuning "
                "image; halving: successive halving over the grid, "
                "odin_ood.tuning.halving). 95% intervals: "
                f"{escape(json.dumps(results['main_table']['bootstrap']))}.</p>",
            ]
            if "main_table" in results
            else ["<h2>Tuning finished so far</h2>", tuning_html(results)]
            if results.get("tuning")
            else []
        ),
        "<h2>Skipped</h2>"
        + (f"<ul>{skipped}{figures_skipped}</ul>" if skipped or figures_skipped else "<p>Nothing skipped.</p>"),
        tuning_sources_html(results),
    ]
    for name, (title, png) in figures.items():
        if name == "fig14_cross_dataset":
            sections += ["<h2>Cross-dataset tuning (Figure 14, Tables 10-11)</h2>", cross_table_html(results)]
        if name == "fig02_distances":
            sections += ["<h2>Dataset distances (section 4.5, Appendix G)</h2>", distances_html(results)]
        sections.append(_figure(name, title, png))
    sections += ["<h2>Provenance</h2>", provenance_html(results)]
    body = "\n".join(s for s in sections if s)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>odin-ood {escape(results['suite'])}</title>"
        f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n"
    )


def write_report(results: dict[str, Any], out: str | Path) -> Path:
    """Render every figure (PNG files) and ``report.html`` into ``out``; returns the HTML path."""
    out = Path(out)
    figures = render_all(results, out)
    path = out / "report.html"
    write_file(path, render_html(results, figures), "reproduce", "--out")
    return path
