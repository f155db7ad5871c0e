"""One suite of checks run on every score family (odin_ood.scores.family.SCORES), as scikit-learn's
``parametrize_with_checks`` runs its estimator checks on every estimator: a family added to
``SCORES`` is checked here without a new test, and one without a float64 reference fails.

Each check takes the family's name and a :class:`Context` (the small conv net trained on
scikit-learn's digits, held-out digits, the paper's noise as the OOD side, a folder to write to)
and asserts what every family promises: its score against an independent float64 computation
(tests/reference_support.py), higher = more in-distribution, decision_function > 0 exactly when
predict says 0, bitwise the same scores after save and load, only the parameters the family tunes
chosen by fit, the fitted threshold keeping the TPR, the same score whatever the batch, the model
left as it was, and a NaN score failing closed."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from odin_ood import Detector
from odin_ood.data.noise import gaussian_noise, uniform_noise
from odin_ood.metrics import auroc
from odin_ood.scores.family import PERTURBED, SCORES, SOFTMAX, score_outputs
from reference_support import reference_scores_float64

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TEMPERATURES = (1.0, 1000.0)
EPSILONS = (0.0, 0.002, 0.004)
# (T, epsilon) at which each family scores in the checks that do not fit: ODIN at the paper's
# CIFAR setting, energy-odin at Liu et al.'s T = 1 with a step, the parameter-free ones at (1, 0)
PARAMETERS = {
    "odin": (1000.0, 0.0014),
    "energy-odin": (1.0, 0.0014),
    "energy": (1.0, 0.0),
    "maxlogit": (1.0, 0.0),
    "msp": (1.0, 0.0),
}


@dataclasses.dataclass
class Context:
    model: nn.Module
    fit_id: torch.Tensor
    unseen: torch.Tensor
    noise: torch.Tensor
    folder: Path
    fitted: dict[str, Detector] = dataclasses.field(default_factory=dict)

    def detector(self, family: str) -> Detector:
        """The family's detector fitted on the digits against the noise (once per module)."""
        if family not in self.fitted:
            self.fitted[family] = Detector(
                self.model, score_family=family, temperatures=TEMPERATURES, epsilons=EPSILONS
            ).fit(self.fit_id, self.noise)
        return self.fitted[family]


@pytest.fixture(scope="module")
def context(digits_model, digits, tmp_path_factory) -> Context:
    x = digits["x_held"]
    noise = torch.cat([gaussian_noise(200, (1, 8, 8), seed=5), uniform_noise(200, (1, 8, 8), seed=6)])
    return Context(digits_model, x[:448], x[448:], noise, tmp_path_factory.mktemp("families"))


def check_score_equals_the_float64_reference(family: str, ctx: Context) -> None:
    det = ctx.detector(family)
    x = ctx.unseen[:40]
    want = reference_scores_float64(family, ctx.model, x, det.temperature_, det.epsilon_)
    atol = 1e-5 if family in SOFTMAX else 1e-4  # probabilities vs logits, computed in float32
    assert torch.allclose(det.score_samples(x).double(), want, atol=atol, rtol=1e-6)


def check_higher_score_is_more_in_distribution(family: str, ctx: Context) -> None:
    # hand-worked: a linear "classifier" whose logits are (4, 0, 0) for a = (1, 0), a confident
    # input, and (0, 0, 0) for b = (0, 0), a uniform one; every family must score a above b
    model = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[4.0, 0.0], [0.0, 0.0], [0.0, 0.0]]))
    a, b = score_outputs(model, torch.tensor([[1.0, 0.0], [0.0, 0.0]]), family, *PARAMETERS[family])[1]
    assert a > b
    # and on real data: held-out digits above the noise the detector never saw
    det = ctx.detector(family)
    fresh = uniform_noise(200, (1, 8, 8), seed=99)
    assert auroc(det.score_samples(ctx.unseen).numpy(), det.score_samples(fresh).numpy()) > 0.9


def check_decision_function_is_positive_exactly_when_predict_says_in_distribution(family: str, ctx: Context) -> None:
    det = copy.deepcopy(ctx.detector(family))
    x = torch.cat([ctx.unseen[:100], ctx.noise[:100]])
    scores = det.score_samples(x)
    det.threshold_ = float(scores.median())  # a threshold some images score exactly: the tie is OOD
    decision, predicted = det.decision_function(x), det.predict(x)
    assert torch.equal(decision, scores - det.threshold_)
    assert (decision == 0).any()
    assert torch.equal(decision > 0, predicted == 0) and set(predicted.tolist()) == {0, 1}


def check_save_and_load_give_bitwise_the_same_scores(family: str, ctx: Context) -> None:
    det = ctx.detector(family)
    path = det.save(ctx.folder / family)
    assert json.loads(path.read_text())["score"] == family
    loaded = Detector.load(path, ctx.model)
    assert (loaded.score_family, loaded.temperature_, loaded.epsilon_, loaded.threshold_) == (
        family,
        det.temperature_,
        det.epsilon_,
        det.threshold_,
    )
    x = torch.cat([ctx.unseen, ctx.noise])
    assert torch.equal(loaded.score_samples(x), det.score_samples(x))
    assert torch.equal(loaded.predict(x), det.predict(x))


def check_fit_chooses_only_the_parameters_the_family_tunes(family: str, ctx: Context) -> None:
    det = ctx.detector(family)
    tuned_t = family == "odin"
    tuned_e = family in PERTURBED
    assert det.temperature_ in TEMPERATURES if tuned_t else det.temperature_ == 1.0
    assert det.epsilon_ in EPSILONS if tuned_e else det.epsilon_ == 0.0
    assert det.tuning_.scores_in.shape[:2] == (len(TEMPERATURES) if tuned_t else 1, len(EPSILONS) if tuned_e else 1)
    # and a file stating a parameter the family fixes (or ODIN's T below 1) is refused at load
    foreign = [("temperature", 0.5 if tuned_t else 1000.0), *([] if tuned_e else [("epsilon", 0.002)])]
    for field, value in foreign:
        with pytest.raises(ValueError, match=field):
            Detector.from_dict({**det.to_dict(), field: value}, ctx.model)


def check_threshold_keeps_the_tpr_of_the_fitting_id_data(family: str, ctx: Context) -> None:
    det = ctx.detector(family)
    kept = (det.score_samples(ctx.fit_id) > det.threshold_).double().mean().item()
    assert kept >= det.tpr_ == 0.95
    assert kept <= 0.97  # the threshold sits at the 95% point, not anywhere below it


def check_batch_size_does_not_change_a_score(family: str, ctx: Context) -> None:
    x = ctx.unseen[:64]
    whole = score_outputs(ctx.model, x, family, *PARAMETERS[family])[1]
    for batch in (1, 7):
        parts = torch.cat([score_outputs(ctx.model, c, family, *PARAMETERS[family])[1] for c in x.split(batch)])
        assert torch.allclose(whole, parts, atol=1e-5, rtol=1e-6)


def check_scoring_leaves_the_model_as_it_was(family: str, ctx: Context) -> None:
    model = copy.deepcopy(ctx.model).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = ctx.unseen[:16]
    in_training_mode = score_outputs(model, x, family, *PARAMETERS[family])[1]
    assert model.training and all(p.grad is None and p.requires_grad for p in model.parameters())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # BatchNorm statistics untouched
    assert torch.equal(in_training_mode, score_outputs(ctx.model, x, family, *PARAMETERS[family])[1])  # eval mode


class NanOnMarked(nn.Module):
    """The digits model, with NaN logits for the images whose first pixel is marked -1."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        marked = x[:, 0, 0, 0] < -0.5  # far below what a perturbation step moves a pixel by
        return self.model(x) + torch.where(marked, math.nan, 0.0)[:, None]


def check_a_nan_score_fails_closed(family: str, ctx: Context) -> None:
    det = Detector(NanOnMarked(ctx.model), score_family=family, temperatures=TEMPERATURES, epsilons=EPSILONS).fit(
        ctx.fit_id, ctx.noise
    )
    x = ctx.unseen[:20].clone()
    x[::2, 0, 0, 0] = -1.0
    with pytest.warns(RuntimeWarning, match="not finite"):
        predicted = det.predict(x)
    with pytest.warns(RuntimeWarning, match="not finite"):
        decision = det.decision_function(x)
    assert torch.equal(predicted[::2], torch.ones(10, dtype=torch.long))  # every NaN image is out-of-distribution
    assert torch.isnan(decision[::2]).all() and not (decision[::2] > 0).any()
    # the other images are scored as the model without the NaN scores them
    want = score_outputs(ctx.model, x[1::2], family, det.temperature_, det.epsilon_)[1]
    assert torch.allclose(decision[1::2] + det.threshold_, want, atol=1e-6)
    assert torch.equal(decision[1::2] > 0, predicted[1::2] == 0)


CHECKS: tuple[Callable[[str, Context], None], ...] = (
    check_score_equals_the_float64_reference,
    check_higher_score_is_more_in_distribution,
    check_decision_function_is_positive_exactly_when_predict_says_in_distribution,
    check_save_and_load_give_bitwise_the_same_scores,
    check_fit_chooses_only_the_parameters_the_family_tunes,
    check_threshold_keeps_the_tpr_of_the_fitting_id_data,
    check_batch_size_does_not_change_a_score,
    check_scoring_leaves_the_model_as_it_was,
    check_a_nan_score_fails_closed,
)


def parametrize_with_checks(families: tuple[str, ...]) -> pytest.MarkDecorator:
    """Every (family, check) pair, named ``family-check`` (scikit-learn's parametrize_with_checks)."""
    return pytest.mark.parametrize(
        "family,check", [pytest.param(f, c, id=f"{f}-{c.__name__}") for f in families for c in CHECKS]
    )


@parametrize_with_checks(SCORES)
def test_score_family(family, check, context):
    check(family, context)


def test_every_family_is_in_the_suite_and_has_parameters():
    assert set(PARAMETERS) == set(SCORES) and len(SCORES) == 5
