"""ODIN beside its successors in the main table (beyond the paper), on the same splits and metrics.

* ``energy``: Liu et al.'s energy score T * logsumexp(f(x)/T) at T = 1, from the cached logits;
* ``maxlogit``: max_i f_i(x), from the cached logits;
* ``energy-odin``: the energy score at T = 1 after ODIN's input perturbation
  (:func:`odin_ood.scores.energy.energy_odin_scores`), epsilon chosen as tuned ODIN's is: the value
  of the suite's epsilon grid minimising FPR at 95% TPR on the set's tuning split (section 4.4).
  Its scores need their own passes (one forward with an input-only backward, then one forward per
  epsilon > 0), cached: the epsilon grid on every image when the suite scores the full grid
  (``Experiment.full_grid``), else on the tuning splits only, then one resumable pass over every
  image at the chosen epsilon (the CPU path, :func:`prepare`).

All metrics are measured on the evaluation splits only.
"""

from __future__ import annotations

import numpy as np
import torch

from odin_ood._utils.batching import map_batches
from odin_ood.data import ImageDataset
from odin_ood.experiments.progress import Progress
from odin_ood.experiments.protocol import Experiment, Scored, select_cell
from odin_ood.experiments.scorer import CHUNK, Scorer
from odin_ood.scores.energy import energy_from_logits, energy_odin_grid_scores, maxlogit_from_logits
from odin_ood.tuning.searches import grid_passes

METHODS = ("energy", "maxlogit", "energy-odin")
METHOD_LABELS = {
    "energy": "Energy (Liu et al. 2020, T=1)",
    "maxlogit": "MaxLogit (Hendrycks et al. 2022)",
    "energy-odin": "Energy + ODIN perturbation (T=1, eps tuned)",
}
TEMPERATURE = 1.0


def energy_odin_grid(scorer: Scorer, ds: ImageDataset) -> np.ndarray:
    """Energy scores at T = 1 after ODIN's perturbation, for every epsilon of the scorer's grid
    and every image of ``ds``: (len(epsilons), N) float32, cached."""
    key = scorer._key(
        ds,
        "energy-odin-grid",
        temperature=TEMPERATURE,
        epsilons=scorer.epsilons,
        **({} if scorer.precision == "fp32" else {"precision": scorer.precision}),
    )

    def compute() -> dict[str, np.ndarray]:
        def batch(x: torch.Tensor) -> torch.Tensor:
            with scorer.autocast():
                return energy_odin_grid_scores(scorer.model, x, TEMPERATURE, scorer.epsilons, scorer.input_std)[
                    1
                ].float()

        parts = [
            map_batches(batch, scorer.inputs(ds.images[s : s + CHUNK]), scorer.batch_size).numpy()
            for s in scorer._chunks(ds, "energy-odin", grid_passes(1, scorer.epsilons))
        ]
        return {"scores": np.concatenate(parts, axis=-1).astype(np.float32)}

    return scorer.cache.get(key, compute)["scores"]


def _from_logits(scored: Scored, method: str) -> np.ndarray:
    logits = torch.from_numpy(scored.full_logits())
    s = energy_from_logits(logits, TEMPERATURE) if method == "energy" else maxlogit_from_logits(logits)
    return s.numpy()


def _tuning_grid(exp: Experiment, scored: Scored) -> np.ndarray:
    """The epsilon grid on the tuning split of ``scored``: (E, n_tune)."""
    if exp.full_grid:
        return energy_odin_grid(exp.scorer, scored.data)[:, scored.split.tune]
    return energy_odin_grid(exp.scorer, scored.data.subset(torch.from_numpy(scored.split.tune)))


def tuned_epsilon(exp: Experiment, ood: Scored) -> float:
    """Energy + perturbation's epsilon for ``ood``: the grid value minimising FPR at 95% TPR on
    the tuning splits (ties: the smallest)."""
    _, j = select_cell(_tuning_grid(exp, exp.id_set)[None], _tuning_grid(exp, ood)[None])
    return exp.scorer.epsilons[j]


def prepare(exp: Experiment, progress: bool = True) -> None:
    """The CPU path's energy + perturbation passes, with progress: tune epsilon per set, then
    score every image at it (resumable per chunk). Nothing to do when the full grid is scored."""
    if exp.full_grid:
        return
    chosen = {o.key: tuned_epsilon(exp, o) for o in exp.oods}
    jobs = [(exp.id_set, e) for e in sorted(set(chosen.values()))] + [(o, chosen[o.key]) for o in exp.oods]
    bar = Progress("energy + perturbation, every image", sum(len(s.data) for s, _ in jobs), enabled=progress)
    for s, e in jobs:
        exp.scorer.cell_outputs(s.data, TEMPERATURE, e, progress=bar, score="energy-odin")


def method_scores(exp: Experiment, ood: Scored, method: str) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(ID eval scores, OOD eval scores, T, epsilon) of one of :data:`METHODS`."""
    ids = exp.id_set
    if method in ("energy", "maxlogit"):
        return _from_logits(ids, method)[ids.split.eval], _from_logits(ood, method)[ood.split.eval], TEMPERATURE, 0.0
    if method != "energy-odin":
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    e = tuned_epsilon(exp, ood)
    if exp.full_grid:
        j = exp.scorer.epsilons.index(e)
        return (
            energy_odin_grid(exp.scorer, ids.data)[j, ids.split.eval],
            energy_odin_grid(exp.scorer, ood.data)[j, ood.split.eval],
            TEMPERATURE,
            e,
        )
    return (
        exp.scores_at(ids, TEMPERATURE, e, ids.split.eval, score="energy-odin"),
        exp.scores_at(ood, TEMPERATURE, e, ood.split.eval, score="energy-odin"),
        TEMPERATURE,
        e,
    )
