"""Test-time augmentation that returns everything the FOCUS evaluator needs.

The official TTA (Mask2Former's `SemanticSegmentorWithTTA`) returns only `sem_seg`, so it cannot run with the
official evaluator, which reads `instances` (docs/focus.md#q20). Here every augmented copy (shortest side in
`TEST.AUG.MIN_SIZES`, capped at `TEST.AUG.MAX_SIZE`, optionally flipped) is run, `sem_seg` is averaged at the
original size, and `foreground` and `instances.pred_masks` are derived from the average: the soft map is
`sem_seg[0] / (sem_seg[0] + sem_seg[1])` and the binary mask is `foreground > 0.5` (the per-query merge rule
of docs/focus.md#inference step 10 has no meaning for an average over queries of different runs).
"""
import torch
import torch.nn.functional as F
from detectron2.structures import Instances
from torch import nn

__all__ = ["FOCUSWithTTA"]


class FOCUSWithTTA(nn.Module):
    """Wrap a FOCUS model; `forward(batched_inputs)` returns `sem_seg`, `foreground` and `instances`."""

    def __init__(self, cfg, model):
        super().__init__()
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        self.model = model
        self.min_sizes = list(cfg.TEST.AUG.MIN_SIZES)
        self.max_size = cfg.TEST.AUG.MAX_SIZE
        self.flip = cfg.TEST.AUG.FLIP

    def _resize(self, image, short):
        h, w = image.shape[-2:]
        scale = short / min(h, w)
        if max(h, w) * scale > self.max_size:
            scale = self.max_size / max(h, w)
        size = (int(h * scale + 0.5), int(w * scale + 0.5))
        out = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False)[0]
        return out.round().clamp(0, 255).to(image.dtype)

    def forward(self, batched_inputs):
        return [self._one(x) for x in batched_inputs]

    def _one(self, inp):
        height, width = inp.get("height", inp["image"].shape[-2]), inp.get("width", inp["image"].shape[-1])
        total, count = None, 0
        for short in self.min_sizes:
            image = self._resize(inp["image"], short)
            for flip in [False, True] if self.flip else [False]:
                img = image.flip(-1) if flip else image
                sem = self.model([{"image": img, "height": height, "width": width}])[0]["sem_seg"]
                sem = sem.flip(-1) if flip else sem
                total = sem if total is None else total + sem
                count += 1
        sem_seg = total / count
        foreground = sem_seg[0] / (sem_seg[0] + sem_seg[1]).clamp_min(1e-6)
        instances = Instances((height, width))
        instances.pred_masks = (foreground > 0.5).to(torch.int32)
        return {"sem_seg": sem_seg, "foreground": foreground, "instances": instances}
