"""Selective scan (the S6 recurrence of Mamba) as a function: the PyTorch reference, a blocked scan with a
hand-written backward, the compiled CPU kernel (forward), and the dispatcher `selective_scan` that picks one of
them by device.

Semantics (those of mamba-ssm's `selective_scan_fn` without `z`, as RUN's SS2D calls it; docs/run.md#scan):
for every batch item b and channel c, with its group g = c // (D / G), computed in float32 whatever the input
dtype (float64 inputs stay float64, for gradcheck),

    Delta_l = softplus(delta[b, c, l] + delta_bias[c])            (beta 1, threshold 20)
    h_l     = exp(Delta_l * A[c]) * h_{l-1} + Delta_l * B[b, g, :, l] * u[b, c, l],   h_{-1} = 0   (N,)
    y[b, c, l] = <C[b, g, :, l], h_l> + D[c] * u[b, c, l]
"""
import torch
import torch.nn.functional as F

from . import extension

__all__ = [
    "selective_scan",
    "selective_scan_reference",
    "selective_scan_blocked",
    "selective_scan_cpu_kernel",
    "selective_scan_backend",
    "linear_recurrence",
    "BACKENDS",
]

BACKENDS = ("reference", "blocked", "cpu_kernel")


def _work_dtype(u):
    """float32 (the CUDA kernel's compute type), float64 for float64 inputs (gradcheck)."""
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def _prepare(u, delta, A, B, C, D, delta_bias):
    """float32 inputs, Delta after softplus, and B/C expanded from groups to channels: (b, d, n, l)."""
    dtype_in, work = u.dtype, _work_dtype(u)
    u, delta, A, B, C = (t.to(work) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(work)[None, :, None]
    delta = F.softplus(delta, beta=1, threshold=20)
    d_ch, groups = u.shape[1], B.shape[1]
    if d_ch % groups:
        raise ValueError(f"selective_scan: channels {d_ch} not divisible by the {groups} groups of B/C")
    B = B.repeat_interleave(d_ch // groups, dim=1)
    C = C.repeat_interleave(d_ch // groups, dim=1)
    return dtype_in, u, delta, A, B, C


def _finish(y, u, D, dtype_in):
    if D is not None:
        y = y + u * D.to(u.dtype)[None, :, None]
    return y.to(dtype_in)


def selective_scan_reference(u, delta, A, B, C, D=None, delta_bias=None):
    """Reference selective scan: a sequential loop over L, float32, plain autograd.

    Args:
        u: (b, d, l) input sequence of d = G * D_g channels.
        delta: (b, d, l) time steps before softplus.
        A: (d, n) real state matrix (diagonal per channel; negative for a stable scan).
        B, C: (b, G, n, l) input/output projections shared by the d / G channels of each group.
        D: (d,) skip weights or None. delta_bias: (d,) or None.

    Returns:
        (b, d, l) in u's dtype.
    """
    dtype_in, u, delta, A, B, C = _prepare(u, delta, A, B, C, D, delta_bias)
    delta_a = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    delta_b_u = torch.einsum("bdl,bdnl,bdl->bdln", delta, B, u)
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for i in range(u.shape[2]):
        h = delta_a[:, :, i] * h + delta_b_u[:, :, i]
        ys.append(torch.einsum("bdn,bdn->bd", h, C[:, :, :, i]))
    return _finish(torch.stack(ys, dim=2), u, D, dtype_in)


def _blocked_scan(a, b, block):
    """h_l = a_l * h_{l-1} + b_l (h_{-1} = 0) along dim 0 of (L, M) tensors, in about 2 * sqrt(L) vector steps.

    The sequence is cut into K blocks of `block` steps: (1) every block is scanned from a zero state, all blocks
    at once; (2) the carries into each block are propagated block by block with the cumulative products of a
    (products of factors in [0, 1] for a stable scan: no division, no overflow); (3) each position adds its
    block's carry times its cumulative product. Padding with a = 1, b = 0 keeps the values of the real steps.
    """
    length, m = a.shape
    k = -(-length // block)
    pad = k * block - length
    if pad:
        a = torch.cat([a, a.new_ones(pad, m)])
        b = torch.cat([b, b.new_zeros(pad, m)])
    a = a.view(k, block, m)
    b = b.view(k, block, m)
    h = torch.empty_like(b)
    h[:, 0] = b[:, 0]
    for t in range(1, block):
        torch.addcmul(b[:, t], a[:, t], h[:, t - 1], out=h[:, t])
    p = torch.cumprod(a, dim=1)  # decay from each block's start
    carry = h.new_zeros(k, m)  # state entering block j
    for j in range(1, k):
        torch.addcmul(h[j - 1, -1], p[j - 1, -1], carry[j - 1], out=carry[j])
    h.addcmul_(p, carry[:, None])
    return h.view(k * block, m)[:length]


class _LinearRecurrence(torch.autograd.Function):
    """h = linear_recurrence(a, b) along dim 0, with the adjoint recurrence (run backwards) as its backward."""

    @staticmethod
    def forward(ctx, a, b, block):
        h = _blocked_scan(a, b, block)
        ctx.save_for_backward(a, h)
        ctx.block = block
        return h

    @staticmethod
    def backward(ctx, grad_h):
        a, h = ctx.saved_tensors
        # g_l = grad_h_l + a_{l+1} g_{l+1}: the same recurrence on the reversed sequence with a shifted by one
        a_next = torch.cat([a[1:], a.new_zeros(1, a.shape[1])])
        g = _blocked_scan(a_next.flip(0), grad_h.contiguous().flip(0), ctx.block).flip(0)
        h_prev = torch.cat([h.new_zeros(1, h.shape[1]), h[:-1]])
        return g * h_prev, g, None


def linear_recurrence(a, b, block=None):
    """h_l = a_l * h_{l-1} + b_l along dim 0 of (L, M) float tensors (h_{-1} = 0), differentiable.
    `block`: steps per block (default ceil(sqrt(L)))."""
    block = block or max(1, int(round(a.shape[0] ** 0.5)))
    return _LinearRecurrence.apply(a.contiguous(), b.contiguous(), block)


def selective_scan_blocked(u, delta, A, B, C, D=None, delta_bias=None, block=None):
    """Same function as `selective_scan_reference` (same arguments), computed with `linear_recurrence` on an
    (L, b*d*n) layout: about 2 * sqrt(L) vector steps instead of L, forward and backward. B and C stay grouped
    (broadcast over the channels of a group, never expanded)."""
    dtype_in, work = u.dtype, _work_dtype(u)
    u, delta, A, B, C = (t.to(work) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.to(work)[None, :, None]
    delta = F.softplus(delta, beta=1, threshold=20)
    bsz, d_ch, length = u.shape
    groups, n = B.shape[1], A.shape[1]
    if d_ch % groups:
        raise ValueError(f"selective_scan: channels {d_ch} not divisible by the {groups} groups of B/C")
    shape = (length, bsz, groups, d_ch // groups)
    delta_l = delta.permute(2, 0, 1).contiguous().view(shape)  # (l, b, G, d/G)
    du_l = (delta * u).permute(2, 0, 1).contiguous().view(shape)
    b_l = B.permute(3, 0, 1, 2).contiguous()[:, :, :, None]  # (l, b, G, 1, n)
    c_l = C.permute(3, 0, 1, 2).contiguous()[:, :, :, :, None]  # (l, b, G, n, 1)
    delta_a = torch.exp(delta_l[..., None] * A.view(groups, d_ch // groups, n))  # (l, b, G, d/G, n)
    delta_b_u = du_l[..., None] * b_l
    h = linear_recurrence(delta_a.view(length, -1), delta_b_u.view(length, -1), block)
    y = torch.matmul(h.view(*shape, n), c_l).view(length, bsz, d_ch)
    return _finish(y.permute(1, 2, 0), u, D, dtype_in)


def selective_scan_cpu_kernel(u, delta, A, B, C, D=None, delta_bias=None):
    """Same function as `selective_scan_reference` by the compiled CPU kernel (`extension.load_cpu_extension()`),
    forward only: one fused pass per (batch, channel) with the states in a vectorised inner loop."""
    ext = extension.cpu_extension()
    if ext is None:
        raise RuntimeError("the selective-scan CPU kernel is not loaded: call "
                           "focus.layers.selective_scan.load_cpu_extension() or set FOCUS_CPU_EXT=1")
    work = _work_dtype(u)
    empty = u.new_empty(0, dtype=work)
    y = ext.selective_scan_fwd(u.to(work), delta.to(work), A.to(work), B.to(work), C.to(work),
                               empty if D is None else D.to(work), empty if delta_bias is None else delta_bias.to(work))
    return y.to(u.dtype)


def selective_scan_backend(device, requires_grad=False):
    """Name of the implementation `selective_scan` uses for tensors on `device`: on CPU the compiled kernel when it
    is loaded and no gradient is needed, else "blocked" (CPU and CUDA; measured faster than the reference,
    docs/run.md#scan); "reference" on any other device type."""
    device_type = torch.device(device).type
    if device_type == "cpu" and not requires_grad and extension.cpu_extension() is not None:
        return "cpu_kernel"
    return "blocked" if device_type in ("cpu", "cuda") else "reference"


def selective_scan(u, delta, A, B, C, D=None, delta_bias=None, backend=None):
    """Selective scan dispatched by device (`selective_scan_backend`) or by an explicit `backend` name
    ("reference", "blocked" or "cpu_kernel"). Same arguments and result as `selective_scan_reference`."""
    inputs = [t for t in (u, delta, A, B, C, D, delta_bias) if t is not None]
    requires_grad = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
    backend = backend or selective_scan_backend(u.device, requires_grad)
    if backend == "blocked":
        return selective_scan_blocked(u, delta, A, B, C, D, delta_bias)
    if backend == "reference":
        return selective_scan_reference(u, delta, A, B, C, D, delta_bias)
    if backend == "cpu_kernel":
        if requires_grad:
            raise ValueError("selective_scan backend 'cpu_kernel' has no backward: use 'blocked' or 'reference' "
                             "when a gradient is needed")
        return selective_scan_cpu_kernel(u, delta, A, B, C, D, delta_bias)
    raise ValueError(f"selective_scan backend must be one of {BACKENDS}, got {backend!r}")
