"""A run's folder: ``RUNNING.json`` while it is under way (earlier results set aside as
``*.previous``), then ``results.json`` (everything, with the run's provenance: library versions,
device, config, model, data, timings) and ``results.csv`` (the main table)."""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from odin_ood import data
from odin_ood._utils.files import write_file
from odin_ood._version import __version__
from odin_ood.data.dataset import sha256_file
from odin_ood.experiments.config import RunConfig
from odin_ood.experiments.protocol import Experiment, Scored
from odin_ood.experiments.scorer import Scorer
from odin_ood.experiments.suites import DataSpec, Suite
from odin_ood.metrics import METRICS
from odin_ood.preprocess.model_input import declared_input


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"{device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def begin(out: Path, cfg: RunConfig) -> None:
    """Mark ``out`` as holding a run in progress: stale results of an earlier run are renamed
    ``*.previous`` and ``RUNNING.json`` says what is under way until the run completes."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("results.json", "results.csv", "report.html"):
        if (out / name).exists():
            os.replace(out / name, out / f"{name}.previous")
    write_file(
        out / "RUNNING.json",
        json.dumps(
            {
                "suite": cfg.suite,
                "quick": cfg.quick,
                "started_utc": _now(),
                "note": "incomplete: a run is under way or was stopped; rerun the same command to resume",
            },
            indent=1,
        )
        + "\n",
        "reproduce",
        "--out",
    )


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _listed(values: tuple[float, ...] | None) -> list[float] | None:
    return None if values is None else list(values)


def _dataset_entry(spec: DataSpec, ds: data.ImageDataset, scored: Scored | None) -> dict[str, Any]:
    if scored is not None:
        return {"key": spec.key, "label": spec.label, **scored.manifest}
    return {
        "key": spec.key,
        "label": spec.label,
        "loader": spec.loader,
        "kwargs": spec.kwargs,
        "n": len(ds),
        "split": None,
        "dataset": ds.manifest,
    }


def provenance(
    cfg: RunConfig,
    suite: Suite,
    model: torch.nn.Module,
    path: Path | None,
    scorer: Scorer,
    timings: dict[str, float],
    id_spec: DataSpec,
    id_ds: data.ImageDataset,
    oods: list[tuple[DataSpec, data.ImageDataset]],
    exp: Experiment | None,
) -> dict[str, Any]:
    acc = None
    if exp is not None and (exp.id_set.labels[exp.id_set.split.eval] >= 0).all():
        ids, ev = exp.id_set, exp.id_set.split.eval
        acc = float((ids.full_logits()[ev].argmax(1) == ids.labels[ev]).mean())
    scored = {s.key: s for s in ([exp.id_set, *exp.oods] if exp is not None else [])}
    return {
        "library": {
            "odin_ood": __version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": sys.version.split()[0],
            "git_commit": _git_commit(),
        },
        "device": _device_name(cfg.device),
        "platform": platform.platform(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(["odin-ood", *sys.argv[1:]]) if sys.argv and "odin_ood" in sys.argv[0] else None,
        "config": asdict(cfg) | {"cache_dir": str(scorer.cache.folder)},
        "model": {
            "name": getattr(model, "arch", suite.model),
            "weights": str(path) if path else "shipped with odin-ood",
            "weights_sha256": sha256_file(path) if path else None,
            "fingerprint": scorer.fingerprint,
            "input_mean": _listed(declared_input(model).mean),
            "input_std": _listed(scorer.input_std),
            "num_classes": getattr(model, "num_classes", None),
            "id_eval_accuracy": acc,
        },
        "grid": {
            "temperatures": list(scorer.temperatures),
            "epsilons": list(scorer.epsilons),
            "epsilon_units": "pixel units of [0, 1] images; the step is divided by the model's input_std",
        },
        "paper_row": suite.paper_label,
        "paper_row_matches_model": suite.paper_row is not None,
        "search": {"method": cfg.search, "applies_to": "ODIN (tuned) rows: the cell chosen on the tuning splits"},
        "precision": cfg.precision,
        "threads": torch.get_num_threads(),
        "datasets": {
            "id": _dataset_entry(id_spec, id_ds, scored.get(id_spec.key)),
            "ood": [_dataset_entry(spec, ds, scored.get(spec.key)) for spec, ds in oods],
        },
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
