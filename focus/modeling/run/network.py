"""`RUNNetwork`: the official RUN `Network` as a function of the normalised image, with the official
attribute names (so released state dicts load after stripping `module.`) and SOFS registered as
`selective_mamba`."""
from collections import OrderedDict

import torch
import torch.nn as nn

from ..backbone.timm_features import build_timm_features
from .blocks import (
    GCM3,
    GPM,
    REM11,
    ChannelAttentionFC,
    ContextualFeatureAggregation,
    IntraLayerFeatureAggregation,
    SpatialAttention7,
    up,
    up_ac,
)
from .robe import InteractNet
from .sofs import Selectivemamba, SparsePipeline

__all__ = ["RUNNetwork", "OUTPUT_NAMES", "PREDICTION_OUTPUTS"]

# the official 13-tuple, in order; index 4 ("f1") is the evaluated prediction
OUTPUT_NAMES = ("pred_0", "f4", "f3", "f2", "f1", "bound_f3", "bound_f2", "bound_f1",
                "pred_b0", "pred_b4", "pred_b3", "pred_b2", "pred_b1")
# what the evaluated prediction needs (docs/run.md#q1): nothing of SOFS, m-hat or ROBE
PREDICTION_OUTPUTS = ("pred_0", "f3", "f2", "f1")


class RUNNetwork(nn.Module):
    """RUN (ResNet-50) with channels C. `run_network(image)` maps a normalised (B, 3, H, W) image (H, W multiples of
    64, >= 384 for the official architecture: docs/run.md#q10) to the official outputs at (H, W).

    Args:
        channels: C (192 in the released model).
        backbone_layers: ResNet-50 blocks per stage ((3, 4, 6, 3); reduced only for golden/tiny models).
        backbone_weights: local timm ResNet-50 weights for training ("" = random).
        scan_backend: selective-scan implementation (None = chosen by device).
    """

    def __init__(self, channels=192, backbone_layers=(3, 4, 6, 3), backbone_weights="", scan_backend=None):
        super().__init__()
        c = channels
        self.channels = c
        self.shared_encoder = build_timm_features("resnet50", weights=backbone_weights, layers=tuple(backbone_layers))
        self.GCM3 = GCM3(256, c)
        self.IAF = IntraLayerFeatureAggregation(c, c)
        self.CAF = ContextualFeatureAggregation(c)
        self.conv3_fea = nn.Conv2d(2 * c, c, 1)
        self.GPM = GPM(2048)
        self.REM11 = REM11(c, c)
        self.pipeline = SparsePipeline(channels=32, layers=6, alpha=0.01)
        self.conv_final2 = nn.Conv2d(2, 1, 3, padding=1)
        self.conv_final = nn.Conv2d(2, 1, 3, padding=1)
        self.Lambda = nn.Parameter(torch.tensor([0.01]))
        self.adjustIllu_model = InteractNet(7, 8, 3)
        self.cam = ChannelAttentionFC(c)
        self.sam = SpatialAttention7("samconv")
        self.conv_b = nn.Conv2d(7, 3, 3, padding=1)
        # SOFS, re-created with random weights at every call in the official forward (docs/run.md#q1)
        self.selective_mamba = Selectivemamba(c, scan_backend=scan_backend)

    def run_network(self, image, outputs="all", robe_grad=True):
        """Official forward. `outputs`: "all" (the 13 official outputs) or "prediction" (only those the evaluated
        map depends on, `PREDICTION_OUTPUTS`: bit-identical values, without SOFS, m-hat and ROBE).

        Returns an OrderedDict name -> tensor in `OUTPUT_NAMES` order, all at the image size: masks (B, 1, H, W)
        logits, edges (B, 1, H, W) in [0, 1], backgrounds (B, 3, H, W) in normalised-image units; plus
        "prior_cam" (B, 1, h/32, w/32) and, with "all", "prior_cam4" and "pred_m4_hat". `robe_grad=False` runs ROBE
        (pred_b4..pred_b1) without autograd: same values, for when no loss uses them (docs/run.md#q2).
        """
        if outputs not in ("all", "prediction"):
            raise ValueError(f"outputs must be 'all' or 'prediction', got {outputs!r}")
        full = outputs == "all"
        size = image.shape[2:]
        _, x1, x2, x3, x4 = self.shared_encoder(image)
        f1, f2, f3, f4 = self.GCM3(x1, x2, x3, x4)
        f1_a, f2_a, f3_a, f4_a = (self.IAF(f) for f in (f1, f2, f3, f4))
        f3 = self.conv3_fea(torch.cat([self.CAF(f4_a, f3_a), f3_a], 1))
        f2 = self.conv3_fea(torch.cat([self.CAF(f3, f2_a), f2_a], 1))
        f1 = self.conv3_fea(torch.cat([self.CAF(f2, f1_a), f1_a], 1))
        prior_cam = self.GPM(x4)
        pred_0 = up(prior_cam, size)
        masks, bounds = self.REM11((f1, f2, f3, f4), prior_cam, with_edges=True)
        out = OrderedDict(pred_0=pred_0)
        f4_up, f3_up, f2_up, f1_up = (up_ac(m, size) for m in masks)
        out["f3"], out["f2"], out["f1"] = f3_up, f2_up, f1_up
        out["bound_f3"], out["bound_f2"], out["bound_f1"] = (up_ac(b, size) for b in bounds[1:])
        out["prior_cam"] = prior_cam
        if not full:
            return out
        pred_b0 = (1 - pred_0) * image  # logits times the normalised image (docs/run.md#q11)
        pred_m4_hat = self.pipeline(image, pred_b0, pred_0, pred_0, pred_0)
        prior_cam4 = self.selective_mamba(f4, pred_m4_hat, pred_b0, image)
        pred_m4 = up(prior_cam4, size)
        f4_fused = self.conv_final2(torch.cat([0.1 * pred_m4, f4_up], 1))
        f4_fused = self.conv_final(torch.cat([0.1 * pred_m4_hat, f4_fused], 1))
        backgrounds, prev = [], pred_b0
        with torch.set_grad_enabled(robe_grad and torch.is_grad_enabled()):
            for m in (f4_fused, f3_up, f2_up, f1_up):
                b_hat = (self.Lambda * prev + image - m * image) / ((1 + self.Lambda) * 1 + 1e-6)
                prev = self.adjustIllu_model(torch.cat([m, b_hat, image], 1))
                backgrounds.append(prev)
        ordered = OrderedDict(pred_0=pred_0, f4=f4_fused)
        for name in OUTPUT_NAMES[2:8]:
            ordered[name] = out[name]
        ordered["pred_b0"] = pred_b0
        for name, b in zip(OUTPUT_NAMES[9:], backgrounds):
            ordered[name] = b
        ordered["prior_cam"] = prior_cam
        ordered["prior_cam4"] = prior_cam4
        ordered["pred_m4_hat"] = pred_m4_hat
        return ordered
