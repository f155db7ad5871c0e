"""The paper's synthetic OOD images (section 4.2), as float tensors in pixel space [0, 1].

* Gaussian: each value i.i.d. N(0.5, 1), clipped to [0, 1];
* Uniform: each value i.i.d. U[0, 1].
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def gaussian_noise(n: int, shape: Sequence[int], seed: int = 0) -> Tensor:
    """n images of ``shape`` (C, H, W), values clamp(N(0.5, 1), 0, 1); seeded, on the CPU."""
    return torch.randn(n, *shape, generator=_generator(seed), dtype=torch.float32).add_(0.5).clamp_(0.0, 1.0)


def uniform_noise(n: int, shape: Sequence[int], seed: int = 0) -> Tensor:
    """n images of ``shape`` (C, H, W), values U[0, 1); seeded, on the CPU."""
    return torch.rand(n, *shape, generator=_generator(seed), dtype=torch.float32)
