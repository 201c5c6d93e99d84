"""`RUN` meta-architecture: the official RUN network behind the `focus` model contract (train: dict of
losses; eval: `foreground`/`mask` per image at its original size)."""
import logging
import math

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.utils.events import get_event_storage

from focus.layers.selective_scan import BACKENDS

from ..checkpoint import strip_prefixes
from ..losses import dice_loss, structure_loss, uncertainty_loss
from ...config.run import check_input_size
from .network import RUNNetwork

__all__ = ["RUN"]

logger = logging.getLogger(__name__)

@META_ARCH_REGISTRY.register()
class RUN(RUNNetwork):
    """RUN (ICML 2025) for camouflaged / concealed object segmentation, official ResNet-50 model.

    Input dicts: `image` uint8 (3, S, S) already squashed to the input size by `run_test_mapper` /
    `run_train_mapper`, `height`/`width` of the original image; for training also `gt` (1, S, S) in [0, 1] and
    `edge` (1, S, S).

    Eval output per image: `foreground` (H, W) float32 in [0, 1], the map the official test script saves
    (stage-1 logits resized to (H, W), sigmoid, per-image min-max); `mask` = foreground > 0.5 (uint8);
    `sigmoid` (the map before the min-max).

    Training needs at least `min_train_batch` images per batch (GPM pools to 1 x 1 before a BatchNorm).
    """

    min_train_batch = 2

    @configurable
    def __init__(self, *, channels=192, backbone_layers=(3, 4, 6, 3), backbone_weights="", scan_backend=None,
                 input_size=384, pixel_mean=(0.485, 0.456, 0.406), pixel_std=(0.229, 0.224, 0.225),
                 test_outputs="prediction", test_minmax=True, train_sofs=False, weighted_bce=False,
                 add_reconstruction=False, reconstruction_weights=(0.125, 0.25, 0.5, 1.0), ual_weight=2.0,
                 ual_ramp="epoch", ual_ramp_iters=289, max_iter=1):
        if scan_backend not in (None, "", *BACKENDS):
            raise ValueError(f"MODEL.RUN.SCAN_BACKEND must be '' (by device) or one of {BACKENDS}, got {scan_backend!r}")
        super().__init__(channels, backbone_layers, backbone_weights, scan_backend or None)
        self.input_size = check_input_size(input_size)
        if test_outputs not in ("prediction", "all"):
            raise ValueError(f"MODEL.RUN.TEST_OUTPUTS must be 'prediction' or 'all', got {test_outputs!r}")
        if ual_ramp not in ("epoch", "global"):
            raise ValueError(f"MODEL.RUN.LOSS.UAL_RAMP must be 'epoch' or 'global', got {ual_ramp!r}")
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(3, 1, 1), False)
        self.test_outputs, self.test_minmax = test_outputs, test_minmax
        self.weighted_bce, self.add_reconstruction = weighted_bce, add_reconstruction
        self.reconstruction_weights = tuple(reconstruction_weights)
        self.ual_weight, self.ual_ramp, self.ual_ramp_iters, self.max_iter = ual_weight, ual_ramp, ual_ramp_iters, max_iter
        self.selective_mamba.requires_grad_(train_sofs)

    @classmethod
    def from_config(cls, cfg):
        r = cfg.MODEL.RUN
        return {
            "channels": r.CHANNELS, "backbone_layers": tuple(r.BACKBONE_LAYERS),
            "backbone_weights": r.BACKBONE_WEIGHTS, "scan_backend": r.SCAN_BACKEND or None,
            "input_size": check_input_size(r.INPUT_SIZE), "pixel_mean": tuple(r.PIXEL_MEAN),
            "pixel_std": tuple(r.PIXEL_STD), "test_outputs": r.TEST_OUTPUTS, "test_minmax": r.TEST_MINMAX,
            "train_sofs": r.TRAIN_SOFS, "weighted_bce": r.LOSS.WEIGHTED_BCE,
            "add_reconstruction": r.LOSS.ADD_RECONSTRUCTION,
            "reconstruction_weights": tuple(r.LOSS.RECONSTRUCTION_WEIGHTS), "ual_weight": r.LOSS.UAL_WEIGHT,
            "ual_ramp": r.LOSS.UAL_RAMP, "ual_ramp_iters": r.LOSS.UAL_RAMP_ITERS, "max_iter": cfg.SOLVER.MAX_ITER,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    def checkpoint_filter_fn(self, state_dict):
        """Released checkpoints load unchanged: a flat state dict (or one under "model"/"state_dict") whose keys
        carry the DDP prefix `module.` (or not). The SOFS keys (`selective_mamba.*`) that no released file holds
        keep this model's initialisation; they are reported in one line here (docs/run.md#q1)."""
        if isinstance(state_dict.get("model"), dict):
            state_dict = state_dict["model"]
        elif isinstance(state_dict.get("state_dict"), dict):
            state_dict = state_dict["state_dict"]
        out = strip_prefixes(state_dict)
        sofs = [k for k in self.state_dict() if k.startswith("selective_mamba.")]
        absent = [k for k in sofs if k not in out]
        if absent:
            logger.warning(
                f"RUN checkpoint has no SOFS weights: the {len(absent)} selective_mamba.* tensors keep their "
                "initialisation (released checkpoints cannot hold them; only outputs f4 and pred_b* depend on "
                "them, not the prediction: docs/run.md#q1)")
        return out

    def preprocess(self, batched_inputs):
        """uint8 (3, S, S) images -> normalised float32 (B, 3, S, S): ToTensor (/255) then Normalize."""
        images = []
        for x in batched_inputs:
            img = x["image"].to(self.device)
            if img.shape[-2:] != (self.input_size, self.input_size):
                raise ValueError(f"RUN expects images squashed to {self.input_size}x{self.input_size} by its mapper "
                                 f"(INPUT.TEST_MAPPER_NAME run_test_mapper), got {tuple(img.shape)}")
            images.append((img.float().div(255) - self.pixel_mean) / self.pixel_std)
        return torch.stack(images)

    def forward(self, batched_inputs):
        images = self.preprocess(batched_inputs)
        if self.training:
            return self.losses(images, batched_inputs)
        outs = self.run_network(images, self.test_outputs)
        return [self.postprocess(outs, i, x) for i, x in enumerate(batched_inputs)]

    def postprocess(self, outs, i, input_dict):
        """Official saved map of image i (docs/run.md#inference): stage-1 logits (already resized 96 -> S with
        align_corners=True) resized to (H, W) with align_corners=False, sigmoid, min-max (x - min) / (max - min
        + 1e-8)."""
        h, w = input_dict.get("height", self.input_size), input_dict.get("width", self.input_size)
        logits = F.interpolate(outs["f1"][i:i + 1].float(), size=(h, w), mode="bilinear", align_corners=False)
        sig = torch.sigmoid(logits)[0, 0]
        fg = (sig - sig.min()) / (sig.max() - sig.min() + 1e-8) if self.test_minmax else sig
        res = {"foreground": fg, "mask": (fg > 0.5).to(torch.uint8), "sigmoid": sig}
        if self.test_outputs == "all":
            res["run_outputs"] = {k: v[i] for k, v in outs.items()}
        return res

    def _ual_coef(self):
        it = get_event_storage().iter
        if self.ual_ramp == "epoch":  # restarts every epoch, i counted from 1 (docs/run.md#q9)
            return (1 - math.cos(math.pi * ((it % self.ual_ramp_iters) + 1) / self.ual_ramp_iters)) / 2
        return (1 - math.cos(math.pi * min(it + 1, self.max_iter) / self.max_iter)) / 2

    def losses(self, images, batched_inputs):
        """Official loss (docs/run.md#training): structure losses on pred_0, f4, f3, f2 (init) and f1 (final),
        dice on the three edge maps, UAL on f1 with its ramp; the ROBE reconstruction loss is logged, and added
        only with MODEL.RUN.LOSS.ADD_RECONSTRUCTION (docs/run.md#q2)."""
        gts = torch.stack([x["gt"] for x in batched_inputs]).to(self.device).float()
        edges = torch.stack([x["edge"] for x in batched_inputs]).to(self.device).float()
        o = self.run_network(images, "all", robe_grad=self.add_reconstruction)

        def s(pred):
            return structure_loss(pred, gts, weighted_bce=self.weighted_bce)

        losses = {
            "loss_init": 0.0625 * s(o["pred_0"]) + 0.125 * s(o["f4"]) + 0.25 * s(o["f3"]) + 0.5 * s(o["f2"]),
            "loss_final": s(o["f1"]),
            "loss_edge": 0.125 * dice_loss(o["bound_f3"], edges) + 0.25 * dice_loss(o["bound_f2"], edges)
            + 0.5 * dice_loss(o["bound_f1"], edges),
            "loss_ual": self.ual_weight * self._ual_coef() * uncertainty_loss(o["f1"]),
        }
        pairs = zip(("f4", "f3", "f2", "f1"), ("pred_b4", "pred_b3", "pred_b2", "pred_b1"), self.reconstruction_weights)
        with torch.set_grad_enabled(self.add_reconstruction and torch.is_grad_enabled()):
            rec = sum(wt * F.mse_loss(o[m] * images + o[b], images) for m, b, wt in pairs)
        if self.add_reconstruction:
            losses["loss_reconstruction"] = rec
        else:
            get_event_storage().put_scalar("run_loss_reconstruction_not_added", rec.item())
        return losses
