"""BiRefNet mappers: the official test-time resize (and the README path) and the official training augmentation.

Test (`BiRefNetTestMapper`, `INPUT.TEST_MAPPER_NAME: birefnet_test_mapper`):

* ``"official"`` (the test script): OpenCV bilinear resize of the uint8 image to the network size, no
  antialiasing (resizing RGB or OpenCV's BGR order per channel is the same);
* ``"readme"`` (README / Hugging Face): PIL bilinear resize with antialiasing (docs/birefnet.md#q11).

The model normalises and post-processes (the post-processing of the two paths also differs, see
`BiRefNet.postprocess`). With tiled inference on, the mapper also cuts the original image into overlapping,
aspect-preserving tiles, each resized to the network size the same way (`tiles`, `tile_boxes`).

Train (`BiRefNetTrainMapper`): image and mask resized to the network size with OpenCV bilinear (soft mask
edges), then horizontal flip (p 0.5), rotation (p 0.2, integer degrees in [-15, 14], PIL bicubic, black
corners), colour enhancement always (brightness, contrast in {0.5..1.5}, colour in [0, 2], sharpness in [0, 3]),
pepper noise (0.15 % of the pixels set to 0 or 255).
"""
import copy
import math
import random

import cv2
import numpy as np
import torch
from detectron2.config import configurable
from PIL import Image, ImageEnhance

from ...data.io import read_image_and_mask
from ...data.mappers import ImageTestMapper, register_mapper

__all__ = ["BiRefNetTestMapper", "BiRefNetTrainMapper", "tile_boxes", "resize_image"]


def resize_image(image: np.ndarray, size_hw, path="official") -> np.ndarray:
    """Resize an RGB uint8 ``(H, W, 3)`` image to ``size_hw`` as the chosen test path does."""
    h, w = size_hw
    if image.shape[:2] == (h, w) and path == "official":
        return image
    if path == "official":
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    if path == "readme":
        return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    raise ValueError(f"unknown MODEL.BIREFNET.INFERENCE_PATH {path!r} (official, readme)")


def _starts(length, tile, overlap):
    if length <= tile:
        return [0]
    n = math.ceil((length - tile) / (tile * (1.0 - overlap))) + 1
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def tile_boxes(height, width, tile, overlap):
    """Overlapping ``tile x tile`` boxes ``(y0, x0, y1, x1)`` covering ``(height, width)``, evenly spread, each
    overlapping its neighbour by at least ``overlap * tile`` (a side shorter than ``tile`` gives one row/col)."""
    ys, xs = _starts(height, tile, overlap), _starts(width, tile, overlap)
    return [(y, x, min(y + tile, height), min(x + tile, width)) for y in ys for x in xs]


def _to_chw(image):
    return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))


@register_mapper("birefnet_test_mapper")
class BiRefNetTestMapper(ImageTestMapper):
    """Reads the image (RGB uint8, EXIF applied) and returns ``image`` uint8 ``(3, h, w)`` at the network size,
    ``height``/``width`` of the original, and with tiling ``tiles`` uint8 ``(N, 3, h, w)``, ``tile_boxes``."""

    @configurable
    def __init__(self, *, size=(1024, 1024), path="official", tile=False, tile_size=0, tile_overlap=0.25,
                 tile_min_scale=1.5):
        self.size = tuple(size)
        self.path = path
        self.tile = tile
        self.tile_size = tile_size or max(self.size)
        self.tile_overlap = tile_overlap
        self.tile_min_scale = tile_min_scale

    @classmethod
    def from_config(cls, cfg, is_train=False):
        b = cfg.MODEL.BIREFNET
        return {"size": b.SIZE, "path": b.INFERENCE_PATH, "tile": b.TILE.ENABLED, "tile_size": b.TILE.SIZE,
                "tile_overlap": b.TILE.OVERLAP, "tile_min_scale": b.TILE.MIN_SCALE}

    def map_image(self, image: np.ndarray, **extras) -> dict:
        """RGB uint8 ``(H, W, 3)`` -> the model's input dict."""
        image = np.ascontiguousarray(image)
        H, W = image.shape[:2]
        out = {"image": _to_chw(resize_image(image, self.size, self.path)), "height": H, "width": W, **extras}
        if self.tile and max(H, W) >= self.tile_min_scale * max(self.size):
            boxes = tile_boxes(H, W, self.tile_size, self.tile_overlap)
            crops = [resize_image(image[y0:y1, x0:x1], self.size, self.path) for y0, x0, y1, x1 in boxes]
            out["tiles"] = torch.stack([_to_chw(c) for c in crops])
            out["tile_boxes"] = boxes
        return out



@register_mapper("birefnet_train_mapper")
class BiRefNetTrainMapper:
    """Training sample: ``image`` uint8 ``(3, h, w)`` and ``gt`` float32 ``(1, h, w)`` in [0, 1] (soft edges from
    the bilinear resize). With a dynamic size the original size is kept and the model resizes each batch."""

    @configurable
    def __init__(self, *, size=(1024, 1024), dynamic=False, flip=True, rotate_prob=0.2, rotate_degrees=15,
                 enhance=True, pepper=0.0015):
        self.size = tuple(size)
        self.dynamic = dynamic
        self.flip = flip
        self.rotate_prob = rotate_prob
        self.rotate_degrees = rotate_degrees
        self.enhance = enhance
        self.pepper = pepper

    @classmethod
    def from_config(cls, cfg, is_train=True):
        b = cfg.MODEL.BIREFNET
        a = b.AUG
        return {"size": b.SIZE, "dynamic": bool(len(b.DYNAMIC_SIZE)), "flip": a.FLIP,
                "rotate_prob": a.ROTATE_PROB, "rotate_degrees": a.ROTATE_DEGREES, "enhance": a.ENHANCE,
                "pepper": a.PEPPER}

    def augment(self, image: np.ndarray, mask: np.ndarray):
        """Official augmentation on RGB uint8 ``(H, W, 3)`` and grey uint8 ``(H, W)``."""
        if self.flip and random.random() > 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        img, gt = Image.fromarray(np.ascontiguousarray(image)), Image.fromarray(np.ascontiguousarray(mask))
        if self.rotate_prob > 0 and random.random() < self.rotate_prob:
            angle = random.randint(-self.rotate_degrees, self.rotate_degrees - 1)
            img, gt = img.rotate(angle, Image.BICUBIC), gt.rotate(angle, Image.BICUBIC)
        if self.enhance:
            img = ImageEnhance.Brightness(img).enhance(random.randint(5, 15) / 10.0)
            img = ImageEnhance.Contrast(img).enhance(random.randint(5, 15) / 10.0)
            img = ImageEnhance.Color(img).enhance(random.randint(0, 20) / 10.0)
            img = ImageEnhance.Sharpness(img).enhance(random.randint(0, 30) / 10.0)
        image = np.array(img)
        if self.pepper > 0:
            flat = image.reshape(-1, 3)
            n = int(self.pepper * flat.shape[0])
            idx = np.random.randint(0, flat.shape[0], n)
            flat[idx] = np.where(np.random.rand(n, 1) < 0.5, 0, 255)
        return image, np.asarray(gt)

    def __call__(self, dataset_dict):
        dataset_dict = copy.deepcopy(dataset_dict)
        image, mask = read_image_and_mask(dataset_dict)
        dataset_dict["height"], dataset_dict["width"] = image.shape[:2]
        if not self.dynamic:
            h, w = self.size
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
            mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
        image, mask = self.augment(image, mask)
        dataset_dict["image"] = _to_chw(image)
        dataset_dict["gt"] = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32) / 255.0)[None]
        return dataset_dict
