"""Reduced precision is opt-in and recorded: a detector fitted at bf16 scores under bf16 autocast
(compared with ``odin_scores`` under ``torch.autocast``, an independent path), sets its threshold
from bf16 scores so the TPR holds for them, records the precision and the runtime whose scores set
it, and refuses in one line to score at another precision or, below fp32, on another runtime;
``fit --runtime openvino`` sets the threshold from OpenVINO's own bf16 scores; score rows and
serve answers carry the precision. Real MNIST / notMNIST, the shipped LeNet, ODIN at T = 1000,
epsilon = 0.0014 (the input-gradient path)."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from odin_ood import Detector, data, models, odin_scores
from odin_ood.cli import main
from odin_ood.commands.row_files import read_rows
from odin_ood.detector import threshold_below
from odin_ood.preprocess import Preprocessing, normalise
from odin_ood.runtimes import SCORE_TOLERANCE, load_runtime
from odin_ood.runtimes.batches import fixed_batch_outputs
from odin_ood.scores.precision import eager_support

pytestmark = [
    pytest.mark.usefixtures("torch_one_thread"),
    pytest.mark.skipif(
        eager_support("bf16", torch.device("cpu")) is not None, reason="this CPU has no bf16 arithmetic"
    ),
]
N = 200


def spec_of(model) -> Preprocessing:
    return Preprocessing(tuple(model.input_shape), mean=tuple(model.input_mean), std=tuple(model.input_std))


@pytest.fixture(scope="module")
def images(shared_data):
    digits, letters = data.load("mnist", root=shared_data), data.load("notmnist", root=shared_data)
    return digits.images[:N].float() / 255, letters.images[:N].float() / 255


def lenet_detector(precision: str) -> Detector:
    return Detector(
        models.load("mnist-lenet"), temperatures=(1000.0,), epsilons=(0.0014,), batch_size=N, precision=precision
    )


@pytest.fixture(scope="module")
def fitted(images):
    return {p: lenet_detector(p).fit(*images) for p in ("fp32", "bf16")}


def test_a_bf16_detector_scores_under_bf16_autocast_and_its_threshold_keeps_the_tpr_of_those_scores(fitted, images):
    det, x_in = fitted["bf16"], images[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = odin_scores(det.model, x_in, 1000.0, 0.0014)  # one batch of N, as the detector's
    got = det.score(x_in)
    assert torch.equal(got, want)
    assert det.threshold_ == threshold_below(want, 0.95) and (want > det.threshold_).double().mean() >= 0.95
    fp32 = fitted["fp32"].score(x_in)
    assert (fp32.double() - got.double()).abs().max() > SCORE_TOLERANCE  # bf16 moves scores beyond it
    assert fitted["fp32"].threshold_ != det.threshold_
    assert (det.precision_, det.runtime_) == ("bf16", "torch")
    assert (fitted["fp32"].precision_, fitted["fp32"].runtime_) == ("fp32", None)
    d = det.to_dict()
    assert (d["precision"], d["runtime"]) == ("bf16", "torch") and "precision" not in fitted["fp32"].to_dict()
    loaded = Detector.from_dict(json.loads(json.dumps(d)), det.model)
    assert loaded.precision == "bf16" and torch.equal(loaded.score(x_in), got)


def test_scoring_at_another_precision_or_runtime_than_fitted_is_refused_in_one_line(fitted, images):
    det = copy.copy(fitted["bf16"])
    det.precision = "fp32"
    with pytest.raises(ValueError, match=r"^the detector was fitted at bf16 .*, not fp32: score with precision='bf16'"):
        det.score(images[0])
    fp32 = copy.copy(fitted["fp32"])
    fp32.precision = "bf16"
    with pytest.raises(ValueError, match=r"fitted at fp32 .*, not bf16"):
        fp32.score(images[0])
    with pytest.raises(
        ValueError,
        match=r"^the detector's bf16 threshold was fitted on the torch runtime, whose bf16 "
        r"scores differ from openvino's: score with --runtime torch",
    ):
        load_runtime("openvino", fitted["bf16"], spec_of(det.model))


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("precision", "int8", r"precision must be one of fp32, bf16, fp16, got 'int8'"),
        (
            "runtime",
            "openvino",
            r"runtime must be the name of the runtime a fp32 threshold was fitted on \(fp32: none\)",
        ),
    ],
)
def test_a_detector_file_with_an_unknown_precision_or_a_runtime_at_fp32_is_refused(fitted, field, value, message):
    d = {**fitted["fp32"].to_dict(), field: value}
    with pytest.raises(ValueError, match=message):
        Detector.from_dict(d, fitted["fp32"].model)


def test_fit_on_openvino_at_bf16_sets_the_threshold_from_openvino_bf16_scores(shared_data, tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    monkeypatch.setenv("ODIN_OOD_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "det"
    common = ["--model", "mnist-lenet", "--threads", "1", "--data-root", str(shared_data)]
    assert (
        main(
            [
                "fit",
                "--out",
                str(out),
                "--id",
                "mnist",
                "--ood",
                "notmnist",
                "--limit",
                "120",
                "--holdout",
                "0",
                "--temperatures",
                "1000",
                "--epsilons",
                "0.0014",
                "--precision",
                "bf16",
                "--runtime",
                "openvino",
                "--quiet",
                "--workers",
                "1",
                *common,
            ]
        )
        == 0
    )
    record = json.loads((out / "fit.json").read_text())
    assert (record["precision"], record["runtime"]) == ("bf16", "openvino")
    digits = data.load("mnist", root=shared_data).images
    tuning = digits[[int(s.rsplit("/", 1)[1]) for s in record["tuning"]["id"]["sources"]]].float() / 255
    det = Detector.load(out, models.load("mnist-lenet"))
    assert (det.precision, det.runtime_) == ("bf16", "openvino")
    scores = fixed_batch_outputs(load_runtime("openvino", det, spec_of(det.model), threads=1), tuning)["score"]
    assert det.threshold_ == threshold_below(scores, 0.95)  # OpenVINO's bf16 scores set it, not torch's
    rows = tmp_path / "rows.csv"
    assert (
        main(
            [
                "score",
                "mnist",
                "--limit",
                "5",
                "--output",
                str(rows),
                "--detector",
                str(out),
                "--precision",
                "bf16",
                "--runtime",
                "openvino",
                "--quiet",
                "--workers",
                "1",
                *common,
            ]
        )
        == 0
    )
    got = list(read_rows(rows))
    assert [r["precision"] for r in got] == ["bf16"] * 5
    assert (
        main(
            [
                "score",
                "mnist",
                "--limit",
                "5",
                "--output",
                str(tmp_path / "fp32.csv"),
                "--detector",
                str(out),
                "--runtime",
                "openvino",
                "--quiet",
                *common,
            ]
        )
        == 2
    )  # fp32 is the default: refused, not guessed
    assert not (tmp_path / "fp32.csv").exists()
    want = fixed_batch_outputs(load_runtime("openvino", det, spec_of(det.model), threads=1), digits[:5].float() / 255)
    assert [r["score"] for r in got] == want["score"].tolist()  # the same graph, batch and precision: the same bits


def test_fit_refuses_a_runtime_without_the_precision_and_a_runtime_at_fp32(shared_data, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    base = [
        "fit",
        "--id",
        "mnist",
        "--ood",
        "notmnist",
        "--limit",
        "40",
        "--holdout",
        "0",
        "--temperatures",
        "1000",
        "--epsilons",
        "0.0014",
        "--model",
        "mnist-lenet",
        "--threads",
        "1",
        "--data-root",
        str(shared_data),
        "--quiet",
        "--workers",
        "1",
    ]
    assert main([*base, "--out", str(tmp_path / "a"), "--precision", "bf16", "--runtime", "onnxruntime"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "odin-ood fit: error: --runtime onnxruntime --precision bf16: onnxruntime has no bf16 path on the "
        "CPU (use --runtime torch or openvino where the device has it, or fp32)"
    ]
    assert main([*base, "--out", str(tmp_path / "b"), "--runtime", "openvino"]) == 2
    assert "--runtime in fit chooses the runtime a reduced-precision threshold is fitted on" in capsys.readouterr().err
    assert not (tmp_path / "a" / "detector.json").exists() and not (tmp_path / "b").exists()


def test_the_gate_answers_carry_the_precision(fitted, images):
    from fastapi.testclient import TestClient

    from odin_ood.serving.app import create_app

    det = copy.copy(fitted["bf16"])
    det.normalise = False
    spec = spec_of(det.model)
    x = images[1][:3]
    with TestClient(create_app(det, spec, max_batch=8)) as client:
        r = client.post("/v1/predict", json={"images": [{"array": im.tolist()} for im in x]})
    assert r.status_code == 200, r.text
    got = r.json()["predictions"]
    padded = torch.cat([x, x.new_zeros(5, *x.shape[1:])])  # the gate pads to its batch of 8
    want = det.outputs_for_model_input(normalise(padded, spec))["score"][:3]
    assert [p["precision"] for p in got] == ["bf16"] * 3
    assert [p["score"] for p in got] == want.tolist()
