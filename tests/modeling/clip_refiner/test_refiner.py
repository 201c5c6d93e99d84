"""FOCUSCLIPRefiner semantics on a tiny open_clip ViT (same code paths as ViT-B/16, fast):
mask-prompted forward vs open_clip and vs a re-statement of OVSeg's forward, region features vs a per-image
re-statement of docs/focus.md#clip-regions, inert / live mask prompt, text features (ensembling, cache, tokeniser),
weights."""

import open_clip
import pytest
import torch
import torch.nn.functional as F

import focus.modeling.clip_refiner.refiner as refiner_mod
from focus.config import add_focus_config
from focus.modeling.clip_refiner import (
    VILD_TEMPLATES,
    FOCUSCLIPRefiner,
    build_clip_refiner,
    encode_image_with_mask_prompt,
    encode_text,
    get_templates,
    load_clip_weights,
)
from focus.modeling.clip_refiner.clip_model import CLIP_PIXEL_MEAN, CLIP_PIXEL_STD

PROMPTS = [
    "It’s an image of salient objects without background.",
    "It’s an image of background with salient objects removed.",
]


@pytest.fixture
def refiner(monkeypatch, tiny_clip):
    monkeypatch.setattr(refiner_mod, "build_clip_model", lambda name, depth, weights: tiny_clip(depth))
    r = FOCUSCLIPRefiner(prompts=PROMPTS, text_templates=("a photo of a {}.", "There is a {} in the scene"),
                         allow_random_weights=True)
    return r


def ovseg_visual_forward(visual, x, m):
    """OVSeg's mask-prompted `VisionTransformer.forward` stated as in its code (LND layout)."""
    x = visual.conv1(x)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    m = visual.mask_pool(m.squeeze(1)).reshape(m.shape[0], -1).unsqueeze(-1)
    m = torch.ceil(m)
    emb = visual.mask_embedding
    x = x * m + emb[0].unsqueeze(0) * (1 - m)
    cls = visual.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1])
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding
    x = visual.ln_pre(x).permute(1, 0, 2)
    for i, blk in enumerate(visual.transformer.resblocks):
        d = i + 1
        x = blk(x.permute(1, 0, 2)).permute(1, 0, 2)  # open_clip blocks are batch-first
        if d < visual.mask_prompt_depth:
            mp = m.permute(1, 0, 2)
            masked = x[1:] * mp + emb[d].unsqueeze(0).permute(1, 0, 2) * (1 - mp)
            x = torch.cat([x[:1], masked], dim=0)
    x = x.permute(1, 0, 2)
    return visual.ln_post(x[:, 0, :]) @ visual.proj


def test_mask_prompt_forward_matches_open_clip_and_ovseg(tiny_clip):
    model = tiny_clip()
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        plain = model.visual(x)
        torch.testing.assert_close(encode_image_with_mask_prompt(model.visual, x, None), plain)
        ones = torch.full((3, 1, 224, 224), 0.7)  # ceil(avg) = 1 everywhere → no mixing
        torch.testing.assert_close(encode_image_with_mask_prompt(model.visual, x, ones), plain)
        m = (torch.rand(3, 1, 224, 224) > 0.5).float()
        m[:, :, :96] = 0  # whole patch rows outside the region
        got = encode_image_with_mask_prompt(model.visual, x, m)
        torch.testing.assert_close(got, ovseg_visual_forward(model.visual, x, m), rtol=1e-5, atol=1e-5)
        assert (got - plain).abs().max() > 1e-3


def reference_region_features(r, images, pred_masks, pred_logits, fix):
    """docs/focus.md#clip-regions steps 1-3 per image (official loop), optionally with the FIX_REGION_INPUTS changes."""
    mask_tensor = torch.sigmoid(10 * F.interpolate(pred_masks, size=(224, 224), mode="bilinear", align_corners=False))
    imgs = F.interpolate(images, size=(224, 224), mode="bilinear", align_corners=False)
    mean = 255 * torch.tensor(CLIP_PIXEL_MEAN).view(1, 3, 1, 1)
    std = 255 * torch.tensor(CLIP_PIXEL_STD).view(1, 3, 1, 1)
    img_out, txt_out = [], []
    for b in range(images.shape[0]):
        labels = pred_logits[b].argmax(-1)
        prompts = [r.prompts[int(lab)] for lab in labels]
        image = imgs[b]
        if fix:
            image = image * torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1) + torch.tensor(
                [123.675, 116.28, 103.53]
            ).view(3, 1, 1)
            mt = mask_tensor[b]
            prompt = (mt > 0.5).float()
        else:
            mt = torch.sigmoid(100 * mask_tensor[b])
            prompt = mt
        regions = torch.stack([image * mt[0], image * mt[1]])
        regions = (regions - mean) / std
        feats = ovseg_visual_forward(r.clip_model.visual, regions, prompt[:, None])
        img_out.append(feats / feats.norm(dim=-1, keepdim=True))
        txt_out.append(r.get_text_features(prompts)[:2])
    return torch.stack(img_out), torch.stack(txt_out)


@pytest.mark.parametrize("fix", [False, True])
def test_region_features_match_per_image_reference(refiner, fix):
    refiner.fix_region_inputs = fix
    g = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 64, 96, generator=g)
    pred_masks = 3 * torch.randn(2, 2, 16, 24, generator=g)
    pred_logits = torch.tensor([[[2.0, 0, 0], [0, 2.0, 0]], [[0, 0, 2.0], [2.0, 0, 0]]])  # labels 0,1 / 2,0
    with torch.no_grad():
        img, txt = refiner.region_features(images, pred_masks, pred_logits)
        ref_img, ref_txt = reference_region_features(refiner, images, pred_masks, pred_logits, fix)
    assert img.shape == txt.shape == (2, 2, 32)
    torch.testing.assert_close(img, ref_img, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(txt, ref_txt)
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(2, 2))
    # row order = query order; the "None" prompt for the no-object label
    torch.testing.assert_close(txt[1, 0], refiner.get_text_features(["None"])[0])
    torch.testing.assert_close(txt[0, 1], refiner.get_text_features([PROMPTS[1]])[0])


def _mask_embedding_grad(refiner, fix):
    refiner.fix_region_inputs = fix
    refiner.clip_model.visual.mask_embedding.grad = None
    pred_masks = torch.full((1, 2, 16, 16), 5.0)
    pred_masks[:, 0, :8] = -5.0  # query 0: the top half is confidently outside the region
    pred_masks[:, 1, 8:] = -5.0
    pred_masks.requires_grad_(True)
    img, _ = refiner.region_features(torch.randn(1, 3, 64, 64), pred_masks, torch.zeros(1, 2, 3))
    img.square().sum().backward()
    return refiner.clip_model.visual.mask_embedding.grad


def test_mask_prompt_inert_by_default_and_live_with_fix(refiner):
    # docs/focus.md#q7: double sigmoid → prompt ≥ 0.5 everywhere → the embedding never enters the computation
    grad = _mask_embedding_grad(refiner, fix=False)
    assert grad is not None and grad.abs().max() == 0
    grad = _mask_embedding_grad(refiner, fix=True)
    assert grad.abs().max() > 0
    assert all(g.abs().sum() > 0 for g in grad)  # input + after blocks 1, 2 (depth 3)


def test_text_features_ensemble_and_cache(refiner, monkeypatch):
    model, tok = refiner.clip_model, refiner.tokenizer
    with torch.no_grad():
        per_template = [F.normalize(model.encode_text(tok([t.format(PROMPTS[0])])), dim=-1) for t in refiner.templates]
    expected = F.normalize(torch.cat(per_template).mean(0), dim=-1)
    calls = []
    real = refiner_mod.encode_text
    monkeypatch.setattr(refiner_mod, "encode_text", lambda m, t: calls.append(len(t)) or real(m, t))
    feats = refiner.get_text_features([PROMPTS[0], PROMPTS[1], PROMPTS[0]])
    assert feats.shape == (4, 32)
    torch.testing.assert_close(feats[0], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(feats[2], feats[0])
    torch.testing.assert_close(feats[3], F.normalize(refiner.non_object_embedding, dim=-1)[0])
    assert calls == [2 * len(refiner.templates)]  # both prompts encoded once, in one batch
    refiner.get_text_features(PROMPTS)
    assert calls == [2 * len(refiner.templates)]  # cached
    assert not refiner.text_feature_buffer[PROMPTS[0]].requires_grad
    assert not any("text_feature" in k for k in refiner.state_dict())


def test_encode_text_truncation_equals_open_clip(tiny_clip):
    model = tiny_clip()
    tok = open_clip.get_tokenizer("ViT-B-16-quickgelu")(["a photo of a dog.", PROMPTS[1]])
    with torch.no_grad():
        torch.testing.assert_close(encode_text(model, tok), model.encode_text(tok), rtol=1e-5, atol=1e-5)


def test_tokenizer_straightens_right_quote():
    tok = open_clip.get_tokenizer("ViT-B-16-quickgelu")
    assert torch.equal(tok([PROMPTS[0]]), tok([PROMPTS[0].replace("\u2019", "'")]))


def test_templates():
    assert len(VILD_TEMPLATES) == 14 and all(t.count("{}") == 1 for t in VILD_TEMPLATES)
    assert get_templates("vild") == VILD_TEMPLATES
    assert len(get_templates("imagenet")) == 80
    assert get_templates("predefined", ["x {}"]) == ("x {}",)
    with pytest.raises(ValueError, match="TEXT_TEMPLATES"):
        get_templates("nope")


def test_load_clip_weights_from_local_file(tmp_path, tiny_clip):
    src = tiny_clip(seed=1)
    state = {"module." + k: v for k, v in src.state_dict().items() if k != "visual.mask_embedding"}
    state["input_resolution"] = torch.tensor(224)  # OpenAI metadata entry
    path = tmp_path / "clip.pt"
    torch.save({"state_dict": state}, path)
    dst = tiny_clip(seed=2)
    emb = dst.visual.mask_embedding.detach().clone()
    load_clip_weights(dst, str(path))
    for k, v in src.state_dict().items():
        if k != "visual.mask_embedding":
            torch.testing.assert_close(dst.state_dict()[k], v)
    torch.testing.assert_close(dst.visual.mask_embedding, emb)  # keeps its own init
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(KeyError, match="bad.pt"):
        load_clip_weights(dst, str(tmp_path / "bad.pt"))


def test_config_mapping():
    from detectron2.config import get_cfg

    cfg = add_focus_config(get_cfg())
    assert build_clip_refiner(cfg) is None
    cfg.MODEL.CLIP_REFINER.PROMPTS = PROMPTS
    cfg.MODEL.CLIP_REFINER.FIX_REGION_INPUTS = True
    cfg.MODEL.CLIP_REFINER.MASK_THR = 0.4
    cfg.MODEL.CLIP_REFINER.TEXT_TEMPLATES = "predefined"
    args = FOCUSCLIPRefiner.from_config(cfg)
    assert args["fix_region_inputs"] is True and args["mask_thr"] == 0.4
    assert args["text_templates"] == ("a photo of a {}.",) and args["prompts"] == PROMPTS
    assert args["input_pixel_std"] == tuple(cfg.MODEL.PIXEL_STD)
    with pytest.raises(ValueError, match="PROMPTS"):
        FOCUSCLIPRefiner(prompts=[])


def test_encode_regions_recomputes_the_frozen_tower_with_identical_gradients(refiner):
    """Regions that require grad go through activation checkpointing (memory), with the same values and grads."""
    torch.manual_seed(1)
    regions = torch.randn(2, 3, 224, 224, requires_grad=True)
    masks = torch.rand(2, 1, 224, 224)
    out = refiner.encode_regions(regions, masks)
    (grad,) = torch.autograd.grad(out.square().sum(), regions)
    visual = refiner.clip_model.visual
    plain_masks = masks if refiner.mask_prompt_fwd else None
    ref = F.normalize(encode_image_with_mask_prompt(visual, regions, plain_masks), dim=-1)
    (ref_grad,) = torch.autograd.grad(ref.square().sum(), regions)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=0)


def test_store_frozen_in_bf16_is_bit_identical_under_autocast(refiner):
    """Frozen matrices stored in bf16 give the same features, text rows and mask gradients as fp32 weights under
    bf16 autocast (autocast rounds them the same way); the state dict stays fp32; new prompts are refused."""
    torch.manual_seed(2)
    images = torch.randn(2, 3, 64, 64)
    masks = torch.randn(2, 3, 16, 16, requires_grad=True)
    logits = torch.randn(2, 3, 3)

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
            img, txt = refiner.region_features(images, masks, logits)
        (grad,) = torch.autograd.grad(img.float().square().sum(), masks)
        return img, txt, grad

    ref = run()
    sd_before = refiner.state_dict()
    refiner.store_frozen_in(torch.bfloat16)
    visual = refiner.clip_model.visual
    assert visual.transformer.resblocks[0].attn.in_proj_weight.dtype == torch.bfloat16
    assert visual.conv1.weight.dtype == torch.bfloat16 and visual.proj.dtype == torch.bfloat16
    assert visual.ln_pre.weight.dtype == torch.float32 and visual.mask_embedding.dtype == torch.float32
    for a, b in zip(run(), ref):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    sd_after = refiner.state_dict()
    assert sd_after.keys() == sd_before.keys()
    assert all(sd_after[k].dtype == v.dtype for k, v in sd_before.items())
    with pytest.raises(RuntimeError, match="not encoded before store_frozen_in"):
        refiner.get_text_features(["a prompt never seen"])


def _tower_state(seed, tiny_clip):
    return {f"clip_model.{k}": v for k, v in tiny_clip(seed=seed).state_dict().items()}


def test_training_with_an_unloaded_tower_stops_unless_allowed(monkeypatch, tiny_clip):
    """docs/focus.md#t2: a random tower is refused in training unless ALLOW_RANDOM_WEIGHTS; loading a
    state dict that carries the tower (e.g. a FOCUS checkpoint through MODEL.WEIGHTS) counts as loaded."""
    monkeypatch.setattr(refiner_mod, "build_clip_model", lambda name, depth, weights: tiny_clip(depth))
    r = FOCUSCLIPRefiner(prompts=PROMPTS, text_templates=("a photo of a {}.",))
    args = (torch.randn(1, 3, 32, 32), torch.randn(1, 2, 8, 8), torch.randn(1, 2, 3))
    with pytest.raises(RuntimeError, match="ALLOW_RANDOM_WEIGHTS"):
        r.region_features(*args)
    r.load_state_dict(_tower_state(1, tiny_clip), strict=False)
    assert r.tower_loaded
    r.region_features(*args)
    assert FOCUSCLIPRefiner(prompts=PROMPTS, weights="some.pt").tower_loaded  # build_clip_model loaded it


def test_text_features_follow_the_loaded_tower(refiner, tiny_clip):
    """docs/focus.md#t3: text features cached before a load are recomputed from the loaded tower."""
    before = refiner.get_text_features(PROMPTS)[:2].clone()
    state = _tower_state(7, tiny_clip)
    refiner.load_state_dict(state, strict=False)
    expected = refiner._encode_prompts(PROMPTS)
    after = refiner.get_text_features(PROMPTS)[:2]
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected, rtol=0, atol=0)


def test_load_after_store_frozen_in_recomputes_in_fp32_and_narrows_again(refiner, tiny_clip):
    """Mixed-precision training narrows the frozen tower before `resume_or_load`: the load must reach the fp32
    values (not bf16-rounded ones), the text features come from the fp32 tower, then the tower is narrowed again."""
    refiner.store_frozen_in(torch.bfloat16)
    state = _tower_state(7, tiny_clip)
    refiner.load_state_dict(state, strict=False)
    visual = refiner.clip_model.visual
    assert visual.conv1.weight.dtype == torch.bfloat16  # narrowed again
    fp32 = tiny_clip(seed=7)
    tokens = refiner.tokenizer([t.format(p) for p in PROMPTS for t in refiner.templates])
    feats = F.normalize(encode_text(fp32, tokens).float(), dim=-1).view(2, len(refiner.templates), -1).mean(1)
    torch.testing.assert_close(refiner.get_text_features(PROMPTS)[:2], F.normalize(feats, dim=-1), rtol=0, atol=0)
    assert refiner.state_dict()["clip_model.visual.conv1.weight"].dtype == torch.float32
    torch.testing.assert_close(refiner.state_dict()["clip_model.visual.conv1.weight"],
                               fp32.visual.conv1.weight.bfloat16().float(), rtol=0, atol=0)
