"""`FOCUSCLIPRefiner`: CLIP region and text features for the contrastive distillation loss (docs/focus.md#clip).

Used in training only (docs/focus.md#clip-training-only): the transformer decoder calls `region_features` after every
prediction head and projects the result with its `image_embed` / `text_embed` heads; the criterion's `loss_clip`
compares them. Nothing at inference reads CLIP.
"""

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..precision import autocast_parameter_names, store_parameters_in
from .clip_model import (
    CLIP_PIXEL_MEAN,
    CLIP_PIXEL_STD,
    open_clip_name,
    build_clip_model,
    encode_image_with_mask_prompt,
    encode_text,
)
from .templates import VILD_TEMPLATES, get_templates

__all__ = ["FOCUSCLIPRefiner", "build_clip_refiner"]

NO_OBJECT_PROMPT = "None"


class FOCUSCLIPRefiner(nn.Module):
    """Frozen CLIP (OpenAI architecture, mask-prompted visual tower) producing per-query region features and
    the text features of the prompts of the predicted classes.

    State (keys equal the official ones): `clip_model.*` (frozen except `clip_model.visual.mask_embedding`),
    `non_object_embedding` `(1, E)` (unused by the loss), buffers `pixel_mean` / `pixel_std` `(1, 3, 1, 1)` =
    255 · CLIP mean / std. The text-feature cache is a plain dict (not state).
    """

    @configurable
    def __init__(
        self,
        *,
        prompts,
        clip_model_name="ViT-B/16",
        mask_prompt_depth=3,
        text_templates=VILD_TEMPLATES,
        weights="",
        allow_random_weights=False,
        mask_prompt_fwd=True,
        fix_region_inputs=False,
        mask_thr=0.5,
        input_pixel_mean=(123.675, 116.28, 103.53),
        input_pixel_std=(58.395, 57.12, 57.375),
    ):
        """
        Args:
            prompts: one prompt per real class (index 0 = foreground, 1 = background); `"None"` is appended
                for the no-object class.
            clip_model_name: OpenAI CLIP model name ("ViT-B/16").
            mask_prompt_depth: number of mask-prompt embeddings.
            text_templates: templates with one `{}`; text features are averaged over them.
            weights: "" (random tower, to be loaded from a FOCUS checkpoint), "openai" (OpenAI's released weights,
                fetched by open_clip) or a local CLIP state-dict file.
            allow_random_weights: accept training with a tower that no weights reached (tests, quick start);
                otherwise the first training forward without loaded tower weights raises (docs/focus.md#t2).
            mask_prompt_fwd: pass the region masks to the visual tower as mask prompts.
            fix_region_inputs: False = official region inputs (double sigmoid, so the mask prompt is inert;
                CLIP statistics applied to the ImageNet-normalised tensor; docs/focus.md#q7). True = single
                sigmoid for the region weights, mask prompt = (weight > `mask_thr`) so that patches outside
                the region get the mask embedding, CLIP statistics applied to the un-normalised RGB image.
            mask_thr: binarisation threshold of the mask prompt when `fix_region_inputs`.
            input_pixel_mean, input_pixel_std: statistics that normalised the input images (0..255 RGB),
                used to recover RGB when `fix_region_inputs`.
        """
        super().__init__()
        if len(prompts) == 0:
            raise ValueError("MODEL.CLIP_REFINER.PROMPTS is empty: one prompt per class is needed for CLIP")
        self.clip_model = build_clip_model(clip_model_name, mask_prompt_depth, weights)
        self.tower_loaded = bool(weights)  # also set when a state dict with the tower's keys is loaded
        self.allow_random_weights = allow_random_weights
        embed_dim = self.clip_model.text_projection.shape[1]
        self.non_object_embedding = nn.Parameter(torch.randn(1, embed_dim) * embed_dim**-0.5)
        self.register_buffer("pixel_mean", 255 * torch.tensor(CLIP_PIXEL_MEAN).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", 255 * torch.tensor(CLIP_PIXEL_STD).view(1, 3, 1, 1))
        self.prompts = list(prompts) + [NO_OBJECT_PROMPT]
        self.templates = tuple(text_templates)
        import open_clip  # not at module import: see clip_model

        self.tokenizer = open_clip.get_tokenizer(open_clip_name(clip_model_name))
        self.mask_prompt_fwd = mask_prompt_fwd
        self.fix_region_inputs = fix_region_inputs
        self.mask_thr = mask_thr
        self.input_pixel_mean = tuple(input_pixel_mean)
        self.input_pixel_std = tuple(input_pixel_std)
        self.input_size = self.clip_model.visual.image_size[0]
        self.text_feature_buffer = {}  # prompt → (E,) fp32, not part of the state dict
        self._low_precision_keys = set()  # keys that `store_frozen_in` narrowed; saved as fp32
        self._frozen_dtype = None  # dtype of `store_frozen_in`, re-applied after every load
        self._register_state_dict_hook(FOCUSCLIPRefiner._fp32_state_dict_hook)
        self._register_load_state_dict_pre_hook(self._before_load)
        self.register_load_state_dict_post_hook(FOCUSCLIPRefiner._after_load)

    @classmethod
    def from_config(cls, cfg):
        c = cfg.MODEL.CLIP_REFINER
        return {
            "prompts": list(c.PROMPTS),
            "clip_model_name": c.CLIP_MODEL_NAME,
            "mask_prompt_depth": c.MASK_PROMPT_DEPTH,
            "text_templates": get_templates(c.TEXT_TEMPLATES, c.PREDEFINED_PROMPT_TEMPLATES),
            "weights": c.WEIGHTS,
            "allow_random_weights": c.ALLOW_RANDOM_WEIGHTS,
            "mask_prompt_fwd": c.MASK_PROMPT_FWD,
            "fix_region_inputs": c.FIX_REGION_INPUTS,
            "mask_thr": c.MASK_THR,
            "input_pixel_mean": tuple(cfg.MODEL.PIXEL_MEAN),
            "input_pixel_std": tuple(cfg.MODEL.PIXEL_STD),
        }

    @torch.no_grad()
    def _encode_prompts(self, prompts):
        """Template-ensembled text features `(N, E)` fp32: per template L2-normalised, averaged, re-normalised."""
        device = self.clip_model.text_projection.device
        texts = [t.format(p) for p in prompts for t in self.templates]
        with torch.autocast(device_type=device.type, enabled=False):
            feats = encode_text(self.clip_model, self.tokenizer(texts).to(device)).float()
        feats = F.normalize(feats, dim=-1).view(len(prompts), len(self.templates), -1).mean(1)
        return F.normalize(feats, dim=-1)

    def store_frozen_in(self, dtype):
        """Store the frozen CLIP matrices in `dtype` (bf16/fp16) for training under `torch.autocast(dtype)`.

        Autocast rounds the weights of linear layers, convolutions and matmuls to `dtype` on every use, so keeping
        them in `dtype` gives bit-identical results and saves their fp32 copies in every training step. Only
        parameters that autocast consumes in `dtype` are converted: `nn.Linear`/`nn.Conv2d` weights and biases,
        attention in-projections, `visual.proj`, `text_projection`; LayerNorms, embeddings and the trainable
        `visual.mask_embedding` stay fp32. The text features of `self.prompts` are computed
        first (in fp32, as always) and cached. `state_dict()` still returns fp32 tensors for these keys.
        """
        self.get_text_features(self.prompts)
        model = self.clip_model
        params = dict(model.named_parameters())
        names = {n for n in autocast_parameter_names(model, extra=("visual.proj", "text_projection"))
                 if not params[n].requires_grad}
        store_parameters_in(model, names, dtype)
        self._low_precision_keys = {f"clip_model.{n}" for n in names}
        self._frozen_dtype = dtype
        return self

    def _before_load(self, state_dict, prefix, *args):
        """A state dict carrying the tower replaces it: mark it loaded, drop the text features of the old tower
        and store the narrowed matrices in fp32 again so that the loaded values are not rounded."""
        tower = prefix + "clip_model."
        if not any(k.startswith(tower) and k != tower + "visual.mask_embedding" for k in state_dict):
            return
        self.tower_loaded = True
        self.text_feature_buffer.clear()
        if self._low_precision_keys:
            names = {k[len("clip_model."):] for k in self._low_precision_keys}
            store_parameters_in(self.clip_model, names, torch.float32)
            self._low_precision_keys = set()

    @staticmethod
    def _after_load(self, incompatible_keys):
        if self._frozen_dtype is not None and not self._low_precision_keys:
            self.store_frozen_in(self._frozen_dtype)  # text features from the loaded fp32 tower, then narrowed

    def on_weights_loaded(self):
        """Recompute the text features from the current tower (called after any weight load; the loaders of this
        package also refresh them through the load hooks). docs/focus.md#t3"""
        if self._low_precision_keys:
            return  # narrowed by store_frozen_in: the load hooks refreshed them from the fp32 tower already
        self.text_feature_buffer.clear()
        self.get_text_features(self.prompts)

    def _fp32_state_dict_hook(self, state_dict, prefix, local_metadata):
        for key in self._low_precision_keys:
            if prefix + key in state_dict:
                state_dict[prefix + key] = state_dict[prefix + key].float()

    def get_text_features(self, prompts):
        """Text features of `prompts` plus the L2-normalised `non_object_embedding` as a last row → `(N+1, E)`.

        Prompt features are computed once (frozen text tower) and cached in `text_feature_buffer`.
        """
        missing = [p for p in dict.fromkeys(prompts) if p not in self.text_feature_buffer]
        if missing and self._low_precision_keys:
            raise RuntimeError(
                f"CLIP refiner: prompts {missing} were not encoded before store_frozen_in(); the text tower now "
                f"holds {self.clip_model.text_projection.dtype} weights and the official features are fp32"
            )
        if missing:
            self.text_feature_buffer.update(zip(missing, self._encode_prompts(missing)))
        device = self.non_object_embedding.device
        text = torch.stack([self.text_feature_buffer[p].to(device) for p in prompts])
        return torch.cat([text, F.normalize(self.non_object_embedding, dim=-1)])

    def encode_regions(self, regions, region_masks):
        """L2-normalised CLIP embeddings `(R, E)` of CLIP-normalised regions `(R, 3, S, S)` with mask prompts
        `(R, 1, S, S)` (ignored unless `mask_prompt_fwd`)."""
        masks = region_masks if self.mask_prompt_fwd else None
        if torch.is_grad_enabled() and regions.requires_grad:
            # the tower is frozen but gradients flow through it to the masks: recompute its activations in the
            # backward instead of keeping them for all 10 predictions (docs/speed_memory.md#training)
            features = checkpoint(encode_image_with_mask_prompt, self.clip_model.visual, regions, masks,
                                  use_reentrant=False)
        else:
            features = encode_image_with_mask_prompt(self.clip_model.visual, regions, masks)
        return F.normalize(features, dim=-1)

    def region_features(self, images, pred_masks, pred_logits):
        """Per-query CLIP image features and the text features of the predicted classes (docs/focus.md#clip-regions
        steps 1-3).

        Args:
            images: `(B, 3, H, W)` ImageNet-normalised, padded input tensor (as fed to the backbone).
            pred_masks: `(B, Q, h, w)` mask logits.
            pred_logits: `(B, Q, C+1)` class logits.
        Returns:
            `image_features (B, Q, E)` L2-normalised, region `q` = query `q` (query order, independent of
            the labels); `text_features (B, Q, E)`, row `q` = prompt of `argmax(pred_logits[b, q])` (the
            appended no-object embedding row is dropped, as in the official decoder).
        All B·Q regions go through CLIP in one batch (docs/focus.md#q26: the official code loops per image).
        """
        if not (self.tower_loaded or self.allow_random_weights):
            raise RuntimeError(
                "CLIP refiner: training with a CLIP tower whose weights were never loaded (loss_clip would distil a "
                "random embedding space). Set MODEL.CLIP_REFINER.WEIGHTS to 'openai' (OpenAI's ViT-B/16, fetched "
                "by open_clip) or to a local CLIP state dict, or load a FOCUS checkpoint that contains "
                "sem_seg_head.predictor.clip_refiner.clip_model.* through MODEL.WEIGHTS; "
                "MODEL.CLIP_REFINER.ALLOW_RANDOM_WEIGHTS True accepts a random tower (tests, quick start)."
            )
        b, q = pred_masks.shape[:2]
        size = self.input_size
        weights = torch.sigmoid(10 * F.interpolate(pred_masks, size=(size, size), mode="bilinear", align_corners=False))
        imgs = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        if self.fix_region_inputs:
            mean = imgs.new_tensor(self.input_pixel_mean).view(1, 3, 1, 1)
            std = imgs.new_tensor(self.input_pixel_std).view(1, 3, 1, 1)
            imgs = imgs * std + mean
            prompt_masks = (weights > self.mask_thr).to(weights.dtype)
        else:
            # docs/focus.md#q7: a second sigmoid on (0, 1) values gives weights in [0.5, 1), so every patch of
            # the mask prompt pools to 1 and the mask embedding never enters the computation.
            weights = torch.sigmoid(100 * weights)
            prompt_masks = weights
        regions = imgs[:, None] * weights[:, :, None]  # (B, Q, 3, S, S)
        regions = (regions - self.pixel_mean.to(regions.dtype)) / self.pixel_std.to(regions.dtype)
        image_features = self.encode_regions(regions.flatten(0, 1), prompt_masks.flatten(0, 1)[:, None]).view(b, q, -1)
        # rows of every prompt (the appended no-object row dropped), gathered on the device: no host sync
        table = self.get_text_features(self.prompts)[: len(self.prompts)]
        text_features = table[pred_logits.argmax(-1)]
        return image_features, text_features.to(image_features.dtype)


def build_clip_refiner(cfg):
    """The `FOCUSCLIPRefiner` of `cfg`, or None when `MODEL.CLIP_REFINER.ENABLED` is False."""
    if not cfg.MODEL.CLIP_REFINER.ENABLED:
        return None
    return FOCUSCLIPRefiner(cfg)
