"""WS-SAM (NeurIPS 2023) member: the segmentation network, its mappers and config keys (docs/ws_sam.md)."""
from ...config.ws_sam import add_ws_sam_config
from .mapper import WSSAMTestMapper, WSSAMTrainMapper
from .ws_sam import WSSAM

__all__ = ["WSSAM", "WSSAMTestMapper", "WSSAMTrainMapper", "add_ws_sam_config"]
