"""CIFAR ResNets (He et al., 2016, section 4.2) with option-A shortcuts: ResNet-20/32/44/56/110.

Depth ``6n + 2``: a 3x3 stem of 16 channels, three stages of ``n`` basic blocks with 16, 32 and 64
channels (strides 1, 2, 2), global average pooling and a linear classifier. A basic block computes
``y = ReLU(BN(Conv3x3(ReLU(BN(Conv3x3(x))))) + s(x))``; the option-A shortcut ``s`` is parameter
free: where the shape changes it subsamples with stride 2 and zero-pads the new channels.
ResNet-20 has 269,722 parameters on CIFAR-10, ResNet-110 1,727,962.

Attribute names (``conv1``, ``bn1``, ``layer{1,2,3}.{i}.{conv1,bn1,conv2,bn2}``, ``linear``)
match the public checkpoints of Idelbayev's ``pytorch_resnet_cifar10``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from odin_ood.models.init import he_init


class BasicBlock(nn.Module):
    """Post-activation basic block with the parameter-free option-A shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.stride = stride
        self.pad = out_channels - in_channels

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """Identity, or stride-``s`` subsampling with the extra channels zero-padded on both sides."""
        if self.stride == 1 and self.pad == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    """ResNet-``depth`` for 32x32 inputs, ``depth = 6n + 2``."""

    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got depth={depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = _stage(n, 16, 16, 1)
        self.layer2 = _stage(n, 16, 32, 2)
        self.layer3 = _stage(n, 32, 64, 2)
        self.linear = nn.Linear(64, num_classes)
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def _stage(n: int, in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        *(BasicBlock(in_channels if i == 0 else out_channels, out_channels, stride if i == 0 else 1) for i in range(n))
    )
