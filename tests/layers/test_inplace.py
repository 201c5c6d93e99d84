"""`focus.layers.inplace`: the memory-lean helpers compute their plain formulation (values and gradients) and
never allocate a whole map."""
import pytest
import torch

from focus.layers.inplace import add_interpolated_, add_upsample_2x2_, batch_norm_inplace_


def test_add_upsample_2x2_equals_the_transposed_convolution():
    torch.manual_seed(0)
    up = torch.nn.ConvTranspose2d(48, 40, 2, 2).double()
    tokens = torch.randn(2, 6 * 5, 48, dtype=torch.float64, requires_grad=True)
    base = torch.randn(2, 40, 12, 10, dtype=torch.float64)
    ref = up(tokens.transpose(1, 2).reshape(2, 48, 6, 5)) + base
    out = add_upsample_2x2_(base.clone(), tokens, up, 6, 5)
    assert out.shape == (2, 40, 12, 10) and out.is_contiguous()
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(ref)
    grads = [torch.autograd.grad(y, (tokens, up.weight, up.bias), g) for y in (out, ref)]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    with torch.no_grad():  # GEMMs on slices of grid rows: the same sums (BLAS may pick another kernel for few rows)
        for rows in (1, 4, 6):
            torch.testing.assert_close(add_upsample_2x2_(base.clone(), tokens, up, 6, 5, rows=rows), out,
                                       rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("batch", [1, 2])
def test_sliced_tail_helpers_are_bit_identical(batch):
    torch.manual_seed(0)
    out, x = torch.randn(batch, 40, 24, 20), torch.randn(batch, 40, 6, 5)
    ref = out + torch.nn.functional.interpolate(x, size=(24, 20), mode="bilinear", align_corners=False)
    assert torch.equal(add_interpolated_(out.clone(), x, channels=16), ref)
    bn = torch.nn.BatchNorm2d(40).eval()
    for t in (bn.running_mean, bn.running_var, bn.weight, bn.bias):
        t.data.uniform_(0.5, 1.5)
    with torch.no_grad():
        assert torch.equal(batch_norm_inplace_(bn, out.clone(), 16), bn(out))
        y = batch_norm_inplace_(bn, out.bfloat16(), 16)  # mixed dtypes: bn's own result
        assert torch.equal(y, bn(out.bfloat16()))
    x = out.clone().requires_grad_()
    y = batch_norm_inplace_(bn, x, 16)  # autograd records: the plain call, x untouched
    assert y is not x and torch.equal(x, out) and torch.equal(y, bn(out))


class _PeakHeap:
    """Peak growth of glibc's in-use heap bytes (`mallinfo2`) over the ops run inside the context."""

    def __init__(self):
        import ctypes

        from torch.utils._python_dispatch import TorchDispatchMode

        from focus.libc import glibc

        libc = glibc()
        if libc is None or not hasattr(libc, "mallinfo2"):
            pytest.skip("needs glibc >= 2.33 (mallinfo2)")

        class _Info(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in
                        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

        libc.mallinfo2.restype = _Info
        used = lambda: libc.mallinfo2().uordblks + libc.mallinfo2().hblkhd  # noqa: E731
        peak = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                peak.bytes = max(peak.bytes, used() - peak.base)
                return out

        self._mode, self._used = _Mode(), used

    def __enter__(self):
        self.base, self.bytes = self._used(), 0
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self._mode.__exit__(*exc)


@pytest.mark.resources
def test_sliced_tail_helpers_never_allocate_a_whole_map():
    """The memory the helpers exist for: at most a slice of the (B, O, 2h, 2w) map is ever allocated."""
    torch.manual_seed(0)
    up = torch.nn.ConvTranspose2d(64, 64, 2, 2)  # a small weight: GEMM libraries may copy it per call
    tokens, out = torch.randn(1, 64 * 64, 64), torch.randn(1, 64, 128, 128)
    map_bytes = out.numel() * 4  # 4 MiB
    bn = torch.nn.BatchNorm2d(64).eval()
    with torch.no_grad():
        for rows in (None, 8):  # warm-up: BLAS keeps its packing buffers after the first call
            add_upsample_2x2_(out, tokens, up, 64, 64, rows=rows)
        with _PeakHeap() as whole:
            add_upsample_2x2_(out, tokens, up, 64, 64)
        with _PeakHeap() as sliced:
            add_upsample_2x2_(out, tokens, up, 64, 64, rows=8)
        # slices of an eighth of the map, plus the kernels' own buffers
        assert whole.bytes >= map_bytes and sliced.bytes < map_bytes / 2, (whole.bytes, sliced.bytes)
        with _PeakHeap() as sliced:
            add_interpolated_(out, torch.randn(1, 64, 32, 32), channels=8)
        assert sliced.bytes < map_bytes / 2, sliced.bytes
        with _PeakHeap() as sliced:
            batch_norm_inplace_(bn, out, 8)
        assert sliced.bytes < map_bytes / 2, sliced.bytes
