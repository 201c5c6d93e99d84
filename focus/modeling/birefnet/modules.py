"""BiRefNet building blocks with the official attribute names: deformable ASPP, decoder/lateral/patch blocks.

Every BatchNorm is always built (the official code replaces them by `nn.Identity` when its global batch size is
1, docs/birefnet.md#q1; every released checkpoint has them).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import deform_conv2d

from .deform import deform_conv2d_gather, padded_table

__all__ = ["DeformableConv2d", "ASPPDeformable", "BasicDecBlk", "BasicLatBlk", "SimpleConvs", "image2patches"]


def image2patches(x, grid_h: int, grid_w: int):
    """Cut ``x (B, C, gh*h, gw*w)`` into a ``gh x gw`` grid of contiguous blocks stacked on channels, channel
    index ``c*gh*gw + gi*gw + gj`` -> ``(B, C*gh*gw, h, w)``. A block split, not `pixel_unshuffle`
    (docs/birefnet.md#q4)."""
    B, C, H, W = x.shape
    h, w = H // grid_h, W // grid_w
    x = x.view(B, C, grid_h, h, grid_w, w).permute(0, 1, 2, 4, 3, 5)
    return x.reshape(B, C * grid_h * grid_w, h, w)


class DeformableConv2d(nn.Module):
    """Modulated deformable conv (DCNv2, one offset group).

    ``offset_conv`` and ``modulator_conv`` start at zero (offsets 0, mask ``2*sigmoid(0) = 1``), so an untrained
    block is a plain conv; only ``regular_conv.weight`` is used (no bias).

    ``impl`` (`MODEL.BIREFNET.DEFORM_IMPL`): ``"gather"`` runs inference (no autograd) through
    `deform_conv2d_gather` (the same function as torchvision's up to the summation order, parallel, its matmul in
    the weights' dtype); ``"torchvision"``, and every forward that needs gradients, through
    `torchvision.ops.deform_conv2d`.
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False, impl="gather"):
        super().__init__()
        k = kernel_size
        self.stride = stride
        self.padding = padding
        self.impl = impl
        self.offset_conv = nn.Conv2d(in_channels, 2 * k * k, k, stride, padding, bias=True)
        self.modulator_conv = nn.Conv2d(in_channels, k * k, k, stride, padding, bias=True)
        self.regular_conv = nn.Conv2d(in_channels, out_channels, k, stride, padding, bias=bias)
        for conv in (self.offset_conv, self.modulator_conv):
            nn.init.constant_(conv.weight, 0.0)
            nn.init.constant_(conv.bias, 0.0)

    def uses_gather(self) -> bool:
        return self.impl == "gather" and not torch.is_grad_enabled()

    def forward(self, x, table=None):
        """x: ``(B, C, H, W)``; table: `padded_table(x)` if already built (gather path only)."""
        offset = self.offset_conv(x)
        mask = 2.0 * torch.sigmoid(self.modulator_conv(x))
        weight, bias, dtype = self.regular_conv.weight, self.regular_conv.bias, x.dtype
        if self.uses_gather():
            out = deform_conv2d_gather(x, offset, weight, bias, stride=self.stride, padding=self.padding, mask=mask,
                                       table=table)
            return out if out.dtype == dtype or torch.is_autocast_enabled(x.device.type) else out.to(dtype)
        if dtype != torch.float32 or weight.dtype != torch.float32:
            # reduced precision: fp32 as torchvision's CUDA autocast rule does (its CPU kernel has no bf16/fp16),
            # docs/birefnet.md#q21
            out = deform_conv2d(x.float(), offset.float(), weight.float(), None if bias is None else bias.float(),
                                stride=self.stride, padding=self.padding, mask=mask.float())
            return out.to(dtype)
        return deform_conv2d(x, offset, weight, bias=bias, stride=self.stride, padding=self.padding, mask=mask)


class _ASPPModuleDeformable(nn.Module):
    def __init__(self, in_channels, planes, kernel_size, padding, impl="gather"):
        super().__init__()
        self.atrous_conv = DeformableConv2d(in_channels, planes, kernel_size, stride=1, padding=padding, bias=False,
                                            impl=impl)
        self.bn = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x, table=None):
        return self.relu(self.bn(self.atrous_conv(x, table)))


class ASPPDeformable(nn.Module):
    """ASPP with deformable branches: ``aspp1`` (1x1) and ``aspp_deforms`` (1x1, 3x3, 7x7: two independent 1x1
    deformable branches, docs/birefnet.md#q9), image pooling, 1x1 fuse + BN + ReLU + Dropout(0.5).

    Shapes: ``(B, C, H, W) -> (B, out_channels or C, H, W)``.
    """

    def __init__(self, in_channels, out_channels=None, width=256, kernel_sizes=(1, 3, 7), deform_impl="gather"):
        super().__init__()
        out_channels = out_channels or in_channels
        self.aspp1 = _ASPPModuleDeformable(in_channels, width, 1, padding=0, impl=deform_impl)
        self.aspp_deforms = nn.ModuleList(
            _ASPPModuleDeformable(in_channels, width, k, padding=k // 2, impl=deform_impl) for k in kernel_sizes
        )
        self.global_avg_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)), nn.Conv2d(in_channels, width, 1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.conv1 = nn.Conv2d(width * (2 + len(kernel_sizes)), out_channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x):
        table = None
        deform = self.aspp1.atrous_conv
        if deform.uses_gather():  # one table for the four branches that sample x
            table = padded_table(x)
        x1 = self.aspp1(x, table)
        branches = [m(x, table) for m in self.aspp_deforms]
        x5 = self.global_avg_pool(x).expand(-1, -1, *x1.shape[2:])  # bilinear from 1x1 is a broadcast
        x = torch.cat((x1, *branches, x5), dim=1)
        return self.dropout(self.relu(self.bn1(self.conv1(x))))


class BasicDecBlk(nn.Module):
    """``conv_in`` 3x3 -> ``bn_in`` -> ReLU -> ``dec_att`` (deformable ASPP) -> ``conv_out`` 3x3 -> ``bn_out``
    (no final activation). Keys are registered in the official order (``bn_in``/``bn_out`` last,
    docs/birefnet.md#q12)."""

    def __init__(self, in_channels, out_channels, inter_channels=64, aspp_width=256, deform_impl="gather"):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, inter_channels, 3, 1, padding=1)
        self.relu_in = nn.ReLU(inplace=True)
        self.dec_att = ASPPDeformable(inter_channels, width=aspp_width, deform_impl=deform_impl)
        self.conv_out = nn.Conv2d(inter_channels, out_channels, 3, 1, padding=1)
        self.bn_in = nn.BatchNorm2d(inter_channels)
        self.bn_out = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        x = self.relu_in(self.bn_in(self.conv_in(x)))
        x = self.dec_att(x)
        return self.bn_out(self.conv_out(x))


class BasicLatBlk(nn.Module):
    """1x1 lateral conv (``conv``)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, 1, 0)

    def forward(self, x):
        return self.conv(x)


class SimpleConvs(nn.Module):
    """``conv1`` 3x3 -> ``conv_out`` 3x3, nothing in between (the image-patch branch ``ipt_blk*``)."""

    def __init__(self, in_channels, out_channels, inter_channels=64):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, inter_channels, 3, 1, 1)
        self.conv_out = nn.Conv2d(inter_channels, out_channels, 3, 1, 1)

    def forward(self, x):
        return self.conv_out(self.conv1(x))


def up(x, size):
    """Bilinear ``align_corners=True`` resize (every resize inside the official model)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
