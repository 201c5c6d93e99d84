"""DINOv2 ViT building blocks of the FOCUS backbone (docs/focus.md#vit).

Parameter names follow the official FOCUS model (`patch_embed.proj`, `blocks.{i}.{norm1,attn,norm2,mlp,gamma1,
gamma2}`), which are DINOv2's names with `ls{1,2}.gamma` renamed to `gamma{1,2}` (docs/focus.md#weights).
"""
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from torchvision.ops import StochasticDepth

__all__ = ["PatchEmbed", "Attention", "Mlp", "SwiGLUFFN", "Block", "resize_pos_embed"]


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection `Conv2d(3, D, p, stride=p)`; (B, 3, H, W) -> (B, H//p * W//p, D), H//p, W//p.

    Pixels beyond `p * (H // p)` / `p * (W // p)` are ignored (floor), as in the official model.
    """

    def __init__(self, patch_size=14, in_chans=3, embed_dim=1024):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, x):
        x = self.proj(x)
        h, w = x.shape[-2:]
        return x.flatten(2).transpose(1, 2), h, w


class Attention(nn.Module):
    """Multi-head self-attention with a fused `qkv` projection; (B, N, D) -> (B, N, D).

    The official model calls xformers' `memory_efficient_attention`; `F.scaled_dot_product_attention` computes
    the same function (softmax scale 1/sqrt(D/heads), no dropout) without the xformers dependency (docs/focus.md#q19).
    """

    def __init__(self, dim, num_heads, qkv_bias=True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"Attention: embed dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """`fc1: D -> hidden`, exact GELU, `fc2: hidden -> D` (`FFN_TYPE="mlp"`, DINOv2-L)."""

    def __init__(self, dim, hidden_dim):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class SwiGLUFFN(nn.Module):
    """SwiGLU FFN of DINOv2-G (`FFN_TYPE="swiglu"`): `w3(silu(x1) * x2)` with `x1, x2 = chunk(w12(x), 2)`.

    Hidden width `((int(4D * 2/3) + 7) // 8) * 8` (4096 for D=1536), the value DINOv2's fused SwiGLU uses.
    """

    def __init__(self, dim, mlp_ratio=4.0):
        super().__init__()
        hidden = (int(dim * mlp_ratio * 2 / 3) + 7) // 8 * 8
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x):
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


class Block(nn.Module):
    """Pre-norm transformer block with layer scale (DINOv2); (B, N, D) -> (B, N, D).

    `x + drop_path(gamma1 * attn(norm1(x)))`, then `x + drop_path(gamma2 * mlp(norm2(x)))`. With `with_cp`
    the block is gradient-checkpointed (non-reentrant) when its input requires grad.
    """

    def __init__(self, dim, num_heads, mlp_ratio=4.0, ffn_type="mlp", drop_path=0.0, with_cp=False):
        super().__init__()
        self.with_cp = with_cp
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        if ffn_type == "mlp":
            self.mlp = Mlp(dim, int(dim * mlp_ratio))
        elif ffn_type == "swiglu":
            self.mlp = SwiGLUFFN(dim, mlp_ratio)
        else:
            raise ValueError(f"MODEL.DINOV2.FFN_TYPE must be 'mlp' or 'swiglu', got {ffn_type!r}")
        self.gamma1 = nn.Parameter(torch.ones(dim))
        self.gamma2 = nn.Parameter(torch.ones(dim))

    def _inner_forward(self, x):
        x = x + self.drop_path(self.gamma1 * self.attn(self.norm1(x)))
        return x + self.drop_path(self.gamma2 * self.mlp(self.norm2(x)))

    def forward(self, x):
        if self.with_cp and x.requires_grad:
            return checkpoint(self._inner_forward, x, use_reentrant=False)
        return self._inner_forward(x)


def resize_pos_embed(pos_embed, grid, h, w):
    """Resize patch position embeddings `(1, grid*grid, D)` to `(1, h*w, D)`.

    Size-based bicubic interpolation (align_corners=False, no antialias), always applied even when the size is
    unchanged: the official `_get_pos_embed`, not DINOv2's scale-factor variant with a 0.1 offset (docs/focus.md#vit).
    """
    d = pos_embed.shape[-1]
    pos = pos_embed.reshape(1, grid, grid, d).permute(0, 3, 1, 2)
    pos = F.interpolate(pos, size=(h, w), mode="bicubic", align_corners=False)
    return pos.reshape(1, d, h * w).permute(0, 2, 1)
