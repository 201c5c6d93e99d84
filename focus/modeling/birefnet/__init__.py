"""BiRefNet member (docs/birefnet.md): meta-architecture `BiRefNet`, its mappers and config keys."""
from .birefnet import BiRefNet, build_birefnet_backbone
from ...config.birefnet import add_birefnet_config
from .mapper import BiRefNetTestMapper, BiRefNetTrainMapper

__all__ = ["BiRefNet", "BiRefNetTestMapper", "BiRefNetTrainMapper", "add_birefnet_config",
           "build_birefnet_backbone"]
