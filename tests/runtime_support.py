"""The equality a graph runtime keeps with eager torch, as :data:`odin_ood.runtimes.SCORE_TOLERANCE`
states it, asserted on one batch of outputs (tests/test_runtimes.py, tests/test_runtimes_torchvision.py)."""

from __future__ import annotations

import torch

from odin_ood import Detector
from odin_ood.preprocess import Preprocessing, normalise
from odin_ood.runtimes import SCORE_TOLERANCE


def assert_within_tolerance(got: dict, want: dict, det: Detector, x: torch.Tensor, spec: Preprocessing) -> torch.Tensor:
    """``got`` (a graph runtime's outputs) against ``want`` (eager torch's) on the pixels ``x``:
    scores and confidences within SCORE_TOLERANCE; decisions equal except where the eager score
    lies within it of the threshold; classes equal except where the eager top two probabilities
    lie within it of each other. Returns which images' decisions differ."""
    assert (got["score"].double() - want["score"].double()).abs().max().item() <= SCORE_TOLERANCE
    assert (got["confidence"].double() - want["confidence"].double()).abs().max().item() <= SCORE_TOLERANCE
    flipped = got["is_out_of_distribution"] != want["is_out_of_distribution"]
    margin = (want["score"].double() - det.threshold_).abs()
    assert (margin[flipped] <= SCORE_TOLERANCE).all(), margin[flipped]
    other_class = got["predicted_class"] != want["predicted_class"]
    if other_class.any():
        with torch.no_grad():
            top = torch.softmax(det.model(normalise(x[other_class], spec)).double(), 1).topk(2).values
        assert (top[:, 0] - top[:, 1] <= SCORE_TOLERANCE).all(), top
    return flipped
