"""Reduced-precision storage of the parameters that `torch.autocast` consumes in reduced precision.

Under `torch.autocast(dtype)` the weights and biases of linear layers, convolutions and attention in-projections
are rounded to `dtype` on every use, while norms, embeddings, layer scales and the residual stream stay fp32.
Storing exactly those parameters in `dtype` therefore gives bit-identical results under autocast, halves their
memory and removes the per-call casts. Used for reduced-precision inference (`MODEL.FOCUS.INFERENCE_CAST:
autocast`) and for the frozen CLIP tower in mixed-precision training.
"""
from torch import nn

__all__ = ["autocast_parameter_names", "store_parameters_in"]


def autocast_parameter_names(module, extra=()):
    """Names (relative to `module`) of the parameters that autocast rounds to its dtype on every use: weights and
    biases of `nn.Linear` and every convolution (`_ConvNd`, transposed ones included), the in-projection of
    `nn.MultiheadAttention`, plus the names in `extra` (raw parameters a module multiplies itself, e.g. CLIP's
    `visual.proj`) that exist. Returns a set of str."""
    params = dict(module.named_parameters())
    names = {n for n in extra if n in params}
    for mname, m in module.named_modules():
        prefix = f"{mname}." if mname else ""
        if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)):
            names.update(prefix + n for n, _ in m.named_parameters(recurse=False))
        elif isinstance(m, nn.MultiheadAttention):
            names.update(prefix + n for n in ("in_proj_weight", "in_proj_bias") if getattr(m, n) is not None)
    return names


def store_parameters_in(module, names, dtype, others=None):
    """Store the parameters of `module` named in `names` in `dtype` (in place, `.data` swapped so optimisers and
    hooks keep their references); with `others` set, every other floating parameter and buffer is stored in
    `others` (e.g. fp32, for a model built directly in bf16). Returns `module`."""
    for name, p in module.named_parameters():
        target = dtype if name in names else others
        if target is not None and p.is_floating_point() and p.dtype != target:
            p.data = p.data.to(target)
    if others is not None:
        for mod in module.modules():
            for bname, b in list(mod._buffers.items()):
                if b is not None and b.is_floating_point() and b.dtype != others:
                    mod._buffers[bname] = b.to(others)
    return module
