"""Run a suite end to end: load the model and data, score (cached), run every experiment, and
write ``results.json`` and ``results.csv`` (the report is rendered from ``results.json``)."""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import odin_ood
from odin_ood import data, models
from odin_ood.data.dataset import resolve_root, sha256_file
from odin_ood.experiments import analysis, distances, main_table, parameters, suites, transfer, tuning_sources
from odin_ood.experiments.cache import ScoreCache
from odin_ood.experiments.protocol import Experiment, Scored, Scorer, dataset_seed, split_indices, subsample
from odin_ood.experiments.suites import DataSpec, Suite
from odin_ood.metrics import METRICS

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

    def resolved(self) -> "RunConfig":
        q = self.quick
        pick = lambda v, quick, full: v if v is not None else (quick if q else full)  # noqa: E731
        suite = suites.get(self.suite)
        grid_t, grid_e = suites.grid(suite, q)
        return RunConfig(**{**asdict(self),
                            "limit": pick(self.limit, suite.quick_limit, None),
                            "resamples": pick(self.resamples, 50, 200), "repeats": pick(self.repeats, 3, 10),
                            "analysis_n": pick(self.analysis_n, 30, 2000), "distance_m": pick(self.distance_m, 100, 1000),
                            "temperatures": tuple(self.temperatures or grid_t), "epsilons": tuple(self.epsilons or grid_e)})


def load_spec(spec: DataSpec, root: Path, model: torch.nn.Module) -> data.ImageDataset:
    kw = dict(spec.kwargs)
    if spec.loader in suites.NOISE_LOADERS:
        kw["shape"] = tuple(model.input_shape)
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


def load_model(suite: Suite, path: Path | None, device: str) -> torch.nn.Module:
    if path is not None and not path.is_file():
        raise FileNotFoundError(f"suite {suite.name!r}: model weights {path} not found (pass --weights PATH)")
    if path is None:
        model = models.load(suite.model)
    elif suite.requires_weights_argument:
        model = models.load(path, num_classes=suite.num_classes)
    else:
        model = models.load(suite.model, weights=path, num_classes=suite.num_classes)
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


def _score(scorer: Scorer, spec: DataSpec, ds: data.ImageDataset, n_tune: int, seed: int) -> Scored:
    arrays = scorer.grid(ds)
    split = split_indices(len(ds), min(n_tune, len(ds) // 2), dataset_seed(seed, spec.key))
    return Scored(key=spec.key, label=spec.label, data=ds, grid=arrays["grid"], logits=arrays["logits"],
                  split=split, paper_key=spec.paper_key,
                  manifest={"loader": spec.loader, "kwargs": spec.kwargs, "n": len(ds), "split": split.describe(),
                            "dataset": ds.manifest})


def _timed(timings: dict[str, float], name: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    try:
        return fn()
    finally:
        timings[name] = round(time.perf_counter() - start, 2)


def run_suite(config: RunConfig) -> dict[str, Any]:
    """Run every experiment of ``config.suite``; write results.json/results.csv into ``config.out``
    and return the results."""
    cfg = config.resolved()
    suite = suites.get(cfg.suite)
    root = resolve_root(cfg.data_root)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    path = weights_path(suite, root, cfg.weights)
    model = load_model(suite, path, cfg.device)
    scorer = Scorer(model, cfg.temperatures, cfg.epsilons, ScoreCache(cfg.cache_dir and Path(cfg.cache_dir), cfg.use_cache),
                    cfg.batch_size, cfg.progress)
    scorer.msp_index()

    def load(spec: DataSpec) -> data.ImageDataset:
        return subsample(load_spec(spec, root, model), cfg.limit, dataset_seed(cfg.seed + 1, spec.key))

    skipped: list[dict[str, str]] = []

    def load_and_score(spec: DataSpec, role: str, n_tune: int):
        """The scored set, or None (recorded in ``skipped``) when its data cannot be loaded."""
        try:
            ds = _timed(timings, f"load {spec.key}", lambda: load(spec))
        except (FileNotFoundError, ValueError, KeyError) as exc:
            skipped.append({"key": spec.key, "label": spec.label, "role": role, "reason": _reason(exc)})
            return None
        return _timed(timings, f"score {spec.key}", lambda: _score(scorer, spec, ds, n_tune, cfg.seed))

    id_set = next((s for spec in suite.id_candidates
                   if (s := load_and_score(spec, "in-distribution", suite.id_tune)) is not None), None)
    if id_set is None:
        raise FileNotFoundError(f"suite {suite.name!r}: no in-distribution set could be loaded: "
                                + "; ".join(f"{s['key']}: {s['reason']}" for s in skipped))
    oods = [s for spec in suite.ood if (s := load_and_score(spec, "out-of-distribution", suite.ood_tune)) is not None]
    if not oods:
        raise FileNotFoundError(f"suite {suite.name!r}: no OOD set could be loaded")

    exp = Experiment(scorer=scorer, id_set=id_set, oods=oods, paper_row=suite.paper_label,
                     paper_matches=suite.paper_row is not None, seed=cfg.seed)
    results: dict[str, Any] = {"suite": suite.name, "description": suite.description, "quick": cfg.quick}
    results["main_table"] = _timed(timings, "main table", lambda: main_table.main_table(exp, cfg.resamples))
    results["sweeps"] = _timed(timings, "sweeps", lambda: parameters.sweeps(exp))
    results["threshold"] = _timed(timings, "threshold", lambda: parameters.threshold_curves(exp))
    results["cross_dataset"] = _timed(timings, "cross-dataset", lambda: transfer.cross_dataset(exp))
    results["tuning_size"] = _timed(timings, "tuning size", lambda: transfer.tuning_size_curve(exp, cfg.repeats))
    results["analysis"] = _timed(timings, "section 5", lambda: analysis.section5(exp, cfg.analysis_n))
    results["profiles"] = analysis.class_profiles(exp)
    results["accuracy"] = _timed(timings, "accuracy vs threshold", lambda: analysis.accuracy_vs_threshold(exp))
    results["distances"] = _timed(timings, "distances", lambda: distances.distances(exp, cfg.distance_m))
    # beyond the paper: which tuning source transfers (fresh noise draws tune only, never evaluated)
    results["tuning_sources"] = _timed(timings, "tuning sources", lambda: tuning_sources.compare(
        exp, [tuning_sources.tuning_only(scorer, spec, load(spec)) for spec in tuning_sources.NOISE_SPECS],
        cfg.resamples))
    results["skipped"] = skipped
    timings["total"] = round(time.perf_counter() - started, 2)
    results["provenance"] = provenance(cfg, suite, model, path, exp, scorer, timings)
    write_results(results, out)
    return results


def provenance(cfg: RunConfig, suite: Suite, model: torch.nn.Module, path: Path | None, exp: Experiment,
               scorer: Scorer, timings: dict[str, float]) -> dict[str, Any]:
    ids = exp.id_set
    ev = ids.split.eval
    acc = float((ids.logits[ev].argmax(1) == ids.labels[ev]).mean()) if (ids.labels[ev] >= 0).all() else None
    return {
        "library": {"odin_ood": odin_ood.__version__, "torch": torch.__version__, "numpy": np.__version__,
                    "python": sys.version.split()[0], "git_commit": _git_commit()},
        "device": _device_name(cfg.device), "platform": platform.platform(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(["odin-ood", *sys.argv[1:]]) if sys.argv and "odin_ood" in sys.argv[0] else None,
        "config": asdict(cfg) | {"cache_dir": str(scorer.cache.folder)},
        "model": {"name": getattr(model, "arch", suite.model), "weights": str(path) if path else "shipped with odin-ood",
                  "weights_sha256": sha256_file(path) if path else None, "fingerprint": scorer.fingerprint,
                  "input_mean": list(model.input_mean), "input_std": list(model.input_std),
                  "num_classes": int(model.num_classes), "id_eval_accuracy": acc},
        "grid": {"temperatures": list(scorer.temperatures), "epsilons": list(scorer.epsilons),
                 "epsilon_units": "pixel units of [0, 1] images; the step is divided by the model's input_std"},
        "paper_row": exp.paper_row, "paper_row_matches_model": exp.paper_matches,
        "datasets": {"id": {"key": ids.key, "label": ids.label, **ids.manifest},
                     "ood": [{"key": o.key, "label": o.label, **o.manifest} for o in exp.oods]},
        "cache": {"hits": scorer.cache.hits, "misses": scorer.cache.misses, "enabled": scorer.cache.enabled},
        "timings_s": timings,
    }


def write_results(results: dict[str, Any], out: Path) -> None:
    """``results.json`` (everything) and ``results.csv`` (the main table, one row per set and method)."""
    (out / "results.json").write_text(json.dumps(results, indent=1, default=_json_default) + "\n")
    fields = ["suite", "ood", "label", "method", "temperature", "epsilon", "n_in", "n_out"]
    fields += [f"{m}{s}" for m in METRICS for s in ("", "_ci_low", "_ci_high", "_paper")] + ["paper_source"]
    with open(out / "results.csv", "w", newline="") as f:
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


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path, os.PathLike)):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
