"""SetCriterion and its loss terms vs hand computation / direct re-statements of docs/focus.md#clip-loss,
docs/focus.md#losses."""

import math

import numpy as np
import pytest
import torch

import focus.modeling.criterion as criterion_mod
from focus.modeling.box_ops import box_cxcywh_to_xyxy, generalized_box_iou
from focus.modeling.criterion import (
    CLIP_TEMPERATURE,
    SetCriterion,
    clip_contrastive_loss,
    dice_loss,
    sigmoid_ce_loss,
)
from focus.modeling.matcher import HungarianMatcher


class FixedMatcher:
    """Returns the given indices (query i ↔ target perm[i]) for every output."""

    def __init__(self, perms):
        self.perms = perms

    def __call__(self, outputs, targets):
        return [(torch.arange(len(p)), torch.as_tensor(p)) for p in self.perms]


def make_criterion(matcher, losses=("masks", "labels", "clip", "boxes"), fix=False, num_points=16):
    return SetCriterion(
        num_classes=2,
        matcher=matcher,
        weight_dict={},
        eos_coef=0.1,
        losses=list(losses),
        num_points=num_points,
        oversample_ratio=3.0,
        importance_sample_ratio=0.75,
        fix_clip_target=fix,
    )


def numpy_clip_loss(img, txt, fix):
    """docs/focus.md#clip-loss stated directly, per image, in float64 numpy."""
    tau = 0.07
    out = []
    for I, T in zip(img.astype(np.float64), txt.astype(np.float64)):
        logits = T @ I.T / tau
        sim = (I @ I.T + T @ T.T) / 2
        z = sim / tau if fix else sim * tau
        tgt = np.exp(z - z.max(-1, keepdims=True))
        tgt /= tgt.sum(-1, keepdims=True)

        def log_softmax(a):
            a = a - a.max(-1, keepdims=True)
            return a - np.log(np.exp(a).sum(-1, keepdims=True))

        loss_t = -(tgt * log_softmax(logits)).sum(-1)
        loss_i = -(tgt.T * log_softmax(logits.T)).sum(-1)
        out.append(((loss_i + loss_t) / 2).mean())
    return float(np.mean(out))


@pytest.mark.parametrize("fix", [False, True])
def test_loss_clip_matches_numpy_statement(fix):
    g = torch.Generator().manual_seed(0)
    img = torch.randn(3, 2, 8, generator=g)
    txt = torch.randn(3, 2, 8, generator=g)
    got = clip_contrastive_loss(img, txt, fix_target=fix).item()
    assert got == pytest.approx(numpy_clip_loss(img.numpy(), txt.numpy(), fix), rel=1e-5)
    crit = make_criterion(FixedMatcher([[0, 1]] * 3), losses=["clip"], fix=fix)
    out = crit.loss_clip({"pred_queries": {"image_features": img, "text_features": txt}}, None, None, 1)
    assert out["loss_clip"].item() == pytest.approx(got, rel=1e-6)


def test_loss_clip_official_target_differs_from_fix():
    a = 0.3
    img = a * torch.eye(2)[None]
    txt = a * torch.eye(2)[None]
    # hand computation: logits = diag(a²/τ); sim = diag(a²); official targets = softmax([a²·τ, 0]) per row,
    # fixed = softmax([a²/τ, 0]); both directions are equal by symmetry
    tau = 0.07
    lsm_diag = -math.log(1 + math.exp(-a * a / tau))  # log_softmax([a²/τ, 0])[0]
    lsm_off = -a * a / tau + lsm_diag
    for fix, z in ((False, a * a * tau), (True, a * a / tau)):
        p = 1 / (1 + math.exp(-z))
        expected = -(p * lsm_diag + (1 - p) * lsm_off)
        assert clip_contrastive_loss(img, txt, fix_target=fix).item() == pytest.approx(expected, rel=1e-5)


def test_dice_and_bce_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # sigmoid → [0.5, 0.75]
    target = torch.tensor([[1.0, 0.0]])
    # dice: 1 − (2·0.5 + 1) / (1.25 + 1 + 1)
    assert dice_loss(logits, target, 1).item() == pytest.approx(1 - 2 / 3.25, rel=1e-6)
    # BCE: mean(−log 0.5, −log 0.25)
    assert sigmoid_ce_loss(logits, target, 1).item() == pytest.approx((math.log(2) + math.log(4)) / 2, rel=1e-6)
    assert dice_loss(logits.repeat(2, 1), target.repeat(2, 1), 4).item() == pytest.approx((1 - 2 / 3.25) / 2, rel=1e-6)


def test_loss_ce_weighted_mean_by_hand():
    logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    crit = make_criterion(FixedMatcher([[1]]), losses=["labels"])
    # query 0 matched to target 1 (label 0) → class 0; query 1 unmatched → class 2 (no-object, weight 0.1)
    targets = [{"labels": torch.tensor([1, 0])}]
    indices = [(torch.tensor([0]), torch.tensor([1]))]
    out = crit.loss_labels({"pred_logits": logits}, targets, indices, 1)["loss_ce"].item()
    ce0 = -(2 - math.log(math.exp(2) + 2))
    ce1 = -(0 - math.log(math.e + 2))
    assert out == pytest.approx((1.0 * ce0 + 0.1 * ce1) / 1.1, rel=1e-6)
    assert crit.empty_weight.tolist() == pytest.approx([1.0, 1.0, 0.1])
    assert "empty_weight" in crit.state_dict()


def test_boxes_l1_giou_by_hand():
    # predicted (after sigmoid) xyxy [0,0,0.5,0.5]; target xyxy [0.25,0.25,0.75,0.75]
    pred_cxcywh = torch.tensor([0.25, 0.25, 0.5, 0.5])
    raw = torch.log(pred_cxcywh / (1 - pred_cxcywh))  # inverse sigmoid
    tgt = torch.tensor([[0.5, 0.5, 0.5, 0.5]])
    crit = make_criterion(FixedMatcher([[0]]), losses=["boxes"])
    out = crit.loss_boxes(
        {"pred_boxes": raw.view(1, 1, 4)},
        [{"boxes": tgt, "labels": torch.tensor([0])}],
        [(torch.tensor([0]), torch.tensor([0]))],
        2,
    )
    assert out["loss_bbox"].item() == pytest.approx((0.25 + 0.25 + 0 + 0) / 2, rel=1e-5)
    inter, union, hull = 0.0625, 0.25 + 0.25 - 0.0625, 0.5625
    giou = inter / (union + 1e-6) - (hull - union) / (hull + 1e-6)
    assert out["loss_giou"].item() == pytest.approx((1 - giou) / 2, rel=1e-5)


def test_generalized_box_iou_eps_and_degenerate():
    zero = torch.zeros(1, 4)
    assert generalized_box_iou(zero, zero).item() == 0.0  # 0/(0+eps) − 0/(0+eps), no NaN
    with pytest.raises(ValueError, match="boxes1"):
        generalized_box_iou(torch.tensor([[1.0, 0.0, 0.0, 1.0]]), zero)
    b = torch.tensor([[0.5, 0.5, 1.0, 1.0]])
    assert box_cxcywh_to_xyxy(b).tolist() == [[0.0, 0.0, 1.0, 1.0]]


def test_loss_masks_on_fixed_points(monkeypatch):
    # points at the four pixel centres of a 2x2 map: bilinear sampling returns pixel values exactly
    centres = torch.tensor([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]])
    monkeypatch.setattr(
        criterion_mod,
        "get_uncertain_point_coords_with_randomness",
        lambda logits, *a: centres.expand(logits.shape[0], -1, -1),
    )
    pred = torch.tensor([[[[1.0, -1.0], [2.0, 0.0]], [[0.0, 3.0], [-2.0, 1.0]]]])  # (1, 2, 2, 2)
    tmask = torch.tensor([[[1, 0], [1, 0]], [[0, 1], [0, 1]]], dtype=torch.bool)
    crit = make_criterion(FixedMatcher([[1, 0]]), losses=["masks"], num_points=4)
    targets = [{"labels": torch.tensor([0, 1]), "masks": tmask}]
    # query 0 ↔ target 1, query 1 ↔ target 0
    indices = [(torch.tensor([0, 1]), torch.tensor([1, 0]))]
    out = crit.loss_masks({"pred_masks": pred}, targets, indices, 2)
    x = pred[0].flatten(1).double()
    t = tmask[[1, 0]].flatten(1).double()
    s = torch.sigmoid(x)
    bce = -(t * torch.log(s) + (1 - t) * torch.log(1 - s)).mean(1).sum() / 2
    dice = (1 - (2 * (s * t).sum(1) + 1) / (s.sum(1) + t.sum(1) + 1)).sum() / 2
    assert out["loss_mask"].item() == pytest.approx(bce.item(), rel=1e-5)
    assert out["loss_dice"].item() == pytest.approx(dice.item(), rel=1e-5)


def _outputs(b=2, q=2, h=8, with_clip=True, n_aux=2, seed=0):
    g = torch.Generator().manual_seed(seed)

    def one():
        o = {
            "pred_logits": torch.randn(b, q, 3, generator=g, requires_grad=True),
            "pred_masks": torch.randn(b, q, h, h, generator=g, requires_grad=True),
            "pred_boxes": torch.randn(b, q, 4, generator=g, requires_grad=True),
            "pred_queries": {},
        }
        if with_clip:
            o["pred_queries"] = {
                "image_features": torch.randn(b, q, 16, generator=g, requires_grad=True),
                "text_features": torch.randn(b, q, 16, generator=g, requires_grad=True),
            }
        return o

    out = one()
    out["aux_outputs"] = [one() for _ in range(n_aux)]
    return out


def _targets(b=2, size=16):
    targets = []
    for i in range(b):
        fg = torch.zeros(size, size, dtype=torch.bool)
        fg[2 + i : 9, 3 : 12 - i] = True
        masks = torch.stack([fg, ~fg])
        boxes = torch.tensor([[3, 2 + i, 12 - i, 9], [0, 0, size, size]], dtype=torch.float) / size
        cxcywh = torch.stack(
            [
                (boxes[:, 0] + boxes[:, 2]) / 2,
                (boxes[:, 1] + boxes[:, 3]) / 2,
                boxes[:, 2] - boxes[:, 0],
                boxes[:, 3] - boxes[:, 1],
            ],
            1,
        )
        targets.append({"labels": torch.tensor([0, 1]), "masks": masks, "boxes": cxcywh})
    return targets


def test_forward_keys_deep_supervision_and_grads():
    matcher = HungarianMatcher(cost_class=1.0, cost_mask=5.0, cost_dice=5.0, num_points=64)
    crit = make_criterion(matcher, num_points=64)
    outputs = _outputs()
    losses = crit(outputs, _targets())
    base = ["loss_mask", "loss_dice", "loss_ce", "loss_clip", "loss_bbox", "loss_giou"]
    assert set(losses) == set(base) | {f"{k}_{i}" for k in base for i in range(2)}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for o in [outputs] + outputs["aux_outputs"]:
        for k in ("pred_logits", "pred_masks", "pred_boxes"):
            assert o[k].grad is not None and o[k].grad.abs().sum() > 0


def test_clip_loss_skipped_without_queries():
    crit = make_criterion(HungarianMatcher(num_points=32), num_points=32)
    losses = crit(_outputs(with_clip=False, n_aux=1), _targets())
    assert not any(k.startswith("loss_clip") for k in losses)
    assert "loss_ce_0" in losses


def test_empty_targets_give_zero_box_and_mask_losses():
    crit = make_criterion(HungarianMatcher(num_points=32), num_points=32)
    targets = [
        {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 16, 16), "boxes": torch.zeros(0, 4)}
        for _ in range(2)
    ]
    losses = crit(_outputs(n_aux=0), targets)
    # docs/focus.md#q9: the official code names these loss_bbox_0 / loss_giou_0; here the regular keys, value 0
    for k in ("loss_bbox", "loss_giou", "loss_mask", "loss_dice"):
        assert losses[k].item() == 0.0
    assert "loss_bbox_0" not in losses
    assert torch.isfinite(losses["loss_ce"])


def test_bf16_autocast_cpu():
    crit = make_criterion(HungarianMatcher(num_points=64), num_points=64)
    outputs = _outputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = crit(outputs, _targets())
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert torch.isfinite(outputs["pred_masks"].grad).all()


def test_loss_clip_precision_under_autocast_and_unknown_loss_name():
    """Default: the official precision, i.e. the products (logits up to |T||I|/τ) in the autocast dtype;
    `fp32=True` (MODEL.CLIP_REFINER.LOSS_FP32) is the fp32 loss whatever the autocast."""
    g = torch.Generator().manual_seed(5)
    img, txt = torch.randn(2, 2, 512, generator=g), torch.randn(2, 2, 512, generator=g)
    ref = clip_contrastive_loss(img, txt)
    # the official computation on bf16-rounded products, by hand
    ib, tb = img.bfloat16(), txt.bfloat16()
    logits = (tb @ ib.transpose(1, 2) / CLIP_TEMPERATURE).float()
    sim = ((ib @ ib.transpose(1, 2) + tb @ tb.transpose(1, 2)) / 2 * CLIP_TEMPERATURE).float()
    targets = sim.softmax(-1)
    lt = -(targets * logits.log_softmax(-1)).sum(-1)
    li = -(targets.transpose(1, 2) * logits.transpose(1, 2).log_softmax(-1)).sum(-1)
    by_hand = ((li + lt) / 2).mean()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        official = clip_contrastive_loss(img, txt)
        fp32 = clip_contrastive_loss(img, txt, fp32=True)
    assert fp32.dtype == torch.float32 and fp32.item() == ref.item()
    assert official.item() != ref.item()
    assert official.float().item() == pytest.approx(by_hand.item(), rel=2e-2)
    assert abs(official.float().item() - by_hand.item()) < abs(ref.item() - by_hand.item())
    with pytest.raises(ValueError, match="cosine"):
        make_criterion(FixedMatcher([[0]]), losses=["cosine"])
