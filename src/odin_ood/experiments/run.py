"""Run a suite end to end: load the model and data, score (cached), run every experiment, and
write ``results.json`` and ``results.csv`` (the report is rendered from ``results.json``)."""

from __future__ import annotations

import csv
import datetime as _dt
import functools
import io
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from odin_ood import data, models
from odin_ood._utils.files import write_file
from odin_ood._version import __version__
from odin_ood.data.dataset import resolve_root, sha256_file
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
from odin_ood.experiments.every_image import every_image_pass, every_image_rows, logits_cell
from odin_ood.experiments.progress import OutOfTime, Progress, eta_text
from odin_ood.experiments.protocol import Experiment, Scored, Scorer, dataset_seed, split_indices, subsample
from odin_ood.experiments.suites import DataSpec, Suite
from odin_ood.metrics import METRICS
from odin_ood.preprocess.model_input import declared_input
from odin_ood.tuning.searches import REPRODUCE_DEFAULT_SEARCH

STAGES = ("every-image", "tuning")
T = TypeVar("T")

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
        eval_grid = self.eval_grid if self.eval_grid is not None else (
            q or self.device.startswith("cuda") or suite.full_grid_on_cpu)
        return RunConfig(**{**asdict(self), "eval_grid": eval_grid,
                            "limit": pick(self.limit, suite.quick_limit, None),
                            "resamples": pick(self.resamples, 50, 200), "repeats": pick(self.repeats, 3, 10),
                            "analysis_n": pick(self.analysis_n, 30, 2000 if eval_grid else 300), "distance_m": pick(self.distance_m, 100, 1000),
                            "temperatures": tuple(self.temperatures or grid_t), "epsilons": tuple(self.epsilons or grid_e)})


def load_spec(spec: DataSpec, root: Path, model: torch.nn.Module) -> data.ImageDataset:
    kw = dict(spec.kwargs)
    if spec.loader in suites.NOISE_LOADERS:
        kw["shape"] = declared_input(model).shape
    return data.load(spec.loader, root=root, **kw)


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def weights_path(suite: Suite, root: Path, weights: str | None) -> Path | None:
    """The checkpoint to load (None: the model shipped in the package)."""
    if weights is not None:
        return Path(weights)
    if suite.requires_weights_argument:
        raise FileNotFoundError(f"suite {suite.name!r} needs --weights PATH (a checkpoint written by `odin-ood train`)")
    return None if suite.weights is None else root / suite.weights


def load_model(suite: Suite, path: Path | None, device: str, num_classes: int | None = None) -> torch.nn.Module:
    """The suite's model; ``num_classes`` (``--num-classes``) overrides the suite's."""
    num_classes = suite.num_classes if num_classes is None else num_classes
    if path is not None and not path.is_file():
        raise FileNotFoundError(f"suite {suite.name!r}: model weights {path} not found (pass --weights PATH)")
    if path is None:
        model = models.load(suite.model, num_classes=num_classes)
    elif suite.requires_weights_argument:
        model = models.load(path, num_classes=num_classes)
    else:
        model = models.load(suite.model, weights=path, num_classes=num_classes)
    return model.to(device).eval()


def availability(name: str, data_root: str | None = None, weights: str | None = None) -> str:
    """"ok ..." or the reason the suite cannot run (model or every ID set missing), for ``--list``."""
    suite = suites.get(name)
    try:
        root = resolve_root(data_root)
        path = weights_path(suite, root, weights)
        if path is not None and not path.is_file():
            return f"skipped: model weights {path} not found"
    except FileNotFoundError as exc:
        return f"skipped: {exc}"
    reasons = []
    for spec in suite.id_candidates:
        try:
            ds = data.load(spec.loader, root=root, **spec.kwargs)
        except (FileNotFoundError, ValueError, KeyError) as exc:
            reasons.append(f"{spec.key}: {_reason(exc)}")
            continue
        return f"ok: ID {spec.label} ({len(ds)} images); missing OOD sets are skipped when run"
    return "skipped: no in-distribution set: " + "; ".join(reasons)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"{device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _score(scorer: Scorer, spec: DataSpec, ds: data.ImageDataset, n_tune: int, seed: int,
           logits_at: tuple[float, float] | None) -> Scored:
    """The scored set: the grid on every image (``logits_at`` None), or only the logits of the
    every-image pass at ``logits_at`` (the CPU path; further cells are scored when needed)."""
    if logits_at is None:
        arrays = scorer.grid(ds)
        grid, logits = arrays["grid"], arrays["logits"]
    else:
        grid, logits = None, scorer.cell_outputs(ds, *logits_at)["logits"]
    split = split_indices(len(ds), min(n_tune, len(ds) // 2), dataset_seed(seed, spec.key))
    return Scored(key=spec.key, label=spec.label, data=ds, grid=grid, logits=logits,
                  split=split, paper_key=spec.paper_key,
                  manifest={"loader": spec.loader, "kwargs": spec.kwargs, "n": len(ds), "split": split.describe(),
                            "dataset": ds.manifest})


def _timed(timings: dict[str, float], name: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    try:
        return fn()
    finally:
        timings[name] = round(time.perf_counter() - start, 2)


FULL_GRID_ONLY = "needs every image scored at every grid cell: run with --eval-grid (the GPU default)"


def begin(out: Path, cfg: RunConfig) -> None:
    """Mark ``out`` as holding a run in progress: stale results of an earlier run are renamed
    ``*.previous`` and ``RUNNING.json`` says what is under way until the run completes."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("results.json", "results.csv", "report.html"):
        if (out / name).exists():
            os.replace(out / name, out / f"{name}.previous")
    write_file(out / "RUNNING.json", json.dumps({"suite": cfg.suite, "quick": cfg.quick, "started_utc": _now(),
                                                 "note": "incomplete: a run is under way or was stopped; "
                                                         "rerun the same command to resume"}, indent=1) + "\n",
               "reproduce", "--out")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


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
            print(f"[tuning, {cfg.search}] {k}/{len(scored)} {o.key}: T={t.temperature:g} eps={t.epsilon:g} "
                  f"(tuning FPR {100 * t.value:.1f}%, {100 * t.cost_fraction:.0f}% of the grid's cost), ETA {eta}",
                  file=sys.stderr, flush=True)
    if cfg.stop_after != "tuning":
        _timed(timings, "tuned cells pass", lambda: _eval_cells(exp, cfg.progress))
        _timed(timings, "energy + perturbation pass", lambda: successor_rows.prepare(exp, cfg.progress))


def _listed(values: tuple[float, ...] | None) -> list[float] | None:
    return None if values is None else list(values)


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
    scorer = Scorer(model, _resolved(cfg.temperatures), _resolved(cfg.epsilons), ScoreCache(cfg.cache_dir and Path(cfg.cache_dir), cfg.use_cache),
                    cfg.batch_size, cfg.progress, precision=cfg.precision)
    scorer.msp_index()
    if cfg.time_limit is not None:
        scorer.deadline = time.monotonic() + cfg.time_limit
    begin(out, cfg)
    skipped: list[dict[str, str]] = []

    def load(spec: DataSpec, role: str) -> data.ImageDataset | None:
        """The (subsampled) set, or None (recorded in ``skipped``) when it cannot be loaded."""
        try:
            return _timed(timings, f"load {spec.key}", lambda: subsample(
                load_spec(spec, root, model), cfg.limit, dataset_seed(cfg.seed + 1, spec.key)))
        except (FileNotFoundError, ValueError, KeyError) as exc:
            skipped.append({"key": spec.key, "label": spec.label, "role": role, "reason": _reason(exc)})
            return None

    id_spec, id_ds = next(((spec, ds) for spec in suite.id_candidates
                           if (ds := load(spec, "in-distribution")) is not None), (None, None))
    if id_spec is None or id_ds is None:
        raise FileNotFoundError(f"suite {suite.name!r}: no in-distribution set could be loaded: "
                                + "; ".join(f"{s['key']}: {s['reason']}" for s in skipped))
    oods = [(spec, ds) for spec in suite.ood if (ds := load(spec, "out-of-distribution")) is not None]
    if not oods:
        raise FileNotFoundError(f"suite {suite.name!r}: no OOD set could be loaded")
    results: dict[str, Any] = {"suite": suite.name, "description": suite.description, "quick": cfg.quick,
                               "complete": False, "search": cfg.search}
    try:
        _timed(timings, "every-image pass", lambda: every_image_pass(scorer, id_ds, oods, suite.paper_label, cfg.progress))
    except OutOfTime as exc:
        results["stopped"] = str(exc)
    results["every_image"] = every_image_rows(scorer, id_ds, oods, suite.paper_label)
    results["skipped"] = skipped
    if cfg.stop_after == "every-image" or "stopped" in results:
        return _finish(results, cfg, suite, model, path, scorer, timings, started, out, id_spec, id_ds, oods)

    at = None if cfg.eval_grid else logits_cell(suite.paper_label, [spec for spec, _ in oods])
    id_set = _timed(timings, f"score {id_spec.key}", lambda: _score(scorer, id_spec, id_ds, suite.id_tune, cfg.seed, at))
    scored = [_timed(timings, f"score {spec.key}", functools.partial(_score, scorer, spec, ds, suite.ood_tune, cfg.seed, at))
              for spec, ds in oods]
    exp = Experiment(scorer=scorer, id_set=id_set, oods=scored, paper_row=suite.paper_label,
                     paper_matches=suite.paper_row is not None, seed=cfg.seed, search=cfg.search)
    try:
        _tune_and_evaluate(exp, scored, cfg, timings)
    except OutOfTime as exc:
        results["stopped"] = str(exc)
    results["tuning"] = {o.key: t.describe() for o in scored if (t := exp.tunings.get(o.key)) is not None}
    if cfg.stop_after == "tuning" or "stopped" in results:
        return _finish(results, cfg, suite, model, path, scorer, timings, started, out, id_spec, id_ds, oods, exp)
    results["main_table"] = _timed(timings, "main table", lambda: main_table.main_table(exp, _resolved(cfg.resamples)))
    full = exp.full_grid
    results["sweeps"] = _timed(timings, "sweeps", lambda: parameters.sweeps(exp)) if full else {"skipped": FULL_GRID_ONLY}
    results["threshold"] = _timed(timings, "threshold", lambda: parameters.threshold_curves(exp))
    results["cross_dataset"] = (_timed(timings, "cross-dataset", lambda: transfer.cross_dataset(exp)) if full
                                else {"skipped": FULL_GRID_ONLY})
    results["tuning_size"] = (_timed(timings, "tuning size", lambda: transfer.tuning_size_curve(exp, _resolved(cfg.repeats))) if full
                              else {"skipped": FULL_GRID_ONLY})
    results["analysis"] = _timed(timings, "section 5", lambda: analysis.section5(exp, _resolved(cfg.analysis_n)))
    results["profiles"] = analysis.class_profiles(exp)
    results["accuracy"] = _timed(timings, "accuracy vs threshold", lambda: analysis.accuracy_vs_threshold(exp))
    results["distances"] = _timed(timings, "distances", lambda: distances.distances(exp, _resolved(cfg.distance_m)))
    # beyond the paper: which tuning source transfers (fresh noise draws tune only, never evaluated)
    noise = [(spec, ds) for spec in tuning_sources.NOISE_SPECS if (ds := load(spec, "tuning source")) is not None]
    results["tuning_sources"] = _timed(timings, "tuning sources", lambda: tuning_sources.compare(
        exp, tuning_sources.noise_set(scorer, noise, full), _resolved(cfg.resamples),
        eval_limit=None if full else cfg.sources_limit, progress=cfg.progress, oracle=full or cfg.sources_oracle))
    results["complete"] = True
    return _finish(results, cfg, suite, model, path, scorer, timings, started, out, id_spec, id_ds, oods, exp)


def _finish(results: dict[str, Any], cfg: RunConfig, suite: Suite, model: torch.nn.Module, path: Path | None,
            scorer: Scorer, timings: dict[str, float], started: float, out: Path, id_spec: DataSpec,
            id_ds: data.ImageDataset, oods: list[tuple[DataSpec, data.ImageDataset]],
            exp: Experiment | None = None) -> dict[str, Any]:
    timings["total"] = round(time.perf_counter() - started, 2)
    results["provenance"] = provenance(cfg, suite, model, path, scorer, timings, id_spec, id_ds, oods, exp)
    write_results(results, out)
    if results["complete"]:
        (out / "RUNNING.json").unlink(missing_ok=True)
    return results


def _dataset_entry(spec: DataSpec, ds: data.ImageDataset, scored: Scored | None) -> dict[str, Any]:
    if scored is not None:
        return {"key": spec.key, "label": spec.label, **scored.manifest}
    return {"key": spec.key, "label": spec.label, "loader": spec.loader, "kwargs": spec.kwargs, "n": len(ds),
            "split": None, "dataset": ds.manifest}


def provenance(cfg: RunConfig, suite: Suite, model: torch.nn.Module, path: Path | None, scorer: Scorer,
               timings: dict[str, float], id_spec: DataSpec, id_ds: data.ImageDataset,
               oods: list[tuple[DataSpec, data.ImageDataset]], exp: Experiment | None
               ) -> dict[str, Any]:
    acc = None
    if exp is not None and (exp.id_set.labels[exp.id_set.split.eval] >= 0).all():
        ids, ev = exp.id_set, exp.id_set.split.eval
        acc = float((ids.full_logits()[ev].argmax(1) == ids.labels[ev]).mean())
    scored = {s.key: s for s in ([exp.id_set, *exp.oods] if exp is not None else [])}
    return {
        "library": {"odin_ood": __version__, "torch": torch.__version__, "numpy": np.__version__,
                    "python": sys.version.split()[0], "git_commit": _git_commit()},
        "device": _device_name(cfg.device), "platform": platform.platform(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(["odin-ood", *sys.argv[1:]]) if sys.argv and "odin_ood" in sys.argv[0] else None,
        "config": asdict(cfg) | {"cache_dir": str(scorer.cache.folder)},
        "model": {"name": getattr(model, "arch", suite.model), "weights": str(path) if path else "shipped with odin-ood",
                  "weights_sha256": sha256_file(path) if path else None, "fingerprint": scorer.fingerprint,
                  "input_mean": _listed(declared_input(model).mean), "input_std": _listed(scorer.input_std),
                  "num_classes": getattr(model, "num_classes", None), "id_eval_accuracy": acc},
        "grid": {"temperatures": list(scorer.temperatures), "epsilons": list(scorer.epsilons),
                 "epsilon_units": "pixel units of [0, 1] images; the step is divided by the model's input_std"},
        "paper_row": suite.paper_label, "paper_row_matches_model": suite.paper_row is not None,
        "search": {"method": cfg.search, "applies_to": "ODIN (tuned) rows: the cell chosen on the tuning splits"},
        "precision": cfg.precision, "threads": torch.get_num_threads(),
        "datasets": {"id": _dataset_entry(id_spec, id_ds, scored.get(id_spec.key)),
                     "ood": [_dataset_entry(spec, ds, scored.get(spec.key)) for spec, ds in oods]},
        "cache": {"hits": scorer.cache.hits, "misses": scorer.cache.misses, "enabled": scorer.cache.enabled},
        "timings_s": timings,
    }


def write_results(results: dict[str, Any], out: Path) -> None:
    """``results.json`` (everything) and ``results.csv`` (the main table, one row per set and method)."""
    write_file(out / "results.json", json.dumps(results, indent=1, default=_json_default) + "\n", "reproduce", "--out")
    fields = ["suite", "ood", "label", "method", "temperature", "epsilon", "n_in", "n_out"]
    fields += [f"{m}{s}" for m in METRICS for s in ("", "_ci_low", "_ci_high", "_paper")] + ["paper_source"]
    if "main_table" not in results:
        return
    f = io.StringIO(newline="")
    w = csv.DictWriter(f, fieldnames=fields)
    w.writeheader()
    for r in results["main_table"]["rows"]:
        row = {k: r[k] for k in ("ood", "label", "method", "temperature", "epsilon", "n_in", "n_out")}
        row["suite"] = results["suite"]
        for m in METRICS:
            row[m] = r["metrics"][m]
            row[f"{m}_ci_low"], row[f"{m}_ci_high"] = r["ci95"][m]
            row[f"{m}_paper"] = r["paper"]["values"][m] / 100 if r["paper"] else ""
        row["paper_source"] = r["paper"]["source"] if r["paper"] else ""
        w.writerow(row)
    write_file(out / "results.csv", f.getvalue(), "reproduce", "--out")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path, os.PathLike)):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
