"""Hungarian matching of the FOCUS queries to the ground-truth "instances" (docs/focus.md#matcher).

FOCUS has two queries and (normally) two targets, foreground and background; which query takes which
target is decided per image and per decoder output by this matcher.
"""

import torch
import torch.nn.functional as F
from detectron2.projects.point_rend.point_features import point_sample
from torch import nn

__all__ = ["HungarianMatcher", "batch_dice_cost", "batch_sigmoid_ce_cost"]


def batch_dice_cost(inputs, targets):
    """Pairwise dice cost `1 − (2 σ(x)·t + 1) / (Σσ(x) + Σt + 1)`.

    Args:
        inputs: `(N, P)` mask logits at P points.
        targets: `(M, P)` target values in [0, 1] at the same points.
    Returns:
        `(N, M)` cost.
    """
    inputs = inputs.sigmoid()
    numerator = 2 * inputs @ targets.t()
    denominator = inputs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


def batch_sigmoid_ce_cost(inputs, targets):
    """Pairwise mean binary cross-entropy with logits between `(N, P)` logits and `(M, P)` targets → `(N, M)`."""
    num_points = inputs.shape[1]
    pos = F.binary_cross_entropy_with_logits(inputs, torch.ones_like(inputs), reduction="none")
    neg = F.binary_cross_entropy_with_logits(inputs, torch.zeros_like(inputs), reduction="none")
    return (pos @ targets.t() + neg @ (1 - targets).t()) / num_points


class HungarianMatcher(nn.Module):
    """One-to-one assignment of predictions to targets minimising
    `cost_mask · BCE + cost_class · (−p[class]) + cost_dice · dice` (docs/focus.md#matcher).

    Mask costs are evaluated at `num_points` uniformly random points shared by all predictions and targets
    of an image. No box or CLIP cost is used (the official `cost_clip` / `cost_cos` arguments were never
    read, docs/focus.md#q29, and are not offered). Runs without gradient, in fp32 with autocast off.
    """

    def __init__(self, cost_class=1.0, cost_mask=1.0, cost_dice=1.0, num_points=12544):
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("HungarianMatcher: all costs are 0")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points

    def cost_matrix(self, logits, masks, tgt_labels, tgt_masks, coords):
        """Matching cost of one image, in fp32.

        Args:
            logits: `(Q, C+1)` class logits; masks: `(Q, h, w)` mask logits.
            tgt_labels: `(K,)` int64; tgt_masks: `(K, H, W)`.
            coords: `(1, P, 2)` point coordinates in [0, 1]² (x, y), shared by predictions and targets.
        Returns:
            `(Q, K)` cost.
        """
        cost_class = -logits.float().softmax(-1)[:, tgt_labels]
        masks, tgt_masks = masks.float()[:, None], tgt_masks.float()[:, None]
        coords = coords.float()
        out_pts = point_sample(masks, coords.repeat(masks.shape[0], 1, 1), align_corners=False).squeeze(1)
        tgt_pts = point_sample(tgt_masks, coords.repeat(tgt_masks.shape[0], 1, 1), align_corners=False).squeeze(1)
        return (
            self.cost_mask * batch_sigmoid_ce_cost(out_pts, tgt_pts)
            + self.cost_class * cost_class
            + self.cost_dice * batch_dice_cost(out_pts, tgt_pts)
        )

    @torch.no_grad()
    def forward(self, outputs, targets):
        """Match every image of the batch.

        Args:
            outputs: dict with `pred_logits` `(B, Q, C+1)` and `pred_masks` `(B, Q, h, w)` (logits).
            targets: list of B dicts with `labels` `(K,)` int64 and `masks` `(K, H, W)` (bool or float).
        Returns:
            list of B pairs `(pred_idx, tgt_idx)` of int64 tensors of equal length `min(Q, K)`.
        """
        from scipy.optimize import linear_sum_assignment  # training-only: not on the inference import path

        indices = []
        pred_masks = outputs["pred_masks"]
        with torch.autocast(device_type=pred_masks.device.type, enabled=False):
            for b, target in enumerate(targets):
                if len(target["labels"]) == 0:
                    indices.append((torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.int64)))
                    continue
                coords = torch.rand(1, self.num_points, 2, device=pred_masks.device)
                cost = self.cost_matrix(
                    outputs["pred_logits"][b], pred_masks[b], target["labels"], target["masks"], coords
                )
                rows, cols = linear_sum_assignment(cost.cpu().numpy())
                indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return indices

    def __repr__(self):
        return (
            f"HungarianMatcher(cost_class={self.cost_class}, cost_mask={self.cost_mask}, "
            f"cost_dice={self.cost_dice}, num_points={self.num_points})"
        )
