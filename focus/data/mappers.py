"""Dataset mappers and loader factories (docs/datasets.md#train-mapper, GT of docs/focus.md#targets).

`FocusDatasetMapper` (training) reproduces the official `FocusDatasetMapper`; `FocusTestMapper` reproduces
detectron2's `DatasetMapper(is_train=False)` used by the official test loader, keeping the mask file name so
that the evaluator can read the GT. Both read files with `focus.data.io` (EXIF, any mode, size check).
"""
import copy
import logging

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.data import transforms as T
from detectron2.projects.point_rend import ColorAugSSDTransform
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.registry import Registry

from .catalog import ensure_registered
from ..errors import UnknownNameError
from .io import binarize_mask, read_image, read_image_and_mask

__all__ = [
    "ImageTestMapper",
    "MAPPER_REGISTRY",
    "register_mapper",
    "build_mapper",
    "FocusDatasetMapper",
    "FocusTestMapper",
    "mask_to_labels",
    "labels_to_instances",
    "build_train_loader",
    "build_test_loader",
]

logger = logging.getLogger(__name__)

MAPPER_REGISTRY = Registry("MAPPER")
MAPPER_REGISTRY.__doc__ = """Dataset mappers by name: `INPUT.DATASET_MAPPER_NAME` (training) and `INPUT.TEST_MAPPER_NAME`
(inference). Each is built as `MAPPER_REGISTRY.get(name)(cfg, is_train)`. A test mapper maps a dataset dict
(`__call__`, reads the file) and an in-memory image (`map_image(image, **extras)`) to the model's input dict."""


def register_mapper(name):
    """Class decorator: register a mapper under `name` (config values are names, not class names)."""

    def deco(cls):
        MAPPER_REGISTRY._do_register(name, cls)  # fvcore's `register` only takes the class name
        return cls

    return deco


def build_mapper(cfg, is_train):
    """The registered mapper that `cfg` names for training (`INPUT.DATASET_MAPPER_NAME`) or inference
    (`INPUT.TEST_MAPPER_NAME`), built from `cfg`."""
    name = cfg.INPUT.DATASET_MAPPER_NAME if is_train else cfg.INPUT.TEST_MAPPER_NAME
    key = "INPUT.DATASET_MAPPER_NAME" if is_train else "INPUT.TEST_MAPPER_NAME"
    if name not in MAPPER_REGISTRY:
        known = ", ".join(sorted(n for n, _ in MAPPER_REGISTRY))
        raise UnknownNameError(f"{key}: no mapper named {name!r}; registered mappers: {known}")
    return MAPPER_REGISTRY.get(name)(cfg, is_train)


def mask_to_labels(mask):
    """Semantic labels of a mask: foreground (``> 128``) -> 0, background -> 1, as uint8 ``(H, W)``.

    The official pipeline stores ``uint8(mask) + 1`` label files (docs/datasets.md#labels), which gives the same
    labels for 0/255 masks but spurious classes for soft masks (docs/focus.md#q11); binarising first avoids that.
    """
    return np.where(binarize_mask(mask), 0, 1).astype(np.uint8)


def labels_to_instances(sem_seg, ignore_label=255):
    """GT "instances" of docs/focus.md#targets from a label map ``(h, w)`` int64 tensor.

    One instance per class present (``!= ignore_label``), sorted: ``gt_classes`` int64 ``(K,)``,
    ``gt_masks`` bool ``(K, h, w)``, ``gt_boxes`` tight XYXY boxes (``x1 = max col + 1``; zeros if empty).
    """
    h, w = sem_seg.shape
    inst = Instances((h, w))
    classes = torch.unique(sem_seg)
    classes = classes[classes != ignore_label].to(torch.int64)
    inst.gt_classes = classes
    if len(classes) == 0:
        inst.gt_masks = torch.zeros((0, h, w), dtype=torch.bool)
        inst.gt_boxes = Boxes(torch.zeros((0, 4)))
    else:
        masks = BitMasks(torch.stack([sem_seg == c for c in classes]))
        inst.gt_masks = masks.tensor
        inst.gt_boxes = masks.get_bounding_boxes()
    return inst


@register_mapper("focus_dataset_mapper")
class FocusDatasetMapper:
    """Training mapper (official `FocusDatasetMapper`, docs/datasets.md#train-mapper).

    Reads image + mask, derives labels (0 fg, 1 bg), applies ``ResizeShortestEdge(MIN_SIZE_TRAIN,
    MAX_SIZE_TRAIN)`` -> optional ``RandomCrop_CategoryAreaConstraint`` -> optional SSD colour jitter ->
    horizontal flip, then pads (image 128, labels 255) according to `size_divisibility_mode`:

    * ``"fixed"`` (official, docs/focus.md#q6): every sample becomes exactly ``size_divisibility`` square;
      larger crops lose their right/bottom part (negative padding);
    * ``"divisible"``: pad right/bottom up to the next multiple of ``size_divisibility``, never crop.

    Output: the input dict plus ``image`` uint8 ``(3, h, w)``, ``sem_seg`` int64 ``(h, w)``, ``instances``
    (`labels_to_instances`), and ``height``/``width`` of the original image.
    """

    @configurable
    def __init__(self, is_train=True, *, augmentations, image_format="RGB", ignore_label=255,
                 size_divisibility=512, size_divisibility_mode="fixed", pad_value=128):
        if not is_train:
            raise ValueError("FocusDatasetMapper is the training mapper; use FocusTestMapper for inference")
        if size_divisibility_mode not in ("fixed", "divisible"):
            raise ValueError(f"INPUT.SIZE_DIVISIBILITY_MODE must be 'fixed' or 'divisible', got {size_divisibility_mode!r}")
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.ignore_label = ignore_label
        self.size_divisibility = size_divisibility
        self.size_divisibility_mode = size_divisibility_mode
        self.pad_value = pad_value
        logger.info(f"FocusDatasetMapper augmentations: {augmentations}")

    @classmethod
    def from_config(cls, cfg, is_train=True):
        augs = [T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN,
                                     cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING)]
        if cfg.INPUT.CROP.ENABLED:
            augs.append(T.RandomCrop_CategoryAreaConstraint(
                cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE, cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA,
                cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE))
        if cfg.INPUT.COLOR_AUG_SSD:
            augs.append(ColorAugSSDTransform(img_format=cfg.INPUT.FORMAT))
        augs.append(T.RandomFlip())
        return {
            "is_train": is_train,
            "augmentations": augs,
            "image_format": cfg.INPUT.FORMAT,
            "ignore_label": cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            "size_divisibility": cfg.INPUT.SIZE_DIVISIBILITY,
            "size_divisibility_mode": cfg.INPUT.SIZE_DIVISIBILITY_MODE,
        }

    def _padding(self, h, w):
        s = self.size_divisibility
        if s <= 0:
            return [0, 0, 0, 0]
        if self.size_divisibility_mode == "fixed":
            return [0, s - w, 0, s - h]  # negative amounts crop (docs/datasets.md#train-mapper step 5)
        return [0, (s - w % s) % s, 0, (s - h % s) % s]

    def __call__(self, dataset_dict):
        dataset_dict = copy.deepcopy(dataset_dict)
        if "annotations" in dataset_dict:
            raise ValueError(f"FocusDatasetMapper takes semantic masks, not 'annotations' ({dataset_dict['file_name']})")
        image, mask = read_image_and_mask(dataset_dict)
        if self.image_format == "BGR":
            image = image[:, :, ::-1]
        dataset_dict["height"], dataset_dict["width"] = image.shape[:2]
        # float64 labels as in the official mapper: detectron2 resizes non-uint8 maps with torch "nearest"
        sem_seg = mask_to_labels(mask).astype(np.float64)
        aug_input = T.AugInput(image, sem_seg=sem_seg)
        self.augmentations(aug_input)
        image = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        sem_seg = torch.as_tensor(aug_input.sem_seg.astype("long"))
        pad = self._padding(image.shape[-2], image.shape[-1])
        if any(pad):
            image = F.pad(image, pad, value=self.pad_value).contiguous()
            sem_seg = F.pad(sem_seg, pad, value=self.ignore_label).contiguous()
        dataset_dict["image"] = image
        dataset_dict["sem_seg"] = sem_seg
        dataset_dict["instances"] = labels_to_instances(sem_seg, self.ignore_label)
        return dataset_dict


class ImageTestMapper:
    """Base of test mappers: `__call__(dataset_dict)` reads the image of ``file_name`` (RGB uint8, EXIF applied) and
    returns a copy of the dict updated with `map_image(image)`, which the subclass defines."""

    def __call__(self, dataset_dict):
        dataset_dict = copy.deepcopy(dataset_dict)
        dataset_dict.update(self.map_image(read_image(dataset_dict["file_name"])))
        return dataset_dict


@register_mapper("focus_test_mapper")
class FocusTestMapper(ImageTestMapper):
    """Test mapper: detectron2 ``DatasetMapper(is_train=False)`` semantics (docs/datasets.md#test-mapper).

    ``ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST)`` with PIL bilinear on the uint8 RGB image (EXIF
    applied). Output: ``image`` uint8 ``(3, h', w')``, ``height``/``width`` of the original image, and the
    input's ``file_name``, ``image_id``, ``sem_seg_file_name`` (read by the evaluator, not here).
    """

    @configurable
    def __init__(self, is_train=False, *, min_size=512, max_size=2048, image_format="RGB"):
        if is_train:
            raise ValueError("FocusTestMapper is the inference mapper; use FocusDatasetMapper for training")
        self.resize = T.ResizeShortestEdge(min_size, max_size)
        self.image_format = image_format

    @classmethod
    def from_config(cls, cfg, is_train=False):
        return {"is_train": is_train, "min_size": cfg.INPUT.MIN_SIZE_TEST, "max_size": cfg.INPUT.MAX_SIZE_TEST,
                "image_format": cfg.INPUT.FORMAT}

    def map_image(self, image):
        """Model input for an RGB uint8 `(H, W, 3)` array: `{"image": uint8 (3, h', w'), "height": H, "width": W}`."""
        if self.image_format == "BGR":
            image = image[:, :, ::-1]
        height, width = image.shape[:2]
        aug_input = T.AugInput(image)
        self.resize(aug_input)
        tensor = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        return {"image": tensor, "height": height, "width": width}



def build_train_loader(cfg):
    """detectron2 infinite training loader over all ``cfg.DATASETS.TRAIN`` with the configured training mapper."""
    for name in cfg.DATASETS.TRAIN:
        ensure_registered(name)
    return build_detection_train_loader(cfg, mapper=build_mapper(cfg, is_train=True))


def build_test_loader(cfg, dataset_name):
    """detectron2 inference loader (batch 1) of `dataset_name` with the configured test mapper."""
    return build_detection_test_loader(cfg, ensure_registered(dataset_name), mapper=build_mapper(cfg, is_train=False))
