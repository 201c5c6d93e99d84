"""Selective scan (Mamba's S6 recurrence) in pure PyTorch: a reference and a blocked scan, chosen by device."""
from .functions import (
    BACKENDS,
    linear_recurrence,
    selective_scan,
    selective_scan_backend,
    selective_scan_blocked,
    selective_scan_reference,
)

__all__ = [
    "BACKENDS",
    "linear_recurrence",
    "selective_scan",
    "selective_scan_backend",
    "selective_scan_blocked",
    "selective_scan_reference",
]
