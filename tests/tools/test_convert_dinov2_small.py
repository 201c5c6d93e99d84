"""FOCUS-S (docs/focus.md#small): Meta's ViT-S/14 checkpoint layout converts with tools/convert_dinov2.py and loads
into the model of `configs/sod/focus_dinov2_small.yaml` with no missing ViT key; every task's small config has the
ViT-S geometry and the ViT-Adapter-S interaction indexes."""
from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model

from focus.config import get_focus_cfg
from focus.modeling.checkpoint import FOCUSCheckpointer

ROOT = Path(__file__).resolve().parents[2]
SMALL_CONFIGS = sorted(ROOT.glob("configs/*/focus_dinov2_small.yaml"))
CPU_NO_CLIP = ["MODEL.DEVICE", "cpu", "MODEL.CLIP_REFINER.ENABLED", "False", "MODEL.WEIGHTS", ""]


def vits14_hub_layout():
    """Key -> shape of `dinov2_vits14_pretrain.pth` as torch.hub's `dinov2_vits14` ships it (175 tensors)."""
    d, hidden = 384, 1536
    layout = {
        "cls_token": (1, 1, d),
        "pos_embed": (1, 1 + 37 * 37, d),  # 518 / 14 = 37
        "mask_token": (1, d),
        "patch_embed.proj.weight": (d, 3, 14, 14),
        "patch_embed.proj.bias": (d,),
    }
    for i in range(12):
        b = f"blocks.{i}."
        layout.update({
            b + "norm1.weight": (d,), b + "norm1.bias": (d,),
            b + "attn.qkv.weight": (3 * d, d), b + "attn.qkv.bias": (3 * d,),
            b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,),
            b + "ls1.gamma": (d,),
            b + "norm2.weight": (d,), b + "norm2.bias": (d,),
            b + "mlp.fc1.weight": (hidden, d), b + "mlp.fc1.bias": (hidden,),
            b + "mlp.fc2.weight": (d, hidden), b + "mlp.fc2.bias": (d,),
            b + "ls2.gamma": (d,),
        })
    layout["norm.weight"] = (d,)
    layout["norm.bias"] = (d,)
    return layout


class _RecordingCheckpointer(FOCUSCheckpointer):
    """Keeps the incompatible keys of the last load (the real loading path of MODEL.WEIGHTS)."""

    def _log_incompatible_keys(self, incompatible):
        self.incompatible = incompatible
        super()._log_incompatible_keys(incompatible)


def test_vits14_hub_checkpoint_converts_and_loads(tmp_path, load_tool):
    tool = load_tool("convert_dinov2")
    layout = vits14_hub_layout()
    assert len(layout) == 175 and sum(torch.Size(s).numel() for s in layout.values()) == 22_056_576
    g = torch.Generator().manual_seed(0)
    src = {k: torch.randn(s, generator=g) for k, s in layout.items()}
    torch.save(src, tmp_path / "dinov2_vits14_pretrain.pth")
    dst = tmp_path / "dinov2_vits14_pretrain_updated.pkl"
    assert tool.main([str(tmp_path / "dinov2_vits14_pretrain.pth"), str(dst)]) == 0
    del src

    cfg = get_focus_cfg(str(ROOT / "configs" / "sod" / "focus_dinov2_small.yaml"), CPU_NO_CLIP)
    torch.manual_seed(0)
    model = build_model(cfg)
    ckpt = _RecordingCheckpointer(model)
    ckpt.load(str(dst))
    inc = ckpt.incompatible
    assert inc.unexpected_keys == [] and inc.incorrect_shapes == []
    vit = ("backbone.cls_token", "backbone.pos_embed", "backbone.patch_embed.", "backbone.blocks.")
    assert [k for k in inc.missing_keys if k.startswith(vit)] == []
    # only the adapter, the edge prior (no --resnet50 here) and the heads keep their initial values
    assert {k.split(".")[0] + "." + k.split(".")[1] for k in inc.missing_keys if k.startswith("backbone.")} <= {
        "backbone.level_embed", "backbone.edge", "backbone.interactions", "backbone.up", "backbone.norm1",
        "backbone.norm2", "backbone.norm3", "backbone.norm4", "backbone.spm"}
    sd = model.state_dict()
    converted = tool.convert_dinov2(tool._unwrap(torch.load(tmp_path / "dinov2_vits14_pretrain.pth"), "src"),
                                    log=lambda s: None)
    assert len(converted) == 175 - 3  # mask_token, norm.weight, norm.bias dropped
    assert all(torch.equal(sd[k], v) for k, v in converted.items())


@pytest.mark.parametrize("path", SMALL_CONFIGS, ids=lambda p: p.parent.name)
def test_small_configs_build_with_vits14_geometry(path):
    assert len(SMALL_CONFIGS) == 5
    cfg = get_focus_cfg(str(path), CPU_NO_CLIP)
    d = cfg.MODEL.DINOV2
    assert (d.EMBED_DIM, d.NUM_HEADS, d.DEPTH, d.IN_PATCH_SIZE, d.FFN_TYPE) == (384, 6, 12, 14, "mlp")
    assert [list(r) for r in d.INTERACTION_INDEXES] == [[0, 2], [3, 5], [6, 8], [9, 11]]
    cfg.MODEL.DEVICE = "meta"
    with torch.device("meta"):  # shapes only: no allocation, no random init
        model = build_model(cfg)
    backbone = model.backbone
    assert backbone.embed_dim == 384 and len(backbone.blocks) == 12
    assert backbone.interaction_indexes == [(0, 2), (3, 5), (6, 8), (9, 11)]
    assert backbone.blocks[0].attn.num_heads == 6
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["backbone.pos_embed"] == (1, 1370, 384)
    assert shapes["backbone.blocks.11.mlp.fc1.weight"] == (1536, 384)
    assert shapes["backbone.level_embed"] == (3, 384)
