"""Optical flow for video members: torchvision RAFT on any device, rendered in the Middlebury colour coding.

FSNet was trained on FlowNet 2.0 flow rendered with the Middlebury colour wheel normalised by each frame's
maximum magnitude; `torchvision.utils.flow_to_image` implements that same wheel and formula (docs/fsnet.md#flow),
so `render_flow` is that function. `FlowEstimator` wraps ``raft_small``/``raft_large`` built without download
(weights are a local state dict given by the user; random weights in tests). Shared by ``tools/compute_flow.py``,
the FSNet mappers and the predictor path (flow from the previous frame on the fly).
"""
import logging
import math
from typing import Optional

import numpy as np
import torch
from torch.nn import functional as F

__all__ = ["FlowEstimator", "render_flow", "zero_motion_image", "RAFT_MODELS"]

logger = logging.getLogger(__name__)

RAFT_MODELS = ("raft_small", "raft_large")


def render_flow(flow) -> np.ndarray:
    """(2, H, W) or (H, W, 2) flow in pixels (u right, v down) -> (H, W, 3) uint8 RGB Middlebury rendering
    (`torchvision.utils.flow_to_image`: hue = direction, saturation = magnitude / the frame's max magnitude)."""
    from torchvision.utils import flow_to_image

    flow = torch.as_tensor(np.asarray(flow) if not torch.is_tensor(flow) else flow).float().cpu()
    if flow.ndim != 3:
        raise ValueError(f"flow must be (2, H, W) or (H, W, 2), got {tuple(flow.shape)}")
    if flow.shape[0] != 2:
        flow = flow.permute(2, 0, 1)
    return flow_to_image(flow).permute(1, 2, 0).numpy()


def zero_motion_image(height: int, width: int) -> np.ndarray:
    """The rendering of a zero flow field: all white (H, W, 3) uint8 (the first frame of a stream has no motion)."""
    return render_flow(torch.zeros(2, height, width))


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8):
        raise ValueError("flow estimation expects RGB uint8 (H, W, 3) images")
    return torch.tensor(image).permute(2, 0, 1).float()


class FlowEstimator:
    """RAFT optical flow between two RGB uint8 frames of the same size.

    Args:
        model: "raft_small" or "raft_large" (torchvision.models.optical_flow).
        weights: path of a local state dict (e.g. torchvision's ``raft_small_C_T_V2-01064c6d.pth``); "" keeps
            random weights (tests only: a warning is logged).
        num_flow_updates: RAFT refinement iterations (torchvision default 12).
        max_size: frames whose longer side exceeds it are downscaled for estimation; the flow is resized back
            and its vectors rescaled.
        device: where RAFT runs.
    """

    def __init__(self, model: str = "raft_small", weights: str = "", num_flow_updates: int = 12,
                 max_size: int = 1024, device: str = "cpu"):
        from torchvision.models import optical_flow

        if model not in RAFT_MODELS:
            raise ValueError(f"flow model must be one of {RAFT_MODELS}, got {model!r}")
        self.net = getattr(optical_flow, model)(weights=None, progress=False)
        if weights:
            sd = torch.load(weights, map_location="cpu", weights_only=True)
            self.net.load_state_dict(sd.get("state_dict", sd) if isinstance(sd, dict) else sd)
        else:
            logger.warning(f"{model}: no weights given, using random weights (flow is meaningless)")
        self.net.eval().to(device)
        self.device = torch.device(device)
        self.num_flow_updates = num_flow_updates
        self.max_size = max_size

    @torch.inference_mode()
    def __call__(self, image1: np.ndarray, image2: np.ndarray) -> torch.Tensor:
        """Flow from `image1` to `image2` (both (H, W, 3) uint8 RGB) -> (2, H, W) float32 on the CPU, in pixels
        of the input size: ``image1[y, x]`` moves to ``image2[y + v, x + u]``."""
        if image1.shape != image2.shape:
            raise ValueError(f"frames differ in size: {image1.shape} vs {image2.shape}")
        h, w = image1.shape[:2]
        pair = torch.stack([_to_tensor(image1), _to_tensor(image2)]).to(self.device)
        pair = pair / 127.5 - 1.0  # the RAFT weights' transforms(): [-1, 1]
        scale = min(1.0, self.max_size / max(h, w))
        hs, ws = max(8, round(h * scale)), max(8, round(w * scale))
        if (hs, ws) != (h, w):
            pair = F.interpolate(pair, size=(hs, ws), mode="bilinear", align_corners=False, antialias=True)
        # RAFT needs multiples of 8 and at least 128 px (its correlation pyramid); replicate padding
        ph, pw = max(128, math.ceil(hs / 8) * 8), max(128, math.ceil(ws / 8) * 8)
        pair = F.pad(pair, (0, pw - ws, 0, ph - hs), mode="replicate")
        flow = self.net(pair[:1], pair[1:], num_flow_updates=self.num_flow_updates)[-1][0, :, :hs, :ws]
        if (hs, ws) != (h, w):
            flow = F.interpolate(flow[None], size=(h, w), mode="bilinear", align_corners=False)[0]
            flow[0] *= w / ws
            flow[1] *= h / hs
        return flow.float().cpu()

    def image(self, image1: np.ndarray, image2: np.ndarray, negate: bool = False) -> np.ndarray:
        """`render_flow` of the flow `image1` -> `image2` (negated if `negate`): (H, W, 3) uint8."""
        flow = self(image1, image2)
        return render_flow(-flow if negate else flow)
