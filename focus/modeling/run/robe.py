"""RUN's ROBE (RGB-domain background estimation): InteractNet(7, 8, 3) with the official parameter names.
Its outputs feed nothing else; it is only trained when the reconstruction loss is enabled (docs/run.md#q2)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["InteractNet"]


class _UNetConvBlockFre(nn.Module):
    """conv_1 (3x3) -> half-instance-norm (first out/2 channels) -> LeakyReLU 0.1 -> conv_2 (3x3) -> LeakyReLU 0.1,
    plus a 1x1 `identity` of the input."""

    def __init__(self, in_size, out_size, relu_slope=0.1):
        super().__init__()
        self.identity = nn.Conv2d(in_size, out_size, 1)
        self.conv_1 = nn.Conv2d(in_size, out_size, 3, padding=1)
        self.relu_1 = nn.LeakyReLU(relu_slope, inplace=False)
        self.conv_2 = nn.Conv2d(out_size, out_size, 3, padding=1)
        self.relu_2 = nn.LeakyReLU(relu_slope, inplace=False)
        self.norm = nn.InstanceNorm2d(out_size // 2, affine=True)

    def forward(self, x):
        out = self.conv_1(x)
        o1, o2 = torch.chunk(out, 2, dim=1)
        out = self.relu_1(torch.cat([self.norm(o1), o2], 1))
        out = self.relu_2(self.conv_2(out))
        return out + self.identity(x)


class _InvBlock(nn.Module):
    """y1 = x1 + F(x2); y2 = x2 exp(0.8 (2 sigmoid(H y1) - 1)) + G(y1)."""

    def __init__(self, channel_num, channel_split_num, clamp=0.8):
        super().__init__()
        self.split_len1 = channel_split_num
        self.split_len2 = channel_num - channel_split_num
        self.clamp = clamp
        self.F = _UNetConvBlockFre(self.split_len2, self.split_len1)
        self.G = _UNetConvBlockFre(self.split_len1, self.split_len2)
        self.H = _UNetConvBlockFre(self.split_len1, self.split_len2)

    def forward(self, x):
        x1, x2 = x.narrow(1, 0, self.split_len1), x.narrow(1, self.split_len1, self.split_len2)
        y1 = x1 + self.F(x2)
        s = self.clamp * (torch.sigmoid(self.H(y1)) * 2 - 1)
        y2 = x2.mul(torch.exp(s)) + self.G(y1)
        return torch.cat([y1, y2], 1)


class _SpaBlock(nn.Module):
    def __init__(self, nc):
        super().__init__()
        self.block = _InvBlock(nc, nc // 2)

    def forward(self, x):
        return x + self.block(x)


class _FrequencyProcess(nn.Module):
    """Keys of the FFT branch (built, never called: docs/run.md#q3)."""

    def __init__(self, nc, spatial):
        super().__init__()
        k, groups = (3, nc) if spatial else (1, 1)

        def branch():
            return nn.Sequential(nn.Conv2d(nc, nc, k, padding=k // 2, groups=groups), nn.LeakyReLU(0.1),
                                 nn.Conv2d(nc, nc, k, padding=k // 2, groups=groups))

        self.processreal = branch()
        self.processimag = branch()


class _Fuse(nn.Module):
    """SpatialFuse (3x3 `frequency_spatial`/`cat`) or ChannelFuse (1x1): x' = SpaBlock(x);
    out = cat([x', frequency_spatial(x')]) + x."""

    def __init__(self, nc, spatial):
        super().__init__()
        k = 3 if spatial else 1
        self.spatial_process = _SpaBlock(nc)
        self.frequency_process = _FrequencyProcess(nc, spatial)
        self.frequency_spatial = nn.Conv2d(nc, nc, k, padding=k // 2)
        self.cat = nn.Conv2d(2 * nc, nc, k, padding=k // 2)

    def forward(self, x):
        xs = self.spatial_process(x)
        return self.cat(torch.cat([xs, self.frequency_spatial(xs)], 1)) + x


class _ProcessBlock(nn.Module):
    def __init__(self, nc):
        super().__init__()
        self.spa = _Fuse(nc, spatial=True)
        self.cha = _Fuse(nc, spatial=False)

    def forward(self, x):
        return self.cha(self.spa(x))


class _ProcessNet(nn.Module):
    """Two-level U-Net of ProcessBlocks: nc -> 2nc -> 3nc and back (bilinear, align_corners=False)."""

    def __init__(self, nc):
        super().__init__()
        self.conv0 = nn.Conv2d(nc, nc, 3, padding=1)
        self.conv1 = _ProcessBlock(nc)
        self.downsample1 = nn.Conv2d(nc, nc * 2, 2, stride=2)
        self.conv2 = _ProcessBlock(nc * 2)
        self.downsample2 = nn.Conv2d(nc * 2, nc * 3, 2, stride=2)
        self.conv3 = _ProcessBlock(nc * 3)
        self.up1 = nn.ConvTranspose2d(nc * 5, nc * 2, 1)
        self.conv4 = _ProcessBlock(nc * 2)
        self.up2 = nn.ConvTranspose2d(nc * 3, nc, 1)
        self.conv5 = _ProcessBlock(nc)
        self.convout = nn.Conv2d(nc, nc, 3, padding=1)

    def forward(self, x):
        x = self.conv0(x)
        x01 = self.conv1(x)
        x12 = self.conv2(self.downsample1(x01))
        x3 = self.conv3(self.downsample2(x12))
        x34 = self.up1(torch.cat([F.interpolate(x3, size=x12.shape[2:], mode="bilinear"), x12], 1))
        x4 = self.conv4(x34)
        x4 = self.up2(torch.cat([F.interpolate(x4, size=x01.shape[2:], mode="bilinear"), x01], 1))
        return self.convout(self.conv5(x4))


class InteractNet(nn.Module):
    """ROBE reconstruction net: extract (1x1 inp -> nc), ProcessNet with a residual, recons (1x1 nc -> out).
    Input [mask, B_hat, image] (B, 7, H, W) -> background (B, 3, H, W)."""

    def __init__(self, inp_channels=7, nc=8, out_channels=3):
        super().__init__()
        self.extract = nn.Conv2d(inp_channels, nc, 1)
        self.process = _ProcessNet(nc)
        self.recons = nn.Conv2d(nc, out_channels, 1)

    def forward(self, x):
        xf = self.extract(x)
        return self.recons(self.process(xf) + xf)
