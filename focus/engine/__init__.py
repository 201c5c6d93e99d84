"""Training, evaluation and inference engines for every member (used by `tools/`)."""
from .trainer import FOCUSTrainer, Trainer, inference_on_dataset, setup_cfg  # noqa: F401
from .predictor import FOCUSPredictor, Predictor  # noqa: F401
