"""Losses for training from sparse labels (the WS-SAM recipe, usable by any member); the pseudo-mask terms are
`structure.structure_loss` (with pixel weights) and `structure.uncertainty_loss`."""
import math

from torch.nn import functional as F

__all__ = ["partial_bce", "cosine_ramp"]


def partial_bce(pred, sparse):
    """BCE on the labelled pixels only: `sparse` (B, 1, H, W) holds 1 (foreground), 0 (background), -1 (none).

    Summed over the labelled pixels of the batch and divided by their number (0 if there is none).
    """
    labelled = (sparse >= 0).to(pred.dtype)
    bce = F.binary_cross_entropy_with_logits(pred, sparse.clamp(min=0).to(pred.dtype), reduction="none")
    return (bce * labelled).sum() / labelled.sum().clamp(min=1)


def cosine_ramp(progress):
    """`(1 - cos(pi * progress)) / 2`, rising from 0 to 1 as `progress` goes from 0 to 1 (clamped)."""
    progress = min(max(float(progress), 0.0), 1.0)
    return (1 - math.cos(math.pi * progress)) / 2
