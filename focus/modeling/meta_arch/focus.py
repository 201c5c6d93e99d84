"""The FOCUS meta-architecture (spec §1): backbone -> FOCUSHead -> post-processing / losses."""
import contextlib

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone, build_sem_seg_head
from detectron2.modeling.postprocessing import sem_seg_postprocess
from detectron2.structures import ImageList, Instances
from torch import nn
from torch.nn import functional as F

from ..box_ops import box_xyxy_to_cxcywh
from ..criterion import SetCriterion
from ..matcher import HungarianMatcher
from ..packing import pack_linears, unpack_linears
from ..precision import autocast_parameter_names, store_parameters_in

__all__ = ["FOCUS", "build_weight_dict", "merge_masks", "semantic_inference", "foreground_probability"]

_INFERENCE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_INFERENCE_CASTS = ("autocast", "full")
LOSS_NAMES = ("masks", "labels", "clip", "boxes")


def build_weight_dict(mask_former_cfg):
    """Loss weights from `MODEL.MASK_FORMER` (spec §7.3): the six active terms, plus `_{i}` copies for the
    `DEC_LAYERS - 1` auxiliary predictions when `DEEP_SUPERVISION`. Losses whose key is absent are dropped."""
    mf = mask_former_cfg
    weight_dict = {
        "loss_ce": mf.CLASS_WEIGHT,
        "loss_mask": mf.MASK_WEIGHT,
        "loss_dice": mf.DICE_WEIGHT,
        "loss_clip": mf.CLIP_WEIGHT,
        "loss_bbox": mf.BBOX_WEIGHT,
        "loss_giou": mf.GIOU_WEIGHT,
    }
    if mf.DEEP_SUPERVISION:
        aux = {}
        for i in range(mf.DEC_LAYERS - 1):
            aux.update({f"{k}_{i}": v for k, v in weight_dict.items()})
        weight_dict.update(aux)
    return weight_dict


def semantic_inference(mask_cls, mask_pred):
    """`sem_seg[c] = sum_q softmax(mask_cls)[q, c] * sigmoid(mask_pred[q])` without the no-object column.

    `mask_cls` `(Q, K+1)` logits, `mask_pred` `(Q, H, W)` logits -> `(K, H, W)`; channel 0 = foreground
    (spec §1.2 step 9). The channels are not normalised against each other.
    """
    probs = F.softmax(mask_cls, dim=-1)[..., :-1]
    return torch.einsum("qc,qhw->chw", probs, mask_pred.sigmoid())


def foreground_probability(sem_seg):
    """Soft foreground map `sem_seg[0] / (sem_seg[0] + sem_seg[1])` in [0, 1], `(H, W)` (0 where both are 0).

    Consistent with the merge rule (`merge_masks`) when one query is foreground and the other background: with
    confident classes (`p[q_fg, 0] ~ p[q_bg, 1] ~ 1`) it reduces to `s_fg / (s_fg + s_bg)`, which is > 0.5 exactly
    where the rule's two-entry branch outputs `s_fg > s_bg`. It is the soft saliency map for the standard
    SOD/COD metrics (the official evaluation uses the binary mask, spec §13 item 2).
    """
    return sem_seg[0] / (sem_seg[0] + sem_seg[1]).clamp_min(1e-6)


def merge_masks(mask_cls, mask_pred, topk=4):
    """The official binary mask (`FOCUS.instance_inference` + `_merge_mask`, spec §1.2 step 10, §13 item 3).

    Args:
        mask_cls: `(Q, K+1)` class logits (K = 2: 0 = foreground, 1 = background, K = no-object).
        mask_pred: `(Q, H, W)` mask logits at the output size.
        topk: entries kept from the Q*K (query, class) pairs (`TEST.DETECTIONS_PER_IMAGE`, 4 = all).

    Returns:
        `(H, W)` int32, 1 = foreground.

    Entry `(q, c)` scores `p[q, c] * m_q` with `m_q = sum(s_q^2) / (sum(s_q) + 1e-6)`, `s_q = sigmoid(mask_q)`.
    The entries are visited in `topk(sorted=False)` order; on CPU that order is an implementation-defined
    partial (heap) order, neither sorted nor by index (e.g. scores [.1, .2, .3, .4] -> indices [2, 3, 1, 0]).
    Entries with score > 0.5 are collected, skipping one whose class equals the previously collected class,
    until two are collected; two collected entries (necessarily a foreground entry of one query and a background
    entry of the other, since `p[q, 0] + p[q, 1] <= 1` and `m_q <= 1`) give `s_fg > s_bg`; otherwise the
    best-scoring entry gives `s > 0.5` (foreground class) or `s < 0.5` (background class). The result depends on
    the visiting order only through ties of the maximum.
    """
    num_queries, num_cls = mask_cls.shape[0], mask_cls.shape[1] - 1
    scores = F.softmax(mask_cls, dim=-1)[:, :-1]
    labels = torch.arange(num_cls, device=mask_cls.device).repeat(num_queries)
    scores_per_entry, topk_indices = scores.flatten(0, 1).topk(min(topk, num_queries * num_cls), sorted=False)
    labels_per_entry = labels[topk_indices]
    query_per_entry = torch.div(topk_indices, num_cls, rounding_mode="floor")
    s = mask_pred.sigmoid()[query_per_entry]
    mask_scores = (s.flatten(1) * s.flatten(1)).sum(1) / (s.flatten(1).sum(1) + 1e-6)
    entry_scores = (scores_per_entry * mask_scores).tolist()  # one host sync per image
    entry_labels = labels_per_entry.tolist()

    collected = []
    for i, score in enumerate(entry_scores):
        if score <= 0.5:
            continue
        if collected and entry_labels[i] == entry_labels[collected[-1]]:
            continue
        collected.append(i)
        if len(collected) == 2:
            break
    if len(collected) == 2:
        fg, bg = collected if entry_labels[collected[0]] == 0 else collected[::-1]
        mask = s[fg] > s[bg]
    else:
        best = max(range(len(entry_scores)), key=entry_scores.__getitem__)  # first maximum, as argmax
        mask = s[best] > 0.5 if entry_labels[best] == 0 else s[best] < 0.5
    return mask.to(torch.int32)


@META_ARCH_REGISTRY.register()
class FOCUS(nn.Module):
    """FOCUS foreground segmentation model (detectron2 meta-architecture, spec §1.2-1.3).

    Input: a list of dicts with `image` (`(3, h, w)` RGB, 0..255, already resized), optional `height`, `width`
    (output size, default `(h, w)`) and, in training, `instances` (`gt_masks (K, h, w)` bool, `gt_boxes` XYXY
    pixels, `gt_classes`; class 0 = foreground, 1 = background).

    Eval output per image: `sem_seg` `(2, height, width)` float (channel 0 = foreground), `instances` (only
    `pred_masks`, `(height, width)` int32, the official merged binary mask) and `foreground` `(height, width)` in
    [0, 1] (see `foreground_probability`). Training output: dict of weighted losses.

    `pixel_mean` / `pixel_std` are non-persistent buffers (not in the state dict).
    """

    @configurable
    def __init__(
        self,
        *,
        backbone,
        sem_seg_head,
        criterion,
        pixel_mean,
        pixel_std,
        size_divisibility=32,
        semantic_on=True,
        instance_on=True,
        sem_seg_postprocess_before_inference=True,
        test_topk_per_image=4,
        inference_dtype="fp32",
        inference_cast="autocast",
        inference_pack=True,
    ):
        """
        Args:
            backbone: returns `{"res2".."res5"}` for a `(B, 3, H, W)` tensor; `size_divisibility` is used for padding
                (spec §1.2 step 3: `MODEL.MASK_FORMER.SIZE_DIVISIBILITY` is ignored).
            sem_seg_head: `FOCUSHead`.
            criterion: `SetCriterion` (owns the loss weights in `weight_dict`).
            pixel_mean, pixel_std: per-channel normalisation (0..255 scale).
            size_divisibility: pad to a multiple of this (<= 0: use the backbone's).
            semantic_on, instance_on: which outputs to produce.
            sem_seg_postprocess_before_inference: crop and resize mask logits before inference (forced by
                `instance_on`, spec §1.2 step 8).
            test_topk_per_image: entries of the merge rule (4 = all).
            inference_dtype: "fp32", "bf16" or "fp16": reduced-precision inference in eval (outputs are float32).
            inference_cast: how a reduced `inference_dtype` is applied. "autocast": the weights that autocast
                rounds anyway (linear, convolution, attention in-projection) are stored in the dtype and the
                forward runs under `torch.autocast`, so norms, residuals and the pixel decoder (autocast off,
                spec §4) stay fp32: the outputs are those of the fp32 model under autocast, bit for bit. "full":
                every weight and activation in the dtype, faster and further from fp32.
            inference_pack: in eval on CPU, run the `nn.Linear` layers through oneDNN with weights packed once
                (`focus.modeling.packing`): 25-35 % faster matrix products than `F.linear` here, same values up to
                the summation order; unpacked again before training, loading, casting or moving the model.
        """
        super().__init__()
        if inference_dtype not in _INFERENCE_DTYPES:
            raise ValueError(
                f"MODEL.FOCUS.INFERENCE_DTYPE must be one of {sorted(_INFERENCE_DTYPES)}, got {inference_dtype!r}"
            )
        if inference_cast not in _INFERENCE_CASTS:
            raise ValueError(
                f"MODEL.FOCUS.INFERENCE_CAST must be one of {list(_INFERENCE_CASTS)}, got {inference_cast!r}"
            )
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.criterion = criterion
        if size_divisibility <= 0:
            size_divisibility = backbone.size_divisibility
        self.size_divisibility = size_divisibility
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.semantic_on = semantic_on
        self.instance_on = instance_on
        self.sem_seg_postprocess_before_inference = sem_seg_postprocess_before_inference or instance_on
        self.test_topk_per_image = test_topk_per_image
        self.inference_dtype = _INFERENCE_DTYPES[inference_dtype]
        self.inference_cast = inference_cast
        self.inference_pack = inference_pack
        self._cast_dtype = torch.float32

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        sem_seg_head = build_sem_seg_head(cfg, backbone.output_shape())
        mf = cfg.MODEL.MASK_FORMER
        matcher = HungarianMatcher(
            cost_class=mf.CLASS_WEIGHT,
            cost_mask=mf.MASK_WEIGHT,
            cost_dice=mf.DICE_WEIGHT,
            num_points=mf.TRAIN_NUM_POINTS,
        )
        criterion = SetCriterion(
            sem_seg_head.num_classes,
            matcher=matcher,
            weight_dict=build_weight_dict(mf),
            eos_coef=mf.NO_OBJECT_WEIGHT,
            losses=list(LOSS_NAMES),
            num_points=mf.TRAIN_NUM_POINTS,
            oversample_ratio=mf.OVERSAMPLE_RATIO,
            importance_sample_ratio=mf.IMPORTANCE_SAMPLE_RATIO,
            fix_clip_target=cfg.MODEL.CLIP_REFINER.FIX_LOSS_TARGET,
            clip_loss_fp32=cfg.MODEL.CLIP_REFINER.LOSS_FP32,
        )
        return {
            "backbone": backbone,
            "sem_seg_head": sem_seg_head,
            "criterion": criterion,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            # spec §1.2 step 3: the backbone's size_divisibility (32), not MASK_FORMER.SIZE_DIVISIBILITY
            "size_divisibility": backbone.size_divisibility,
            "semantic_on": mf.TEST.SEMANTIC_ON,
            "instance_on": mf.TEST.INSTANCE_ON,
            "sem_seg_postprocess_before_inference": (
                mf.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE or mf.TEST.PANOPTIC_ON or mf.TEST.INSTANCE_ON
            ),
            "test_topk_per_image": mf.TEST.DETECTIONS_PER_IMAGE,
            "inference_dtype": cfg.MODEL.FOCUS.INFERENCE_DTYPE,
            "inference_cast": cfg.MODEL.FOCUS.INFERENCE_CAST,
            "inference_pack": cfg.MODEL.FOCUS.INFERENCE_PACK,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs):
        """Normalise each image and zero-pad (in normalised space) to a multiple of `size_divisibility`."""
        images = [x["image"].to(self.device) for x in batched_inputs]
        images = [(x - self.pixel_mean) / self.pixel_std for x in images]
        return ImageList.from_tensors(images, self.size_divisibility)

    def forward(self, batched_inputs):
        """See the class docstring."""
        images = self.preprocess_image(batched_inputs)
        if self.training:
            return self._forward_train(batched_inputs, images)
        return self._forward_inference(batched_inputs, images)

    def _forward_train(self, batched_inputs, images):
        if "instances" not in batched_inputs[0]:
            raise KeyError("FOCUS training needs `instances` in every input dict (see FocusDatasetMapper)")
        features = self.backbone(images.tensor)
        outputs = self.sem_seg_head(features, images.tensor)
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        targets = self.prepare_targets(gt_instances, images)
        losses = self.criterion(outputs, targets)
        weight_dict = self.criterion.weight_dict
        for k in list(losses):
            if k in weight_dict:
                losses[k] = losses[k] * weight_dict[k]
            else:
                losses.pop(k)
        return losses

    def prepare_targets(self, targets, images):
        """Per image `{"labels", "masks" (K, H_pad, W_pad) zero-padded, "boxes" (K, 4) normalised cxcywh}`
        from detectron2 `Instances` (spec §7.1)."""
        h_pad, w_pad = images.tensor.shape[-2:]
        scale = torch.as_tensor([w_pad, h_pad, w_pad, h_pad], dtype=torch.float, device=self.device)
        new_targets = []
        for t in targets:
            gt_masks = t.gt_masks.tensor if hasattr(t.gt_masks, "tensor") else t.gt_masks
            padded = gt_masks.new_zeros((gt_masks.shape[0], h_pad, w_pad))
            padded[:, : gt_masks.shape[1], : gt_masks.shape[2]] = gt_masks
            new_targets.append(
                {
                    "labels": t.gt_classes,
                    "masks": padded,
                    "boxes": box_xyxy_to_cxcywh(t.gt_boxes.tensor / scale),
                }
            )
        return new_targets

    def _cast_for_inference(self):
        """Store the backbone and head weights in `inference_dtype` as `inference_cast` says (once per dtype)."""
        if self._cast_dtype == self.inference_dtype:
            return
        unpack_linears(self)
        dtype = self.inference_dtype
        if self.inference_cast == "full" or dtype == torch.float32:
            self.backbone.to(dtype)
            self.sem_seg_head.to(dtype)
        else:
            # the pixel decoder runs with autocast disabled (spec §4), so all of it stays fp32
            for module in (self.backbone, self.sem_seg_head.predictor):
                store_parameters_in(module, autocast_parameter_names(module), dtype, others=torch.float32)
            self.sem_seg_head.pixel_decoder.float()
        self._cast_dtype = dtype

    def _inference_precision(self):
        """The autocast context of a reduced-precision "autocast" inference, else a null context."""
        if self.inference_dtype == torch.float32 or self.inference_cast != "autocast":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.inference_dtype, cache_enabled=False)

    @property
    def find_unused_parameters(self):
        """True when a training forward leaves trainable parameters unused, for DistributedDataParallel: without
        the CLIP branch the decoder's `image_embed` / `text_embed` heads (always built, checkpoint keys) get no
        gradient. docs/focus_training.md#t7"""
        return getattr(self.sem_seg_head.predictor, "clip_refiner", None) is None

    def on_weights_loaded(self):
        """Called by the trainer after every weight load (build, `resume_or_load`): submodules with their own
        `on_weights_loaded` (the CLIP refiner's cached text features) refresh what they derived from weights."""
        for module in self.modules():
            if module is not self and hasattr(module, "on_weights_loaded"):
                module.on_weights_loaded()

    def train(self, mode=True):
        """Also restores dense weights when switching to training (see `inference_pack`)."""
        if mode:
            unpack_linears(self)
        return super().train(mode)

    def __getstate__(self):
        # pickling / deepcopy see dense weights (oneDNN's packed tensors have no storage to copy)
        unpack_linears(self)
        return self.__dict__.copy()  # object.__getstate__ only exists from Python 3.11

    def _apply(self, fn, *args, **kwargs):
        # `.to()` / `.cuda()` / `.half()` act on dense weights (packed copies are CPU-only and dtype-bound)
        unpack_linears(self)
        return super()._apply(fn, *args, **kwargs)

    def _forward_inference(self, batched_inputs, images):
        if self.inference_dtype != torch.float32:
            self._cast_for_inference()
        if self.inference_pack and not torch.is_grad_enabled():
            pack_linears(self)
        with self._inference_precision():
            features = self.backbone(images.tensor)  # fp32 input: the backbone casts after the edge overlay
            outputs = self.sem_seg_head(features, images.tensor)
        mask_cls_results = outputs["pred_logits"].float()
        # spec §1.2 step 7: first resize to the padded input size
        mask_pred_results = F.interpolate(
            outputs["pred_masks"].float(), size=images.tensor.shape[-2:], mode="bilinear", align_corners=False
        )
        del outputs

        processed_results = []
        for mask_cls, mask_pred, input_per_image, image_size in zip(
            mask_cls_results, mask_pred_results, batched_inputs, images.image_sizes
        ):
            height = input_per_image.get("height", image_size[0])
            width = input_per_image.get("width", image_size[1])
            result = {}
            if self.sem_seg_postprocess_before_inference:
                # spec §1.2 step 8: crop the padding, then a second bilinear resize to (height, width)
                mask_pred = sem_seg_postprocess(mask_pred, image_size, height, width)
            if self.semantic_on:
                sem_seg = semantic_inference(mask_cls, mask_pred)
                if not self.sem_seg_postprocess_before_inference:
                    sem_seg = sem_seg_postprocess(sem_seg, image_size, height, width)
                result["sem_seg"] = sem_seg
                result["foreground"] = foreground_probability(sem_seg)
            if self.instance_on:
                instances = Instances((height, width))
                instances.pred_masks = merge_masks(mask_cls, mask_pred, self.test_topk_per_image)
                result["instances"] = instances
            processed_results.append(result)
        return processed_results
