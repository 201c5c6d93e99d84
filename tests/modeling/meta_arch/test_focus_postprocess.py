"""FOCUS post-processing: the official merge rule (docs/focus.md#inference step 10), semantic map, two-step resize,
targets."""
import itertools
import math

import torch
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn
from torch.nn import functional as F

import focus
from focus.config import get_focus_cfg
from focus.modeling.meta_arch.focus import (
    FOCUS,
    build_weight_dict,
    foreground_probability,
    merge_masks,
    semantic_inference,
)

BIG = 12.0  # saturated mask logit


def _cls_logits(probs):
    """Logits whose softmax over (fg, bg, no-object) is `probs` (rows sum to 1)."""
    return torch.tensor(probs, dtype=torch.float64).log().float()


def _masks():
    """Two queries on a 1x8 image. Pixels 0-2: q0 fg (s0~1, s1~0); pixels 3-5: q1 (s1~1, s0~0);
    pixel 6: s0 = 0.4, s1 = 0.2 (uncertain); pixel 7: s0 = 0.7, s1 = 0.9."""
    logit = lambda p: math.log(p / (1 - p))
    q0 = [BIG] * 3 + [-BIG] * 3 + [logit(0.4), logit(0.7)]
    q1 = [-BIG] * 3 + [BIG] * 3 + [logit(0.2), logit(0.9)]
    return torch.tensor([q0, q1]).view(2, 1, 8)


def _reference_rule(scores, labels, s, order):
    """Literal statement of the official collection loop for one visiting order."""
    collected = []
    for i in order:
        if scores[i] > 0.5:
            if collected and labels[i] == labels[collected[-1]]:
                continue
            collected.append(i)
            if len(collected) == 2:
                break
    query = [i // 2 for i in range(4)]
    if len(collected) == 2:
        fg = [i for i in collected if labels[i] == 0][0]
        bg = [i for i in collected if labels[i] == 1][0]
        return (s[query[fg]] > s[query[bg]]).int()
    best = max(order, key=lambda i: scores[i])
    return (s[query[best]] > 0.5).int() if labels[best] == 0 else (s[query[best]] < 0.5).int()


def test_two_entries_fg_query0():
    out = merge_masks(_cls_logits([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05]]), _masks())
    assert out.dtype == torch.int32 and out.shape == (1, 8)
    # fg where s0 > s1: pixels 0-2 and the uncertain pixel 6 (0.4 > 0.2), not 7 (0.7 < 0.9)
    assert out.flatten().tolist() == [1, 1, 1, 0, 0, 0, 1, 0]


def test_two_entries_fg_query1():
    masks = _masks().flip(0)  # query 1 is now the foreground query
    out = merge_masks(_cls_logits([[0.05, 0.9, 0.05], [0.9, 0.05, 0.05]]), masks)
    assert out.flatten().tolist() == [1, 1, 1, 0, 0, 0, 1, 0]


def test_single_entry_foreground_class():
    # only query 0 is confident (foreground); query 1 is no-object -> mask = s0 > 0.5
    out = merge_masks(_cls_logits([[0.9, 0.05, 0.05], [0.05, 0.05, 0.9]]), _masks())
    assert out.flatten().tolist() == [1, 1, 1, 0, 0, 0, 0, 1]


def test_single_entry_background_class():
    # only query 1 is confident (background) -> mask = s1 < 0.5
    out = merge_masks(_cls_logits([[0.05, 0.05, 0.9], [0.05, 0.9, 0.05]]), _masks())
    assert out.flatten().tolist() == [1, 1, 1, 0, 0, 0, 1, 0]
    # background query with s1: pixel 7 has s1 = 0.9 -> background


def test_same_class_twice_is_skipped():
    # both queries predict foreground with score > 0.5: the second fg entry is skipped -> argmax branch (q0)
    out = merge_masks(_cls_logits([[0.95, 0.03, 0.02], [0.8, 0.1, 0.1]]), _masks())
    assert out.flatten().tolist() == [1, 1, 1, 0, 0, 0, 0, 1]


def test_nothing_above_threshold_uses_best_entry():
    # all scores <= 0.5: best entry is (q1, bg) with p = 0.45 -> mask = s1 < 0.5
    out = merge_masks(_cls_logits([[0.3, 0.3, 0.4], [0.1, 0.45, 0.45]]), _masks())
    assert out.flatten().tolist() == [1, 1, 1, 0, 0, 0, 1, 0]


def test_matches_literal_rule_in_every_visiting_order():
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        cls = torch.randn(2, 3, generator=g) * 3
        masks = torch.randn(2, 5, 7, generator=g) * 4
        probs = F.softmax(cls, -1)[:, :2].flatten()
        s = masks.sigmoid()
        m = (s.flatten(1) ** 2).sum(1) / (s.flatten(1).sum(1) + 1e-6)
        scores = (probs * m.repeat_interleave(2)).tolist()
        labels = [0, 1, 0, 1]
        ours = merge_masks(cls, masks)
        for order in itertools.permutations(range(4)):
            assert torch.equal(ours, _reference_rule(scores, labels, s, order))


def test_semantic_and_foreground():
    cls = _cls_logits([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]])
    masks = torch.randn(2, 3, 4)
    sem = semantic_inference(cls, masks)
    p = F.softmax(cls, -1)
    s = masks.sigmoid()
    torch.testing.assert_close(sem[0], p[0, 0] * s[0] + p[1, 0] * s[1])
    torch.testing.assert_close(sem[1], p[0, 1] * s[0] + p[1, 1] * s[1])
    fg = foreground_probability(sem)
    torch.testing.assert_close(fg, sem[0] / (sem[0] + sem[1]))
    assert foreground_probability(torch.zeros(2, 2, 2)).abs().max() == 0


class _Backbone(nn.Module):
    size_divisibility = 32

    def forward(self, x):
        return {"x": x}


class _Head(nn.Module):
    """Mask logits = a fixed function of the padded stride-4 grid, to check the two-step resize."""

    num_classes = 2

    def forward(self, features, images=None):
        x = features["x"]
        b, _, h, w = x.shape
        yy, xx = torch.meshgrid(torch.arange(h // 4.0), torch.arange(w // 4.0), indexing="ij")
        m = torch.stack([(xx - yy) / 4.0, (yy - xx) / 3.0])[None].repeat(b, 1, 1, 1)
        logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 2.0, -1.0]])[None].repeat(b, 1, 1)
        return {"pred_logits": logits, "pred_masks": m}


def _stub_model():
    return FOCUS(
        backbone=_Backbone(), sem_seg_head=_Head(), criterion=nn.Identity(),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375],
        size_divisibility=32,
    ).eval()


def test_two_step_resize_shapes_and_values():
    model = _stub_model()
    inputs = [
        {"image": torch.rand(3, 50, 70) * 255, "height": 100, "width": 140},
        {"image": torch.rand(3, 64, 40) * 255},
    ]
    with torch.no_grad():
        out = model(inputs)
    assert out[0]["sem_seg"].shape == (2, 100, 140)
    assert out[0]["instances"].pred_masks.shape == (100, 140)
    assert out[0]["instances"].image_size == (100, 140)
    assert out[0]["instances"].pred_masks.dtype == torch.int32
    assert out[0]["foreground"].shape == (100, 140)
    assert out[1]["sem_seg"].shape == (2, 64, 40)
    # padded batch is 64x96; mask logits are 16x24; recompute the two resizes by hand for image 0
    m = _Head()({"x": torch.zeros(2, 3, 64, 96)})["pred_masks"][0]
    up = F.interpolate(m[None], size=(64, 96), mode="bilinear", align_corners=False)[0]
    crop = up[:, :50, :70]
    final = F.interpolate(crop[None], size=(100, 140), mode="bilinear", align_corners=False)[0]
    cls = torch.tensor([[2.0, 0.0, -1.0], [0.0, 2.0, -1.0]])
    torch.testing.assert_close(out[0]["sem_seg"], semantic_inference(cls, final))
    assert torch.equal(out[0]["instances"].pred_masks, merge_masks(cls, final))
    fg = out[0]["foreground"]
    assert fg.min() >= 0 and fg.max() <= 1


def test_normalisation_and_padding():
    model = _stub_model()
    img = torch.full((3, 33, 40), 200.0)
    images = model.preprocess_image([{"image": img}])
    assert images.tensor.shape == (1, 3, 64, 64) and images.image_sizes == [(33, 40)]
    torch.testing.assert_close(images.tensor[0, :, 0, 0], (200 - model.pixel_mean[:, 0, 0]) / model.pixel_std[:, 0, 0])
    assert images.tensor[0, :, 33:].abs().max() == 0 and images.tensor[0, :, :, 40:].abs().max() == 0
    assert "pixel_mean" not in model.state_dict()


def test_prepare_targets():
    model = _stub_model()
    inst = Instances((30, 40))
    masks = torch.zeros(2, 30, 40, dtype=torch.bool)
    masks[0, 5:15, 10:30] = True
    masks[1] = ~masks[0]
    inst.gt_masks = masks
    inst.gt_boxes = Boxes(torch.tensor([[10.0, 5.0, 30.0, 15.0], [0.0, 0.0, 40.0, 30.0]]))
    inst.gt_classes = torch.tensor([0, 1])
    images = ImageList(torch.zeros(1, 3, 32, 64), [(30, 40)])
    (t,) = model.prepare_targets([inst], images)
    assert t["masks"].shape == (2, 32, 64) and t["masks"].dtype == torch.bool
    assert torch.equal(t["masks"][:, :30, :40], masks) and not t["masks"][:, 30:].any()
    torch.testing.assert_close(
        t["boxes"], torch.tensor([[20 / 64, 10 / 32, 20 / 64, 10 / 32], [20 / 64, 15 / 32, 40 / 64, 30 / 32]])
    )
    assert torch.equal(t["labels"], torch.tensor([0, 1]))


def test_weight_dict():
    cfg = get_focus_cfg("cod/focus_dinov2_large.yaml")
    wd = build_weight_dict(cfg.MODEL.MASK_FORMER)
    assert len(wd) == 6 * 10
    assert wd["loss_ce"] == 1.0 and wd["loss_mask"] == 5.0 and wd["loss_dice"] == 5.0
    assert wd["loss_clip"] == 1.0 and wd["loss_bbox"] == 5.0 and wd["loss_giou"] == 2.0
    assert wd["loss_giou_8"] == 2.0 and "loss_ce_9" not in wd
    cfg.MODEL.MASK_FORMER.DEEP_SUPERVISION = False
    assert len(build_weight_dict(cfg.MODEL.MASK_FORMER)) == 6


def focus_root():
    from pathlib import Path

    return Path(focus.__file__).resolve().parents[1]
