"""Several models on the same OOD sets, side by side with the paper (``odin-ood reproduce mnist``).

``compare(parts)`` takes the ``results.json`` of each suite of a composite (same OOD sets, one
model each) and returns one row per (OOD set, metric) with the paper's MSP/ODIN values and each
model's MSP, tuned ODIN and ODIN at the paper's (T, epsilon), with their bootstrap intervals;
and ``findings``: sentences computed from those numbers (accuracy, distance to the paper, whether
ODIN beats MSP, the effect of Omniglot's polarity), so that the explanation in the report is
the evidence of this run and nothing else.
"""

from __future__ import annotations

from typing import Any

from odin_ood.metrics import METRICS

METHODS = ("msp", "odin-tuned", "odin-paper")
TOLERANCE = 0.05  # "within 5 FPR points of the paper"
# Baseline (max softmax) AUROC, %, printed in Hendrycks & Gimpel's public notebook
# (hendrycks/error-detection, Vision/MNIST_Softmax_Stats.ipynb) for the classifier the paper
# says it uses, "Normality Detection, Prediction Prob". Their Omniglot is built with 1 - image
# (our inverted set); their Gaussian noise is N(0, 1) unclipped, not ours; their notMNIST
# values lie in [-0.5, 0.5].
HENDRYCKS_GIMPEL_MSP_AUROC = {"omniglot-inverted": 95.25, "notmnist": 82.87, "cifar10bw": 93.7, "uniform": 97.89}


def _cells(results: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["ood"], r["method"]): r for r in results["main_table"]["rows"]}


def compare(parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Side-by-side rows and findings for ``{suite name: results}`` (all on the same OOD sets)."""
    if not parts:
        raise ValueError("compare needs the results of at least one suite")
    order: list[tuple[str, str]] = []
    for res in parts.values():
        for r in res["main_table"]["rows"]:
            if (r["ood"], r["label"]) not in order:
                order.append((r["ood"], r["label"]))
    cells = {name: _cells(res) for name, res in parts.items()}
    rows = []
    for key, label in order:
        for metric in METRICS:
            rows.append(
                {
                    "ood": key,
                    "label": label,
                    "metric": metric,
                    "paper": _paper(cells, key, metric),
                    "models": {
                        name: {
                            m: {
                                "value": cs[(key, m)]["metrics"][metric],
                                "ci95": cs[(key, m)]["ci95"][metric],
                                "temperature": cs[(key, m)]["temperature"],
                                "epsilon": cs[(key, m)]["epsilon"],
                            }
                            for m in METHODS
                            if (key, m) in cs
                        }
                        for name, cs in cells.items()
                    },
                }
            )
    models = {
        name: {
            "model": res["provenance"]["model"]["name"],
            "suite": res["suite"],
            "id_eval_accuracy": res["provenance"]["model"]["id_eval_accuracy"],
            "date_utc": res["provenance"]["date_utc"],
            "quick": res["quick"],
            "grid": res["provenance"]["grid"],
            "n_id_eval": res["provenance"]["datasets"]["id"]["split"]["eval"],
        }
        for name, res in parts.items()
    }
    return {"models": models, "rows": rows, "findings": findings(rows, models)}


def _paper(cells: dict[str, dict], key: str, metric: str) -> dict[str, Any] | None:
    """The paper's {"msp", "odin" (fractions), "source"} for ``metric`` on set ``key``, or None.
    Every main-table row carries the paper value of its own method (MSP's or ODIN's)."""
    for cs in cells.values():
        msp, odin = cs.get((key, "msp")), cs.get((key, "odin-tuned"))
        if msp and odin and msp["paper"] and odin["paper"]:
            return {
                "msp": msp["paper"]["values"][metric] / 100,
                "odin": odin["paper"]["values"][metric] / 100,
                "source": msp["paper"]["source"],
            }
    return None


def findings(rows: list[dict[str, Any]], models: dict[str, dict[str, Any]]) -> list[str]:
    """Sentences computed from the FPR at 95% TPR rows: per model, how many sets are within
    :data:`TOLERANCE` of the paper (MSP and ODIN at the paper's T, epsilon), where ODIN <= MSP,
    and the effect of Omniglot's polarity."""
    fpr = [r for r in rows if r["metric"] == "fpr_at_95_tpr"]
    out = []
    for name, info in models.items():
        acc = info["id_eval_accuracy"]
        near, total, better, worst = 0, 0, [], (0.0, "")
        for r in fpr:
            m = r["models"].get(name, {})
            if "msp" not in m:
                continue
            odin = m.get("odin-paper", m.get("odin-tuned"))
            if r["paper"] and r["ood"] != "omniglot-inverted":
                for ours, theirs in ((m["msp"]["value"], r["paper"]["msp"]), (odin["value"], r["paper"]["odin"])):
                    total += 1
                    near += abs(ours - theirs) <= TOLERANCE + 1e-12
                    if abs(ours - theirs) > worst[0]:
                        worst = (abs(ours - theirs), r["label"])
            better.append(odin["value"] <= m["msp"]["value"])
        acc_text = f"{100 * acc:.2f}%" if acc is not None else "n/a"
        line = (
            f"{name} (ID accuracy {acc_text} on the evaluated MNIST test digits): {near} of {total} Table 3 "
            f"FPR@95 cells (MSP and ODIN at T = 1000, eps = 0; non-inverted Omniglot) within "
            f"{100 * TOLERANCE:.0f} points of the paper"
        )
        line += f", largest gap {100 * worst[0]:.1f} points ({worst[1]})" if total else ""
        line += f"; ODIN <= MSP on {sum(better)} of {len(better)} sets."
        out.append(line)
        pol = {r["ood"]: r["models"].get(name, {}).get("msp", {}).get("value") for r in fpr}
        if pol.get("omniglot") is not None and pol.get("omniglot-inverted") is not None:
            out.append(
                f"{name}: Omniglot MSP FPR@95 {100 * pol['omniglot']:.1f}% as stored (black on white) vs "
                f"{100 * pol['omniglot-inverted']:.1f}% inverted (white on black, MNIST's polarity)."
            )
        if info["model"] == "mnist-mlp":
            auroc = {
                r["ood"]: r["models"][name]["msp"]["value"]
                for r in rows
                if r["metric"] == "auroc" and "msp" in r["models"].get(name, {})
            }
            pairs = [
                f"{k} {100 * auroc[k]:.1f} vs {v:.2f}" for k, v in HENDRYCKS_GIMPEL_MSP_AUROC.items() if k in auroc
            ]
            if pairs:
                out.append(
                    f"{name}: baseline AUROC (%) ours vs Hendrycks & Gimpel's notebook for the same recipe: "
                    + ", ".join(pairs)
                    + "."
                )
    return out
