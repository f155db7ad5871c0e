"""Wide ResNet WRN-d-k (Zagoruyko & Komodakis, 2016), pre-activation, as in ODIN section 4.1.

Three groups of ``n = (d - 4) / 6`` basic blocks with widths ``16k, 32k, 64k`` (strides 1, 2, 2)
after a 3x3 stem of 16 channels. A block computes
``y = Conv3x3(ReLU(BN(Conv3x3(ReLU(BN(x)))))) + s(x)`` where ``s`` is the identity when the shape is
unchanged and a 1x1 convolution of the pre-activated input otherwise. WRN-28-10 has 36.5M
parameters and WRN-40-4 8.9M on CIFAR-10 (the WRN paper's Table 1 figures).

Attribute names follow the widely used PyTorch port (``conv1``, ``block{1,2,3}.layer.{i}``,
``bn1``, ``fc``; blocks hold ``bn1, conv1, bn2, conv2, convShortcut``) so its checkpoints load.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from odin_ood.models.init import he_init


class WideBasic(nn.Module):
    """Pre-activation block: BN-ReLU-Conv3x3-[dropout]-BN-ReLU-Conv3x3 plus shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.dropout = dropout
        self.equal_in_out = in_channels == out_channels and stride == 1
        self.convShortcut = (
            None if self.equal_in_out else nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv1(pre)
        out = F.dropout(F.relu(self.bn2(out)), p=self.dropout, training=self.training)
        out = self.conv2(out)
        return out + (x if self.convShortcut is None else self.convShortcut(pre))


class WideGroup(nn.Module):
    """``num_blocks`` blocks; only the first changes width and stride."""

    def __init__(self, num_blocks: int, in_channels: int, out_channels: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            *(
                WideBasic(in_channels if i == 0 else out_channels, out_channels, stride if i == 0 else 1, dropout)
                for i in range(num_blocks)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WRN-``depth``-``widen`` for 32x32 inputs."""

    def __init__(
        self, depth: int = 28, widen: int = 10, num_classes: int = 10, dropout: float = 0.0, in_channels: int = 3
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"Wide ResNet depth must be 6n+4 with n >= 1, got depth={depth}")
        if widen < 1:
            raise ValueError(f"Wide ResNet widen factor must be >= 1, got widen={widen}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.block1 = WideGroup(n, widths[0], widths[1], 1, dropout)
        self.block2 = WideGroup(n, widths[1], widths[2], 2, dropout)
        self.block3 = WideGroup(n, widths[2], widths[3], 2, dropout)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn1(out))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))
