"""Prompt templates of the CLIP text side (docs/focus.md#clip-text, `MODEL.CLIP_REFINER.TEXT_TEMPLATES`)."""

__all__ = ["VILD_TEMPLATES", "get_templates"]

# the 14 ViLD templates (Gu et al. 2021), as used by OVSeg / FOCUS
VILD_TEMPLATES = (
    "a photo of a {}.",
    "This is a photo of a {}",
    "There is a {} in the scene",
    "There is the {} in the scene",
    "a photo of a {} in the scene",
    "a photo of a small {}.",
    "a photo of a medium {}.",
    "a photo of a large {}.",
    "This is a photo of a small {}.",
    "This is a photo of a medium {}.",
    "This is a photo of a large {}.",
    "There is a small {} in the scene.",
    "There is a medium {} in the scene.",
    "There is a large {} in the scene.",
)

def get_templates(kind, predefined=("a photo of a {}.",)):
    """Templates for `TEXT_TEMPLATES` = "vild", "imagenet" or "predefined" (→ `predefined`), each with one `{}`."""
    if kind == "vild":
        return VILD_TEMPLATES
    if kind == "imagenet":  # the 80 templates of OpenAI's ImageNet zero-shot evaluation
        from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

        return tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)
    if kind == "predefined":
        return tuple(predefined)
    raise ValueError(f"MODEL.CLIP_REFINER.TEXT_TEMPLATES {kind!r}: expected 'vild', 'imagenet' or 'predefined'")
