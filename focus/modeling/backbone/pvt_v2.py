"""PVT-v2 with the original repository's parameter layout (`patch_embed{1..4}`, `block{1..4}.<j>`, `norm{1..4}`).

The blocks are timm's (`timm.models.pvt_v2.Block`, `OverlapPatchEmbed`: the same spatial-reduction attention and
depth-wise-conv MLP); only the layout differs: stages are flat attributes and the MLP's depth-wise conv sits one
level deeper (`mlp.dwconv.dwconv`), as in the original code and the checkpoints built from it.
"""
from functools import partial
from typing import List

import torch
import torch.nn as nn
import torch.utils.checkpoint
from timm.models.pvt_v2 import Block, OverlapPatchEmbed

__all__ = ["PyramidVisionTransformerV2", "PVT_V2_ARCHS", "build_pvt_v2"]

# embed_dims, num_heads, mlp_ratios, depths, sr_ratios
PVT_V2_ARCHS = {
    "pvt_v2_b0": ((32, 64, 160, 256), (1, 2, 5, 8), (8, 8, 4, 4), (2, 2, 2, 2), (8, 4, 2, 1)),
    "pvt_v2_b1": ((64, 128, 320, 512), (1, 2, 5, 8), (8, 8, 4, 4), (2, 2, 2, 2), (8, 4, 2, 1)),
    "pvt_v2_b2": ((64, 128, 320, 512), (1, 2, 5, 8), (8, 8, 4, 4), (3, 4, 6, 3), (8, 4, 2, 1)),
    "pvt_v2_b5": ((64, 128, 320, 512), (1, 2, 5, 8), (4, 4, 4, 4), (3, 6, 40, 3), (8, 4, 2, 1)),
}


class _DWConv(nn.Module):
    """Holds the depth-wise conv under the original name `dwconv.dwconv`."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.dwconv = conv

    def forward(self, x):
        return self.dwconv(x)


class PyramidVisionTransformerV2(nn.Module):
    """Returns ``[x1, x2, x3, x4]`` at strides 4, 8, 16, 32, each ``(B, embed_dims[i], H_i, W_i)``."""

    def __init__(self, embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8), mlp_ratios=(8, 8, 4, 4),
                 depths=(3, 4, 6, 3), sr_ratios=(8, 4, 2, 1), drop_path_rate=0.1):
        super().__init__()
        self.num_stages = len(depths)
        self.embed_dims = list(embed_dims)
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        norm = partial(nn.LayerNorm, eps=1e-6)
        for i in range(self.num_stages):  # registered first, as in the original (state-dict order)
            self.add_module(f"patch_embed{i + 1}", OverlapPatchEmbed(
                patch_size=7 if i == 0 else 3, stride=4 if i == 0 else 2,
                in_chans=3 if i == 0 else embed_dims[i - 1], embed_dim=embed_dims[i]))
        cur = 0
        for i in range(self.num_stages):
            blocks = nn.ModuleList(
                Block(embed_dims[i], num_heads[i], mlp_ratios[i], sr_ratios[i], qkv_bias=True,
                      drop_path=dpr[cur + j], norm_layer=norm)
                for j in range(depths[i])
            )
            for blk in blocks:
                blk.mlp.dwconv = _DWConv(blk.mlp.dwconv)
            self.add_module(f"block{i + 1}", blocks)
            self.add_module(f"norm{i + 1}", norm(embed_dims[i]))
            cur += depths[i]
        self.grad_checkpointing = False

    @property
    def channels(self) -> List[int]:
        return list(self.embed_dims)

    def set_grad_checkpointing(self, enable: bool = True):
        self.grad_checkpointing = enable

    def forward(self, x) -> List[torch.Tensor]:
        outs = []
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"patch_embed{i}")(x)  # (B, H, W, C)
            B, H, W, C = x.shape
            x = x.reshape(B, H * W, C)
            for blk in getattr(self, f"block{i}"):
                if self.grad_checkpointing and torch.is_grad_enabled():
                    x = torch.utils.checkpoint.checkpoint(blk, x, [H, W], use_reentrant=False)
                else:
                    x = blk(x, [H, W])
            x = getattr(self, f"norm{i}")(x)
            x = x.reshape(B, H, W, C).permute(0, 3, 1, 2).contiguous()
            outs.append(x)
        return outs


def build_pvt_v2(name: str, depths=None, drop_path_rate=0.1):
    e, h, m, d, s = PVT_V2_ARCHS[name]
    return PyramidVisionTransformerV2(e, h, m, tuple(depths or d), s, drop_path_rate=drop_path_rate)
