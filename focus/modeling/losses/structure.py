"""The "structure loss" of F3Net/PraNet/SINet-V2 lineage (weighted BCE + weighted IoU), dice and the
uncertainty-aware loss (UAL), as used by camouflaged-object members."""
import torch
import torch.nn.functional as F

__all__ = ["structure_loss", "dice_loss", "uncertainty_loss"]


def structure_loss(pred, mask, weighted_bce=True, pixel_weight=None, iou_eps=1e-6):
    """Weighted BCE + weighted IoU, averaged over the batch.

    Args:
        pred: (B, 1, H, W) logits. mask: (B, 1, H, W) targets in [0, 1].
        weighted_bce: True weighs every pixel's BCE by weit = 1 + 5 |avgpool31(mask) - mask| (the intended
            loss). False reproduces the common defect of calling
            `binary_cross_entropy_with_logits(..., reduce="none")`: the legacy `reduce` argument makes it a plain
            mean over the batch, so the weights cancel (docs/run.md#q6).
        pixel_weight: optional (B, 1, H, W) per-pixel weights in [0, 1] (a pseudo label's confidence,
            docs/ws_sam.md#r4): they multiply `weit` in the weighted BCE and the IoU sums; with
            `weighted_bce=False` they multiply the BCE before its mean over all pixels (the WS-SAM code's
            "weighted" variant).
        iou_eps: added to the IoU denominator (RUN: 1e-6; F3Net/WS-SAM: 0).

    Returns:
        scalar tensor.
    """
    weit = 1 + 5 * torch.abs(F.avg_pool2d(mask, kernel_size=31, stride=1, padding=15) - mask)
    if pixel_weight is not None:
        weit_w = weit * pixel_weight
    else:
        weit_w = weit
    if weighted_bce:
        wbce = F.binary_cross_entropy_with_logits(pred, mask, reduction="none")
        wbce = (weit_w * wbce).sum(dim=(2, 3)) / weit_w.sum(dim=(2, 3))
    elif pixel_weight is not None:
        wbce = (pixel_weight * F.binary_cross_entropy_with_logits(pred, mask, reduction="none")).mean()
    else:
        wbce = F.binary_cross_entropy_with_logits(pred, mask, reduction="mean")
    prob = torch.sigmoid(pred)
    inter = (prob * mask * weit_w).sum(dim=(2, 3))
    union = ((prob + mask) * weit_w).sum(dim=(2, 3))
    wiou = 1 - (inter + 1) / (union - inter + 1 + iou_eps)
    return (wbce + wiou).mean()


def dice_loss(pred, target):
    """mean over the batch of 1 - (2 sum(p t) + 1) / (sum(p^2) + sum(t^2) + 1); `pred` used as is (no sigmoid)."""
    p, t = pred.flatten(1), target.flatten(1)
    num = 2 * (p * t).sum(1) + 1
    den = p.pow(2).sum(1) + t.pow(2).sum(1) + 1
    return (1 - num / den).mean()


def uncertainty_loss(pred):
    """Uncertainty-aware loss mean(1 - (2 sigmoid(pred) - 1)^2) (pushes probabilities away from 0.5)."""
    return (1 - (2 * torch.sigmoid(pred) - 1).pow(2)).mean()
