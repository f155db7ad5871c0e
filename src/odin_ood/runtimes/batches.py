"""Scoring pixels on a runtime in batches of one fixed size.

Fixed-size batches make each image's result independent of which other images share its
batch: float32 matrix kernels pick their blocking by batch size, so the same image can score a
few ulps differently in a batch of 7 than in a batch of 64. Padding every batch (with zeros) to
the runtime's ``batch_size`` rows gives the same results for the server's micro-batches, for a
resumed ``odin-ood score`` run and for every rank of a distributed run, and equal to
``Detector.outputs`` on the same images in batches of ``batch_size``. Which runtime scores
(eager torch, the exported graph on ONNX Runtime or OpenVINO) is the runtime's business
(:mod:`odin_ood.runtimes`); an exported graph takes only full batches, so it is always padded.
Used by the HTTP gate (:mod:`odin_ood.serving`) and ``odin-ood score`` (:mod:`odin_ood.commands.rows`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:  # the runtimes import this module's callers' detector: no import at run time
    from odin_ood.runtimes import Runtime

OUTPUT_KEYS = ("predicted_class", "confidence", "score", "is_out_of_distribution")


def fixed_batch_outputs(runtime: Runtime, pixels: Tensor, pad: bool = True) -> dict[str, Tensor]:
    """``runtime.outputs(pixels)`` ([0, 1] pixels (N, C, H, W)) computed in batches of exactly
    ``runtime.batch_size`` rows (the last one zero-padded, padding dropped from the result) when
    ``pad`` or the runtime takes only full batches; as given otherwise."""
    b = runtime.batch_size
    n = len(pixels)
    if (pad or runtime.fixed_batch) and n % b:
        pixels = torch.cat([pixels, pixels.new_zeros((b - n % b, *pixels.shape[1:]))])
    out = runtime.outputs(pixels)
    return {k: out[k][:n] for k in OUTPUT_KEYS}
