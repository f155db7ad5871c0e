"""Data augmentation on batched tensors (no torchvision, no per-sample Python loop)."""

from __future__ import annotations

import torch


def random_crop_flip(
    x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Per sample: zero-pad ``x`` (N, C, H, W) by ``padding`` pixels, take a random H x W crop
    (offsets uniform in {0..2*padding} on each axis) and, if ``flip``, mirror it horizontally with
    probability 1/2. Random draws come from ``generator`` (on the CPU) for reproducibility."""
    n, c, h, w = x.shape
    if padding:
        offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator).to(x.device)
        rows = offsets[0, :, None] + torch.arange(h, device=x.device)  # (N, H)
        cols = offsets[1, :, None] + torch.arange(w, device=x.device)  # (N, W)
        padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chan = torch.arange(c, device=x.device)[None, :, None, None]
        x = padded[batch, chan, rows[:, None, :, None], cols[:, None, None, :]]
    if flip:
        mirror = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        x = torch.where(mirror[:, None, None, None], x.flip(3), x)
    return x
