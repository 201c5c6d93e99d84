"""Input builders and a loop re-statement of the operator formula (docs/focus.md#msda-op) shared by the layer tests."""
import math

import torch


def level_start_index(spatial_shapes):
    areas = spatial_shapes[:, 0] * spatial_shapes[:, 1]
    return torch.cat([areas.new_zeros(1), areas.cumsum(0)[:-1]])


def make_inputs(shapes, n=2, lq=5, m=2, dh=3, p=2, dtype=torch.float64, spread=(-0.3, 1.3), seed=0):
    """Random op inputs; locations drawn in `spread` so some samples fall partly/wholly outside the maps."""
    g = torch.Generator().manual_seed(seed)
    spatial_shapes = torch.tensor(shapes, dtype=torch.long)
    s = int((spatial_shapes[:, 0] * spatial_shapes[:, 1]).sum())
    num_levels = len(shapes)
    value = torch.randn(n, s, m, dh, generator=g, dtype=dtype)
    lo, hi = spread
    loc = torch.rand(n, lq, m, num_levels, p, 2, generator=g, dtype=dtype) * (hi - lo) + lo
    attn = torch.rand(n, lq, m, num_levels, p, generator=g, dtype=dtype) + 1e-2
    attn = attn / attn.sum((-1, -2), keepdim=True)
    return value, spatial_shapes, level_start_index(spatial_shapes), loc, attn


def loop_formula(value, spatial_shapes, start_index, loc, attn):
    """out[n,q,m*Dh+c] = sum_l sum_p A * bilinear(V_l, x = loc_x*W - 0.5, y = loc_y*H - 0.5); a sample counts
    only if -1 < y < H and -1 < x < W, and each corner outside the map contributes 0 (docs/focus.md#msda-op)."""
    n_, _, m_, dh = value.shape
    _, lq, _, num_levels, num_points, _ = loc.shape
    out = torch.zeros(n_, lq, m_ * dh, dtype=value.dtype)
    for n in range(n_):
        for q in range(lq):
            for m in range(m_):
                for lvl in range(num_levels):
                    h, w = (int(v) for v in spatial_shapes[lvl])
                    start = int(start_index[lvl])
                    for p in range(num_points):
                        x = float(loc[n, q, m, lvl, p, 0]) * w - 0.5
                        y = float(loc[n, q, m, lvl, p, 1]) * h - 0.5
                        if not (-1 < y < h and -1 < x < w):
                            continue
                        y0, x0 = math.floor(y), math.floor(x)
                        ly, lx = y - y0, x - x0
                        sample = torch.zeros(dh, dtype=value.dtype)
                        for yy, xx, wgt in ((y0, x0, (1 - ly) * (1 - lx)), (y0, x0 + 1, (1 - ly) * lx),
                                            (y0 + 1, x0, ly * (1 - lx)), (y0 + 1, x0 + 1, ly * lx)):
                            if 0 <= yy < h and 0 <= xx < w:
                                sample += wgt * value[n, start + yy * w + xx, m]
                        out[n, q, m * dh:(m + 1) * dh] += attn[n, q, m, lvl, p] * sample
    return out
