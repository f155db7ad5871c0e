"""A small LeNet-style CNN for MNIST (the network of PyTorch's ``examples/mnist`` of 2017-2019):

    conv 1->10 (5x5) -> max-pool 2 -> ReLU -> conv 10->20 (5x5) -> dropout2d (p = 0.5)
    -> max-pool 2 -> ReLU -> flatten 320 -> fc 50 -> ReLU -> dropout (p = 0.5) -> fc 10

(21,840 parameters) on normalised pixels ``(x - 0.1307) / 0.3081``. Not a network of the ODIN
paper: odin-ood ships it because, unlike the paper's MLP rebuilt from its published recipe, it
reproduces the MNIST rows of the paper's Table 3 (see ``docs/results/mnist``). It returns logits;
the original example's ``log_softmax`` output only shifts them by a constant per image, which
changes neither ``softmax(f(x) / T)`` nor ODIN's gradient.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class LeNet(nn.Module):
    """Two 5x5 convolutions and two linear layers for (N, 1, 28, 28) inputs; ``fc2`` is the classifier."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d(0.5)
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.dropout(x, p=0.5, training=self.training)
        return self.fc2(x)
