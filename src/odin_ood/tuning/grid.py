"""Choosing (T, epsilon) on held-out data (paper section 4.4).

For every cell of the grid T x epsilon, ODIN scores the held-out ID and OOD images and the
cell minimising the FPR at 95% TPR (or another metric of :mod:`odin_ood.metrics`) wins. The
paper's grid: T in {1, 2, 5, ..., 1000} and 21 evenly spaced epsilon in [0, 0.004].

Work is shared across the grid (:func:`odin_ood.scores.odin.odin_grid_scores`): per batch one
forward with an input graph, one input-only backward per T and one forward per cell with
epsilon > 0 (``cells_per_forward`` cells optionally stacked into one larger forward), instead
of three passes per cell; by default the scores equal per-cell scoring bit for bit
(tests/test_tuning_grid.py). When no OOD data is given, ``ood_free`` says what tunes: by default
(``"noise"``) the paper's Gaussian and Uniform noise images in the shape of the ID inputs, pooled
as one OOD set (Appendix H of the paper shows parameters tuned on one OOD set transfer); or
(``"id-only"``) the ID data alone, by the Generalized-ODIN criterion at T = 1000
(:func:`id_only_from_scores`).

``search`` says how the grid is searched (:data:`odin_ood.tuning.searches.SEARCHES`): ``"grid"``
(the default of :func:`tune`, the paper's procedure: every cell on every image, scores identical
to per-cell scoring) or ``"shared"`` (:mod:`odin_ood.tuning.shared`: one backward shared across
temperatures, the best cells verified exactly, <= 20 passes per image instead of 211; the default
of :class:`odin_ood.Detector`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor, nn

from odin_ood._utils.batching import Data, iter_batches, map_batches
from odin_ood._utils.checks import channel_view, check_epsilon, check_grid, check_temperature
from odin_ood.data.noise import gaussian_noise, uniform_noise
from odin_ood.metrics.detection import LOWER_IS_BETTER, METRICS, evaluate
from odin_ood.scores.odin import odin_grid_scores
from odin_ood.scores.passes import Clamp
from odin_ood.tuning.searches import check_search, grid_passes
from odin_ood.tuning.shared import ModelBackend, runs_shared, shared_search

PAPER_TEMPERATURES: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
PAPER_EPSILONS: tuple[float, ...] = tuple(round(i * 0.0002, 4) for i in range(21))
OOD_FREE: tuple[str, ...] = ("noise", "id-only")  # what tunes when no OOD data is given
# the default: the smallest worst-case shortfall across the four full suites; no source won on
# every suite (docs/results/README.md, "tuning without OOD data")
DEFAULT_OOD_FREE = "noise"
ID_ONLY_TEMPERATURE = 1000.0  # ODIN's T under the ID-only criterion, which cannot choose T
ID_ONLY_OBJECTIVE = "mean_id_score"
NOISE_SIZE = 1000  # images of each noise kind tuned against without OOD data


def check_ood_free(ood_free: str) -> str:
    if ood_free not in OOD_FREE:
        raise ValueError(f"ood_free must be one of {OOD_FREE}, got {ood_free!r}")
    return ood_free


@dataclass
class TuningResult:
    """The chosen cell and the whole grid.

    ``metrics[name]`` is a (len(temperatures), len(epsilons)) array of that metric per cell
    (the five of :mod:`odin_ood.metrics`, or ``mean_id_score`` alone for ID-only tuning);
    ``scores_in``/``scores_out`` are (len(temperatures), len(epsilons), N) arrays of ODIN scores
    (``scores_out`` has N = 0 for ID-only tuning).
    """

    temperature: float
    epsilon: float
    objective: str
    value: float
    temperatures: tuple[float, ...]
    epsilons: tuple[float, ...]
    metrics: dict[str, np.ndarray]
    scores_in: np.ndarray = field(repr=False)
    scores_out: np.ndarray = field(repr=False)
    search: str = "grid"
    passes_per_image: int | None = None

    @property
    def index(self) -> tuple[int, int]:
        """(row, column) of the chosen cell in the grid."""
        return self.temperatures.index(self.temperature), self.epsilons.index(self.epsilon)

    def table(self) -> list[dict[str, float]]:
        """One row per cell: temperature, epsilon and every metric of ``metrics``."""
        return [
            {"temperature": t, "epsilon": e, **{m: float(v[i, j]) for m, v in self.metrics.items()}}
            for i, t in enumerate(self.temperatures)
            for j, e in enumerate(self.epsilons)
        ]


def grid_scores(
    model: nn.Module,
    data: Data,
    temperatures: Sequence[float] = PAPER_TEMPERATURES,
    epsilons: Sequence[float] = PAPER_EPSILONS,
    input_std: Sequence[float] | Tensor | None = None,
    batch_size: int = 128,
    clamp: Clamp | None = None,
    name: str = "data",
    cells_per_forward: int = 1,
) -> Tensor:
    """ODIN scores of every image of ``data`` at every grid cell: a CPU tensor (T, E, N).
    ``cells_per_forward`` grid cells share one forward of ``cells_per_forward * batch_size`` rows."""
    return map_batches(
        lambda x: odin_grid_scores(model, x, temperatures, epsilons, input_std, clamp, cells_per_forward),
        data,
        batch_size,
        name,
    )


def tune_from_scores(
    scores_in: np.ndarray | Tensor,
    scores_out: np.ndarray | Tensor,
    temperatures: Sequence[float],
    epsilons: Sequence[float],
    objective: str = "fpr_at_95_tpr",
    tpr: float = 0.95,
) -> TuningResult:
    """Pick the best cell from precomputed grid scores (T, E, N). Ties go to the first cell in
    grid order (temperatures, then epsilons, as given)."""
    if objective not in METRICS:
        raise ValueError(f"objective must be one of {METRICS}, got {objective!r}")
    s_in, s_out = np.asarray(scores_in), np.asarray(scores_out)
    shape = (len(temperatures), len(epsilons))
    if s_in.shape[:2] != shape or s_out.shape[:2] != shape:
        raise ValueError(f"grid scores must have shape {shape} + (N,), got {s_in.shape} and {s_out.shape}")
    cells = [evaluate(s_in[i, j], s_out[i, j], tpr=tpr) for i in range(shape[0]) for j in range(shape[1])]
    metrics = {m: np.array([c[m] for c in cells]).reshape(shape) for m in METRICS}
    values = metrics[objective] if objective in LOWER_IS_BETTER else -metrics[objective]
    i, j = (int(k) for k in np.unravel_index(int(np.argmin(values)), shape))
    return TuningResult(
        temperature=float(temperatures[i]),
        epsilon=float(epsilons[j]),
        objective=objective,
        value=float(metrics[objective][i, j]),
        temperatures=tuple(float(t) for t in temperatures),
        epsilons=tuple(float(e) for e in epsilons),
        metrics=metrics,
        scores_in=s_in,
        scores_out=s_out,
    )


def id_only_from_scores(scores_in: np.ndarray | Tensor, temperature: float, epsilons: Sequence[float]) -> TuningResult:
    """The Generalized-ODIN criterion (Hsu et al., CVPR 2020, section 3.3) on precomputed scores
    of held-out ID data at ONE temperature, shape (1, E, N) or (E, N):

        epsilon* = argmax_epsilon (1/N) sum_n S(x~_n(epsilon); T),

    the mean (in float64) of the ID scores; ties go to the smallest epsilon. No OOD data is
    needed. The criterion cannot choose T: a larger T flattens every softmax and so lowers every
    max-softmax score, whatever the data, so T is fixed by the caller (:data:`ID_ONLY_TEMPERATURE`
    for ODIN). The result's grid is (T,) x ``epsilons``, its objective ``mean_id_score`` and its
    ``scores_out`` an empty (1, E, 0) array.
    """
    s = np.asarray(scores_in)
    s = s[None] if s.ndim == 2 else s
    if s.ndim != 3 or s.shape[:2] != (1, len(epsilons)) or s.shape[2] == 0:
        raise ValueError(f"ID scores must have shape (1, {len(epsilons)}, N) with N >= 1, got {s.shape}")
    means = s.astype(np.float64).mean(axis=-1)
    j = int(np.lexsort((np.asarray(epsilons, dtype=np.float64), -means[0]))[0])  # highest mean, then smallest epsilon
    return TuningResult(
        temperature=float(temperature),
        epsilon=float(epsilons[j]),
        objective=ID_ONLY_OBJECTIVE,
        value=float(means[0, j]),
        temperatures=(float(temperature),),
        epsilons=tuple(float(e) for e in epsilons),
        metrics={ID_ONLY_OBJECTIVE: means},
        scores_in=s,
        scores_out=np.empty((1, len(epsilons), 0), dtype=s.dtype),
    )


def tune_id_only(
    model: nn.Module,
    id_data: Data,
    temperature: float = ID_ONLY_TEMPERATURE,
    epsilons: Sequence[float] = PAPER_EPSILONS,
    input_std: Sequence[float] | Tensor | None = None,
    *,
    batch_size: int = 128,
    clamp: Clamp | None = None,
    cells_per_forward: int = 1,
) -> TuningResult:
    """Tune epsilon on held-out ID data alone at a fixed ``temperature``: ODIN scores of
    ``id_data`` at every epsilon (one input gradient per batch shared by all of them, parameter
    gradients off), then :func:`id_only_from_scores` (Hsu et al., 2020, section 3.3)."""
    temperature = check_temperature(temperature)
    epsilons = check_grid(epsilons, check_epsilon, "epsilons")
    scores_in = grid_scores(
        model, id_data, (temperature,), epsilons, input_std, batch_size, clamp, "id_data", cells_per_forward
    )
    result = id_only_from_scores(scores_in.numpy(), temperature, epsilons)
    return replace(result, passes_per_image=grid_passes(1, epsilons))


def noise_ood_set(
    like: Data,
    n: int = 1000,
    input_mean: Sequence[float] | Tensor | None = None,
    input_std: Sequence[float] | Tensor | None = None,
    seed: int = 0,
) -> Tensor:
    """The paper's Gaussian + Uniform noise (n images each) in the shape and space of ``like``.

    Noise is drawn in pixel space [0, 1]; when the model sees normalised inputs it is mapped
    through (x - input_mean) / input_std, so both are needed then.
    """
    shape = tuple(next(iter_batches(like, 1, "id_data")).shape[1:])
    noise = torch.cat([gaussian_noise(n, shape, seed), uniform_noise(n, shape, seed + 1)])
    if input_std is None and input_mean is None:
        return noise
    if input_std is None or input_mean is None:
        raise ValueError(
            "tuning against noise needs both input_mean and input_std when the model sees normalised inputs"
        )
    return (noise - channel_view(input_mean, noise, "input_mean", positive=False)) / channel_view(input_std, noise)


def tune(
    model: nn.Module,
    id_data: Data,
    ood_data: Data | None = None,
    temperatures: Sequence[float] = PAPER_TEMPERATURES,
    epsilons: Sequence[float] = PAPER_EPSILONS,
    input_std: Sequence[float] | Tensor | None = None,
    objective: str = "fpr_at_95_tpr",
    *,
    input_mean: Sequence[float] | None = None,
    tpr: float = 0.95,
    batch_size: int = 128,
    clamp: Clamp | None = None,
    noise_size: int = NOISE_SIZE,
    noise_seed: int = 0,
    cells_per_forward: int = 1,
    ood_free: str = DEFAULT_OOD_FREE,
    search: str = "grid",
) -> TuningResult:
    """Tune (T, epsilon) on held-out ID data and held-out OOD data (paper section 4.4).

    ``id_data``/``ood_data``: a tensor, Dataset or DataLoader yielding ``x`` or ``(x, y)``, in
    the space the model takes. When ``ood_data`` is None, ``ood_free`` says what tunes:
    ``"noise"`` (default), the paper's Gaussian and Uniform noise sets (``noise_size`` images
    each, seeded) as the OOD side; ``"id-only"``, the ID data alone (:func:`tune_id_only`: T fixed
    at :data:`ID_ONLY_TEMPERATURE`, ``temperatures`` and ``objective`` unused). ``ood_free`` is
    unused when ``ood_data`` is given. ``search``: ``"grid"`` (default, the paper's) or
    ``"shared"`` (module docstring; the grid still runs where it would cost no more, and ID-only
    tuning always scores its epsilon row; ``cells_per_forward`` only applies to the grid). The result holds the chosen
    cell, the metrics and scores of every cell the search scored, the search's name and its passes per image.
    """
    check_search(search)
    temperatures = check_grid(temperatures, check_temperature, "temperatures")
    epsilons = check_grid(epsilons, check_epsilon, "epsilons")
    if check_ood_free(ood_free) == "id-only" and ood_data is None:
        return tune_id_only(
            model,
            id_data,
            ID_ONLY_TEMPERATURE,
            epsilons,
            input_std,
            batch_size=batch_size,
            clamp=clamp,
            cells_per_forward=cells_per_forward,
        )
    if ood_data is None:
        ood_data = noise_ood_set(id_data, noise_size, input_mean, input_std, noise_seed)
    if runs_shared(search, temperatures, epsilons):
        backend = ModelBackend(model, id_data, ood_data, temperatures, epsilons, input_std, batch_size, clamp)
        found = shared_search(backend, temperatures, epsilons, objective, tpr)
        i, j = found.index
        return TuningResult(
            temperature=float(temperatures[i]),
            epsilon=float(epsilons[j]),
            objective=objective,
            value=float(found.metrics[objective][i, j]),
            temperatures=tuple(float(t) for t in temperatures),
            epsilons=tuple(float(e) for e in epsilons),
            metrics=found.metrics,
            scores_in=found.scores_in,
            scores_out=found.scores_out,
            search="shared",
            passes_per_image=found.passes_per_image,
        )
    scores_in, scores_out = (
        grid_scores(
            model,
            data,
            temperatures,
            epsilons,
            input_std,
            batch_size,
            clamp=clamp,
            cells_per_forward=cells_per_forward,
            name=name,
        )
        for data, name in ((id_data, "id_data"), (ood_data, "ood_data"))
    )
    result = tune_from_scores(scores_in.numpy(), scores_out.numpy(), temperatures, epsilons, objective, tpr)
    return replace(result, passes_per_image=grid_passes(len(temperatures), epsilons))
