"""`MSDeformAttn` shapes, official initialisation (docs/focus.md#msda-module) and the dispatcher's choice of
implementation."""
import itertools
import logging
import math

import pytest
import torch

from focus.layers import MSDeformAttn, ms_deform_attn, ms_deform_attn_pytorch
from focus.layers.ms_deform_attn import extension, ms_deform_attn_backend

from msda_testing import level_start_index, make_inputs

LEVEL_SHAPES = [(6, 5), (3, 4), (2, 2), (1, 3)]


@pytest.mark.parametrize(
    "n_levels,n_points,batch,ratio",
    [(1, 1, 1, 1.0), (2, 3, 2, 0.5), (3, 4, 3, 1.0), (4, 8, 1, 0.5), (4, 2, 2, 1.0)],
)
def test_module_shapes(n_levels, n_points, batch, ratio):
    d_model, n_heads, len_q = 32, 4, 7
    module = MSDeformAttn(d_model, n_levels, n_heads, n_points, ratio=ratio)
    assert module.value_proj.weight.shape == (int(d_model * ratio), d_model)
    assert module.output_proj.weight.shape == (d_model, int(d_model * ratio))
    assert module.sampling_offsets.weight.shape == (n_heads * n_levels * n_points * 2, d_model)
    assert module.attention_weights.weight.shape == (n_heads * n_levels * n_points, d_model)
    assert module.head_dim == int(d_model * ratio) // n_heads
    shapes = torch.tensor(LEVEL_SHAPES[:n_levels])
    s = int((shapes[:, 0] * shapes[:, 1]).sum())
    query = torch.randn(batch, len_q, d_model)
    out = module(query, torch.rand(batch, len_q, n_levels, 2), torch.randn(batch, s, d_model), shapes,
                 level_start_index(shapes))
    assert out.shape == (batch, len_q, d_model)
    out.sum().backward()
    assert module.sampling_offsets.weight.grad is not None


def test_module_init_values():
    module = MSDeformAttn(d_model=16, n_levels=2, n_heads=8, n_points=3)
    assert module.sampling_offsets.weight.abs().max() == 0
    assert module.attention_weights.weight.abs().max() == 0 and module.attention_weights.bias.abs().max() == 0
    assert module.value_proj.bias.abs().max() == 0 and module.output_proj.bias.abs().max() == 0
    bound = math.sqrt(6 / (16 + 16))  # Xavier-uniform
    assert module.value_proj.weight.abs().max() <= bound and module.value_proj.weight.std() > 0.3 * bound
    bias = module.sampling_offsets.bias.view(8, 2, 3, 2)
    # head k: (cos, sin)(2*pi*k/8) over its max-abs component, times (p + 1), same for every level
    expected_dirs = torch.tensor([[1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0], [-1, -1], [0, -1], [1, -1]],
                                 dtype=torch.float32)
    for k, lvl, p in itertools.product(range(8), range(2), range(3)):
        torch.testing.assert_close(bias[k, lvl, p], expected_dirs[k] * (p + 1), atol=1e-5, rtol=0)


def test_module_matches_manual_composition():
    torch.manual_seed(0)
    module = MSDeformAttn(d_model=16, n_levels=2, n_heads=2, n_points=2, ratio=0.5).double()
    for prm in module.parameters():
        torch.nn.init.normal_(prm, std=0.3)
    shapes = torch.tensor([(4, 3), (2, 5)])
    start = level_start_index(shapes)
    query, x = torch.randn(1, 3, 16, dtype=torch.float64), torch.randn(1, 22, 16, dtype=torch.float64)
    ref = torch.rand(1, 3, 2, 2, dtype=torch.float64)
    mask = torch.zeros(1, 22, dtype=torch.bool)
    mask[0, -4:] = True
    out = module(query, ref, x, shapes, start, mask)

    value = module.value_proj(x).masked_fill(mask[..., None], 0).view(1, 22, 2, 4)
    off = module.sampling_offsets(query).view(1, 3, 2, 2, 2, 2)
    attn = module.attention_weights(query).view(1, 3, 2, 4).softmax(-1).view(1, 3, 2, 2, 2)
    wh = torch.tensor([(3.0, 4.0), (5.0, 2.0)], dtype=torch.float64)  # (W_l, H_l)
    loc = ref[:, :, None, :, None, :] + off / wh[None, None, None, :, None, :]
    expected = module.output_proj(ms_deform_attn_pytorch(value, shapes, start, loc, attn))
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_module_rejects_bad_shapes():
    with pytest.raises(ValueError, match="divisible"):
        MSDeformAttn(d_model=30, n_heads=8)
    module = MSDeformAttn(d_model=16, n_levels=1, n_heads=2, n_points=1)
    with pytest.raises(ValueError, match="input_spatial_shapes"):
        module(torch.randn(1, 2, 16), torch.rand(1, 2, 1, 2), torch.randn(1, 5, 16), torch.tensor([[2, 3]]),
               torch.tensor([0]))


def test_dispatcher_uses_reference_without_extension(monkeypatch, caplog):
    monkeypatch.setitem(extension._state, "cpu", None)
    monkeypatch.delenv("FOCUS_CPU_EXT", raising=False)
    monkeypatch.delenv("FOCUS_DISABLE_EXT", raising=False)
    if extension.cuda_extension() is not None:
        pytest.skip("focus._C is built here; it serves CPU tensors")
    inputs = make_inputs([(3, 4)], n=1, lq=2, m=1, dh=2, p=1)
    with caplog.at_level(logging.WARNING):
        assert ms_deform_attn_backend("cpu") is None
        torch.testing.assert_close(ms_deform_attn(*inputs), ms_deform_attn_pytorch(*inputs), rtol=0, atol=0)
    assert not caplog.records  # a missing extension is reported only where it would have been used (CUDA)


def test_dispatcher_disable_env(monkeypatch):
    sentinel = object()
    monkeypatch.setitem(extension._state, "cpu", sentinel)
    assert ms_deform_attn_backend("cpu") is sentinel
    monkeypatch.setenv("FOCUS_DISABLE_EXT", "1")
    assert ms_deform_attn_backend("cpu") is None
    assert ms_deform_attn_backend("cuda") is None


def test_dispatcher_reports_missing_cuda_ext_once(monkeypatch, caplog):
    monkeypatch.delenv("FOCUS_DISABLE_EXT", raising=False)
    monkeypatch.setattr(extension, "_state", {"cuda": None, "cuda_checked": True, "cuda_reported": False,
                                              "cpu": None})
    with caplog.at_level(logging.WARNING, logger=extension.__name__):
        assert ms_deform_attn_backend("cuda") is None
        assert ms_deform_attn_backend("cuda") is None
    assert len(caplog.records) == 1 and "make build-cuda" in caplog.records[0].getMessage()


@pytest.mark.parametrize(
    "prefix,kwargs",
    [
        ("backbone.interactions.0.injector.attn.", dict(d_model=1024, n_levels=3, n_heads=16, n_points=4, ratio=0.5)),
        ("backbone.interactions.0.extractor.attn.", dict(d_model=1024, n_levels=1, n_heads=16, n_points=4, ratio=0.5)),
        ("sem_seg_head.pixel_decoder.transformer.encoder.layers.0.self_attn.",
         dict(d_model=256, n_levels=3, n_heads=8, n_points=4)),
    ],
)
def test_module_state_dict_matches_official(shared_reference, prefix, kwargs):
    import json

    entries = json.loads((shared_reference / "state_dict_focus_dinov2_large.json").read_text())["entries"]
    official = {e["key"][len(prefix):]: tuple(e["shape"]) for e in entries if e["key"].startswith(prefix)}
    ours = {k: tuple(v.shape) for k, v in MSDeformAttn(**kwargs).state_dict().items()}
    assert ours == official
