"""Selective scan (Mamba's S6 recurrence): a PyTorch reference, a blocked scan (PyTorch, with backward) and a
compiled CPU kernel (forward), chosen by device."""
from .extension import load_cpu_extension
from .functions import (
    BACKENDS,
    linear_recurrence,
    selective_scan,
    selective_scan_backend,
    selective_scan_blocked,
    selective_scan_cpu_kernel,
    selective_scan_reference,
)

__all__ = [
    "BACKENDS",
    "linear_recurrence",
    "load_cpu_extension",
    "selective_scan_cpu_kernel",
    "selective_scan",
    "selective_scan_backend",
    "selective_scan_blocked",
    "selective_scan_reference",
]
