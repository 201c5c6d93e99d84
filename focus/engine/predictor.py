"""Single-image inference for any member: the engine behind `tools/demo.py`.

`Predictor` is the `focus` counterpart of detectron2's `DefaultPredictor` (which the official FOCUS demo uses),
written for every member through the member contract (`docs/members.md`):

* it takes an **RGB** uint8 image (the official FOCUS predictor takes BGR and flips it);
* it builds the model for inference (`focus.config.inference_config`: training-only parts such as FOCUS's CLIP
  tower are not built), loads `MODEL.WEIGHTS` and prepares it once (`prepare_for_inference` from the
  `TEST.INFERENCE_*` keys);
* the member's own test mapper (`INPUT.TEST_MAPPER_NAME`) turns the image, and any extra input a member needs
  (FSNet: `flow=`), into the model's input, exactly as in evaluation;
* it returns the member's binary mask (`mask`, what its authors evaluate; FOCUS: the merge rule's mask, not the
  `sem_seg` argmax the official demo draws) and its soft map (`soft` = `foreground`), at the image's size.
"""
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.modeling import build_model

from ..config import inference_config
from ..data.mappers import build_mapper
from ..errors import MissingFileError
from ..modeling.inference import inference_options, prepare_for_inference
from .trainer import Trainer

__all__ = ["Predictor", "FOCUSPredictor"]


class Predictor:
    """Run a member on one RGB image (or a list) the way the evaluation pipeline does.

    Args:
        cfg: a detectron2 config with the `focus` keys (`add_focus_config`). It is cloned for inference; the model
            is built on `MODEL.DEVICE`, `MODEL.WEIGHTS` is loaded ("" keeps the random initialisation) and the
            model is prepared for inference (`TEST.INFERENCE_DTYPE`, `_CAST`, `_PACK`).
    """

    def __init__(self, cfg):
        self.cfg = inference_config(cfg)
        model = build_model(self.cfg)
        model.eval()
        weights = self.cfg.MODEL.WEIGHTS
        if weights:
            if "://" not in weights and not os.path.isfile(weights):
                raise MissingFileError(f"MODEL.WEIGHTS: checkpoint not found: {weights}; check the path", weights)
            Trainer.load_weights(self.cfg, model)
        self.model = prepare_for_inference(model, **inference_options(self.cfg))
        self.mapper = build_mapper(self.cfg, is_train=False)

    def _model_input(self, image: np.ndarray, extras: Dict) -> Dict:
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
            raise ValueError(
                f"Predictor expects an RGB uint8 array of shape (H, W, 3), got "
                f"{type(image).__name__} {getattr(image, 'shape', '')} {getattr(image, 'dtype', '')}"
            )
        if image.dtype != np.uint8:
            raise ValueError(f"Predictor expects a uint8 image, got dtype {image.dtype}")
        return self.mapper.map_image(image, **extras)

    @staticmethod
    def _postprocess(raw: Dict) -> Dict:
        mask = raw["mask"]
        if mask.ndim == 3:  # tolerate a leading singleton axis
            mask = mask.squeeze(0)
        mask = (mask > 0).to(torch.uint8).cpu().numpy()
        soft = raw["foreground"].detach().float().cpu().numpy().astype(np.float32, copy=False)
        return {**raw, "mask": mask, "soft": soft}

    def predict_batch(self, images: Sequence[np.ndarray], extras: Optional[Sequence[Dict]] = None) -> List[Dict]:
        """Predict a list of RGB uint8 images (H_i, W_i, 3) in one model call; see `__call__`.

        `extras` holds one dict of extra inputs per image (e.g. `{"flow": ...}`). Images of different sizes are
        padded together by members that pad, which changes the border context of the smaller ones; the official
        evaluations run one image per call.
        """
        extras = extras or [{}] * len(images)
        inputs = [self._model_input(image, extra) for image, extra in zip(images, extras)]
        outputs = self.model(inputs)
        return [self._postprocess(raw) for raw in outputs]

    def __call__(self, image: np.ndarray, **extras) -> Dict:
        """Predict one image.

        Args:
            image: RGB uint8 array (H, W, 3).
            extras: extra inputs of members that need them, by keyword (FSNet: `flow=` an RGB flow image).

        Returns:
            dict with "mask": (H, W) uint8 0/1, the member's binary mask; "soft": (H, W) float32 in [0, 1], its
            foreground probability; and the model's raw outputs (FOCUS: "sem_seg", "instances", "foreground").
        """
        return self.predict_batch([image], [extras])[0]


FOCUSPredictor = Predictor  # the earlier name
