"""BiRefNet parts against hand-computed values and reference formulations (CPU, seconds)."""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from focus.modeling.birefnet.losses import finetune_weights, iou_loss, laplacian, pixel_losses, ssim_loss
from focus.modeling.birefnet.mapper import BiRefNetTestMapper, tile_boxes
from focus.modeling.birefnet.modules import ASPPDeformable, DeformableConv2d, image2patches

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models: ~10x faster on busy shared cores


def tiny_cfg(*opts):
    from focus.engine.trainer import setup_cfg

    return setup_cfg(str(ROOT / "configs" / "birefnet" / "tiny.yaml"), list(opts))


def tiny_model(*opts, seed=0):
    from focus.modeling.birefnet import BiRefNet

    torch.manual_seed(seed)
    return BiRefNet(tiny_cfg(*opts))


def test_image2patches_is_a_block_split_not_pixel_unshuffle():
    x = torch.arange(2 * 3 * 8 * 12, dtype=torch.float32).view(2, 3, 8, 12)
    p = image2patches(x, 2, 3)  # blocks of 4 x 4
    assert p.shape == (2, 18, 4, 4)
    for c in range(3):
        for gi in range(2):
            for gj in range(3):
                assert torch.equal(p[:, c * 6 + gi * 3 + gj], x[:, c, gi * 4:(gi + 1) * 4, gj * 4:(gj + 1) * 4])
    square = x[:, :, :, :8]
    assert not torch.equal(image2patches(square, 2, 2), F.pixel_unshuffle(square, 2))


def test_deformable_conv_at_init_is_a_plain_conv():
    torch.manual_seed(0)
    m = DeformableConv2d(5, 7, 3, padding=1)
    x = torch.randn(2, 5, 9, 11)
    assert torch.allclose(m(x), F.conv2d(x, m.regular_conv.weight, padding=1), atol=1e-5)


def test_deformable_conv_integer_offset_shifts_the_sampling():
    """An offset of +1 row on every tap samples the next row (zero outside the image)."""
    torch.manual_seed(0)
    m = DeformableConv2d(2, 3, 1, padding=0)
    with torch.no_grad():
        m.offset_conv.bias.copy_(torch.tensor([1.0, 0.0]))
    x = torch.randn(1, 2, 6, 5)
    shifted = torch.cat([x[:, :, 1:], torch.zeros(1, 2, 1, 5)], dim=2)
    assert torch.allclose(m(x), F.conv2d(shifted, m.regular_conv.weight), atol=1e-5)


def test_aspp_deformable_shapes_and_branches():
    m = ASPPDeformable(8, width=4).eval()
    assert m(torch.randn(2, 8, 6, 6)).shape == (2, 8, 6, 6)
    kernels = [b.atrous_conv.regular_conv.kernel_size for b in [m.aspp1, *m.aspp_deforms]]
    assert kernels == [(1, 1), (1, 1), (3, 3), (7, 7)]


def test_swin_pads_every_stage_and_attends_to_padding():
    """Maps smaller than or not divisible by the window (64x96 input: 16x24 ... 2x3 with window 7) are padded to
    whole windows at every stage (docs/birefnet.md#q13); the shift mask is -inf across regions, 0 on the diagonal."""
    from focus.modeling.backbone.swin_v1 import SwinTransformerV1, shift_window_mask

    torch.manual_seed(0)
    m = SwinTransformerV1(embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 1, 1, 1), window_size=7).eval()
    outs = m(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 8, 16, 24), (1, 16, 8, 12), (1, 32, 4, 6), (1, 64, 2, 3)]
    mask = shift_window_mask(14, 14, 7, 3)
    assert mask.shape == (4, 49, 49) and torch.isinf(mask).any() and (mask.diagonal(dim1=1, dim2=2) == 0).all()


def test_losses_hand_values():
    p = torch.tensor([[[[0.5, 1.0], [0.0, 0.25]]]]).repeat(3, 1, 1, 1)
    g = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]]).repeat(3, 1, 1, 1)
    one = 1 - 1.5 / (2 + 1.75 - 1.5)
    assert iou_loss(p, g, "sum").item() == pytest.approx(3 * one)  # docs/birefnet.md#q5
    assert iou_loss(p, g, "mean").item() == pytest.approx(one)
    assert ssim_loss(g, g).item() == pytest.approx(0.0, abs=1e-6)
    # Laplacian of a ramp is zero inside; of a point: centre -24/48, neighbours 1/48
    d = torch.zeros(1, 1, 7, 7)
    d[0, 0, 3, 3] = 1
    lap = laplacian(d)
    assert lap[0, 0, 3, 3].item() == pytest.approx(-0.5) and lap[0, 0, 1, 1].item() == pytest.approx(1 / 48)
    ramp = torch.arange(9.0).view(1, 1, 1, 9).expand(1, 1, 9, 9)
    assert laplacian(ramp)[0, 0, 2:-2, 2:-2].abs().max().item() < 1e-5


def test_pixel_losses_sum_over_scales():
    g = (torch.rand(2, 1, 16, 16) > 0.5).float()
    logits = [torch.randn(2, 1, 4, 4), torch.randn(2, 1, 16, 16)]
    out = pixel_losses(logits, g, (30, 0.5, 10, 0, 0))
    assert set(out) == {"loss_bce", "loss_iou", "loss_ssim"}
    up = F.interpolate(logits[0], size=(16, 16), mode="bilinear", align_corners=True).sigmoid()
    bce = 30 * (F.binary_cross_entropy(up, g) + F.binary_cross_entropy(logits[1].sigmoid(), g))
    assert out["loss_bce"].item() == pytest.approx(bce.item(), rel=1e-5)


def test_finetune_weights_compound_per_epoch():
    w = (30, 0.5, 10, 100, 0)
    f = (0.0, 0.5, 1.0, 0.9, 1.0)
    assert finetune_weights(w, 79, 100, 20, 5, f) == w
    assert finetune_weights(w, 80, 100, 20, 5, f) == pytest.approx((0, 0.25, 10, 90, 0))
    assert finetune_weights(w, 90, 100, 20, 5, f) == pytest.approx((0, 0.0625, 10, 72.9, 0))  # docs/birefnet.md#q8
    assert finetune_weights(w, 90, 100, 20, 5, f, compound=False) == pytest.approx((0, 0.25, 10, 90, 0))


def test_test_mapper_official_and_readme_paths():
    import cv2

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    cfg = tiny_cfg()
    out = BiRefNetTestMapper(cfg, is_train=False).map_image(img)
    assert (out["height"], out["width"]) == (50, 70) and out["image"].dtype == torch.uint8
    ref = cv2.resize(img, (64, 64), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(out["image"].permute(1, 2, 0).numpy(), ref)
    readme = BiRefNetTestMapper(tiny_cfg("MODEL.BIREFNET.INFERENCE_PATH", "readme"), is_train=False).map_image(img)
    assert not torch.equal(readme["image"], out["image"])


def test_tile_boxes_cover_with_overlap():
    boxes = tile_boxes(300, 500, 128, 0.25)
    cover = np.zeros((300, 500), int)
    for y0, x0, y1, x1 in boxes:
        assert y1 - y0 == 128 and x1 - x0 == 128
        cover[y0:y1, x0:x1] += 1
    assert cover.min() >= 1
    xs = sorted({b[1] for b in boxes})
    assert all(b - a <= 96 for a, b in zip(xs, xs[1:]))
    assert tile_boxes(100, 500, 128, 0.25)[0][2] == 100


def test_tiny_model_eval_and_tiled_outputs():
    model = tiny_model("MODEL.BIREFNET.TILE.ENABLED", True, "MODEL.BIREFNET.TILE.SIZE", 64).eval()
    cfg = tiny_cfg("MODEL.BIREFNET.TILE.ENABLED", True, "MODEL.BIREFNET.TILE.SIZE", 64)
    mapper = BiRefNetTestMapper(cfg, is_train=False)
    img = np.random.default_rng(1).integers(0, 256, (120, 150, 3), dtype=np.uint8)
    inp = mapper.map_image(img)
    assert inp["tiles"].shape[1:] == (3, 64, 64) and len(inp["tiles"]) == len(inp["tile_boxes"]) == 9
    with torch.no_grad():
        tiled = model([inp])[0]
        plain = model([{k: inp[k] for k in ("image", "height", "width")}])[0]
    for out in (tiled, plain):
        assert out["foreground"].shape == (120, 150) and out["mask"].dtype == torch.bool
        assert 0 <= out["foreground"].min() and out["foreground"].max() <= 1
    assert not torch.equal(tiled["foreground"], plain["foreground"])


def test_tiny_model_trains_with_and_without_checkpointing():
    torch.manual_seed(0)
    batch = [{"image": torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8),
              "gt": (torch.rand(1, 64, 64) > 0.5).float()} for _ in range(2)]
    grads = []
    for ckpt in (False, True):
        model = tiny_model("MODEL.BIREFNET.GRAD_CHECKPOINTING", ckpt, "MODEL.BIREFNET.DROP_PATH_RATE", 0.0).train()
        losses = model(batch)
        assert set(losses) == {"loss_bce", "loss_iou", "loss_ssim", "loss_gdt"}
        sum(losses.values()).backward()
        grads.append(model.bb.layers[0].blocks[0].attn.qkv.weight.grad.clone())
        assert model.decoder.conv_ms_spvn_4.weight.grad is not None  # training-only heads are trained
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_checkpoint_filter_strips_prefixes_and_fills_buffers():
    from focus.modeling.checkpoint import strip_prefixes

    assert strip_prefixes({"module._orig_mod.bb.x": 1, "_orig_mod.module.bb.y": 2}) == {"bb.x": 1, "bb.y": 2}
    model = tiny_model()
    sd = {"_orig_mod." + k: v for k, v in model.state_dict().items()
          if not k.endswith(("relative_position_index", "num_batches_tracked"))}
    out = model.checkpoint_filter_fn(sd)
    assert list(sorted(out)) == sorted(model.state_dict())


@pytest.mark.parametrize("fmt", ["pth-module", "pth-compiled", "safetensors"])
def test_released_files_load_through_model_weights(tmp_path, fmt):
    """A bare state dict (`.pth`, with `module.` / `_orig_mod.` prefixes) and a Hugging Face `model.safetensors`
    load through the checkpointer unchanged."""
    from detectron2.modeling import build_model
    from safetensors.torch import save_file

    from focus.engine.trainer import Trainer

    src = tiny_model(seed=1)
    for m in src.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
    sd = src.state_dict()
    if fmt == "safetensors":
        path = tmp_path / "model.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        prefix = "module." if fmt == "pth-module" else "_orig_mod."
        path = tmp_path / "BiRefNet-general-epoch_244.pth"
        torch.save({prefix + k: v for k, v in sd.items()}, path)
    cfg = tiny_cfg("MODEL.WEIGHTS", str(path))
    torch.manual_seed(5)
    model = build_model(cfg)
    Trainer.load_weights(cfg, model)
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k


@pytest.mark.parametrize("size", [(64, 64), (64, 96)])
def test_fused_stride1_output_equals_the_official_path(size):
    """docs/birefnet.md#speed: the folded stride-1 head gives the official logits up to rounding, border included."""
    model = tiny_model(seed=3).eval()
    for m in model.modules():  # non-trivial biases everywhere
        if isinstance(m, torch.nn.Conv2d) and m.bias is not None:
            torch.nn.init.normal_(m.bias, std=0.5)
    x = torch.randn(2, 3, *size)
    p1 = torch.randn(2, model.decoder.conv_out1[0].in_channels - model.decoder.ipt_blk1.conv_out.out_channels,
                     size[0] // 4, size[1] // 4)
    with torch.no_grad():
        ref = model.decoder.conv_out1(torch.cat(
            (F.interpolate(p1, size=size, mode="bilinear", align_corners=True), model.decoder.ipt_blk1(x)), 1))
        fused = model.decoder.fused_output(p1, x)
    assert (fused - ref).abs().max().item() < 1e-5


@pytest.mark.parametrize("cast", ["autocast", "full"])
def test_bf16_inference_through_the_predictor(cast):
    """bf16 weights (prepare_for_inference): deformable sampling in fp32, its matmul in bf16
    (docs/birefnet.md#q21); the soft map stays close to fp32's."""
    from focus.engine.predictor import Predictor

    img = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    soft = {}
    for dtype in ("fp32", "bf16"):
        torch.manual_seed(0)
        soft[dtype] = Predictor(tiny_cfg("TEST.INFERENCE_DTYPE", dtype, "TEST.INFERENCE_CAST", cast))(img)["soft"]
    assert soft["bf16"].dtype == np.float32 and soft["bf16"].shape == (70, 90)
    assert np.abs(soft["bf16"] - soft["fp32"]).max() < 5e-3


def test_losses_under_bf16_autocast_are_computed_in_fp32():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    gt = (torch.rand(2, 1, 64, 64) > 0.5).float()
    model = tiny_model("MODEL.BIREFNET.DROP_PATH_RATE", 0.0).train()
    ref = model.losses(x, gt)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = model.losses(x, gt)
    for k in ref:
        assert torch.isfinite(amp[k]) and amp[k].dtype == torch.float32
        assert amp[k].item() == pytest.approx(ref[k].item(), rel=0.05), k


def test_train_mapper_resizes_and_augments(tmp_path):
    import cv2

    from focus.modeling.birefnet.mapper import BiRefNetTrainMapper

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    mask = np.zeros((50, 70), np.uint8)
    mask[10:30, 20:50] = 255
    cv2.imwrite(str(tmp_path / "a.jpg"), img[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "a.png"), mask)
    d = {"file_name": str(tmp_path / "a.jpg"), "sem_seg_file_name": str(tmp_path / "a.png")}
    out = BiRefNetTrainMapper(tiny_cfg(), is_train=True)(d)
    assert out["image"].shape == (3, 64, 64) and out["image"].dtype == torch.uint8
    assert out["gt"].shape == (1, 64, 64) and 0 <= out["gt"].min() and out["gt"].max() <= 1
    assert ((out["gt"] > 0) & (out["gt"] < 1)).any()  # bilinear-resized labels have soft edges
    plain = BiRefNetTrainMapper(tiny_cfg("MODEL.BIREFNET.AUG.FLIP", False, "MODEL.BIREFNET.AUG.ROTATE_PROB", 0.0,
                                         "MODEL.BIREFNET.AUG.ENHANCE", False, "MODEL.BIREFNET.AUG.PEPPER", 0.0),
                                is_train=True)(d)
    ref = cv2.resize(mask, (64, 64), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    assert np.allclose(plain["gt"][0].numpy(), ref)
    dynamic = BiRefNetTrainMapper(tiny_cfg("MODEL.BIREFNET.DYNAMIC_SIZE", (32, 96, 32, 96)), is_train=True)(d)
    assert dynamic["image"].shape == (3, 50, 70)  # the model draws one size per batch


def test_dynamic_size_training_batch():
    torch.manual_seed(0)
    model = tiny_model("MODEL.BIREFNET.DYNAMIC_SIZE", (32, 96, 32, 96)).train()
    batch = [{"image": torch.randint(0, 256, (3, 50, 70), dtype=torch.uint8), "gt": torch.rand(1, 50, 70)},
             {"image": torch.randint(0, 256, (3, 60, 40), dtype=torch.uint8), "gt": torch.rand(1, 60, 40)}]
    x, gt = model._train_batch(batch)
    assert x.shape[-2:] == gt.shape[-2:] and all(s % 32 == 0 and 32 <= s <= 96 for s in x.shape[-2:])


def test_inputs_not_multiple_of_32_and_tta():
    """TTA copies (any size) run: sides are resized to multiples of 32 and the map back to the input's size."""
    from focus.engine.tta import TTAModel

    model = tiny_model().eval()
    inp = {"image": torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8), "height": 50, "width": 70}
    with torch.no_grad():
        assert model.predict_probs(torch.randint(0, 256, (1, 3, 70, 45), dtype=torch.uint8)).shape == (1, 1, 70, 45)
        cfg = tiny_cfg("TEST.AUG.MIN_SIZES", (48, 80), "TEST.AUG.FLIP", True)
        (out,) = TTAModel(cfg, model)([inp])
    assert out["foreground"].shape == (50, 70) and out["mask"].shape == (50, 70)
