"""ProjectionHead (docs/focus.md#projection-head): shapes and the forward formula, BatchNorm over the query axis."""

import torch
import torch.nn.functional as F

from focus.modeling.clip_refiner import ProjectionHead


def test_shapes_and_formula():
    torch.manual_seed(0)
    head = ProjectionHead(embedding_dim=16, projection_dim=8)
    assert [n for n, _ in head.named_children()] == ["projection", "gelu", "fc", "dropout", "layer_norm", "bn1"]
    assert head.bn1.num_features == 2
    x = torch.randn(3, 2, 16)
    head.train()
    out = head(x)
    assert out.shape == (3, 2, 8)
    p = x @ head.projection.weight.t() + head.projection.bias
    y = F.gelu(p) @ head.fc.weight.t() + head.fc.bias
    # training-mode batch norm: channels = queries, statistics over batch × features
    mean = y.mean(dim=(0, 2), keepdim=True)
    var = y.var(dim=(0, 2), unbiased=False, keepdim=True)
    y = (y - mean) / torch.sqrt(var + 1e-5) * head.bn1.weight.view(1, 2, 1) + head.bn1.bias.view(1, 2, 1)
    expected = F.layer_norm(y + p, (8,), head.layer_norm.weight, head.layer_norm.bias)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    head.eval()
    assert head(x).shape == (3, 2, 8)
    assert ProjectionHead(num_queries=4)(torch.randn(2, 4, 512)).shape == (2, 4, 512)
