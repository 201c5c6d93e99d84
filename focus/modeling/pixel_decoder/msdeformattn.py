"""Mask2Former's multi-scale deformable-attention pixel decoder, as used unchanged by FOCUS
(docs/focus.md#pixel-decoder)."""
import copy
import math

import fvcore.nn.weight_init as weight_init
import torch
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from torch import nn
from torch.utils.checkpoint import checkpoint
from torch.nn import functional as F

from focus.layers import MSDeformAttn, grid_centers

from ..registry import PIXEL_DECODER_REGISTRY
from ..transformer_decoder.position_encoding import PositionEmbeddingSine

__all__ = [
    "MSDeformAttnTransformerEncoderLayer",
    "MSDeformAttnTransformerEncoder",
    "MSDeformAttnTransformerEncoderOnly",
    "MSDeformAttnPixelDecoder",
]


class MSDeformAttnTransformerEncoderLayer(nn.Module):
    """Post-norm deformable encoder layer: `norm1(src + attn(src + pos))`, then `norm2(src + FFN(src))`.

    Tokens `src` `(B, S, C)` of all levels attend to `n_points` sampled locations per head and level.
    """

    def __init__(self, d_model=256, d_ffn=1024, dropout=0.1, n_levels=4, n_heads=8, n_points=4):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src, pos, reference_points, spatial_shapes, level_start_index, padding_mask=None):
        """`src`, `pos` `(B, S, C)`; `reference_points` `(B, S, L, 2)`; returns `(B, S, C)`."""
        src2 = self.self_attn(src + pos, reference_points, src, spatial_shapes, level_start_index, padding_mask)
        src = self.norm1(src + self.dropout1(src2))
        src2 = self.linear2(self.dropout2(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout3(src2))


class MSDeformAttnTransformerEncoder(nn.Module):
    """A stack of `num_layers` copies of `encoder_layer` (attribute `layers`).

    With `with_cp`, each layer's activations are recomputed in the backward instead of stored (the RNG state is
    replayed, so values and gradients are those of the plain forward); docs/speed_memory.md#training.
    """

    def __init__(self, encoder_layer, num_layers, with_cp=False):
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(encoder_layer) for _ in range(num_layers)])
        self.with_cp = with_cp

    @staticmethod
    def get_reference_points(spatial_shapes, batch_size, device):
        """Normalised pixel centres of every token, replicated over levels: `(B, S, L, 2)` as `(x, y)`.

        All positions are valid (no padding mask, valid ratios 1, docs/focus.md#pixel-decoder step 3), so a token's
        reference point on every level is its own centre `((j + 0.5) / W_l, (i + 0.5) / H_l)`.
        """
        ref = grid_centers(spatial_shapes, device)
        return ref[None, :, None, :].expand(batch_size, -1, len(spatial_shapes), -1)

    def forward(self, src, spatial_shapes, level_start_index, pos, padding_mask=None):
        """`src`, `pos` `(B, S, C)`; `spatial_shapes` a list of `(H_l, W_l)` ints; returns `(B, S, C)`."""
        shapes = torch.as_tensor(spatial_shapes, dtype=torch.long, device=src.device)
        reference_points = self.get_reference_points(spatial_shapes, src.shape[0], src.device).to(src.dtype)
        output = src
        for layer in self.layers:
            args = (output, pos, reference_points, shapes, level_start_index, padding_mask)
            if self.with_cp and torch.is_grad_enabled() and output.requires_grad:
                output = checkpoint(layer, *args, use_reentrant=False)
            else:
                output = layer(*args)
        return output


class MSDeformAttnTransformerEncoderOnly(nn.Module):
    """Deformable-DETR encoder over flattened multi-level maps, with a learnt per-level embedding.

    Attributes `encoder` (`MSDeformAttnTransformerEncoder`) and `level_embed` `(num_feature_levels, d_model)`.
    """

    def __init__(
        self,
        d_model=256,
        nhead=8,
        num_encoder_layers=6,
        dim_feedforward=1024,
        dropout=0.1,
        num_feature_levels=4,
        enc_n_points=4,
        with_cp=False,
    ):
        super().__init__()
        self.d_model = d_model
        self.nhead = nhead
        layer = MSDeformAttnTransformerEncoderLayer(
            d_model, dim_feedforward, dropout, num_feature_levels, nhead, enc_n_points
        )
        self.encoder = MSDeformAttnTransformerEncoder(layer, num_encoder_layers, with_cp=with_cp)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self._reset_parameters()

    def _reset_parameters(self):
        # docs/focus.md#pixel-decoder step 3: Xavier on every matrix, then MSDeformAttn's own init, then level_embed
        # N(0, 1)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m._reset_parameters()
        nn.init.normal_(self.level_embed)

    def forward(self, srcs, pos_embeds):
        """Encode `srcs` (list of `(B, C, H_l, W_l)`, low to high resolution) with their positional encodings.

        Returns `(memory (B, S, C), spatial_shapes [(H_l, W_l)], level_start_index (L,) int64)`.
        """
        src_flatten, pos_flatten, spatial_shapes = [], [], []
        for lvl, (src, pos) in enumerate(zip(srcs, pos_embeds)):
            spatial_shapes.append(tuple(src.shape[-2:]))
            src_flatten.append(src.flatten(2).transpose(1, 2))
            pos_flatten.append(pos.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1))
        src_flatten = torch.cat(src_flatten, 1)
        pos_flatten = torch.cat(pos_flatten, 1)
        sizes = [h * w for h, w in spatial_shapes]
        level_start_index = torch.as_tensor([0] + sizes[:-1], dtype=torch.long, device=src_flatten.device).cumsum(0)
        memory = self.encoder(src_flatten, spatial_shapes, level_start_index, pos_flatten)
        return memory, spatial_shapes, level_start_index


@PIXEL_DECODER_REGISTRY.register()
class MSDeformAttnPixelDecoder(nn.Module):
    """Mask2Former pixel decoder: deformable encoder on res3-res5, one FPN step to res2 (docs/focus.md#pixel-decoder).

    Input: backbone features `{"res2": (B, D, H/4, W/4), ..., "res5": (B, D, H/32, W/32)}`.
    Output of `forward` (= `forward_features`):
    `mask_features (B, mask_dim, H/4, W/4)`, `out[0]` (the coarsest encoder map, unused by FOCUS) and
    `multi_scale_features` = 3 maps `(B, conv_dim, ·, ·)` at strides 32, 16, 8.
    Runs in the parameters' dtype (float32 unless the model was cast for reduced-precision inference) with
    autocast disabled, as the official decoder (docs/focus.md#pixel-decoder).
    """

    @configurable
    def __init__(
        self,
        input_shape,
        *,
        transformer_dropout,
        transformer_nheads,
        transformer_dim_feedforward,
        transformer_enc_layers,
        conv_dim,
        mask_dim,
        norm,
        transformer_in_features,
        common_stride,
        transformer_n_points=4,
        with_cp=False,
    ):
        """
        Args:
            input_shape (dict[str, ShapeSpec]): shapes of the input features (all of them are used).
            transformer_dropout, transformer_nheads, transformer_dim_feedforward, transformer_enc_layers:
                deformable encoder hyper-parameters.
            conv_dim: width of the encoder and of the FPN.
            mask_dim: width of the mask features.
            norm: normalisation of the FPN convs (detectron2 `get_norm` name, "GN" in FOCUS).
            transformer_in_features: the features entering the deformable encoder.
            common_stride: stride of the mask features; FPN levels are added down to it.
            transformer_n_points: sampling points per head and level (hard-coded 4 officially).
            with_cp: gradient checkpointing of the encoder layers (focus-only; same values and gradients).
        """
        super().__init__()
        missing = [f for f in transformer_in_features if f not in input_shape]
        if missing:
            raise KeyError(
                f"MSDeformAttnPixelDecoder: DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES {missing} "
                f"not among the input features {sorted(input_shape)}"
            )
        transformer_input_shape = sorted(
            ((k, v) for k, v in input_shape.items() if k in transformer_in_features), key=lambda x: x[1].stride
        )
        input_shape = sorted(input_shape.items(), key=lambda x: x[1].stride)
        self.in_features = [k for k, _ in input_shape]  # res2 .. res5
        self.feature_strides = [v.stride for _, v in input_shape]
        self.feature_channels = [v.channels for _, v in input_shape]
        self.transformer_in_features = [k for k, _ in transformer_input_shape]  # res3 .. res5
        transformer_in_channels = [v.channels for _, v in transformer_input_shape]
        self.transformer_feature_strides = [v.stride for _, v in transformer_input_shape]
        self.transformer_num_feature_levels = len(self.transformer_in_features)

        # input_proj[k] <-> the k-th coarsest encoder level (0 = res5)
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, conv_dim, kernel_size=1), nn.GroupNorm(32, conv_dim))
            for c in transformer_in_channels[::-1]
        )
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.constant_(proj[0].bias, 0)

        self.transformer = MSDeformAttnTransformerEncoderOnly(
            d_model=conv_dim,
            dropout=transformer_dropout,
            nhead=transformer_nheads,
            dim_feedforward=transformer_dim_feedforward,
            num_encoder_layers=transformer_enc_layers,
            num_feature_levels=self.transformer_num_feature_levels,
            enc_n_points=transformer_n_points,
            with_cp=with_cp,
        )
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2, normalize=True)

        self.mask_dim = mask_dim
        self.mask_features = Conv2d(conv_dim, mask_dim, kernel_size=1, stride=1, padding=0)
        weight_init.c2_xavier_fill(self.mask_features)

        self.maskformer_num_feature_levels = 3  # always use 3 scales
        self.common_stride = common_stride
        stride = min(self.transformer_feature_strides)
        self.num_fpn_levels = int(math.log2(stride) - math.log2(self.common_stride))

        lateral_convs, output_convs = [], []
        use_bias = norm == ""
        for idx, in_channels in enumerate(self.feature_channels[: self.num_fpn_levels]):
            lateral_conv = Conv2d(
                in_channels, conv_dim, kernel_size=1, bias=use_bias, norm=get_norm(norm, conv_dim)
            )
            output_conv = Conv2d(
                conv_dim,
                conv_dim,
                kernel_size=3,
                stride=1,
                padding=1,
                bias=use_bias,
                norm=get_norm(norm, conv_dim),
                activation=F.relu,
            )
            weight_init.c2_xavier_fill(lateral_conv)
            weight_init.c2_xavier_fill(output_conv)
            self.add_module(f"adapter_{idx + 1}", lateral_conv)
            self.add_module(f"layer_{idx + 1}", output_conv)
            lateral_convs.append(lateral_conv)
            output_convs.append(output_conv)
        # plain lists (the modules are registered above): ordered from low to high resolution
        self.lateral_convs = lateral_convs[::-1]
        self.output_convs = output_convs[::-1]

    @classmethod
    def from_config(cls, cfg, input_shape):
        sh = cfg.MODEL.SEM_SEG_HEAD
        return {
            "input_shape": {k: v for k, v in input_shape.items() if k in sh.IN_FEATURES},
            "conv_dim": sh.CONVS_DIM,
            "mask_dim": sh.MASK_DIM,
            "norm": sh.NORM,
            "transformer_dropout": cfg.MODEL.MASK_FORMER.DROPOUT,
            "transformer_nheads": cfg.MODEL.MASK_FORMER.NHEADS,
            "transformer_dim_feedforward": sh.DEFORMABLE_TRANSFORMER_ENCODER_DIM_FEEDFORWARD,
            "transformer_enc_layers": sh.TRANSFORMER_ENC_LAYERS,
            "transformer_in_features": sh.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES,
            "common_stride": sh.COMMON_STRIDE,
            "with_cp": sh.WITH_CP,
        }

    def forward(self, features):
        """See the class docstring; returns `(mask_features, out[0], multi_scale_features)`."""
        device_type = self.mask_features.weight.device.type
        with torch.autocast(device_type=device_type if device_type in ("cuda", "cpu") else "cpu", enabled=False):
            return self._forward(features)

    # official method name (Mask2Former heads call `pixel_decoder.forward_features`)
    forward_features = forward

    def _forward(self, features):
        dtype = self.mask_features.weight.dtype
        srcs, pos = [], []
        for idx, f in enumerate(self.transformer_in_features[::-1]):
            x = features[f].to(dtype)
            srcs.append(self.input_proj[idx](x))
            pos.append(self.pe_layer(x))
        y, spatial_shapes, _ = self.transformer(srcs, pos)
        bs = y.shape[0]
        sections = [h * w for h, w in spatial_shapes]
        out = [
            z.transpose(1, 2).reshape(bs, -1, h, w)
            for z, (h, w) in zip(torch.split(y, sections, dim=1), spatial_shapes)
        ]
        for idx, f in enumerate(self.in_features[: self.num_fpn_levels][::-1]):
            x = features[f].to(dtype)
            cur_fpn = self.lateral_convs[idx](x)
            y = cur_fpn + F.interpolate(out[-1], size=cur_fpn.shape[-2:], mode="bilinear", align_corners=False)
            out.append(self.output_convs[idx](y))
        multi_scale_features = out[: self.maskformer_num_feature_levels]
        return self.mask_features(out[-1]), out[0], multi_scale_features
