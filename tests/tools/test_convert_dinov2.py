"""tools/convert_dinov2.py on synthetic checkpoints with the exact key layouts of Meta's DINOv2 reg4 checkpoints
(dinov2_reg4_checkpoint_keys.json, dims scaled down) and of torchvision's ResNet (docs/focus.md#weights)."""
import json
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.modeling import build_backbone

from focus import add_focus_config

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "convert_dinov2.py"
D = 24  # scaled-down width (3 heads of 8)


@pytest.fixture(scope="module")
def tool(load_tool):
    return load_tool("convert_dinov2")


def _swiglu_hidden(d):
    return (int(d * 4 * 2 / 3) + 7) // 8 * 8


def _synthetic_dinov2(layout):
    """Random tensors with exactly `layout`'s keys; dims D, 3D, 4D, SwiGLU hidden/2*hidden scaled to width D."""
    big = layout["cls_token"][-1]
    dims = {big: D, 3 * big: 3 * D, 4 * big: 4 * D, _swiglu_hidden(big): _swiglu_hidden(D),
            2 * _swiglu_hidden(big): 2 * _swiglu_hidden(D)}
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn([dims.get(s, s) if i or k != "pos_embed" else s for i, s in enumerate(shape)],
                           generator=g)
            for k, shape in layout.items()}


def _tiny_backbone(depth, ffn_type, edge_depths=(1, 1, 1, 1), edge_width=8):
    cfg = get_cfg()
    add_focus_config(cfg)
    q = depth // 4
    ranges = [[i * q, (i + 1) * q - 1] for i in range(3)] + [[3 * q, depth - 1]]
    cfg.merge_from_list([
        "MODEL.BACKBONE.NAME", "D2DINOV2", "MODEL.DINOV2.EMBED_DIM", str(D), "MODEL.DINOV2.NUM_HEADS", "3", "MODEL.DINOV2.DEPTH", str(depth),
        "MODEL.DINOV2.FFN_TYPE", ffn_type, "MODEL.DINOV2.IN_PATCH_SIZE", "14",
        "MODEL.DINOV2.PRETRAIN_IMG_SIZE", "518", "MODEL.DINOV2.DEFORM_NUM_HEADS", "3",
        "MODEL.DINOV2.INTERACTION_INDEXES", str(ranges),
        "MODEL.DINOV2.EDGE_DEPTHS", str(list(edge_depths)), "MODEL.DINOV2.EDGE_WIDTH", str(edge_width),
    ])
    model = nn.Module()
    model.backbone = build_backbone(cfg)
    return model


@pytest.fixture(scope="module")
def layouts(shared_reference):
    data = json.loads((shared_reference / "dinov2_reg4_checkpoint_keys.json").read_text())
    return {k: v for k, v in data.items() if k != "what"}


@pytest.mark.parametrize("name", ["vits14_reg4", "vitb14_reg4", "vitl14_reg4", "vitg14_reg4"])
@pytest.mark.parametrize("registers", [True, False])
def test_convert_and_load_every_layout(name, registers, layouts, tmp_path, tool):
    layout = dict(layouts[name])
    if not registers:  # the DINOv2 checkpoints without registers have the same layout minus this key
        del layout["register_tokens"]
    src = _synthetic_dinov2(layout)
    lines = []
    out = tool.convert_dinov2(src, log=lines.append)

    depth = 1 + max(int(k.split(".")[1]) for k in layout if k.startswith("blocks."))
    dropped = {"mask_token", "norm.weight", "norm.bias"} | ({"register_tokens"} if registers else set())
    assert len(out) == len(layout) - len(dropped)
    assert {ln.split()[1] for ln in lines if ln.startswith("drop")} == dropped
    assert sum(ln.startswith("rename") for ln in lines) == 2 * depth  # ls1/ls2 -> gamma1/gamma2
    assert torch.equal(out["backbone.blocks.0.gamma1"], src["blocks.0.ls1.gamma"])
    assert torch.equal(out[f"backbone.blocks.{depth - 1}.gamma2"], src[f"blocks.{depth - 1}.ls2.gamma"])

    path = tmp_path / "init.pth"
    tool.save(out, path)
    ffn = "swiglu" if "blocks.0.mlp.w12.weight" in layout else "mlp"
    model = _tiny_backbone(depth, ffn)
    DetectionCheckpointer(model).load(str(path))
    vit_keys = [k for k in model.state_dict() if k.startswith(("backbone.blocks.", "backbone.patch_embed."))]
    vit_keys += ["backbone.cls_token", "backbone.pos_embed"]
    assert sorted(set(vit_keys) - set(out)) == []  # zero missing ViT keys
    assert sorted(set(out) - set(model.state_dict())) == []  # nothing unexpected
    sd = model.state_dict()
    assert all(torch.equal(sd[k], out[k]) for k in vit_keys)


def test_resnet50_layout_and_pickle_output(tmp_path, tool):
    torchvision = pytest.importorskip("torchvision")
    from torchvision.models.resnet import Bottleneck, ResNet

    # the full ResNet-50 names/shapes map onto the official edge prior (meta device: no memory, no init)
    with torch.device("meta"):
        full = tool.convert_resnet50(torchvision.models.resnet50().state_dict(), log=lambda s: None)
        from focus.modeling.backbone import EdgePriorModule

        edge = {"backbone.edge." + k: v.shape for k, v in EdgePriorModule(1024).state_dict().items()}
    assert {k: v.shape for k, v in full.items()} == {k: v for k, v in edge.items() if ".fc" not in k}

    torch.manual_seed(0)
    resnet = ResNet(Bottleneck, [1, 1, 1, 1]).state_dict()
    lines = []
    out = tool.convert_resnet50(resnet, log=lines.append)
    assert [ln for ln in lines if ln.startswith("drop")] == ["drop    fc.weight (1000, 2048)", "drop    fc.bias (1000,)"]
    path = tmp_path / "init.pkl"
    tool.save(out, path)
    with open(path, "rb") as f:
        data = pickle.load(f)
    assert data["__author__"] == "focus" and data["matching_heuristics"] is False
    model = _tiny_backbone(4, "mlp", edge_depths=(1, 1, 1, 1), edge_width=64)
    DetectionCheckpointer(model).load(str(path))
    sd = model.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in out.items())
    assert len(out) == len([k for k in sd if k.startswith("backbone.edge.") and ".fc" not in k])


def test_unexpected_key_is_named(tool):
    with pytest.raises(KeyError, match="head.weight"):
        tool.convert_dinov2({"cls_token": torch.zeros(1, 1, 4), "head.weight": torch.zeros(2, 4)})


def test_cli(layouts, tmp_path, capsys, tool):
    src = _synthetic_dinov2(layouts["vits14_reg4"])
    torch.save(src, tmp_path / "dinov2.pth")
    resnet = {"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(1000, 2048)}
    torch.save(resnet, tmp_path / "resnet.pth")
    argv = [str(tmp_path / "dinov2.pth"), str(tmp_path / "out.pth"), "--resnet50", str(tmp_path / "resnet.pth")]
    assert tool.main(argv) == 0
    stdout = capsys.readouterr().out
    assert "rename  blocks.11.ls2.gamma -> backbone.blocks.11.gamma2" in stdout
    assert "drop    register_tokens (1, 4, 24)" in stdout and "drop    fc.weight" in stdout
    data = torch.load(tmp_path / "out.pth")
    assert data["matching_heuristics"] is False and data["__author__"] == "focus"
    assert "backbone.edge.conv1.weight" in data["model"] and "backbone.pos_embed" in data["model"]


def test_cli_without_resnet50_warns_loudly(layouts, tmp_path, capsys, tool):
    src = _synthetic_dinov2(layouts["vits14_reg4"])
    torch.save(src, tmp_path / "dinov2.pth")
    assert tool.main([str(tmp_path / "dinov2.pth"), str(tmp_path / "out.pth")]) == 0
    err = capsys.readouterr().err
    assert "WARNING: no --resnet50" in err and "RANDOM" in err
    assert not any(k.startswith("backbone.edge.") for k in torch.load(tmp_path / "out.pth")["model"])
    tool.main([str(tmp_path / "dinov2.pth"), str(tmp_path / "out.pth"), "--resnet50", str(_resnet(tmp_path))])
    assert "WARNING" not in capsys.readouterr().err


def _resnet(tmp_path):
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "resnet.pth")
    return tmp_path / "resnet.pth"
