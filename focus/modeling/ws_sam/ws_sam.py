"""The WS-SAM meta-architecture: ResNet-50 -> global prior + texture enhancement + MFG + fusion -> decoders."""
import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from torch import nn
from torch.nn import functional as F

from ..backbone.resnet import ResNetFeatures
from ..checkpoint import strip_prefixes
from ..losses.structure import structure_loss, uncertainty_loss
from ..losses.weak import cosine_ramp, partial_bce
from .modules import DecoderChain, FusionNeck, GlobalPrior

__all__ = ["WSSAM", "binary_entropy", "pseudo_pixel_weights"]

_PIXEL_WEIGHTINGS = ("none", "hard", "entropy")
_RAMPS = ("epoch", "global")


def binary_entropy(p, eps=1e-10):
    """Binary entropy in bits of probabilities `p` (any shape), 0 at p in {0, 1}, 1 at p = 0.5."""
    p = p.clamp(0, 1)
    h = -(p * torch.log2(p + eps) + (1 - p) * torch.log2(1 - p + eps))
    return h.clamp(min=0)


def pseudo_pixel_weights(target, mode):
    """Per-pixel weights of a soft pseudo mask `target` in [0, 1] (any shape), or None for `mode` "none".

    "hard": 0 where `0.3 < target < 0.7`, 1 elsewhere (the official variant); "entropy": `1 - H(target)` with
    `H` the binary entropy in bits (docs/ws_sam.md#r4).
    """
    if mode == "none":
        return None
    if mode == "hard":
        return ((target <= 0.3) | (target >= 0.7)).to(target.dtype)
    if mode == "entropy":
        return 1 - binary_entropy(target)
    raise ValueError(f"MODEL.WS_SAM.PIXEL_WEIGHTING must be one of {_PIXEL_WEIGHTINGS}, got {mode!r}")


@META_ARCH_REGISTRY.register()
class WSSAM(nn.Module):
    """WS-SAM segmentation network (NeurIPS 2023), parameter names of the released checkpoint.

    Input: a list of dicts with `image` (3, S, S) uint8/float RGB 0..255 at the network size (the test mapper
    squashes every image to S = `INPUT.WS_SAM.SIZE`), `height`, `width` (output size). Training dicts add any of
    `pseudo` (S, S) float soft pseudo mask in [0, 1], `pseudo_weight` (S, S) float per-pixel weights, `sparse`
    (S, S) int64 sparse labels (1 foreground, 0 background, -1 unlabelled).

    Eval output per image: `foreground` (height, width) float in [0, 1]: the official saved map, i.e. sigmoid of
    the finest logits resized to (height, width), min-max normalised per image (docs/ws_sam.md#q6, key
    `MODEL.WS_SAM.TEST_MINMAX`); `mask` (height, width) uint8 = `foreground > mask_threshold`; `logits` (1, S, S)
    the finest logits at network size. Training output: `loss_pseudo`, `loss_sparse`, `loss_ual` (weighted).
    """

    @configurable
    def __init__(
        self,
        *,
        backbone,
        prior,
        neck,
        decoder,
        pixel_mean,
        pixel_std,
        test_minmax=True,
        mask_threshold=0.5,
        deep_supervision_weights=(0.0625, 0.125, 0.25, 0.5, 1.0),
        pseudo_weight=1.0,
        sparse_weight=3.0,
        ual_weight=2.0,
        pixel_weighting="none",
        fix_structure_bce=False,
        ual_ramp="epoch",
        ramp_iters=113,
    ):
        """
        Args:
            backbone: returns five maps (strides 2..32) of an image batch; the last four are used.
            prior (GlobalPrior), neck (FusionNeck), decoder (DecoderChain): the released head.
            pixel_mean, pixel_std: normalisation on the 0..1 RGB scale.
            test_minmax: min-max normalise the soft map per image (official).
            mask_threshold: threshold of `mask`.
            deep_supervision_weights: weights of the losses of (prior, p4, p3, p2, p1).
            pseudo_weight, sparse_weight, ual_weight: weights of the three loss terms.
            pixel_weighting: "none", "hard" or "entropy" weights of the pseudo-mask loss (when the input dict has no
                `pseudo_weight`).
            fix_structure_bce: make the structure loss BCE use its edge weights (docs/ws_sam.md#q4).
            ual_ramp: "epoch" (official: ramp restarts every `ramp_iters` iterations) or "global" (once over
                `ramp_iters` iterations).
            ramp_iters: ramp period in iterations.
        """
        super().__init__()
        if pixel_weighting not in _PIXEL_WEIGHTINGS:
            raise ValueError(f"MODEL.WS_SAM.PIXEL_WEIGHTING must be one of {_PIXEL_WEIGHTINGS}, got {pixel_weighting!r}")
        if ual_ramp not in _RAMPS:
            raise ValueError(f"MODEL.WS_SAM.UAL_RAMP must be one of {_RAMPS}, got {ual_ramp!r}")
        self.shared_encoder = backbone
        self.GPM = prior
        self.gcm_interFA = neck
        self.rem_decoder = decoder
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)
        self.test_minmax = test_minmax
        self.mask_threshold = mask_threshold
        self.deep_supervision_weights = tuple(deep_supervision_weights)
        self.pseudo_weight, self.sparse_weight, self.ual_weight = pseudo_weight, sparse_weight, ual_weight
        self.pixel_weighting = pixel_weighting
        self.fix_structure_bce = fix_structure_bce
        self.ual_ramp, self.ramp_iters = ual_ramp, ramp_iters
        self._iter = 0  # fallback iteration count outside a detectron2 trainer

    @classmethod
    def from_config(cls, cfg):
        m = cfg.MODEL.WS_SAM
        res = (m.SLOT_RESOLUTION, m.SLOT_RESOLUTION)
        backbone = ResNetFeatures(depths=m.BACKBONE_DEPTHS)
        ramp_iters = m.ITERS_PER_EPOCH if m.UAL_RAMP == "epoch" else cfg.SOLVER.MAX_ITER
        return {
            "backbone": backbone,
            "prior": GlobalPrior(backbone.channels[-1], m.CHANNELS),
            "neck": FusionNeck(backbone.channels[1:], m.CHANNELS, res, m.NUM_SLOTS, m.SLOT_ITERS,
                               size_key="INPUT.WS_SAM.SIZE"),
            "decoder": DecoderChain(m.CHANNELS),
            "pixel_mean": m.PIXEL_MEAN,
            "pixel_std": m.PIXEL_STD,
            "test_minmax": m.TEST_MINMAX,
            "mask_threshold": m.MASK_THRESHOLD,
            "deep_supervision_weights": m.DEEP_SUPERVISION_WEIGHTS,
            "pseudo_weight": m.PSEUDO_WEIGHT,
            "sparse_weight": m.SCRIBBLE_WEIGHT,
            "ual_weight": m.UAL_WEIGHT,
            "pixel_weighting": m.PIXEL_WEIGHTING,
            "fix_structure_bce": m.FIX_STRUCTURE_BCE,
            "ual_ramp": m.UAL_RAMP,
            "ramp_iters": ramp_iters,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    def checkpoint_filter_fn(self, state_dict):
        """Released checkpoints are saved from `DataParallel` (`module.` prefix); `_orig_mod.` from
        `torch.compile`. Both are stripped; nothing else is renamed."""
        return strip_prefixes(state_dict)

    def preprocess_image(self, batched_inputs):
        """(B, 3, S, S) float32: `(image / 255 - mean) / std` (all images of a batch share the network size)."""
        images = torch.stack([x["image"].to(self.device) for x in batched_inputs])
        return (images.float() / 255.0 - self.pixel_mean) / self.pixel_std

    def forward_logits(self, images):
        """`images` (B, 3, S, S) normalised -> `(prior, p4, p3, p2, p1)`, each (B, 1, S, S) logits.

        The 12x12 prior is upsampled to S before `decoder4` resizes it back (docs/ws_sam.md#q3).
        """
        size = images.shape[-2:]
        images = images.to(self.shared_encoder.conv1.weight.dtype)  # weights stored in bf16/fp16 (prepare_for_inference)
        _, x1, x2, x3, x4 = self.shared_encoder(images)
        prior = F.interpolate(self.GPM(x4), size=size, mode="bilinear", align_corners=False)
        f1, f2, f3, f4 = self.gcm_interFA(x1, x2, x3, x4)
        preds = self.rem_decoder(f1, f2, f3, f4, prior)
        return (prior,) + tuple(F.interpolate(p, size=size, mode="bilinear", align_corners=False) for p in preds)

    def forward(self, batched_inputs):
        """See the class docstring."""
        images = self.preprocess_image(batched_inputs)
        outputs = self.forward_logits(images)
        if self.training:
            return self.losses(outputs, batched_inputs)
        return [self.postprocess(p1, x) for p1, x in zip(outputs[-1], batched_inputs)]

    def postprocess(self, logits, input_dict):
        """`logits` (1, S, S) -> output dict at the input dict's `height` x `width`."""
        h = input_dict.get("height", logits.shape[-2])
        w = input_dict.get("width", logits.shape[-1])
        prob = torch.sigmoid(F.interpolate(logits[None].float(), size=(h, w), mode="bilinear", align_corners=False))[0, 0]
        if self.test_minmax:  # docs/ws_sam.md#q6
            prob = (prob - prob.min()) / (prob.max() - prob.min() + 1e-8)
        return {"foreground": prob, "mask": (prob > self.mask_threshold).to(torch.uint8), "logits": logits}

    def _ramp(self):
        try:
            from detectron2.utils.events import get_event_storage

            it = get_event_storage().iter
        except (AssertionError, ImportError):
            it = self._iter
            self._iter += 1
        if self.ual_ramp == "epoch":  # docs/ws_sam.md#q5: index within the epoch, 1..N
            return cosine_ramp((it % self.ramp_iters + 1) / self.ramp_iters)
        return cosine_ramp((it + 1) / self.ramp_iters)

    def _stack(self, batched_inputs, key, dtype):
        if not all(key in x for x in batched_inputs):
            if any(key in x for x in batched_inputs):
                raise KeyError(f"`{key}` is in some training inputs of the batch but not in all")
            return None
        return torch.stack([torch.as_tensor(x[key]) for x in batched_inputs]).to(self.device, dtype)[:, None]

    def losses(self, outputs, batched_inputs):
        """Weighted loss terms of the WS-SAM training (docs/ws_sam.md#losses) for the five logit maps."""
        pseudo = self._stack(batched_inputs, "pseudo", torch.float32)
        sparse = self._stack(batched_inputs, "sparse", torch.int64)
        if pseudo is None and sparse is None:
            raise KeyError("WS-SAM training needs `pseudo` and/or `sparse` labels in the input dicts")
        weights = self._stack(batched_inputs, "pseudo_weight", torch.float32)
        losses = {}
        dsw = self.deep_supervision_weights
        if pseudo is not None:
            if weights is None:
                weights = pseudo_pixel_weights(pseudo, self.pixel_weighting)
            loss = sum(
                w * structure_loss(p, pseudo, self.fix_structure_bce, pixel_weight=weights, iou_eps=0.0)
                for w, p in zip(dsw, outputs)
            )
            losses["loss_pseudo"] = self.pseudo_weight * loss
        if sparse is not None:
            losses["loss_sparse"] = self.sparse_weight * sum(w * partial_bce(p, sparse) for w, p in zip(dsw, outputs))
        losses["loss_ual"] = self.ual_weight * self._ramp() * uncertainty_loss(outputs[-1])
        return losses
