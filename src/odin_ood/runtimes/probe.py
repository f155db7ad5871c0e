"""The check an exported graph passes before it scores: one fixed probe batch through eager
scoring and through the graph on its runtime, compared within :data:`odin_ood.runtimes.SCORE_TOLERANCE`.

The probe batch (:func:`probe_pixels`) is deterministic: a black, a white and a mid-grey image,
a horizontal ramp, then pixels uniform in [0, 1) from a fixed seed, one batch of the graph;
the first ``PROBE_IMAGES`` are compared, and for a graph with a dynamic batch the first
``SMALL_BATCH`` again as a batch of their own (the gate runs micro-batches at their natural
size, which a runtime may compile and round otherwise). A graph agrees with eager scoring
(:func:`disagreement` is None) when on every one

* |score_graph - score_eager| <= SCORE_TOLERANCE (a NaN only where eager gives NaN);
* the decision is the same, unless the eager score lies within SCORE_TOLERANCE of the threshold;
* the class is the same, unless the eager softmax gives the graph's class a probability within
  SCORE_TOLERANCE of the eager class's (a near tie).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from odin_ood.detector import Detector
from odin_ood.detector.fingerprint import PROBE_SEED
from odin_ood.preprocess import Preprocessing, normalise
from odin_ood.scores.passes import at_least_fp32, model_device, scoring_mode

if TYPE_CHECKING:
    from odin_ood.runtimes import GraphRuntime

PROBE_IMAGES = 16  # probe images compared with eager scoring (the graph runs a whole batch)
SMALL_BATCH = 3  # and run again as a batch of their own, when the graph takes any batch size


def probe_pixels(spec: Preprocessing, batch_size: int) -> Tensor:
    """``batch_size`` images of ``spec.input_shape`` in [0, 1]: black, white, grey 0.5, a left-to-right
    ramp, then seeded uniform noise (the first ``batch_size`` of these)."""
    c, h, w = spec.input_shape
    ramp = torch.linspace(0, 1, w).expand(c, h, w)
    fixed = torch.stack([torch.zeros(c, h, w), torch.ones(c, h, w), torch.full((c, h, w), 0.5), ramp])
    noise = torch.rand(max(0, batch_size - len(fixed)), c, h, w, generator=torch.Generator().manual_seed(PROBE_SEED))
    return torch.cat([fixed, noise])[:batch_size]


def disagreement(
    got: dict[str, Tensor], want: dict[str, Tensor], threshold: float, probabilities: Tensor
) -> str | None:
    """How the gate outputs ``got`` (a graph's) disagree with ``want`` (eager scoring's) beyond
    the rule of the module docstring, for the first image that does; None when they agree.
    ``probabilities``: eager softmax(f(x)), (N, classes)."""
    from odin_ood.runtimes import SCORE_TOLERANCE as tol

    g, w = got["score"].double().cpu(), want["score"].double().cpu()
    close = (g == w) | ((g - w).abs() <= tol) | (g.isnan() & w.isnan())
    for i in torch.nonzero(~close).flatten().tolist():
        return f"image {i}: score {g[i].item():.6g} against eager {w[i].item():.6g}, beyond {tol:g}"
    decided = got["is_out_of_distribution"].cpu() == want["is_out_of_distribution"].cpu()
    near = (w - threshold).abs() <= tol
    for i in torch.nonzero(~decided & ~near).flatten().tolist():
        return (
            f"image {i}: decision out-of-distribution={bool(got['is_out_of_distribution'][i])} against eager's "
            f"{bool(want['is_out_of_distribution'][i])} (eager score {w[i].item():.6g}, threshold {threshold:.6g})"
        )
    gc, wc = got["predicted_class"].cpu().long(), want["predicted_class"].cpu().long()
    p = probabilities.double().cpu()
    k = p.shape[1]
    for i in torch.nonzero(gc != wc).flatten().tolist():
        if not 0 <= gc[i] < k or p[i, gc[i]] < p[i, wc[i]] - tol:
            return f"image {i}: class {gc[i].item()} against eager {wc[i].item()}"
    return None


def probe_disagreement(runtime: GraphRuntime, detector: Detector, spec: Preprocessing) -> str | None:
    """:func:`disagreement` of ``runtime`` (a graph runtime for ``detector`` on inputs of ``spec``)
    with the ``torch`` runtime (eager scoring) on the first ``PROBE_IMAGES`` images of the probe
    batch of ``runtime.batch_size`` images (eager scoring of all of them would cost more than
    the check is worth on a large batch), and for a graph with a dynamic batch on the first
    ``SMALL_BATCH`` of them run as a batch of their own."""
    from odin_ood.runtimes.eager import EagerRuntime

    pixels = probe_pixels(spec, runtime.batch_size)
    k = min(len(pixels), PROBE_IMAGES)
    with warnings.catch_warnings():  # a model giving NaN on the probe is compared, not reported
        warnings.filterwarnings("ignore", r".* scores are not finite", RuntimeWarning)
        want = EagerRuntime(detector, spec).outputs(pixels[:k])
    model = detector.model
    with scoring_mode(model), torch.no_grad():
        logits = model(normalise(pixels[:k], spec).to(model_device(model, torch.device("cpu"))))
    probabilities = torch.softmax(at_least_fp32(logits), dim=1)
    got = {name: t[:k] for name, t in runtime.outputs(pixels).items()}
    problem = disagreement(got, want, detector.threshold_, probabilities)
    m = min(SMALL_BATCH, len(pixels) - 1)
    if problem is not None or runtime.fixed_batch or m < 1:
        return problem
    small = disagreement(
        runtime.outputs(pixels[:m]), {name: t[:m] for name, t in want.items()}, detector.threshold_, probabilities[:m]
    )
    return None if small is None else f"in a batch of {m}: {small}"
