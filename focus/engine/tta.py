"""Test-time augmentation for any member: rescaled and flipped copies of each input, merged into one output.

Every augmented copy (shortest side in `TEST.AUG.MIN_SIZES`, capped at `TEST.AUG.MAX_SIZE`, optionally flipped)
is run with the original `height`/`width`, un-flipped, and the outputs are merged. By default the `foreground`
maps are averaged and `mask = foreground > 0.5`. A member that merges differently defines
`merge_tta_outputs(outputs, height, width) -> dict` on its model (FOCUS averages `sem_seg`, `docs/focus.md`).
The result always holds the contract's `foreground` and `mask`, so both evaluation protocols work.
"""
import torch
import torch.nn.functional as F
from torch import nn

from ..modeling.inference import InferenceModel

__all__ = ["TTAModel", "FOCUSWithTTA", "average_foreground"]

_SPATIAL_KEYS = ("foreground", "mask", "sem_seg")


def average_foreground(outputs, height, width):
    """Default merge: mean `foreground` of the copies, `mask = foreground > 0.5` (int32)."""
    foreground = torch.stack([o["foreground"].float() for o in outputs]).mean(0)
    return {"foreground": foreground, "mask": (foreground > 0.5).to(torch.int32)}


def _unwrap(model):
    while isinstance(model, (nn.parallel.DistributedDataParallel, InferenceModel)):
        model = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model.model
    return model


class TTAModel(nn.Module):
    """Wrap a model (plain, DDP or prepared for inference); `forward(batched_inputs)` returns merged outputs."""

    def __init__(self, cfg, model):
        super().__init__()
        self.model = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        self.min_sizes = list(cfg.TEST.AUG.MIN_SIZES)
        self.max_size = cfg.TEST.AUG.MAX_SIZE
        self.flip = cfg.TEST.AUG.FLIP
        self.merge = getattr(_unwrap(self.model), "merge_tta_outputs", average_foreground)
        # start in the wrapped model's mode: a model prepared for inference refuses `train(True)`, which an
        # evaluation loop restoring a freshly built wrapper's default mode would otherwise call
        self.training = self.model.training

    def _resize(self, image, short):
        h, w = image.shape[-2:]
        scale = short / min(h, w)
        if max(h, w) * scale > self.max_size:
            scale = self.max_size / max(h, w)
        size = (int(h * scale + 0.5), int(w * scale + 0.5))
        out = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False)[0]
        return out.round().clamp(0, 255).to(image.dtype) if not image.is_floating_point() else out

    def forward(self, batched_inputs):
        return [self._one(x) for x in batched_inputs]

    def _one(self, inp):
        height, width = inp.get("height", inp["image"].shape[-2]), inp.get("width", inp["image"].shape[-1])
        outputs = []
        for short in self.min_sizes:
            image = self._resize(inp["image"], short)
            for flip in [False, True] if self.flip else [False]:
                copy = dict(inp, image=image.flip(-1) if flip else image, height=height, width=width)
                out = self.model([copy])[0]
                if flip:
                    out = {k: (v.flip(-1) if k in _SPATIAL_KEYS else v) for k, v in out.items()}
                outputs.append(out)
        return self.merge(outputs, height, width)


FOCUSWithTTA = TTAModel  # the earlier name
