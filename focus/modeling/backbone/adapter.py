"""ViT-Adapter interaction modules of the FOCUS backbone (docs/focus.md#adapter): injector, extractor, ConvFFN, and the
reference points / spatial shapes of their deformable attentions.

Tokens of the spatial prior `c` are the concatenation of three maps at strides 8, 16, 32 of the padded input
(lengths 16n, 4n, n with n = (H/32)(W/32), i.e. N_c = 21n), hence the 21-way split of `DWConv`.
"""
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from torchvision.ops import StochasticDepth

from focus.layers import MSDeformAttn, grid_centers

__all__ = [
    "get_reference_points",
    "deform_inputs",
    "DWConv",
    "ConvFFN",
    "Injector",
    "Extractor",
    "InteractionBlockWithCls",
]


def get_reference_points(spatial_shapes, device):
    """Normalised (x, y) centres of every cell of each `(h, w)` grid, concatenated: (1, sum h*w, 1, 2)."""
    return grid_centers(spatial_shapes, device)[None, :, None]


def _level_start_index(spatial_shapes):
    return torch.cat((spatial_shapes.new_zeros((1,)), spatial_shapes.prod(1).cumsum(0)[:-1]))


def deform_inputs(h, w, patch_size, device):
    """Deformable-attention inputs for a padded input of size (h, w) (docs/focus.md#adapter).

    Returns `(inj, ext)`, each `[reference_points, spatial_shapes (L, 2) int64, level_start_index (L,)]`:
    injector queries are the ViT token-grid centres `(1, Ht*Wt, 1, 2)` over the 3 prior levels (strides 8, 16, 32);
    extractor queries are the centres of the 3 prior grids `(1, N_c, 1, 2)` over the single ViT token level.
    """
    prior = [(h // 8, w // 8), (h // 16, w // 16), (h // 32, w // 32)]
    tokens = [(h // patch_size, w // patch_size)]
    shapes = torch.as_tensor(prior, dtype=torch.long, device=device)
    inj = [get_reference_points(tokens, device), shapes, _level_start_index(shapes)]
    shapes = torch.as_tensor(tokens, dtype=torch.long, device=device)
    ext = [get_reference_points(prior, device), shapes, _level_start_index(shapes)]
    return inj, ext


class DWConv(nn.Module):
    """Depthwise 3x3 conv on the three prior maps of a `c` sequence; (B, 21n, C), Hc, Wc -> (B, 21n, C).

    The sequence is split at `16n` and `20n` (n = N // 21) into maps (2Hc, 2Wc), (Hc, Wc), (Hc/2, Wc/2); the same
    conv (zero padding per map) is applied to each and the results are concatenated back (docs/focus.md#adapter).
    """

    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, bias=True, groups=dim)

    def forward(self, x, hc, wc):
        b, n, c = x.shape
        n //= 21
        maps = (
            x[:, : 16 * n].transpose(1, 2).reshape(b, c, 2 * hc, 2 * wc),
            x[:, 16 * n : 20 * n].transpose(1, 2).reshape(b, c, hc, wc),
            x[:, 20 * n :].transpose(1, 2).reshape(b, c, hc // 2, wc // 2),
        )
        return torch.cat([self.dwconv(m).flatten(2).transpose(1, 2) for m in maps], dim=1)


class ConvFFN(nn.Module):
    """`fc1: D -> hidden` -> `DWConv` -> GELU -> `fc2: hidden -> D` on a `c` sequence (dropout 0 omitted)."""

    def __init__(self, dim, hidden_dim):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.dwconv = DWConv(hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x, hc, wc):
        return self.fc2(self.act(self.dwconv(self.fc1(x), hc, wc)))


def _maybe_checkpoint(fn, with_cp, *args):
    if with_cp and args[0].requires_grad:
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


class Injector(nn.Module):
    """Prior -> ViT: `x + gamma * MSDeformAttn(query_norm(x), feat_norm(c))` over the 3 prior levels.

    x: (B, Ht*Wt, D) ViT patch tokens, c: (B, N_c, D) prior tokens -> (B, Ht*Wt, D).
    """

    def __init__(self, dim, num_heads, n_points=4, n_levels=3, deform_ratio=1.0, init_values=0.0, with_cp=False):
        super().__init__()
        self.with_cp = with_cp
        self.query_norm = nn.LayerNorm(dim, eps=1e-6)
        self.feat_norm = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MSDeformAttn(dim, n_levels, num_heads, n_points, ratio=deform_ratio)
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, query, reference_points, feat, spatial_shapes, level_start_index):
        def _inner(query, feat):
            ref = reference_points.expand(query.shape[0], -1, len(spatial_shapes), -1)
            attn = self.attn(self.query_norm(query), ref, self.feat_norm(feat), spatial_shapes, level_start_index)
            return query + self.gamma * attn

        return _maybe_checkpoint(_inner, self.with_cp, query, feat)


class Extractor(nn.Module):
    """ViT -> prior: `c + MSDeformAttn(query_norm(c), feat_norm(x))` (1 level), then `c + drop_path(ffn(ffn_norm(c)))`.

    c: (B, N_c, D), x: (B, Ht*Wt, D) -> (B, N_c, D).
    """

    def __init__(
        self,
        dim,
        num_heads,
        n_points=4,
        n_levels=1,
        deform_ratio=1.0,
        with_cffn=True,
        cffn_ratio=0.25,
        drop_path=0.0,
        with_cp=False,
    ):
        super().__init__()
        self.with_cp = with_cp
        self.query_norm = nn.LayerNorm(dim, eps=1e-6)
        self.feat_norm = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MSDeformAttn(dim, n_levels, num_heads, n_points, ratio=deform_ratio)
        self.with_cffn = with_cffn
        if with_cffn:
            self.ffn = ConvFFN(dim, int(dim * cffn_ratio))
            self.ffn_norm = nn.LayerNorm(dim, eps=1e-6)
            self.drop_path = StochasticDepth(drop_path, "row") if drop_path > 0 else nn.Identity()

    def forward(self, query, reference_points, feat, spatial_shapes, level_start_index, hc, wc):
        def _inner(query, feat):
            ref = reference_points.expand(query.shape[0], -1, len(spatial_shapes), -1)
            query = query + self.attn(
                self.query_norm(query), ref, self.feat_norm(feat), spatial_shapes, level_start_index
            )
            if self.with_cffn:
                query = query + self.drop_path(self.ffn(self.ffn_norm(query), hc, wc))
            return query

        return _maybe_checkpoint(_inner, self.with_cp, query, feat)


class InteractionBlockWithCls(nn.Module):
    """One adapter interaction (docs/focus.md#adapter): injector, ViT blocks `s..e` (cls token re-attached), extractor,
    and for the last interaction two `extra_extractors`.

    forward(x (B, Ht*Wt, D), c (B, N_c, D), cls (B, 1, D) or None, blocks, deform inputs, Hc, Wc) -> x, c, cls.
    """

    def __init__(
        self,
        dim,
        num_heads,
        n_points=4,
        drop_path=0.0,
        with_cffn=True,
        cffn_ratio=0.25,
        init_values=0.0,
        deform_ratio=1.0,
        extra_extractor=False,
        with_cp=False,
    ):
        super().__init__()
        self.injector = Injector(
            dim, num_heads, n_points, 3, deform_ratio, init_values=init_values, with_cp=with_cp
        )
        ext = dict(
            dim=dim,
            num_heads=num_heads,
            n_points=n_points,
            n_levels=1,
            deform_ratio=deform_ratio,
            with_cffn=with_cffn,
            cffn_ratio=cffn_ratio,
            drop_path=drop_path,
            with_cp=with_cp,
        )
        self.extractor = Extractor(**ext)
        self.extra_extractors = nn.Sequential(*[Extractor(**ext) for _ in range(2)]) if extra_extractor else None

    def forward(self, x, c, cls, blocks, deform_inputs1, deform_inputs2, hc, wc):
        x = self.injector(x, deform_inputs1[0], c, deform_inputs1[1], deform_inputs1[2])
        if cls is not None:
            x = torch.cat((cls, x), dim=1)
        for blk in blocks:
            x = blk(x)
        if cls is not None:
            cls, x = x[:, :1], x[:, 1:]
        extractors = [self.extractor] + (list(self.extra_extractors) if self.extra_extractors is not None else [])
        for extractor in extractors:
            c = extractor(c, deform_inputs2[0], x, deform_inputs2[1], deform_inputs2[2], hc, wc)
        return x, c, cls
