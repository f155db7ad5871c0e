"""Tuning any score family of :mod:`odin_ood.scores.family` the same way (its table says which
parameters each family tunes): ODIN through :func:`odin_ood.tuning.grid.tune`; energy-odin's
epsilon row at T = 1; a parameter-free score on a 1 x 1 grid, so only the threshold depends on
the data. Without OOD data the same ``ood_free`` rules apply (noise, or the ID data alone).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from torch import Tensor, nn

from odin_ood._utils.batching import Data, map_batches
from odin_ood._utils.checks import check_epsilon, check_grid
from odin_ood.scores.energy import energy_odin_grid_scores
from odin_ood.scores.family import FIXED_TEMPERATURE, check_parameters, check_score, score_outputs
from odin_ood.scores.passes import Clamp
from odin_ood.tuning.grid import (
    DEFAULT_OOD_FREE,
    PAPER_EPSILONS,
    PAPER_TEMPERATURES,
    TuningResult,
    check_ood_free,
    id_only_from_scores,
    noise_ood_set,
    tune,
    tune_from_scores,
)
from odin_ood.tuning.searches import check_search, grid_passes


def _grid(
    model: nn.Module,
    score: str,
    epsilons: Sequence[float],
    input_std: Sequence[float] | Tensor | None,
    clamp: Clamp | None,
) -> Callable[[Tensor], Tensor]:
    """Batch -> (1, len(epsilons), N) scores of a non-ODIN score at T = 1."""

    def fn(x: Tensor) -> Tensor:
        if score == "energy-odin":
            return energy_odin_grid_scores(model, x, FIXED_TEMPERATURE, epsilons, input_std, clamp)[1][None]
        return score_outputs(model, x, score, FIXED_TEMPERATURE, 0.0)[1][None, None]

    return fn


def tune_score(
    model: nn.Module,
    id_data: Data,
    ood_data: Data | None = None,
    score: str = "odin",
    temperatures: Sequence[float] = PAPER_TEMPERATURES,
    epsilons: Sequence[float] = PAPER_EPSILONS,
    input_std: Sequence[float] | Tensor | None = None,
    objective: str = "fpr_at_95_tpr",
    *,
    input_mean: Sequence[float] | None = None,
    tpr: float = 0.95,
    batch_size: int = 128,
    clamp: Clamp | None = None,
    ood_free: str = DEFAULT_OOD_FREE,
    search: str = "grid",
) -> TuningResult:
    """Choose the named score's parameters on held-out data, like :func:`odin_ood.tuning.grid.tune`
    (which this is for ``score="odin"``). ``temperatures`` only matter for ODIN, ``epsilons``
    for ODIN and energy-odin; the result's grid is (1, 1) for a parameter-free score.
    ``ood_free`` ("noise" or "id-only") says what tunes when ``ood_data`` is None (module docstring).
    ``search`` ("grid" or "shared", :mod:`odin_ood.tuning.shared`) only changes ODIN's search: the
    other scores have at most one epsilon row, which is scored whole."""
    check_score(score)
    check_ood_free(ood_free)
    check_search(search)
    if score == "odin":
        check_grid(temperatures, lambda t, _: check_parameters("odin", t, 0.0)[0], "temperatures")
        return tune(
            model,
            id_data,
            ood_data,
            temperatures,
            epsilons,
            input_std,
            objective,
            input_mean=input_mean,
            tpr=tpr,
            batch_size=batch_size,
            clamp=clamp,
            ood_free=ood_free,
            search=search,
        )
    if ood_data is None and ood_free == "noise":
        ood_data = noise_ood_set(id_data, input_mean=input_mean, input_std=input_std)
    eps = check_grid(epsilons, check_epsilon, "epsilons") if score == "energy-odin" else (0.0,)
    fn = _grid(model, score, eps, input_std, clamp)
    s_in = map_batches(fn, id_data, batch_size, "id_data")
    if ood_data is None:  # ood_free == "id-only"
        result = id_only_from_scores(s_in.numpy(), FIXED_TEMPERATURE, eps)
    else:
        s_out = map_batches(fn, ood_data, batch_size, "ood_data")
        result = tune_from_scores(s_in.numpy(), s_out.numpy(), (FIXED_TEMPERATURE,), eps, objective, tpr)
    return replace(result, passes_per_image=grid_passes(1, eps))
