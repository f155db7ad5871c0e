"""The MNIST classifier of ODIN's Appendix A.1: a fully connected network of three layers, 256
units wide: ``x (784) -> Linear 256 -> ReLU -> Linear 256 -> ReLU -> Linear 10`` (269,322
parameters). It takes ``(N, 1, 28, 28)`` images (any shape flattening to 784 per sample)."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """Fully connected classifier ``in_features -> hidden -> hidden -> num_classes`` with ReLU."""

    def __init__(self, in_features: int = 784, hidden: int = 256, num_classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x.flatten(1)))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)
