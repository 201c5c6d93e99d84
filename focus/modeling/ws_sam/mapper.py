"""WS-SAM's test mapper: the official test-time preprocessing (squash to a fixed square, PIL bilinear)."""
import copy

import numpy as np
import torch
from detectron2.config import configurable
from PIL import Image

from ...data.io import read_image
from ...data.mappers import MAPPER_REGISTRY

__all__ = ["WSSAMTestMapper", "resize_rgb"]


def resize_rgb(image, size):
    """uint8 (H, W, 3) RGB -> uint8 (size, size, 3), PIL bilinear (antialiased when shrinking), aspect ratio not
    kept (docs/ws_sam.md#q2): the resize of the official test loader."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((size, size), Image.BILINEAR))


@MAPPER_REGISTRY.register()
class WSSAMTestMapper:
    """Reads an image and squashes it to `size` x `size` (`INPUT.WS_SAM.SIZE`, 384 for the released model).

    Output: `image` uint8 (3, size, size), `height`/`width` of the original image (the output size), and the
    dataset dict's other fields. The normalisation happens in the model.
    """

    @configurable
    def __init__(self, *, size=384):
        self.size = size

    @classmethod
    def from_config(cls, cfg, is_train=False):
        return {"size": cfg.INPUT.WS_SAM.SIZE}

    def map_image(self, image, **extras):
        """RGB uint8 (H, W, 3) numpy -> model input dict."""
        h, w = image.shape[:2]
        resized = resize_rgb(image, self.size)
        out = {"image": torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1))), "height": h, "width": w}
        out.update(extras)
        return out

    def __call__(self, dataset_dict):
        dataset_dict = copy.deepcopy(dataset_dict)
        dataset_dict.update(self.map_image(read_image(dataset_dict["file_name"])))
        return dataset_dict
