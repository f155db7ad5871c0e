"""``odin-ood reproduce mnist``: both MNIST models side by side with the paper (experiments/
comparison.py, report/comparison.py), read back from the HTML and checked against each suite's
results.json; and the findings computed on a hand-made case."""

from __future__ import annotations

import json

import pytest

from odin_ood.cli import main
from odin_ood.experiments.comparison import compare
from odin_ood.metrics import METRICS
from report_support import Cells

pytestmark = pytest.mark.usefixtures("torch_one_thread")
PARTS = ("mnist-lenet", "mnist-mlp")


@pytest.fixture(scope="module")
def composite(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("mnist-both")
    code = main(
        [
            "reproduce",
            "mnist",
            "--data-root",
            str(shared_data),
            "--out",
            str(out),
            "--quick",
            "--limit",
            "120",
            "--cache-dir",
            str(out / "cache"),
            "--no-progress",
            "--threads",
            "1",
        ]
    )
    assert code == 0
    return out


def test_side_by_side_report_shows_each_models_rows_and_the_papers(composite):
    parser = Cells()
    parser.feed((composite / "report.html").read_text(encoding="utf-8"))
    comparison = json.loads((composite / "comparison.json").read_text())
    assert list(comparison["models"]) == list(PARTS)
    checked = 0
    for part in PARTS:
        results = json.loads((composite / part / "results.json").read_text())
        assert results["suite"] == part and (composite / part / "report.html").is_file()
        # the side-by-side page compares with the paper: MSP and ODIN (the successor rows are in each suite's report)
        for r in (r for r in results["main_table"]["rows"] if r["method"] in ("msp", "odin-tuned", "odin-paper")):
            for m in METRICS:
                shown = float(parser.cells[f"{part}|{r['ood']}|{r['method']}|{m}"].strip())
                assert shown == pytest.approx(100 * r["metrics"][m], abs=0.051)
                checked += 1
                if r["method"] == "msp" and r["paper"]:
                    assert float(parser.cells[f"paper|{r['ood']}|msp|{m}"]) == pytest.approx(r["paper"]["values"][m])
    assert checked == 2 * 6 * 3 * len(METRICS)  # 2 models, 6 OOD sets, 3 methods
    assert float(parser.cells["paper|notmnist|odin|fpr_at_95_tpr"]) == 8.7
    assert any("mnist-lenet" in f and "Table 3" in f for f in comparison["findings"])


def _results(suite: str, model: str, fpr: dict[str, tuple[float, float]], paper: dict[str, tuple[float, float]]):
    """A minimal results.json with FPR@95 only meaningful (other metrics 0.5)."""
    rows = []
    for key, (msp, odin) in fpr.items():
        for method, v in (("msp", msp), ("odin-tuned", odin), ("odin-paper", odin)):
            metrics = {m: 0.5 for m in METRICS} | {"fpr_at_95_tpr": v}
            ref = paper.get(key)
            rows.append(
                {
                    "ood": key,
                    "label": key,
                    "method": method,
                    "temperature": 1000.0,
                    "epsilon": 0.0,
                    "metrics": metrics,
                    "ci95": {m: [v, v] for m in METRICS},
                    "paper": None
                    if ref is None
                    else {
                        "source": "Table 3",
                        "values": {m: 100 * (ref[0] if method == "msp" else ref[1]) for m in METRICS},
                    },
                }
            )
    provenance = {
        "model": {"name": model, "id_eval_accuracy": 0.99},
        "date_utc": "2026-01-01",
        "grid": {"temperatures": [1.0, 1000.0], "epsilons": [0.0]},
        "datasets": {"id": {"split": {"eval": 9000}}},
    }
    return {"suite": suite, "quick": False, "main_table": {"rows": rows}, "provenance": provenance}


def test_findings_count_cells_within_five_points_and_odin_no_worse_than_msp():
    paper = {"omniglot": (0.002, 0.0), "notmnist": (0.103, 0.087)}
    lenet = _results(
        "mnist-lenet",
        "mnist-lenet",
        {"omniglot": (0.008, 0.0), "omniglot-inverted": (0.15, 0.10), "notmnist": (0.132, 0.070)},
        paper,
    )
    mlp = _results(
        "mnist-mlp",
        "mnist-mlp",
        {"omniglot": (0.585, 0.60), "omniglot-inverted": (0.19, 0.13), "notmnist": (0.471, 0.455)},
        paper,
    )
    c = compare({"mnist-lenet": lenet, "mnist-mlp": mlp})
    lenet_line, lenet_polarity, mlp_line = c["findings"][0], c["findings"][1], c["findings"][2]
    # |0.8-0.2|, |0-0|, |13.2-10.3|, |7.0-8.7| are all <= 5 points; inverted Omniglot is not a Table 3 cell
    assert "4 of 4 Table 3 FPR@95 cells" in lenet_line and "ODIN <= MSP on 3 of 3 sets" in lenet_line
    assert "largest gap 2.9 points (notmnist)" in lenet_line
    assert "0.8% as stored" in lenet_polarity and "15.0% inverted" in lenet_polarity
    assert "0 of 4 Table 3" in mlp_line and "ODIN <= MSP on 2 of 3 sets" in mlp_line
    fpr_rows = [r for r in c["rows"] if r["metric"] == "fpr_at_95_tpr"]
    assert [r["ood"] for r in fpr_rows] == ["omniglot", "omniglot-inverted", "notmnist"]
    assert fpr_rows[0]["paper"] == {"msp": pytest.approx(0.002), "odin": 0.0, "source": "Table 3"}
    assert fpr_rows[1]["paper"] is None


def test_compare_needs_results():
    with pytest.raises(ValueError, match="at least one suite"):
        compare({})
