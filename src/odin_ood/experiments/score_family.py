"""ODIN beside its successors in the main table (beyond the paper), on the same splits and metrics.

* ``energy``: Liu et al.'s energy score T * logsumexp(f(x)/T) at T = 1, from the cached logits;
* ``maxlogit``: max_i f_i(x), from the cached logits;
* ``energy-odin``: the energy score at T = 1 after ODIN's input perturbation
  (:func:`odin_ood.successors.energy_odin_scores`), epsilon chosen as tuned ODIN's is: the value
  of the suite's epsilon grid minimising FPR at 95% TPR on the set's tuning split (section 4.4).
  Its scores need their own passes (one forward with an input-only backward, then one forward per
  epsilon > 0) and are cached per dataset like ODIN's grid.

All metrics are measured on the evaluation splits only.
"""

from __future__ import annotations

import numpy as np
import torch

from odin_ood.batching import map_batches
from odin_ood.data import ImageDataset
from odin_ood.experiments.protocol import CHUNK, Experiment, Scored, Scorer, select_cell
from odin_ood.successors import energy_from_logits, energy_odin_grid_scores, maxlogit_from_logits

METHODS = ("energy", "maxlogit", "energy-odin")
METHOD_LABELS = {"energy": "Energy (Liu et al. 2020, T=1)", "maxlogit": "MaxLogit (Hendrycks et al. 2022)",
                 "energy-odin": "Energy + ODIN perturbation (T=1, eps tuned)"}
TEMPERATURE = 1.0


def energy_odin_grid(scorer: Scorer, ds: ImageDataset) -> np.ndarray:
    """Energy scores at T = 1 after ODIN's perturbation, for every epsilon of the scorer's grid
    and every image of ``ds``: (len(epsilons), N) float32, cached."""
    key = scorer._key(ds, "energy-odin-grid", temperature=TEMPERATURE, epsilons=scorer.epsilons)

    def compute() -> dict[str, np.ndarray]:
        def batch(x: torch.Tensor) -> torch.Tensor:
            return energy_odin_grid_scores(scorer.model, x, TEMPERATURE, scorer.epsilons, scorer.model.input_std)[1]

        parts = [map_batches(batch, scorer.inputs(ds.images[s:s + CHUNK]), scorer.batch_size).numpy()
                 for s in scorer._chunks(ds, "energy-odin")]
        return {"scores": np.concatenate(parts, axis=-1).astype(np.float32)}

    return scorer.cache.get(key, compute)["scores"]


def _from_logits(scored: Scored, method: str) -> np.ndarray:
    logits = torch.from_numpy(scored.logits)
    s = energy_from_logits(logits, TEMPERATURE) if method == "energy" else maxlogit_from_logits(logits)
    return s.numpy()


def method_scores(exp: Experiment, ood: Scored, method: str) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(ID eval scores, OOD eval scores, T, epsilon) of one of :data:`METHODS`."""
    ids = exp.id_set
    if method in ("energy", "maxlogit"):
        return _from_logits(ids, method)[ids.split.eval], _from_logits(ood, method)[ood.split.eval], TEMPERATURE, 0.0
    if method != "energy-odin":
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    g_in, g_out = energy_odin_grid(exp.scorer, ids.data), energy_odin_grid(exp.scorer, ood.data)
    _, j = select_cell(g_in[None][..., ids.split.tune], g_out[None][..., ood.split.tune])
    return g_in[j, ids.split.eval], g_out[j, ood.split.eval], TEMPERATURE, exp.scorer.epsilons[j]
