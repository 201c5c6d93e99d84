"""WS-SAM's test mapper: the official test-time preprocessing (squash to a fixed square, PIL bilinear)."""
import copy

import numpy as np
import torch
from detectron2.config import configurable
from PIL import Image, ImageEnhance, ImageOps

from ...data.io import check_same_size, read_image, read_mask
from ...data.mappers import ImageTestMapper, register_mapper
from ...data.sparse import read_sparse, scribble_to_sparse, sparse_to_scribble

__all__ = ["WSSAMTestMapper", "WSSAMTrainMapper", "resize_rgb"]


def resize_rgb(image, size):
    """uint8 (H, W, 3) RGB -> uint8 (size, size, 3), PIL bilinear (antialiased when shrinking), aspect ratio not
    kept (docs/ws_sam.md#q2): the resize of the official test loader."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((size, size), Image.BILINEAR))


@register_mapper("ws_sam_test_mapper")
class WSSAMTestMapper(ImageTestMapper):
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



@register_mapper("ws_sam_train_mapper")
class WSSAMTrainMapper:
    """Training mapper of the official WS-SAM recipe, on an image, its sparse label and (optional) pseudo label.

    Steps (docs/ws_sam.md#training-data): horizontal flip (p 0.5); random centred crop removing up to
    `crop_border` px per side pair; with probability `rotate_prob` a rotation by an integer angle in
    [-`rotate_degrees`, `rotate_degrees`) with bicubic interpolation for the image **and the label maps**
    (the S-COD-coded scribble map included, docs/ws_sam.md#q9; `label_rotate_nearest` rotates label maps with
    nearest instead); colour jitter of the image (brightness, contrast, colour, sharpness); salt-and-pepper on
    the pseudo mask (`pepper_fraction` of its pixels set to 0 or 255); resize to `size` (PIL bilinear for the
    image and soft maps, nearest for the sparse map).

    Input dict: `file_name`, `sparse_file_name` (scribble PNG or point JSON, `focus.data.sparse`), optional
    `pseudo_file_name` and `pseudo_weight_file_name`. Output adds `image` uint8 (3, size, size), `sparse` int64
    (size, size) (1 / 0 / -1), `pseudo` float32 (size, size) in [0, 1], `pseudo_weight` float32 (size, size).
    """

    @configurable
    def __init__(self, is_train=True, *, size=384, crop_border=30, rotate_prob=0.2, rotate_degrees=15,
                 label_rotate_nearest=False, color_jitter=True, pepper_fraction=0.0015, point_radius=0):
        self.size, self.crop_border = size, crop_border
        self.rotate_prob, self.rotate_degrees = rotate_prob, rotate_degrees
        self.label_rotate_nearest = label_rotate_nearest
        self.color_jitter, self.pepper_fraction = color_jitter, pepper_fraction
        self.point_radius = point_radius

    @classmethod
    def from_config(cls, cfg, is_train=True):
        i = cfg.INPUT.WS_SAM
        return {"is_train": is_train, "size": i.SIZE, "crop_border": i.CROP_BORDER, "rotate_prob": i.ROTATE_PROB,
                "rotate_degrees": i.ROTATE_DEGREES, "label_rotate_nearest": i.LABEL_ROTATE_NEAREST,
                "color_jitter": i.COLOR_JITTER, "pepper_fraction": i.PEPPER_FRACTION}

    def __call__(self, dataset_dict):
        d = copy.deepcopy(dataset_dict)
        image = read_image(d["file_name"])
        h, w = image.shape[:2]
        maps = {"sparse": Image.fromarray(sparse_to_scribble(read_sparse(d["sparse_file_name"], (h, w),
                                                                         self.point_radius)))}
        for key, fkey in (("pseudo", "pseudo_file_name"), ("pseudo_weight", "pseudo_weight_file_name")):
            if fkey in d:
                m = read_mask(d[fkey])
                check_same_size(image, m, d["file_name"], d[fkey])
                maps[key] = Image.fromarray(m)
        img = Image.fromarray(image)
        rng = np.random
        if rng.random() < 0.5:
            img = ImageOps.mirror(img)
            maps = {k: ImageOps.mirror(v) for k, v in maps.items()}
        b = self.crop_border
        if b > 0:
            cw = rng.randint(max(w - b, 1), w) if w > 1 else w
            ch = rng.randint(max(h - b, 1), h) if h > 1 else h
            box = ((w - cw) >> 1, (h - ch) >> 1, (w + cw) >> 1, (h + ch) >> 1)
            img = img.crop(box)
            maps = {k: v.crop(box) for k, v in maps.items()}
        if rng.random() < self.rotate_prob:
            angle = int(rng.randint(-self.rotate_degrees, self.rotate_degrees))
            img = img.rotate(angle, Image.BICUBIC)
            for k in maps:  # docs/ws_sam.md#q9: bicubic for label maps too, unless fixed
                nearest = self.label_rotate_nearest and k == "sparse"
                maps[k] = maps[k].rotate(angle, Image.NEAREST if nearest else Image.BICUBIC)
        if self.color_jitter:
            img = ImageEnhance.Brightness(img).enhance(rng.randint(5, 16) / 10.0)
            img = ImageEnhance.Contrast(img).enhance(rng.randint(5, 16) / 10.0)
            img = ImageEnhance.Color(img).enhance(rng.randint(0, 21) / 10.0)
            img = ImageEnhance.Sharpness(img).enhance(rng.randint(0, 31) / 10.0)
        if "pseudo" in maps and self.pepper_fraction > 0:
            p = np.array(maps["pseudo"])
            n = int(self.pepper_fraction * p.shape[0] * p.shape[1])
            rows, cols = rng.randint(0, p.shape[0], n), rng.randint(0, p.shape[1], n)
            p[rows, cols] = np.where(rng.randint(0, 2, n) == 0, 0, 255).astype(np.uint8)
            maps["pseudo"] = Image.fromarray(p)
        s = self.size
        d["image"] = torch.as_tensor(np.ascontiguousarray(np.asarray(img.resize((s, s), Image.BILINEAR)).transpose(2, 0, 1)))
        d["sparse"] = torch.as_tensor(scribble_to_sparse(np.asarray(maps["sparse"].resize((s, s), Image.NEAREST))))
        for k in ("pseudo", "pseudo_weight"):
            if k in maps:
                d[k] = torch.as_tensor(np.asarray(maps[k].resize((s, s), Image.BILINEAR), dtype=np.float32) / 255.0)
        d["height"], d["width"] = s, s
        return d
