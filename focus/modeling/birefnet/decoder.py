"""BiRefNet decoder (`decoder.*`): image-patch branches, four decoder blocks, gradient attention, side heads."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .modules import BasicDecBlk, BasicLatBlk, SimpleConvs, image2patches, up

__all__ = ["BiRefNetDecoder"]


def _gdt_convs(in_channels, n=16):
    return nn.Sequential(nn.Conv2d(in_channels, n, 3, 1, 1), nn.BatchNorm2d(n), nn.ReLU(inplace=True))


class BiRefNetDecoder(nn.Module):
    """Top-down decoder from stride 32 to stride 1.

    Args:
        channels: encoder widths deepest first ``[C4, C3, C2, C1]`` (already doubled by the multi-scale
            concatenation).
        inter_channels, aspp_width: widths inside every decoder block (64 and 256 in every released model).
        fused_stride1: in eval, compute the stride-1 output with `fused_output` (same values up to rounding).
        deform_impl: deformable convolutions of the decoder blocks (`DeformableConv2d`).

    ``forward([x, x1, x2, x3, x4], gdt_gt=None)`` with ``x (B, 3, H, W)`` the normalised image (H, W multiples of
    32) returns, in eval, ``[logits (B, 1, H, W)]``; in training ``(gdt_preds, gdt_labels, [m4, m3, m2, p1])``
    where ``m*`` are the stride-32/16/8 side logits, ``gdt_preds`` the gradient-head logits at strides 32/16/8 and
    ``gdt_labels = gdt_gt * up(m_k)`` at the image size (docs/birefnet.md#q7).
    """

    def __init__(self, channels, inter_channels=64, aspp_width=256, fused_stride1=False, deform_impl="gather"):
        super().__init__()
        self.fused_stride1 = fused_stride1
        c = list(channels)
        ipt = [ch // 8 for ch in c]
        blk = dict(inter_channels=inter_channels, aspp_width=aspp_width, deform_impl=deform_impl)
        self.ipt_blk5 = SimpleConvs(2**10 * 3, ipt[0], inter_channels=64)
        self.ipt_blk4 = SimpleConvs(2**8 * 3, ipt[0], inter_channels=64)
        self.ipt_blk3 = SimpleConvs(2**6 * 3, ipt[1], inter_channels=64)
        self.ipt_blk2 = SimpleConvs(2**4 * 3, ipt[2], inter_channels=64)
        self.ipt_blk1 = SimpleConvs(2**0 * 3, ipt[3], inter_channels=64)
        self.decoder_block4 = BasicDecBlk(c[0] + ipt[0], c[1], **blk)
        self.decoder_block3 = BasicDecBlk(c[1] + ipt[0], c[2], **blk)
        self.decoder_block2 = BasicDecBlk(c[2] + ipt[1], c[3], **blk)
        self.decoder_block1 = BasicDecBlk(c[3] + ipt[2], c[3] // 2, **blk)
        self.conv_out1 = nn.Sequential(nn.Conv2d(c[3] // 2 + ipt[3], 1, 1, 1, 0))
        self.lateral_block4 = BasicLatBlk(c[1], c[1])
        self.lateral_block3 = BasicLatBlk(c[2], c[2])
        self.lateral_block2 = BasicLatBlk(c[3], c[3])
        self.conv_ms_spvn_4 = nn.Conv2d(c[1], 1, 1, 1, 0)
        self.conv_ms_spvn_3 = nn.Conv2d(c[2], 1, 1, 1, 0)
        self.conv_ms_spvn_2 = nn.Conv2d(c[3], 1, 1, 1, 0)
        self.gdt_convs_4 = _gdt_convs(c[1])
        self.gdt_convs_3 = _gdt_convs(c[2])
        self.gdt_convs_2 = _gdt_convs(c[3])
        for k in (4, 3, 2):
            self.add_module(f"gdt_convs_pred_{k}", nn.Sequential(nn.Conv2d(16, 1, 1, 1, 0)))
        for k in (4, 3, 2):
            self.add_module(f"gdt_convs_attn_{k}", nn.Sequential(nn.Conv2d(16, 1, 1, 1, 0)))

    def fused_output(self, p1, x):
        """``conv_out1(cat(up(p1), ipt_blk1(x)))`` without any full-resolution feature map.

        The 1x1 output conv is linear and commutes with bilinear resizing, so its ``p1`` part runs at stride 4
        before the resize; its image part composes with the two 3x3 convs of ``ipt_blk1`` (no activation between
        them) into one 5x5 conv 3 -> 1. That composition differs from the two padded convs only on the outermost
        pixel ring (the zero padding of the intermediate map), which is recomputed exactly on 3-pixel strips.
        Equal to the official path up to float rounding (~1e-6 on the logits); about 10x fewer operations at
        stride 1 and no ``(B, C, H, W)`` intermediate.
        """
        w = self.conv_out1[0].weight[:, :, 0, 0]  # (1, Cp + Ci)
        cp = p1.shape[1]
        wa, wb = w[:, :cp], w[:, cp:]
        low = F.conv2d(p1, wa[:, :, None, None])
        H, W = x.shape[-2:]
        c1, c2 = self.ipt_blk1.conv1, self.ipt_blk1.conv_out
        k2 = torch.einsum("oc,cikl->oikl", wb, c2.weight)  # conv_out then the 1x1 projection: (1, inter, 3, 3)
        kernel = x.new_zeros(wb.shape[0], x.shape[1], 5, 5)
        for a in range(3):
            for b in range(3):
                kernel[:, :, a:a + 3, b:b + 3] += torch.einsum("oc,cikl->oikl", k2[:, :, a, b], c1.weight)
        bias = wb @ c2.bias + k2.sum((2, 3)) @ c1.bias + self.conv_out1[0].bias
        img = F.conv2d(x, kernel, padding=2) + bias.view(1, -1, 1, 1)
        if H >= 3 and W >= 3:
            def exact(strip):
                return F.conv2d(self.ipt_blk1(strip), wb[:, :, None, None], self.conv_out1[0].bias)
            img[..., 0, :] = exact(x[..., :3, :])[..., 0, :]
            img[..., -1, :] = exact(x[..., -3:, :])[..., -1, :]
            img[..., :, 0] = exact(x[..., :, :3])[..., :, 0]
            img[..., :, -1] = exact(x[..., :, -3:])[..., :, -1]
        return up(low, (H, W)) + img

    def _patch_branch(self, blk, x, feat):
        """Image cut into blocks of the feature's size, stacked on channels, through ``blk`` (the official
        resize of the patch tensor to the feature size is an identity at multiple-of-32 sizes)."""
        h, w = feat.shape[-2:]
        patches = image2patches(x, x.shape[-2] // h, x.shape[-1] // w)
        return blk(up(patches, (h, w)))

    def _gradient_attention(self, k, p, gdt_gt, side, gdt_preds, gdt_labels):
        g = getattr(self, f"gdt_convs_{k}")(p)
        if self.training:
            gdt_labels.append(gdt_gt * up(side, gdt_gt.shape[-2:]))
            gdt_preds.append(getattr(self, f"gdt_convs_pred_{k}")(g))
        return p * getattr(self, f"gdt_convs_attn_{k}")(g).sigmoid()

    def forward(self, features, gdt_gt=None):
        x, x1, x2, x3, x4 = features
        train = self.training
        gdt_preds, gdt_labels, sides = [], [], []

        x4 = torch.cat((x4, self._patch_branch(self.ipt_blk5, x, x4)), 1)
        p4 = self.decoder_block4(x4)
        m4 = self.conv_ms_spvn_4(p4) if train else None
        p4 = self._gradient_attention(4, p4, gdt_gt, m4, gdt_preds, gdt_labels)

        _p3 = up(p4, x3.shape[-2:]) + self.lateral_block4(x3)
        _p3 = torch.cat((_p3, self._patch_branch(self.ipt_blk4, x, _p3)), 1)
        p3 = self.decoder_block3(_p3)
        m3 = self.conv_ms_spvn_3(p3) if train else None
        p3 = self._gradient_attention(3, p3, gdt_gt, m3, gdt_preds, gdt_labels)

        _p2 = up(p3, x2.shape[-2:]) + self.lateral_block3(x2)
        _p2 = torch.cat((_p2, self._patch_branch(self.ipt_blk3, x, _p2)), 1)
        p2 = self.decoder_block2(_p2)
        m2 = self.conv_ms_spvn_2(p2) if train else None
        p2 = self._gradient_attention(2, p2, gdt_gt, m2, gdt_preds, gdt_labels)

        _p1 = up(p2, x1.shape[-2:]) + self.lateral_block2(x1)
        _p1 = torch.cat((_p1, self._patch_branch(self.ipt_blk2, x, _p1)), 1)
        _p1 = self.decoder_block1(_p1)
        if not train and self.fused_stride1:
            return [self.fused_output(_p1, x)]
        _p1 = up(_p1, x.shape[-2:])
        _p1 = torch.cat((_p1, self.ipt_blk1(x)), 1)
        p1 = self.conv_out1(_p1)
        if not train:
            return [p1]
        sides = [m4, m3, m2, p1]
        return gdt_preds, gdt_labels, sides
