"""CLIP refiner of FOCUS (training-only contrastive distillation, docs/focus.md#clip) and its projection heads."""

from .clip_model import (
    add_mask_prompt,
    build_clip_model,
    encode_image_with_mask_prompt,
    encode_text,
    load_clip_weights,
)
from .projection import ProjectionHead
from .refiner import FOCUSCLIPRefiner, build_clip_refiner
from .templates import VILD_TEMPLATES, get_templates

__all__ = [
    "FOCUSCLIPRefiner",
    "add_mask_prompt",
    "encode_text",
    "ProjectionHead",
    "build_clip_model",
    "build_clip_refiner",
    "encode_image_with_mask_prompt",
    "get_templates",
    "load_clip_weights",
    "VILD_TEMPLATES",
]
