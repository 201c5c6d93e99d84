"""`D2DINOV2` built from a tiny config: detectron2 interface, forward/backward on CPU, config options."""
import pytest
import torch
from detectron2.modeling import BACKBONE_REGISTRY, build_backbone

from focus.modeling.backbone import D2DINOV2
from focus.config import get_focus_cfg

TINY_OPTS = [
    "MODEL.BACKBONE.NAME", "D2DINOV2",
    "MODEL.DINOV2.EMBED_DIM", "48", "MODEL.DINOV2.NUM_HEADS", "3", "MODEL.DINOV2.DEPTH", "4",
    "MODEL.DINOV2.IN_PATCH_SIZE", "14", "MODEL.DINOV2.PRETRAIN_IMG_SIZE", "518", "MODEL.DINOV2.FFN_TYPE", "mlp",
    "MODEL.DINOV2.DEFORM_NUM_HEADS", "3", "MODEL.DINOV2.DEFORM_RATIO", "0.5",
    "MODEL.DINOV2.INTERACTION_INDEXES", "[[0,0],[1,1],[2,2],[3,3]]",
    "MODEL.DINOV2.EDGE_DEPTHS", "[1,1,1,1]", "MODEL.DINOV2.EDGE_WIDTH", "8",
]


def _tiny(*opts):
    cfg = get_focus_cfg(opts=TINY_OPTS + list(opts))
    torch.manual_seed(0)
    return build_backbone(cfg)


def test_registered_and_output_shape():
    assert BACKBONE_REGISTRY.get("D2DINOV2") is D2DINOV2
    bb = _tiny()
    assert bb.size_divisibility == 32
    shapes = bb.output_shape()
    assert list(shapes) == ["res2", "res3", "res4", "res5"]
    assert [(s.channels, s.stride) for s in shapes.values()] == [(48, 4), (48, 8), (48, 16), (48, 32)]
    assert isinstance(_tiny("MODEL.DINOV2.OUT_FEATURES", "['res3','res5']").output_shape(), dict)


def test_forward_non_square_eval():
    bb = _tiny().eval()
    x = torch.randn(2, 3, 96, 160)
    with torch.no_grad():
        out = bb(x)
    assert isinstance(out, dict)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "res2": (2, 48, 24, 40), "res3": (2, 48, 12, 20), "res4": (2, 48, 6, 10), "res5": (2, 48, 3, 5)
    }
    assert all(torch.isfinite(v).all() for v in out.values())
    # batch elements are independent in eval mode (edge overlay per image, BN running stats)
    with torch.no_grad():
        single = bb(x[1:])
    assert all(torch.allclose(out[k][1:], single[k], atol=1e-4) for k in out)


def test_with_cp_training_backward_matches_plain():
    plain = _tiny("MODEL.DINOV2.DROP_PATH_RATE", "0.0").train()
    cp = _tiny("MODEL.DINOV2.WITH_CP", "True", "MODEL.DINOV2.DROP_PATH_RATE", "0.0").train()
    cp.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 96)
    grads = []
    for bb in (plain, cp):
        out = bb(x.clone().requires_grad_(True))
        sum(v.square().mean() for v in out.values()).backward()
        grads.append({n: p.grad for n, p in bb.named_parameters()})
    assert [n for n, g in grads[1].items() if g is None] == []
    for n, g in grads[0].items():
        if g is not None:
            assert torch.allclose(g, grads[1][n], atol=1e-5, rtol=1e-4), n
    # the edge prior is checkpointed too: its recomputation must not update BatchNorm statistics again
    stats = [{k: v for k, v in bb.state_dict().items() if "running_" in k or "num_batches" in k} for bb in (plain, cp)]
    assert stats[0].keys() == stats[1].keys() and len(stats[0]) > 0
    for k in stats[0]:
        torch.testing.assert_close(stats[1][k], stats[0][k], rtol=0, atol=0, msg=k)
    assert cp.edge.bn1.momentum == plain.edge.bn1.momentum == 0.1


def test_with_cp_does_not_keep_edge_prior_activations():
    # blocks, injectors and extractors stay checkpointed; only the edge prior's flag (the backbone's own) toggles
    bb = _tiny("MODEL.DINOV2.WITH_CP", "True").train()
    x = torch.randn(1, 3, 64, 64)
    counts = []
    for edge_cp in (False, True):
        bb.with_cp = edge_cp
        packed = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t.numel()) or t, lambda t: t):
            bb(x)
        counts.append(sum(packed))
    edge_out = 64 * 64 // 16 * 192  # the stride-4 edge map alone (D x H/4 x W/4)
    assert counts[0] - counts[1] > edge_out


def test_training_with_drop_path_runs_backward():
    bb = _tiny("MODEL.DINOV2.WITH_CP", "True").train()
    out = bb(torch.randn(1, 3, 64, 64))
    out["res5"].sum().backward()
    assert bb.blocks[3].attn.qkv.weight.grad is not None
    assert bb.interactions[3].extra_extractors[1].ffn.dwconv.dwconv.weight.grad is not None


def test_input_must_be_padded_to_32():
    with pytest.raises(ValueError, match="multiple of 32"):
        _tiny()(torch.randn(1, 3, 64, 80))


def test_freeze_vit_and_no_cls():
    bb = _tiny("MODEL.DINOV2.FREEZE_VIT", "True")
    frozen = {n for n, p in bb.named_parameters() if not p.requires_grad}
    assert {"pos_embed", "cls_token", "patch_embed.proj.weight", "blocks.3.gamma2"} <= frozen
    assert not any(n.startswith(("edge.", "interactions.", "norm", "up.", "level_embed")) for n in frozen)
    bb = _tiny("MODEL.DINOV2.USE_CLS", "False").eval()
    assert "cls_token" not in bb.state_dict()
    with torch.no_grad():
        assert bb(torch.randn(1, 3, 64, 64))["res2"].shape == (1, 48, 16, 16)


def test_edge_from_rgb_changes_only_the_edge_input():
    a = _tiny().eval()
    b = _tiny("MODEL.DINOV2.EDGE_FROM_RGB", "True").eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert not torch.allclose(ya["res2"], yb["res2"])


def test_swiglu_and_misconfigured_pos_grid():
    bb = _tiny("MODEL.DINOV2.FFN_TYPE", "swiglu")
    assert bb.blocks[0].mlp.w12.weight.shape == (2 * 128, 48)
    with pytest.raises(ValueError, match="PRETRAIN_IMG_SIZE"):
        _tiny("MODEL.DINOV2.PRETRAIN_IMG_SIZE", "224")


def test_one_forward_path_with_and_without_autograd():
    """The pyramid's stride-4 level is built in slices and in place (focus.layers.inplace) whether autograd records
    or not: the same features either way (up to the GEMM kernel BLAS picks for a slice of rows)."""
    bb = _tiny().eval()
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        lean = bb(x)
    with torch.enable_grad():
        full = bb(x.requires_grad_())
    for k in lean:
        torch.testing.assert_close(lean[k], full[k].detach(), rtol=1e-6, atol=1e-6)
