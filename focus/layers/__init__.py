"""Low-level operators used by the FOCUS models."""
from .ms_deform_attn import MSDeformAttn, grid_centers, load_cpu_extension, ms_deform_attn, ms_deform_attn_pytorch
from .selective_scan import selective_scan, selective_scan_reference

__all__ = ["MSDeformAttn", "grid_centers", "ms_deform_attn", "ms_deform_attn_pytorch", "load_cpu_extension",
           "selective_scan", "selective_scan_reference"]
