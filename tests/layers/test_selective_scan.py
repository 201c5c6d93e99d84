"""Selective scan: the reference against a float64 restatement of the recurrence, gradcheck, and the blocked
scan against the reference (values and gradients)."""
import math

import pytest
import torch

from focus.layers.selective_scan import (
    linear_recurrence,
    selective_scan,
    selective_scan_backend,
    selective_scan_blocked,
    selective_scan_reference,
)


def _inputs(b=2, groups=4, d_g=6, n=5, length=13, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = groups * d_g
    u = torch.randn(b, d, length, generator=g, dtype=dtype)
    # time steps both below and above the softplus threshold (20) after the bias
    delta = torch.randn(b, d, length, generator=g, dtype=dtype)
    delta[0, 0, :4] = 25.0
    A = -torch.exp(torch.randn(d, n, generator=g, dtype=dtype) * 0.5)
    B = torch.randn(b, groups, n, length, generator=g, dtype=dtype)
    C = torch.randn(b, groups, n, length, generator=g, dtype=dtype)
    D = torch.randn(d, generator=g, dtype=dtype)
    bias = torch.randn(d, generator=g, dtype=dtype) * 0.5
    return u, delta, A, B, C, D, bias


def _loop64(u, delta, A, B, C, D, bias):
    """The documented recurrence element by element, in float64 (independent of the tensor formulation)."""
    u, delta, A, B, C, D, bias = (t.double() for t in (u, delta, A, B, C, D, bias))
    b, d, length = u.shape
    groups, n = B.shape[1], A.shape[1]
    y = torch.zeros(b, d, length, dtype=torch.float64)
    for bi in range(b):
        for c in range(d):
            k = c // (d // groups)
            h = [0.0] * n
            for l in range(length):
                x = float(delta[bi, c, l] + bias[c])
                dt = x if x > 20 else math.log1p(math.exp(x))
                acc = 0.0
                for j in range(n):
                    h[j] = math.exp(dt * float(A[c, j])) * h[j] + dt * float(B[bi, k, j, l]) * float(u[bi, c, l])
                    acc += float(C[bi, k, j, l]) * h[j]
                y[bi, c, l] = acc + float(D[c]) * float(u[bi, c, l])
    return y


def test_reference_equals_float64_loop():
    args = _inputs()
    y = selective_scan_reference(*args)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.double(), _loop64(*args), rtol=1e-6, atol=1e-6)


def test_reference_gradcheck():
    args = _inputs(b=1, groups=2, d_g=2, n=3, length=6, dtype=torch.float64)
    args = tuple(t.requires_grad_() for t in args)
    assert torch.autograd.gradcheck(selective_scan_reference, args)
    assert torch.autograd.gradcheck(selective_scan_blocked, args)


@pytest.mark.parametrize("length,block", [(13, None), (144, None), (7, 3), (1, None)])
def test_blocked_equals_reference(length, block):
    args = _inputs(length=length)
    ref = selective_scan_reference(*args)
    out = selective_scan_blocked(*args, block=block)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


def test_blocked_gradients_equal_reference():
    args = [t.requires_grad_() for t in _inputs(length=11)]
    w = torch.randn(selective_scan_reference(*args).shape, generator=torch.Generator().manual_seed(3))
    grads_ref = torch.autograd.grad((selective_scan_reference(*args) * w).sum(), args)
    grads = torch.autograd.grad((selective_scan_blocked(*args, block=4) * w).sum(), args)
    for gr, g in zip(grads_ref, grads):
        torch.testing.assert_close(g, gr, rtol=1e-4, atol=1e-4)


def test_linear_recurrence_gradcheck():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(10, 3, generator=g, dtype=torch.float64).requires_grad_()
    b = torch.randn(10, 3, generator=g, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: linear_recurrence(a, b, 3), (a, b))


def test_dispatch_by_device():
    assert selective_scan_backend("cpu", requires_grad=True) == "blocked"
    assert selective_scan_backend("cuda") == "blocked"
    assert selective_scan_backend("meta") == "reference"
    args = _inputs(length=5)
    torch.testing.assert_close(selective_scan(*args), selective_scan_reference(*args), rtol=0, atol=1e-5)
    torch.testing.assert_close(selective_scan(*args, backend="reference"), selective_scan_reference(*args))
    with pytest.raises(ValueError, match="backend"):
        selective_scan(*args, backend="cuda_kernel")


@pytest.fixture(scope="module")
def scan_kernel():
    """The compiled CPU kernel (JIT-compiled once into build/cpu_ext, then reused)."""
    from focus.layers.selective_scan import load_cpu_extension
    from focus.layers.selective_scan.extension import unload_cpu_extension

    ext = load_cpu_extension()
    yield ext
    unload_cpu_extension()


@pytest.mark.parametrize("length", [1, 13, 144])
def test_cpu_kernel_equals_reference(scan_kernel, length):
    from focus.layers.selective_scan import selective_scan_cpu_kernel

    args = _inputs(length=length)
    torch.testing.assert_close(selective_scan_cpu_kernel(*args), selective_scan_reference(*args), rtol=0, atol=1e-5)
    args64 = _inputs(length=7, dtype=torch.float64)
    torch.testing.assert_close(selective_scan_cpu_kernel(*args64), _loop64(*args64), rtol=1e-12, atol=1e-12)
    u, delta, A, B, C, _, _ = args
    torch.testing.assert_close(selective_scan_cpu_kernel(u, delta, A, B, C),
                               selective_scan_reference(u, delta, A, B, C), rtol=0, atol=1e-5)


def test_cpu_kernel_dispatch(scan_kernel):
    assert selective_scan_backend("cpu") == "cpu_kernel"
    assert selective_scan_backend("cpu", requires_grad=True) == "blocked"
    args = [t.requires_grad_() for t in _inputs(length=5)]
    y = selective_scan(*args)  # needs a gradient: the blocked scan
    assert y.requires_grad
    with pytest.raises(ValueError, match="no backward"):
        selective_scan(*args, backend="cpu_kernel")
    with torch.no_grad():
        torch.testing.assert_close(selective_scan(*args), selective_scan_reference(*args), rtol=0, atol=1e-5)
