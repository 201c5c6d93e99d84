"""A ResNet returning its five stage maps, with timm's parameter names (shared by the members that use one)."""
from torch import nn

__all__ = ["ResNetFeatures"]


class ResNetFeatures(nn.Module):
    """timm `ResNet` (bottleneck, v1.5: stride on the 3x3) without its classifier, returning
    `[stem, layer1, layer2, layer3, layer4]` = strides 2, 4, 8, 16, 32 with channels 64, 256, 512, 1024, 2048.

    The same tensors and names as timm's `resnet50(features_only=True)` (`conv1`, `bn1`, `layerL.i.*`), which is
    what released checkpoints built on that call hold; `depths` other than (3, 4, 6, 3) build shallower variants
    (e.g. the reduced ResNets of golden cases). Built directly because `timm.create_model("resnet50", ...)` does
    not accept another block count.

    Args:
        depths: bottleneck blocks per stage.
        stem_width: output channels of the stem.
    """

    def __init__(self, depths=(3, 4, 6, 3), stem_width=64):
        super().__init__()
        from timm.models.resnet import Bottleneck, ResNet  # timm is imported only when a ResNet is built

        net = ResNet(block=Bottleneck, layers=list(depths), stem_width=stem_width, num_classes=0)
        self.conv1, self.bn1, self.act1, self.maxpool = net.conv1, net.bn1, net.act1, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.channels = (stem_width, 256, 512, 1024, 2048)
        self.strides = (2, 4, 8, 16, 32)

    def forward(self, x):
        """`x` (B, 3, H, W) -> list of 5 maps (B, C_i, H / s_i, W / s_i) (sizes rounded as the convs do)."""
        x0 = self.act1(self.bn1(self.conv1(x)))
        x1 = self.layer1(self.maxpool(x0))
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        x4 = self.layer4(x3)
        return [x0, x1, x2, x3, x4]
