"""A detector file cannot open or break the gate: each score family loads only its own parameters,
and in-range values that would keep every input (a softmax threshold below 1/K, ODIN at T < 1)
are refused at load with one line; ``serve`` on such a file stops at start (exit 2), so it never
answers 500 on /v1/predict."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from odin_ood import Detector, models, odin_scores
from odin_ood.scores.family import SCORES
from serving_support import env, free_port

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def lenet():
    return models.load("mnist-lenet")


def fitted_file(model, score: str, temperature: float, epsilon: float, threshold: float) -> dict:
    det = Detector(model, score_family=score)
    det._set_fitted(temperature, epsilon, threshold, 0.95)
    return det.to_dict()


VALID = {
    "odin": (1000.0, 0.0014, 0.101),
    "energy-odin": (1.0, 0.002, 5.0),
    "energy": (1.0, 0.0, 5.0),
    "maxlogit": (1.0, 0.0, 3.0),
    "msp": (1.0, 0.0, 0.9),
}
TAMPERED = [
    ("energy", {"epsilon": 0.002}, "epsilon must be 0"),
    ("maxlogit", {"epsilon": 0.0014}, "epsilon must be 0"),
    ("msp", {"epsilon": 0.0014}, "epsilon must be 0"),
    ("msp", {"temperature": 1000.0}, "runs at T = 1"),
    ("energy", {"temperature": 1000.0}, "runs at T = 1"),
    ("energy-odin", {"temperature": 2.0}, "runs at T = 1"),
    ("maxlogit", {"temperature": 0.5}, "runs at T = 1"),
    ("odin", {"threshold": 0.0}, r"below 1/K = 0.1 .* keep every input"),
    ("odin", {"threshold": 0.0999}, r"below 1/K = 0.1"),
    ("msp", {"threshold": 0.05}, r"below 1/K = 0.1"),
    ("odin", {"temperature": 0.001}, "temperature must be >= 1"),
    ("odin", {"temperature": 0.5}, "temperature must be >= 1"),
    ("odin", {"temperature": float("inf")}, "temperature must be a finite number"),
    ("odin", {"epsilon": float("nan")}, "epsilon must be a finite number"),
    ("odin", {"threshold": 1.5}, "threshold must be a finite number"),
    ("energy", {"threshold": float("-inf")}, "threshold must be a finite number"),
    ("odin", {"score": "Energy"}, "score must be one of"),
    ("odin", {"score": ["odin"]}, "score must be one of"),
]


@pytest.mark.parametrize("score,edit,message", TAMPERED, ids=[f"{s}:{e}" for s, e, _ in TAMPERED])
def test_a_tampered_file_is_refused_at_load_in_one_line(lenet, tmp_path, score, edit, message):
    p = tmp_path / "detector.json"
    p.write_text(json.dumps({**fitted_file(lenet, score, *VALID[score]), **edit}, allow_nan=True))
    with pytest.raises(ValueError, match=message) as info:
        Detector.load(p, lenet)
    assert str(p) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("score", SCORES)
def test_each_familys_own_parameters_load(lenet, tmp_path, score):
    det = Detector.load(Detector.from_dict(fitted_file(lenet, score, *VALID[score]), lenet).save(tmp_path), lenet)
    assert (det.temperature_, det.epsilon_, det.threshold_) == VALID[score]


def test_no_softmax_score_lies_below_one_over_k_so_the_bound_is_exact(lenet):
    """Why 1/K: max softmax >= 1/K for any logits, even at huge T, so a lower threshold keeps all."""
    torch.manual_seed(0)
    x = torch.randn(64, 1, 28, 28) * 3
    for t in (1.0, 1000.0, 1e6):
        assert float(odin_scores(lenet, x, t, 0.0014, input_std=lenet.input_std, normalise=False).min()) >= 0.1 - 1e-7


def test_a_detector_fitted_on_a_uniform_softmax_loads_although_its_threshold_is_a_float32_step_below_1_over_k(tmp_path):
    """A uniform softmax over K = 1000 scores float32(1/K); fit puts delta one float32 step below
    the lowest kept score, 0.00099999993 < 1/K: the file fit wrote must load, with the same delta."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 1000))
    torch.nn.init.zeros_(model[1].weight), torch.nn.init.zeros_(model[1].bias)
    model.num_classes = 1000
    x = torch.rand(40, 1, 4, 4)
    det = Detector(model, temperatures=(1000.0,), epsilons=(0.0,), normalise=False).fit(x, x.flip(0))
    assert det.threshold_ < 1 / 1000  # the case: fit wrote a delta under 1/K by rounding
    assert Detector.load(det.save(tmp_path), model).threshold_ == det.threshold_


def test_k_comes_from_a_probe_when_the_model_does_not_say(tmp_path):
    class Bare(torch.nn.Module):  # no num_classes attribute: K = 4 from one forward of the file's shape
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(12, 4)

        def forward(self, x):
            return self.fc(x.flatten(1))

    model = Bare()
    det = Detector(model, input_shape=(3, 2, 2))
    det._set_fitted(1000.0, 0.0, 0.2, 0.95)
    with pytest.raises(ValueError, match=r"below 1/K = 0.25 for the model's 4 classes"):
        Detector.from_dict(det.to_dict(), model)
    assert Detector.from_dict({**det.to_dict(), "threshold": 0.26}, model).threshold_ == 0.26


def test_fit_refuses_odin_temperatures_below_one(lenet):
    with pytest.raises(ValueError, match="temperature must be >= 1"):
        Detector(lenet, temperatures=(0.5, 1000.0)).fit(torch.zeros(4, 1, 28, 28), torch.ones(4, 1, 28, 28))


@pytest.mark.parametrize(
    "score,edit",
    [("energy", {"epsilon": 0.002}), ("odin", {"threshold": 0.0}), ("odin", {"temperature": 0.001})],
    ids=["energy+eps", "threshold0", "T0.001"],
)
def test_serve_on_a_tampered_file_stops_at_start_with_one_line(lenet, tmp_path, score, edit):
    (tmp_path / "detector.json").write_text(json.dumps({**fitted_file(lenet, score, *VALID[score]), **edit}))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "odin_ood",
            "serve",
            "--detector",
            str(tmp_path),
            "--model",
            "mnist-lenet",
            "--no-auth",
            "--port",
            str(free_port()),
            "--threads",
            "1",
        ],
        env=env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert "Traceback" not in run.stderr and "corrupt odin-ood detector file" in run.stderr
