"""Detector(score_family=...) and tune_score (scores/family.py, tuning/family.py): every score tuned,
thresholded, saved and loaded like ODIN; ODIN stays the default."""

import json

import numpy as np
import pytest
import torch

from odin_ood import Detector
from odin_ood.data.noise import gaussian_noise, uniform_noise
from odin_ood.metrics import fpr_at_tpr
from odin_ood.scores.energy import energy_odin_scores
from odin_ood.scores.family import score_outputs
from odin_ood.tuning.family import tune_score

pytestmark = pytest.mark.usefixtures("torch_one_thread")

EPS = (0.0, 0.002, 0.004)


@pytest.fixture(scope="module")
def halves(digits):
    x = digits["x_held"]
    noise = torch.cat([gaussian_noise(200, (1, 8, 8), seed=5), uniform_noise(200, (1, 8, 8), seed=6)])
    return x[:448], x[448:], noise


def test_odin_is_the_default_score_and_is_saved(digits_model, halves, tmp_path):
    det = Detector(digits_model, temperatures=(1.0, 1000.0), epsilons=EPS).fit(halves[0])
    assert det.score_family == "odin"
    assert json.loads(det.save(tmp_path / "d.json").read_text())["score"] == "odin"


def test_energy_odin_tunes_epsilon_at_t1_against_the_given_ood_set(digits_model, halves):
    fit, unseen, noise = halves
    det = Detector(digits_model, score_family="energy-odin", epsilons=EPS).fit(fit, noise)
    assert det.temperature_ == 1.0 and det.epsilon_ in EPS
    fprs = [
        fpr_at_tpr(
            energy_odin_scores(digits_model, fit, 1.0, e).numpy(),
            energy_odin_scores(digits_model, noise, 1.0, e).numpy(),
        )
        for e in EPS
    ]
    assert det.epsilon_ == EPS[int(np.argmin(fprs))]  # first minimum, as tune_from_scores
    assert torch.equal(det.score(unseen), energy_odin_scores(digits_model, unseen, 1.0, det.epsilon_))


def test_tune_score_odin_is_tune(digits_model, halves):
    from odin_ood import tune

    fit, _, noise = halves
    a = tune_score(digits_model, fit, noise, "odin", (1.0, 10.0), EPS)
    b = tune(digits_model, fit, noise, (1.0, 10.0), EPS)
    assert (a.temperature, a.epsilon) == (b.temperature, b.epsilon) and np.array_equal(a.scores_in, b.scores_in)


def test_detector_file_without_a_score_field_loads_as_odin(digits_model, halves, tmp_path):
    det = Detector(digits_model, temperatures=(1.0,), epsilons=(0.0, 0.002)).fit(halves[0], halves[2])
    d = det.to_dict()
    del d["score"]
    assert Detector.from_dict(d, digits_model).score_family == "odin"


def test_unknown_score_is_refused_in_fit_and_at_load(digits_model, halves):
    with pytest.raises(ValueError, match="score must be one of"):
        Detector(digits_model, score_family="mahalanobis").fit(halves[0], halves[2])
    det = Detector(digits_model, score_family="energy").fit(halves[0], halves[2])
    with pytest.raises(ValueError, match="corrupt"):
        Detector.from_dict({**det.to_dict(), "score": "mahalanobis"}, digits_model)


def test_parameter_free_scores_refuse_a_perturbation(digits_model, halves):
    with pytest.raises(ValueError, match="epsilon must be 0"):
        score_outputs(digits_model, halves[1], "energy", 1.0, 0.001)
    with pytest.raises(ValueError, match="T = 1"):
        score_outputs(digits_model, halves[1], "msp", 1000.0, 0.0)


def test_id_only_energy_odin_takes_the_epsilon_of_highest_mean_id_energy_at_t1(digits_model, halves):
    fit = halves[0]
    eps = (0.02, 0.01, 0.004, 0.002, 0.0)  # E rises with epsilon here; high to low, so "the last cell" fails
    det = Detector(digits_model, score_family="energy-odin", epsilons=eps, ood_free="id-only").fit(fit)
    means = [energy_odin_scores(digits_model, fit, 1.0, e).double().mean().item() for e in eps]
    assert (det.temperature_, det.epsilon_) == (1.0, eps[int(np.argmax(means))]) == (1.0, 0.02)
    assert det.tuning_.metrics["mean_id_score"][0] == pytest.approx(means, rel=1e-6)
    assert (energy_odin_scores(digits_model, fit, 1.0, det.epsilon_) > det.threshold_).float().mean().item() >= 0.95


@pytest.mark.parametrize("score", ["energy", "maxlogit", "msp"])
def test_id_only_parameter_free_scores_have_nothing_to_choose(digits_model, halves, score):
    fit = halves[0]
    r = tune_score(digits_model, fit, score=score, ood_free="id-only")
    assert (r.temperature, r.epsilon, r.objective) == (1.0, 0.0, "mean_id_score") and r.scores_out.shape == (1, 1, 0)
    det = Detector(digits_model, score_family=score, ood_free="id-only").fit(fit)
    assert det.threshold_ == Detector(digits_model, score_family=score).fit(fit).threshold_  # same ID scores, same rule


def test_tune_score_refuses_an_unknown_ood_free(digits_model, halves):
    with pytest.raises(ValueError, match="ood_free must be one of"):
        tune_score(digits_model, halves[0], score="msp", ood_free="oracle")
