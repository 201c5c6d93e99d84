"""The compiled CPU kernel against the PyTorch reference and the docs/focus.md#msda-op formula.

The extension is JIT-compiled once (about a minute on 2 cores) into build/cpu_ext and reused by later runs."""
import pytest
import torch

from focus.layers import MSDeformAttn, ms_deform_attn_pytorch
from focus.layers.ms_deform_attn import MSDeformAttnFunction, extension, load_cpu_extension, ms_deform_attn_backend

from msda_testing import level_start_index, loop_formula, make_inputs

SHAPES = [[(4, 5)], [(3, 3), (2, 4), (1, 1), (5, 2)]]


@pytest.fixture(scope="module")
def cpu_ext():
    return load_cpu_extension()


def _kernel(ext, value, shapes, start, loc, attn):
    return MSDeformAttnFunction.apply(ext, value, shapes, start, loc, attn)


@pytest.mark.parametrize("shapes", SHAPES)
def test_cpu_kernel_forward_float64(cpu_ext, shapes):
    inputs = make_inputs(shapes, n=2, lq=5, m=3, dh=5, p=3)
    out = _kernel(cpu_ext, *inputs)
    torch.testing.assert_close(out, ms_deform_attn_pytorch(*inputs), rtol=0, atol=1e-10)
    torch.testing.assert_close(out, loop_formula(*inputs), rtol=0, atol=1e-10)


@pytest.mark.parametrize("shapes", SHAPES)
def test_cpu_kernel_backward_float64(cpu_ext, shapes):
    value, shapes, start, loc, attn = make_inputs(shapes, n=2, lq=5, m=3, dh=4, p=2)
    grad = torch.randn(2, 5, 12, dtype=torch.float64)
    grads = []
    for fn in (ms_deform_attn_pytorch, lambda *a: _kernel(cpu_ext, *a)):
        leaves = [t.clone().requires_grad_(True) for t in (value, loc, attn)]
        fn(leaves[0], shapes, start, leaves[1], leaves[2]).backward(grad)
        grads.append([t.grad for t in leaves])
    for ref, ker in zip(*grads):
        torch.testing.assert_close(ker, ref, rtol=0, atol=1e-10)


def test_cpu_kernel_gradcheck(cpu_ext):
    value, shapes, start, loc, attn = make_inputs([(3, 4), (2, 3)], n=2, lq=3, m=2, dh=3, p=2, spread=(0.05, 0.95))
    for t in (value, loc, attn):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda v, l, a: _kernel(cpu_ext, v, shapes, start, l, a), (value, loc, attn), eps=1e-6, atol=1e-7
    )


def test_cpu_kernel_bfloat16(cpu_ext):
    value, shapes, start, loc, attn = make_inputs([(8, 6), (4, 3)], n=2, lq=16, m=2, dh=8, p=4,
                                                  dtype=torch.float32, spread=(0.0, 1.0))
    grad = torch.randn(2, 16, 16)
    ref_leaves = [t.clone().requires_grad_(True) for t in (value, loc, attn)]
    ref = ms_deform_attn_pytorch(ref_leaves[0], shapes, start, ref_leaves[1], ref_leaves[2])
    ref.backward(grad)
    leaves = [value.bfloat16().requires_grad_(True), loc.clone().requires_grad_(True),
              attn.clone().requires_grad_(True)]
    out = _kernel(cpu_ext, leaves[0], shapes, start, leaves[1], leaves[2])
    assert out.dtype == torch.bfloat16
    out.backward(grad.bfloat16())
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)
    assert leaves[0].grad.dtype == torch.bfloat16 and leaves[1].grad.dtype == torch.float32
    for ker, r in zip(leaves, ref_leaves):
        scale = r.grad.abs().max().item()
        assert (ker.grad.float() - r.grad).abs().max().item() < 3e-2 * scale


def test_cpu_kernel_rejects_bad_inputs(cpu_ext):
    value, shapes, start, loc, attn = make_inputs([(3, 4)], n=1, lq=2, m=1, dh=2, p=1)
    with pytest.raises(RuntimeError, match="sampling_loc and attn_weight must be"):
        cpu_ext.ms_deform_attn_forward(value, shapes, start, loc.float(), attn.float(), 64)
    with pytest.raises(RuntimeError, match="attn_weight must be"):
        cpu_ext.ms_deform_attn_forward(value, shapes, start, loc, attn[..., :0].contiguous(), 64)


def test_dispatcher_uses_loaded_cpu_ext(cpu_ext, monkeypatch):
    monkeypatch.delenv("FOCUS_DISABLE_EXT", raising=False)
    monkeypatch.setitem(extension._state, "cpu", cpu_ext)
    assert ms_deform_attn_backend("cpu") is cpu_ext
    torch.manual_seed(0)
    module = MSDeformAttn(d_model=32, n_levels=2, n_heads=4, n_points=3, ratio=0.5).double()
    torch.nn.init.normal_(module.sampling_offsets.weight, std=0.1)
    shapes = torch.tensor([(5, 4), (3, 2)])
    args = (torch.randn(2, 6, 32, dtype=torch.float64), torch.rand(2, 6, 2, 2, dtype=torch.float64),
            torch.randn(2, 26, 32, dtype=torch.float64), shapes, level_start_index(shapes))
    out = module(*args)
    assert out.grad_fn is not None
    monkeypatch.setenv("FOCUS_DISABLE_EXT", "1")
    torch.testing.assert_close(out, module(*args), rtol=0, atol=1e-10)


def test_cpu_kernel_under_autocast(cpu_ext, monkeypatch):
    monkeypatch.delenv("FOCUS_DISABLE_EXT", raising=False)
    monkeypatch.setitem(extension._state, "cpu", cpu_ext)
    module = MSDeformAttn(d_model=32, n_levels=1, n_heads=4, n_points=2)
    shapes = torch.tensor([(4, 4)])
    args = (torch.randn(1, 5, 32), torch.rand(1, 5, 1, 2), torch.randn(1, 16, 32), shapes, level_start_index(shapes))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(*args)
    monkeypatch.setenv("FOCUS_DISABLE_EXT", "1")
    torch.testing.assert_close(out.float(), module(*args), rtol=5e-2, atol=5e-2)
    out.float().sum().backward()


def test_focus_cpu_ext_env_loads_at_first_use(cpu_ext, monkeypatch):
    monkeypatch.delenv("FOCUS_DISABLE_EXT", raising=False)
    monkeypatch.setitem(extension._state, "cpu", None)
    monkeypatch.setitem(extension._state, "cuda", None)
    monkeypatch.setitem(extension._state, "cuda_checked", True)
    monkeypatch.setenv("FOCUS_CPU_EXT", "1")
    backend = ms_deform_attn_backend("cpu")  # compiled already by the fixture: only (re)loads from the cache
    assert backend is not None and backend.__name__ == cpu_ext.__name__
    status = extension.status()
    assert status["ms_deform_attn on cpu"] == "CPU kernel (JIT ext)" and status["CPU ext (JIT)"].startswith("loaded")
