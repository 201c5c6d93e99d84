"""RUN (Reversible Unfolding Network, ICML 2025) as a `focus` member: `MODEL.META_ARCHITECTURE: "RUN"`,
mappers `run_train_mapper` / `run_test_mapper`, keys `MODEL.RUN.*` (docs/run.md)."""
from ...config.run import add_run_config, check_input_size
from .mappers import RUNTestMapper, RUNTrainMapper
from .meta_arch import RUN
from .network import OUTPUT_NAMES, PREDICTION_OUTPUTS, RUNNetwork

__all__ = ["RUN", "RUNNetwork", "RUNTestMapper", "RUNTrainMapper", "add_run_config", "check_input_size",
           "OUTPUT_NAMES", "PREDICTION_OUTPUTS"]
