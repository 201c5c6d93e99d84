"""`D2DINOV2`: the FOCUS backbone, a DINOv2 ViT with an edge-prior ResNet fused ViT-Adapter style
(docs/focus.md#backbone).

State-dict keys are the official ones (docs/focus.md#state-dict): `pos_embed`, `cls_token`, `level_embed`,
`patch_embed.proj.*`, `blocks.{i}.*`, `edge.*`, `interactions.{k}.*`, `up.*`, `norm{1..4}.*`.
"""
import contextlib
import functools

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from detectron2.config import configurable
from detectron2.modeling import BACKBONE_REGISTRY, Backbone, ShapeSpec

from ...layers.batch_norm import SyncBatchNorm2d
from ...layers.inplace import add_interpolated_, add_upsample_2x2_, batch_norm_inplace_
from .adapter import InteractionBlockWithCls, deform_inputs
from .edge_prior import EdgePriorModule, edge_overlay
from .vit import Block, PatchEmbed, resize_pos_embed

__all__ = ["D2DINOV2"]

# The official patch embedding is built for 518x518 inputs whatever PRETRAIN_IMG_SIZE says
# (docs/focus.md#backbone-config), so `pos_embed` always holds 1 + (518 // patch)^2 positions (1370 for patch 14).
_POS_EMBED_IMG_SIZE = 518


@contextlib.contextmanager
def _frozen_bn_stats(module):
    """Within the block, BatchNorm layers of `module` normalise as usual (batch statistics in training) but leave
    `running_mean` / `running_var` / `num_batches_tracked` as they were (momentum 0, counter restored)."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, count) in zip(bns, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)


@BACKBONE_REGISTRY.register()
class D2DINOV2(Backbone):
    """DINOv2 ViT + Canny edge prior (ResNet-50) + ViT-Adapter interactions -> pyramid `res2..res5`
    (docs/focus.md#backbone).

    forward(x (B, 3, H, W), the mean/std-normalised image zero-padded to a multiple of 32) returns a dict
    `{res2: (B, D, H/4, W/4), res3: (B, D, H/8, W/8), res4: (B, D, H/16, W/16), res5: (B, D, H/32, W/32)}`
    restricted to `out_features`. Unlike the official tuple `(features, pca_mask)` this is a standard detectron2
    backbone output (docs/focus.md#q18); the training-only PCA mask of docs/focus.md#pca-mask has no effect and is
    dropped.
    """

    @configurable
    def __init__(
        self,
        *,
        embed_dim=1024,
        depth=24,
        num_heads=16,
        patch_size=14,
        pretrain_img_size=518,
        ffn_type="mlp",
        mlp_ratio=4.0,
        drop_path_rate=0.4,
        deform_num_heads=16,
        n_points=4,
        deform_ratio=0.5,
        init_values=0.0,
        with_cffn=True,
        cffn_ratio=0.25,
        interaction_indexes=((0, 5), (6, 11), (12, 17), (18, 23)),
        use_extra_extractor=True,
        add_vit_feature=True,
        use_cls=True,
        with_cp=False,
        freeze_vit=False,
        edge_from_rgb=False,
        edge_depths=(3, 4, 6, 3),
        edge_width=64,
        pixel_mean=(123.675, 116.28, 103.53),
        pixel_std=(58.395, 57.12, 57.375),
        out_features=("res2", "res3", "res4", "res5"),
    ):
        """
        Args:
            embed_dim, depth, num_heads, patch_size, ffn_type, mlp_ratio: the DINOv2 ViT (`mlp` for L, `swiglu`
                for G); `drop_path_rate`: stochastic depth, `linspace(0, rate, depth)` over the ViT blocks and
                `rate` in every extractor's ConvFFN branch.
            pretrain_img_size: image size of the stored pos-embed grid (`pretrain_img_size // patch_size` per side).
            deform_num_heads, n_points, deform_ratio, init_values, with_cffn, cffn_ratio, interaction_indexes,
                use_extra_extractor, add_vit_feature, use_cls: the adapter (docs/focus.md#adapter,
                docs/focus.md#pyramid).
            with_cp: gradient checkpointing of ViT blocks, injectors and extractors when the input requires grad,
                and (focus-only, same values, gradients and BatchNorm statistics) of the edge prior's ResNet.
            freeze_vit: `requires_grad=False` on the ViT parameters (pos/cls embeddings, patch embed, blocks).
            edge_from_rgb: compute the Canny overlay from the un-normalised RGB image (not checkpoint-equivalent).
            edge_depths, edge_width: edge-prior ResNet size ([3, 4, 6, 3], 64 = ResNet-50, official).
            pixel_mean, pixel_std: input normalisation constants (0..255 scale), used by `edge_from_rgb`.
            out_features: returned subset of `res2..res5`.
        """
        super().__init__()
        grid = pretrain_img_size // patch_size
        num_patches = (_POS_EMBED_IMG_SIZE // patch_size) ** 2
        if grid * grid != num_patches:
            raise ValueError(
                f"MODEL.DINOV2.PRETRAIN_IMG_SIZE={pretrain_img_size} gives a {grid}x{grid} pos-embed grid, but "
                f"pos_embed holds {num_patches} patch positions (518 // IN_PATCH_SIZE={patch_size} squared)"
            )
        if len(interaction_indexes) != 4:
            raise ValueError(f"MODEL.DINOV2.INTERACTION_INDEXES needs 4 ranges, got {interaction_indexes}")
        bad = [o for o in out_features if o not in ("res2", "res3", "res4", "res5")]
        if bad:
            raise ValueError(f"MODEL.DINOV2.OUT_FEATURES: unknown {bad}; choose from res2..res5")
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.pos_grid = grid
        self.interaction_indexes = [tuple(int(i) for i in r) for r in interaction_indexes]
        self.add_vit_feature = add_vit_feature
        self.edge_from_rgb = edge_from_rgb
        self.pixel_mean = tuple(float(v) for v in pixel_mean)
        self.pixel_std = tuple(float(v) for v in pixel_std)

        # ViT (docs/focus.md#vit): zero-initialised embeddings (docs/focus.md#backbone-init), overwritten by DINOv2
        # weights
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if use_cls else None
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim)
        dpr = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()
        self.blocks = nn.ModuleList(
            [Block(embed_dim, num_heads, mlp_ratio, ffn_type, dpr[i], with_cp) for i in range(depth)]
        )
        if freeze_vit:
            for p in [self.pos_embed, self.cls_token, *self.patch_embed.parameters(), *self.blocks.parameters()]:
                if p is not None:
                    p.requires_grad_(False)

        # adapter (docs/focus.md#edge-prior, docs/focus.md#adapter, docs/focus.md#pyramid)
        self.level_embed = nn.Parameter(torch.empty(3, embed_dim).normal_())
        self.edge = EdgePriorModule(embed_dim, edge_depths, edge_width)
        self.with_cp = with_cp
        self.interactions = nn.ModuleList(
            [
                InteractionBlockWithCls(
                    embed_dim,
                    deform_num_heads,
                    n_points,
                    drop_path=drop_path_rate,
                    with_cffn=with_cffn,
                    cffn_ratio=cffn_ratio,
                    init_values=init_values,
                    deform_ratio=deform_ratio,
                    extra_extractor=use_extra_extractor and i == len(interaction_indexes) - 1,
                    with_cp=with_cp,
                )
                for i in range(len(interaction_indexes))
            ]
        )
        self.up = nn.ConvTranspose2d(embed_dim, embed_dim, 2, 2)
        # SyncBatchNorm in the official code: statistics over all processes in multi-process training, BatchNorm2d
        # otherwise (same keys); docs/focus.md#q21,
        # docs/focus.md#t6
        self.norm1 = SyncBatchNorm2d(embed_dim)
        self.norm2 = SyncBatchNorm2d(embed_dim)
        self.norm3 = SyncBatchNorm2d(embed_dim)
        self.norm4 = SyncBatchNorm2d(embed_dim)

        self._out_features = list(out_features)
        strides = {"res2": 4, "res3": 8, "res4": 16, "res5": 32}
        self._out_feature_strides = {k: strides[k] for k in self._out_features}
        self._out_feature_channels = {k: embed_dim for k in self._out_features}

    @classmethod
    def from_config(cls, cfg, input_shape=None):
        d = cfg.MODEL.DINOV2
        return {
            "embed_dim": d.EMBED_DIM,
            "depth": d.DEPTH,
            "num_heads": d.NUM_HEADS,
            "patch_size": d.IN_PATCH_SIZE,
            "pretrain_img_size": d.PRETRAIN_IMG_SIZE,
            "ffn_type": d.FFN_TYPE,
            "drop_path_rate": d.DROP_PATH_RATE,
            "deform_num_heads": d.DEFORM_NUM_HEADS,
            "n_points": d.N_POINTS,
            "deform_ratio": d.DEFORM_RATIO,
            "init_values": d.INIT_VALUES,
            "with_cffn": d.WITH_CFFN,
            "cffn_ratio": d.CFFN_RATIO,
            "interaction_indexes": d.INTERACTION_INDEXES,
            "use_extra_extractor": d.USE_EXTRA_EXTRATOR,
            "add_vit_feature": d.ADD_VIT_FEATURE,
            "use_cls": d.USE_CLS,
            "with_cp": d.WITH_CP,
            "freeze_vit": d.FREEZE_VIT,
            "edge_from_rgb": d.EDGE_FROM_RGB,
            "edge_depths": d.EDGE_DEPTHS,
            "edge_width": d.EDGE_WIDTH,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "out_features": d.OUT_FEATURES,
        }

    @property
    def size_divisibility(self):
        return 32

    def output_shape(self):
        return {
            k: ShapeSpec(channels=self._out_feature_channels[k], stride=self._out_feature_strides[k])
            for k in self._out_features
        }

    def _tokens(self, x):
        """Patch tokens + resized pos-embed, cls token prepended if used: (B, [1 +] Ht*Wt, D), Ht, Wt."""
        x, ht, wt = self.patch_embed(x)
        pos = resize_pos_embed(self.pos_embed[:, 1:], self.pos_grid, ht, wt)
        x = x + pos
        if self.cls_token is not None:
            cls = self.cls_token.expand(x.shape[0], -1, -1) + self.pos_embed[:, :1]
            x = torch.cat((cls, x), dim=1)
        return x, ht, wt

    def forward(self, x):
        """x: (B, 3, H, W) normalised, zero-padded, H and W multiples of 32 -> dict of `out_features`."""
        b, _, h, w = x.shape
        if h % 32 or w % 32:
            raise ValueError(f"D2DINOV2: input size {h}x{w} must be a multiple of 32 (pad the normalised image)")
        hc, wc = h // 16, w // 16
        deform1, deform2 = deform_inputs(h, w, self.patch_size, x.device)

        # edge prior (docs/focus.md#edge-prior) and level embeddings (docs/focus.md#adapter)
        # the overlay's uint8 conversion needs the fp32 input (bf16 would shift the clipped levels); the network
        # then runs in the parameters' dtype (reduced-precision inference casts the weights, not the input)
        dtype = self.pos_embed.dtype
        edge_in = edge_overlay(x, self.pixel_mean, self.pixel_std, from_rgb=self.edge_from_rgb).to(dtype)
        if self.edge.training:
            # the overlay comes back channels-last (from HWC numpy); training-mode BatchNorm reduces channels-last
            # maps in another order (batch statistics 1e-4 apart); the official edge input is NCHW.
            # docs/focus.md#t5
            edge_in = edge_in.contiguous()
        x = x.to(dtype)
        # the stride-4 map is projected to the ViT width at the output pyramid, not here: 4x fewer channels held
        # through the ViT blocks
        edge = functools.partial(self.edge, project_c1=False)
        if self.with_cp and self.training and torch.is_grad_enabled():
            # the ResNet's activations are recomputed in the backward; the recomputation must not
            # update the BatchNorm running statistics a second time
            c1, c2, c3, c4 = checkpoint(edge, edge_in, use_reentrant=False,
                                        context_fn=lambda: (contextlib.nullcontext(), _frozen_bn_stats(self.edge)))
        else:
            c1, c2, c3, c4 = edge(edge_in)
        n2, n3 = c2.shape[1], c3.shape[1]
        c = torch.cat([c2 + self.level_embed[0], c3 + self.level_embed[1], c4 + self.level_embed[2]], dim=1)

        x, ht, wt = self._tokens(x)
        cls = None
        if self.cls_token is not None:
            cls, x = x[:, :1], x[:, 1:]
        outs = []
        for layer, (s, e) in zip(self.interactions, self.interaction_indexes):
            x, c, cls = layer(x, c, cls, self.blocks[s : e + 1], deform1, deform2, hc, wc)
            # NCHW copy: bilinear upsampling of the channels-last token view is much slower on CPU
            # (docs/speed_memory.md#kernels)
            outs.append(x.transpose(1, 2).contiguous().view(b, self.embed_dim, ht, wt))

        # output pyramid (docs/focus.md#pyramid)
        d = self.embed_dim
        # NCHW like `outs`, so the sums and norms below never mix memory formats
        c2 = c[:, :n2].transpose(1, 2).contiguous().view(b, d, 2 * hc, 2 * wc)
        c3 = c[:, n2 : n2 + n3].transpose(1, 2).contiguous().view(b, d, hc, wc)
        c4 = c[:, n2 + n3 :].transpose(1, 2).contiguous().view(b, d, hc // 2, wc // 2)
        # the stride-4 level accumulates in place, in slices, in the projected c1 (D x H/4 x W/4: 64 MB at 512 px
        # in fp32): the official `up(c2) + c1 + interpolate(x1)` with the same sums (addition commutes), and
        # nothing autograd saved is modified; no second full-size map is ever allocated (focus.layers.inplace)
        c1 = self.edge.fc1(c1)
        c1 = add_upsample_2x2_(c1, c[:, :n2], self.up, 2 * hc, 2 * wc, rows=8)
        if self.add_vit_feature:
            sizes = [(2 * hc, 2 * wc), (hc, wc), (hc // 2, wc // 2)]
            add_interpolated_(c1, outs[0], channels=128)
            x2, x3, x4 = [
                F.interpolate(o, size=s, mode="bilinear", align_corners=False) for o, s in zip(outs[1:], sizes)
            ]
            c2, c3, c4 = c2 + x2, c3 + x3, c4 + x4
        del outs
        f1 = batch_norm_inplace_(self.norm1, c1, channels=128)
        feats = {"res2": f1, "res3": self.norm2(c2), "res4": self.norm3(c3), "res5": self.norm4(c4)}
        return {k: feats[k] for k in self._out_features}
