"""Pixel decoders (registered in PIXEL_DECODER_REGISTRY)."""
from .msdeformattn import MSDeformAttnPixelDecoder  # noqa: F401
