"""Losses shared by several members."""
from .structure import dice_loss, structure_loss, uncertainty_loss
from .weak import cosine_ramp, partial_bce

__all__ = ["dice_loss", "structure_loss", "uncertainty_loss", "cosine_ramp", "partial_bce"]
