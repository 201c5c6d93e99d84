"""The training engine: optimizer groups (docs/focus.md#recipe), atomic checkpoints, autocast on CPU."""
import os

import pytest
import torch
from detectron2.modeling import build_model

from focus.engine.trainer import AtomicCheckpointer, amp_dtype, build_optimizer, setup_cfg

TINY = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "tiny", "focus_tiny.yaml")


@pytest.fixture(scope="module")
def tiny():
    cfg = setup_cfg(TINY, ["SOLVER.BASE_LR", "0.001", "SOLVER.BACKBONE_MULTIPLIER", "0.1"])
    torch.manual_seed(0)
    return cfg, build_model(cfg)


def test_optimizer_groups_follow_the_official_rules(tiny):
    cfg, model = tiny
    opt = build_optimizer(cfg, model)
    group_of = {id(p): g for g in opt.param_groups for p in g["params"]}
    modules = dict(model.named_modules())
    n_checked = 0
    for name, p in model.named_parameters():
        g = group_of[id(p)]
        module = modules[name.rsplit(".", 1)[0]]
        assert g["lr"] == pytest.approx(1e-4 if name.startswith("backbone.") else 1e-3)
        if isinstance(module, (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.Embedding)):
            assert g["weight_decay"] == 0.0, name
            n_checked += 1
        else:
            assert g["weight_decay"] == cfg.SOLVER.WEIGHT_DECAY, name
    assert n_checked > 10
    assert len(opt.param_groups) == sum(1 for p in model.parameters() if p.requires_grad)


def test_full_model_gradient_clipping(tiny):
    cfg, model = tiny
    params = [torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(4))]
    holder = torch.nn.Module()
    holder.a, holder.b = torch.nn.Parameter(params[0].data.clone()), torch.nn.Parameter(params[1].data.clone())
    opt = build_optimizer(cfg, holder)
    holder.a.grad = torch.full((3,), 3.0)
    holder.b.grad = torch.full((4,), 4.0)
    before = torch.cat([holder.a.grad, holder.b.grad]).norm()
    opt.step()
    after = torch.cat([holder.a.grad, holder.b.grad]).norm()
    assert before > 1 and after == pytest.approx(cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE, rel=1e-4)


def test_amp_dtype_per_device(tiny):
    cfg, _ = tiny
    assert amp_dtype(cfg, "cpu") == torch.bfloat16 and amp_dtype(cfg, "cuda") == torch.float16


def test_checkpoint_save_is_atomic(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    ckpt = AtomicCheckpointer(model, str(tmp_path))
    ckpt.save("model_0000001")
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"

    def killed_mid_write(obj, f, *a, **k):
        f.write(b"partial")
        raise KeyboardInterrupt("killed during save")

    monkeypatch.setattr(torch, "save", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save("model_0000003")
    monkeypatch.undo()
    # the tag still names the previous, complete checkpoint, and no truncated file took the new name
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert not (tmp_path / "model_0000003.pth").exists()
    assert ckpt.resume_or_load("", resume=True) is not None
