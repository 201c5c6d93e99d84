"""BiRefNet training losses: pixel losses on every scale and the gradient (out_ref) supervision.

All criteria take probabilities ``(B, 1, H, W)`` and a soft target in [0, 1] and are computed in fp32.
"""
import math

import torch
import torch.nn.functional as F

__all__ = ["iou_loss", "ssim_loss", "laplacian", "pixel_losses", "gradient_loss", "finetune_weights"]


def iou_loss(pred, target, reduction="sum"):
    """``1 - sum(p g) / (sum(g) + sum(p) - sum(p g))`` per sample; official reduction "sum" over the batch
    (docs/birefnet.md#q5), "mean" is the fix."""
    inter = (pred * target).flatten(1).sum(1)
    union = target.flatten(1).sum(1) + pred.flatten(1).sum(1) - inter
    loss = 1.0 - inter / union
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    raise ValueError(f"IOU_REDUCTION must be 'sum' or 'mean', got {reduction!r}")


def _gaussian_window(size=11, sigma=1.5, device=None):
    g = torch.tensor([math.exp(-((x - size // 2) ** 2) / (2 * sigma**2)) for x in range(size)], device=device)
    g = g / g.sum()
    return (g[:, None] @ g[None, :])[None, None]


def ssim_loss(pred, target, window_size=11):
    """``1 - (1 + SSIM) / 2``, SSIM the mean of the map with an 11x11 Gaussian window (sigma 1.5), zero padding,
    C1 = 0.01**2, C2 = 0.03**2, per channel."""
    c = pred.shape[1]
    w = _gaussian_window(window_size, 1.5, pred.device).to(pred.dtype).expand(c, 1, -1, -1)
    pad = window_size // 2
    mu1, mu2 = F.conv2d(pred, w, padding=pad, groups=c), F.conv2d(target, w, padding=pad, groups=c)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1 = F.conv2d(pred * pred, w, padding=pad, groups=c) - mu1_sq
    s2 = F.conv2d(target * target, w, padding=pad, groups=c) - mu2_sq
    s12 = F.conv2d(pred * target, w, padding=pad, groups=c) - mu12
    c1, c2 = 0.01**2, 0.03**2
    ssim = ((2 * mu12 + c1) * (2 * s12 + c2)) / ((mu1_sq + mu2_sq + c1) * (s1 + s2 + c2))
    return 1.0 - (1.0 + ssim.mean()) / 2.0


def laplacian(x, kernel_size=5):
    """Normalised Laplacian ``(B, C, H, W)``: all-ones kernel with centre ``1 - k*k``, divided by the sum of its
    absolute values, reflect padding (kornia's ``laplacian(x, k, normalized=True)``)."""
    k = torch.ones(kernel_size, kernel_size, device=x.device, dtype=x.dtype)
    k[kernel_size // 2, kernel_size // 2] = 1 - kernel_size**2
    k = k / k.abs().sum()
    c = x.shape[1]
    p = kernel_size // 2
    return F.conv2d(F.pad(x, (p, p, p, p), mode="reflect"), k.expand(c, 1, -1, -1), groups=c)


def finetune_weights(weights, iteration, max_iter, last_iters, iters_per_epoch, factors, compound=True):
    """Loss weights ``(bce, iou, ssim, mae, mse)`` at ``iteration``: inside the last ``last_iters`` iterations the
    official code multiplies them by ``factors`` at the start of every epoch (compounding, docs/birefnet.md#q8);
    ``compound=False`` applies the factors once."""
    if last_iters <= 0 or iteration < max_iter - last_iters:
        return tuple(weights)
    n = (iteration - (max_iter - last_iters)) // max(1, iters_per_epoch) + 1 if compound else 1
    return tuple(w * f**n for w, f in zip(weights, factors))


def pixel_losses(sides, gt, weights, iou_reduction="sum"):
    """Sum over the scales (equal weight) of the weighted criteria on ``sigmoid(up(logits))``.

    sides: logits ``[m4, m3, m2, p1]``; gt ``(B, 1, H, W)`` in [0, 1]; weights (bce, iou, ssim, mae, mse).
    Returns a dict of the per-criterion totals (only the enabled ones)."""
    bce_w, iou_w, ssim_w, mae_w, mse_w = weights
    gt = gt.float().clamp(0, 1)
    out = {}
    for logits in sides:
        if logits.shape[-2:] != gt.shape[-2:]:
            logits = F.interpolate(logits, size=gt.shape[-2:], mode="bilinear", align_corners=True)
        p = logits.float().sigmoid()
        terms = {
            "loss_bce": (bce_w, lambda: F.binary_cross_entropy(p, gt)),
            "loss_iou": (iou_w, lambda: iou_loss(p, gt, iou_reduction)),
            "loss_ssim": (ssim_w, lambda: ssim_loss(p, gt)),
            "loss_mae": (mae_w, lambda: F.l1_loss(p, gt)),
            "loss_mse": (mse_w, lambda: F.mse_loss(p, gt)),
        }
        for name, (w, fn) in terms.items():
            if w:
                out[name] = out.get(name, 0.0) + w * fn()
    return out


def gradient_loss(preds, labels, detach_label=False):
    """``sum_k BCE(sigmoid(up(pred_k)), sigmoid(label_k))`` (docs/birefnet.md#q7)."""
    total = 0.0
    for pred, label in zip(preds, labels):
        label = label.float()
        if detach_label:
            label = label.detach()
        pred = F.interpolate(pred.float(), size=label.shape[-2:], mode="bilinear", align_corners=True).sigmoid()
        total = total + F.binary_cross_entropy(pred, label.sigmoid())
    return total
