"""torchvision ResNet trunks as plain module lists, for members whose official code re-exposes the stages.

Several official codebases (FSNet, ...) keep torchvision's ResNet-50 stages under their own attribute
names (``layer1_rgb``, ``conv1_flow``, ...). `resnet_trunk` builds torchvision's modules (same function,
same parameter names below the stage) so a member only chooses the attribute names; `load_imagenet_trunk`
copies a torchvision ImageNet state dict into such a trunk. No weights are ever downloaded.
"""
from typing import Dict, Sequence

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck, ResNet

__all__ = ["resnet_trunk", "RESNET50_DEPTHS", "load_imagenet_trunk"]

RESNET50_DEPTHS = (3, 4, 6, 3)


def resnet_trunk(depths: Sequence[int] = RESNET50_DEPTHS) -> Dict[str, nn.Module]:
    """torchvision's Bottleneck ResNet (v1.5: stride on the 3x3 conv) without avgpool/fc.

    Returns ``{"conv1", "bn1", "relu", "maxpool", "layer1".."layer4"}`` (torchvision's modules, its
    initialisation). ``depths`` = blocks per stage; (3, 4, 6, 3) is ResNet-50.
    """
    net = ResNet(Bottleneck, list(depths))
    return {name: getattr(net, name) for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")}


def load_imagenet_trunk(modules: Dict[str, nn.Module], state_dict: Dict[str, torch.Tensor]) -> int:
    """Copy a torchvision ResNet state dict (``conv1.weight``, ``layer1.0.conv1.weight``, ...) into `modules`
    (torchvision name -> module, as returned by `resnet_trunk`). ``fc.*`` is ignored; every trunk tensor must be
    present with the same shape. Returns the number of tensors copied."""
    copied = 0
    for name, module in modules.items():
        own = module.state_dict()
        if not own:
            continue
        sub = {k[len(name) + 1:]: v for k, v in state_dict.items() if k.startswith(name + ".")}
        module.load_state_dict(sub, strict=True)
        copied += len(sub)
    return copied
