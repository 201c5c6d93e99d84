"""FOCUS transformer decoder: Mask2Former's masked-attention decoder with 2 "ground" queries, a 3-way
classifier, a box head and CLIP projection heads (docs/focus.md#decoder)."""
import fvcore.nn.weight_init as weight_init
import torch
from detectron2.config import configurable
from detectron2.layers import Conv2d
from torch import nn
from torch.nn import functional as F

from ..clip_refiner import ProjectionHead, build_clip_refiner
from ..registry import TRANSFORMER_DECODER_REGISTRY
from .position_encoding import PositionEmbeddingSine

__all__ = ["SelfAttentionLayer", "CrossAttentionLayer", "FFNLayer", "MLP", "MultiScaleMaskedTransformerDecoder"]


def _xavier_matrices(module):
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


class SelfAttentionLayer(nn.Module):
    """Query self-attention, post-norm by default: `norm(tgt + attn(q=k=tgt+query_pos, v=tgt))`.

    Tensors are sequence-first: `tgt`, `query_pos` `(Q, B, C)`.
    """

    def __init__(self, d_model, nhead, dropout=0.0, normalize_before=False):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before
        _xavier_matrices(self)

    def forward(self, tgt, tgt_mask=None, tgt_key_padding_mask=None, query_pos=None):
        x = self.norm(tgt) if self.normalize_before else tgt
        q = k = x if query_pos is None else x + query_pos
        tgt2 = self.self_attn(q, k, value=x, attn_mask=tgt_mask, key_padding_mask=tgt_key_padding_mask,
                              need_weights=False)[0]
        tgt = tgt + self.dropout(tgt2)
        return tgt if self.normalize_before else self.norm(tgt)


class CrossAttentionLayer(nn.Module):
    """Masked cross-attention of the queries `(Q, B, C)` to a memory `(HW, B, C)`, post-norm by default.

    `memory_mask` `(B * nhead, Q, HW)` bool, True = position not attended.
    """

    def __init__(self, d_model, nhead, dropout=0.0, normalize_before=False):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before
        _xavier_matrices(self)

    def forward(self, tgt, memory, memory_mask=None, memory_key_padding_mask=None, pos=None, query_pos=None):
        x = self.norm(tgt) if self.normalize_before else tgt
        tgt2 = self.multihead_attn(
            query=x if query_pos is None else x + query_pos,
            key=memory if pos is None else memory + pos,
            value=memory,
            attn_mask=memory_mask,
            key_padding_mask=memory_key_padding_mask,
            need_weights=False,
        )[0]
        tgt = tgt + self.dropout(tgt2)
        return tgt if self.normalize_before else self.norm(tgt)


class FFNLayer(nn.Module):
    """Feed-forward block `linear2(relu(linear1(x)))` with residual and (post-)norm; `(Q, B, C)`."""

    def __init__(self, d_model, dim_feedforward=2048, dropout=0.0, normalize_before=False):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.normalize_before = normalize_before
        _xavier_matrices(self)

    def forward(self, tgt):
        x = self.norm(tgt) if self.normalize_before else tgt
        tgt = tgt + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x)))))
        return tgt if self.normalize_before else self.norm(tgt)


class MLP(nn.Module):
    """`num_layers` Linear layers (attribute `layers`) with ReLU in between (DETR FFN head)."""

    def __init__(self, input_dim, hidden_dim, output_dim, num_layers):
        super().__init__()
        self.num_layers = num_layers
        h = [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip([input_dim] + h, h + [output_dim]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = F.relu(layer(x)) if i < self.num_layers - 1 else layer(x)
        return x


@TRANSFORMER_DECODER_REGISTRY.register()
class MultiScaleMaskedTransformerDecoder(nn.Module):
    """FOCUS variant of Mask2Former's masked-attention decoder (docs/focus.md#decoder).

    Inputs: `x` = 3 multi-scale maps `(B, C, H_l, W_l)` (strides 32, 16, 8), `mask_features`
    `(B, mask_dim, H/4, W/4)`, and (training with CLIP only) the normalised padded `images` `(B, 3, H, W)`.

    Returns a dict for the last of the `dec_layers + 1` predictions:
    `pred_logits (B, Q, num_classes + 1)`, `pred_masks (B, Q, H/4, W/4)` (logits), `pred_boxes (B, Q, 4)`
    (raw, sigmoid applied by the loss), `pred_queries` (`{"image_features", "text_features"}` `(B, Q, 512)` when
    CLIP features are computed, else `{}`), `binary_token (Q, B, C)` (raw decoder state), and `aux_outputs`,
    a list of the same five entries for the earlier predictions.

    Differences from Mask2Former reproduced here: in training the first cross-attention attends everywhere
    (docs/focus.md#decoder-vs-mask2former, docs/focus.md#q5: the official PCA mask ends up masking nothing); CLIP
    region/text features are computed at every prediction only in training and only when `clip_refiner` is built
    (docs/focus.md#clip-regions). The eval path computes no CLIP features and makes no host synchronisation.
    """

    @configurable
    def __init__(
        self,
        in_channels,
        mask_classification=True,
        *,
        num_classes,
        hidden_dim,
        num_queries,
        nheads,
        dim_feedforward,
        dec_layers,
        pre_norm,
        mask_dim,
        enforce_input_project,
        clip_refiner=None,
        clip_embedding_dim=512,
        prompts=(),
        clip_ensemble=True,
        clip_ensemble_weight=0.7,
    ):
        """
        Args:
            in_channels: channels of the multi-scale maps.
            mask_classification: must be True (FOCUS always classifies its queries).
            num_classes: foreground classes (2: foreground, background); one no-object class is added.
            hidden_dim, num_queries, nheads, dim_feedforward: decoder sizes.
            dec_layers: number of decoder layers (`DEC_LAYERS - 1`).
            pre_norm: pre-norm layers (False in FOCUS).
            mask_dim: width of the mask embedding (= mask-feature channels).
            enforce_input_project: add a 1x1 projection even when `in_channels == hidden_dim`.
            clip_refiner: a `FOCUSCLIPRefiner` (training only) or None.
            clip_embedding_dim: width of the CLIP features fed to `image_embed` / `text_embed`.
            prompts: the task prompts (stored, the refiner owns the text side).
            clip_ensemble, clip_ensemble_weight: stored, never used (docs/focus.md#clip-training-only,
            docs/focus.md#q26).
        """
        super().__init__()
        if not mask_classification:
            raise ValueError("MultiScaleMaskedTransformerDecoder: FOCUS requires mask_classification=True")
        self.mask_classification = mask_classification
        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, normalize=True)

        self.num_heads = nheads
        self.num_layers = dec_layers
        self.transformer_self_attention_layers = nn.ModuleList()
        self.transformer_cross_attention_layers = nn.ModuleList()
        self.transformer_ffn_layers = nn.ModuleList()
        for _ in range(self.num_layers):
            self.transformer_self_attention_layers.append(
                SelfAttentionLayer(hidden_dim, nheads, dropout=0.0, normalize_before=pre_norm)
            )
            self.transformer_cross_attention_layers.append(
                CrossAttentionLayer(hidden_dim, nheads, dropout=0.0, normalize_before=pre_norm)
            )
            self.transformer_ffn_layers.append(
                FFNLayer(hidden_dim, dim_feedforward=dim_feedforward, dropout=0.0, normalize_before=pre_norm)
            )
        self.decoder_norm = nn.LayerNorm(hidden_dim)

        self.num_queries = num_queries
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)

        self.num_feature_levels = 3
        self.level_embed = nn.Embedding(self.num_feature_levels, hidden_dim)
        self.input_proj = nn.ModuleList()
        for _ in range(self.num_feature_levels):
            if in_channels != hidden_dim or enforce_input_project:
                self.input_proj.append(Conv2d(in_channels, hidden_dim, kernel_size=1))
                weight_init.c2_xavier_fill(self.input_proj[-1])
            else:
                self.input_proj.append(nn.Sequential())

        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)
        self.bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)

        self.clip_refiner = clip_refiner
        # always built: part of every official checkpoint, with or without the CLIP tower (docs/focus.md#components,
        # docs/focus.md#state-dict)
        self.text_embed = ProjectionHead(clip_embedding_dim, clip_embedding_dim, num_queries=num_queries)
        self.image_embed = ProjectionHead(clip_embedding_dim, clip_embedding_dim, num_queries=num_queries)
        self.prompts = list(prompts) + ["None"]
        self.clip_ensemble = clip_ensemble
        self.clip_ensemble_weight = clip_ensemble_weight
        self._register_load_state_dict_pre_hook(self._drop_clip_keys_if_not_built)

    @classmethod
    def from_config(cls, cfg, in_channels, mask_classification):
        mf = cfg.MODEL.MASK_FORMER
        if mf.DEC_LAYERS < 1:
            raise ValueError(f"MODEL.MASK_FORMER.DEC_LAYERS must be >= 1, got {mf.DEC_LAYERS}")
        return {
            "in_channels": in_channels,
            "mask_classification": mask_classification,
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "hidden_dim": mf.HIDDEN_DIM,
            "num_queries": mf.NUM_OBJECT_QUERIES,
            "nheads": mf.NHEADS,
            "dim_feedforward": mf.DIM_FEEDFORWARD,
            "dec_layers": mf.DEC_LAYERS - 1,  # the learnable queries give one more prediction
            "pre_norm": mf.PRE_NORM,
            "enforce_input_project": mf.ENFORCE_INPUT_PROJ,
            "mask_dim": cfg.MODEL.SEM_SEG_HEAD.MASK_DIM,
            "clip_refiner": build_clip_refiner(cfg),
            "prompts": cfg.MODEL.CLIP_REFINER.PROMPTS,
            "clip_ensemble": cfg.MODEL.CLIP_REFINER.CLIP_ENSEMBLE,
            "clip_ensemble_weight": cfg.MODEL.CLIP_REFINER.CLIP_ENSEMBLE_WEIGHT,
        }

    def _drop_clip_keys_if_not_built(self, state_dict, prefix, *args):
        """Without a CLIP tower, checkpoint keys `<prefix>clip_refiner.*` are dropped silently: CLIP is training-only
        (docs/focus.md#clip-training-only) and official checkpoints always carry it."""
        if self.clip_refiner is None:
            for key in [k for k in state_dict if k.startswith(prefix + "clip_refiner.")]:
                del state_dict[key]

    @property
    def computes_clip_features(self):
        """True when the forward pass computes CLIP features (training with a CLIP refiner)."""
        return self.training and self.clip_refiner is not None

    def forward(self, x, mask_features, images=None):
        """See the class docstring."""
        if len(x) != self.num_feature_levels:
            raise ValueError(f"MultiScaleMaskedTransformerDecoder expects {self.num_feature_levels} maps, got {len(x)}")
        if self.computes_clip_features and images is None:
            raise ValueError("MultiScaleMaskedTransformerDecoder: `images` are required for CLIP features in training")
        src, pos, size_list = [], [], []
        for i in range(self.num_feature_levels):
            size_list.append(x[i].shape[-2:])
            pos.append(self.pe_layer(x[i]).flatten(2).permute(2, 0, 1))
            src.append(
                (self.input_proj[i](x[i]).flatten(2) + self.level_embed.weight[i][None, :, None]).permute(2, 0, 1)
            )

        bs = src[0].shape[1]
        query_embed = self.query_embed.weight.unsqueeze(1).repeat(1, bs, 1)
        output = self.query_feat.weight.unsqueeze(1).repeat(1, bs, 1)

        predictions = []
        pred, attn_mask = self.forward_prediction_heads(output, mask_features, size_list[0], images)
        predictions.append(pred)
        if self.training:
            # docs/focus.md#decoder-vs-mask2former, docs/focus.md#q5: the official PCA-based first mask is sigmoid(x in
            # [0, 1]) < 0.5, i.e. all False
            attn_mask = torch.zeros_like(attn_mask)

        for i in range(self.num_layers):
            level_index = i % self.num_feature_levels
            # rows that block every position attend everywhere (Mask2Former), without a host sync
            attn_mask = attn_mask & ~attn_mask.all(-1, keepdim=True)
            output = self.transformer_cross_attention_layers[i](
                output, src[level_index], memory_mask=attn_mask, pos=pos[level_index], query_pos=query_embed
            )
            output = self.transformer_self_attention_layers[i](output, query_pos=query_embed)
            output = self.transformer_ffn_layers[i](output)
            pred, attn_mask = self.forward_prediction_heads(
                output, mask_features, size_list[(i + 1) % self.num_feature_levels], images
            )
            predictions.append(pred)

        out = dict(predictions[-1])
        out["aux_outputs"] = predictions[:-1]
        return out

    def forward_prediction_heads(self, output, mask_features, attn_mask_target_size, images=None):
        """Heads on the decoder state `output` `(Q, B, C)`.

        Returns `(prediction dict, attn_mask (B * nheads, Q, h * w) bool)` where `h, w = attn_mask_target_size`
        and True marks positions the next cross-attention must not attend (mask probability < 0.5).
        """
        decoder_output = self.decoder_norm(output).transpose(0, 1)
        outputs_class = self.class_embed(decoder_output)
        mask_embed = self.mask_embed(decoder_output)
        outputs_mask = torch.einsum("bqc,bchw->bqhw", mask_embed, mask_features)

        pred_queries = {}
        if self.computes_clip_features:
            image_features, text_features = self.clip_refiner.region_features(images, outputs_mask, outputs_class)
            pred_queries = {
                "image_features": self.image_embed(image_features),
                "text_features": self.text_embed(text_features),
            }

        attn_mask = F.interpolate(outputs_mask, size=attn_mask_target_size, mode="bilinear", align_corners=False)
        attn_mask = attn_mask.sigmoid().flatten(2).unsqueeze(1).repeat(1, self.num_heads, 1, 1).flatten(0, 1) < 0.5
        attn_mask = attn_mask.detach()

        outputs_boxes = self.bbox_embed(decoder_output)
        pred = {
            "pred_logits": outputs_class,
            "pred_masks": outputs_mask,
            "pred_boxes": outputs_boxes,
            "pred_queries": pred_queries,
            "binary_token": output,
        }
        return pred, attn_mask
