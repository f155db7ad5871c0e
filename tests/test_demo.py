import json

import pytest

from odin_ood import Detector
from odin_ood.cli import main
from odin_ood.demo import run_demo
from odin_ood.models import load as load_model

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(out, seed=0, progress=False)


def test_demo_writes_consistent_files(demo):
    out, result = demo
    assert json.loads((out / "demo.json").read_text()) == result
    html = (out / "summary.html").read_text()
    assert "http" not in html.replace("charset", "")  # nothing fetched from the network
    for row in result["rows"]:
        for part in ("msp", "odin"):
            for value in row[part].values():
                assert 0.0 <= value <= 1.0 + 1e-12  # average precision may round a hair above 1
        assert f"{100 * row['msp']['fpr_at_95_tpr']:.1f} / <b>{100 * row['odin']['fpr_at_95_tpr']:.1f}</b>" in html
    assert (out / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_detector_is_calibrated_and_beats_msp_on_unseen_sets(demo):
    out, result = demo
    assert 0.92 <= result["id_kept"] <= 0.98  # threshold at 95% TPR, checked on unseen digits
    rows = {row["ood"]: row for row in result["rows"]}
    assert result["tuning_set"] == "notMNIST" and result["model"].startswith("mnist-lenet")
    assert set(rows) == {"Omniglot", "Omniglot (inverted)", "Gaussian", "Uniform"}  # none seen in tuning
    better = [
        name
        for name, r in rows.items()
        if r["odin"]["fpr_at_95_tpr"] < r["msp"]["fpr_at_95_tpr"] and r["odin"]["auroc"] > r["msp"]["auroc"]
    ]
    assert len(better) >= 3 and better == result["odin_better_on"]
    loaded = Detector.load(out / "detector.json", load_model("mnist-lenet"))
    assert (loaded.temperature_, loaded.epsilon_, loaded.threshold_) == (
        result["temperature"],
        result["epsilon"],
        result["threshold"],
    )


def test_demo_auroc_matches_sklearn_on_the_demo_scores(demo):
    """Recompute the demo's MSP and ODIN scores independently and check its AUROCs with scikit-learn."""
    import numpy as np
    import torch
    from sklearn.metrics import roc_auc_score

    from odin_ood import odin_scores
    from odin_ood.demo import MODEL, demo_sets

    _, result = demo
    model = load_model(MODEL)
    mean, std = torch.tensor(model.input_mean).view(1, -1, 1, 1), torch.tensor(model.input_std).view(1, -1, 1, 1)
    digits, ood = demo_sets(500, 0)
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(digits)))
    id_eval = (digits[perm[len(perm) // 2 :]] - mean) / std
    for row in result["rows"]:
        x_out = (ood[row["ood"]] - mean) / std
        for method, score in (
            ("msp", lambda x: torch.softmax(model(x), 1).amax(1).detach()),
            (
                "odin",
                lambda x: odin_scores(
                    model, x, result["temperature"], result["epsilon"], input_std=model.input_std, normalise=False
                ),
            ),
        ):
            s_in, s_out = score(id_eval).numpy(), score(x_out).numpy()
            labels = np.r_[np.ones(len(s_in)), np.zeros(len(s_out))]
            assert row[method]["auroc"] == pytest.approx(roc_auc_score(labels, np.r_[s_in, s_out]), abs=1e-9)


def test_demo_command_line_with_another_seed(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    for name in ("notMNIST", "Omniglot (inverted)", "Gaussian", "Uniform", "better than the max-softmax baseline"):
        assert name in printed
    result = json.loads((tmp_path / "d" / "demo.json").read_text())
    assert (tmp_path / "d" / "detector.json").is_file()
    # another split and other noise: ODIN is never worse, and strictly better where MSP leaves room
    # (with seed 1 MSP already has 0.0% FPR on both noise sets, so FPR cannot drop there)
    for row in result["rows"]:
        assert (
            row["odin"]["fpr_at_95_tpr"] <= row["msp"]["fpr_at_95_tpr"] and row["odin"]["auroc"] >= row["msp"]["auroc"]
        )
    assert {"Omniglot", "Omniglot (inverted)"} <= set(result["odin_better_on"])


def test_demo_picture_reads_well_and_its_page_fits_1400_px(demo, tmp_path):
    """The demo's own scores drawn as scores.png is: ODIN's x ticks (0.100 ... 0.120) few and apart,
    each set an outline in the legend (no set hidden behind another), the threshold and the 95% TPR
    line labelled, nothing clipped; summary.html is no wider than a 1400-px window."""
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from figure_support import faults, rendered_widths
    from odin_ood.demo import MODEL, demo_sets, scores_figure
    from odin_ood.report.style import finish

    out, result = demo
    detector = Detector.load(out / "detector.json", load_model(MODEL))
    digits, ood = demo_sets(500, 0)
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(digits)))
    sets = {"MNIST": digits[perm[len(perm) // 2 :]], **{r["ood"]: ood[r["ood"]] for r in result["rows"]}}
    outputs = {name: detector.outputs(x) for name, x in sets.items()}
    fig = finish(
        scores_figure(
            {k: o["confidence"] for k, o in outputs.items()},
            {k: o["score"] for k, o in outputs.items()},
            detector.threshold_,
        )
    )
    assert faults(fig) == []
    odin_axes = fig.axes[1]
    assert [t.get_text() for t in odin_axes.get_legend().get_texts()][:5] == [
        "MNIST (ID)",
        "Omniglot",
        "Omniglot (inverted)",
        "Gaussian",
        "Uniform",
    ]
    assert all(not p.get_fill() for p in odin_axes.patches if not (p.get_label() or "_").startswith("_"))  # outlines
    plt.close(fig)
    width = rendered_widths(out / "summary.html", tmp_path)
    assert width["page"] <= 1400 and max(width["tables"]) <= width["body"], width
