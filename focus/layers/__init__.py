"""Low-level operators used by the FOCUS models."""
from .ms_deform_attn import MSDeformAttn, load_cpu_extension, ms_deform_attn, ms_deform_attn_pytorch

__all__ = ["MSDeformAttn", "ms_deform_attn", "ms_deform_attn_pytorch", "load_cpu_extension"]
