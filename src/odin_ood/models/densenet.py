"""DenseNet-BC (Huang et al., 2017), the network of ODIN's CIFAR experiments (paper section 4.1).

A dense block of ``n`` bottleneck layers maps ``c`` channels to ``c + n*k`` channels: each layer
computes ``BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k)`` and concatenates its ``k`` new feature maps to
its input. A transition halves the channels (compression 0.5) with ``BN-ReLU-Conv1x1`` followed by
2x2 average pooling. With depth ``L`` there are ``n = (L - 4) / 6`` bottleneck layers per block
(three blocks, each layer two convolutions, plus the stem, two transitions and the classifier).
DenseNet-BC-100 with ``k = 12`` has 769,162 parameters on CIFAR-10.

Attribute names (``conv1``, ``block{1,2,3}.layer.{i}.{bn1,conv1,bn2,conv2}``, ``trans{1,2}``,
``bn1``, ``fc``) follow the ODIN authors' code, so their public checkpoints load strictly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from odin_ood.models.init import he_init


class Bottleneck(nn.Module):
    """x -> cat(x, Conv3x3(ReLU(BN(Conv1x1(ReLU(BN(x))))))), adding ``growth`` channels."""

    def __init__(self, in_channels: int, growth: int, dropout: float = 0.0) -> None:
        super().__init__()
        inter = 4 * growth
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, inter, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(inter)
        self.conv2 = nn.Conv2d(inter, growth, kernel_size=3, padding=1, bias=False)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(F.relu(self.bn2(out)))
        out = F.dropout(out, p=self.dropout, training=self.training)
        return torch.cat([x, out], 1)


class DenseBlock(nn.Module):
    """``num_layers`` bottlenecks in sequence: ``in_channels -> in_channels + num_layers*growth``."""

    def __init__(self, num_layers: int, in_channels: int, growth: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.layer = nn.Sequential(*(Bottleneck(in_channels + i * growth, growth, dropout) for i in range(num_layers)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class Transition(nn.Module):
    """AvgPool2x2(Conv1x1(ReLU(BN(x)))): compresses channels and halves the resolution."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = F.dropout(out, p=self.dropout, training=self.training)
        return F.avg_pool2d(out, 2)


class DenseNetBC(nn.Module):
    """DenseNet-BC for 32x32 inputs: depth ``L``, growth ``k``, compression ``compression``."""

    def __init__(
        self,
        depth: int = 100,
        growth: int = 12,
        num_classes: int = 10,
        compression: float = 0.5,
        dropout: float = 0.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"DenseNet-BC depth must be 6n+4 with n >= 1, got depth={depth}")
        n = (depth - 4) // 6
        channels = 2 * growth
        self.conv1 = nn.Conv2d(in_channels, channels, kernel_size=3, padding=1, bias=False)
        self.block1 = DenseBlock(n, channels, growth, dropout)
        channels += n * growth
        self.trans1 = Transition(channels, math.floor(channels * compression), dropout)
        channels = math.floor(channels * compression)
        self.block2 = DenseBlock(n, channels, growth, dropout)
        channels += n * growth
        self.trans2 = Transition(channels, math.floor(channels * compression), dropout)
        channels = math.floor(channels * compression)
        self.block3 = DenseBlock(n, channels, growth, dropout)
        channels += n * growth
        self.bn1 = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels, num_classes)
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.trans1(self.block1(self.conv1(x)))
        out = self.trans2(self.block2(out))
        out = F.relu(self.bn1(self.block3(out)))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))
