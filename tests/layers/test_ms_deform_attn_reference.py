"""The PyTorch reference of multi-scale deformable attention against the docs/focus.md#msda-op formula."""
import pytest
import torch

from focus.layers import ms_deform_attn_pytorch

from msda_testing import loop_formula, make_inputs

SHAPES = [
    [(4, 5)],
    [(3, 3), (2, 4)],
    [(6, 4), (3, 2), (1, 1), (2, 7)],
]


@pytest.mark.parametrize("shapes", SHAPES)
def test_reference_matches_loop_formula(shapes):
    inputs = make_inputs(shapes, n=2, lq=4, m=2, dh=3, p=3)
    out = ms_deform_attn_pytorch(*inputs)
    assert out.shape == (2, 4, 6)
    torch.testing.assert_close(out, loop_formula(*inputs), rtol=0, atol=1e-12)


def test_reference_outside_samples():
    value, shapes, start, _, attn = make_inputs([(3, 4), (2, 2)], n=1, lq=6, m=1, dh=2, p=1)
    # wholly outside (beyond the -1 / H border in pixels), partly outside (one corner row/col in), and inside
    loc = torch.tensor([[-0.6, 0.5], [1.6, 0.5], [0.5, -0.1], [0.02, 0.98], [0.99, 0.01], [0.4, 0.6]],
                       dtype=torch.float64)
    loc = loc.view(1, 6, 1, 1, 1, 2).expand(1, 6, 1, 2, 1, 2).contiguous()
    out = ms_deform_attn_pytorch(value, shapes, start, loc, attn)
    torch.testing.assert_close(out, loop_formula(value, shapes, start, loc, attn), rtol=0, atol=1e-12)
    assert out[0, :2].abs().max() == 0  # wholly outside every level
    assert out[0, 2:].abs().min() > 0


def test_reference_gradcheck():
    value, shapes, start, loc, attn = make_inputs([(3, 4), (2, 3)], n=1, lq=3, m=2, dh=2, p=2, spread=(0.05, 0.95))
    for t in (value, loc, attn):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda v, l, a: ms_deform_attn_pytorch(v, shapes, start, l, a), (value, loc, attn), eps=1e-6, atol=1e-7
    )
