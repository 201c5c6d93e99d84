"""Memory-lean in-place helpers: sums and norms of large feature maps computed in slices, into the map itself.

Used where a network adds several contributions to one large map (FOCUS's stride-4 pyramid level: 64 MB at
512 px in fp32). Each helper computes the same function as its plain formulation (tested); under autograd the
in-place slices are recorded as usual, and `batch_norm_inplace_` falls back to the plain call.
"""
import torch
import torch.nn.functional as F

__all__ = ["add_upsample_2x2_", "add_interpolated_", "batch_norm_inplace_"]


def add_upsample_2x2_(out, tokens, up, h, w, rows=None):
    """`out += up(map)` in place, for `up` an `nn.ConvTranspose2d(C, O, kernel_size=2, stride=2)`, `map` the
    (B, C, h, w) grid of `tokens` (B, h*w, C) and `out` a contiguous (B, O, 2h, 2w) tensor; returns `out`.

    The transposed convolution is one GEMM and a pixel shuffle, with the same sums (each output pixel has exactly
    one input pixel and one kernel tap); on CPU the GEMM runs at matmul speed, whereas oneDNN's deconvolution of the
    channels-last token view is slower and needs a layout copy (docs/speed_memory.md#kernels). The shuffle is a strided
    view added straight into `out`, so the upsampled map is never materialised; with `rows`, the GEMM runs on
    `rows` grid rows at a time, which bounds its output to `rows / h` of the map: a row's sums do not depend on
    the other rows (bit-identical at the FOCUS-L shapes here; BLAS may pick another kernel for a few rows).
    """
    b, _, c = tokens.shape
    o = up.out_channels
    weight = up.weight.reshape(c, o * 4).t()  # rows ordered (o, kh, kw)
    bias = None if up.bias is None else up.bias.repeat_interleave(4)
    grid = tokens.view(b, h, w, c)
    dst = out.view(b, o, h, 2, w, 2)
    rows = rows or h
    for r0 in range(0, h, rows):
        r = min(rows, h - r0)
        y = F.linear(grid[:, r0 : r0 + r].reshape(b, r * w, c), weight, bias)  # (B, r*w, O*4)
        dst[:, :, r0 : r0 + r].add_(y.view(b, r, w, o, 2, 2).permute(0, 3, 1, 4, 2, 5))
    return out


def _image_channel_slices(x, channels):
    """`(image, channel)` slice pairs covering (B, C, ...) `x`: one image and `channels` channels each (a
    contiguous block of a contiguous NCHW tensor)."""
    for i in range(x.shape[0]):
        for c0 in range(0, x.shape[1], channels):
            yield slice(i, i + 1), slice(c0, c0 + channels)


def add_interpolated_(out, x, channels=None):
    """`out += F.interpolate(x, size=out.shape[-2:], mode="bilinear")` in place, `channels` channels of one image
    at a time when given (each output channel depends only on its input channel): the interpolated map is never
    whole in memory."""
    size = out.shape[-2:]
    if channels is None:
        return out.add_(F.interpolate(x, size=size, mode="bilinear", align_corners=False))
    for img, ch in _image_channel_slices(x, channels):
        out[img, ch].add_(F.interpolate(x[img, ch], size=size, mode="bilinear", align_corners=False))
    return out


def batch_norm_inplace_(bn, x, channels):
    """`bn(x)` written into `x`, `channels` channels of one image at a time, for an eval-mode `bn` with running
    statistics when no gradient is recorded (inference): the normalised map never coexists with a full-size input.
    Per channel the same arithmetic as `bn(x)`. Returns `bn(x)` itself otherwise (training, autograd, or a result
    that would not have `x`'s dtype under mixed precision)."""
    recording = torch.is_grad_enabled() and (x.requires_grad or bn.weight.requires_grad)
    if bn.training or recording or bn.running_mean is None or not bn.affine:
        return bn(x)
    for img, ch in _image_channel_slices(x, channels):
        y = F.batch_norm(x[img, ch], bn.running_mean[ch], bn.running_var[ch], bn.weight[ch], bn.bias[ch],
                         False, 0.0, bn.eps)
        if y.dtype != x.dtype:  # decided by the dtypes alone, so at the first slice, before any write
            return bn(x)
        x[img, ch] = y
    return x
