"""The scores, as pure functions of (model, batch, parameters): higher = more in-distribution.

* :mod:`~odin_ood.scores.odin`: MSP and ODIN (the paper's eq. 1-2), and ODIN over a grid of
  (T, epsilon) sharing work across it. Start here.
* :mod:`~odin_ood.scores.energy`: ODIN's successors: energy, MaxLogit, energy with ODIN's
  input perturbation.
* :mod:`~odin_ood.scores.family`: the table of score families a detector uses by name, and the
  parameters each takes.
* :mod:`~odin_ood.scores.passes`: the passes they share (eval mode without weight gradients,
  eq. 2's sign step, ODIN's loop of forwards and input-only backwards).
* :mod:`~odin_ood.scores.memory`: how many images a batch of those passes holds in a byte budget.

Imports point down only: to :mod:`odin_ood.preprocess` (how ``normalise`` reads ``x``) and
:mod:`odin_ood._utils`; nothing here knows about files, the command line or the report.
"""

from odin_ood.scores.energy import (
    energy_direction,
    energy_from_logits,
    energy_odin_grid_scores,
    energy_odin_outputs,
    energy_odin_scores,
    energy_scores,
    maxlogit_from_logits,
    maxlogit_scores,
)
from odin_ood.scores.family import SCORES, check_parameters, check_score, check_threshold, score_outputs, score_passes
from odin_ood.scores.odin import (
    msp_scores,
    odin_grid_outputs,
    odin_grid_scores,
    odin_outputs,
    odin_scores,
    odin_shared_direction_scores,
    perturbation_direction,
    softmax_score,
)
from odin_ood.scores.passes import (
    Clamp,
    at_least_fp32,
    model_device,
    perturb,
    perturbed_logits,
    prepare,
    scoring_mode,
    sign_direction,
)

__all__ = [
    "SCORES",
    "Clamp",
    "at_least_fp32",
    "check_parameters",
    "check_score",
    "check_threshold",
    "energy_direction",
    "energy_from_logits",
    "energy_odin_grid_scores",
    "energy_odin_outputs",
    "energy_odin_scores",
    "energy_scores",
    "maxlogit_from_logits",
    "maxlogit_scores",
    "model_device",
    "msp_scores",
    "odin_grid_outputs",
    "odin_grid_scores",
    "odin_outputs",
    "odin_scores",
    "odin_shared_direction_scores",
    "perturb",
    "perturbation_direction",
    "perturbed_logits",
    "prepare",
    "score_outputs",
    "score_passes",
    "scoring_mode",
    "sign_direction",
    "softmax_score",
]
