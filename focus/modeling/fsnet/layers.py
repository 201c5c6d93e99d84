"""FSNet's head modules with the official attribute names (RCAM attention, DimReduce, BPM, decoder, PPM).

Every conv of the head is a `BasicConv2d` = conv (no bias) + BatchNorm under the name ``conv_bn``, with no
activation (docs/fsnet.md#q3): apart from the attention sigmoids and the BPM products the head is linear.
All resizing is bilinear with ``align_corners=True``, as in the official code.
"""
import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "BasicConv2d",
    "channel_attention",
    "DimReduce",
    "ConvUpsample",
    "BPM",
    "PyramidPooling",
    "Decoder",
    "resize_as",
]


def resize_as(x, size):
    """Bilinear resize of ``x`` (B, C, h, w) to ``size`` (H, W) with ``align_corners=True``."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


class BasicConv2d(nn.Module):
    """``conv_bn = Sequential(Conv2d(bias=False), BatchNorm2d)``; no ReLU (docs/fsnet.md#q3)."""

    def __init__(self, in_planes, out_planes, kernel_size, stride=1, padding=0, dilation=1):
        super().__init__()
        self.conv_bn = nn.Sequential(
            nn.Conv2d(in_planes, out_planes, kernel_size, stride=stride, padding=padding, dilation=dilation,
                      bias=False),
            nn.BatchNorm2d(out_planes),
        )

    def forward(self, x):
        return self.conv_bn(x)


def channel_attention(channels):
    """RCAM gate: GAP -> 1x1 conv (with bias) -> sigmoid, (B, C, H, W) -> (B, C, 1, 1); keys ``1.weight/1.bias``."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, channels, 1), nn.Sigmoid())


class DimReduce(nn.Module):
    """(B, Cin, H, W) -> (B, C, H, W): 1x1 then two 3x3 `BasicConv2d` (``reduce.{0,1,2}``)."""

    def __init__(self, in_channels, channels=32):
        super().__init__()
        self.reduce = nn.Sequential(
            BasicConv2d(in_channels, channels, 1),
            BasicConv2d(channels, channels, 3, padding=1),
            BasicConv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x):
        return self.reduce(x)


class ConvUpsample(nn.Module):
    """Official ``conv_upsample``: resize ``x`` to ``target``'s size and apply a 1x1 `BasicConv2d`, both only if
    the sizes differ; an equal-size input is returned unchanged (docs/fsnet.md#q8)."""

    def __init__(self, channels=32):
        super().__init__()
        self.conv = BasicConv2d(channels, channels, 1)

    def forward(self, x, target):
        if x.shape[2:] != target.shape[2:]:
            x = self.conv(resize_as(x, target.shape[2:]))
        return x


def _conv_f(in_channels, channels):
    return nn.Sequential(BasicConv2d(in_channels, channels, 3, padding=1), BasicConv2d(channels, channels, 3, padding=1))


class BPM(nn.Module):
    """Bidirectional purification module: appearance ``s1..s4`` and motion ``e1..e4`` (B, C, H_k, W_k), level 1 the
    finest, are updated synchronously (every output from the inputs only).

    Appearance: ``s_k' = s_k + conv_f{k}(cat[s_k, e_k, P(e_j -> s_k) for j > k])``; motion:
    ``e_k' = e_k + conv_f{k+4}(e_k * s_k * prod_{j > k} P(s_j -> e_k))`` (products of up to five unnormalised
    terms: docs/fsnet.md#q7), with P = `ConvUpsample` ``conv1..conv12`` in the official order.
    """

    def __init__(self, channels=32):
        super().__init__()
        for i in range(1, 13):
            setattr(self, f"conv{i}", ConvUpsample(channels))
        for i, n_in in enumerate((5, 4, 3, 2, 1, 1, 1, 1), start=1):
            setattr(self, f"conv_f{i}", _conv_f(n_in * channels, channels))

    def forward(self, s1, s2, s3, s4, e1, e2, e3, e4):
        s1n = s1 + self.conv_f1(torch.cat([s1, e1, self.conv1(e2, s1), self.conv2(e3, s1), self.conv3(e4, s1)], 1))
        s2n = s2 + self.conv_f2(torch.cat([s2, e2, self.conv4(e3, s2), self.conv5(e4, s2)], 1))
        s3n = s3 + self.conv_f3(torch.cat([s3, e3, self.conv6(e4, s3)], 1))
        s4n = s4 + self.conv_f4(torch.cat([s4, e4], 1))
        e1n = e1 + self.conv_f5(e1 * s1 * self.conv7(s2, e1) * self.conv8(s3, e1) * self.conv9(s4, e1))
        e2n = e2 + self.conv_f6(e2 * s2 * self.conv10(s3, e2) * self.conv11(s4, e2))
        e3n = e3 + self.conv_f7(e3 * s3 * self.conv12(s4, e3))
        e4n = e4 + self.conv_f8(e4 * s4)
        return s1n, s2n, s3n, s4n, e1n, e2n, e3n, e4n


class PyramidPooling(nn.Module):
    """PPM: ``out(cat[x, up(conv_i(AdaptiveAvgPool2d(b_i)(x)))])`` for bins 1, 2, 3, 6; (B, C, H, W) -> same.

    `nn.AdaptiveAvgPool2d` reproduces PyTorch's overlapping bins on sizes that are not multiples (11 -> 3, ...).
    """

    BINS = (1, 2, 3, 6)

    def __init__(self, in_channels, out_channels):
        super().__init__()
        inter = in_channels // 4
        self.conv1 = BasicConv2d(in_channels, inter, 1)
        self.conv2 = BasicConv2d(in_channels, inter, 1)
        self.conv3 = BasicConv2d(in_channels, inter, 1)
        self.conv4 = BasicConv2d(in_channels, inter, 1)
        self.out = BasicConv2d(in_channels * 2, out_channels, 1)

    def forward(self, x):
        size = x.shape[2:]
        feats = [x]
        for conv, bins in zip((self.conv1, self.conv2, self.conv3, self.conv4), self.BINS):
            feats.append(resize_as(conv(F.adaptive_avg_pool2d(x, bins)), size))
        return self.out(torch.cat(feats, 1))


class Decoder(nn.Module):
    """Top-down decoder of four levels (B, C, H_k, W_k), each twice the next -> logits (B, 1, H_1, W_1)."""

    def __init__(self, channels=32):
        super().__init__()
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv_upsample1 = BasicConv2d(channels, channels, 3, padding=1)
        self.conv_upsample2 = BasicConv2d(channels, channels, 3, padding=1)
        self.conv_upsample3 = BasicConv2d(channels, channels, 3, padding=1)
        self.ppm1 = PyramidPooling(channels, channels)
        self.ppm2 = PyramidPooling(channels, channels)
        self.ppm3 = PyramidPooling(channels, channels)
        self.ppm4 = PyramidPooling(channels, channels)
        self.conv_cat1 = nn.Sequential(BasicConv2d(2 * channels, 2 * channels, 3, padding=1),
                                       BasicConv2d(2 * channels, channels, 1))
        self.conv_cat2 = nn.Sequential(BasicConv2d(2 * channels, 2 * channels, 3, padding=1),
                                       BasicConv2d(2 * channels, channels, 1))
        self.conv_cat3 = nn.Sequential(BasicConv2d(2 * channels, 2 * channels, 3, padding=1),
                                       BasicConv2d(2 * channels, channels, 1))
        self.output = nn.Sequential(BasicConv2d(channels, channels, 3, padding=1), nn.Conv2d(channels, 1, 1))

    def forward(self, x1, x2, x3, x4):
        d4 = self.ppm4(x4)
        d3 = self.ppm3(self.conv_cat1(torch.cat([x3, self.conv_upsample1(self.upsample(d4))], 1)))
        d2 = self.ppm2(self.conv_cat2(torch.cat([x2, self.conv_upsample2(self.upsample(d3))], 1)))
        d1 = self.ppm1(self.conv_cat3(torch.cat([x1, self.conv_upsample3(self.upsample(d2))], 1)))
        return self.output(d1)
