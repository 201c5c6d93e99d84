"""FOCUS model components; importing this module registers them with detectron2."""
from .registry import (  # noqa: F401
    PIXEL_DECODER_REGISTRY,
    TRANSFORMER_DECODER_REGISTRY,
    build_pixel_decoder,
    build_transformer_decoder,
)
from . import backbone  # noqa: F401,E402  (D2DINOV2)
from . import pixel_decoder, transformer_decoder, meta_arch  # noqa: F401,E402  (decoders, FOCUSHead, FOCUS)
from . import birefnet  # noqa: F401,E402  (BiRefNet member)
from . import fsnet  # noqa: F401,E402  (FSNet member)
from . import run  # noqa: F401,E402  (RUN member)
from . import ws_sam  # noqa: F401,E402  (WSSAM)
