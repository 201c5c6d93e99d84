"""The FOCUS model end to end on the tiny config: training losses, checkpoint loading."""
import logging

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

import focus
from focus.modeling.checkpoint import FOCUSCheckpointer
from focus.config import get_focus_cfg

ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]


def tiny_cfg(**overrides):
    opts = ["MODEL.MASK_FORMER.TRAIN_NUM_POINTS", 256, "MODEL.MASK_FORMER.DEC_LAYERS", 3]
    return get_focus_cfg("tiny/focus_tiny.yaml", opts + [x for kv in overrides.items() for x in kv])


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model(tiny_cfg())


def _sample(h=64, w=64):
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[10:40, 20:50] = True
    inst = Instances((h, w))
    inst.gt_masks = torch.stack([mask, ~mask])
    inst.gt_boxes = Boxes(torch.tensor([[20.0, 10.0, 50.0, 40.0], [0.0, 0.0, w, h]]))
    inst.gt_classes = torch.tensor([0, 1])
    return {"image": torch.rand(3, h, w) * 255, "instances": inst, "height": h, "width": w}


def test_training_losses_are_weighted(tiny_model):
    model = tiny_model.train()
    torch.manual_seed(0)
    losses = model([_sample(), _sample()])
    wd = model.criterion.weight_dict
    assert set(losses) <= set(wd)
    expected = {f"{k}{s}" for k in ("loss_ce", "loss_mask", "loss_dice", "loss_bbox", "loss_giou")
                for s in ["", "_0", "_1"]}
    assert set(losses) == expected  # no CLIP tower -> no loss_clip
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.sem_seg_head.predictor.class_embed.weight.grad is not None
    model.zero_grad()


def test_loss_weighting_and_unknown_keys_dropped(tiny_model, monkeypatch):
    model = tiny_model.train()
    fake = {k: torch.tensor(1.0) for k in model.criterion.weight_dict}
    fake["loss_unknown"] = torch.tensor(1.0)
    monkeypatch.setattr(model.criterion, "forward", lambda outputs, targets: dict(fake))
    losses = model([_sample()])
    assert losses == {k: torch.tensor(float(v)) for k, v in model.criterion.weight_dict.items()}
    assert losses["loss_mask_1"] == 5.0 and losses["loss_giou"] == 2.0


def test_eval_outputs(tiny_model):
    model = tiny_model.eval()
    with torch.no_grad():
        (out,) = model([{"image": torch.rand(3, 50, 70) * 255, "height": 25, "width": 35}])
    assert out["sem_seg"].shape == (2, 25, 35) and out["sem_seg"].dtype == torch.float32
    assert out["instances"].pred_masks.shape == (25, 35)
    assert out["foreground"].shape == (25, 35)


def test_checkpointer_bare_and_wrapped_state_dict(tiny_model, tmp_path, caplog):
    sd = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    sd["sem_seg_head.predictor.clip_refiner.non_object_embedding"] = torch.zeros(1, 512)  # official extra
    target = build_model(tiny_cfg())
    for name, payload, suffix in [("bare", sd, ".pth"), ("wrapped", {"model": sd, "iteration": 3}, ".pth"),
                                  ("bare", sd, ".pkl")]:
        path = tmp_path / f"{name}{suffix}"
        if suffix == ".pkl":
            import pickle

            with open(path, "wb") as f:
                pickle.dump({k: v.numpy() for k, v in payload.items()}, f)
        else:
            torch.save(payload, path)
        with torch.no_grad():
            for p in target.parameters():
                p.zero_()
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            FOCUSCheckpointer(target).load(str(path))
        assert "Checkpoint load summary" not in caplog.text, caplog.text  # nothing missing or unexpected
        loaded = target.state_dict()
        for k, v in tiny_model.state_dict().items():
            assert torch.equal(loaded[k], v), (name, suffix, k)


def test_checkpointer_one_summary(tiny_model, tmp_path, caplog):
    sd = {k: v for k, v in tiny_model.state_dict().items() if "class_embed" not in k}
    sd["sem_seg_head.predictor.unknown.weight"] = torch.zeros(3)
    sd["sem_seg_head.predictor.query_feat.weight"] = torch.zeros(5, 5)
    torch.save(sd, tmp_path / "partial.pth")
    with caplog.at_level(logging.WARNING):
        FOCUSCheckpointer(build_model(tiny_cfg())).load(str(tmp_path / "partial.pth"))
    summaries = [r for r in caplog.records if "Checkpoint load summary" in r.getMessage()]
    assert len(summaries) == 1
    msg = summaries[0].getMessage()
    assert "class_embed.{bias, weight}" in msg and "predictor.unknown.weight" in msg and "query_feat.weight" in msg


@pytest.mark.slow
def test_training_with_clip_refiner():
    """Full training step with the CLIP tower (random ViT-B/16): loss_clip at every prediction, gradients reach the
    projection heads, CLIP stays frozen (docs/focus.md#clip-training-only)."""
    torch.manual_seed(0)
    cfg = tiny_cfg(**{"MODEL.CLIP_REFINER.ENABLED": True, "MODEL.MASK_FORMER.DEC_LAYERS": 2})
    cfg.MODEL.CLIP_REFINER.PROMPTS = ["foreground.", "background."]
    model = build_model(cfg).train()
    losses = model([_sample()])
    assert {"loss_clip", "loss_clip_0"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    predictor = model.sem_seg_head.predictor
    assert predictor.image_embed.projection.weight.grad is not None
    assert predictor.text_embed.projection.weight.grad is not None
    assert predictor.clip_refiner.clip_model.visual.proj.grad is None
    model.eval()
    with torch.no_grad():
        (out,) = model([{"image": torch.rand(3, 32, 32) * 255}])
    assert out["sem_seg"].shape == (2, 32, 32)
