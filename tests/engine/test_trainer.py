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


@pytest.fixture
def tiny_clip():
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), "..", "modeling", "conftest.py")
    spec = importlib.util.spec_from_file_location("modeling_conftest", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod._tiny_clip


def test_optimizer_groups_with_clip_built(monkeypatch, tiny_clip):
    """With the CLIP branch built, the frozen tower is left out; its trainable `visual.mask_embedding` and the
    refiner's `non_object_embedding` get the base lr with weight decay (docs/focus.md#recipe); the projection
    heads' norms none."""
    from focus.modeling.clip_refiner import refiner as refiner_mod

    monkeypatch.setattr(refiner_mod, "build_clip_model", lambda *a, **k: tiny_clip(embed_dim=512))
    monkeypatch.setattr(refiner_mod, "open_clip_name", lambda name: "ViT-B-16-quickgelu")
    cfg = setup_cfg(TINY, ["MODEL.CLIP_REFINER.ENABLED", "True", "SOLVER.BASE_LR", "0.001",
                           "SOLVER.BACKBONE_MULTIPLIER", "0.1", "SOLVER.WEIGHT_DECAY", "0.05"])
    torch.manual_seed(0)
    model = build_model(cfg)
    opt = build_optimizer(cfg, model)
    group_of = {id(p): g for g in opt.param_groups for p in g["params"]}
    prefix = "sem_seg_head.predictor."
    named = dict(model.named_parameters())
    clip = {n for n in named if n.startswith(prefix + "clip_refiner.")}
    in_opt = {n for n in clip if id(named[n]) in group_of}
    assert in_opt == {prefix + "clip_refiner.clip_model.visual.mask_embedding",
                      prefix + "clip_refiner.non_object_embedding"}
    assert len(clip) > 20  # the frozen tower is built but not optimised
    for n in in_opt:
        assert group_of[id(named[n])]["lr"] == pytest.approx(1e-3)
        assert group_of[id(named[n])]["weight_decay"] == 0.05
    for head in ("image_embed", "text_embed"):
        for leaf, wd in (("projection.weight", 0.05), ("fc.bias", 0.05), ("bn1.weight", 0.0), ("layer_norm.bias", 0.0)):
            g = group_of[id(named[f"{prefix}{head}.{leaf}"])]
            assert g["weight_decay"] == wd and g["lr"] == pytest.approx(1e-3), (head, leaf)
    assert len(opt.param_groups) == sum(1 for p in model.parameters() if p.requires_grad)


def test_lr_schedule_values_at_chosen_iterations():
    """`WarmupPolyLR` of the shipped recipe: `lr = 1e-4 (1 - it / 20000)^0.9`, no warm-up (docs/focus.md#recipe)."""
    from focus.engine.trainer import Trainer

    cfg = setup_cfg(os.path.join(os.path.dirname(TINY), "..", "cod", "focus_dinov2_large.yaml"))
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, cfg.SOLVER.WARMUP_ITERS) == (1e-4, 20000, 0)
    holder = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(holder.parameters(), lr=cfg.SOLVER.BASE_LR)
    sched = Trainer.build_lr_scheduler(cfg, opt)
    seen = {}
    for it in range(20000):
        if it in (0, 1, 100, 5000, 10000, 19999):
            seen[it] = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
    for it, lr in seen.items():
        assert lr == pytest.approx(1e-4 * (1 - it / 20000) ** 0.9, rel=1e-9), it
    assert seen[10000] == pytest.approx(5.358867e-05, rel=1e-6)


def test_resume_or_load_refreshes_what_the_model_derives_from_weights(monkeypatch):
    """After detectron2's `resume_or_load`, the trainer calls the model's `on_weights_loaded` (any member; through
    DDP too), so e.g. the CLIP text features come from the loaded tower. docs/focus.md#t3"""
    from detectron2.engine import DefaultTrainer

    from focus.engine.trainer import Trainer, weights_loaded

    order = []

    class Model(torch.nn.Module):
        def on_weights_loaded(self):
            order.append("hook")

    monkeypatch.setattr(DefaultTrainer, "resume_or_load", lambda self, resume=True: order.append("load"))
    trainer = Trainer.__new__(Trainer)
    trainer._trainer = type("T", (), {"model": Model()})()
    trainer.scheduler, trainer.max_iter = None, 10
    trainer.resume_or_load(resume=False)
    assert order == ["load", "hook"]
    assert weights_loaded(torch.nn.Linear(1, 1)) is not None  # models without the hook are left alone
