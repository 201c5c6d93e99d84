"""focus: universal foreground segmentation (FOCUS, AAAI 2025) as a detectron2 extension.

Importing `focus` registers every component into detectron2's registries (backbone `D2DINOV2`,
meta-architecture `FOCUS`, head `FOCUSHead`, the pixel/transformer decoders) and the dataset catalog
(lazily: no disk access at import).
"""
from .config import add_focus_config
from . import data  # noqa: F401  (dataset catalog)
from . import modeling  # noqa: F401  (registrations)

__version__ = "0.1.0"
__all__ = ["add_focus_config", "__version__"]
