"""Edge prior of the FOCUS backbone: the Canny edge overlay and the ResNet-50 `EdgePriorModule`
(docs/focus.md#edge-prior).

The overlay is computed with OpenCV on CPU numpy arrays (no gradient); OpenCV's GaussianBlur/Canny/addWeighted
are needed to reproduce the released checkpoints bit-exactly.
"""
import cv2
import numpy as np
import torch
from torch import nn

__all__ = ["edge_overlay", "Bottleneck", "EdgePriorModule"]


def _overlay_u8(img):
    """(h, w, 3) uint8 -> (h, w, 3) uint8: Gaussian blur blended 0.7/0.3 with its per-channel Canny edges."""
    blur = cv2.GaussianBlur(img, (5, 5), 1.4)
    edges = np.stack([cv2.Canny(np.ascontiguousarray(blur[..., c]), 100, 200) for c in range(3)], axis=-1)
    return cv2.addWeighted(blur, 0.7, edges, 0.3, 0)


@torch.no_grad()
def edge_overlay(x, pixel_mean=None, pixel_std=None, from_rgb=False):
    """Input image of the edge prior: a Canny edge overlay in [0, 1]; (B, 3, H, W) -> (B, 3, H, W), dtype of `x`.

    Default (official, checkpoint-faithful; docs/focus.md#edge-prior, docs/focus.md#q4): `x` is the *normalised,
    zero-padded* tensor; it is turned into uint8 by `floor(clamp(x * 255 + 0.5, 0, 255))` (a contrast-stretched, clipped
    image), converted RGB->BGR (never swapped back), blurred (5x5, sigma 1.4), overlaid with its per-channel Canny edges
    (100, 200) by `addWeighted(blur, 0.7, edges, 0.3, 0)` and divided by 255.

    `from_rgb=True` (focus-only, `MODEL.DINOV2.EDGE_FROM_RGB`, *not* checkpoint-equivalent): the same overlay
    computed from the un-normalised image `x * std + mean` (0..255, RGB order kept); padding becomes the mean colour.
    `pixel_mean` / `pixel_std` are 3-sequences on the 0..255 scale, needed only with `from_rgb`.
    """
    if from_rgb:
        mean = torch.as_tensor(pixel_mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.as_tensor(pixel_std, dtype=torch.float32).view(1, 3, 1, 1)
        img = (x.detach().float().cpu() * std + mean).round_().clamp_(0, 255).to(torch.uint8)
    else:
        img = x.detach().float().cpu().mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
        img = img.flip(1)  # cv2.cvtColor(RGB2BGR), docs/focus.md#edge-prior step 2: the BGR order is kept downstream
    img = img.permute(0, 2, 3, 1).numpy()
    out = np.stack([_overlay_u8(np.ascontiguousarray(im)) for im in img])
    # uint8 / 255.0 in float64 then cast, as the official code does
    out = torch.from_numpy(out.astype(np.float64) / 255.0).permute(0, 3, 1, 2)
    return out.to(device=x.device, dtype=x.dtype)


class Bottleneck(nn.Module):
    """torchvision ResNet v1.5 bottleneck (stride on the 3x3 conv, expansion 4); parameter names as torchvision."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample if downsample is not None else nn.Sequential()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


class EdgePriorModule(nn.Module):
    """ResNet trunk (torchvision layout, ResNet-50 by default) + 1x1 projections to the ViT width
    (docs/focus.md#edge-prior).

    forward((B, 3, H, W) edge overlay) -> `c1` (B, D, H/4, W/4) map and `c2, c3, c4` token sequences
    (B, H/8*W/8, D), (B, H/16*W/16, D), (B, H/32*W/32, D). `depths`/`width` other than [3, 4, 6, 3] / 64 give a
    smaller trunk for tiny CPU configs (not loadable from torchvision's ResNet-50).
    """

    def __init__(self, embed_dim, depths=(3, 4, 6, 3), width=64):
        super().__init__()
        if len(depths) != 4:
            raise ValueError(f"MODEL.DINOV2.EDGE_DEPTHS must have 4 entries, got {list(depths)}")
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = width
        for i, depth in enumerate(depths):
            planes = width * 2**i
            stride = 1 if i == 0 else 2
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False), nn.BatchNorm2d(planes * 4)
            )
            blocks = [Bottleneck(inplanes, planes, stride, downsample)]
            inplanes = planes * 4
            blocks += [Bottleneck(inplanes, planes) for _ in range(1, depth)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        for i in range(4):
            setattr(self, f"fc{i + 1}", nn.Conv2d(width * 4 * 2**i, embed_dim, 1, bias=True))

    def forward(self, x, project_c1=True):
        """With `project_c1=False`, `c1` is returned before its projection `fc1` (B, 4 * width, H/4, W/4): the
        caller applies `fc1` when it needs the map (D / (4 * width) times smaller until then: 16 vs 64 MB for
        FOCUS-L at 512 px)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c1 = self.layer1(x)
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        c1 = self.fc1(c1) if project_c1 else c1
        c2, c3, c4 = self.fc2(c2), self.fc3(c3), self.fc4(c4)
        return c1, c2.flatten(2).transpose(1, 2), c3.flatten(2).transpose(1, 2), c4.flatten(2).transpose(1, 2)
