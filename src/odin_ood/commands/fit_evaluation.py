"""What ``odin-ood fit`` measures and says once (T, epsilon) are tuned (:mod:`odin_ood.commands.fit`):
the threshold set on a reduced-precision runtime's scores, the held-out metrics of ODIN and MSP
(on the held-out OOD inputs, or on fresh noise), a progress bar per stage, the record's parts (the
noise that stood in for OOD data, each split's sources) and the summary it prints."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from odin_ood._utils.checks import NonFiniteScores
from odin_ood._utils.progress import PassProgress
from odin_ood.commands.heldout import Selection
from odin_ood.detector import FILENAME, Detector, threshold_below
from odin_ood.metrics import METRICS, evaluate
from odin_ood.preprocess import Preprocessing
from odin_ood.scores.family import score_passes
from odin_ood.tuning.grid import noise_ood_set


def noise_what(count: int, shape: tuple[int, ...], seed: int, fresh: str = "") -> str:
    """What a noise OOD side of ``count`` images is (half Gaussian, half Uniform, drawn in pixels at
    the model's input size, then normalised like the images; paper section 4.2), for fit.json and the output."""
    return (
        f"{count // 2} {fresh}Gaussian (each pixel N(0.5, 1) clipped to [0, 1]) + {count // 2} Uniform "
        f"(U[0, 1)) noise images of {'x'.join(map(str, shape))}, seeds {seed} and {seed + 1}"
    )


def part(images: Selection | None, count: int | None = None, what: str = "the OOD inputs") -> dict[str, Any]:
    if images is None:
        return {"count": count, "what": what, "sources": []}
    return {"count": len(images), "what": what, "sources": list(images.sources)}


def noise_count(limit: int, holdout: float, part: str) -> int:
    """Gaussian (and as many Uniform) noise images for ``part`` under ``--limit``: the noise side
    holds ``limit`` images in all, split by ``--holdout`` like real OOD inputs (at least 1 + 1)."""
    held = round(holdout * limit)
    return max(1, (held if part == "held-out" else limit - held) // 2)


@contextmanager
def naming_non_finite(id_part: Selection, ood_part: Selection | None, split_name: str) -> Iterator[None]:
    """Turn a score check's NaN error into one naming the images (by source) it came from."""
    try:
        yield
    except NonFiniteScores as exc:
        side, part = ("ID", id_part) if exc.name == "scores_in" else ("OOD", ood_part)
        names = (
            [part.sources[k] for k in exc.positions[:3]] if part is not None else [f"noise image {exc.positions[0]}"]
        )
        raise ValueError(
            f"the model's score is NaN or infinite on {len(exc.positions)} {split_name} {side} image(s), e.g. "
            f"{', '.join(names)}: remove them from the inputs (or fix the model on them) and rerun"
        ) from None


def threshold_on_runtime(
    detector: Detector, spec: Preprocessing, id_x: Tensor, runtime_name: str, tpr: float, threads: int | None
) -> Callable[[Tensor], dict[str, Tensor]]:
    """Set ``detector``'s threshold (keeping ``tpr``) from the runtime ``runtime_name``'s scores (at the detector's
    precision, T and epsilon) of the tuning ID images ``id_x`` (model inputs: the runtime takes
    their pixels, x * std + mean, within float rounding of the decoded ones) and record that
    runtime; returns its outputs on model inputs, for the held-out metrics."""
    from odin_ood.runtimes import load_runtime
    from odin_ood.runtimes.batches import fixed_batch_outputs

    def pixels(x: Tensor) -> Tensor:
        mean = torch.tensor(spec.mean if spec.mean is not None else [0.0]).view(-1, 1, 1)
        std = torch.tensor(spec.std if spec.std is not None else [1.0]).view(-1, 1, 1)
        return x.cpu() * std + mean

    detector.runtime_ = runtime_name
    runtime = load_runtime(runtime_name, detector, spec, threads=threads)  # its graph's threshold is not read
    detector.threshold_ = threshold_below(fixed_batch_outputs(runtime, pixels(id_x))["score"], tpr)
    return lambda x: fixed_batch_outputs(runtime, pixels(x))


def evaluate_heldout(
    detector: Detector,
    id_eval: Selection,
    ood_eval: Selection | None,
    spec: Preprocessing,
    noise: tuple[int | None, float, int],
    meter: Meter,
    score: Callable[[Tensor], dict[str, Tensor]],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Held-out metrics of ODIN (fitted, its scores from ``score``: the detector's outputs, or its
    runtime's) and MSP; without OOD inputs, fresh noise (a seed the tuning noise does not use) is
    the OOD side: ``noise`` = (fit's ``--limit``, ``--holdout``, ``--seed``) sizes and seeds it."""
    limit, holdout, seed = noise
    if ood_eval is not None:
        x_out, ood = ood_eval.x, part(ood_eval)
    else:
        n = len(id_eval) if limit is None else noise_count(limit, holdout, "held-out")
        x_out = noise_ood_set(id_eval.x, n, spec.mean, spec.std, seed=seed + 1000)
        ood = {
            "count": len(x_out),
            "what": noise_what(len(x_out), spec.input_shape, seed + 1000, "fresh "),
            "sources": [],
        }
    # one pass per side: the detector's outputs carry the MSP baseline too (the softmax of the
    # unperturbed logits that its score's first forward computes)
    outputs = {}
    for k, x in (("id", id_eval.x), ("ood", x_out)):
        with meter.stage(f"held-out: {k.upper()}", len(x), score_passes(detector.score_family, detector.epsilon_)):
            outputs[k] = score(x)
    odin = {k: o["score"].numpy() for k, o in outputs.items()}
    msp = {k: o["confidence"].numpy() for k, o in outputs.items()}
    held = {
        "id": part(id_eval, what="the ID inputs"),
        "ood": ood,
        "odin": evaluate(odin["id"], odin["ood"], tpr=detector.tpr_),
        "msp": evaluate(msp["id"], msp["ood"], tpr=detector.tpr_),
        "id_kept": float(np.mean(odin["id"] > detector.threshold_)),
        "ood_flagged": float(np.mean(odin["ood"] <= detector.threshold_)),
    }
    return held, odin


class Meter:
    """A :class:`odin_ood._utils.progress.PassProgress` bar per stage, watching ``model``."""

    def __init__(self, model: Any, enabled: bool) -> None:
        self.model, self.enabled = model, enabled

    @contextmanager
    def stage(self, label: str, images: int, passes_per_image: float) -> Iterator[None]:
        meter = PassProgress(images, passes_per_image, label, self.enabled)
        try:
            with meter.watching(self.model):
                yield
            meter.settle(images)
        finally:
            meter.close()


def summary(record: dict[str, Any], out: Path) -> str:
    source = record["tuning_source"]
    tuned = (
        "tuned on the ID images alone (highest mean ID score)"
        if source == "id-only"
        else f"tuned against {record['tuning']['ood']['count']} OOD images"
    )
    if source == "noise":  # no --ood: say what stood in for OOD data
        tuned = f"no --ood given: tuned against {record['tuning']['ood']['what']}"
    lines = [
        f"odin-ood fit: T = {record['temperature']:g}, epsilon = {record['epsilon']:g}, "
        f"threshold = {record['threshold']:.9g} (keeps {record['tpr']:.0%} of {record['tuning']['id']['count']} "
        f"tuning ID images; {tuned})"
    ]
    held = record["heldout"]
    if held is not None:
        cells = ", ".join(f"{m} {100 * held['odin'][m]:.2f}% (MSP {100 * held['msp'][m]:.2f}%)" for m in METRICS)
        versus = (
            f"{held['ood']['count']} OOD"
            if held["ood"]["sources"]
            else f"{held['ood']['count']} fresh noise images, seeds {record['seed'] + 1000} and {record['seed'] + 1001}"
        )
        lines.append(
            f"held-out ({held['id']['count']} ID vs {versus}): {cells}; "
            f"ID kept {100 * held['id_kept']:.2f}%, OOD flagged {100 * held['ood_flagged']:.2f}%"
        )
    lines.append(f"wrote {out / FILENAME}, fit.json, fit_report.html and fit_report.png")
    return "\n".join(lines)
