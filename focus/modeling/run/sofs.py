"""RUN's SOFS (mask-domain optimisation) pieces: the m-hat `SparsePipeline` and the Mamba prior
`Selectivemamba` (two VSS blocks over a four-direction selective scan), with the official parameter names.

The official forward re-creates `Selectivemamba` with random weights at every call; here it is a registered
submodule (`selective_mamba`), initialised once like the official block (docs/run.md#q1).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from focus.layers.selective_scan import selective_scan

from .blocks import up

__all__ = ["SS2D", "CAB", "VSSBlock", "Selectivemamba", "SparsePipeline", "minmax_all"]


class SS2D(nn.Module):
    """2D selective scan block (VMamba / MambaIR SS2D, d_conv 3, no dropout). (B, H, W, C) -> (B, H, W, C).

    Four scan orders of the H*W tokens (row-major, column-major and both reversed), one selective scan over the
    4 * D_in channels (`focus.layers.selective_scan`, float32, softplus threshold 20, D skip), summed back.
    """

    def __init__(self, d_model, d_state=16, d_conv=3, expand=2, dt_min=0.001, dt_max=0.1, dt_init_floor=1e-4,
                 scan_backend=None):
        super().__init__()
        self.d_model, self.d_state = d_model, d_state
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16)
        self.scan_backend = scan_backend
        d_inner, k = self.d_inner, 4
        self.in_proj = nn.Linear(d_model, d_inner * 2, bias=False)
        self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2, groups=d_inner)
        self.act = nn.SiLU()
        x_proj = [nn.Linear(d_inner, self.dt_rank + 2 * d_state, bias=False).weight for _ in range(k)]
        self.x_proj_weight = nn.Parameter(torch.stack(x_proj))  # (K, R + 2N, D_in)
        std = self.dt_rank ** -0.5
        self.dt_projs_weight = nn.Parameter(torch.empty(k, d_inner, self.dt_rank).uniform_(-std, std))
        dt = torch.exp(torch.rand(k, d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_projs_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(k * d_inner, 1)
        self.A_logs = nn.Parameter(torch.log(a))  # (K * D_in, N)
        self.Ds = nn.Parameter(torch.ones(k * d_inner))
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def forward_core(self, x):
        """x (B, D_in, H, W) -> (B, D_in, L), the sum of the four directions mapped back to row-major order."""
        b, _, h, w = x.shape
        length, k = h * w, 4
        x_hwwh = torch.stack([x.view(b, -1, length), x.transpose(2, 3).contiguous().view(b, -1, length)], 1)
        xs = torch.cat([x_hwwh, torch.flip(x_hwwh, dims=[-1])], dim=1)  # (B, K, D_in, L)
        x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj_weight)
        dts, bs, cs = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=2)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_projs_weight)
        out = selective_scan(
            xs.float().reshape(b, -1, length), dts.contiguous().float().view(b, -1, length),
            -torch.exp(self.A_logs.float()), bs.float(), cs.float(), self.Ds.float(),
            self.dt_projs_bias.float().view(-1), backend=self.scan_backend,
        ).view(b, k, -1, length)
        inv = torch.flip(out[:, 2:4], dims=[-1])
        wh = out[:, 1].view(b, -1, w, h).transpose(2, 3).contiguous().view(b, -1, length)
        invwh = inv[:, 1].view(b, -1, w, h).transpose(2, 3).contiguous().view(b, -1, length)
        return out[:, 0] + inv[:, 0] + wh + invwh

    def forward(self, x):
        b, h, w, _ = x.shape
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = self.act(self.conv2d(x.permute(0, 3, 1, 2).contiguous()))
        y = self.forward_core(x).to(x.dtype)
        y = self.out_norm(y.transpose(1, 2).contiguous().view(b, h, w, -1))
        return self.out_proj(y * F.silu(z))


class _ChannelAttention(nn.Module):
    def __init__(self, num_feat, squeeze_factor=30):
        super().__init__()
        self.attention = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(num_feat, num_feat // squeeze_factor, 1),
                                       nn.ReLU(inplace=True), nn.Conv2d(num_feat // squeeze_factor, num_feat, 1),
                                       nn.Sigmoid())

    def forward(self, x):
        return x * self.attention(x)


class CAB(nn.Module):
    """Channel attention block of MambaIR (full: 3x3 C -> C/3 -> GELU -> 3x3 -> CA; light: 1x1 C -> C/2, depthwise
    3x3, GELU, 1x1, depthwise dilated 3x3, CA). (B, C, H, W)."""

    def __init__(self, num_feat, is_light_sr=False, compress_ratio=3, squeeze_factor=30):
        super().__init__()
        if is_light_sr:
            mid = num_feat // 2
            self.cab = nn.Sequential(
                nn.Conv2d(num_feat, mid, 1), nn.Conv2d(mid, mid, 3, padding=1, groups=mid), nn.GELU(),
                nn.Conv2d(mid, num_feat, 1), nn.Conv2d(num_feat, num_feat, 3, padding=2, groups=num_feat, dilation=2),
                _ChannelAttention(num_feat, squeeze_factor))
        else:
            mid = num_feat // compress_ratio
            self.cab = nn.Sequential(nn.Conv2d(num_feat, mid, 3, padding=1), nn.GELU(),
                                     nn.Conv2d(mid, num_feat, 3, padding=1), _ChannelAttention(num_feat, squeeze_factor))

    def forward(self, x):
        return self.cab(x)


class VSSBlock(nn.Module):
    """x = x * skip_scale + SS2D(ln_1 x); x = x * skip_scale2 + CAB(ln_2 x). Input (B, L, C) with (H, W):
    the tokens are *viewed* as (B, H, W, C), whatever their memory order (docs/run.md#q4)."""

    def __init__(self, hidden_dim, d_state=16, expand=2.0, is_light_sr=False, scan_backend=None):
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.self_attention = SS2D(hidden_dim, d_state=d_state, expand=expand, scan_backend=scan_backend)
        self.skip_scale = nn.Parameter(torch.ones(hidden_dim))
        self.conv_blk = CAB(hidden_dim, is_light_sr)
        self.ln_2 = nn.LayerNorm(hidden_dim)
        self.skip_scale2 = nn.Parameter(torch.ones(hidden_dim))

    def forward(self, inp, x_size):
        b, _, c = inp.shape
        inp = inp.view(b, *x_size, c)
        x = inp * self.skip_scale + self.self_attention(self.ln_1(inp))
        cab = self.conv_blk(self.ln_2(x).permute(0, 3, 1, 2).contiguous()).permute(0, 2, 3, 1).contiguous()
        x = x * self.skip_scale2 + cab
        return x.view(b, -1, c)


def minmax_all(x):
    """(x - min) / (max - min + 1e-8) over the whole tensor, all batch items together (docs/run.md#q5)."""
    return (x - x.min()) / (x.max() - x.min() + 1e-8)


class Selectivemamba(nn.Module):
    """SOFS Mamba prior: f4 (B, C, h, w) weighted by the m-hat map and by the background ratio, through VSS1 (full
    CAB) and VSS2 (light CAB), then `out_y` 3x3 C -> 1. Returns prior logits (B, 1, h, w)."""

    def __init__(self, channels, d_state=16, scan_backend=None):
        super().__init__()
        self.out_y = nn.Sequential(nn.Conv2d(channels, 1, 3, padding=1))
        self.VSS1 = VSSBlock(channels, d_state, is_light_sr=False, scan_backend=scan_backend)
        self.VSS2 = VSSBlock(channels, d_state, is_light_sr=True, scan_backend=scan_backend)

    def forward(self, f4, m_hat, pred_b0, image):
        b, c, h, w = f4.shape
        bd = minmax_all(up((pred_b0 / (image + 1e-6)).mean(1, keepdim=True), (h, w)))
        mh = minmax_all(up(m_hat, (h, w)))
        tokens = f4.view(b, -1, c)  # a view of the NCHW buffer, not a permute (docs/run.md#q4)
        f41 = self.VSS1(tokens, (h, w)).view(b, c, h, w)
        f42 = self.VSS2(tokens, (h, w)).view(b, c, h, w)
        return self.out_y(f41 * mh + f42 * bd)


def _get_w(p):
    return torch.where((p > 0.4) & (p < 0.6), torch.zeros_like(p), torch.ones_like(p))


def _m_tilde(p):
    p = p.clone()
    p[(p > 0.1) & (p < 0.4)] = 0.1
    p[(p > 0.6) & (p < 0.9)] = 0.9
    return p


class _SparseModule(nn.Module):
    def __init__(self, channels=32, layers=6, alpha=0.1):
        super().__init__()
        convs = [nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(layers):
            convs += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
        convs.append(nn.Conv2d(channels, 1, 3, padding=1))
        self.convs = nn.Sequential(*convs)
        self.alpha = nn.Parameter(torch.tensor([alpha]))

    def forward(self, m, m_tilde):
        s = self.convs(_get_w(m) * m - _get_w(m_tilde) * m_tilde)
        return self.alpha * s * _get_w(s)


class SparsePipeline(nn.Module):
    """m-hat update of the mask (residual sparsity term), on logit-valued maps as official (docs/run.md#q11).
    I, B (B, 3, H, W), masks (B, 1, H, W) -> (B, 1, H, W) (mean over the 3 channels)."""

    def __init__(self, channels=32, layers=6, alpha=0.01):
        super().__init__()
        self.alpha = alpha
        self.mu = nn.Parameter(torch.tensor([0.01]))
        self.sparse_module = _SparseModule(channels, layers)

    def forward(self, I, B, m_k_1, m_hat_k_1, m_k_2):
        del m_hat_k_1
        m_tilde = _m_tilde(m_k_2)
        s = self.sparse_module(m_k_1, m_tilde)
        t = m_tilde + m_k_1 - m_tilde  # left to right, as written (not bit-identical to m_k_1)
        w2 = _get_w(t) ** 2
        num = I ** 2 - I * B + self.alpha * 1 * w2 * t - s + self.mu * m_k_1
        den = I ** 2 + 1 + self.mu * 1 + 1e-6
        return (num / den).mean(1, keepdim=True)
