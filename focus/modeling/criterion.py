"""FOCUS training losses (docs/focus.md#losses): Hungarian-matched mask (BCE + dice on PointRend-sampled points),
classification, box (L1 + GIoU) losses, and the unmatched CLIP contrastive distillation loss (docs/focus.md#clip-loss),
with deep supervision over the auxiliary decoder outputs.
"""

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from detectron2.projects.point_rend.point_features import (
    get_uncertain_point_coords_with_randomness,
    point_sample,
)
from detectron2.utils import comm
from torch import nn

from .box_ops import box_cxcywh_to_xyxy, generalized_box_iou

__all__ = ["SetCriterion", "dice_loss", "sigmoid_ce_loss", "clip_contrastive_loss"]

CLIP_TEMPERATURE = 0.07


def dice_loss(inputs, targets, num_masks):
    """`Σ_n [1 − (2 Σ σ(x)t + 1) / (Σ σ(x) + Σ t + 1)] / num_masks` for logits/targets `(N, P)`."""
    inputs = inputs.sigmoid().flatten(1)
    numerator = 2 * (inputs * targets).sum(-1)
    denominator = inputs.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


def sigmoid_ce_loss(inputs, targets, num_masks):
    """Binary cross-entropy with logits averaged over the P points, summed over N masks, `/ num_masks`."""
    loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    return loss.mean(1).sum() / num_masks


def clip_contrastive_loss(image_features, text_features, temperature=CLIP_TEMPERATURE, fix_target=False, fp32=False):
    """CLIP-style contrastive loss between the projected region and text features (docs/focus.md#clip-loss).

    Per image: `logits = T Iᵀ / τ`, soft targets `softmax((I Iᵀ + T Tᵀ) / 2 · τ)` (official: multiplied by
    τ, docs/focus.md#q8; `fix_target=True` divides by τ instead), symmetric soft cross-entropy averaged over
    the queries, then over the batch. Features are not L2-normalised (they are LayerNorm outputs).

    Precision: by default as the official code runs it, i.e. under the caller's autocast (mixed-precision
    training rounds the three matrix products, and thus logits of up to |T||I|/τ ≈ 7·10³, to fp16/bf16;
    docs/focus.md#t8). `fp32=True` (`MODEL.CLIP_REFINER.LOSS_FP32`) computes it in fp32 with autocast
    off. Without autocast both are the same fp32 computation.

    Args:
        image_features, text_features: `(B, Q, E)`.
    Returns:
        scalar loss.
    """
    context = torch.autocast(device_type=image_features.device.type, enabled=False) if fp32 else nullcontext()
    with context:
        img, txt = (image_features.float(), text_features.float()) if fp32 else (image_features, text_features)
        logits = txt @ img.transpose(1, 2) / temperature
        sim = (img @ img.transpose(1, 2) + txt @ txt.transpose(1, 2)) / 2
        targets = F.softmax(sim / temperature if fix_target else sim * temperature, dim=-1)
        loss_t = -(targets * F.log_softmax(logits, dim=-1)).sum(-1)
        loss_i = -(targets.transpose(1, 2) * F.log_softmax(logits.transpose(1, 2), dim=-1)).sum(-1)
        return ((loss_i + loss_t) / 2).mean(-1).mean()


def _uncertainty(logits):
    """PointRend uncertainty of class-agnostic mask logits `(N, 1, P)`: `−|logit|`."""
    return -torch.abs(logits)


def _pad_masks(masks):
    """Zero-pad a list of `(K_i, H_i, W_i)` masks to a common `(H, W)` and concatenate → `(ΣK_i, H, W)`."""
    h = max(m.shape[-2] for m in masks)
    w = max(m.shape[-1] for m in masks)
    return torch.cat([F.pad(m, (0, w - m.shape[-1], 0, h - m.shape[-2])) for m in masks])


class SetCriterion(nn.Module):
    """Losses of FOCUS (docs/focus.md#losses).

    For every decoder output (the final one and each of `aux_outputs`) the matcher assigns queries to
    targets, then each loss in `losses` is computed:
      * `"labels"`: `loss_ce`, cross-entropy over all queries, unmatched ones labelled `num_classes`
        (no-object), class weights `empty_weight = [1, …, 1, eos_coef]`;
      * `"masks"`: `loss_mask` / `loss_dice` on `num_points` PointRend importance-sampled points;
      * `"boxes"`: `loss_bbox` (L1 of sigmoid-ed cxcywh boxes) / `loss_giou`;
      * `"clip"`: `loss_clip` (no matching; skipped when `pred_queries` is empty, e.g. CLIP disabled).
    Auxiliary losses get the suffix `_{i}`. Returned losses are unweighted; `weight_dict` is kept for the
    caller (the meta-architecture multiplies and drops keys absent from it).
    """

    def __init__(
        self,
        num_classes,
        matcher,
        weight_dict,
        eos_coef,
        losses,
        num_points,
        oversample_ratio,
        importance_sample_ratio,
        fix_clip_target=False,
        clip_loss_fp32=False,
    ):
        """
        Args:
            num_classes: number of real classes (2 in FOCUS: foreground, background).
            matcher: a `HungarianMatcher`.
            weight_dict: loss name → weight (not applied here).
            eos_coef: class weight of the no-object class.
            losses: subset of `["masks", "labels", "clip", "boxes"]`, computed in this order.
            num_points, oversample_ratio, importance_sample_ratio: PointRend point sampling of the mask losses.
            fix_clip_target: divide the contrastive target similarity by τ (docs/focus.md#q8 fix).
            clip_loss_fp32: compute `loss_clip` in fp32 under autocast (official: in the autocast dtype).
        """
        super().__init__()
        unknown = set(losses) - set(self._LOSSES)
        if unknown:
            raise ValueError(f"SetCriterion: unknown losses {sorted(unknown)}; known: {list(self._LOSSES)}")
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = weight_dict
        self.eos_coef = eos_coef
        self.losses = list(losses)
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.fix_clip_target = fix_clip_target
        self.clip_loss_fp32 = clip_loss_fp32
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight)

    @staticmethod
    def _src_permutation_idx(indices):
        batch_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
        src_idx = torch.cat([src for src, _ in indices])
        return batch_idx, src_idx

    @staticmethod
    def _tgt_permutation_idx(indices):
        batch_idx = torch.cat([torch.full_like(tgt, i) for i, (_, tgt) in enumerate(indices)])
        tgt_idx = torch.cat([tgt for _, tgt in indices])
        return batch_idx, tgt_idx

    def loss_labels(self, outputs, targets, indices, num_masks):
        """`loss_ce`: weighted-mean cross-entropy of `pred_logits` `(B, Q, C+1)` in fp32."""
        src_logits = outputs["pred_logits"].float()
        idx = self._src_permutation_idx(indices)
        target_classes_o = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)])
        target_classes = torch.full(src_logits.shape[:2], self.num_classes, dtype=torch.int64, device=src_logits.device)
        target_classes[idx] = target_classes_o.to(src_logits.device)
        loss_ce = F.cross_entropy(src_logits.transpose(1, 2), target_classes, self.empty_weight.to(src_logits.dtype))
        return {"loss_ce": loss_ce}

    def loss_masks(self, outputs, targets, indices, num_masks):
        """`loss_mask` / `loss_dice` on points sampled around the uncertain regions of the matched masks."""
        src_masks = outputs["pred_masks"][self._src_permutation_idx(indices)]
        if src_masks.shape[0] == 0:
            zero = outputs["pred_masks"].sum() * 0.0
            return {"loss_mask": zero, "loss_dice": zero}
        target_masks = _pad_masks([t["masks"] for t in targets]).to(src_masks)
        batch_idx, tgt_idx = self._tgt_permutation_idx(indices)
        offsets = torch.tensor([0] + [len(t["masks"]) for t in targets[:-1]]).cumsum(0)
        target_masks = target_masks[offsets[batch_idx] + tgt_idx]
        src_masks, target_masks = src_masks[:, None], target_masks[:, None]
        with torch.no_grad():
            coords = get_uncertain_point_coords_with_randomness(
                src_masks, _uncertainty, self.num_points, self.oversample_ratio, self.importance_sample_ratio
            )
            point_labels = point_sample(target_masks, coords, align_corners=False).squeeze(1)
        point_logits = point_sample(src_masks, coords, align_corners=False).squeeze(1)
        return {
            "loss_mask": sigmoid_ce_loss(point_logits, point_labels, num_masks),
            "loss_dice": dice_loss(point_logits, point_labels, num_masks),
        }

    def loss_boxes(self, outputs, targets, indices, num_masks):
        """`loss_bbox` (L1) and `loss_giou` between sigmoid-ed predicted and target cxcywh boxes (normalised).

        With no matched pair at all the official code returns wrongly named keys (`loss_bbox_0`,
        `loss_giou_0`, docs/focus.md#q9), which the weight dict then drops or lets collide with the first
        auxiliary output's keys. Here the keys are the regular ones with value 0 (still attached to the
        graph): the total loss and the gradients are the same (zero box loss), the bookkeeping is correct.
        """
        idx = self._src_permutation_idx(indices)
        src_boxes = outputs["pred_boxes"][idx].float().sigmoid()
        if src_boxes.shape[0] == 0:
            zero = outputs["pred_boxes"].sum() * 0.0
            return {"loss_bbox": zero, "loss_giou": zero}
        target_boxes = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)]).to(src_boxes)
        loss_bbox = F.l1_loss(src_boxes, target_boxes, reduction="none").sum() / num_masks
        giou = torch.diag(generalized_box_iou(box_cxcywh_to_xyxy(src_boxes), box_cxcywh_to_xyxy(target_boxes)))
        return {"loss_bbox": loss_bbox, "loss_giou": (1 - giou).sum() / num_masks}

    def loss_clip(self, outputs, targets, indices, num_masks):
        """`loss_clip` between `pred_queries["image_features"]` and `["text_features"]` (docs/focus.md#clip-loss)."""
        queries = outputs["pred_queries"]
        loss = clip_contrastive_loss(
            queries["image_features"], queries["text_features"], fix_target=self.fix_clip_target,
            fp32=self.clip_loss_fp32,
        )
        return {"loss_clip": loss}

    _LOSSES = {"labels": loss_labels, "masks": loss_masks, "clip": loss_clip, "boxes": loss_boxes}

    def get_loss(self, loss, outputs, targets, indices, num_masks):
        """Compute the loss named `loss` (one of `"labels"`, `"masks"`, `"clip"`, `"boxes"`) → dict."""
        return self._LOSSES[loss](self, outputs, targets, indices, num_masks)

    def _losses_of(self, outputs, targets, num_masks):
        indices = self.matcher(outputs, targets)
        losses = {}
        for loss in self.losses:
            if loss == "clip" and not outputs.get("pred_queries"):
                continue
            losses.update(self.get_loss(loss, outputs, targets, indices, num_masks))
        return losses

    def forward(self, outputs, targets):
        """Compute all losses.

        Args:
            outputs: dict with `pred_logits` `(B, Q, C+1)`, `pred_masks` `(B, Q, h, w)`, `pred_boxes`
                `(B, Q, 4)` (raw), `pred_queries` (dict, `{}` without CLIP) and optionally `aux_outputs`
                (list of dicts with the same keys).
            targets: list of B dicts with `labels` `(K,)`, `masks` `(K, H, W)`, `boxes` `(K, 4)` normalised cxcywh.
        Returns:
            dict of unweighted scalar losses; auxiliary ones suffixed `_{i}`.
        """
        num_masks = sum(len(t["labels"]) for t in targets)
        num_masks = torch.as_tensor([num_masks], dtype=torch.float, device=outputs["pred_logits"].device)
        world_size = comm.get_world_size()
        if world_size > 1:
            torch.distributed.all_reduce(num_masks)
        num_masks = torch.clamp(num_masks / world_size, min=1).item()

        main = {k: v for k, v in outputs.items() if k != "aux_outputs"}
        losses = self._losses_of(main, targets, num_masks)
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            losses.update({f"{k}_{i}": v for k, v in self._losses_of(aux, targets, num_masks).items()})
        return losses

    def __repr__(self):
        return (
            f"SetCriterion(num_classes={self.num_classes}, losses={self.losses}, eos_coef={self.eos_coef}, "
            f"num_points={self.num_points}, oversample_ratio={self.oversample_ratio}, "
            f"importance_sample_ratio={self.importance_sample_ratio}, fix_clip_target={self.fix_clip_target}, "
            f"clip_loss_fp32={self.clip_loss_fp32}, "
            f"matcher={self.matcher!r})"
        )
