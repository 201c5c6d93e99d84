"""Optional Weights & Biases writer (only imported when `TEST.WANDBENABLE` is true)."""
from detectron2.utils.events import EventWriter, get_event_storage

__all__ = ["WandbWriter"]


class WandbWriter(EventWriter):
    """Log the latest scalars of the event storage to Weights & Biases."""

    def __init__(self, cfg, window_size=20):
        try:
            import wandb
        except ImportError as e:
            raise ImportError("TEST.WANDBENABLE is True but wandb is not installed: pip install wandb") from e
        self._wandb = wandb
        self._window_size = window_size
        wandb.init(project=cfg.WANDB.PROJECT, name=cfg.WANDB.NAME, config=cfg, dir=cfg.OUTPUT_DIR)

    def write(self):
        storage = get_event_storage()
        stats = {k: v[0] for k, v in storage.latest_with_smoothing_hint(self._window_size).items()}
        self._wandb.log(stats, step=storage.iter)

    def close(self):
        self._wandb.finish()
