"""Swin-V1 in its detection-style form (the mmdet/BiRefNet variant): every stage pads to whole windows.

timm's Swin computes a different function for dense prediction at arbitrary sizes: it clamps the window to the
feature size, rolls *before* padding, and uses a -100 shift mask. This module keeps the detection-style order
(norm1 -> zero-pad right/bottom to a multiple of the window -> cyclic shift -> windows), lets the zero padding
tokens act as unmasked keys/values, and builds the -inf shift mask on the padded size (docs/birefnet.md#q13).
Everything that computes the same function is timm's: `WindowAttention` (relative position bias, SDPA),
`PatchMerging` (2x2 phase order (0,0), (1,0), (0,1), (1,1), odd sizes zero-padded), `Mlp`, `DropPath`,
`window_partition` / `window_reverse`.

Parameter names follow the official checkpoints: `patch_embed.{proj,norm}`, `layers.<i>.blocks.<j>.{norm1,attn,
norm2,mlp}`, `layers.<i>.downsample.{norm,reduction}`, `norm<i>`; `attn.relative_position_index` is a persistent
int64 buffer (docs/birefnet.md#q14).
"""
import math
from typing import List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint
from timm.layers import DropPath, Mlp
from timm.models.swin_transformer import PatchMerging, WindowAttention, window_partition, window_reverse

__all__ = ["SwinTransformerV1", "SWIN_V1_ARCHS", "build_swin_v1", "shift_window_mask"]

# embed_dim, depths, num_heads, window_size of the official factories
SWIN_V1_ARCHS = {
    "swin_v1_t": (96, (2, 2, 6, 2), (3, 6, 12, 24), 7),
    "swin_v1_s": (96, (2, 2, 18, 2), (3, 6, 12, 24), 7),
    "swin_v1_b": (128, (2, 2, 18, 2), (4, 8, 16, 32), 12),
    "swin_v1_l": (192, (2, 2, 18, 2), (6, 12, 24, 48), 12),
}


def shift_window_mask(hp: int, wp: int, window: int, shift: int, device=None, dtype=torch.float32):
    """Additive shift mask ``(num_windows, window**2, window**2)`` for a padded ``hp x wp`` map: 0 inside a region,
    ``-inf`` across the 9 regions cut by ``[0:-window], [-window:-shift], [-shift:]`` (the original Swin uses -100,
    the same after softmax in fp32 because every row keeps its own token)."""
    img = torch.zeros((1, hp, wp, 1), device=device, dtype=dtype)
    cnt = 0
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for h in cuts:
        for w in cuts:
            img[:, h, w, :] = cnt
            cnt += 1
    win = window_partition(img, (window, window)).view(-1, window * window)
    mask = win.unsqueeze(1) - win.unsqueeze(2)
    return mask.masked_fill(mask != 0, float("-inf")).masked_fill(mask == 0, 0.0)


class SwinBlockV1(nn.Module):
    """(Shifted-)window block on tokens ``(B, H*W, C)``; pads right/bottom to whole windows before the shift."""

    def __init__(self, dim, num_heads, window_size, shift_size, mlp_ratio=4.0, qkv_bias=True, drop_path=0.0):
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads=num_heads, window_size=window_size, qkv_bias=qkv_bias)
        # the official model runs F.scaled_dot_product_attention with the bias (+ mask) as attn_mask
        self.attn.fused_attn = True
        self.attn.register_buffer("relative_position_index", self.attn.relative_position_index, persistent=True)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x, hw, attn_mask):
        """x: ``(B, H*W, C)``; hw: (H, W); attn_mask: the padded-size shift mask (used only if shifted)."""
        H, W = hw
        B, L, C = x.shape
        ws = self.window_size
        shortcut = x
        x = self.norm1(x).view(B, H, W, C)
        pad_b, pad_r = (ws - H % ws) % ws, (ws - W % ws) % ws
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        Hp, Wp = H + pad_b, W + pad_r
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        else:
            attn_mask = None
        windows = window_partition(x, (ws, ws)).view(-1, ws * ws, C)
        windows = self.attn(windows, mask=attn_mask).view(-1, ws, ws, C)
        x = window_reverse(windows, (ws, ws), Hp, Wp)
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        x = x[:, :H, :W, :].reshape(B, H * W, C)
        x = shortcut + self.drop_path(x)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMergingV1(PatchMerging):
    """timm's `PatchMerging` (same function) with the official key order ``reduction`` then ``norm``."""

    def __init__(self, dim):
        super().__init__(dim, norm_layer=nn.LayerNorm)
        reduction, norm = self._modules.pop("reduction"), self._modules.pop("norm")
        self.reduction, self.norm = reduction, norm


class SwinStageV1(nn.Module):
    """`BasicLayer`: blocks alternating shift 0 / window//2, then (optionally) `PatchMerging`."""

    def __init__(self, dim, depth, num_heads, window_size, drop_path: Sequence[float], downsample=True):
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.blocks = nn.ModuleList(
            SwinBlockV1(dim, num_heads, window_size, 0 if j % 2 == 0 else self.shift_size, drop_path=drop_path[j])
            for j in range(depth)
        )
        self.downsample = PatchMergingV1(dim) if downsample else None
        self.grad_checkpointing = False

    def forward(self, x, hw):
        H, W = hw
        ws = self.window_size
        hp, wp = math.ceil(H / ws) * ws, math.ceil(W / ws) * ws
        mask = shift_window_mask(hp, wp, ws, self.shift_size, device=x.device, dtype=x.dtype)
        for blk in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(blk, x, hw, mask, use_reentrant=False)
            else:
                x = blk(x, hw, mask)
        if self.downsample is None:
            return x, x, hw
        B, _, C = x.shape
        down = self.downsample(x.view(B, H, W, C))
        return x, down.flatten(1, 2), ((H + 1) // 2, (W + 1) // 2)


class PatchEmbedV1(nn.Module):
    """Zero-pad right/bottom to a multiple of the patch, ``proj`` conv, LayerNorm over channels."""

    def __init__(self, patch_size=4, in_chans=3, embed_dim=96):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x):
        p = self.patch_size
        H, W = x.shape[-2:]
        x = F.pad(x, (0, (p - W % p) % p, 0, (p - H % p) % p))
        x = self.proj(x)
        hw = tuple(x.shape[-2:])
        return self.norm(x.flatten(2).transpose(1, 2)), hw


class SwinTransformerV1(nn.Module):
    """Four-stage Swin returning ``[x1, x2, x3, x4]``, each ``(B, C * 2**i, H_i, W_i)`` after `norm<i>`.

    Args:
        embed_dim, depths, num_heads, window_size: architecture (see `SWIN_V1_ARCHS`).
        drop_path_rate: stochastic depth, linear over all blocks (training only).
    """

    def __init__(self, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7,
                 patch_size=4, drop_path_rate=0.2):
        super().__init__()
        self.num_layers = len(depths)
        self.patch_embed = PatchEmbedV1(patch_size, 3, embed_dim)
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        self.num_features = [int(embed_dim * 2**i) for i in range(self.num_layers)]
        self.layers = nn.ModuleList(
            SwinStageV1(
                self.num_features[i], depths[i], num_heads[i], window_size,
                dpr[sum(depths[:i]):sum(depths[:i + 1])], downsample=i < self.num_layers - 1,
            )
            for i in range(self.num_layers)
        )
        for i, c in enumerate(self.num_features):
            self.add_module(f"norm{i}", nn.LayerNorm(c))

    @property
    def channels(self) -> List[int]:
        """Output channels of x1..x4."""
        return list(self.num_features)

    def set_grad_checkpointing(self, enable: bool = True):
        for layer in self.layers:
            layer.grad_checkpointing = enable

    def forward(self, x) -> List[torch.Tensor]:
        x, hw = self.patch_embed(x)
        outs = []
        for i, layer in enumerate(self.layers):
            out, x, next_hw = layer(x, hw)
            out = getattr(self, f"norm{i}")(out)
            outs.append(out.view(-1, hw[0], hw[1], self.num_features[i]).permute(0, 3, 1, 2).contiguous())
            hw = next_hw
        return outs


def build_swin_v1(name: str, depths=None, drop_path_rate=0.2, embed_dim=None, num_heads=None, window_size=None):
    """Official factory `name` with optional overrides (e.g. the golden case's shorter depths)."""
    e, d, h, w = SWIN_V1_ARCHS[name]
    return SwinTransformerV1(
        embed_dim=embed_dim or e, depths=tuple(depths or d), num_heads=tuple(num_heads or h),
        window_size=window_size or w, drop_path_rate=drop_path_rate,
    )
