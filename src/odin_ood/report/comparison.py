"""The side-by-side page of a composite suite (``odin-ood reproduce mnist``): the paper's values
beside each model's MSP, tuned ODIN and ODIN at the paper's (T, epsilon), with 95% bootstrap
intervals, one table per metric, the findings of :func:`odin_ood.experiments.comparison.compare`
and links to each model's full report. Cells carry ``data-key="<model>|<set>|<method>|<metric>"``
(``paper|<set>|msp|<metric>`` for the paper's), so tests can read the numbers back."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from odin_ood._utils.files import write_file
from odin_ood.experiments.comparison import METHODS
from odin_ood.metrics import METRICS
from odin_ood.report.html import CSS, METRIC_LABELS, _cell, pct

SHORT = {"msp": "MSP", "odin-tuned": "ODIN tuned", "odin-paper": "ODIN T=1000, &epsilon;=0"}


def _metric_table(comparison: dict[str, Any], metric: str) -> str:
    names = list(comparison["models"])
    head = "".join(f'<th colspan="{len(METHODS)}">{escape(n)}</th>' for n in names)
    sub = "<th>MSP</th><th>ODIN</th>" + "".join(f"<th>{SHORT[m]}</th>" for _ in names for m in METHODS)
    out = [
        f'<table><tr><th class="l" rowspan="2">OOD set</th><th colspan="2">paper (MLP)</th>{head}</tr><tr>{sub}</tr>'
    ]
    for r in (r for r in comparison["rows"] if r["metric"] == metric):
        p = r["paper"]
        cells = [
            _cell(pct(p and p["msp"]), f"paper|{r['ood']}|msp|{metric}", "paper"),
            _cell(pct(p and p["odin"]), f"paper|{r['ood']}|odin|{metric}", "paper"),
        ]
        for n in names:
            for m in METHODS:
                c = r["models"][n].get(m)
                if c is None:
                    cells.append(_cell("&ndash;", f"{n}|{r['ood']}|{m}|{metric}"))
                    continue
                lo, hi = c["ci95"]
                params = f" (T={c['temperature']:g}, &epsilon;={c['epsilon']:g})" if m == "odin-tuned" else ""
                cells.append(
                    _cell(
                        f'{pct(c["value"])} <span class="ci">[{pct(lo)}, {pct(hi)}]{params}</span>',
                        f"{n}|{r['ood']}|{m}|{metric}",
                    )
                )
        out.append(f'<tr><td class="l">{escape(r["label"])}</td>{"".join(cells)}</tr>')
    out.append("</table>")
    return "\n".join(out)


def render_comparison(comparison: dict[str, Any], title: str, note: str = "") -> str:
    models = "".join(
        f'<li><a href="{escape(info["suite"])}/report.html">{escape(name)}</a>: '
        f"model <code>{escape(info['model'])}</code>, "
        f"accuracy on the {info['n_id_eval']} evaluated MNIST test digits {pct(info['id_eval_accuracy'])}%, grid "
        f"T &isin; {escape(str(info['grid']['temperatures']))} &times; "
        f"&epsilon; &isin; {escape(str(info['grid']['epsilons']))}, "
        f"run {escape(info['date_utc'])} UTC"
        f"{' (QUICK run)' if info['quick'] else ''}</li>"
        for name, info in comparison["models"].items()
    )
    findings = "".join(f"<li>{escape(f)}</li>" for f in comparison["findings"])
    tables = "".join(f"<h2>{METRIC_LABELS[m]}</h2>{_metric_table(comparison, m)}" for m in METRICS)
    body = (
        f"<h1>{escape(title)}</h1><p>{note}</p><ul>{models}</ul>"
        f'<h2>What this run shows</h2><ul class="note">{findings}</ul>{tables}'
        f"<p>Values are percentages on the evaluation splits; brackets: 95% bootstrap intervals "
        f"(ID and OOD resampled independently). Shaded: the paper's Table 3 (its MLP).</p>"
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n"
    )


def write_comparison(comparison: dict[str, Any], out: str | Path, title: str, note: str = "") -> Path:
    """``comparison.json`` and ``report.html`` in ``out``; returns the HTML path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_file(out / "comparison.json", json.dumps(comparison, indent=1) + "\n", "reproduce", "--out")
    path = write_file(out / "report.html", render_comparison(comparison, title, note), "reproduce", "--out")
    return path
