"""HungarianMatcher: obvious assignments, cost vs a numpy re-statement of docs/focus.md#matcher, brute-force
optimality."""

import itertools

import numpy as np
import pytest
import torch
from detectron2.projects.point_rend.point_features import point_sample

from focus.modeling.matcher import HungarianMatcher


def _square_masks(size=16):
    fg = torch.zeros(size, size)
    fg[4:12, 4:12] = 1
    return torch.stack([fg, 1 - fg])  # target 0 = foreground, target 1 = background


@pytest.mark.parametrize("swap", [False, True])
def test_obvious_assignment(swap):
    tmasks = _square_masks()
    labels = torch.tensor([0, 1])
    # query 0 predicts the background mask and class 1, query 1 the foreground and class 0 (or swapped)
    pred = (torch.stack([tmasks[1], tmasks[0]]) * 2 - 1) * 10
    logits = torch.tensor([[-5.0, 5.0, -5.0], [5.0, -5.0, -5.0]])
    if swap:
        pred, logits = pred.flip(0), logits.flip(0)
    matcher = HungarianMatcher(cost_class=1.0, cost_mask=5.0, cost_dice=5.0, num_points=256)
    ((src, tgt),) = matcher(
        {"pred_logits": logits[None], "pred_masks": pred[None]}, [{"labels": labels, "masks": tmasks.bool()}]
    )
    assert src.dtype == tgt.dtype == torch.int64
    got = dict(zip(src.tolist(), tgt.tolist()))
    assert got == ({0: 0, 1: 1} if swap else {0: 1, 1: 0})


def _numpy_cost(logits, labels, pred_pts, tgt_pts, wc, wm, wd):
    """docs/focus.md#matcher stated directly in float64."""
    prob = np.exp(logits - logits.max(-1, keepdims=True))
    prob /= prob.sum(-1, keepdims=True)
    prob = prob[:, labels]
    s = 1 / (1 + np.exp(-pred_pts))
    q, k = pred_pts.shape[0], tgt_pts.shape[0]
    cost = np.zeros((q, k))
    for i in range(q):
        for j in range(k):
            t = tgt_pts[j]
            bce = -(t * np.log(s[i]) + (1 - t) * np.log(1 - s[i])).mean()
            dice = 1 - (2 * (s[i] * t).sum() + 1) / (s[i].sum() + t.sum() + 1)
            cost[i, j] = wm * bce + wc * (-prob[i, j]) + wd * dice
    return cost


def test_cost_matches_numpy_and_assignment_is_brute_force_optimum():
    g = torch.Generator().manual_seed(3)
    wc, wm, wd = 1.0, 5.0, 5.0
    matcher = HungarianMatcher(cost_class=wc, cost_mask=wm, cost_dice=wd, num_points=32)
    for trial in range(5):
        logits = torch.randn(2, 3, generator=g)
        masks = torch.randn(2, 4, 4, generator=g)
        tmasks = (torch.rand(2, 8, 8, generator=g) > 0.5).float()
        labels = torch.tensor([0, 1])
        # the pixel centres of the 4x4 prediction: bilinear sampling returns its pixel values exactly
        centres = (torch.arange(4) + 0.5) / 4
        yy, xx = torch.meshgrid(centres, centres, indexing="ij")
        coords = torch.stack([xx.flatten(), yy.flatten()], -1)[None]
        cost = matcher.cost_matrix(logits, masks, labels, tmasks, coords).numpy()
        tgt_pts = point_sample(tmasks[:, None], coords.repeat(2, 1, 1), align_corners=False)[:, 0].double().numpy()
        pred_pts = masks.flatten(1).double().numpy()
        expected = _numpy_cost(logits.double().numpy(), labels.numpy(), pred_pts, tgt_pts, wc, wm, wd)
        np.testing.assert_allclose(cost, expected, rtol=1e-5, atol=1e-6)

        torch.manual_seed(trial)
        ((src, tgt),) = matcher(
            {"pred_logits": logits[None], "pred_masks": masks[None]}, [{"labels": labels, "masks": tmasks}]
        )
        torch.manual_seed(trial)
        rand_coords = torch.rand(1, 32, 2)
        c = matcher.cost_matrix(logits, masks, labels, tmasks, rand_coords).numpy()
        best = min(itertools.permutations(range(2)), key=lambda p: c[0, p[0]] + c[1, p[1]])
        assert dict(zip(src.tolist(), tgt.tolist())) == {0: best[0], 1: best[1]}


def test_single_and_empty_targets():
    matcher = HungarianMatcher(num_points=64)
    out = {"pred_logits": torch.randn(2, 2, 3), "pred_masks": torch.randn(2, 2, 8, 8)}
    tm = _square_masks(8)
    targets = [
        {"labels": torch.tensor([1]), "masks": tm[1:]},
        {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 8, 8)},
    ]
    (s0, t0), (s1, t1) = matcher(out, targets)
    assert len(s0) == len(t0) == 1 and t0.tolist() == [0]
    assert len(s1) == len(t1) == 0


def test_runs_fp32_under_bf16_autocast():
    matcher = HungarianMatcher(cost_class=1.0, cost_mask=5.0, cost_dice=5.0, num_points=128)
    tmasks = _square_masks()
    pred = (torch.stack([tmasks[1], tmasks[0]]) * 2 - 1) * 10
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ((src, tgt),) = matcher(
            {"pred_logits": torch.zeros(1, 2, 3, dtype=torch.bfloat16), "pred_masks": pred[None].bfloat16()},
            [{"labels": torch.tensor([0, 1]), "masks": tmasks}],
        )
    assert dict(zip(src.tolist(), tgt.tolist())) == {0: 1, 1: 0}
