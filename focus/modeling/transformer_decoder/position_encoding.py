"""Sine positional encoding of 2-D feature maps (DETR / Mask2Former, docs/focus.md#position-encoding)."""
import math

import torch
from torch import nn

__all__ = ["PositionEmbeddingSine"]


class PositionEmbeddingSine(nn.Module):
    """DETR sine/cosine positional encoding of a `(B, C, H, W)` map; no parameters.

    With `normalize=True` the row/column index `i+1` is scaled to `(i+1) / (H + 1e-6) * scale`. Channel
    `k` of each half uses the frequency `temperature ** (2 * (k // 2) / num_pos_feats)`; channels interleave
    `sin` (even `k`) and `cos` (odd `k`); the output is `cat(pos_y, pos_x)`, i.e. `2 * num_pos_feats`
    channels, y first (docs/focus.md#position-encoding).

    Args:
        num_pos_feats: channels per axis (half the output width).
        temperature: frequency base.
        normalize: scale positions to `[0, scale]`.
        scale: defaults to `2 * pi`; only valid together with `normalize=True`.
    """

    def __init__(self, num_pos_feats=64, temperature=10000, normalize=False, scale=None):
        super().__init__()
        if scale is not None and not normalize:
            raise ValueError("PositionEmbeddingSine: `normalize` must be True when `scale` is given")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale

    def forward(self, x, mask=None):
        """Encode the positions of `x` `(B, C, H, W)`; `mask` `(B, H, W)` bool marks padding (default: none).

        Returns `(B, 2 * num_pos_feats, H, W)` in `x.dtype` (computed in float32).
        """
        if mask is None:
            mask = torch.zeros((x.size(0), x.size(2), x.size(3)), device=x.device, dtype=torch.bool)
        not_mask = ~mask
        y_embed = not_mask.cumsum(1, dtype=torch.float32)
        x_embed = not_mask.cumsum(2, dtype=torch.float32)
        if self.normalize:
            eps = 1e-6
            y_embed = y_embed / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = x_embed / (x_embed[:, :, -1:] + eps) * self.scale

        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats)

        pos_x = x_embed[:, :, :, None] / dim_t
        pos_y = y_embed[:, :, :, None] / dim_t
        pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
        pos = torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)
        return pos.to(x.dtype)

    def __repr__(self):
        return (
            f"{type(self).__name__}(num_pos_feats={self.num_pos_feats}, temperature={self.temperature}, "
            f"normalize={self.normalize}, scale={self.scale})"
        )
