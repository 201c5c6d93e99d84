"""Building blocks of the WS-SAM segmentation network, with the parameter names of the released checkpoint.

Written from the network's description (the official code has no licence). Every block takes and returns
NCHW float tensors; "bilinear" resizes use `align_corners=False` unless the argument says otherwise, and the
`align_corners=True` resizes inside the fusion and decoder blocks are part of the released function
(docs/ws_sam.md#q3).
"""
import torch
from torch import nn
from torch.nn import functional as F

from ...layers.gates import PooledGate

__all__ = [
    "BasicConv2d",
    "PositionAttention",
    "GlobalPrior",
    "TextureEnhance",
    "SoftPositionEmbed",
    "SlotAttention",
    "SlotGrouping",
    "MultiScaleGrouping",
    "CBAM",
    "CrossLevelFusion",
    "FusionNeck",
    "RCAB",
    "PriorDecoder",
    "DecoderChain",
]


def _resize(x, size, align_corners):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm -> ReLU; keys `conv.*`, `bn.*`."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class PositionAttention(nn.Module):
    """Position attention (DANet's PAM): `gamma * (v @ softmax(q^T k)^T) + x`, no scaling of the logits.

    q, k: 1x1 convs C -> C/4; v: 1x1 conv C -> C; `gamma` a learned scalar (0 at init).
    """

    def __init__(self, channels):
        super().__init__()
        self.query_conv = nn.Conv2d(channels, channels // 4, 1)
        self.key_conv = nn.Conv2d(channels, channels // 4, 1)
        self.value_conv = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        b, c, h, w = x.shape
        q = self.query_conv(x).flatten(2).transpose(1, 2)  # (B, HW, C/4)
        k = self.key_conv(x).flatten(2)  # (B, C/4, HW)
        attn = torch.softmax(torch.bmm(q, k), dim=-1)  # (B, HW, HW)
        v = self.value_conv(x).flatten(2)  # (B, C, HW)
        out = torch.bmm(v, attn.transpose(1, 2)).view(b, c, h, w)
        return self.gamma * out + x


class GlobalPrior(nn.Module):
    """Coarse prior (keys `GPM.*`): ASPP-like branches on the stride-32 map, position attention, 1-channel logits.

    `x` (B, in_channels, h, w) -> (B, 1, h, w) logits.
    """

    def __init__(self, in_channels=2048, channels=128, dilations=(6, 12, 18)):
        super().__init__()
        self.branch_main = nn.Sequential(nn.AdaptiveAvgPool2d(1), BasicConv2d(in_channels, channels, 1))
        self.branch0 = BasicConv2d(in_channels, channels, 1)
        self.branch1 = BasicConv2d(in_channels, channels, 3, padding=dilations[0], dilation=dilations[0])
        self.branch2 = BasicConv2d(in_channels, channels, 3, padding=dilations[1], dilation=dilations[1])
        self.branch3 = BasicConv2d(in_channels, channels, 3, padding=dilations[2], dilation=dilations[2])
        self.head = nn.Sequential(BasicConv2d(5 * channels, 2 * channels, 3, padding=1), PositionAttention(2 * channels))
        self.out = nn.Sequential(
            nn.Conv2d(2 * channels, 64, 3, padding=1),
            nn.BatchNorm2d(64),
            nn.PReLU(),
            nn.Dropout2d(0.1),
            nn.Conv2d(64, 1, 1),
        )
        for m in self.modules():  # initialisation of the released training (only matters from scratch)
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)

    def forward(self, x):
        main = _resize(self.branch_main(x), x.shape[-2:], align_corners=True)
        y = torch.cat([main, self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], dim=1)
        return self.out(self.head(y))


class TextureEnhance(nn.Module):
    """Texture enhancement (keys `T{1..4}.*`): four receptive-field branches (1, 3, 5, 7), fused, plus a residual.

    `x` (B, in_channels, h, w) -> (B, channels, h, w).
    """

    def __init__(self, in_channels, channels=128):
        super().__init__()
        self.relu = nn.ReLU()
        self.branch0 = BasicConv2d(in_channels, channels, 1)
        for i, k in ((1, 3), (2, 5), (3, 7)):
            branch = nn.Sequential(
                BasicConv2d(in_channels, channels, 1),
                BasicConv2d(channels, channels, (1, k), padding=(0, k // 2)),
                BasicConv2d(channels, channels, (k, 1), padding=(k // 2, 0)),
                BasicConv2d(channels, channels, 3, padding=k, dilation=k),
            )
            setattr(self, f"branch{i}", branch)
        self.conv_cat = BasicConv2d(4 * channels, channels, 3, padding=1)
        self.conv_res = BasicConv2d(in_channels, channels, 1)

    def forward(self, x):
        y = torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], dim=1)
        return self.relu(self.conv_cat(y) + self.conv_res(x))


def position_grid(resolution):
    """(1, H, W, 4) float32 grid with channels `[r, c, 1 - r, 1 - c]`, `r`, `c` = linspace(0, 1) on rows/cols."""
    h, w = resolution
    r, c = torch.meshgrid(torch.linspace(0.0, 1.0, h), torch.linspace(0.0, 1.0, w), indexing="ij")
    grid = torch.stack([r, c], dim=-1)
    return torch.cat([grid, 1.0 - grid], dim=-1).unsqueeze(0)


class SoftPositionEmbed(nn.Module):
    """Learned positional embedding `proj(grid)` (Linear 4 -> C) on a fixed grid, (1, H, W, C).

    The grid is a non-persistent buffer (follows the module's device, never in the state dict;
    docs/ws_sam.md#q13).
    """

    def __init__(self, channels, resolution):
        super().__init__()
        self.proj = nn.Linear(4, channels)
        self.register_buffer("grid", position_grid(resolution), persistent=False)

    def forward(self):
        return self.proj(self.grid)


class SlotAttention(nn.Module):
    """Slot attention with learned initial slots (keys `slot_attention.*`).

    `inputs` (B, N, D) -> slots (B, num_slots, D). The attention is normalised over the slots, then each slot's
    weights are renormalised over the N positions (a weighted mean), `iters` GRU updates with a residual MLP.
    The slot indices are created on the input's device (docs/ws_sam.md#q12).
    """

    def __init__(self, num_slots, dim=128, iters=3, hidden_dim=128, eps=1e-8):
        super().__init__()
        self.num_slots, self.iters, self.eps, self.scale = num_slots, iters, eps, dim**-0.5
        self.slots_embedding = nn.Embedding(num_slots, dim)
        self.project_q = nn.Linear(dim, dim)
        self.project_k = nn.Linear(dim, dim)
        self.project_v = nn.Linear(dim, dim)
        self.gru = nn.GRUCell(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, dim))
        self.norm_input = nn.LayerNorm(dim)
        self.norm_slots = nn.LayerNorm(dim)
        self.norm_pre_ff = nn.LayerNorm(dim)

    def forward(self, inputs):
        b, _, d = inputs.shape
        inputs = self.norm_input(inputs)
        k, v = self.project_k(inputs), self.project_v(inputs)
        idx = torch.arange(self.num_slots, device=inputs.device)
        slots = self.slots_embedding(idx).unsqueeze(0).expand(b, -1, -1)
        for _ in range(self.iters):
            prev = slots
            q = self.project_q(self.norm_slots(slots))
            dots = torch.bmm(q, k.transpose(1, 2)) * self.scale  # (B, S, N)
            attn = dots.softmax(dim=1) + self.eps
            attn = attn / attn.sum(dim=-1, keepdim=True)
            updates = torch.bmm(attn, v)  # (B, S, D)
            slots = self.gru(updates.reshape(-1, d), prev.reshape(-1, d)).view(b, -1, d)
            slots = slots + self.mlp(self.norm_pre_ff(slots))
        return slots


class SlotGrouping(nn.Module):
    """Slot-attention grouping of a feature map (keys `SAn.*` / `SAm.*`).

    `x` (B, C, H, W) with (H, W) == `resolution` -> (B, C, H, W): positional embedding, LayerNorm + MLP,
    slot attention, then every slot broadcast to all positions plus a second positional embedding, slots
    stacked slot-major on channels and mixed by a 1x1 conv (a per-image constant plus a linear function of
    position; docs/ws_sam.md#q14).
    """

    def __init__(self, channels=128, resolution=(12, 12), num_slots=4, iters=3):
        super().__init__()
        self.resolution = tuple(resolution)
        self.encoder_pos = SoftPositionEmbed(channels, self.resolution)
        self.layer_norm = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(), nn.Linear(channels, channels))
        self.slot_attention = SlotAttention(num_slots, channels, iters, hidden_dim=channels)
        self.decoder_pos = SoftPositionEmbed(channels, self.resolution)
        self.conv = nn.Conv2d(num_slots * channels, channels, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        y = x.permute(0, 2, 3, 1) + self.encoder_pos()
        y = self.mlp(self.layer_norm(y.reshape(b, h * w, c)))
        slots = self.slot_attention(y)  # (B, S, C)
        y = slots[:, :, None, None, :] + self.decoder_pos().unsqueeze(1)  # (B, S, H, W, C)
        y = y.permute(0, 1, 4, 2, 3).reshape(b, -1, h, w)
        return self.conv(y)


class MultiScaleGrouping(nn.Module):
    """Multi-scale feature grouping (MFG, keys `ODE4.*`): two slot groupings with different slot counts,
    aggregated with a learned gate, `x + a * f1 + (1 - a) * f2`, `f1 = SAn(x)`, `f2 = SAm(f1 + x)`.

    `x` (B, C, H, W) -> (B, C, H, W); (H, W) must equal `resolution` (the positional grids are fixed;
    docs/ws_sam.md#q1).
    """

    def __init__(self, channels=128, resolution=(12, 12), num_slots=(4, 2), iters=3, size_key=None):
        super().__init__()
        self.resolution = tuple(resolution)
        self.size_key = size_key
        self.SAn = SlotGrouping(channels, resolution, num_slots[0], iters)
        self.SAm = SlotGrouping(channels, resolution, num_slots[1], iters)
        self.getalpha = PooledGate(channels)

    def forward(self, x):
        if tuple(x.shape[-2:]) != self.resolution:
            hint = f" (set by {self.size_key})" if self.size_key else ""
            raise ValueError(
                f"WS-SAM's grouping module has a fixed {self.resolution[0]}x{self.resolution[1]} positional grid "
                f"(MODEL.WS_SAM.SLOT_RESOLUTION) but got a {x.shape[-2]}x{x.shape[-1]} stride-32 map: the network "
                f"input must be {32 * self.resolution[0]}x{32 * self.resolution[1]}{hint}, or any size whose "
                f"stride-32 map is {self.resolution[0]}x{self.resolution[1]}"
            )
        f1 = self.SAn(x)
        f2 = self.SAm(f1 + x)
        alpha = self.getalpha(torch.cat([f1, f2], dim=1))
        return x + alpha * f1 + (1 - alpha) * f2


class _ChannelAttention(nn.Module):
    def __init__(self, channels, reduction=16):
        super().__init__()
        self.shared_MLP = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1, bias=False),
            nn.ReLU(),
            nn.Conv2d(channels // reduction, channels, 1, bias=False),
        )

    def forward(self, x):
        avg = self.shared_MLP(F.adaptive_avg_pool2d(x, 1))
        mx = self.shared_MLP(F.adaptive_max_pool2d(x, 1))
        return torch.sigmoid(avg + mx)


class _SpatialAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv2d = nn.Conv2d(2, 1, 7, padding=3)

    def forward(self, x):
        y = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv2d(y))


class CBAM(nn.Module):
    """Channel then spatial attention (CBAM), (B, C, H, W) -> same."""

    def __init__(self, channels):
        super().__init__()
        self.channel_attention = _ChannelAttention(channels)
        self.spatial_attention = _SpatialAttention()

    def forward(self, x):
        x = self.channel_attention(x) * x
        return self.spatial_attention(x) * x


class CrossLevelFusion(nn.Module):
    """Fuses a level with the next coarser one (keys `interFA{1..3}.*`).

    `(f_low (B, C, h, w), f_high (B, C, h', w'))` -> `(att, out)`, both (B, C, h, w): `att` = CBAM of a 3x3 conv
    of `[f_low, up(f_high)]` (what the chain passes upward), `out` = 1x1 conv of `[att, f_low]`.
    """

    def __init__(self, channels=128):
        super().__init__()
        self.conv3x3 = BasicConv2d(2 * channels, channels, 3, padding=1)
        self.cbam = CBAM(channels)
        self.conv1x1 = BasicConv2d(2 * channels, channels, 1)

    def forward(self, f_low, f_high):
        up = _resize(f_high, f_low.shape[-2:], align_corners=True)
        att = self.cbam(self.conv3x3(torch.cat([f_low, up], dim=1)))
        return att, self.conv1x1(torch.cat([att, f_low], dim=1))


class FusionNeck(nn.Module):
    """Texture enhancement of the four levels, MFG on the coarsest, cross-level fusion (keys `gcm_interFA.*`).

    `(x1, x2, x3, x4)` (strides 4..32) -> `(f1, f2, f3, f4)`, all `channels` wide at the same resolutions.
    """

    def __init__(self, in_channels=(256, 512, 1024, 2048), channels=128, resolution=(12, 12), num_slots=(4, 2),
                 iters=3, size_key=None):
        super().__init__()
        for i, c in enumerate(in_channels, start=1):
            setattr(self, f"T{i}", TextureEnhance(c, channels))
        self.ODE4 = MultiScaleGrouping(channels, resolution, num_slots, iters, size_key=size_key)
        self.interFA1 = CrossLevelFusion(channels)
        self.interFA2 = CrossLevelFusion(channels)
        self.interFA3 = CrossLevelFusion(channels)

    def forward(self, x1, x2, x3, x4):
        f1, f2, f3 = self.T1(x1), self.T2(x2), self.T3(x3)
        f4 = self.ODE4(self.T4(x4))
        att3, f3 = self.interFA3(f3, f4)
        att2, f2 = self.interFA2(f2, att3)
        _, f1 = self.interFA1(f1, att2)
        return f1, f2, f3, f4


class _ChannelGate(nn.Module):
    def __init__(self, channels, reduction=16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return x * self.conv_du(self.avg_pool(x))


class RCAB(nn.Module):
    """Residual channel-attention block: `x + CA(conv(relu(conv x)))`, keys `body.{0,2}`, `body.3.conv_du.*`."""

    def __init__(self, channels=128):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            _ChannelGate(channels),
        )

    def forward(self, x):
        return self.body(x) + x


class PriorDecoder(nn.Module):
    """Prior-guided decoder (keys `decoder{1..4}.*`): the coarser logits, resized to `f` (align_corners=True),
    split `f` into a background-attended and a foreground-attended stream, fused into 1-channel logits.

    `(f (B, C, h, w), prior (B, 1, h', w'))` -> (B, 1, h, w) logits.
    """

    def __init__(self, channels=128):
        super().__init__()
        self.rcab_a = RCAB(channels)
        self.rcab_b = RCAB(channels)
        self.conv3x3 = BasicConv2d(2 * channels, channels, 3, padding=1)
        self.out_s = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, f, prior):
        s = torch.sigmoid(_resize(prior, f.shape[-2:], align_corners=True))
        a = self.rcab_a(f * (1 - s) + f)
        b = self.rcab_b(f * s + f)
        return self.out_s(self.conv3x3(torch.cat([a, b], dim=1)))


class DecoderChain(nn.Module):
    """Four prior decoders from coarse to fine (keys `rem_decoder.*`).

    `(f1, f2, f3, f4, prior)` -> `(p4, p3, p2, p1)` logits at the resolutions of f4..f1.
    """

    def __init__(self, channels=128):
        super().__init__()
        for i in (4, 3, 2, 1):
            setattr(self, f"decoder{i}", PriorDecoder(channels))

    def forward(self, f1, f2, f3, f4, prior):
        p4 = self.decoder4(f4, prior)
        p3 = self.decoder3(f3, p4)
        p2 = self.decoder2(f2, p3)
        p1 = self.decoder1(f1, p2)
        return p4, p3, p2, p1
