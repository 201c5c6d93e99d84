"""PositionEmbeddingSine against the DETR formula of docs/focus.md#position-encoding, computed element by element."""
import math

import torch

from focus.modeling.transformer_decoder import PositionEmbeddingSine


def _formula(h, w, num_feats, temperature=10000.0):
    out = torch.zeros(2 * num_feats, h, w, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            y = (i + 1) / (h + 1e-6) * 2 * math.pi
            x = (j + 1) / (w + 1e-6) * 2 * math.pi
            for k in range(num_feats):
                dim_t = temperature ** (2 * (k // 2) / num_feats)
                f = math.sin if k % 2 == 0 else math.cos
                out[k, i, j] = f(y / dim_t)  # y first
                out[num_feats + k, i, j] = f(x / dim_t)
    return out


def test_matches_formula():
    pe = PositionEmbeddingSine(8, normalize=True)
    x = torch.zeros(2, 5, 3, 4)
    pos = pe(x)
    assert pos.shape == (2, 16, 3, 4) and pos.dtype == torch.float32
    ref = _formula(3, 4, 8)
    torch.testing.assert_close(pos[0].double(), ref, atol=1e-6, rtol=0)
    torch.testing.assert_close(pos[1], pos[0])


def test_unnormalized_and_dtype():
    pe = PositionEmbeddingSine(4, normalize=False)
    pos = pe(torch.zeros(1, 1, 2, 2, dtype=torch.bfloat16))
    assert pos.dtype == torch.bfloat16
    # unnormalised: positions are the raw 1-based indices
    assert abs(pos[0, 0, 1, 0].item() - math.sin(2.0)) < 1e-2
