"""Bootstrap confidence intervals for the paper's metrics.

ID and OOD evaluation scores are resampled independently with replacement (``resamples``
times, numpy PCG64 seeded with ``seed``); the interval is the percentile interval
[q(alpha/2), q(1 - alpha/2)] of each metric over the resamples (alpha = 1 - level).
"""

from __future__ import annotations

import numpy as np

from odin_ood.metrics import METRICS, evaluate


def bootstrap_ci(
    scores_in: np.ndarray, scores_out: np.ndarray, resamples: int = 200, seed: int = 0, level: float = 0.95
) -> dict[str, tuple[float, float]]:
    """{metric: (low, high)} percentile interval of each of the five metrics."""
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    s_in, s_out = np.asarray(scores_in, np.float64), np.asarray(scores_out, np.float64)
    rng = np.random.default_rng(seed)
    draws = {m: np.empty(resamples) for m in METRICS}
    for b in range(resamples):
        values = evaluate(s_in[rng.integers(0, s_in.size, s_in.size)], s_out[rng.integers(0, s_out.size, s_out.size)])
        for m in METRICS:
            draws[m][b] = values[m]
    alpha = 1.0 - level
    return {m: (float(np.quantile(d, alpha / 2)), float(np.quantile(d, 1 - alpha / 2))) for m, d in draws.items()}
