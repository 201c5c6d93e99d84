"""The gather formulation of the deformable convolution against `torchvision.ops.deform_conv2d` (CPU, seconds)."""
from pathlib import Path

import pytest
import torch
from torchvision.ops import deform_conv2d

from focus.modeling.birefnet.deform import deform_conv2d_gather, padded_table
from focus.modeling.birefnet.modules import ASPPDeformable

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("k,stride", [(1, 1), (3, 1), (7, 1), (3, 2)])
@pytest.mark.parametrize("with_mask,with_bias", [(True, True), (False, False)])
def test_gather_equals_torchvision(k, stride, with_mask, with_bias):
    """Offsets of several pixels (samples outside the map, on its border and at exact integers) and masks in
    [0, 2]: the same values up to the summation order."""
    g = torch.Generator().manual_seed(k * 10 + stride)
    B, C, H, W, O = 2, 5, 11, 9, 6
    p = k // 2
    Ho, Wo = (H + 2 * p - k) // stride + 1, (W + 2 * p - k) // stride + 1
    x = torch.randn(B, C, H, W, generator=g)
    offset = torch.randn(B, 2 * k * k, Ho, Wo, generator=g) * 4
    offset[:, :, 0] = offset[:, :, 0].round()  # integer offsets: samples exactly on rows/columns and borders
    mask = torch.rand(B, k * k, Ho, Wo, generator=g) * 2 if with_mask else None
    weight = torch.randn(O, C, k, k, generator=g)
    bias = torch.randn(O, generator=g) if with_bias else None
    ref = deform_conv2d(x, offset, weight, bias, stride=stride, padding=p, mask=mask)
    out = deform_conv2d_gather(x, offset, weight, bias, stride=stride, padding=p, mask=mask)
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() < 1e-5 * max(1.0, ref.abs().max().item())


def test_gather_chunks_and_shared_table(monkeypatch):
    """Chunked output positions (several chunks per image) and a prebuilt padded table give the same result."""
    import focus.modeling.birefnet.deform as deform

    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 10, 10, generator=g)
    offset = torch.randn(1, 18, 10, 10, generator=g) * 2
    weight = torch.randn(3, 4, 3, 3, generator=g)
    whole = deform_conv2d_gather(x, offset, weight, padding=1)
    monkeypatch.setattr(deform, "_SAMPLES_PER_CHUNK", 9 * 7)
    chunked = deform_conv2d_gather(x, offset, weight, padding=1, table=padded_table(x))
    assert torch.allclose(whole, chunked, atol=1e-6)
    ref = deform_conv2d(x, offset, weight, padding=1)
    assert (chunked - ref).abs().max().item() < 1e-5


def test_padded_table_layout():
    x = torch.arange(12, dtype=torch.float32).view(2, 1, 2, 3)
    t = padded_table(x).view(2, 4, 5)  # (B, H+2, W+2), one channel
    assert t[0, 0].tolist() == [0] * 5 and t[0, :, 0].tolist() == [0] * 4
    assert t[0, 1, 1:4].tolist() == [0, 1, 2] and t[1, 2, 1:4].tolist() == [9, 10, 11]


def test_aspp_gather_equals_torchvision_and_keeps_autograd():
    """A whole deformable ASPP with trained-like (non-zero) offset and modulator convs; with gradients enabled
    the torchvision op runs (its backward)."""
    torch.manual_seed(0)
    aspp = ASPPDeformable(6, width=5).eval()
    for m in aspp.modules():
        if hasattr(m, "offset_conv"):
            torch.nn.init.normal_(m.offset_conv.weight, std=0.3)
            torch.nn.init.normal_(m.modulator_conv.weight, std=0.3)
    x = torch.randn(2, 6, 13, 12)
    with torch.no_grad():
        out = aspp(x)
        for m in aspp.modules():
            if hasattr(m, "impl"):
                m.impl = "torchvision"
        ref = aspp(x)
    assert (out - ref).abs().max().item() < 1e-5
    for m in aspp.modules():
        if hasattr(m, "impl"):
            m.impl = "gather"
    xg = x.clone().requires_grad_(True)
    aspp(xg).sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all()


def test_tiny_model_gather_equals_torchvision():
    """The whole tiny model (random, non-zero offsets): DEFORM_IMPL gather vs torchvision within 1e-5."""
    from focus.engine.trainer import setup_cfg
    from focus.modeling.birefnet import BiRefNet

    outs = {}
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    for impl in ("torchvision", "gather"):
        torch.manual_seed(0)
        model = BiRefNet(setup_cfg(str(ROOT / "configs" / "birefnet" / "tiny.yaml"),
                                   ["MODEL.BIREFNET.DEFORM_IMPL", impl])).eval()
        for m in model.modules():
            if hasattr(m, "offset_conv"):
                torch.nn.init.normal_(m.offset_conv.weight, std=0.2)
                torch.nn.init.normal_(m.modulator_conv.weight, std=0.2)
        with torch.no_grad():
            outs[impl] = model.forward_logits(x)[-1].sigmoid()
    assert (outs["gather"] - outs["torchvision"]).abs().max().item() < 1e-5


def test_bf16_weights_run_the_matmul_in_bf16():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 8, 8, generator=g)
    offset = torch.randn(1, 18, 8, 8, generator=g)
    weight = torch.randn(5, 4, 3, 3, generator=g)
    ref = deform_conv2d(x, offset, weight, padding=1)
    out = deform_conv2d_gather(x.bfloat16(), offset.bfloat16(), weight.bfloat16(), padding=1)
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max().item() < 0.05 * ref.abs().max().item()
