import copy
import json
import math

import numpy as np
import pytest
import torch

from id_only_support import WIDE_EPSILONS, float64_id_only_choice, lenet_and_digits
from odin_ood import Detector, fingerprint, odin_scores
from odin_ood.data.noise import gaussian_noise, uniform_noise
from odin_ood.detector import NotFittedError, threshold_below

pytestmark = pytest.mark.usefixtures("torch_one_thread")

GRID = dict(temperatures=(1.0, 10.0, 1000.0), epsilons=(0.0, 0.001, 0.002))


@pytest.fixture(scope="module")
def fitted(digits_model, digits):
    """Fitted on the first half of the held-out digits against default noise."""
    return Detector(digits_model, **GRID).fit(digits["x_held"][:448])


def test_fit_reaches_the_target_tpr_on_unseen_id_data(digits_model, digits):
    # Fit on one half of the held-out digits, measure on the other half; average over 4 random
    # splits so the check is about the threshold rule, not one split's sampling noise.
    x = digits["x_held"]
    tprs = []
    for seed in range(4):
        perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(x)))
        fit, unseen = x[perm[:448]], x[perm[448:]]
        det = Detector(digits_model, **GRID).fit(fit, tpr=0.95)
        assert (det.score(fit) > det.threshold_).float().mean().item() >= 0.95  # exact on the fit data
        tprs.append(1.0 - det.predict(unseen).float().mean().item())
    assert abs(np.mean(tprs) - 0.95) <= 0.02


def test_fitted_detector_catches_the_papers_noise(fitted, digits):
    # The tiny 8x8 digits net is fooled by clipped Gaussian blobs more than an MNIST net is (see
    # the MNIST MLP tests for the paper's setting); it must still flag fresh noise far more
    # often than unseen ID digits, and most uniform noise.
    id_rejected = fitted.predict(digits["x_held"][448:]).float().mean().item()
    gaussian = fitted.predict(gaussian_noise(500, (1, 8, 8), seed=11)).float().mean().item()
    uniform = fitted.predict(uniform_noise(500, (1, 8, 8), seed=12)).float().mean().item()
    assert id_rejected <= 0.1
    assert uniform >= 0.75 and gaussian >= 5 * id_rejected
    assert fitted.temperature_ in GRID["temperatures"] and fitted.epsilon_ in GRID["epsilons"]


def test_threshold_keeps_exactly_the_images_the_metrics_keep():
    s = np.array([0.1, 0.2, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9], dtype=np.float32)
    delta = threshold_below(s, 0.8)  # keep 8 of 10: scores >= 0.2
    assert (s > delta).sum() == 9  # the tie at 0.2 is kept whole: TPR 0.9 >= 0.8
    assert np.float32(delta) < np.float32(0.2) and (s <= delta).sum() == 1


def test_outputs_report_class_confidence_score_and_decision(fitted, digits):
    x = digits["x_held"][448:480]
    out = fitted.outputs(x)
    with torch.no_grad():
        probs = torch.softmax(fitted.model(x), 1)
    assert torch.equal(out["predicted_class"], probs.argmax(1))
    assert torch.allclose(out["confidence"], probs.max(1).values, atol=1e-6)
    assert torch.equal(out["is_out_of_distribution"], out["score"] <= fitted.threshold_)
    assert torch.equal(fitted.predict(x), out["is_out_of_distribution"].long())


def test_save_load_round_trip_gives_identical_predictions(fitted, digits, tmp_path):
    path = fitted.save(tmp_path / "det")
    assert path.name == "detector.json"
    d = json.loads(path.read_text())
    for key in ("temperature", "epsilon", "threshold", "tpr", "input_std", "odin_ood_version", "model_fingerprint"):
        assert key in d
    loaded = Detector.load(tmp_path / "det", fitted.model)
    x = torch.cat([gaussian_noise(64, (1, 8, 8), seed=2), uniform_noise(64, (1, 8, 8), seed=3)])
    assert torch.equal(loaded.score(x), fitted.score(x))
    assert torch.equal(loaded.predict(x), fitted.predict(x))
    assert loaded.threshold_ == fitted.threshold_


def test_load_refuses_other_weights(fitted, tmp_path):
    fitted.save(tmp_path / "d.json")
    other = copy.deepcopy(fitted.model)
    with torch.no_grad():
        next(other.parameters())[0].add_(1e-3)
    assert fingerprint(other) != fingerprint(fitted.model)
    with pytest.raises(ValueError, match="fitted for a model with weights"):
        Detector.load(tmp_path / "d.json", other)


@pytest.mark.parametrize(
    "content,match",
    [
        ("not json {", "not a readable"),
        (json.dumps({"hello": 1}), "not an odin-ood detector"),
        (json.dumps({"format": "odin-ood-detector", "format_version": 99}), "format_version"),
    ],
)
def test_load_rejects_corrupt_and_foreign_files(fitted, tmp_path, content, match):
    p = tmp_path / "x.json"
    p.write_text(content)
    with pytest.raises(ValueError, match=match):
        Detector.load(p, fitted.model)


def test_load_rejects_tampered_fields(fitted, tmp_path):
    p = fitted.save(tmp_path / "t.json")
    for key, value in [("temperature", -1.0), ("tpr", 1.5), ("threshold", "high"), ("epsilon", None)]:
        d = json.loads(p.read_text())
        d[key] = value
        bad = tmp_path / f"bad_{key}.json"
        bad.write_text(json.dumps(d))
        with pytest.raises(ValueError, match="corrupt"):
            Detector.load(bad, fitted.model)
    with pytest.raises(FileNotFoundError):
        Detector.load(tmp_path / "missing.json", fitted.model)


def test_unfitted_detector_and_bad_tpr(digits_model, digits):
    with pytest.raises(NotFittedError):
        Detector(digits_model).predict(digits["x_held"][:2])
    for tpr in (0.0, 1.0, 1.2):
        with pytest.raises(ValueError, match="tpr"):
            Detector(digits_model, **GRID).fit(digits["x_held"][:16], tpr=tpr)


def test_detector_takes_the_models_own_statistics_when_none_are_given(tmp_path):
    # a model that carries input_std / input_mean (as models.load sets them): epsilon must be divided
    # by the model's std without the user repeating it, and the file records what was used
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5)).eval()
    model.input_std, model.input_mean = (0.2, 0.5, 0.25), (0.4, 0.5, 0.6)
    x, x_out = torch.randn(40, 3, 4, 4), 3 * torch.rand(40, 3, 4, 4)
    # x is the model's input (not pixels): normalise=False says so
    implicit = Detector(model, temperatures=(1.0, 10.0), epsilons=(0.0, 0.01), normalise=False).fit(x, x_out)
    explicit = Detector(
        model,
        input_std=model.input_std,
        input_mean=model.input_mean,
        temperatures=(1.0, 10.0),
        epsilons=(0.0, 0.01),
        normalise=False,
    ).fit(x, x_out)
    assert (implicit.temperature_, implicit.epsilon_, implicit.threshold_) == (
        explicit.temperature_,
        explicit.epsilon_,
        explicit.threshold_,
    )
    want = odin_scores(model, x, 10.0, 0.01, input_std=model.input_std, normalise=False)
    implicit._set_fitted(10.0, 0.01, 0.5, 0.95)
    assert torch.equal(implicit.score(x), want)
    assert not torch.equal(want, odin_scores(model, x, 10.0, 0.01, normalise=False))  # the std matters here
    saved = json.loads(implicit.save(tmp_path / "d.json").read_text())
    assert saved["input_std"] == list(model.input_std) and saved["input_mean"] == list(model.input_mean)


def test_id_only_fit_takes_t_1000_the_float64_mean_score_epsilon_and_keeps_95_percent():
    model, x = lenet_and_digits()
    det = Detector(model, epsilons=WIDE_EPSILONS, ood_free="id-only", normalise=False).fit(x)
    epsilon, _ = float64_id_only_choice(model, x, WIDE_EPSILONS)
    assert (det.temperature_, det.epsilon_, det.ood_free) == (1000.0, epsilon, "id-only")
    scores = odin_scores(model, x, 1000.0, epsilon, input_std=model.input_std, normalise=False)
    kept = int((scores > det.threshold_).sum())
    assert kept == math.ceil(0.95 * len(x)) == 61  # no ties among these scores: exactly ceil(0.95 N)
    assert det.tuning_.objective == "mean_id_score" and det.tuning_.scores_out.shape[-1] == 0


def test_ood_free_is_checked_in_fit_and_ignored_with_ood_data(digits_model, digits):
    x_in, x_out = digits["x_held"][:64], digits["x_held"][64:128]
    wrong = Detector(digits_model, ood_free="ID-only")  # stored unchanged, as scikit-learn's estimators
    with pytest.raises(ValueError, match="ood_free must be one of"):
        wrong.fit(x_in, x_out)
    a = Detector(digits_model, **GRID, ood_free="id-only").fit(x_in, x_out)
    b = Detector(digits_model, **GRID).fit(x_in, x_out)
    assert (a.temperature_, a.epsilon_, a.threshold_) == (b.temperature_, b.epsilon_, b.threshold_)
    assert a.tuning_.objective == "fpr_at_95_tpr"
