"""RUN's data mappers: the official test-time squash resize (`run_test_mapper`) and the official training
augmentation (`run_train_mapper`)."""
import copy
import random

import cv2
import numpy as np
import torch
from detectron2.config import configurable
from PIL import Image, ImageEnhance

from ...data.io import read_image_and_mask
from ...data.mappers import ImageTestMapper, register_mapper

from ...config.run import check_input_size

__all__ = ["RUNTestMapper", "RUNTrainMapper", "squash_resize"]


def squash_resize(image, size):
    """`torchvision.transforms.Resize((size, size))` on a PIL image: PIL bilinear (antialiased when shrinking),
    aspect ratio not kept. RGB uint8 (H, W, 3) -> uint8 (size, size, 3)."""
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


@register_mapper("run_test_mapper")
class RUNTestMapper(ImageTestMapper):
    """Official test preprocessing: squash to INPUT_SIZE x INPUT_SIZE (docs/run.md#inference). Output: `image` uint8
    (3, S, S), `height`/`width` of the original image (the prediction is resized back to them)."""

    @configurable
    def __init__(self, is_train=False, *, size=384):
        del is_train
        self.size = check_input_size(size)

    @classmethod
    def from_config(cls, cfg, is_train=False):
        return {"is_train": is_train, "size": cfg.MODEL.RUN.INPUT_SIZE}

    def map_image(self, image, **extras):
        """RGB uint8 (H, W, 3) numpy image -> model input dict."""
        h, w = image.shape[:2]
        resized = squash_resize(np.ascontiguousarray(image), self.size)
        return {"image": torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1))), "height": h,
                "width": w, **extras}



def _edge_from_mask(mask):
    """Object contour of a uint8 mask (pixels > 128 whose 3x3 neighbourhood is not all foreground), dilated once
    with a 3x3 kernel as the official loader dilates its edge maps; uint8 0/255."""
    fg = (mask > 128).astype(np.uint8)
    contour = fg - cv2.erode(fg, np.ones((3, 3), np.uint8))
    return cv2.dilate(contour * 255, np.ones((3, 3), np.uint8), iterations=1)


@register_mapper("run_train_mapper")
class RUNTrainMapper:
    """Official training augmentation (docs/run.md#training), on PIL images: random horizontal flip; random
    centred crop removing up to 30 px per side length; with p = 0.2 a rotation by an integer angle in [-15, 15)
    (bicubic); brightness/contrast/colour/sharpness enhancement of the image; salt-and-pepper noise on 0.15 % of
    the GT and edge pixels; squash to S x S (bilinear). Our datasets have no edge maps: the edge target is the GT
    contour, dilated once (3x3) like the official edge files.

    Output: `image` uint8 (3, S, S), `gt` float32 (1, S, S) in [0, 1] (not binarised, as official), `edge` float32
    (1, S, S) in {0, 1}, `height`/`width` of the original.
    """

    @configurable
    def __init__(self, is_train=True, *, size=384, border=30, rotate_prob=0.2, noise_fraction=0.0015):
        del is_train
        self.size = check_input_size(size)
        self.border, self.rotate_prob, self.noise_fraction = border, rotate_prob, noise_fraction

    @classmethod
    def from_config(cls, cfg, is_train=True):
        return {"is_train": is_train, "size": cfg.MODEL.RUN.INPUT_SIZE}

    def _pepper(self, img):
        img = np.array(img)
        for _ in range(int(self.noise_fraction * img.shape[0] * img.shape[1])):
            x, y = random.randint(0, img.shape[0] - 1), random.randint(0, img.shape[1] - 1)
            img[x, y] = 0 if random.randint(0, 1) == 0 else 255
        return Image.fromarray(img)

    def augment(self, image, gt, edge):
        """PIL image (RGB), gt (L), edge (L) -> the three augmented PIL images (before the final resize)."""
        if random.randint(0, 1) == 1:
            image, gt, edge = (x.transpose(Image.FLIP_LEFT_RIGHT) for x in (image, gt, edge))
        w, h = image.size
        cw = np.random.randint(max(w - self.border, 1), w) if w > 1 else w
        ch = np.random.randint(max(h - self.border, 1), h) if h > 1 else h
        region = ((w - cw) >> 1, (h - ch) >> 1, (w + cw) >> 1, (h + ch) >> 1)
        image, gt, edge = (x.crop(region) for x in (image, gt, edge))
        if random.random() > 1 - self.rotate_prob:
            angle = np.random.randint(-15, 15)
            image, gt, edge = (x.rotate(angle, Image.BICUBIC) for x in (image, gt, edge))
        image = ImageEnhance.Brightness(image).enhance(random.randint(5, 15) / 10.0)
        image = ImageEnhance.Contrast(image).enhance(random.randint(5, 15) / 10.0)
        image = ImageEnhance.Color(image).enhance(random.randint(0, 20) / 10.0)
        image = ImageEnhance.Sharpness(image).enhance(random.randint(0, 30) / 10.0)
        return image, self._pepper(gt), self._pepper(edge)

    def __call__(self, dataset_dict):
        dataset_dict = copy.deepcopy(dataset_dict)
        image, mask = read_image_and_mask(dataset_dict)
        dataset_dict["height"], dataset_dict["width"] = image.shape[:2]
        edge = _edge_from_mask(mask)
        image, gt, edge = self.augment(Image.fromarray(image), Image.fromarray(mask), Image.fromarray(edge))
        s = (self.size, self.size)
        image = np.asarray(image.resize(s, Image.BILINEAR))
        gt = np.asarray(gt.resize(s, Image.BILINEAR), dtype=np.float32) / 255.0
        edge = (np.asarray(edge.resize(s, Image.BILINEAR)) > 0).astype(np.float32)
        dataset_dict["image"] = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        dataset_dict["gt"] = torch.from_numpy(gt)[None]
        dataset_dict["edge"] = torch.from_numpy(edge)[None]
        return dataset_dict
