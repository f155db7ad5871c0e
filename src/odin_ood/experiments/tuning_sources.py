"""Which tuning source transfers to unseen OOD sets (beyond the paper): the question users ask
when they have no OOD data, answered from the suite's cached grid scores.

Each source chooses ODIN's (T, epsilon) from data it may see; every choice is then evaluated on
each OOD set's EVALUATION split against the ID evaluation split, with bootstrap intervals:

(a) ``noise`` — fresh Gaussian + Uniform noise (seeds 0 and 1, as ``Detector.fit`` draws it; the
    suite's own noise sets use seeds 101 and 102), pooled, vs the ID tuning split: the cell
    minimising FPR at 95% TPR. Today's no-OOD default of ``Detector.fit``.
(b) ``id-only-t1000`` / ``id-only-t1`` — ID data only, the Generalized-ODIN criterion (Hsu et
    al., CVPR 2020, section 3.3): the epsilon maximising the MEAN score of the ID tuning split.
    The criterion cannot choose T (a larger T lowers every max-softmax score), so T is fixed by
    rule: 1000 (ODIN's usual choice) and, as a second row, 1.
(c) ``paper`` — the paper's published (T, epsilon) for the network and the evaluated set
    (Appendix A.2; for a network not in the paper, the reference row's, labelled as such).
(d) ``loo:<A>`` — each other real (non-noise) OOD set A of the suite, tuned on A's tuning split
    (Appendix H, leave-one-out). Sets built from the same source images (TinyImageNet crop and
    resize) are different images but the same scenes, as in the paper's Table 10.
(e) ``same-set`` — the evaluated set's own tuning split (section 4.4, the main table's tuned ODIN).
(f) ``oracle`` — the evaluated set's evaluation split itself: an upper bound, and the only source
    that sees the data it is evaluated on.

``msp`` (T = 1, epsilon = 0) is shown for reference. No source other than the oracle reads an
evaluation split, and for every source the images it tuned on are compared by content with the
evaluated images: each row records ``overlap``, the number of its tuning images that also occur
among them (0 unless a dataset holds exact duplicates).
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Any, Callable

import numpy as np

from odin_ood.data import ImageDataset
from odin_ood.experiments import paper
from odin_ood.experiments.bootstrap import bootstrap_ci
from odin_ood.experiments.protocol import Experiment, Scored, Scorer, Split, select_cell
from odin_ood.experiments.suites import NOISE_LOADERS, DataSpec
from odin_ood.metrics import evaluate

NOISE_SPECS = (DataSpec("tuning-gaussian", "Gaussian (tuning draw, seed 0)", "gaussian", {"count": 1000, "seed": 0}),
               DataSpec("tuning-uniform", "Uniform (tuning draw, seed 1)", "uniform", {"count": 1000, "seed": 1}))
OOD_FREE = ("noise", "id-only-t1000", "id-only-t1", "paper")
REPORTED = ("fpr_at_95_tpr", "auroc")
Choice = tuple[float, float]


def tuning_only(scorer: Scorer, spec: DataSpec, ds: ImageDataset) -> Scored:
    """A scored set used only for tuning: every image in its tuning split, none evaluated."""
    arrays = scorer.grid(ds)
    split = Split(tune=np.arange(len(ds)), eval=np.arange(0), seed=-1)
    return Scored(key=spec.key, label=spec.label, data=ds, grid=arrays["grid"], logits=arrays["logits"], split=split,
                  manifest={"loader": spec.loader, "kwargs": spec.kwargs, "n": len(ds), "dataset": ds.manifest})


def is_natural(s: Scored) -> bool:
    return s.manifest.get("loader") not in NOISE_LOADERS


def _cell(scorer: Scorer, i: int, j: int) -> Choice:
    return scorer.temperatures[i], scorer.epsilons[j]


def noise_choice(exp: Experiment, noise: list[Scored]) -> Choice:
    """(a): the cell minimising FPR at 95% TPR, ID tuning split vs the pooled noise tuning draws."""
    return _cell(exp.scorer, *select_cell(exp.id_set.tune(), np.concatenate([n.tune() for n in noise], axis=-1)))


def id_only_choice(exp: Experiment, temperature: float) -> Choice | None:
    """(b): at fixed T, the epsilon maximising the mean score of the ID tuning split (ties: the
    smallest epsilon); None when T is not on the grid."""
    s = exp.scorer
    rows = [k for k, t in enumerate(s.temperatures) if abs(t - temperature) < 1e-9]
    if not rows:
        return None
    means = exp.id_set.tune()[rows[0]].astype(np.float64).mean(axis=-1)
    return s.temperatures[rows[0]], s.epsilons[int(np.argmax(means))]


def choices(exp: Experiment, noise: list[Scored], target: Scored) -> dict[str, tuple[Choice, str]]:
    """{source key: ((T, epsilon), what it was tuned on)} for one evaluated set."""
    s = exp.scorer
    out: dict[str, tuple[Choice, str]] = {
        "msp": ((1.0, 0.0), "nothing (reference)"),
        "noise": (noise_choice(exp, noise), "ID tuning split + fresh noise"),
    }
    for t in (1000.0, 1.0):
        c = id_only_choice(exp, t)
        if c is not None:
            out[f"id-only-t{t:g}"] = (c, "ID tuning split only (mean score)")
    p = paper.parameters(exp.paper_row, target.paper_key)
    if p is not None:
        out["paper"] = ((float(p[0]), float(p[1])), f"the paper's table ({exp.paper_row})"
                        + ("" if exp.paper_matches else ", another network"))
    for a in exp.oods:
        if a.key != target.key and is_natural(a):
            out[f"loo:{a.key}"] = (_cell(s, *exp.tuning(a).index), f"ID tuning split + {a.label} tuning split")
    out["same-set"] = (_cell(s, *exp.tuning(target).index), "ID tuning split + this set's tuning split")
    out["oracle"] = (_cell(s, *select_cell(exp.id_set.eval(), target.eval())),
                     "ORACLE: ID and this set's evaluation splits")
    return out


def _hashes(images: np.ndarray) -> set[bytes]:
    return {hashlib.sha1(row.tobytes()).digest() for row in images.reshape(len(images), -1)}


def _tuning_images(exp: Experiment, noise: list[Scored], key: str, target: Scored) -> list[np.ndarray]:
    """The images a non-oracle source tuned on (the ID tuning split is always among them)."""
    ids = [exp.id_set.data.images.numpy()[exp.id_set.split.tune]]
    sources = {"noise": noise, "same-set": [target]}
    if key.startswith("loo:"):
        sources[key] = [o for o in exp.oods if o.key == key[4:]]
    if not key.startswith("id-only") and key not in sources:
        return []  # msp, paper: no data
    return ids + [s.data.images.numpy()[s.split.tune] for s in sources.get(key, [])]


def overlaps(exp: Experiment, noise: list[Scored], target: Scored, keys: list[str]) -> dict[str, int]:
    """{source: how many of the images it tuned on occur, by content, among the evaluated images
    (ID and ``target`` evaluation splits)}, for non-oracle sources."""
    evaluated = _hashes(exp.id_set.data.images.numpy()[exp.id_set.split.eval]) | _hashes(
        target.data.images.numpy()[target.split.eval])
    return {key: sum(len(_hashes(images) & evaluated) for images in _tuning_images(exp, noise, key, target))
            for key in keys if key != "oracle"}


def compare(exp: Experiment, noise: list[Scored], resamples: int = 200) -> dict[str, Any]:
    """Per OOD set: each source's (T, epsilon) and its FPR at 95% TPR and AUROC (with 95%
    bootstrap intervals) on the evaluation splits; a summary over the real OOD sets and a verdict."""
    s = exp.scorer
    cache: dict[tuple[str, float, float], dict[str, Any]] = {}

    def measure(target: Scored, choice: Choice) -> dict[str, Any]:
        key = (target.key, *choice)
        if key not in cache:
            s_in = exp.scores(exp.id_set, *choice)[exp.id_set.split.eval]
            s_out = exp.scores(target, *choice)[target.split.eval]
            seed = exp.seed + zlib.crc32(repr(key).encode()) % 100_000
            ci = bootstrap_ci(s_in, s_out, resamples, seed=seed)
            m = evaluate(s_in, s_out)
            cache[key] = {"metrics": {k: m[k] for k in REPORTED}, "ci95": {k: ci[k] for k in REPORTED},
                          "n_in": int(s_in.size), "n_out": int(s_out.size)}
        return cache[key]

    sets = {}
    for target in exp.oods:
        found = choices(exp, noise, target)
        shared = overlaps(exp, noise, target, list(found))
        sets[target.key] = {"label": target.label, "natural": is_natural(target), "rows": [
            {"source": k, "temperature": c[0], "epsilon": c[1], "tuned_on": what, "overlap": shared.get(k),
             **measure(target, c)} for k, (c, what) in found.items()]}
    summary = summarise(sets)
    return {"sets": sets, "summary": summary, "verdict": verdict(summary),
            "noise_tuning_sets": [{"key": n.key, "label": n.label, **n.manifest} for n in noise],
            "bootstrap": {"resamples": resamples, "level": 0.95}}


def _group(source: str) -> str:
    return "loo (mean over sources)" if source.startswith("loo:") else source


def summarise(sets: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Mean FPR at 95% TPR and AUROC of each source over the REAL (non-noise) OOD sets it was
    evaluated on (leave-one-out: averaged over its sources first, per set)."""
    per: dict[str, dict[str, list[list[float]]]] = {}
    for entry in sets.values():
        if not entry["natural"]:
            continue
        local: dict[str, list[list[float]]] = {}
        for r in entry["rows"]:
            local.setdefault(_group(r["source"]), []).append([r["metrics"][m] for m in REPORTED])
        for g, values in local.items():
            per.setdefault(g, {"values": []})["values"].append(np.mean(values, axis=0).tolist())
    return {g: {"mean_fpr_at_95_tpr": float(np.mean([v[0] for v in d["values"]])),
                "mean_auroc": float(np.mean([v[1] for v in d["values"]])), "sets": len(d["values"])}
            for g, d in per.items()}


def verdict(summary: dict[str, dict[str, float]], pick: Callable[[str], bool] = lambda k: k in OOD_FREE) -> str:
    """One line: the best OOD-free source by mean FPR at 95% TPR over the real OOD sets, beside the
    oracle and the leave-one-out transfer."""
    free = {k: v for k, v in summary.items() if pick(k)}
    if not free:
        return "no real (non-noise) OOD set was evaluated: no verdict"
    best = min(free, key=lambda k: (free[k]["mean_fpr_at_95_tpr"], -free[k]["mean_auroc"]))
    fmt = lambda k: f"{k} {100 * summary[k]['mean_fpr_at_95_tpr']:.1f}% / {100 * summary[k]['mean_auroc']:.1f}"  # noqa: E731
    others = ", ".join(fmt(k) for k in (*OOD_FREE, "loo (mean over sources)", "same-set", "oracle", "msp")
                       if k in summary and k != best)
    n = summary[best]["sets"]
    tied = [k for k in free if k != best and free[k]["mean_fpr_at_95_tpr"] == free[best]["mean_fpr_at_95_tpr"]]
    tie = f", tied with {', '.join(tied)}" if tied else ""
    return (f"best OOD-free tuning here: {fmt(best)} (mean FPR@95 / AUROC over {n} real OOD set{'s' * (n != 1)}{tie}); "
            f"others: {others}")
