"""Modulated deformable convolution (DCNv2) for inference as gathers and one matrix product per chunk.

`torchvision.ops.deform_conv2d` on the CPU builds its column buffer in a single-threaded loop (one bilinear sample
per channel, tap and position), which dominates BiRefNet's stride-4 decoder block. `deform_conv2d_gather` computes
the same function with parallel, vectorised PyTorch ops: the input is laid out once as a *corner table* (every
position holds its 2x2 neighbourhood of the zero-padded input, channels last), each sample is one row gather
of the four corners weighted exactly as torchvision weights them (same positions, same bilinear weights, the same
zero contribution outside the map), and the columns of a chunk of output positions go through one matmul. Only the
summation order differs from torchvision (~1e-6 relative). The table is shared by the branches of an ASPP that
read the same input (`corner_table`).
"""
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["corner_table", "deform_conv2d_gather"]

# samples (positions x taps) per chunk: the gathered corners are samples x 4C values (64 MB at C=64, fp32)
_SAMPLES_PER_CHUNK = 1 << 16


def corner_table(x: torch.Tensor) -> torch.Tensor:
    """``x (B, C, H, W)`` -> ``(B, (H+1)*(W+1), 4C)``: row ``(r, s)`` holds the input at ``(r-1, s-1), (r-1, s),
    (r, s-1), (r, s)`` (zero outside), the corners of any sample whose ``floor(y), floor(x)`` is ``(r-1, s-1)``."""
    B, C, H, W = x.shape
    xp = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)  # (B, H+2, W+2, C)
    table = torch.cat((xp[:, :-1, :-1], xp[:, :-1, 1:], xp[:, 1:, :-1], xp[:, 1:, 1:]), dim=-1)
    return table.reshape(B, (H + 1) * (W + 1), 4 * C)


def deform_conv2d_gather(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                         bias: Optional[torch.Tensor] = None, stride: int = 1, padding: int = 0,
                         mask: Optional[torch.Tensor] = None, table: Optional[torch.Tensor] = None) -> torch.Tensor:
    """`torchvision.ops.deform_conv2d` (one offset group, dilation 1, square stride/padding) for inference.

    Args:
        x: ``(B, C, H, W)``; offset: ``(B, 2K, Ho, Wo)`` (``dy, dx`` per tap ``k = i*kw + j``); weight:
            ``(O, C, kh, kw)``; mask: ``(B, K, Ho, Wo)`` modulation or None; table: `corner_table(x)` if already
            built. The matmuls run in ``weight``'s dtype; positions and bilinear weights are always fp32.

    Returns ``(B, O, Ho, Wo)`` (channels-last memory) in ``weight``'s dtype.
    """
    B, C, H, W = x.shape
    O, _, kh, kw = weight.shape
    K = kh * kw
    Ho, Wo = offset.shape[-2:]
    dtype = weight.dtype
    if table is None:
        table = corner_table(x.to(dtype))
    table = table.to(dtype)
    device = x.device
    # tap base positions: y = oy*stride - padding + i (+ dy); torchvision adds the integer base to the float offset
    oy = torch.arange(Ho, device=device) * stride - padding
    ox = torch.arange(Wo, device=device) * stride - padding
    ti = torch.arange(kh, device=device).repeat_interleave(kw)
    tj = torch.arange(kw, device=device).repeat(kh)
    base_y = (oy.view(Ho, 1, 1) + ti.view(1, 1, K)).expand(Ho, Wo, K).reshape(Ho * Wo, K).float()
    base_x = (ox.view(1, Wo, 1) + tj.view(1, 1, K)).expand(Ho, Wo, K).reshape(Ho * Wo, K).float()
    w_cols = weight.permute(0, 2, 3, 1).reshape(O, K * C).t()  # (K*C, O), column index k*C + c
    offset = offset.float().view(B, K, 2, Ho * Wo)
    if mask is not None:
        mask = mask.float().view(B, K, Ho * Wo)
    out = x.new_empty((B, Ho * Wo, O), dtype=dtype)
    n = Ho * Wo
    step = max(1, _SAMPLES_PER_CHUNK // K)
    for b in range(B):
        dy, dx = offset[b, :, 0].t(), offset[b, :, 1].t()  # (N, K)
        m = None if mask is None else mask[b].t()
        for s in range(0, n, step):
            e = min(n, s + step)
            y = base_y[s:e] + dy[s:e]
            xx = base_x[s:e] + dx[s:e]
            cols = _sample(table[b], y, xx, H, W, None if m is None else m[s:e])  # (P, K, C) fp32
            out_b = out[b, s:e]
            if bias is None:
                torch.mm(cols.view(e - s, K * C).to(dtype), w_cols, out=out_b)
            else:
                torch.addmm(bias.to(dtype), cols.view(e - s, K * C).to(dtype), w_cols, out=out_b)
    return out.view(B, Ho, Wo, O).permute(0, 3, 1, 2)


def _sample(table, y, x, H, W, mask):
    """Bilinear samples ``(P, K, C)`` (fp32) at positions ``y, x (P, K)`` from one image's corner table, as
    torchvision's `bilinear_interpolate` (0 if ``y <= -1 or y >= H or x <= -1 or x >= W``; corners outside the
    map contribute 0), times ``mask``."""
    P, K = y.shape
    C = table.shape[1] // 4
    valid = (y > -1) & (y < H) & (x > -1) & (x < W)
    y0, x0 = y.floor(), x.floor()
    lh, lw = y - y0, x - x0
    hh, hw = 1 - lh, 1 - lw
    wts = torch.stack((hh * hw, hh * lw, lh * hw, lh * lw), dim=-1)  # (P, K, 4), torchvision's w1..w4
    scale = valid.float() if mask is None else mask * valid
    wts = wts * scale.unsqueeze(-1)
    idx = ((y0 + 1) * (W + 1) + (x0 + 1)).long()
    idx = torch.where(valid, idx, torch.zeros_like(idx))
    corners = table.index_select(0, idx.view(-1)).view(P * K, 4, C)
    if corners.dtype != torch.float32:
        corners = corners.float()
    return torch.bmm(wts.view(P * K, 1, 4), corners).view(P, K, C)
