"""The settings of one suite run (:class:`RunConfig`) and the defaults a quick or full run resolves
them to (:meth:`RunConfig.resolved`): grid, subsampling, bootstrap resamples, repeats, analysis sizes."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from odin_ood.experiments import suites, tuning_sources
from odin_ood.tuning.searches import REPRODUCE_DEFAULT_SEARCH

STAGES = ("every-image", "tuning")


@dataclass
class RunConfig:
    """Settings of one run. ``quick`` subsamples every set to ``limit`` images (default: the
    suite's ``quick_limit``) and uses the suite's reduced grid, fewer bootstrap resamples, repeats
    and analysis images."""

    suite: str
    out: str
    data_root: str | None = None
    weights: str | None = None
    device: str = "cpu"
    quick: bool = False
    limit: int | None = None
    cache_dir: str | None = None
    use_cache: bool = True
    seed: int = 0
    resamples: int | None = None
    repeats: int | None = None
    analysis_n: int | None = None
    distance_m: int | None = None
    batch_size: int = 128
    progress: bool = True
    temperatures: tuple[float, ...] | None = None
    epsilons: tuple[float, ...] | None = None
    search: str = REPRODUCE_DEFAULT_SEARCH
    precision: str = "fp32"
    eval_grid: bool | None = None
    stop_after: str | None = None
    time_limit: float | None = None
    sources_limit: int = tuning_sources.EVAL_LIMIT_CPU
    sources_oracle: bool = True
    num_classes: int | None = None

    def resolved(self) -> RunConfig:
        q = self.quick

        def pick(v: Any, quick: Any, full: Any) -> Any:
            return v if v is not None else (quick if q else full)

        suite = suites.get(self.suite)
        grid_t, grid_e = suites.grid(suite, q)
        eval_grid = (
            self.eval_grid
            if self.eval_grid is not None
            else (q or self.device.startswith("cuda") or suite.full_grid_on_cpu)
        )
        return RunConfig(
            **{
                **asdict(self),
                "eval_grid": eval_grid,
                "limit": pick(self.limit, suite.quick_limit, None),
                "resamples": pick(self.resamples, 50, 200),
                "repeats": pick(self.repeats, 3, 10),
                "analysis_n": pick(self.analysis_n, 30, 2000 if eval_grid else 300),
                "distance_m": pick(self.distance_m, 100, 1000),
                "temperatures": tuple(self.temperatures or grid_t),
                "epsilons": tuple(self.epsilons or grid_e),
            }
        )
