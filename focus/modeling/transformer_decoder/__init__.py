"""Transformer decoders (registered in TRANSFORMER_DECODER_REGISTRY) and their positional encoding."""
from .focus_transformer_decoder import MultiScaleMaskedTransformerDecoder  # noqa: F401
from .position_encoding import PositionEmbeddingSine  # noqa: F401
