"""The table of score families: the score a :class:`odin_ood.Detector` uses, by name, and how each
one is tuned (:func:`odin_ood.tuning.family.tune_score`).

=============  ==========================================  ======================================
score          value (higher = more in-distribution)       parameters chosen by ``tune_score``
=============  ==========================================  ======================================
``odin``       max softmax(f(x~)/T), paper eq. 1-2         T and epsilon on the grid (section 4.4)
``energy-odin`` T logsumexp(f(x~)/T), x~ raising E          epsilon on the grid, T = 1
``energy``     T logsumexp(f(x)/T) (Liu et al., 2020)      none (T = 1, as Liu et al.)
``maxlogit``   max_i f_i(x) (Hendrycks et al., 2022)       none
``msp``        max softmax(f(x)) (Hendrycks & Gimpel)      none
=============  ==========================================  ======================================

Every score is tuned the same way: grid scores (T, E, N) of the held-out ID and OOD data, the
cell minimising the objective wins (:func:`odin_ood.tuning.tune_from_scores`); without OOD data,
by default (``ood_free="noise"``), the OOD side is the paper's Gaussian + Uniform noise; with
``ood_free="id-only"`` the epsilon maximising the mean score of the ID data wins at a fixed T
(:func:`odin_ood.tuning.id_only_from_scores`): T = 1000 for ODIN, T = 1 for energy-odin. A
parameter-free score has a 1 x 1 grid, so only the threshold depends on the data.

Each family takes only its own parameters (:func:`check_parameters`, applied when scoring and to
every detector file at load): ODIN's T >= 1 (temperature scaling softens the softmax; below 1 it
sharpens it until every input scores 1.0 in float32); T = 1 for every other score; epsilon = 0
for the parameter-free ``energy``, ``maxlogit`` and ``msp``. A softmax score (``odin``, ``msp``)
is never below 1/K for K classes, so its threshold must lie in [1/K, 1]: below 1/K the gate keeps
every input. Energy and MaxLogit are logits, unbounded: only a finite threshold is checkable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from odin_ood._utils.checks import check_epsilon, check_number, check_temperature, short
from odin_ood.scores.energy import energy_odin_grid_scores, maxlogit_from_logits
from odin_ood.scores.odin import odin_outputs, softmax_score
from odin_ood.scores.passes import Clamp

SCORES: tuple[str, ...] = ("odin", "energy-odin", "energy", "maxlogit", "msp")
FIXED_TEMPERATURE = 1.0  # every score but ODIN runs at T = 1 (Liu et al.'s energy setting)
ODIN_MIN_TEMPERATURE = 1.0  # the paper's grid is 1 ... 1000: temperature scaling softens, never sharpens
PERTURBED = ("odin", "energy-odin")  # the scores with an input perturbation (epsilon)
SOFTMAX = ("odin", "msp")  # scores in [1/K, 1]
LOGIT_BOUND = 1e30  # energy and MaxLogit thresholds: any finite value of a sane size


def check_score(score: str) -> str:
    if not isinstance(score, str) or score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {short(score)}")
    return score


def check_parameters(score: str, temperature: float, epsilon: float) -> tuple[float, float]:
    """(T, epsilon), checked for the named score: ODIN's T in [1, 1e6], every other score's T = 1;
    epsilon in [0, 1] for ODIN and energy-odin, 0 for the parameter-free scores."""
    t = check_temperature(temperature)
    e = check_epsilon(epsilon)
    if score == "odin" and t < ODIN_MIN_TEMPERATURE:
        raise ValueError(
            f"ODIN's temperature must be >= {ODIN_MIN_TEMPERATURE:g} (temperature scaling softens the "
            f"softmax; T = {t!r} sharpens it until every input scores 1.0 and passes the gate)"
        )
    if score != "odin" and t != FIXED_TEMPERATURE:
        raise ValueError(f"score {score!r} runs at T = 1, got temperature {t!r}")
    if score not in PERTURBED and e != 0.0:
        raise ValueError(f"score {score!r} has no input perturbation: epsilon must be 0, got {e!r}")
    return t, e


SOFTMAX_ROUNDING = 1e-6
"""Relative slack below 1/K that :func:`check_threshold` allows for a softmax threshold: float32
rounding of a softmax near 1/K (about 1.2e-7 relative per step) and the one float32 step below
a score where ``fit`` puts the threshold; far below what would make a gate keep anything more."""


def check_threshold(score: str, threshold: float, num_classes: int | None = None) -> float:
    """delta for the named score: in [1/K, 1] for a softmax score (K classes; [0, 1] when K is
    unknown), since no input scores below 1/K and a lower delta keeps every input; finite for the
    logit scores (energy, MaxLogit), whose range depends on the model. The lower end allows
    float32 rounding (:data:`SOFTMAX_ROUNDING`): a uniform softmax scores float32(1/K), and ``fit``
    puts delta one float32 step below the lowest kept score, so a fitted delta can sit just
    under 1/K (0.00099999993 for K = 1000) and must load."""
    if score not in SOFTMAX:
        return check_number(threshold, "threshold", -LOGIT_BOUND, LOGIT_BOUND)
    low = 1.0 / num_classes if num_classes else 0.0
    d = check_number(threshold, "threshold", -math.inf, 1.0)
    if d < low * (1.0 - SOFTMAX_ROUNDING):
        raise ValueError(
            f"threshold {d!r} is below 1/K = {low:g} for the model's {num_classes} classes: no input "
            f"scores below 1/K with score {score!r}, so this gate would keep every input"
        )
    return d


def score_outputs(
    model: nn.Module,
    x: Tensor,
    score: str,
    temperature: float,
    epsilon: float,
    input_std: Sequence[float] | Tensor | None = None,
    clamp: Clamp | None = None,
) -> tuple[Tensor, Tensor]:
    """(logits f(x) of the unperturbed input, the named score at (T, epsilon)) for one batch.

    ``msp``, ``energy`` and ``maxlogit`` take no perturbation: they need ``epsilon == 0``; every
    score but ODIN runs at T = 1 (:func:`check_parameters`).
    """
    check_parameters(check_score(score), temperature, epsilon)
    if score == "odin":
        return odin_outputs(model, x, temperature, epsilon, input_std, clamp)
    logits, energies = energy_odin_grid_scores(model, x, temperature, [epsilon], input_std, clamp)
    if score in ("energy-odin", "energy"):
        return logits, energies[0]
    return logits, softmax_score(logits, 1.0) if score == "msp" else maxlogit_from_logits(logits)


def score_passes(score: str, epsilon: float) -> int:
    """Passes per image of one score at one epsilon: 3 with a perturbation (forward with an input
    graph, input-only backward, forward of x~), else 1."""
    return 3 if check_score(score) in PERTURBED and epsilon > 0 else 1
