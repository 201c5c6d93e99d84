"""Losses shared by several members."""
from .weak import cosine_ramp, partial_bce, structure_loss, uncertainty_loss

__all__ = ["cosine_ramp", "partial_bce", "structure_loss", "uncertainty_loss"]
