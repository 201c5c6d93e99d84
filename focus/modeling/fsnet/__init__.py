"""FSNet (ICCV 2021): frame + optical-flow video segmentation, with the official parameter names.

Importing registers the meta-architecture ``FSNet`` and its mappers (``fsnet_test``, ``fsnet_train``).
"""
from ...config.fsnet import add_fsnet_config
from . import mapper  # noqa: F401  (registers fsnet_test, fsnet_train)
from .fsnet import FSNet, FSNetResNet, bytescale, minmax_normalize
from .transfer import transfer_stage_weights


__all__ = ["FSNet", "FSNetResNet", "add_fsnet_config", "bytescale", "minmax_normalize", "transfer_stage_weights"]
