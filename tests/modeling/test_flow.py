"""Optical flow helpers: Middlebury rendering, RAFT wrapper (random weights), padding and rescaling."""
import numpy as np
import pytest
import torch

from focus.modeling.flow import FlowEstimator, render_flow, zero_motion_image


def test_render_flow_colour_wheel():
    flow = torch.zeros(2, 4, 4)
    flow[0, :, 2:] = 3.0  # rightwards motion on the right half, zero elsewhere
    img = render_flow(flow)
    assert img.shape == (4, 4, 3) and img.dtype == np.uint8
    assert (img[:, :2] == 255).all()  # zero motion is white
    # Middlebury wheel: +u (right) at full saturation is red-ish (255, 0, 0) - the hue of angle 0
    assert tuple(img[0, 3]) == (255, 0, 0)
    assert np.array_equal(render_flow(flow.permute(1, 2, 0).numpy()), img)
    assert (zero_motion_image(3, 5) == 255).all()


@pytest.fixture(scope="module")
def estimator():
    torch.manual_seed(0)
    return FlowEstimator("raft_small", "", num_flow_updates=1, max_size=64)


def test_estimator_shapes_any_size(estimator):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)
    b = np.roll(a, 2, axis=1)
    flow = estimator(a, b)  # downscaled to 64 px, padded to RAFT's 128 minimum, resized back
    assert flow.shape == (2, 50, 70) and flow.dtype == torch.float32 and torch.isfinite(flow).all()
    img = estimator.image(a, b, negate=True)
    assert img.shape == (50, 70, 3) and img.dtype == np.uint8
    with pytest.raises(ValueError):
        estimator(a, b[:10])


def test_estimator_weights_file(tmp_path):
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(1)
    net = raft_small(weights=None)
    torch.save(net.state_dict(), tmp_path / "raft.pth")
    est = FlowEstimator("raft_small", str(tmp_path / "raft.pth"), num_flow_updates=1)
    for (k, v), w in zip(est.net.state_dict().items(), net.state_dict().values()):
        assert torch.equal(v, w), k


def _flow2img(flow):
    """FlowNet 2.0's `flow2img` (flownet2-pytorch utils/flow_utils.py, from flownet2-tf flowlib.py) rewritten from
    its published formula: the Middlebury wheel (RY 15, YG 6, GC 4, CB 11, BM 13, MR 6), hue atan2(-v, -u)/pi,
    saturation = magnitude / the frame's max magnitude, eps added after normalising, radius > 1 darkened x0.75."""
    def wheel():
        ry, yg, gc, cb, bm, mr = 15, 6, 4, 11, 13, 6
        w = np.zeros((ry + yg + gc + cb + bm + mr, 3))
        c = 0
        w[0:ry, 0] = 255
        w[0:ry, 1] = np.floor(255 * np.arange(ry) / ry)
        c += ry
        w[c:c + yg, 0] = 255 - np.floor(255 * np.arange(yg) / yg)
        w[c:c + yg, 1] = 255
        c += yg
        w[c:c + gc, 1] = 255
        w[c:c + gc, 2] = np.floor(255 * np.arange(gc) / gc)
        c += gc
        w[c:c + cb, 1] = 255 - np.floor(255 * np.arange(cb) / cb)
        w[c:c + cb, 2] = 255
        c += cb
        w[c:c + bm, 2] = 255
        w[c:c + bm, 0] = np.floor(255 * np.arange(bm) / bm)
        c += bm
        w[c:c + mr, 2] = 255 - np.floor(255 * np.arange(mr) / mr)
        w[c:c + mr, 0] = 255
        return w

    u, v = flow[..., 0].astype(np.float64), flow[..., 1].astype(np.float64)
    maxrad = max(-1, np.max(np.sqrt(u ** 2 + v ** 2)))
    u = u / maxrad + np.finfo(float).eps
    v = v / maxrad + np.finfo(float).eps
    cw = wheel()
    ncols = cw.shape[0]
    rad = np.sqrt(u ** 2 + v ** 2)
    a = np.arctan2(-v, -u) / np.pi
    fk = (a + 1) / 2 * (ncols - 1) + 1
    k0 = np.floor(fk).astype(int)
    k1 = k0 + 1
    k1[k1 == ncols + 1] = 1
    f = fk - k0
    img = np.zeros(u.shape + (3,), np.uint8)
    for i in range(3):
        col = (1 - f) * cw[k0 - 1, i] / 255 + f * cw[k1 - 1, i] / 255
        inside = rad <= 1
        col[inside] = 1 - rad[inside] * (1 - col[inside])
        col[~inside] *= 0.75
        img[..., i] = np.floor(255 * col).astype(np.uint8)
    return img


def test_flow_to_image_is_flownet2_coding():
    """`render_flow` (torchvision's flow_to_image) equals FlowNet 2.0's flow2img: off by one level in ~1 % of the
    pixels (float32 vs float64 rounding of fully saturated channels), and more only at the maximum-magnitude pixel,
    where flow2img's eps shift can push the radius over 1 and darken it (docs/fsnet.md#flow)."""
    rng = np.random.default_rng(3)
    for _ in range(3):
        flow = (rng.standard_normal((60, 80, 2)) * rng.uniform(0.5, 20)).astype(np.float32)
        ours, ref = render_flow(flow).astype(int), _flow2img(flow).astype(int)
        diff = np.abs(ours - ref).max(axis=2)
        assert (diff > 0).mean() < 0.03
        differ = diff > 1
        assert differ.sum() <= 2
        rad = np.sqrt((flow.astype(np.float64) ** 2).sum(-1))
        assert all(rad[y, x] >= rad.max() * (1 - 1e-6) for y, x in zip(*np.nonzero(differ)))
