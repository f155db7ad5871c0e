"""What a suite runs on: its model (the shipped one or ``--weights``) and its datasets, loaded
from the data root; and, for ``odin-ood reproduce --list``, whether a suite can run here."""

from __future__ import annotations

from pathlib import Path

import torch

from odin_ood import data, models
from odin_ood.data.dataset import resolve_root
from odin_ood.experiments import suites
from odin_ood.experiments.suites import DataSpec, Suite
from odin_ood.preprocess.model_input import declared_input


def load_spec(spec: DataSpec, root: Path, model: torch.nn.Module) -> data.ImageDataset:
    kw = dict(spec.kwargs)
    if spec.loader in suites.NOISE_LOADERS:
        kw["shape"] = declared_input(model).shape
    return data.load(spec.loader, root=root, **kw)


def failure_reason(exc: Exception) -> str:
    """``Type: first line`` of why a dataset or model could not be loaded."""
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
    """ "ok ..." or the reason the suite cannot run (model or every ID set missing), for ``--list``."""
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
            reasons.append(f"{spec.key}: {failure_reason(exc)}")
            continue
        return f"ok: ID {spec.label} ({len(ds)} images); missing OOD sets are skipped when run"
    return "skipped: no in-distribution set: " + "; ".join(reasons)
