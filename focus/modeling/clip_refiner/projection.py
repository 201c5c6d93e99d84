"""`ProjectionHead`: the decoder's `image_embed` / `text_embed` heads on CLIP features
(docs/focus.md#projection-head)."""

from torch import nn

__all__ = ["ProjectionHead"]


class ProjectionHead(nn.Module):
    """Residual MLP projection with batch norm over the query axis (docs/focus.md#projection-head).

    `p = projection(x)`; `out = layer_norm(dropout(bn1(fc(gelu(p)))) + p)`. `bn1` is a `BatchNorm1d` whose
    channels are the queries (statistics over batch × features); the official head hard-codes 2 queries
    (docs/focus.md#q26), here `num_queries` (default 2, state-dict compatible).

    Input `(B, Q, embedding_dim)` → output `(B, Q, projection_dim)`.
    """

    def __init__(self, embedding_dim=512, projection_dim=512, dropout=0.0, num_queries=2):
        super().__init__()
        self.projection = nn.Linear(embedding_dim, projection_dim)
        self.gelu = nn.GELU()
        self.fc = nn.Linear(projection_dim, projection_dim)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(projection_dim)
        self.bn1 = nn.BatchNorm1d(num_queries)

    def forward(self, x):
        projected = self.projection(x)
        y = self.dropout(self.bn1(self.fc(self.gelu(projected))))
        return self.layer_norm(y + projected)
