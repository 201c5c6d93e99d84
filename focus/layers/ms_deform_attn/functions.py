"""Multi-scale deformable attention as a function: the pure-PyTorch reference, the autograd wrapper of the
compiled kernels, and the dispatcher `ms_deform_attn` that picks one of them (docs/focus.md#msda-op)."""
import os

import torch
import torch.nn.functional as F
from torch.autograd import Function
from torch.autograd.function import once_differentiable

from . import extension

__all__ = ["ms_deform_attn", "ms_deform_attn_pytorch", "MSDeformAttnFunction", "ms_deform_attn_backend", "grid_centers"]

IM2COL_STEP = 128  # official batch chunk of the CUDA kernel; no numerical effect (docs/focus.md#msda-op)


def ms_deform_attn_pytorch(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    """Reference multi-scale deformable attention, exactly the official fallback `ms_deform_attn_core_pytorch`.

    Args:
        value: (N, S, M, Dh) flattened multi-level values, S = sum_l H_l * W_l.
        spatial_shapes: int64 (L, 2), rows (H_l, W_l).
        level_start_index: int64 (L,), unused here (levels are split by `spatial_shapes`), kept for a uniform
            signature with the kernels.
        sampling_locations: (N, Lq, M, L, P, 2) normalised (x, y); 0 = left/top edge, 1 = right/bottom edge.
        attention_weights: (N, Lq, M, L, P).

    Returns:
        (N, Lq, M * Dh): sum over levels and points of weight * bilinear sample, where a sample is
        `grid_sample(bilinear, zeros padding, align_corners=False)` at grid `2 * loc - 1`.
    """
    del level_start_index
    out_dtype = value.dtype
    if value.dtype in (torch.float16, torch.bfloat16) and value.device.type == "cpu":
        # reduced precision on CPU: sample in fp32, as the kernels accumulate. CPU grid_sample in bf16 returns
        # garbage (inf/NaN) for the strided per-level value views below (torch 2.14), and a bf16 grid would round
        # locations by up to 1/4 pixel on a 64-wide level
        value = value.float()
        sampling_locations, attention_weights = sampling_locations.float(), attention_weights.float()
    n, _, m, dh = value.shape
    _, lq, _, num_levels, num_points, _ = sampling_locations.shape
    shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    value_list = value.split([h * w for h, w in shapes], dim=1)
    # grid_sample needs grid and input of one dtype (mixed only outside autocast, e.g. bf16 value, fp32 locations)
    sampling_grids = 2 * sampling_locations.to(value.dtype) - 1
    sampled = []
    for lid, (h, w) in enumerate(shapes):
        # (N, H*W, M, Dh) -> (N*M, Dh, H, W)
        value_l = value_list[lid].flatten(2).transpose(1, 2).reshape(n * m, dh, h, w)
        # (N, Lq, M, P, 2) -> (N*M, Lq, P, 2)
        grid_l = sampling_grids[:, :, :, lid].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False))
    # (N, Lq, M, L, P) -> (N*M, 1, Lq, L*P)
    weights = attention_weights.transpose(1, 2).reshape(n * m, 1, lq, num_levels * num_points)
    output = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1).view(n, m * dh, lq)
    return output.transpose(1, 2).contiguous().to(out_dtype)


class MSDeformAttnFunction(Function):
    """Autograd wrapper of a compiled kernel (`focus._C` CUDA/CPU or the JIT CPU extension).

    Sampling locations and attention weights must have value's accumulation dtype (value's dtype; fp32 for
    fp16/bf16 values), as prepared by `ms_deform_attn`.
    """

    @staticmethod
    def forward(ctx, backend, value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        ctx.backend = backend
        value, sampling_locations, attention_weights = (
            value.contiguous(), sampling_locations.contiguous(), attention_weights.contiguous()
        )
        spatial_shapes, level_start_index = spatial_shapes.contiguous(), level_start_index.contiguous()
        output = backend.ms_deform_attn_forward(
            value, spatial_shapes, level_start_index, sampling_locations, attention_weights, IM2COL_STEP
        )
        ctx.save_for_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        return output

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights = ctx.saved_tensors
        grad_value, grad_locations, grad_weights = ctx.backend.ms_deform_attn_backward(
            value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
            grad_output.contiguous(), IM2COL_STEP,
        )
        return None, grad_value, None, None, grad_locations, grad_weights


def ms_deform_attn_backend(device):
    """The compiled extension module that `ms_deform_attn` will use for tensors on `device`, or None when
    it will use the PyTorch reference (`FOCUS_DISABLE_EXT=1`, no extension built/loaded for that device,
    or a device type without a kernel)."""
    if os.environ.get("FOCUS_DISABLE_EXT", "0") == "1":
        return None
    device_type = torch.device(device).type
    if device_type == "cuda":
        return extension.cuda_extension(report_missing=True)
    if device_type == "cpu":
        return extension.cpu_extension()
    return None


def ms_deform_attn(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
    """Multi-scale deformable attention (docs/focus.md#msda-op), dispatched by device and availability:
    CUDA tensors + built `focus._C` -> CUDA kernel; CPU tensors + loaded CPU extension -> CPU kernel;
    otherwise (or with `FOCUS_DISABLE_EXT=1`) `ms_deform_attn_pytorch`. Same arguments and result.

    Unlike the official wrapper (bare `except` around the CUDA call, docs/focus.md#q14) kernel errors propagate.
    The kernels take value in fp64/fp32/fp16/bf16 and the sampling locations and attention weights in the
    matching accumulation type (value's dtype, fp32 for fp16/bf16 values), so under autocast (fp16/bf16 value,
    fp32 locations) locations keep fp32 precision (bf16 would round them by up to 1/4 pixel on a 64-wide level);
    the output has value's dtype.
    """
    backend = ms_deform_attn_backend(value.device)
    if backend is None:
        return ms_deform_attn_pytorch(
            value, spatial_shapes, level_start_index, sampling_locations, attention_weights
        )
    acc_dtype = torch.float32 if value.dtype in (torch.float16, torch.bfloat16) else value.dtype
    sampling_locations = sampling_locations.to(acc_dtype)
    attention_weights = attention_weights.to(acc_dtype)
    return MSDeformAttnFunction.apply(
        backend, value, spatial_shapes.to(value.device), level_start_index.to(value.device), sampling_locations,
        attention_weights,
    )


def grid_centers(spatial_shapes, device=None):
    """Normalised `(x, y)` centres of every cell of each `(h, w)` grid, concatenated level by level: `(S, 2)`.

    These are the reference points of the deformable attention (ViT-Adapter injector/extractor and the
    pixel-decoder encoder). Computed as `linspace(0.5, h - 0.5, h) / h`, bit-identical to the official code
    (not `(arange + 0.5) / h`).
    """
    refs = []
    for h, w in spatial_shapes:
        h, w = int(h), int(w)
        ref_y, ref_x = torch.meshgrid(
            torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device),
            torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device),
            indexing="ij",
        )
        refs.append(torch.stack((ref_x.reshape(-1) / w, ref_y.reshape(-1) / h), -1))
    return torch.cat(refs, 0)
