"""FSNet mappers: the official test transform (``fsnet_test``) and training transform (``fsnet_train``).

Both squash the frame and the flow image to ``INPUT.FSNET.SIZE`` (352) with PIL bilinear, as the official
``transforms.Resize((352, 352))`` does (aspect ratio not kept, docs/fsnet.md#q10), and hand uint8 (3, S, S)
tensors to the model, which normalises both with ImageNet statistics (docs/fsnet.md#q11).

Flow for a frame, in order of preference: the ``flow=`` argument / the dict's ``flow_file_name`` (a rendered flow
image, any estimator); the official pairing, flow from the frame to the next one (``next_file_name``); the
previous frame (``prev_file_name`` or, in `map_image`, the previous call's frame): the flow from the current
frame back to it, negated, which is in the current frame's coordinates and points the way the object moves; a
white image (zero motion) for the first frame of a stream. Estimated flow uses torchvision RAFT
(`focus.modeling.flow.FlowEstimator`, ``MODEL.FSNET.FLOW.*``), built on first use.
"""
import copy

import numpy as np
import torch
from detectron2.config import configurable
from PIL import Image

from ...data.io import read_image, read_mask
from ...data.mappers import register_mapper
from ..flow import FlowEstimator, render_flow, zero_motion_image

__all__ = ["FSNetTestMapper", "FSNetTrainMapper", "squash"]


def squash(image: np.ndarray, size: int, resample=Image.BILINEAR) -> np.ndarray:
    """PIL resize of an (H, W[, C]) uint8 array to (size, size): ``transforms.Resize((size, size))`` on a PIL image."""
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), resample))


def _chw(image: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))


def _flow_image(flow, height, width):
    """A user's ``flow=``: an RGB uint8 rendering (H', W', 3), or a raw field (2, H, W)/(H, W, 2) rendered here."""
    if torch.is_tensor(flow):
        flow = flow.cpu().numpy()
    flow = np.asarray(flow)
    if flow.ndim == 3 and flow.shape[2] == 3 and flow.dtype == np.uint8:
        return flow
    if flow.ndim == 3 and 2 in (flow.shape[0], flow.shape[2]) and np.issubdtype(flow.dtype, np.floating):
        return render_flow(flow)
    raise ValueError(f"flow= must be an RGB uint8 flow image (H, W, 3) or a float flow field (2, H, W); "
                     f"got {flow.dtype} {flow.shape}")


class _FlowMixin:
    def _estimator(self):
        if self._flow_estimator is None:
            self._flow_estimator = FlowEstimator(**self.flow_options)
        return self._flow_estimator

    def _flow_for_file(self, dataset_dict, image):
        if dataset_dict.get("flow_file_name"):
            return read_image(dataset_dict["flow_file_name"])
        if dataset_dict.get("next_file_name"):
            return self._estimator().image(image, read_image(dataset_dict["next_file_name"]))
        if dataset_dict.get("prev_file_name"):
            return self._estimator().image(image, read_image(dataset_dict["prev_file_name"]), negate=True)
        return zero_motion_image(*image.shape[:2])


def _flow_options(cfg):
    f = cfg.MODEL.FSNET.FLOW
    return {"model": f.MODEL, "weights": f.WEIGHTS, "num_flow_updates": f.NUM_FLOW_UPDATES,
            "max_size": f.MAX_SIZE, "device": cfg.MODEL.DEVICE}


@register_mapper("fsnet_test")
class FSNetTestMapper(_FlowMixin):
    """Official FSNet test transform; also the predictor's per-frame input builder (`map_image`).

    Output: ``image`` and ``flow`` uint8 (3, S, S), ``height``/``width`` of the frame, plus the input dict's keys.
    `map_image` keeps the last frame so that a stream of frames gets flow from the previous one; call `reset()`
    between videos.
    """

    needs_flow = True

    @configurable
    def __init__(self, is_train=False, *, size=352, flow_options=None):
        self.size = size
        self.flow_options = dict(flow_options or {})
        self._flow_estimator = None
        self._previous = None

    @classmethod
    def from_config(cls, cfg, is_train=False):
        return {"is_train": is_train, "size": cfg.INPUT.FSNET.SIZE, "flow_options": _flow_options(cfg)}

    def reset(self):
        """Forget the previous frame (start of a new video)."""
        self._previous = None

    def map_image(self, image: np.ndarray, flow=None, **extras):
        """RGB uint8 (H, W, 3) frame (+ optional ``flow`` image or field) -> model input dict; see the module doc."""
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8):
            raise ValueError("FSNetTestMapper.map_image expects an RGB uint8 (H, W, 3) array")
        height, width = image.shape[:2]
        if flow is not None:
            flow = _flow_image(flow, height, width)
        elif self._previous is not None and self._previous.shape == image.shape:
            flow = self._estimator().image(image, self._previous, negate=True)
        else:
            flow = zero_motion_image(height, width)
        self._previous = image
        return {"image": _chw(squash(image, self.size)), "flow": _chw(squash(flow, self.size)),
                "height": height, "width": width, **extras}

    def __call__(self, dataset_dict):
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image(dataset_dict["file_name"])
        flow = self._flow_for_file(dataset_dict, image)
        height, width = image.shape[:2]
        dataset_dict.update(image=_chw(squash(image, self.size)), flow=_chw(squash(flow, self.size)),
                            height=height, width=width)
        return dataset_dict


@register_mapper("fsnet_train")
class FSNetTrainMapper(_FlowMixin):
    """Official FSNet training transform: frame, flow image and GT squashed to S with PIL bilinear; the target
    stays soft at edges (``sem_seg`` float (S, S) in [0, 1], docs/fsnet.md#q15) unless ``INPUT.FSNET.BINARY_TARGETS``.
    No other augmentation (the multi-scale step is in the model). ``MODEL.FSNET.STREAMS: rgb`` reads no flow;
    ``flow`` puts the flow image in ``flow`` only (docs/fsnet.md#q14)."""

    @configurable
    def __init__(self, is_train=True, *, size=352, streams="rgb+flow", binary_targets=False, flow_options=None):
        self.size = size
        self.streams = streams
        self.binary_targets = binary_targets
        self.flow_options = dict(flow_options or {})
        self._flow_estimator = None

    @classmethod
    def from_config(cls, cfg, is_train=True):
        return {"is_train": is_train, "size": cfg.INPUT.FSNET.SIZE, "streams": cfg.MODEL.FSNET.STREAMS,
                "binary_targets": cfg.INPUT.FSNET.BINARY_TARGETS, "flow_options": _flow_options(cfg)}

    def __call__(self, dataset_dict):
        dataset_dict = copy.deepcopy(dataset_dict)
        image = read_image(dataset_dict["file_name"])
        mask = read_mask(dataset_dict["sem_seg_file_name"])
        if mask.shape != image.shape[:2]:
            raise ValueError(f"{dataset_dict['sem_seg_file_name']}: mask {mask.shape} vs image {image.shape[:2]}")
        dataset_dict["height"], dataset_dict["width"] = image.shape[:2]
        if self.streams != "flow":
            dataset_dict["image"] = _chw(squash(image, self.size))
        if self.streams != "rgb":
            dataset_dict["flow"] = _chw(squash(self._flow_for_file(dataset_dict, image), self.size))
        target = torch.from_numpy(squash(mask, self.size).astype(np.float32) / 255.0)
        dataset_dict["sem_seg"] = (target > 0.5).float() if self.binary_targets else target
        return dataset_dict
