"""The MNIST classifier of ODIN's Appendix A.1: "the same MNIST classifier used by Hendrycks &
Gimpel (2017), a three-layer, 256 neuron-wide, fully connected network".

Hendrycks & Gimpel's public notebook (hendrycks/error-detection, ``Vision/MNIST_Softmax_Stats``)
defines it as three hidden layers of 256 units with the tanh approximation of GELU,

    h1 = gelu(W1 x + b1), h2 = gelu(W2 h1 + b2), h3 = gelu(W3 h2 + b3), f(x) = W4 h3 + b4,
    gelu(u) = u/2 (1 + tanh(sqrt(2/pi) (u + 0.044715 u^3))),

on raw pixels in [0, 1] (784 -> 256 -> 256 -> 256 -> 10, 335,114 parameters). Weights start as
Gaussian rows normalised to unit length and divided by sqrt(1 + 0.425) (first layer),
sqrt(0.425 + 0.425) (hidden) and sqrt(0.425 + 1) (output); biases start at zero. It takes
``(N, 1, 28, 28)`` images (any shape flattening to 784 per sample).
"""

from __future__ import annotations

import math

import torch
from torch import nn

# Fan-in scale of each layer in Hendrycks & Gimpel's initialisation (rows have unit norm / sqrt).
_INIT_SCALES = (1.0 + 0.425, 0.425 + 0.425, 0.425 + 0.425, 0.425 + 1.0)


class MLP(nn.Module):
    """``in_features -> hidden x3 (GELU, tanh approximation) -> num_classes``; layers ``fc1``..``fc3``
    are hidden, ``fc4`` is the classifier."""

    def __init__(self, in_features: int = 784, hidden: int = 256, num_classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, hidden)
        self.fc4 = nn.Linear(hidden, num_classes)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Hendrycks & Gimpel's initialisation (draws from torch's global generator)."""
        for layer, scale in zip((self.fc1, self.fc2, self.fc3, self.fc4), _INIT_SCALES, strict=True):
            w = torch.randn_like(layer.weight)
            layer.weight.copy_(w / w.norm(dim=1, keepdim=True) / math.sqrt(scale))
            layer.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # written out (no loop over a tuple of modules) so that torch.jit.script compiles it
        x = nn.functional.gelu(self.fc1(x.flatten(1)), approximate="tanh")
        x = nn.functional.gelu(self.fc2(x), approximate="tanh")
        x = nn.functional.gelu(self.fc3(x), approximate="tanh")
        return self.fc4(x)
