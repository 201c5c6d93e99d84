"""The FOCUS backbone `D2DINOV2` (registered in detectron2's BACKBONE_REGISTRY on import)."""
from .dinov2 import D2DINOV2
from .edge_prior import EdgePriorModule, edge_overlay

__all__ = ["D2DINOV2", "EdgePriorModule", "edge_overlay"]
