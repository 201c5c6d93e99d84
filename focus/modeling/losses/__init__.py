"""Losses shared by several members."""
from .structure import dice_loss, structure_loss, uncertainty_loss

__all__ = ["dice_loss", "structure_loss", "uncertainty_loss"]
