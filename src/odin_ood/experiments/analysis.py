"""Section 5 and Appendix I analyses: why temperature scaling and input preprocessing help.

* U1 and U2 (eq. 4) from the logits f: U1 = mean_{i != yhat} (f_yhat - f_i) and
  U2 = mean_{i != yhat} (f_yhat - f_i)^2; the density of U1 and E[U2 | U1] per dataset
  (Figures 5a-b, 10).
* The gradient norm ||grad_x log S_yhat(x; T)||_1 in PIXEL space (x in [0, 1]; for a model on
  normalised inputs z = (x - mean)/std, grad_x = grad_z / std), its density and E[norm | S] at
  T = 1 and T = 1000 (Figures 5c-e, 11, 12), on up to ``analysis_n`` evaluation images per set.
* Per-class outputs for one ID and one OOD image (Figures 5f-g, 17).
* Classification accuracy of the ID images above / below the threshold delta set for a given
  TPR (Figure 16, Appendix I), for MSP and ODIN.

Densities are histograms (``density=True``) on a common range per figure; conditional
expectations average the y values in bins of x holding equal shares of the pooled x values
(bins with < 5 samples are None).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from odin_ood.experiments import paper
from odin_ood.experiments.choose import tuned
from odin_ood.experiments.protocol import Experiment, Scored
from odin_ood.experiments.scorer import CHUNK, Scorer
from odin_ood.metrics import threshold_at_tpr
from odin_ood.scores.passes import model_device, scoring_mode

TPRS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
GRAD_TEMPERATURES = (1.0, 1000.0)


def u1_u2(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(U1, U2) of eq. (4) for each row of ``logits`` (N, C)."""
    f = np.asarray(logits, np.float64)
    delta = f.max(axis=1, keepdims=True) - f  # f_yhat - f_i, zero at yhat
    n = f.shape[1] - 1
    return delta.sum(axis=1) / n, (delta**2).sum(axis=1) / n


def gradient_norms(scorer: Scorer, images: torch.Tensor, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """(||grad_x log S_yhat(x; T)||_1 in pixel space, S_yhat(x; T)) for uint8 ``images``."""
    model = scorer.model
    device = model_device(model, torch.device("cpu"))
    std = scorer.std.to(device)
    norms, scores = [], []
    with scoring_mode(model):
        for batch in images.split(scorer.batch_size):
            z = scorer.inputs(batch).to(device).requires_grad_(True)
            with torch.enable_grad():
                log_s = F.log_softmax(model(z) / temperature, dim=1).amax(dim=1)
                (grad,) = torch.autograd.grad(log_s.sum(), z)
            norms.append((grad / std).abs().flatten(1).sum(1).cpu())
            scores.append(log_s.detach().exp().cpu())
    return torch.cat(norms).numpy(), torch.cat(scores).numpy()


def cached_gradient_norms(scorer: Scorer, scored: Scored, idx: np.ndarray, temperature: float) -> dict[str, np.ndarray]:
    sub = scored.data.subset(torch.from_numpy(idx))
    key = scorer._key(sub, "gradnorm", temperature=float(temperature))

    def compute() -> dict[str, np.ndarray]:
        parts = [gradient_norms(scorer, sub.images[s : s + CHUNK], temperature) for s in range(0, len(sub), CHUNK)]
        return {"norm": np.concatenate([p[0] for p in parts]), "score": np.concatenate([p[1] for p in parts])}

    return scorer.cache.get(key, compute)


def density(values: dict[str, np.ndarray], bins: int = 60, log: bool = False) -> dict[str, Any]:
    """Histogram densities of each array on one common range (1st-99th pooled percentile)."""
    pooled = np.concatenate(list(values.values()))
    if log:
        pooled = np.log10(np.maximum(pooled, 1e-12))
    lo, hi = np.quantile(pooled, [0.01, 0.99])
    hi = hi if hi > lo else lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    out = {}
    for k, v in values.items():
        v = np.log10(np.maximum(v, 1e-12)) if log else v
        out[k] = np.histogram(np.clip(v, lo, hi), edges, density=True)[0].tolist()
    return {"centres": ((edges[1:] + edges[:-1]) / 2).tolist(), "log10": log, "density": out}


def conditional_mean(
    x: dict[str, np.ndarray], y: dict[str, np.ndarray], bins: int = 20, min_count: int = 5
) -> dict[str, Any]:
    """E[y | x] per dataset in bins of x with equal pooled counts (quantiles of all sets' x
    between the 1st and 99th percentile), so skewed x (MSP near 1) still gets resolution."""
    edges = np.unique(np.quantile(np.concatenate(list(x.values())), np.linspace(0.01, 0.99, bins + 1)))
    if edges.size < 2:
        edges = np.array([edges[0], edges[0] + 1e-12])
    lo, hi, bins = edges[0], edges[-1], edges.size - 1
    out = {}
    for k in x:
        which = np.clip(np.digitize(x[k], edges) - 1, 0, bins - 1)
        inside = (x[k] >= lo) & (x[k] <= hi)
        means = []
        for b in range(bins):
            sel = inside & (which == b)
            means.append(float(y[k][sel].mean()) if sel.sum() >= min_count else None)
        out[k] = means
    return {"centres": ((edges[1:] + edges[:-1]) / 2).tolist(), "mean": out}


def _eval_subset(scored: Scored, n: int) -> np.ndarray:
    return scored.split.eval[:n]


def class_profiles(exp: Experiment) -> dict[str, Any]:
    """Logits of one ID image (a correctly classified 'dog' when the classes have one, else the
    first correctly classified evaluation image) and of the first evaluation image of the first
    natural-image OOD set."""
    ids = exp.id_set
    classes = list(ids.data.classes) if ids.data.classes else [str(c) for c in range(ids.full_logits().shape[1])]
    pred = ids.full_logits().argmax(1)
    ok = [i for i in ids.split.eval if pred[i] == ids.labels[i]]
    want = classes.index("dog") if "dog" in classes else None
    i_id = next((i for i in ok if want is None or ids.labels[i] == want), ok[0] if ok else int(ids.split.eval[0]))
    natural = [o for o in exp.oods if o.paper_key not in ("gaussian", "uniform")] or exp.oods
    ood = natural[0]
    i_ood = int(ood.split.eval[0])
    return {
        "classes": classes,
        "id": {
            "set": ids.label,
            "index": int(i_id),
            "label": classes[int(ids.labels[i_id])] if ids.labels[i_id] >= 0 else None,
            "logits": ids.full_logits()[i_id].tolist(),
        },
        "ood": {"set": ood.label, "index": i_ood, "logits": ood.full_logits()[i_ood].tolist()},
    }


def accuracy_vs_threshold(exp: Experiment) -> dict[str, Any]:
    """Figure 16: accuracy on the ID evaluation images scoring above / below the delta that keeps
    a fraction TPR of them, for MSP and ODIN (paper parameters when known, else the first set's tuned)."""
    ids = exp.id_set
    ev = ids.split.eval
    labels = ids.labels[ev]
    if (labels < 0).any():
        return {"skipped": "the ID set is unlabelled"}
    correct = ids.full_logits()[ev].argmax(1) == labels
    params = next((p for p in (paper.parameters(exp.paper_row, o.paper_key) for o in exp.oods) if p), None)
    if params is None:
        t = tuned(exp, exp.oods[0])
        params = (t.temperature, t.epsilon)
    methods = {"msp": (1.0, 0.0), "odin": params}
    out: dict[str, Any] = {"tprs": list(TPRS), "accuracy": float(correct.mean()), "methods": {}}
    for name, (T, eps) in methods.items():
        s = (exp.msp(ids) if (T, eps) == (1.0, 0.0) else exp.scores(ids, T, eps))[ev]
        above, below = [], []
        for tpr in TPRS:
            keep = s >= threshold_at_tpr(s, tpr)
            above.append(float(correct[keep].mean()) if keep.any() else None)
            below.append(float(correct[~keep].mean()) if (~keep).any() else None)
        out["methods"][name] = {"temperature": T, "epsilon": eps, "above": above, "below": below}
    return out


def section5(exp: Experiment, analysis_n: int = 2000) -> dict[str, Any]:
    """U1/U2 and gradient-norm statistics over the ID and OOD evaluation splits."""
    sets = [exp.id_set, *exp.oods]
    labels = {s.key: s.label for s in sets}
    u1, u2 = {}, {}
    for s in sets:
        u1[s.key], u2[s.key] = u1_u2(s.full_logits()[s.split.eval])
    out: dict[str, Any] = {
        "id_key": exp.id_set.key,
        "labels": labels,
        "u1_density": density(u1),
        "u2_given_u1": conditional_mean(u1, u2),
        "u1_mean": {k: float(v.mean()) for k, v in u1.items()},
        "u2_mean": {k: float(v.mean()) for k, v in u2.items()},
        "analysis_n": analysis_n,
        "gradient": {},
    }
    for T in GRAD_TEMPERATURES:
        g = {s.key: cached_gradient_norms(exp.scorer, s, _eval_subset(s, analysis_n), T) for s in sets}
        norms = {k: v["norm"] for k, v in g.items()}
        out["gradient"][f"{T:g}"] = {
            "density": density(norms, log=True),
            "norm_given_score": conditional_mean({k: v["score"] for k, v in g.items()}, norms),
            "median": {k: float(np.median(v)) for k, v in norms.items()},
        }
    return out
