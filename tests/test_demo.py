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
                assert 0.0 <= value <= 1.0
        assert f"{100 * row['msp']['fpr_at_95_tpr']:.1f} / <b>{100 * row['odin']['fpr_at_95_tpr']:.1f}</b>" in html
    assert (out / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_detector_is_calibrated_and_beats_msp(demo):
    out, result = demo
    assert 0.92 <= result["id_kept"] <= 0.98  # threshold at 95% TPR, checked on unseen digits
    rows = {row["ood"]: row for row in result["rows"]}
    assert set(rows) == {"Omniglot", "notMNIST", "Gaussian", "Uniform"}
    omniglot = rows["Omniglot"]  # the tuning set's distribution: ODIN must win there
    assert omniglot["odin"]["fpr_at_95_tpr"] <= omniglot["msp"]["fpr_at_95_tpr"]
    assert omniglot["odin"]["auroc"] > omniglot["msp"]["auroc"]
    assert omniglot["odin"]["auroc"] > 0.95
    loaded = Detector.load(out / "detector.json", load_model("mnist-mlp"))
    assert (loaded.temperature_, loaded.epsilon_, loaded.threshold_) == (
        result["temperature"], result["epsilon"], result["threshold"],
    )


def test_demo_command_line(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "Omniglot" in printed and "notMNIST" in printed and "Gaussian" in printed and "Uniform" in printed
    assert (tmp_path / "d" / "detector.json").is_file()
