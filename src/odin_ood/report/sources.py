"""HTML for the tuning-source comparison (:mod:`odin_ood.experiments.tuning_sources`).

Cells carry ``data-key="<set>|source:<source>|<metric>"`` (summary: ``summary|<source>|<metric>``)
so tests can read the numbers back and check them against ``results.json``.
"""

from __future__ import annotations

from html import escape
from typing import Any

SOURCE_LABELS = {
    "msp": "MSP (no tuning, reference)",
    "noise": "(a) noise: Gaussian + Uniform (default without OOD data)",
    "id-only-t1000": "(b) ID only, G-ODIN criterion, T = 1000",
    "id-only-t1": "(b) ID only, G-ODIN criterion, T = 1",
    "paper": "(c) the paper's parameters",
    "same-set": "(e) this set's tuning split (sec. 4.4)",
    "oracle": "(f) ORACLE: the evaluated images themselves",
    "loo (mean over sources)": "(d) other real OOD sets (mean)",
}


def _label(source: str) -> str:
    return f"(d) tuned on {source[4:]}" if source.startswith("loo:") else SOURCE_LABELS.get(source, source)


def _pct(v: float) -> str:
    return f"{100 * v:.1f}"


def _td(text: str, key: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f'<td data-key="{escape(key)}"{attr}>{text}</td>'


def tuning_sources_html(results: dict[str, Any]) -> str:
    """The summary, the verdict and one table per OOD set; empty when the run has no comparison."""
    ts = results.get("tuning_sources")
    if not ts:
        return ""
    if "skipped" in ts:
        return (
            "<h2>Beyond the paper: which tuning source transfers to unseen OOD sets</h2>"
            f"<p>Not computed in this run: {escape(ts['skipped'])}.</p>"
        )
    out = [
        "<h2>Beyond the paper: which tuning source transfers to unseen OOD sets</h2>",
        '<p class="note">Each source chooses ODIN\'s (T, &epsilon;) from the data named; FPR at 95% TPR and AUROC '
        "are measured on the evaluation splits (95% bootstrap intervals). Only the oracle sees the images it is "
        "evaluated on; <i>overlap</i> counts the tuning images found, by content, among the evaluated ones. "
        f"Evaluated: {escape(ts.get('evaluated', {}).get('note', 'every image of each evaluation split'))}; "
        f"choices by the {escape(ts.get('search', 'grid'))} search; "
        f"oracle: {escape(ts.get('oracle', 'computed'))}.</p>",
        f"<p><b>Verdict:</b> {escape(ts['verdict'])}</p>",
        '<table><tr><th class="l">source (mean over real OOD sets)</th><th>sets</th><th>FPR at 95% TPR &darr;</th>'
        "<th>AUROC &uarr;</th></tr>",
    ]
    for k, v in ts["summary"].items():
        out.append(
            f'<tr><td class="l">{escape(_label(k))}</td><td>{v["sets"]}</td>'
            f"{_td(_pct(v['mean_fpr_at_95_tpr']), f'summary|{k}|fpr_at_95_tpr')}"
            f"{_td(_pct(v['mean_auroc']), f'summary|{k}|auroc')}</tr>"
        )
    out.append("</table>")
    for key, entry in ts["sets"].items():
        kind = "" if entry["natural"] else " (noise: the noise source is the same distribution, another draw)"
        out.append(f"<h3>Evaluated on {escape(entry['label'])}{kind}</h3>")
        out.append(
            '<table><tr><th class="l">source</th><th class="l">tuned on</th><th>T</th><th>&epsilon;</th>'
            "<th>FPR at 95% TPR [95% CI]</th><th>AUROC [95% CI]</th><th>overlap</th></tr>"
        )
        for r in entry["rows"]:
            cells = "".join(
                _td(
                    f'{_pct(r["metrics"][m])} <span class="ci">[{_pct(r["ci95"][m][0])}, '
                    f"{_pct(r['ci95'][m][1])}]</span>",
                    f"{key}|source:{r['source']}|{m}",
                    "paper" if r["source"] == "oracle" else "",
                )
                for m in ("fpr_at_95_tpr", "auroc")
            )
            overlap = "&ndash;" if r["overlap"] is None else str(r["overlap"])
            out.append(
                f'<tr><td class="l">{escape(_label(r["source"]))}</td><td class="l">{escape(r["tuned_on"])}</td>'
                f"<td>{r['temperature']:g}</td><td>{r['epsilon']:g}</td>{cells}<td>{overlap}</td></tr>"
            )
        out.append("</table>")
    return "\n".join(out)
