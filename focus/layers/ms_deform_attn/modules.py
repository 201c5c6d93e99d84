"""`MSDeformAttn`: the multi-scale deformable attention module of Deformable DETR, shared by the ViT-Adapter
backbone (ratio 0.5 in FOCUS-L/G adapters) and the pixel decoder (ratio 1), docs/focus.md#msda-module."""
import math

import torch
from torch import nn
from torch.nn.init import constant_, xavier_uniform_

from .functions import ms_deform_attn

__all__ = ["MSDeformAttn"]


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention (docs/focus.md#msda-module).

    Each query attends to `n_points` sampled positions per head and level around its reference point; offsets
    (in pixels of each level) and weights (softmax jointly over levels and points) are predicted from the query.

    Args:
        d_model: channels C of query and input.
        n_levels: number of feature levels L.
        n_heads: number of heads M.
        n_points: sampling points P per head and level.
        ratio: value/output projection width is `int(d_model * ratio)` (the edge-enhancer copy of the official
            op; 1.0 is the stock Mask2Former pixel-decoder module, docs/focus.md#msda-module).
    """

    def __init__(self, d_model=256, n_levels=4, n_heads=8, n_points=4, ratio=1.0):
        super().__init__()
        value_dim = int(d_model * ratio)
        if value_dim % n_heads != 0:
            raise ValueError(f"MSDeformAttn: int(d_model*ratio)={value_dim} must be divisible by n_heads={n_heads}")
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.ratio = ratio
        self.head_dim = value_dim // n_heads

        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, value_dim)
        self.output_proj = nn.Linear(value_dim, d_model)
        self._reset_parameters()

    def _reset_parameters(self):
        """Official init: zero offset weights, offset bias = per-head direction on the unit square scaled by
        (point index + 1); zero attention logits; Xavier-uniform projections with zero bias."""
        constant_(self.sampling_offsets.weight.data, 0.0)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid_init = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid_init = (grid_init / grid_init.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2)
        grid_init = grid_init.repeat(1, self.n_levels, self.n_points, 1)
        for i in range(self.n_points):
            grid_init[:, :, i, :] *= i + 1
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid_init.view(-1))
        constant_(self.attention_weights.weight.data, 0.0)
        constant_(self.attention_weights.bias.data, 0.0)
        xavier_uniform_(self.value_proj.weight.data)
        constant_(self.value_proj.bias.data, 0.0)
        xavier_uniform_(self.output_proj.weight.data)
        constant_(self.output_proj.bias.data, 0.0)

    def forward(self, query, reference_points, input_flatten, input_spatial_shapes, input_level_start_index,
                input_padding_mask=None):
        """
        Args:
            query: (N, Lq, C).
            reference_points: (N, Lq, L, 2) normalised (x, y) in [0, 1] (0 = top-left edge), or (N, Lq, L, 4)
                boxes (cx, cy, w, h) (unused by FOCUS, kept from the official module).
            input_flatten: (N, S, C), S = sum_l H_l * W_l, levels concatenated in `input_spatial_shapes` order.
            input_spatial_shapes: int64 (L, 2) rows (H_l, W_l).
            input_level_start_index: int64 (L,).
            input_padding_mask: optional bool (N, S), True at padded positions (their values are zeroed).

        Returns:
            (N, Lq, C).
        """
        n, len_q, _ = query.shape
        _, len_in, _ = input_flatten.shape
        # validated where it is free: reading a CUDA tensor back would stall the stream on every call
        if input_spatial_shapes.device.type == "cpu" and int(input_spatial_shapes.prod(1).sum()) != len_in:
            raise ValueError(
                f"MSDeformAttn: input_flatten has {len_in} positions but input_spatial_shapes "
                f"{input_spatial_shapes.tolist()} sum to another number"
            )
        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            value = value.masked_fill(input_padding_mask[..., None], 0.0)
        value = value.view(n, len_in, self.n_heads, self.head_dim)
        offsets = self.sampling_offsets(query).view(n, len_q, self.n_heads, self.n_levels, self.n_points, 2)
        weights = self.attention_weights(query).view(n, len_q, self.n_heads, self.n_levels * self.n_points)
        weights = weights.softmax(-1).view(n, len_q, self.n_heads, self.n_levels, self.n_points)
        if reference_points.shape[-1] == 2:
            normalizer = torch.stack([input_spatial_shapes[..., 1], input_spatial_shapes[..., 0]], -1)
            locations = (reference_points[:, :, None, :, None, :]
                         + offsets / normalizer[None, None, None, :, None, :])
        elif reference_points.shape[-1] == 4:
            locations = (reference_points[:, :, None, :, None, :2]
                         + offsets / self.n_points * reference_points[:, :, None, :, None, 2:] * 0.5)
        else:
            raise ValueError(
                f"MSDeformAttn: last dim of reference_points must be 2 or 4, got {reference_points.shape[-1]}"
            )
        # ms_deform_attn casts locations/weights to value's accumulation dtype under autocast (docs/focus.md#msda-amp)
        output = ms_deform_attn(value, input_spatial_shapes, input_level_start_index, locations, weights)
        return self.output_proj(output)
