"""Which tuning source transfers to unseen OOD sets (beyond the paper): the question users ask
when they have no OOD data, answered from the suite's scores.

Each source chooses ODIN's (T, epsilon) from data it may see; every choice is then evaluated on
each OOD set's EVALUATION split against the ID evaluation split, with bootstrap intervals:

(a) ``noise`` — fresh Gaussian + Uniform noise (seeds 0 and 1, as ``Detector.fit`` draws it; the
    suite's own noise sets use seeds 101 and 102), pooled, vs the ID tuning split: the cell
    minimising FPR at 95% TPR, found by the suite's search. ``Detector.fit``'s default without OOD data.
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
(f) ``oracle`` — the evaluated images themselves: an upper bound, and the only source that sees
    the data it is evaluated on.

``msp`` (T = 1, epsilon = 0) is shown for reference. No source other than the oracle reads an
evaluation split, and for every source the images it tuned on are compared by content with the
evaluated images: each row records ``overlap``, the number of its tuning images that also occur
among them (0 unless a dataset holds exact duplicates).

Cost. With the full grid scored on every image (GPU, MNIST) every number is read from arrays and
every evaluation image counts. Without it (the CPU path) each choice costs the suite's search on
the images it tunes on, and each evaluated set is a seeded subsample of at most ``eval_limit``
images of its evaluation split (recorded), scored at the cells chosen, once each (cached).
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import time
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from odin_ood.data import ImageDataset
from odin_ood.experiments import paper
from odin_ood.experiments.bootstrap import bootstrap_ci
from odin_ood.experiments.choose import tune_set, tuned
from odin_ood.experiments.protocol import Experiment, Scored, Split, dataset_seed, select_cell
from odin_ood.experiments.scorer import Scorer
from odin_ood.experiments.suites import NOISE_LOADERS, DataSpec
from odin_ood.metrics import evaluate
from odin_ood.tuning.grid import id_only_from_scores

NOISE_SPECS = (
    DataSpec("tuning-gaussian", "Gaussian (tuning draw, seed 0)", "gaussian", {"count": 1000, "seed": 0}),
    DataSpec("tuning-uniform", "Uniform (tuning draw, seed 1)", "uniform", {"count": 1000, "seed": 1}),
)
OOD_FREE = ("noise", "id-only-t1000", "id-only-t1", "paper")
REPORTED = ("fpr_at_95_tpr", "auroc")
EVAL_LIMIT_CPU = 2000  # evaluated images per set without the full grid (the CPU path)
Choice = tuple[float, float]


def noise_set(scorer: Scorer, draws: list[tuple[DataSpec, ImageDataset]], full_grid: bool) -> Scored:
    """The noise draws pooled into one set used only for tuning (every image tunes, none is
    evaluated); scored at every cell when the suite scores the full grid, else on demand."""
    images = torch.cat([ds.images for _, ds in draws])
    first = draws[0][1]
    pooled = ImageDataset(
        images,
        name="tuning-noise",
        mean=first.mean,
        std=first.std,
        manifest={"pooled": [ds.manifest for _, ds in draws]},
    )
    arrays = scorer.grid(pooled) if full_grid else None
    return Scored(
        key="tuning-noise",
        label=" + ".join(spec.label for spec, _ in draws),
        data=pooled,
        grid=None if arrays is None else arrays["grid"],
        logits=None if arrays is None else arrays["logits"],
        split=Split(np.arange(len(pooled)), np.arange(0), -1),
        manifest={
            "sets": [
                {"key": spec.key, "loader": spec.loader, "kwargs": spec.kwargs, "n": len(ds), "dataset": ds.manifest}
                for spec, ds in draws
            ]
        },
    )


def is_natural(s: Scored) -> bool:
    return s.manifest.get("loader") not in NOISE_LOADERS


def _cell(scorer: Scorer, i: int, j: int) -> Choice:
    return scorer.temperatures[i], scorer.epsilons[j]


def noise_choice(exp: Experiment, noise: Scored) -> Choice:
    """(a): the cell minimising FPR at 95% TPR, ID tuning split vs the pooled noise draws, by the
    suite's search (not stored among the per-set tunings)."""
    return _cell(exp.scorer, *tune_set(exp, noise).index)


def id_only_choice(exp: Experiment, temperature: float) -> Choice | None:
    """(b): at fixed T, the epsilon maximising the mean score of the ID tuning split (ties: the
    smallest epsilon; :func:`odin_ood.tuning.id_only_from_scores`); None when T is not on the grid."""
    s = exp.scorer
    rows = [k for k, t in enumerate(s.temperatures) if abs(t - temperature) < 1e-9]
    if not rows:
        return None
    ids = exp.id_set
    if ids.grid is not None:
        scores = ids.tune()[rows[0]]
    else:
        scores = s.grid(ids.data.subset(torch.from_numpy(ids.split.tune)), temperatures=[s.temperatures[rows[0]]])[
            "grid"
        ][0]
    chosen = id_only_from_scores(scores, s.temperatures[rows[0]], s.epsilons)
    return chosen.temperature, chosen.epsilon


def evaluated_rows(scored: Scored, limit: int | None, seed: int) -> np.ndarray:
    """The evaluation split, or a seeded subsample of at most ``limit`` of its images (sorted)."""
    ev = scored.split.eval
    if limit is None or ev.size <= limit:
        return ev
    return np.sort(
        np.random.default_rng(dataset_seed(seed, f"{scored.key}/tuning-sources")).choice(ev, limit, replace=False)
    )


class Evaluation:
    """What the oracle sees: the ID and target images evaluated (rows), with a sibling experiment
    whose tuning splits ARE those rows (so the suite's search chooses the oracle's cell when the
    full grid is not at hand)."""

    def __init__(self, exp: Experiment, limit: int | None) -> None:
        self.exp, self.limit = exp, limit
        self.id_rows = evaluated_rows(exp.id_set, limit, exp.seed)
        self.oracle_exp = dataclasses.replace(
            exp,
            id_set=dataclasses.replace(exp.id_set, split=Split(self.id_rows, self.id_rows, -1)),
            tunings={},
            shared_id=None,
        )

    def rows(self, target: Scored) -> np.ndarray:
        return evaluated_rows(target, self.limit, self.exp.seed)

    def oracle(self, target: Scored) -> Choice:
        """(f): the cell minimising FPR at 95% TPR on the evaluated images themselves."""
        rows, ids = self.rows(target), self.exp.id_set
        if ids.grid is not None and target.grid is not None:
            return _cell(self.exp.scorer, *select_cell(ids.grid[..., self.id_rows], target.grid[..., rows]))
        seen = dataclasses.replace(target, split=Split(rows, rows, -1))
        return _cell(self.exp.scorer, *tune_set(self.oracle_exp, seen).index)


def set_free_choices(exp: Experiment, noise: Scored) -> dict[str, tuple[Choice, str]]:
    """The choices that do not depend on the evaluated set: MSP, (a) noise and (b) ID only."""
    out: dict[str, tuple[Choice, str]] = {
        "msp": ((1.0, 0.0), "nothing (reference)"),
        "noise": (noise_choice(exp, noise), "ID tuning split + fresh noise"),
    }
    for t in (1000.0, 1.0):
        c = id_only_choice(exp, t)
        if c is not None:
            out[f"id-only-t{t:g}"] = (c, "ID tuning split only (mean score)")
    return out


def choices(
    exp: Experiment,
    noise: Scored,
    target: Scored,
    evaluation: Evaluation | None = None,
    oracle: bool = True,
    free: dict[str, tuple[Choice, str]] | None = None,
) -> dict[str, tuple[Choice, str]]:
    """{source key: ((T, epsilon), what it was tuned on)} for one evaluated set (``oracle=False``:
    without the oracle, whose search on the evaluated images is the costliest source without
    the full grid; ``free``: :func:`set_free_choices`, when already computed for another set)."""
    s = exp.scorer
    evaluation = evaluation or Evaluation(exp, None)
    out = dict(free if free is not None else set_free_choices(exp, noise))
    p = paper.parameters(exp.paper_row, target.paper_key)
    if p is not None:
        out["paper"] = (
            (float(p[0]), float(p[1])),
            f"the paper's table ({exp.paper_row})" + ("" if exp.paper_matches else ", another network"),
        )
    for a in exp.oods:
        if a.key != target.key and is_natural(a):
            out[f"loo:{a.key}"] = (_cell(s, *tuned(exp, a).index), f"ID tuning split + {a.label} tuning split")
    out["same-set"] = (_cell(s, *tuned(exp, target).index), "ID tuning split + this set's tuning split")
    if oracle:
        out["oracle"] = (evaluation.oracle(target), "ORACLE: the evaluated ID and OOD images")
    return out


def _hashes(images: np.ndarray) -> set[bytes]:
    return {hashlib.sha1(row.tobytes()).digest() for row in images.reshape(len(images), -1)}


def _tuning_images(exp: Experiment, noise: Scored, key: str, target: Scored) -> list[np.ndarray]:
    """The images a non-oracle source tuned on (the ID tuning split is always among them)."""
    ids = [exp.id_set.data.images.numpy()[exp.id_set.split.tune]]
    sources = {"noise": [noise], "same-set": [target]}
    if key.startswith("loo:"):
        sources[key] = [o for o in exp.oods if o.key == key[4:]]
    if not key.startswith("id-only") and key not in sources:
        return []  # msp, paper: no data
    return ids + [s.data.images.numpy()[s.split.tune] for s in sources.get(key, [])]


def overlaps(
    exp: Experiment, noise: Scored, target: Scored, keys: list[str], evaluation: Evaluation | None = None
) -> dict[str, int]:
    """{source: how many of the images it tuned on occur, by content, among the evaluated images
    (ID and ``target``)}, for non-oracle sources."""
    evaluation = evaluation or Evaluation(exp, None)
    evaluated = _hashes(exp.id_set.data.images.numpy()[evaluation.id_rows]) | _hashes(
        target.data.images.numpy()[evaluation.rows(target)]
    )
    return {
        key: sum(len(_hashes(images) & evaluated) for images in _tuning_images(exp, noise, key, target))
        for key in keys
        if key != "oracle"
    }


def compare(
    exp: Experiment,
    noise: Scored,
    resamples: int = 200,
    eval_limit: int | None = None,
    progress: bool = False,
    oracle: bool = True,
) -> dict[str, Any]:
    """Per OOD set: each source's (T, epsilon) and its FPR at 95% TPR and AUROC (with 95%
    bootstrap intervals) on the evaluated images (the evaluation splits, or seeded subsamples of
    at most ``eval_limit`` images); a summary over the real OOD sets and a verdict. ``progress``
    prints one line per set (with the time it took) to stderr; ``oracle=False`` leaves the oracle out."""
    evaluation = Evaluation(exp, eval_limit)
    cache: dict[tuple[str, float, float], dict[str, Any]] = {}

    def measure(target: Scored, choice: Choice) -> dict[str, Any]:
        key = (target.key, *choice)
        if key not in cache:
            s_in = exp.scores_at(exp.id_set, *choice, evaluation.id_rows)
            s_out = exp.scores_at(target, *choice, evaluation.rows(target))
            seed = exp.seed + zlib.crc32(repr(key).encode()) % 100_000
            ci = bootstrap_ci(s_in, s_out, resamples, seed=seed)
            m = evaluate(s_in, s_out)
            cache[key] = {
                "metrics": {k: m[k] for k in REPORTED},
                "ci95": {k: ci[k] for k in REPORTED},
                "n_in": int(s_in.size),
                "n_out": int(s_out.size),
            }
        return cache[key]

    sets = {}
    free = set_free_choices(exp, noise)
    for number, target in enumerate(exp.oods, 1):
        started = time.perf_counter()
        found = choices(exp, noise, target, evaluation, oracle, free)
        shared = overlaps(exp, noise, target, list(found), evaluation)
        sets[target.key] = {
            "label": target.label,
            "natural": is_natural(target),
            "rows": [
                {
                    "source": k,
                    "temperature": c[0],
                    "epsilon": c[1],
                    "tuned_on": what,
                    "overlap": shared.get(k),
                    **measure(target, c),
                }
                for k, (c, what) in found.items()
            ],
        }
        if progress:
            print(
                f"[tuning sources] {number}/{len(exp.oods)} {target.key}: {len(found)} sources "
                f"({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    summary = summarise(sets)
    return {
        "sets": sets,
        "summary": summary,
        "verdict": verdict(summary),
        "noise_tuning_sets": noise.manifest.get("sets", [{"key": noise.key}]),
        "search": exp.search,
        "oracle": "computed"
        if oracle
        else "left out (--no-sources-oracle): its search on the evaluated images was not affordable in this run",
        "evaluated": {
            "limit": eval_limit,
            "seed": exp.seed,
            "note": "every image of each evaluation split"
            if eval_limit is None
            else f"a seeded subsample of at most {eval_limit} images of each evaluation split "
            "(the full grid was not scored on every image)",
        },
        "bootstrap": {"resamples": resamples, "level": 0.95},
    }


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
    return {
        g: {
            "mean_fpr_at_95_tpr": float(np.mean([v[0] for v in d["values"]])),
            "mean_auroc": float(np.mean([v[1] for v in d["values"]])),
            "sets": len(d["values"]),
        }
        for g, d in per.items()
    }


def verdict(summary: dict[str, dict[str, float]], pick: Callable[[str], bool] = lambda k: k in OOD_FREE) -> str:
    """One line: the best OOD-free source by mean FPR at 95% TPR over the real OOD sets, beside the
    oracle and the leave-one-out transfer."""
    free = {k: v for k, v in summary.items() if pick(k)}
    if not free:
        return "no real (non-noise) OOD set was evaluated: no verdict"
    best = min(free, key=lambda k: (free[k]["mean_fpr_at_95_tpr"], -free[k]["mean_auroc"]))

    def fmt(k: str) -> str:
        return f"{k} {100 * summary[k]['mean_fpr_at_95_tpr']:.1f}% / {100 * summary[k]['mean_auroc']:.1f}"

    others = ", ".join(
        fmt(k)
        for k in (*OOD_FREE, "loo (mean over sources)", "same-set", "oracle", "msp")
        if k in summary and k != best
    )
    n = summary[best]["sets"]
    tied = [k for k in free if k != best and free[k]["mean_fpr_at_95_tpr"] == free[best]["mean_fpr_at_95_tpr"]]
    tie = f", tied with {', '.join(tied)}" if tied else ""
    return (
        f"best OOD-free tuning here: {fmt(best)} (mean FPR@95 / AUROC over {n} real OOD set{'s' * (n != 1)}{tie}); "
        f"others: {others}"
    )
