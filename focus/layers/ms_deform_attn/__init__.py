"""Multi-scale deformable attention (docs/focus.md#msda): the module, the dispatching function, the PyTorch reference
and the compiled CUDA/CPU kernels (`extension`)."""
from .extension import load_cpu_extension
from .functions import (  # noqa: F401
    MSDeformAttnFunction,
    grid_centers,
    ms_deform_attn,
    ms_deform_attn_backend,
    ms_deform_attn_pytorch,
)
from .modules import MSDeformAttn

__all__ = [
    "MSDeformAttn",
    "MSDeformAttnFunction",
    "ms_deform_attn",
    "ms_deform_attn_backend",
    "ms_deform_attn_pytorch",
    "load_cpu_extension",
]
