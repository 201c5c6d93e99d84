"""Single-image inference and the output writers used by `tools/demo.py`.

`FOCUSPredictor` is the `focus` counterpart of detectron2's `DefaultPredictor` (which the official demo uses,
spec §12), with three deliberate differences:

* it takes an **RGB** uint8 image (the official predictor takes BGR and flips it because `INPUT.FORMAT` is RGB);
* it never builds the CLIP tower (training-only, spec §6.6): `MODEL.CLIP_REFINER.ENABLED` is forced off;
* its binary result is the evaluator's mask, `instances.pred_masks` (the official merge rule, spec §1.2 step 10),
  not the `sem_seg` argmax that the official demo draws (spec §13 item 3); the soft map is the model's
  `foreground` probability.

The writers save 8-bit PNGs atomically (temporary file in the destination folder + `os.replace`), so an
interrupted run never leaves a truncated image behind.
"""
import os
import tempfile
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.modeling import build_model

from ..data import FocusTestMapper
from ..errors import MissingFileError
from .trainer import FOCUSTrainer, clone_for_eval

__all__ = [
    "FOCUSPredictor",
    "soft_to_uint8",
    "make_cutout",
    "make_overlay",
    "make_checkerboard",
    "composite_on",
    "write_png",
    "OUTPUT_KINDS",
    "render_image",
    "render_video_frame",
    "save_outputs",
]

OUTPUT_KINDS = ("mask", "soft", "cutout", "overlay")


class FOCUSPredictor:
    """Run a FOCUS model on one RGB image (or a list) the way the evaluation pipeline does.

    The image is resized exactly as the evaluation's `FocusTestMapper` does (`ResizeShortestEdge(MIN_SIZE_TEST,
    MAX_SIZE_TEST)`, PIL bilinear on uint8, sides rounded with `int(x + 0.5)`, spec §1.2 step 1) and fed as a
    uint8 (3, h', w') tensor with the original `height`/`width`; the model resizes its prediction back to them.

    Args:
        cfg: a detectron2 config with the `focus` keys (`add_focus_config`). It is cloned; on the clone CLIP is
            disabled (inference never uses it), then the model is built on `MODEL.DEVICE`, put in eval mode
            and `MODEL.WEIGHTS` is loaded ("" keeps the random initialisation).
    """

    def __init__(self, cfg):
        self.cfg = clone_for_eval(cfg)  # CLIP is training-only and never built here (spec §6.6)
        self.model = build_model(self.cfg)
        self.model.eval()
        weights = self.cfg.MODEL.WEIGHTS
        if weights:
            if "://" not in weights and not os.path.isfile(weights):
                raise MissingFileError(f"MODEL.WEIGHTS: checkpoint not found: {weights}; check the path", weights)
            FOCUSTrainer.load_weights(self.cfg, self.model)
        self.resize = FocusTestMapper(self.cfg).resize  # the evaluation pipeline's ResizeShortestEdge

    def resized_shape(self, height: int, width: int) -> Tuple[int, int]:
        """(h', w') the model sees for an original image of size (height, width) (spec §1.2 step 1)."""
        return self.resize.get_output_shape(
            height, width, self.cfg.INPUT.MIN_SIZE_TEST, self.cfg.INPUT.MAX_SIZE_TEST
        )

    def _model_input(self, image: np.ndarray) -> Dict:
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3):
            raise ValueError(
                f"FOCUSPredictor expects an RGB uint8 array of shape (H, W, 3), got "
                f"{type(image).__name__} {getattr(image, 'shape', '')} {getattr(image, 'dtype', '')}"
            )
        if image.dtype != np.uint8:
            raise ValueError(f"FOCUSPredictor expects a uint8 image, got dtype {image.dtype}")
        height, width = image.shape[:2]
        aug_input = T.AugInput(image)
        self.resize(aug_input)  # as FocusTestMapper: uint8 RGB, PIL bilinear
        tensor = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        return {"image": tensor, "height": height, "width": width}

    @staticmethod
    def _postprocess(raw: Dict) -> Dict:
        pred_masks = raw["instances"].pred_masks
        if pred_masks.ndim == 3:  # tolerate a leading singleton instance axis
            pred_masks = pred_masks.squeeze(0)
        mask = (pred_masks > 0).to(torch.uint8).cpu().numpy()
        soft = raw["foreground"].detach().float().cpu().numpy().astype(np.float32, copy=False)
        return {"mask": mask, "soft": soft, **raw}

    def predict_batch(self, images: Sequence[np.ndarray]) -> List[Dict]:
        """Predict a list of RGB uint8 images (H_i, W_i, 3) in one model call; see `__call__`.

        Images of different sizes are zero-padded together by the model, which changes the border
        context of the smaller ones; the official evaluation uses one image per call.
        """
        inputs = [self._model_input(image) for image in images]
        with torch.inference_mode():
            outputs = self.model(inputs)
        return [self._postprocess(raw) for raw in outputs]

    def __call__(self, image: np.ndarray) -> Dict:
        """Predict one image.

        Args:
            image: RGB uint8 array (H, W, 3).

        Returns:
            dict with
              * "mask": (H, W) uint8 0/1, the evaluator's binary mask (`instances.pred_masks`, spec §1.2 step 10);
              * "soft": (H, W) float32 in [0, 1], the soft foreground probability (`foreground`);
              * the model's raw outputs: "sem_seg" (2, H, W) (channel 0 = foreground), "instances",
                "foreground" (H, W).
        """
        return self.predict_batch([image])[0]


# ---------------------------------------------------------------------------------------------------------
# output images (all RGB / RGBA / L numpy arrays, uint8)


def soft_to_uint8(soft: np.ndarray) -> np.ndarray:
    """(H, W) probability in [0, 1] → (H, W) uint8 `round(p * 255)` (values outside [0, 1] are clipped)."""
    return np.rint(np.clip(soft, 0.0, 1.0) * 255.0).astype(np.uint8)


def make_cutout(image: np.ndarray, soft: np.ndarray) -> np.ndarray:
    """(H, W, 4) RGBA cut-out: the RGB image with alpha = `round(soft * 255)`."""
    return np.dstack([image, soft_to_uint8(soft)])


def make_checkerboard(height: int, width: int, cell: int = 16, shades=(204, 153)) -> np.ndarray:
    """(H, W, 3) uint8 grey checkerboard, the usual backdrop that shows transparency."""
    yy, xx = np.mgrid[:height, :width]
    board = np.where(((yy // cell) + (xx // cell)) % 2 == 0, shades[0], shades[1]).astype(np.uint8)
    return np.repeat(board[:, :, None], 3, axis=2)


def composite_on(rgba: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Alpha-blend an (H, W, 4) RGBA image over an (H, W, 3) background → (H, W, 3) uint8."""
    alpha = rgba[:, :, 3:4].astype(np.float32) / 255.0
    out = rgba[:, :, :3].astype(np.float32) * alpha + background.astype(np.float32) * (1.0 - alpha)
    return np.rint(out).astype(np.uint8)


def make_overlay(
    image: np.ndarray,
    mask: np.ndarray,
    color: Tuple[int, int, int] = (255, 40, 40),
    alpha: float = 0.5,
    contour_thickness: int = 0,
) -> np.ndarray:
    """(H, W, 3) RGB visualisation: `color` blended with weight `alpha` on the foreground, plus its contour.

    Args:
        image: (H, W, 3) uint8 RGB.
        mask: (H, W) binary mask (non-zero = foreground).
        contour_thickness: line width in pixels; 0 picks `max(1, round(min(H, W) / 200))`.
    """
    fg = mask.astype(bool)
    out = image.copy()
    tint = np.asarray(color, np.float32)
    out[fg] = np.rint(image[fg].astype(np.float32) * (1.0 - alpha) + tint * alpha).astype(np.uint8)
    contours, _ = cv2.findContours(fg.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    thickness = contour_thickness or max(1, round(min(image.shape[:2]) / 200))
    out = np.ascontiguousarray(out)
    cv2.drawContours(out, contours, -1, tuple(int(c) for c in color), thickness)
    return out


def write_png(path: str, array: np.ndarray) -> None:
    """Write a uint8 L (H, W), RGB (H, W, 3) or RGBA (H, W, 4) array as PNG, atomically.

    The encoded file goes to a temporary name in the destination folder and is moved into place with
    `os.replace`, so `path` is either absent, the old file, or the complete new one.
    """
    if array.dtype != np.uint8:
        raise ValueError(f"{path}: PNG writer expects uint8, got {array.dtype}")
    if array.ndim == 3:  # OpenCV stores BGR(A)
        code = cv2.COLOR_RGB2BGR if array.shape[2] == 3 else cv2.COLOR_RGBA2BGRA
        array = cv2.cvtColor(array, code)
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".png", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.tobytes())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def render_image(kind: str, image: np.ndarray, prediction: Dict) -> np.ndarray:
    """The PNG content of output `kind` for an RGB `image` and its `FOCUSPredictor` result.

    "mask": L 0/255; "soft": L `round(p * 255)`; "cutout": RGBA (alpha = soft); "overlay": RGB.
    """
    if kind == "mask":
        return (prediction["mask"] > 0).astype(np.uint8) * 255
    if kind == "soft":
        return soft_to_uint8(prediction["soft"])
    if kind == "cutout":
        return make_cutout(image, prediction["soft"])
    if kind == "overlay":
        return make_overlay(image, prediction["mask"])
    raise ValueError(f"unknown output kind {kind!r}; expected one of {OUTPUT_KINDS}")


def render_video_frame(kind: str, image: np.ndarray, prediction: Dict) -> np.ndarray:
    """(H, W, 3) uint8 RGB frame of output `kind`: mask/soft as grey, cutout over a checkerboard."""
    out = render_image(kind, image, prediction)
    if out.ndim == 2:
        return np.repeat(out[:, :, None], 3, axis=2)
    if out.shape[2] == 4:
        return composite_on(out, make_checkerboard(*out.shape[:2]))
    return out


def save_outputs(paths: Dict[str, str], image: np.ndarray, prediction: Dict) -> None:
    """Write `render_image(kind, ...)` to `paths[kind]` (atomically) for every requested kind."""
    for kind, path in paths.items():
        write_png(path, render_image(kind, image, prediction))
