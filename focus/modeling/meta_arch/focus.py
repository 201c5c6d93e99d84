"""The FOCUS meta-architecture (docs/focus.md#overview): backbone -> FOCUSHead -> post-processing / losses."""
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

__all__ = ["FOCUS", "build_weight_dict", "merge_masks", "semantic_inference", "foreground_probability"]

LOSS_NAMES = ("masks", "labels", "clip", "boxes")


def build_weight_dict(mask_former_cfg):
    """Loss weights from `MODEL.MASK_FORMER` (docs/focus.md#losses): the six active terms, plus `_{i}` copies for the
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
    (docs/focus.md#inference step 9). The channels are not normalised against each other.
    """
    probs = F.softmax(mask_cls, dim=-1)[..., :-1]
    return torch.einsum("qc,qhw->chw", probs, mask_pred.sigmoid())


def foreground_probability(sem_seg):
    """Soft foreground map `sem_seg[0] / (sem_seg[0] + sem_seg[1])` in [0, 1], `(H, W)` (0 where both are 0).

    Consistent with the merge rule (`merge_masks`) when one query is foreground and the other background: with
    confident classes (`p[q_fg, 0] ~ p[q_bg, 1] ~ 1`) it reduces to `s_fg / (s_fg + s_bg)`, which is > 0.5 exactly
    where the rule's two-entry branch outputs `s_fg > s_bg`. It is the soft saliency map for the standard
    SOD/COD metrics (the official evaluation uses the binary mask, docs/focus.md#q2).
    """
    return sem_seg[0] / (sem_seg[0] + sem_seg[1]).clamp_min(1e-6)


def merge_masks(mask_cls, mask_pred, topk=4):
    """The official binary mask (`FOCUS.instance_inference` + `_merge_mask`, docs/focus.md#inference step 10,
    docs/focus.md#q3).

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
    """FOCUS foreground segmentation model (detectron2 meta-architecture, docs/focus.md#inference,
    docs/focus.md#training).

    Input: a list of dicts with `image` (`(3, h, w)` RGB, 0..255, already resized), optional `height`, `width`
    (output size, default `(h, w)`) and, in training, `instances` (`gt_masks (K, h, w)` bool, `gt_boxes` XYXY
    pixels, `gt_classes`; class 0 = foreground, 1 = background).

    Eval output per image (the member contract, `docs/members.md`): `foreground` `(height, width)` in [0, 1]
    (see `foreground_probability`), `mask` `(height, width)` int32, the official merged binary mask (`merge_masks`),
    plus `sem_seg` `(2, height, width)` float (channel 0 = foreground) and `instances` (`pred_masks` = `mask`).
    Training output: dict of weighted losses.

    `pixel_mean` / `pixel_std` are non-persistent buffers (not in the state dict).
    """

    # the pixel decoder runs with autocast disabled (docs/focus.md#pixel-decoder): its weights stay fp32 in
    # reduced-precision inference
    autocast_fp32_modules = ("sem_seg_head.pixel_decoder",)

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
    ):
        """
        Args:
            backbone: returns `{"res2".."res5"}` for a `(B, 3, H, W)` tensor; `size_divisibility` is used for padding
                (docs/focus.md#inference step 3: `MODEL.MASK_FORMER.SIZE_DIVISIBILITY` is ignored).
            sem_seg_head: `FOCUSHead`.
            criterion: `SetCriterion` (owns the loss weights in `weight_dict`).
            pixel_mean, pixel_std: per-channel normalisation (0..255 scale).
            size_divisibility: pad to a multiple of this (<= 0: use the backbone's).
            semantic_on, instance_on: which outputs to produce.
            sem_seg_postprocess_before_inference: crop and resize mask logits before inference (forced by
                `instance_on`, docs/focus.md#inference step 8).
            test_topk_per_image: entries of the merge rule (4 = all).
        """
        super().__init__()
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
            # docs/focus.md#inference step 3: the backbone's size_divisibility (32), not MASK_FORMER.SIZE_DIVISIBILITY
            "size_divisibility": backbone.size_divisibility,
            "semantic_on": mf.TEST.SEMANTIC_ON,
            "instance_on": mf.TEST.INSTANCE_ON,
            "sem_seg_postprocess_before_inference": (
                mf.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE or mf.TEST.PANOPTIC_ON or mf.TEST.INSTANCE_ON
            ),
            "test_topk_per_image": mf.TEST.DETECTIONS_PER_IMAGE,
        }

    @staticmethod
    def merge_tta_outputs(outputs, height, width):
        """Test-time augmentation merge (`focus.engine.tta`): the official TTA averages `sem_seg` over the copies
        (docs/focus.md#tta); `foreground` follows from the average and `mask = foreground > 0.5`, since the per-query
        merge rule has no meaning for an average over queries of different runs."""
        sem_seg = torch.stack([o["sem_seg"] for o in outputs]).mean(0)
        foreground = foreground_probability(sem_seg)
        mask = (foreground > 0.5).to(torch.int32)
        instances = Instances((height, width))
        instances.pred_masks = mask
        return {"sem_seg": sem_seg, "foreground": foreground, "mask": mask, "instances": instances}

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
        from detectron2 `Instances` (docs/focus.md#targets)."""
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

    @property
    def find_unused_parameters(self):
        """True when a training forward leaves trainable parameters unused, for DistributedDataParallel: without
        the CLIP branch the decoder's `image_embed` / `text_embed` heads (always built, checkpoint keys) get no
        gradient. docs/focus.md#t7"""
        return getattr(self.sem_seg_head.predictor, "clip_refiner", None) is None

    def on_weights_loaded(self):
        """Called by the trainer after every weight load (build, `resume_or_load`): submodules with their own
        `on_weights_loaded` (the CLIP refiner's cached text features) refresh what they derived from weights."""
        for module in self.modules():
            if module is not self and hasattr(module, "on_weights_loaded"):
                module.on_weights_loaded()

    def _forward_inference(self, batched_inputs, images):
        features = self.backbone(images.tensor)  # fp32 input: the backbone casts after the edge overlay
        outputs = self.sem_seg_head(features, images.tensor)
        # post-processing in fp32 also under a caller's autocast (its einsum would otherwise run in bf16)
        with torch.autocast(device_type=self.device.type, enabled=False):
            return self._postprocess(outputs, batched_inputs, images)

    def _postprocess(self, outputs, batched_inputs, images):
        mask_cls_results = outputs["pred_logits"].float()
        # docs/focus.md#inference step 7: first resize to the padded input size
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
                # docs/focus.md#inference step 8: crop the padding, then a second bilinear resize to (height, width)
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
                result["mask"] = instances.pred_masks
            processed_results.append(result)
        return processed_results
