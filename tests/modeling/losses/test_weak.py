"""Weak-supervision losses against hand computations."""
import math

import torch
from torch.nn import functional as F

from focus.modeling.losses import cosine_ramp, partial_bce, structure_loss, uncertainty_loss
from focus.modeling.ws_sam.ws_sam import binary_entropy, pseudo_pixel_weights


def test_partial_bce_counts_labelled_pixels_of_the_batch():
    pred = torch.tensor([[[[0.0, 2.0], [-1.0, 5.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])
    sparse = torch.tensor([[[[1, -1], [0, -1]]], [[[-1, -1], [-1, 1]]]])
    expected = (math.log(2) + math.log(1 + math.e**-1) + math.log(1 + math.e**-1)) / 3
    torch.testing.assert_close(partial_bce(pred, sparse), torch.tensor(expected))
    assert partial_bce(pred, torch.full_like(sparse, -1)) == 0


def test_structure_loss_bce_is_the_plain_mean_as_released():
    torch.manual_seed(0)
    pred, target = torch.randn(2, 1, 40, 40), (torch.rand(2, 1, 40, 40) > 0.5).float()
    bce = F.binary_cross_entropy_with_logits(pred, target)
    weit = 1 + 5 * (F.avg_pool2d(target, 31, 1, 15) - target).abs()
    p = pred.sigmoid()
    inter, union = (p * target * weit).sum((2, 3)), ((p + target) * weit).sum((2, 3))
    wiou = 1 - (inter + 1) / (union - inter + 1)
    torch.testing.assert_close(structure_loss(pred, target, False, iou_eps=0), (bce + wiou).mean())
    wbce = (weit * F.binary_cross_entropy_with_logits(pred, target, reduction="none")).sum((2, 3)) / weit.sum((2, 3))
    torch.testing.assert_close(structure_loss(pred, target, True, iou_eps=0), (wbce + wiou).mean())
    # pixel weights: 0 on half of the image removes it from both terms
    w = torch.ones_like(target)
    w[..., 20:] = 0
    ww = weit * w
    wbce_w = (ww * F.binary_cross_entropy_with_logits(pred, target, reduction="none")).sum((2, 3)) / ww.sum((2, 3))
    inter_w, union_w = (p * target * ww).sum((2, 3)), ((p + target) * ww).sum((2, 3))
    wiou_w = 1 - (inter_w + 1) / (union_w - inter_w + 1)
    torch.testing.assert_close(structure_loss(pred, target, True, w, iou_eps=0), (wbce_w + wiou_w).mean())
    bce_w = (w * F.binary_cross_entropy_with_logits(pred, target, reduction="none")).mean()
    torch.testing.assert_close(structure_loss(pred, target, False, w, iou_eps=0), (bce_w + wiou_w).mean())


def test_uncertainty_and_ramp():
    pred = torch.tensor([0.0, 100.0])
    torch.testing.assert_close(uncertainty_loss(pred), torch.tensor(0.5))
    assert cosine_ramp(0) == 0 and cosine_ramp(1) == 1 and abs(cosine_ramp(0.5) - 0.5) < 1e-12


def test_pixel_weights():
    y = torch.tensor([0.0, 0.25, 0.5, 0.7, 1.0])
    h = binary_entropy(y)
    torch.testing.assert_close(h, torch.tensor([0.0, 0.8112781, 1.0, 0.8812909, 0.0]), atol=1e-6, rtol=0)
    torch.testing.assert_close(pseudo_pixel_weights(y, "entropy"), 1 - h)
    assert pseudo_pixel_weights(y, "hard").tolist() == [1, 1, 0, 1, 1]  # 0 only strictly inside (0.3, 0.7)
    assert pseudo_pixel_weights(y, "none") is None
