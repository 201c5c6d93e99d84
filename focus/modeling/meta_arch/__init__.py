"""The FOCUS meta-architecture and its head (registered in detectron2's registries)."""
from .focus import FOCUS  # noqa: F401
from .focus_head import FOCUSHead  # noqa: F401
