"""Scoring a fitted detector in batches of one fixed size.

Fixed-size batches make each image's result independent of which other images share its
batch: float32 matrix kernels pick their blocking by batch size, so the same image can score a
few ulps differently in a batch of 7 than in a batch of 64. Padding every batch (with zeros) to
``detector.batch_size`` rows gives the same results for the server's micro-batches, for a
resumed ``odin-ood score`` run and for every rank of a distributed run, and equal to
``Detector.outputs`` on the same images in batches of ``batch_size``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from odin_ood.detector import Detector

OUTPUT_KEYS = ("predicted_class", "confidence", "score", "is_out_of_distribution")


def fixed_batch_outputs(detector: Detector, x: Tensor, pad: bool = True) -> dict[str, Tensor]:
    """``detector.outputs(x)`` computed in batches of exactly ``detector.batch_size`` rows (the last
    one zero-padded, padding dropped from the result) when ``pad``; as given otherwise."""
    b = detector.batch_size
    n = len(x)
    if pad and n % b:
        x = torch.cat([x, x.new_zeros((b - n % b, *x.shape[1:]))])
    out = detector.outputs(x)
    return {k: out[k][:n] for k in OUTPUT_KEYS}
