"""Run a suite end to end: load the model and data (:mod:`~odin_ood.experiments.loading`), score
(cached), run every experiment, and write ``results.json`` and ``results.csv``
(:mod:`~odin_ood.experiments.results`; the report is rendered from ``results.json``)."""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from odin_ood import data
from odin_ood.data.dataset import resolve_root
from odin_ood.experiments import (
    analysis,
    distances,
    main_table,
    parameters,
    successor_rows,
    suites,
    transfer,
    tuning_sources,
)
from odin_ood.experiments.cache import ScoreCache
from odin_ood.experiments.choose import tuned
from odin_ood.experiments.config import STAGES, RunConfig
from odin_ood.experiments.every_image import every_image_pass, every_image_rows, logits_cell
from odin_ood.experiments.loading import failure_reason, load_model, load_spec, weights_path
from odin_ood.experiments.progress import OutOfTime, Progress, eta_text
from odin_ood.experiments.protocol import Experiment, Scored, dataset_seed, split_indices, subsample
from odin_ood.experiments.results import begin, provenance, write_results
from odin_ood.experiments.scorer import Scorer
from odin_ood.experiments.suites import DataSpec, Suite

T = TypeVar("T")


def _score(
    scorer: Scorer, spec: DataSpec, ds: data.ImageDataset, n_tune: int, seed: int, logits_at: tuple[float, float] | None
) -> Scored:
    """The scored set: the grid on every image (``logits_at`` None), or only the logits of the
    every-image pass at ``logits_at`` (the CPU path; further cells are scored when needed)."""
    if logits_at is None:
        arrays = scorer.grid(ds)
        grid, logits = arrays["grid"], arrays["logits"]
    else:
        grid, logits = None, scorer.cell_outputs(ds, *logits_at)["logits"]
    split = split_indices(len(ds), min(n_tune, len(ds) // 2), dataset_seed(seed, spec.key))
    return Scored(
        key=spec.key,
        label=spec.label,
        data=ds,
        grid=grid,
        logits=logits,
        split=split,
        paper_key=spec.paper_key,
        manifest={
            "loader": spec.loader,
            "kwargs": spec.kwargs,
            "n": len(ds),
            "split": split.describe(),
            "dataset": ds.manifest,
        },
    )


def _timed(timings: dict[str, float], name: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    try:
        return fn()
    finally:
        timings[name] = round(time.perf_counter() - start, 2)


FULL_GRID_ONLY = "needs every image scored at every grid cell: run with --eval-grid (the GPU default)"


def _eval_cells(exp: Experiment, progress: bool) -> None:
    """Score every image at each set's tuned cell (one resumable pass per distinct cell)."""
    jobs = [(exp.id_set, t) for t in {(tuned(exp, o).temperature, tuned(exp, o).epsilon) for o in exp.oods}]
    jobs += [(o, (tuned(exp, o).temperature, tuned(exp, o).epsilon)) for o in exp.oods]
    jobs = [(s, c) for s, c in jobs if exp.scorer.grid_index(*c) is None or s.grid is None]
    bar = Progress("tuned cells, every image", sum(len(s.data) for s, _ in jobs), enabled=progress)
    for s, (T, eps) in jobs:
        exp.scorer.cell_outputs(s.data, T, eps, progress=bar)


def _tune_and_evaluate(exp: Experiment, scored: list[Scored], cfg: RunConfig, timings: dict[str, float]) -> None:
    """Tune every set (progress per set), then score every image at the tuned cells."""
    start = time.perf_counter()
    for k, o in enumerate(scored, 1):
        t = _timed(timings, f"tune {o.key}", functools.partial(tuned, exp, o))
        if cfg.progress:
            eta = eta_text((time.perf_counter() - start) / k * (len(scored) - k))
            print(
                f"[tuning, {cfg.search}] {k}/{len(scored)} {o.key}: T={t.temperature:g} eps={t.epsilon:g} "
                f"(tuning FPR {100 * t.value:.1f}%, {100 * t.cost_fraction:.0f}% of the grid's cost), ETA {eta}",
                file=sys.stderr,
                flush=True,
            )
    if cfg.stop_after != "tuning":
        _timed(timings, "tuned cells pass", lambda: _eval_cells(exp, cfg.progress))
        _timed(timings, "energy + perturbation pass", lambda: successor_rows.prepare(exp, cfg.progress))


def _resolved(value: T | None) -> T:
    """A :class:`RunConfig` field that :meth:`RunConfig.resolved` sets."""
    if value is None:
        raise ValueError("a RunConfig default is unset: run_suite resolves the config first (RunConfig.resolved)")
    return value


def run_suite(config: RunConfig) -> dict[str, Any]:
    """Run every experiment of ``config.suite``; write results.json/results.csv into ``config.out``
    and return the results. Stages: every image at the paper's parameters, tuning (``search``
    on the tuning splits), every image at the tuned cells, then the experiments. Every pass is
    cached per chunk, so rerunning a stopped run resumes it; ``stop_after="every-image"`` writes
    the first stage's rows only, marked incomplete."""
    cfg = config.resolved()
    if cfg.stop_after not in (None, *STAGES):
        raise ValueError(f"stop_after must be one of {STAGES}, got {cfg.stop_after!r}")
    if cfg.sources_limit < 20:
        raise ValueError(f"sources_limit must be at least 20 images, got {cfg.sources_limit}")
    suite = suites.get(cfg.suite)
    root = resolve_root(cfg.data_root)
    out = Path(cfg.out)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    path = weights_path(suite, root, cfg.weights)
    model = load_model(suite, path, cfg.device, cfg.num_classes)
    scorer = Scorer(
        model,
        _resolved(cfg.temperatures),
        _resolved(cfg.epsilons),
        ScoreCache(cfg.cache_dir and Path(cfg.cache_dir), cfg.use_cache),
        cfg.batch_size,
        cfg.progress,
        precision=cfg.precision,
    )
    scorer.msp_index()
    if cfg.time_limit is not None:
        scorer.deadline = time.monotonic() + cfg.time_limit
    begin(out, cfg)
    skipped: list[dict[str, str]] = []

    def load(spec: DataSpec, role: str) -> data.ImageDataset | None:
        """The (subsampled) set, or None (recorded in ``skipped``) when it cannot be loaded."""
        try:
            return _timed(
                timings,
                f"load {spec.key}",
                lambda: subsample(load_spec(spec, root, model), cfg.limit, dataset_seed(cfg.seed + 1, spec.key)),
            )
        except (FileNotFoundError, ValueError, KeyError) as exc:
            skipped.append({"key": spec.key, "label": spec.label, "role": role, "reason": failure_reason(exc)})
            return None

    id_spec, id_ds = next(
        ((spec, ds) for spec in suite.id_candidates if (ds := load(spec, "in-distribution")) is not None), (None, None)
    )
    if id_spec is None or id_ds is None:
        raise FileNotFoundError(
            f"suite {suite.name!r}: no in-distribution set could be loaded: "
            + "; ".join(f"{s['key']}: {s['reason']}" for s in skipped)
        )
    oods = [(spec, ds) for spec in suite.ood if (ds := load(spec, "out-of-distribution")) is not None]
    if not oods:
        raise FileNotFoundError(f"suite {suite.name!r}: no OOD set could be loaded")
    results: dict[str, Any] = {
        "suite": suite.name,
        "description": suite.description,
        "quick": cfg.quick,
        "complete": False,
        "search": cfg.search,
    }
    try:
        _timed(
            timings, "every-image pass", lambda: every_image_pass(scorer, id_ds, oods, suite.paper_label, cfg.progress)
        )
    except OutOfTime as exc:
        results["stopped"] = str(exc)
    results["every_image"] = every_image_rows(scorer, id_ds, oods, suite.paper_label)
    results["skipped"] = skipped
    if cfg.stop_after == "every-image" or "stopped" in results:
        return _finish(results, cfg, suite, model, path, scorer, timings, started, out, id_spec, id_ds, oods)

    at = None if cfg.eval_grid else logits_cell(suite.paper_label, [spec for spec, _ in oods])
    id_set = _timed(
        timings, f"score {id_spec.key}", lambda: _score(scorer, id_spec, id_ds, suite.id_tune, cfg.seed, at)
    )
    scored = [
        _timed(timings, f"score {spec.key}", functools.partial(_score, scorer, spec, ds, suite.ood_tune, cfg.seed, at))
        for spec, ds in oods
    ]
    exp = Experiment(
        scorer=scorer,
        id_set=id_set,
        oods=scored,
        paper_row=suite.paper_label,
        paper_matches=suite.paper_row is not None,
        seed=cfg.seed,
        search=cfg.search,
    )
    try:
        _tune_and_evaluate(exp, scored, cfg, timings)
    except OutOfTime as exc:
        results["stopped"] = str(exc)
    results["tuning"] = {o.key: t.describe() for o in scored if (t := exp.tunings.get(o.key)) is not None}
    if cfg.stop_after == "tuning" or "stopped" in results:
        return _finish(results, cfg, suite, model, path, scorer, timings, started, out, id_spec, id_ds, oods, exp)
    results["main_table"] = _timed(timings, "main table", lambda: main_table.main_table(exp, _resolved(cfg.resamples)))
    full = exp.full_grid
    results["sweeps"] = (
        _timed(timings, "sweeps", lambda: parameters.sweeps(exp)) if full else {"skipped": FULL_GRID_ONLY}
    )
    results["threshold"] = _timed(timings, "threshold", lambda: parameters.threshold_curves(exp))
    results["cross_dataset"] = (
        _timed(timings, "cross-dataset", lambda: transfer.cross_dataset(exp)) if full else {"skipped": FULL_GRID_ONLY}
    )
    results["tuning_size"] = (
        _timed(timings, "tuning size", lambda: transfer.tuning_size_curve(exp, _resolved(cfg.repeats)))
        if full
        else {"skipped": FULL_GRID_ONLY}
    )
    results["analysis"] = _timed(timings, "section 5", lambda: analysis.section5(exp, _resolved(cfg.analysis_n)))
    results["profiles"] = analysis.class_profiles(exp)
    results["accuracy"] = _timed(timings, "accuracy vs threshold", lambda: analysis.accuracy_vs_threshold(exp))
    results["distances"] = _timed(timings, "distances", lambda: distances.distances(exp, _resolved(cfg.distance_m)))
    # beyond the paper: which tuning source transfers (fresh noise draws tune only, never evaluated)
    noise = [(spec, ds) for spec in tuning_sources.NOISE_SPECS if (ds := load(spec, "tuning source")) is not None]
    results["tuning_sources"] = _timed(
        timings,
        "tuning sources",
        lambda: tuning_sources.compare(
            exp,
            tuning_sources.noise_set(scorer, noise, full),
            _resolved(cfg.resamples),
            eval_limit=None if full else cfg.sources_limit,
            progress=cfg.progress,
            oracle=full or cfg.sources_oracle,
        ),
    )
    results["complete"] = True
    return _finish(results, cfg, suite, model, path, scorer, timings, started, out, id_spec, id_ds, oods, exp)


def _finish(
    results: dict[str, Any],
    cfg: RunConfig,
    suite: Suite,
    model: torch.nn.Module,
    path: Path | None,
    scorer: Scorer,
    timings: dict[str, float],
    started: float,
    out: Path,
    id_spec: DataSpec,
    id_ds: data.ImageDataset,
    oods: list[tuple[DataSpec, data.ImageDataset]],
    exp: Experiment | None = None,
) -> dict[str, Any]:
    timings["total"] = round(time.perf_counter() - started, 2)
    results["provenance"] = provenance(cfg, suite, model, path, scorer, timings, id_spec, id_ds, oods, exp)
    write_results(results, out)
    if results["complete"]:
        (out / "RUNNING.json").unlink(missing_ok=True)
    return results
