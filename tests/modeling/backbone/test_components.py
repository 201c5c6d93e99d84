"""Backbone building blocks against straightforward re-derivations of docs/focus.md#vit, docs/focus.md#edge-prior,
docs/focus.md#adapter."""
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from focus.modeling.backbone.adapter import DWConv, deform_inputs, get_reference_points
from focus.modeling.backbone.edge_prior import EdgePriorModule, edge_overlay
from focus.modeling.backbone.vit import Attention, Block, SwiGLUFFN, resize_pos_embed


def _overlay_reference(x):
    """docs/focus.md#edge-prior steps 1-6, one image at a time, literally."""
    outs = []
    for img in x:
        u8 = torch.floor(torch.clamp(img * 255 + 0.5, 0, 255)).to(torch.uint8).permute(1, 2, 0).numpy()
        bgr = cv2.cvtColor(u8, cv2.COLOR_RGB2BGR)
        blur = cv2.GaussianBlur(bgr, (5, 5), 1.4)
        edges = np.zeros_like(blur)
        for c in range(3):
            edges[..., c] = cv2.Canny(blur[..., c], 100, 200)
        combined = cv2.addWeighted(blur, 0.7, edges, 0.3, 0)
        outs.append(torch.from_numpy(combined / 255.0).permute(2, 0, 1).to(x.dtype))
    return torch.stack(outs)


def test_edge_overlay_matches_spec():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 96) * 0.6
    x[:, :, 40:] = 0  # zero padding of the normalised tensor
    x[0, :, 10:30, 20:50] += 1.5  # a bright rectangle: strong edges
    ours = edge_overlay(x)
    ref = _overlay_reference(x)
    assert ours.dtype == x.dtype and ours.shape == x.shape
    assert torch.equal(ours, ref)
    assert (ours[0] != cv2.GaussianBlur(np.zeros((64, 96, 3), np.uint8), (5, 5), 1.4)[0, 0, 0]).any()
    assert ours.max() <= 1 and ours.min() >= 0


def test_edge_overlay_from_rgb_uses_unnormalised_rgb():
    mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(48, 64, 3)).astype(np.uint8)
    x = (torch.from_numpy(rgb).permute(2, 0, 1).float() - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(
        std
    ).view(3, 1, 1)
    ours = edge_overlay(x[None], mean, std, from_rgb=True)[0]
    blur = cv2.GaussianBlur(rgb, (5, 5), 1.4)
    edges = np.stack([cv2.Canny(np.ascontiguousarray(blur[..., c]), 100, 200) for c in range(3)], -1)
    ref = torch.from_numpy(cv2.addWeighted(blur, 0.7, edges, 0.3, 0) / 255.0).permute(2, 0, 1).float()
    assert torch.equal(ours, ref)


def test_edge_overlay_has_no_gradient():
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    assert not edge_overlay(x).requires_grad


def test_edge_prior_shapes_and_names():
    m = EdgePriorModule(24, depths=(1, 2, 1, 1), width=8)
    c1, c2, c3, c4 = m(torch.rand(2, 3, 64, 96))
    assert c1.shape == (2, 24, 16, 24)
    assert c2.shape == (2, 8 * 12, 24) and c3.shape == (2, 4 * 6, 24) and c4.shape == (2, 2 * 3, 24)
    keys = set(m.state_dict())
    assert {"conv1.weight", "bn1.running_mean", "layer1.0.downsample.0.weight", "layer1.0.downsample.1.bias",
            "layer2.1.conv3.weight", "fc4.bias"} <= keys
    assert not any(k.startswith("layer2.1.downsample") for k in keys)


def test_edge_prior_equals_torchvision_resnet_trunk():
    torchvision = pytest.importorskip("torchvision")
    from torchvision.models.resnet import Bottleneck as TVBottleneck, ResNet

    torch.manual_seed(0)
    tv = ResNet(TVBottleneck, [1, 2, 1, 1]).eval()  # ResNet-50 layout with fewer blocks (fast)
    ours = EdgePriorModule(16, depths=(1, 2, 1, 1)).eval()
    sd = {k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")}
    missing, unexpected = ours.load_state_dict(sd, strict=False)
    assert sorted(missing) == sorted(f"fc{i}.{p}" for i in range(1, 5) for p in ("weight", "bias"))
    assert unexpected == []
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        t = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
        t = tv.layer4(tv.layer3(tv.layer2(tv.layer1(t))))
        c4 = ours(x)[3]
    assert torch.allclose(c4, ours.fc4(t).flatten(2).transpose(1, 2), atol=1e-5)


def test_reference_points_and_deform_inputs():
    ref = get_reference_points([(2, 4)], "cpu")
    assert ref.shape == (1, 8, 1, 2)
    assert torch.allclose(ref[0, :4, 0], torch.tensor([[0.125, 0.25], [0.375, 0.25], [0.625, 0.25], [0.875, 0.25]]))
    inj, ext = deform_inputs(64, 96, 14, "cpu")
    assert inj[0].shape == (1, 4 * 6, 1, 2)
    assert inj[1].tolist() == [[8, 12], [4, 6], [2, 3]] and inj[2].tolist() == [0, 96, 120]
    assert ext[0].shape == (1, 96 + 24 + 6, 1, 2)
    assert ext[1].tolist() == [[4, 6]] and ext[2].tolist() == [0]
    # each prior grid is normalised by its own size: the first cell of level 2 is at (1/12, 1/8)
    assert torch.allclose(ext[0][0, 96, 0], torch.tensor([1 / 12, 1 / 8]))


def test_dwconv_21_way_split():
    torch.manual_seed(0)
    m = DWConv(5)
    hc, wc = 4, 6
    maps = [torch.randn(2, 5, 2 * hc, 2 * wc), torch.randn(2, 5, hc, wc), torch.randn(2, 5, hc // 2, wc // 2)]
    seq = torch.cat([t.flatten(2).transpose(1, 2) for t in maps], 1)
    assert seq.shape[1] == 21 * (hc // 2) * (wc // 2)
    out = m(seq, hc, wc)
    ref = torch.cat([m.dwconv(t).flatten(2).transpose(1, 2) for t in maps], 1)
    assert torch.allclose(out, ref, atol=1e-6)
    # zero padding per map: level boundaries do not leak (an all-zero map with zero bias stays zero)
    with torch.no_grad():
        m.dwconv.bias.zero_()
    maps[1].zero_()
    seq = torch.cat([t.flatten(2).transpose(1, 2) for t in maps], 1)
    out = m(seq, hc, wc)
    assert torch.equal(out[:, 16 * 6 : 20 * 6], torch.zeros(2, 24, 5))


def test_resize_pos_embed():
    torch.manual_seed(0)
    pos = torch.randn(1, 49, 8)
    assert torch.allclose(resize_pos_embed(pos, 7, 7, 7), pos, atol=1e-6)
    out = resize_pos_embed(pos, 7, 3, 5)
    grid = pos.reshape(1, 7, 7, 8).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=(3, 5), mode="bicubic", align_corners=False).flatten(2).transpose(1, 2)
    assert torch.equal(out, ref)


def test_attention_equals_softmax_attention():
    torch.manual_seed(0)
    m = Attention(12, 3)
    x = torch.randn(2, 5, 12)
    q, k, v = m.qkv(x).reshape(2, 5, 3, 3, 4).permute(2, 0, 3, 1, 4)
    a = ((q @ k.transpose(-1, -2)) / 2.0).softmax(-1) @ v
    assert torch.allclose(m(x), m.proj(a.transpose(1, 2).reshape(2, 5, 12)), atol=1e-6)


def test_swiglu_hidden_width_and_math():
    assert SwiGLUFFN(1536).w3.in_features == 4096  # docs/focus.md#vit, docs/focus.md#state-dict
    m = SwiGLUFFN(16)
    x = torch.randn(3, 16)
    h = m.w12(x)
    x1, x2 = h[:, : h.shape[1] // 2], h[:, h.shape[1] // 2 :]
    assert torch.allclose(m(x), m.w3(x1 * torch.sigmoid(x1) * x2), atol=1e-6)


def test_block_checkpoint_same_gradients():
    torch.manual_seed(0)
    a = Block(12, 3, with_cp=False)
    b = Block(12, 3, with_cp=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 5, 12, requires_grad=True)
    ya, yb = a(x), b(x)
    assert torch.equal(ya, yb)
    ga = torch.autograd.grad(ya.square().sum(), [x, a.gamma1])
    gb = torch.autograd.grad(yb.square().sum(), [x, b.gamma1])
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(ga, gb))


def test_block_drop_path_matches_timm_droppath():
    """Stochastic depth is torchvision's `StochasticDepth(p, "row")`: the same draws and scaling as timm's
    `DropPath`, which the official code uses (timm stays off the inference import path)."""
    timm_layers = pytest.importorskip("timm.layers")
    block = Block(32, 4, drop_path=0.3).train()
    x = torch.randn(8, 5, 32)
    torch.manual_seed(3)
    ours = block.drop_path(x)
    torch.manual_seed(3)
    ref = timm_layers.DropPath(0.3)(x)
    assert torch.equal(ours, ref)
    assert (ours == 0).all(dim=(1, 2)).any() and not torch.equal(ours, x)  # some rows dropped, others scaled
    assert torch.equal(block.eval().drop_path(x), x)
