"""Registries of the FOCUS head components (detectron2 style).

Pixel decoders and transformer decoders get their own registries, as in Mask2Former, so that
`MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME` and `MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME` select them.
"""
from detectron2.utils.registry import Registry

PIXEL_DECODER_REGISTRY = Registry("PIXEL_DECODER")
PIXEL_DECODER_REGISTRY.__doc__ = """Pixel decoders: map backbone features to mask features and multi-scale features.
Called with `(cfg, input_shape)` where `input_shape` is the backbone's `output_shape()`."""

TRANSFORMER_DECODER_REGISTRY = Registry("TRANSFORMER_MODULE")
TRANSFORMER_DECODER_REGISTRY.__doc__ = """Transformer decoders: predict per-query class logits and masks.
Called with `(cfg, in_channels, mask_classification=True)`."""


def build_pixel_decoder(cfg, input_shape):
    """Build the pixel decoder named by `MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME`."""
    return PIXEL_DECODER_REGISTRY.get(cfg.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME)(cfg, input_shape)


def build_transformer_decoder(cfg, in_channels, mask_classification=True):
    """Build the transformer decoder named by `MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME`."""
    name = cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME
    return TRANSFORMER_DECODER_REGISTRY.get(name)(cfg, in_channels, mask_classification)
