"""Modulated deformable convolution (DCNv2) for inference as one weighted row gather and one matmul per chunk.

`torchvision.ops.deform_conv2d` on the CPU builds its column buffer in a single-threaded loop (one bilinear sample
per channel, tap and position), which dominates BiRefNet's stride-4 decoder block. `deform_conv2d_gather` computes
the same function with library kernels: the zero-padded input is laid out once channels-last (`padded_table`), and
every bilinear sample is the weighted sum of four table rows, exactly torchvision's positions, bilinear weights
(times the modulation) and zero contribution outside the map, computed by `F.embedding_bag(mode="sum",
per_sample_weights=...)` (a fused, vectorised gather-and-accumulate); the columns of a chunk of output positions
then go through one matmul. Only the summation order differs from torchvision (~1e-6 relative). The table is shared
by the branches of an ASPP that read the same input.
"""
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["padded_table", "deform_conv2d_gather"]

# samples (positions x taps) per chunk: their columns are samples x C values (16 MB at C=64, fp32)
_SAMPLES_PER_CHUNK = 1 << 16


def padded_table(x: torch.Tensor) -> torch.Tensor:
    """``x (B, C, H, W)`` -> fp32 ``(B*(H+2)*(W+2), C)``: the input zero-padded by one pixel on every side,
    channels last; row ``b*(H+2)*(W+2) + (y+1)*(W+2) + (x+1)`` holds pixel ``(y, x)`` of image ``b``."""
    B, C, H, W = x.shape
    return F.pad(x.float(), (1, 1, 1, 1)).permute(0, 2, 3, 1).reshape(B * (H + 2) * (W + 2), C)


def deform_conv2d_gather(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor,
                         bias: Optional[torch.Tensor] = None, stride: int = 1, padding: int = 0,
                         mask: Optional[torch.Tensor] = None, table: Optional[torch.Tensor] = None) -> torch.Tensor:
    """`torchvision.ops.deform_conv2d` (one offset group, dilation 1, square stride/padding) for inference.

    Args:
        x: ``(B, C, H, W)``; offset: ``(B, 2K, Ho, Wo)`` (``dy, dx`` per tap ``k = i*kw + j``); weight:
            ``(O, C, kh, kw)``; mask: ``(B, K, Ho, Wo)`` modulation or None; table: `padded_table(x)` if already
            built. Positions, bilinear weights and samples are fp32; the matmuls run in ``weight``'s dtype.

    Returns ``(B, O, Ho, Wo)`` (channels-last memory) in ``weight``'s dtype.
    """
    B, C, H, W = x.shape
    O, _, kh, kw = weight.shape
    K = kh * kw
    Ho, Wo = offset.shape[-2:]
    dtype = weight.dtype
    if table is None:
        table = padded_table(x)
    device = x.device
    # tap base positions: y = oy*stride - padding + i (+ dy); torchvision adds the integer base to the float offset
    oy = torch.arange(Ho, device=device) * stride - padding
    ox = torch.arange(Wo, device=device) * stride - padding
    ti = torch.arange(kh, device=device).repeat_interleave(kw)
    tj = torch.arange(kw, device=device).repeat(kh)
    n = Ho * Wo
    base_y = (oy.view(Ho, 1, 1) + ti.view(1, 1, K)).expand(Ho, Wo, K).reshape(1, n, K).float()
    base_x = (ox.view(1, Wo, 1) + tj.view(1, 1, K)).expand(Ho, Wo, K).reshape(1, n, K).float()
    # (B*N, K): positions of every sample, image-major
    y = (base_y + offset.float().view(B, K, 2, n)[:, :, 0].transpose(1, 2)).reshape(B * n, K)
    xs = (base_x + offset.float().view(B, K, 2, n)[:, :, 1].transpose(1, 2)).reshape(B * n, K)
    m = None if mask is None else mask.float().view(B, K, n).transpose(1, 2).reshape(B * n, K)
    img = torch.arange(B, device=device).repeat_interleave(n) * ((H + 2) * (W + 2))  # (B*N,) table row offsets
    w_cols = weight.permute(0, 2, 3, 1).reshape(O, K * C).t()  # (K*C, O), column index k*C + c
    out = x.new_empty((B * n, O), dtype=dtype)
    step = max(1, _SAMPLES_PER_CHUNK // K)
    for s in range(0, B * n, step):
        e = min(B * n, s + step)
        cols = _sample(table, y[s:e], xs[s:e], H, W, None if m is None else m[s:e], img[s:e])  # (P, K*C) fp32
        if bias is None:
            torch.mm(cols.to(dtype), w_cols, out=out[s:e])
        else:
            torch.addmm(bias.to(dtype), cols.to(dtype), w_cols, out=out[s:e])
    return out.view(B, Ho, Wo, O).permute(0, 3, 1, 2)


def _sample(table, y, x, H, W, mask, row0):
    """Bilinear samples ``(P, K*C)`` (fp32) at positions ``y, x (P, K)`` from `padded_table` rows (``row0 (P,)``:
    the image's first row), as torchvision's `bilinear_interpolate` (0 if ``y <= -1 or y >= H or x <= -1 or
    x >= W``; corners outside the map read the zero padding), times ``mask``."""
    P, K = y.shape
    valid = (y > -1) & (y < H) & (x > -1) & (x < W)
    y0, x0 = y.floor(), x.floor()
    lh, lw = y - y0, x - x0
    hh, hw = 1 - lh, 1 - lw
    wts = torch.stack((hh * hw, hh * lw, lh * hw, lh * lw), dim=-1)  # (P, K, 4), torchvision's w1..w4
    scale = valid.float() if mask is None else mask * valid
    wts = wts * scale.unsqueeze(-1)
    Wp = W + 2
    i1 = ((y0 + 1) * Wp + (x0 + 1)).long()
    i1 = torch.where(valid, i1, torch.zeros_like(i1)) + row0.view(P, 1)
    idx = torch.stack((i1, i1 + 1, i1 + Wp, i1 + Wp + 1), dim=-1)  # (P, K, 4)
    out = F.embedding_bag(idx.view(P * K, 4), table, per_sample_weights=wts.view(P * K, 4), mode="sum")
    return out.view(P, K * table.shape[1])
