"""Training, evaluation and inference engines (used by `tools/`)."""
from .trainer import FOCUSTrainer, inference_on_dataset, setup_cfg  # noqa: F401
from .predictor import FOCUSPredictor  # noqa: F401
