"""RUN's mask-domain blocks with the official parameter names: ETM/GCM3 (with the dead wavelet branch's
modules), IAF, CAF, GPM (+ PAM), REU6/REM11 (+ ODE, the dead TFD), and the never-called `cam`/`sam`.

Shapes are given for channels C and a 384 x 384 input (ResNet-50 strides 4..32: 96, 48, 24, 12).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...layers.gates import PooledGate

__all__ = [
    "BasicConv2d", "BasicDeConv2d", "ETM", "GCM3", "IntraLayerFeatureAggregation",
    "ContextualFeatureAggregation", "GPM", "REU6", "REM11", "ChannelAttentionFC", "SpatialAttention7",
    "up", "up_ac", "edge_enhance",
]


def up(x, size):
    """Bilinear resize with align_corners=False (the official `F.interpolate(..., mode="bilinear")`)."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def up_ac(x, size):
    """Bilinear resize with align_corners=True."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class BasicConv2d(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> ReLU (keys `conv`, `bn`)."""

    def __init__(self, in_planes, out_planes, kernel_size, stride=1, padding=0, dilation=1, bn=True):
        super().__init__()
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size, stride=stride, padding=padding,
                              dilation=dilation, bias=False)
        if bn:
            self.bn = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.conv(x)
        if hasattr(self, "bn"):
            x = self.bn(x)
        return self.relu(x)


class BasicDeConv2d(nn.Module):
    """ConvTranspose2d (no bias) -> BatchNorm2d -> ReLU (keys `conv`, `bn`)."""

    def __init__(self, in_planes, out_planes, kernel_size, stride=1, padding=0, out_padding=0):
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_planes, out_planes, kernel_size, stride=stride, padding=padding,
                                       output_padding=out_padding, bias=False)
        self.bn = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class ETM(nn.Module):
    """RFB-style texture module: four branches (1x1; 1xk, kx1, 3x3 dilation k for k = 3, 5, 7), `conv_cat`
    over their concatenation plus a 1x1 residual `conv_res`, then ReLU. (B, in, h, w) -> (B, out, h, w)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.relu = nn.ReLU(True)
        self.branch0 = BasicConv2d(in_channels, out_channels, 1)
        for i, k in enumerate((3, 5, 7), start=1):
            setattr(self, f"branch{i}", nn.Sequential(
                BasicConv2d(in_channels, out_channels, 1),
                BasicConv2d(out_channels, out_channels, (1, k), padding=(0, k // 2)),
                BasicConv2d(out_channels, out_channels, (k, 1), padding=(k // 2, 0)),
                BasicConv2d(out_channels, out_channels, 3, padding=k, dilation=k),
            ))
        self.conv_cat = BasicConv2d(4 * out_channels, out_channels, 3, padding=1)
        self.conv_res = BasicConv2d(in_channels, out_channels, 1)

    def forward(self, x):
        x_cat = self.conv_cat(torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1))
        return self.relu(x_cat + self.conv_res(x))


class _Conv2dHolder(nn.Module):
    """A conv under the key `conv2d` (dead wavelet branch)."""

    def __init__(self, cin, cout, k):
        super().__init__()
        self.conv2d = nn.Conv2d(cin, cout, k, padding=k // 2)


class _ARB(nn.Module):
    """Parameters of the official attention residual block of the dead guided-filter branch (never called,
    docs/run.md#q3): `AM.CA.conv` (Conv1d 1->1, k3), `AM.SA.sa` (C -> C/4 -> 1), `RB.RB` (3x3 C -> C, with BN
    in the LH/HL/HH branches only), mean/std convs 1 -> 16 -> 16 -> 1."""

    def __init__(self, channels, with_bn):
        super().__init__()
        self.AM = nn.Module()
        self.AM.CA = nn.Module()
        self.AM.CA.conv = nn.Conv1d(1, 1, 3, padding=1, bias=False)
        self.AM.SA = nn.Module()
        self.AM.SA.sa = nn.Sequential(nn.Conv2d(channels, channels // 4, 3, padding=1), nn.ReLU(True),
                                      nn.Conv2d(channels // 4, 1, 3, padding=1))
        self.RB = nn.Module()
        self.RB.RB = BasicConv2d(channels, channels, 3, padding=1, bn=with_bn)
        for name in ("mean", "std"):
            setattr(self, f"{name}_conv1", _Conv2dHolder(1, 16, 1))
            setattr(self, f"{name}_conv2", _Conv2dHolder(16, 16, 3))
            setattr(self, f"{name}_conv3", _Conv2dHolder(16, 1, 1))


class _AGFG(nn.Module):
    """Three guided-filter blocks `GF1..GF3` of the dead wavelet branch (keys only)."""

    def __init__(self, channels, with_bn):
        super().__init__()
        for i in (1, 2, 3):
            gf = nn.Module()
            gf.ARB = _ARB(channels, with_bn)
            setattr(self, f"GF{i}", gf)


class GCM3(nn.Module):
    """Four ETMs on the ResNet stages (`T1..T4`) and the keys of the official wavelet/guided-filter branch
    (`AGFG_LL/LH/HL/HH`), whose outputs the official forward discards: it is not computed here
    (docs/run.md#q3). x1..x4 (B, 256/512/1024/2048, s) -> f1..f4 (B, C, s)."""

    def __init__(self, in_channels, channels, stage_channels=(256, 512, 1024, 2048)):
        super().__init__()
        del in_channels  # the official signature GCM3(256, C); stage widths are fixed by ResNet-50
        for i, cin in enumerate(stage_channels, start=1):
            setattr(self, f"T{i}", ETM(cin, channels))
        for band in ("LL", "LH", "HL", "HH"):
            setattr(self, f"AGFG_{band}", _AGFG(channels, with_bn=band != "LL"))

    def forward(self, x1, x2, x3, x4):
        return self.T1(x1), self.T2(x2), self.T3(x3), self.T4(x4)


class IntraLayerFeatureAggregation(nn.Module):
    """IAF: xc = conv1(x); a = conv3(xc); b = conv5(xc); p = conv3_2([a, b]) * conv5_2([a, b]);
    out = xc + crb([a, b, p]) with crb = Conv3x3 -> ReLU -> BN (BN after ReLU, as official). (B, C, h, w)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 1)
        self.conv3 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv5 = nn.Conv2d(out_channels, out_channels, 5, padding=2)
        self.conv3_2 = nn.Conv2d(2 * out_channels, out_channels, 3, padding=1)
        self.conv5_2 = nn.Conv2d(2 * out_channels, out_channels, 5, padding=2)
        self.crb = nn.Sequential(nn.Conv2d(3 * out_channels, out_channels, 3, padding=1), nn.ReLU(True),
                                 nn.BatchNorm2d(out_channels))

    def forward(self, x):
        xc = self.conv1(x)
        a = self.conv3(xc)
        b = self.conv5(xc)
        c = torch.cat([a, b], 1)
        p = self.conv3_2(c) * self.conv5_2(c)
        return xc + self.crb(torch.cat([a, b, p], 1))


class ChannelAttentionFC(nn.Module):
    """x -> sigmoid(fc(avgpool x) + fc(maxpool x)) with fc = 1x1 C -> C/ratio -> C, no biases (`fc.0`, `fc.2`);
    returns the (B, C, 1, 1) weights."""

    def __init__(self, channels, ratio=16):
        super().__init__()
        self.fc = nn.Sequential(nn.Conv2d(channels, channels // ratio, 1, bias=False), nn.ReLU(True),
                                nn.Conv2d(channels // ratio, channels, 1, bias=False))

    def forward(self, x):
        return torch.sigmoid(self.fc(F.adaptive_avg_pool2d(x, 1)) + self.fc(F.adaptive_max_pool2d(x, 1)))


class SpatialAttention7(nn.Module):
    """x -> sigmoid(conv7x7([mean_c x, max_c x])) (B, 1, h, w); the conv is named `conv` (or `samconv`)."""

    def __init__(self, name="conv"):
        super().__init__()
        self._name = name
        setattr(self, name, nn.Conv2d(2, 1, 7, padding=3, bias=False))

    def forward(self, x):
        s = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return torch.sigmoid(getattr(self, self._name)(s))


class ContextualFeatureAggregation(nn.Module):
    """CAF(high, low): v = conv3([up2(high), low]) (align_corners=True), channel then spatial attention on v,
    out = conv_final([low, v]). (B, C, h/2, w/2), (B, C, h, w) -> (B, C, h, w). `conv1` is never used."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(2 * channels, channels, 1)
        self.conv3 = nn.Conv2d(2 * channels, channels, 3, padding=1)
        self.channel_attention = ChannelAttentionFC(channels)
        self.spatial_attention = SpatialAttention7()
        self.conv_final = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, high, low):
        u = F.interpolate(high, scale_factor=2, mode="bilinear", align_corners=True)
        v = self.conv3(torch.cat([u, low], 1))
        v = v * self.channel_attention(v)
        v = v * self.spatial_attention(v)
        return self.conv_final(torch.cat([low, v], 1))


class PAM(nn.Module):
    """Position attention (DANet): gamma * (v softmax(q^T k)^T) + x. (B, C, h, w)."""

    def __init__(self, in_dim, qk_dim=64):
        super().__init__()
        self.query_conv = nn.Conv2d(in_dim, qk_dim, 1)
        self.key_conv = nn.Conv2d(in_dim, qk_dim, 1)
        self.value_conv = nn.Conv2d(in_dim, in_dim, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        b, c, h, w = x.shape
        q = self.query_conv(x).view(b, -1, h * w).permute(0, 2, 1)
        k = self.key_conv(x).view(b, -1, h * w)
        attn = torch.softmax(torch.bmm(q, k), dim=-1)
        v = self.value_conv(x).view(b, -1, h * w)
        out = torch.bmm(v, attn.permute(0, 2, 1)).view(b, c, h, w)
        return self.gamma * out + x


class GPM(nn.Module):
    """Coarse prior from the deepest features: ASPP (global branch + 1x1 + three dilated 3x3, depth 128) ->
    `head` (3x3 -> PAM) -> `out` (3x3 -> BN -> PReLU -> Dropout2d(0.1) -> 1x1). (B, in, 12, 12) -> (B, 1, 12, 12)
    logits. Convs are initialised N(0, 0.01) as official (docs/run.md#training)."""

    def __init__(self, in_channels=2048, depth=128):
        super().__init__()
        self.branch_main = nn.Sequential(nn.AdaptiveAvgPool2d(1), BasicConv2d(in_channels, depth, 1))
        self.branch0 = BasicConv2d(in_channels, depth, 1)
        self.branch1 = BasicConv2d(in_channels, depth, 3, padding=6, dilation=6)
        self.branch2 = BasicConv2d(in_channels, depth, 3, padding=12, dilation=12)
        self.branch3 = BasicConv2d(in_channels, depth, 3, padding=18, dilation=18)
        self.head = nn.Sequential(BasicConv2d(depth * 5, 256, 3, padding=1), PAM(256))
        self.out = nn.Sequential(nn.Conv2d(256, 64, 3, padding=1), nn.BatchNorm2d(64), nn.PReLU(),
                                 nn.Dropout2d(p=0.1), nn.Conv2d(64, 1, 1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)

    def forward(self, x):
        size = x.shape[2:]
        main = up_ac(self.branch_main(x), size)
        out = torch.cat([main, self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)
        return self.out(self.head(out))


class ODE(nn.Module):
    """Second-order update: a = F1(x), b = F2(a + x), alpha from [a, b]; x + a alpha + b (1 - alpha)."""

    def __init__(self, channels):
        super().__init__()
        self.F1 = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(True),
                                nn.Conv2d(channels, channels, 3, padding=1))
        self.F2 = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(True),
                                nn.Conv2d(channels, channels, 3, padding=1))
        self.getalpha = PooledGate(channels)

    def forward(self, x):
        a = self.F1(x)
        b = self.F2(a + x)
        alpha = self.getalpha(torch.cat([a, b], 1))
        return x + a * alpha + b * (1 - alpha)


class _TFD(nn.Module):
    """Keys of the official TFD block (built, never called: docs/run.md#q3)."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(True),
                                  nn.Conv2d(channels, channels, 3, padding=1))
        self.gatedconv = nn.Module()
        self.gatedconv.conv2d = nn.Conv2d(2 * channels, channels, 3, padding=1)
        self.gatedconv.mask_conv2d = nn.Conv2d(2 * channels, channels, 3, padding=1)
        self.gatedconv.batch_norm2d = nn.BatchNorm2d(channels)


def edge_enhance(e):
    """clamp(e - g, 0, 1) with g the row differences |g[i] - g[i+1]| then, on that already modified map, the
    column differences (the official in-place order, docs/run.md#q17). (B, 1, h, w)."""
    g = e.clone()
    g[:, :, :-1, :] = torch.abs(g[:, :, :-1, :] - g[:, :, 1:, :])
    g[:, :, :, :-1] = torch.abs(g[:, :, :, :-1] - g[:, :, :, 1:])
    return torch.clamp(e - g, 0, 1)


class REU6(nn.Module):
    """Reversible unit of one stage: prior p (resized with align_corners=True), yt = conv([x, p x C]), o = ODE(yt);
    edge = edge_enhance(out_B(o)) at twice the size; mask logits out_y([(1 - sigmoid p) x, o]) + p.
    x (B, C, h, w), prior (B, 1, h', w') -> (mask (B, 1, h, w), edge (B, 1, 2h, 2w))."""

    def __init__(self, in_channels, mid_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels * 2, mid_channels, 1)
        self.ode = ODE(mid_channels)
        self.TFD = _TFD(mid_channels)
        self.out_B = nn.Sequential(
            BasicDeConv2d(mid_channels, mid_channels // 2, 3, stride=2, padding=1, out_padding=1),
            BasicConv2d(mid_channels // 2, mid_channels // 4, 3, padding=1),
            nn.Conv2d(mid_channels // 4, 1, 3, padding=1),
        )
        self.out_y = nn.Sequential(
            BasicConv2d(in_channels * 2, mid_channels, 3, padding=1),
            BasicConv2d(mid_channels, mid_channels // 2, 3, padding=1),
            nn.Conv2d(mid_channels // 2, 1, 3, padding=1),
        )

    def forward(self, x, prior, with_edge=True):
        p = up_ac(prior, x.shape[2:])
        yt = self.conv(torch.cat([x, p.expand(-1, x.shape[1], -1, -1)], 1))
        o = self.ode(yt)
        bound = edge_enhance(self.out_B(o)) if with_edge else None
        r = 1 - torch.sigmoid(p)
        y = self.out_y(torch.cat([r * x, o], 1)) + p
        return y, bound


class REM11(nn.Module):
    """The four REU6 units, deepest first; each takes the previous stage's mask logits as prior.
    Returns native-size masks (f4_out .. f1_out) and edges (b4 .. b1)."""

    def __init__(self, in_channels, mid_channels):
        super().__init__()
        for i in (1, 2, 3, 4):
            setattr(self, f"REU_f{i}", REU6(in_channels, mid_channels))

    def forward(self, feats, prior, with_edges=True):
        f1, f2, f3, f4 = feats
        f4_out, b4 = self.REU_f4(f4, prior, with_edge=False)  # bound_f4 is dropped by the official forward
        f3_out, b3 = self.REU_f3(f3, f4_out, with_edge=with_edges)
        f2_out, b2 = self.REU_f2(f2, f3_out, with_edge=with_edges)
        f1_out, b1 = self.REU_f1(f1, f2_out, with_edge=with_edges)
        return (f4_out, f3_out, f2_out, f1_out), (b4, b3, b2, b1)
