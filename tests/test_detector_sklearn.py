"""The Detector in scikit-learn's shape: constructor arguments stored unchanged (get_params,
set_params, sklearn.base.clone), every one checked in fit naming it, fitted state only after fit,
score_samples / decision_function / predict agreeing with each other and with odin_scores."""

from __future__ import annotations

import pytest
import torch
from sklearn.base import clone

from odin_ood import Detector, models, odin_scores
from odin_ood.detector import NotFittedError
from odin_ood.preprocess import Preprocessing

GRID = dict(temperatures=(1.0, 1000.0), epsilons=(0.0, 0.002))
FITTED = (
    "temperature_",
    "epsilon_",
    "threshold_",
    "tpr_",
    "model_fingerprint_",
    "preprocessing_",
    "mean_",
    "std_",
    "tuning_",
)


@pytest.fixture(scope="module")
def lenet():
    return models.load("mnist-lenet")


@pytest.fixture(scope="module")
def pixels(shared_data):
    from odin_ood import data

    x_in = data.load("mnist", root=shared_data).images[:96].float() / 255
    x_out = data.load("notmnist", root=shared_data).images[:96].float() / 255
    return x_in, x_out


def test_get_params_gives_every_constructor_argument_unchanged(lenet):
    std, temps = [0.3081], (1.0, 10.0)
    det = Detector(lenet, input_std=std, temperatures=temps, score_family="energy-odin", normalise=False)
    params = det.get_params()
    assert params["input_std"] is std and params["temperatures"] is temps and params["model"] is lenet
    assert params["score_family"] == "energy-odin" and params["normalise"] is False and params["preprocessing"] is None
    assert sorted(params) == sorted(
        [
            "model",
            "input_std",
            "input_mean",
            "temperatures",
            "epsilons",
            "objective",
            "batch_size",
            "clamp",
            "input_shape",
            "score_family",
            "ood_free",
            "preprocessing",
            "optimize",
            "normalise",
            "search",
            "precision",
        ]
    )
    assert det.set_params(batch_size=7, search="grid") is det and (det.batch_size, det.search) == (7, "grid")
    with pytest.raises(ValueError, match="invalid parameter 'score' for Detector"):
        det.set_params(score="odin")


def test_fitted_attributes_exist_only_after_fit(lenet, pixels):
    det = Detector(lenet, **GRID)
    assert [a for a in FITTED if hasattr(det, a)] == []
    with pytest.raises(NotFittedError):
        det.score_samples(pixels[0][:2])
    det.fit(*pixels)
    assert [a for a in FITTED if not hasattr(det, a)] == []
    assert det.std_ == lenet.preprocessing.std == (0.3081,) and det.mean_ == (0.1307,)
    assert det.preprocessing_ == lenet.preprocessing


def test_clone_gives_an_unfitted_copy_that_refits_to_the_same_detector(lenet, pixels):
    det = Detector(lenet, search="grid", **GRID).fit(*pixels)
    twin = clone(det)
    assert type(twin) is Detector and not hasattr(twin, "threshold_")
    assert twin.get_params()["temperatures"] == GRID["temperatures"] and twin.model is not lenet  # a deep copy
    twin.fit(*pixels)
    assert (twin.temperature_, twin.epsilon_, twin.threshold_) == (det.temperature_, det.epsilon_, det.threshold_)
    assert twin.model_fingerprint_ == det.model_fingerprint_


@pytest.mark.parametrize(
    "argument, value, message",
    [
        ("model", "mnist-lenet", "model must be a torch.nn.Module"),
        ("input_std", [0.0], "input_std must be finite and > 0"),
        ("input_mean", [0.1, 0.2], "input_mean has 2 values; the model takes 1 channels"),
        ("temperatures", (), "temperatures must hold at least one value"),
        ("epsilons", (0.0, -1.0), "epsilons must be a finite number in"),
        ("objective", "accuracy", "objective must be one of"),
        ("batch_size", 0, "batch_size must lie in"),
        ("clamp", (1.0, 0.0), "clamp low .* exceeds high"),
        ("input_shape", (1, 0, 28), "input_shape sizes must be integers"),
        ("score_family", "mahalanobis", "score must be one of"),
        ("ood_free", "oracle", "ood_free must be one of"),
        ("preprocessing", {"input_shape": [1, 28, 28]}, "preprocessing must be an odin_ood.preprocess.Preprocessing"),
        ("optimize", "yes", "optimize must be True or False"),
        ("normalise", "pixels", "normalise must be 'auto', True or False"),
        ("search", "halving", r"search must be one of \('shared', 'grid'\)"),
    ],
)
def test_every_argument_is_stored_unchanged_and_checked_in_fit_naming_it(lenet, argument, value, message):
    det = Detector(**{"model": lenet, argument: value})
    assert getattr(det, argument) is value
    with pytest.raises((ValueError, TypeError), match=message):
        det.fit(torch.rand(8, 1, 28, 28))
    assert not hasattr(det, "threshold_")


def test_a_preprocessing_that_the_statistics_contradict_is_refused_in_fit(lenet):
    det = Detector(lenet, input_std=(0.5,), preprocessing=Preprocessing((1, 28, 28), std=(0.3081,)))
    with pytest.raises(ValueError, match=r"input_std \(0.5,\) disagrees with the preprocessing's std"):
        det.fit(torch.rand(8, 1, 28, 28))


def test_score_is_the_deprecated_name_of_score_family(lenet):
    with pytest.warns(DeprecationWarning, match="use score_family"):
        det = Detector(lenet, score="msp")
    assert det.score_family == "msp" and "score" not in det.get_params()
    with pytest.warns(DeprecationWarning, match="use score_family"):
        assert det.score_name == "msp"
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        Detector(lenet, scores="msp")


def test_score_samples_decision_function_and_predict_agree_with_odin_scores(lenet, pixels):
    det = Detector(lenet, **GRID).fit(*pixels)
    x = torch.cat([pixels[0][:32], pixels[1][:32]])
    want = odin_scores(lenet, x, det.temperature_, det.epsilon_)  # the pure function, independently
    s, d, g = det.score_samples(x), det.decision_function(x), det.predict(x)
    assert torch.equal(s, want) and torch.equal(det.score(x), s)
    assert torch.equal(d, s - det.threshold_)
    assert torch.equal(g, (d <= 0).long()) and 0 < int(g.sum()) < len(x)
