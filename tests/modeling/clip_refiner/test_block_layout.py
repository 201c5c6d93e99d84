"""`residual_block_seq_first`: open_clip's block in sequence-first layout, without the per-token weight copy."""
import torch
from open_clip.transformer import ResidualAttentionBlock
from torch.profiler import profile

from focus.modeling.clip_refiner.clip_model import residual_block_seq_first


def _block():
    torch.manual_seed(0)
    return ResidualAttentionBlock(32, 4, batch_first=True).train().requires_grad_(False)  # frozen, as CLIP is


def test_same_function_as_the_batch_first_block():
    block = _block()
    x = torch.randn(3, 7, 32, dtype=torch.float64)  # (N, L, D)
    block = block.double()
    x.requires_grad_()
    ours = residual_block_seq_first(block, x.transpose(0, 1).contiguous()).transpose(0, 1)
    torch.testing.assert_close(ours, block(x), rtol=1e-12, atol=1e-12)


def test_no_weight_broadcast_when_the_input_requires_grad():
    """Regression: through `block(x)` the transposed in-projection input made matmul expand the (3D, D) weight
    to one copy per token (`aten::bmm` with a (L, D, 3D) operand): minutes per FOCUS-L training step."""
    block = _block()
    x = torch.randn(7, 3, 32, requires_grad=True)  # (L, N, D)
    with profile(record_shapes=True) as prof, torch.autocast("cpu", dtype=torch.bfloat16):
        residual_block_seq_first(block, x).sum().backward()
    expanded = [e.input_shapes for e in prof.events() if e.name == "aten::bmm" and [7, 32, 96] in e.input_shapes]
    assert expanded == []
    with profile(record_shapes=True) as prof, torch.autocast("cpu", dtype=torch.bfloat16):
        block(x.detach().transpose(0, 1).contiguous().requires_grad_()).sum().backward()  # (N, L, D)
    # the library path does broadcast (if this starts failing, PyTorch fixed it and the helper may go)
    assert any(e.name == "aten::bmm" and [7, 32, 96] in e.input_shapes for e in prof.events())
