"""BiRefNet meta-architecture (`MODEL.META_ARCHITECTURE: BiRefNet`) with the official parameter names.

``bb`` (Swin-V1 or PVT-v2) runs twice: on the image and on a 0.5x bilinear copy, whose features are upsampled and
concatenated after the full-resolution ones (docs/birefnet.md#q3); x1..x3 resized to x4 and concatenated before
it are squeezed by ``squeeze_module`` (one decoder block); ``decoder`` reconstructs the stride-1 logits.
"""
import random
from typing import Dict, List

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from PIL import Image

from ..checkpoint import strip_prefixes
from .decoder import BiRefNetDecoder
from .losses import finetune_weights, gradient_loss, laplacian, pixel_losses
from .modules import BasicDecBlk, up

__all__ = ["BiRefNet", "build_birefnet_backbone"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_birefnet_backbone(name, depths=None, embed_dim=0, num_heads=None, drop_path_rate=-1.0):
    """The official backbone `name` (``swin_v1_*`` or ``pvt_v2_*``) with optional overrides."""
    # imported here: timm is needed only once a BiRefNet is built (importing focus stays light)
    from ..backbone.pvt_v2 import PVT_V2_ARCHS, build_pvt_v2
    from ..backbone.swin_v1 import SWIN_V1_ARCHS, build_swin_v1

    if name in SWIN_V1_ARCHS:
        return build_swin_v1(name, depths=depths or None, embed_dim=embed_dim or None,
                             num_heads=num_heads or None,
                             drop_path_rate=0.2 if drop_path_rate < 0 else drop_path_rate)
    if name in PVT_V2_ARCHS:
        if embed_dim or num_heads:
            raise ValueError("BACKBONE_EMBED_DIM / BACKBONE_NUM_HEADS overrides are for Swin backbones only")
        return build_pvt_v2(name, depths=depths or None, drop_path_rate=0.1 if drop_path_rate < 0 else drop_path_rate)
    raise ValueError(f"unknown MODEL.BIREFNET.BACKBONE {name!r}: {sorted(SWIN_V1_ARCHS) + sorted(PVT_V2_ARCHS)}")


@META_ARCH_REGISTRY.register()
class BiRefNet(nn.Module):
    """BiRefNet: bilateral-reference dichotomous segmentation.

    Input (eval): dicts with ``image`` uint8 RGB ``(3, h, w)`` at the network size (`BiRefNetTestMapper`),
    ``height``/``width`` of the original; optionally ``tiles`` ``(N, 3, h, w)`` and ``tile_boxes``. Output: one
    dict per image with ``foreground`` float ``(height, width)`` in [0, 1] (the map the official test script
    saves) and ``mask`` bool (``foreground > mask_threshold``).

    Input (train): ``image`` uint8 ``(3, h, w)``, ``gt`` float ``(1, h, w)`` in [0, 1]; returns the loss dict.
    Training needs at least `min_train_batch` images per batch (the image-pooling BatchNorm of every ASPP sees one
    value per channel otherwise, docs/birefnet.md#q1).
    """

    min_train_batch = 2

    @configurable
    def __init__(self, *, bb: nn.Module, channels: List[int], inter_channels=64, aspp_width=256,
                 size=(1024, 1024), inference_path="official", mask_threshold=0.5, tile=None, loss=None,
                 dynamic_size=(), max_iter=0, fused_stride1=False, deform_impl="gather"):
        super().__init__()
        self.bb = bb
        raw = list(reversed(channels))  # deepest first, as the official `lateral_channels_in_collection`
        c = [2 * ch for ch in raw]  # doubled by the concatenated half-resolution pass
        squeeze_in = c[0] + sum(c[1:])  # context x1, x2, x3 concatenated before x4
        self.squeeze_module = nn.Sequential(
            BasicDecBlk(squeeze_in, c[0], inter_channels=inter_channels, aspp_width=aspp_width,
                        deform_impl=deform_impl))
        self.decoder = BiRefNetDecoder(c, inter_channels=inter_channels, aspp_width=aspp_width,
                                       fused_stride1=fused_stride1, deform_impl=deform_impl)
        self.size = tuple(size)
        self.inference_path = inference_path
        self.mask_threshold = mask_threshold
        self.tile = dict(tile or {})
        self.loss_cfg = dict(loss or {})
        self.dynamic_size = tuple(dynamic_size)
        self.max_iter = max_iter
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_config(cls, cfg):
        b = cfg.MODEL.BIREFNET
        bb = build_birefnet_backbone(b.BACKBONE, list(b.BACKBONE_DEPTHS), b.BACKBONE_EMBED_DIM,
                                     list(b.BACKBONE_NUM_HEADS), b.DROP_PATH_RATE)
        if b.GRAD_CHECKPOINTING:
            bb.set_grad_checkpointing(True)
        t, lo = b.TILE, b.LOSS
        if b.DEFORM_IMPL not in ("gather", "torchvision"):
            raise ValueError(f"MODEL.BIREFNET.DEFORM_IMPL must be 'gather' or 'torchvision', got {b.DEFORM_IMPL!r}")
        return {
            "bb": bb, "channels": bb.channels, "inter_channels": b.DEC_CHANNELS_INTER, "aspp_width": b.ASPP_WIDTH,
            "size": b.SIZE, "inference_path": b.INFERENCE_PATH, "mask_threshold": b.MASK_THRESHOLD,
            "tile": {"enabled": t.ENABLED, "global_weight": t.GLOBAL_WEIGHT, "blend": t.BLEND, "band": tuple(t.BAND)},
            "loss": {
                "weights": (lo.BCE_WEIGHT, lo.IOU_WEIGHT, lo.SSIM_WEIGHT, lo.MAE_WEIGHT, lo.MSE_WEIGHT),
                "gdt": lo.GDT_WEIGHT, "iou_reduction": lo.IOU_REDUCTION, "gdt_detach": lo.GDT_DETACH_LABEL,
                "last_iters": lo.FINETUNE_LAST_ITERS, "iters_per_epoch": lo.ITERS_PER_EPOCH,
                "factors": tuple(lo.FINETUNE_FACTORS), "compound": lo.FINETUNE_COMPOUND,
            },
            "dynamic_size": b.DYNAMIC_SIZE, "max_iter": cfg.SOLVER.MAX_ITER, "fused_stride1": b.FUSED_STRIDE1,
            "deform_impl": b.DEFORM_IMPL,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    # ---------------------------------------------------------------------------------------------------------
    # network
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 RGB ``(B, 3, H, W)`` -> ``(x / 255 - mean) / std`` in fp32 (ToTensor + Normalize)."""
        return (images.to(self.device, torch.float32).div(255.0) - self.pixel_mean) / self.pixel_std

    def forward_enc(self, x):
        """Both backbone passes, concatenation and context: ``[x1, x2, x3, x4]`` (x4 not yet squeezed)."""
        feats = self.bb(x)
        H, W = x.shape[-2:]
        half = self.bb(F.interpolate(x, size=(H // 2, W // 2), mode="bilinear", align_corners=True))
        feats = [torch.cat([f, up(g, f.shape[-2:])], dim=1) for f, g in zip(feats, half)]
        x1, x2, x3, x4 = feats
        s = x4.shape[-2:]
        x4 = torch.cat([up(x1, s), up(x2, s), up(x3, s), x4], dim=1)
        return x1, x2, x3, x4

    def forward_logits(self, x, gdt_gt=None):
        """Normalised ``x (B, 3, H, W)`` (H, W multiples of 32) -> the decoder output (eval: ``[logits]``)."""
        x1, x2, x3, x4 = self.forward_enc(x)
        x4 = self.squeeze_module(x4)
        return self.decoder([x, x1, x2, x3, x4], gdt_gt=gdt_gt)

    def predict_probs(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, 3, h, w)`` at the network size -> probabilities ``(B, 1, h, w)`` (fp32).

        Sides that are not multiples of 32 (the patch grids need them) are first resized down to the nearest
        multiple with bicubic interpolation, as the official test script does with PIL, and the probabilities
        resized back (bilinear, ``align_corners=True``)."""
        h, w = images.shape[-2:]
        h32, w32 = max(32, h // 32 * 32), max(32, w // 32 * 32)
        if (h32, w32) != (h, w):
            small = F.interpolate(images.float(), size=(h32, w32), mode="bicubic", align_corners=False)
            return up(self.predict_probs(small.round().clamp(0, 255).to(torch.uint8)), (h, w))
        x = self.normalize(images)
        dtype = self.decoder.conv_out1[0].weight.dtype
        if dtype != x.dtype and not torch.is_autocast_enabled(x.device.type):  # weights cast to a reduced dtype
            x = x.to(dtype)
        return self.forward_logits(x)[-1].float().sigmoid()

    # ---------------------------------------------------------------------------------------------------------
    # inference
    def postprocess(self, prob: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """``(1, 1, h, w)`` -> ``(height, width)``. Official: bilinear ``align_corners=True`` on the float map.
        README path: the 8-bit map (``mul(255).byte()``, truncation) resized with PIL bicubic (docs/birefnet.md#q10)."""
        if self.inference_path == "readme":
            u8 = prob[0, 0].mul(255).byte().cpu().numpy()
            out = np.asarray(Image.fromarray(u8).resize((width, height), Image.BICUBIC), dtype=np.float32) / 255.0
            return torch.from_numpy(out).to(prob.device)
        return F.interpolate(prob, size=(height, width), mode="bilinear", align_corners=True)[0, 0]

    def _tiled(self, glob: torch.Tensor, tiles: torch.Tensor, boxes, height: int, width: int) -> torch.Tensor:
        """Blend the global map ``(height, width)`` with the tile predictions (tapered weights at tile borders
        that are inside the image)."""
        acc = torch.zeros(height, width, device=glob.device)
        wsum = torch.zeros(height, width, device=glob.device)
        for i, (y0, x0, y1, x1) in enumerate(boxes):
            p = self.predict_probs(tiles[i:i + 1])
            p = F.interpolate(p, size=(y1 - y0, x1 - x0), mode="bilinear", align_corners=True)[0, 0]
            w = _taper(y1 - y0, x1 - x0, y0 > 0, y1 < height, x0 > 0, x1 < width, glob.device)
            acc[y0:y1, x0:x1] += p * w
            wsum[y0:y1, x0:x1] += w
        tiled = acc / wsum.clamp_min(1e-6)
        gw = self.tile.get("global_weight", 0.5)
        if self.tile.get("blend", "uncertain") == "all":
            return gw * glob + (1 - gw) * tiled
        lo, hi = self.tile.get("band", (0.05, 0.95))
        band = ((glob > lo) & (glob < hi)).float()[None, None]
        r = max(height, width) // 256  # dilation radius (separable square max filter)
        band = F.max_pool2d(band, (2 * r + 1, 1), stride=1, padding=(r, 0))
        band = F.max_pool2d(band, (1, 2 * r + 1), stride=1, padding=(0, r))[0, 0]
        return glob * (1 - band) + band * (gw * glob + (1 - gw) * tiled)

    def inference(self, batched_inputs: List[Dict]) -> List[Dict]:
        results = []
        for inp in batched_inputs:
            prob = self.predict_probs(inp["image"][None])
            h, w = inp.get("height", prob.shape[-2]), inp.get("width", prob.shape[-1])
            fg = self.postprocess(prob, h, w)
            if "tiles" in inp and len(inp["tiles"]):
                fg = self._tiled(fg, inp["tiles"], inp["tile_boxes"], h, w)
            results.append({"foreground": fg, "mask": fg > self.mask_threshold})
        return results

    # ---------------------------------------------------------------------------------------------------------
    # training
    def _train_batch(self, batched_inputs):
        images = [d["image"] for d in batched_inputs]
        gts = [d["gt"] for d in batched_inputs]
        if self.dynamic_size:
            hmin, hmax, wmin, wmax = self.dynamic_size
            h = random.randint(hmin, hmax) // 32 * 32
            w = random.randint(wmin, wmax) // 32 * 32
            images = [F.interpolate(i[None].float(), size=(h, w), mode="bilinear", antialias=True)[0] for i in images]
            gts = [F.interpolate(g[None].float(), size=(h, w), mode="bilinear", antialias=True)[0] for g in gts]
            images = [i.round().clamp(0, 255) for i in images]
        x = self.normalize(torch.stack(images))
        gt = torch.stack(gts).to(self.device, torch.float32)
        return x, gt

    def losses(self, x, gt):
        """Loss dict for normalised images ``x (B, 3, H, W)`` and targets ``gt (B, 1, H, W)``. The gradient target
        and the losses are computed in fp32 under AMP (in bf16, SSIM's variances cancel to negative values)."""
        with torch.autocast(x.device.type, enabled=False):
            gdt_gt = laplacian(x.float().mean(dim=1, keepdim=True), kernel_size=5)
        gdt_preds, gdt_labels, sides = self.forward_logits(x, gdt_gt=gdt_gt)
        with torch.autocast(x.device.type, enabled=False):
            return self._loss_terms(gdt_preds, gdt_labels, sides, gt, _current_iter())

    def _loss_terms(self, gdt_preds, gdt_labels, sides, gt, it):
        lc = self.loss_cfg
        weights = finetune_weights(lc.get("weights", (30, 0.5, 10, 0, 0)), it, self.max_iter,
                                   lc.get("last_iters", 0), lc.get("iters_per_epoch", 1),
                                   lc.get("factors", (0, 0.5, 1, 0.9, 1)), lc.get("compound", True))
        losses = pixel_losses(sides, gt, weights, lc.get("iou_reduction", "sum"))
        if lc.get("gdt", 1.0):
            losses["loss_gdt"] = lc.get("gdt", 1.0) * gradient_loss(gdt_preds, gdt_labels, lc.get("gdt_detach", False))
        return losses

    def forward(self, batched_inputs: List[Dict]):
        if self.training:
            return self.losses(*self._train_batch(batched_inputs))
        return self.inference(batched_inputs)

    # ---------------------------------------------------------------------------------------------------------
    # loading
    def checkpoint_filter_fn(self, state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Released `.pth` / `model.safetensors` -> this model: strip ``module.`` / ``_orig_mod.`` (any order),
        fill the deterministic ``relative_position_index`` and the unused ``num_batches_tracked`` if absent."""
        out = strip_prefixes(state_dict)  # any order (the official loader: docs/birefnet.md#q19)
        own = self.state_dict()
        for k, v in own.items():
            if k not in out and (k.endswith("relative_position_index") or k.endswith("num_batches_tracked")):
                out[k] = v.clone()
        return out


def _current_iter() -> int:
    try:
        from detectron2.utils.events import get_event_storage

        return get_event_storage().iter
    except AssertionError:  # no EventStorage outside the trainer
        return 0


def _taper(h, w, top, bottom, left, right, device):
    """Tile weight ``(h, w)``: linear ramps from ~0 to 1 over a quarter of the side on borders inside the image."""
    def ramp(n, start, end):
        r = torch.ones(n, device=device)
        m = max(1, n // 4)
        lin = (torch.arange(m, device=device, dtype=torch.float32) + 1) / (m + 1)
        if start:
            r[:m] = torch.minimum(r[:m], lin)
        if end:
            r[n - m:] = torch.minimum(r[n - m:], lin.flip(0))
        return r
    return ramp(h, top, bottom)[:, None] * ramp(w, left, right)[None, :]
