"""Losses for training from sparse labels and soft pseudo masks (the WS-SAM recipe, usable by any member).

All take 1-channel logits `pred` (B, 1, H, W) and targets of the same spatial size.
"""
import math

import torch
from torch.nn import functional as F

__all__ = ["structure_loss", "partial_bce", "uncertainty_loss", "cosine_ramp"]


def structure_loss(pred, target, pixel_weight=None, weighted_bce=False, eps=0.0):
    """Structure loss (weighted BCE + weighted IoU) against a soft target, averaged over the batch.

    Edge weights `weit = 1 + 5 |avgpool_31(target) - target|` emphasise pixels near boundaries. As released, the
    BCE term ignores them and is the plain mean BCE over the whole batch (docs/ws_sam.md#q4); `weighted_bce=True`
    gives the intended per-image `sum(weit * w * bce) / sum(weit * w)`.

    Args:
        pred: (B, 1, H, W) logits.
        target: (B, 1, H, W) soft labels in [0, 1].
        pixel_weight: optional (B, 1, H, W) per-pixel weights in [0, 1] (e.g. the pseudo label's confidence);
            they multiply the BCE (mean over all pixels as released) and the IoU sums.
        weighted_bce: see above.
        eps: added to the weighted-BCE denominator (only used with `weighted_bce`).
    Returns:
        scalar tensor.
    """
    weit = 1 + 5 * torch.abs(F.avg_pool2d(target, 31, stride=1, padding=15) - target)
    bce = F.binary_cross_entropy_with_logits(pred, target, reduction="none")
    w = torch.ones_like(target) if pixel_weight is None else pixel_weight
    if weighted_bce:
        ww = weit * w
        wbce = (ww * bce).sum((2, 3)) / (ww.sum((2, 3)) + eps)
    else:
        wbce = (w * bce).mean()
    prob = torch.sigmoid(pred)
    inter = (prob * target * weit * w).sum((2, 3))
    union = ((prob + target) * weit * w).sum((2, 3))
    wiou = 1 - (inter + 1) / (union - inter + 1)
    return (wbce + wiou).mean()


def partial_bce(pred, sparse):
    """BCE on the labelled pixels only: `sparse` (B, 1, H, W) holds 1 (foreground), 0 (background), -1 (none).

    Summed over the labelled pixels of the batch and divided by their number (0 if there is none).
    """
    labelled = (sparse >= 0).to(pred.dtype)
    bce = F.binary_cross_entropy_with_logits(pred, sparse.clamp(min=0).to(pred.dtype), reduction="none")
    return (bce * labelled).sum() / labelled.sum().clamp(min=1)


def uncertainty_loss(pred):
    """Uncertainty-aware loss `mean(1 - |2 sigmoid(pred) - 1|^2)`: pushes probabilities away from 0.5."""
    return (1 - (2 * torch.sigmoid(pred) - 1).abs().pow(2)).mean()


def cosine_ramp(progress):
    """`(1 - cos(pi * progress)) / 2`, rising from 0 to 1 as `progress` goes from 0 to 1 (clamped)."""
    progress = min(max(float(progress), 0.0), 1.0)
    return (1 - math.cos(math.pi * progress)) / 2
