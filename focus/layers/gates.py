"""Small gating layers shared by several members."""
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PooledGate"]


class PooledGate(nn.Module):
    """`sigmoid(fc2(relu(fc1(avgpool z))) + fc2(relu(fc1(maxpool z))))`, (B, 2C, H, W) -> (B, 1, 1, 1): the gate
    `alpha` of the second-order ODE blocks of RUN and WS-SAM (keys `fc1.weight`, `fc2.weight`, no biases)."""

    def __init__(self, channels):
        super().__init__()
        self.fc1 = nn.Conv2d(2 * channels, channels, 1, bias=False)
        self.fc2 = nn.Conv2d(channels, 1, 1, bias=False)

    def forward(self, z):
        avg = self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(z, 1))))
        mx = self.fc2(F.relu(self.fc1(F.adaptive_max_pool2d(z, 1))))
        return torch.sigmoid(avg + mx)
