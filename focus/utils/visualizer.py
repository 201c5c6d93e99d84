"""Rendering of a prediction for people: binary mask, soft map, RGBA cut-out, overlay (numpy uint8 arrays).

Used by `tools/demo.py` through `save_outputs` / `render_video_frame`; a prediction is the `Predictor`'s dict with
`mask` (H, W) 0/1 and `soft` (H, W) in [0, 1].
"""
from typing import Dict, Tuple

import cv2
import numpy as np

from .file_io import write_png

__all__ = [
    "OUTPUT_KINDS",
    "soft_to_uint8",
    "make_cutout",
    "make_checkerboard",
    "composite_on",
    "make_overlay",
    "render_image",
    "render_video_frame",
    "save_outputs",
]

OUTPUT_KINDS = ("mask", "soft", "cutout", "overlay")


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


def render_image(kind: str, image: np.ndarray, prediction: Dict) -> np.ndarray:
    """The PNG content of output `kind` for an RGB `image` and its `Predictor` result.

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
