"""Training path of the FOCUS model on a real ECSSD image: forward + backward on the tiny config, with and
without the CLIP distillation branch, in fp32 and under bf16 autocast on CPU."""

import cv2
import pytest
import torch
from detectron2.modeling import build_model

import focus
import focus.modeling.clip_refiner.refiner as refiner_mod
from focus.data.io import read_image, read_mask
from focus.data.mappers import labels_to_instances, mask_to_labels
from focus.config import get_focus_cfg

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
SIZE = 128


def make_cfg(config="focus_tiny.yaml", *opts):
    return get_focus_cfg(f"tiny/{config}", ["MODEL.MASK_FORMER.TRAIN_NUM_POINTS", 1024,
                                           "MODEL.MASK_FORMER.DEC_LAYERS", 3, *opts])


@pytest.fixture(scope="module")
def sample(shared_data):
    folder = shared_data / "sod" / "ECSSD-half"
    image = read_image(folder / "images" / "0001.jpg")
    mask = read_mask(folder / "masks" / "0001.png")
    image = cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    mask = cv2.resize(mask, (SIZE, SIZE), interpolation=cv2.INTER_NEAREST)
    inst = labels_to_instances(torch.as_tensor(mask_to_labels(mask)).long())
    # docs/focus.md#targets: one instance per class present (0 = foreground, 1 = background), tight boxes
    assert inst.gt_classes.tolist() == [0, 1]
    assert inst.gt_masks.shape == (2, SIZE, SIZE)
    assert bool((inst.gt_masks[0] ^ inst.gt_masks[1]).all())
    ys, xs = torch.nonzero(inst.gt_masks[0], as_tuple=True)
    assert inst.gt_boxes.tensor[0].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    img = torch.as_tensor(image).permute(2, 0, 1).contiguous()
    return {"image": img, "instances": inst, "height": SIZE, "width": SIZE}


def _check_step(model, batch, expect_clip, autocast_dtype=None):
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
        losses = model(batch)
    n_out = 3  # DEC_LAYERS 3 → final + 2 auxiliary predictions
    names = ["loss_ce", "loss_mask", "loss_dice", "loss_bbox", "loss_giou"] + (["loss_clip"] if expect_clip else [])
    assert set(losses) == {f"{k}{s}" for k in names for s in [""] + [f"_{i}" for i in range(n_out - 1)]}
    for k, v in losses.items():
        assert v.dim() == 0 and torch.isfinite(v), k
    sum(losses.values()).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    for n, g in grads.items():
        assert g is None or torch.isfinite(g).all(), n
    pred = "sem_seg_head.predictor."
    for n in (
        "class_embed.weight",
        "mask_embed.layers.0.weight",
        "bbox_embed.layers.2.weight",
        "query_feat.weight",
        "transformer_ffn_layers.0.linear1.weight",
        "transformer_cross_attention_layers.1.multihead_attn.in_proj_weight",
    ):
        assert grads[pred + n] is not None and grads[pred + n].abs().sum() > 0, n
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("backbone."))
    assert any(
        g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("sem_seg_head.pixel_decoder.")
    )
    return losses, grads


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model(make_cfg())


def test_train_step_fp32(tiny_model, sample):
    _check_step(tiny_model, [sample, sample], expect_clip=False)


def test_train_step_bf16_autocast(tiny_model, sample):
    _check_step(tiny_model, [sample], expect_clip=False, autocast_dtype=torch.bfloat16)


@pytest.mark.slow
def test_few_steps_reduce_loss(sample):
    torch.manual_seed(0)
    model = build_model(make_cfg()).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-4)
    totals = []
    for _ in range(4):
        torch.manual_seed(1)  # same sampled points every step
        loss = sum(model([sample]).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        totals.append(loss.item())
    assert totals[-1] < totals[0], totals


def _check_clip_branch(model, grads):
    pred = "sem_seg_head.predictor."
    for head in ("image_embed", "text_embed"):
        g = grads[f"{pred}{head}.projection.weight"]
        assert g is not None and g.abs().sum() > 0, head
    # docs/focus.md#clip-regions, docs/focus.md#q7: the mask embedding is inert with the official region inputs
    g = grads[pred + "clip_refiner.clip_model.visual.mask_embedding"]
    assert g is None or g.abs().max() == 0
    assert all(p.grad is None for n, p in model.named_parameters() if "clip_model" in n and not p.requires_grad)


def test_train_step_with_clip_branch(sample, monkeypatch, tiny_clip):
    # 512-d outputs: the decoder's projection heads expect 512
    monkeypatch.setattr(
        refiner_mod, "build_clip_model", lambda name, depth, weights: tiny_clip(depth, embed_dim=512, layers=2)
    )
    torch.manual_seed(0)
    model = build_model(make_cfg("focus_tiny_clip.yaml", "MODEL.CLIP_REFINER.TEXT_TEMPLATES", "predefined"))
    _, grads = _check_step(model, [sample, sample], expect_clip=True)
    _check_clip_branch(model, grads)
    _check_step(model, [sample], expect_clip=True, autocast_dtype=torch.bfloat16)


@pytest.mark.slow
def test_train_step_with_clip_vit_b16(sample):
    torch.manual_seed(0)
    model = build_model(make_cfg("focus_tiny_clip.yaml"))
    assert model.sem_seg_head.predictor.clip_refiner.clip_model.visual.mask_embedding.shape == (3, 196, 768)
    _, grads = _check_step(model, [sample], expect_clip=True)
    _check_clip_branch(model, grads)
