"""Box conversions and (generalised) IoU as used by the FOCUS box loss.

torchvision's `generalized_box_iou` has no epsilon in its denominators; the official code (DETR's
`box_ops` with `+1e-6` added, docs/focus.md#losses) does, which matters for the degenerate all-zero boxes of empty
masks. Boxes are `(N, 4)` tensors.
"""

import torch

__all__ = ["box_cxcywh_to_xyxy", "box_xyxy_to_cxcywh", "box_iou", "generalized_box_iou"]

_EPS = 1e-6


def box_cxcywh_to_xyxy(boxes):
    """`(cx, cy, w, h)` → `(x0, y0, x1, y1)`, shape `(..., 4)`."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xyxy_to_cxcywh(boxes):
    """`(x0, y0, x1, y1)` → `(cx, cy, w, h)`, shape `(..., 4)`."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def _area(boxes):
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes1, boxes2):
    """Pairwise IoU of xyxy boxes `(N, 4)`, `(M, 4)` → `(iou (N, M), union (N, M))`, `+1e-6` in the
    denominator."""
    area1, area2 = _area(boxes1), _area(boxes2)
    lt = torch.max(boxes1[:, None, :2], boxes2[:, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2 - inter
    return inter / (union + _EPS), union


def generalized_box_iou(boxes1, boxes2):
    """Pairwise generalised IoU (Rezatofighi et al. 2019) of xyxy boxes `(N, 4)`, `(M, 4)` → `(N, M)`,
    with `+1e-6` in both denominators (docs/focus.md#losses). Raises on degenerate boxes (x1 < x0 or y1 < y0)."""
    for name, b in (("boxes1", boxes1), ("boxes2", boxes2)):
        if not bool((b[:, 2:] >= b[:, :2]).all()):
            raise ValueError(f"generalized_box_iou: degenerate box in {name} (x1 < x0 or y1 < y0)")
    iou, union = box_iou(boxes1, boxes2)
    lt = torch.min(boxes1[:, None, :2], boxes2[:, :2])
    rb = torch.max(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    area = wh[..., 0] * wh[..., 1]
    return iou - (area - union) / (area + _EPS)
