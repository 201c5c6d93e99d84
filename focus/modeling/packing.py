"""oneDNN weight prepacking of `nn.Linear` layers for CPU inference (`MODEL.FOCUS.INFERENCE_PACK`).

Why: on CPU, `F.linear` multiplies through the BLAS library (MKL in PyTorch's wheels); oneDNN's matmul with the
weight reordered once into its blocked layout runs the FOCUS-L matrix shapes faster (measured figures:
docs/speed_memory.md#packing). The results differ from `F.linear` only by the summation order.

Packing is inference-only and in place: each packed layer keeps its `weight` Parameter object, whose storage is
released while the blocked copy serves the forward (no second copy of the weights in memory); `state_dict()`
returns the dense weight, and `unpack_linears` (called by the FOCUS model before training, loading, casting or
moving) restores it bit for bit, so optimisers and checkpoints never see the packed form. Uses PyTorch's oneDNN
ops (`torch.ops.mkldnn._reorder_linear_weight`, `_linear_pointwise`, the ones inductor's CPU backend emits);
`onednn_linear_available` checks for them explicitly.
"""
import types

import torch
from torch import nn

from ..libc import glibc

__all__ = ["onednn_linear_available", "pack_linears", "unpack_linears", "packed_linear_names"]


def onednn_linear_available(dtype=torch.float32):
    """Whether this PyTorch build can run a packed oneDNN linear in `dtype` (fp32, or bf16 where the CPU has it)."""
    if not torch.backends.mkldnn.is_available():
        return False
    if not (hasattr(torch.ops.mkldnn, "_reorder_linear_weight") and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return False
    if dtype == torch.float32:
        return True
    return dtype == torch.bfloat16 and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _packed_forward(self, x):
    weight = self._packed_weight
    if torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") != weight.dtype:
        # a caller's autocast in another dtype: keep its semantics (rare; the FOCUS model stores the weights in
        # its autocast dtype)
        return nn.functional.linear(x, weight.to_dense(), self.bias)
    # the weight's dtype decides, as autocast would round the input to it (INFERENCE_CAST autocast stores it in bf16)
    x = x.to(weight.dtype).contiguous()
    bias = self.bias if self.bias is None or self.bias.dtype == weight.dtype else self.bias.to(weight.dtype)
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def _dense_weight_hook(module, state_dict, prefix, local_metadata):
    packed = module.__dict__.get("_packed_weight")
    if packed is not None:
        state_dict[prefix + "weight"] = packed.to_dense()


def _unpack_before_load(module, *args, **kwargs):
    _unpack(module)


def _unpack(module):
    packed = module.__dict__.pop("_packed_weight", None)
    if packed is None:
        return False
    module.weight.data = packed.to_dense()
    module.__dict__.pop("forward", None)
    for handle in module.__dict__.pop("_packing_hooks", ()):
        handle.remove()
    return True


def _release_freed_heap():
    # the dense weight just freed leaves a hole in glibc's heap that the next (64-byte aligned) packed weight of the
    # same size does not fit: return its pages to the system, or packing would grow the RSS by a large part of the
    # weights' size (docs/speed_memory.md#packing)
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)


def pack_linears(module):
    """Pack every plain `nn.Linear` of `module` whose weight is on the CPU in a dtype oneDNN supports (not yet
    packed; `nn.MultiheadAttention`'s out-projection is skipped: attention reads its weight directly). Returns the
    number of layers packed by this call."""
    count = 0
    for m in module.modules():
        if type(m) is not nn.Linear or "_packed_weight" in m.__dict__:
            continue
        weight = m.weight
        if weight.device.type != "cpu" or weight.numel() == 0 or not onednn_linear_available(weight.dtype):
            continue
        m._packed_weight = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None)
        weight.data = weight.data.new_empty(0)
        _release_freed_heap()
        m.forward = types.MethodType(_packed_forward, m)
        m._packing_hooks = (
            m.register_state_dict_post_hook(_dense_weight_hook),
            m.register_load_state_dict_pre_hook(_unpack_before_load),
        )
        count += 1
    return count


def unpack_linears(module):
    """Restore the dense weights of every packed layer of `module` (exact values). Returns how many."""
    return sum(_unpack(m) for m in module.modules())


def packed_linear_names(module):
    """Names of the packed layers of `module` (diagnostics, tests)."""
    return [n for n, m in module.named_modules() if "_packed_weight" in m.__dict__]
