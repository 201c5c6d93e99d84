"""Golden parity: our model built from configs/cod/focus_dinov2_large.yaml with the golden_dev overrides, loaded
with the official weights through DetectionCheckpointer, reproduces every saved official output
(docs/focus.md#golden): backbone features, pixel decoder, last decoder prediction, sem_seg, instances."""
import cv2
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

import focus
from focus.config import get_focus_cfg

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
OVERRIDES = [
    "MODEL.DINOV2.EMBED_DIM", 192, "MODEL.DINOV2.NUM_HEADS", 3, "MODEL.DINOV2.DEPTH", 4,
    "MODEL.DINOV2.DEFORM_NUM_HEADS", 3, "MODEL.DINOV2.INTERACTION_INDEXES", [[0, 0], [1, 1], [2, 2], [3, 3]],
    "MODEL.SEM_SEG_HEAD.CONVS_DIM", 64, "MODEL.SEM_SEG_HEAD.MASK_DIM", 64,
    "MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS", 1,
    "MODEL.MASK_FORMER.HIDDEN_DIM", 64, "MODEL.MASK_FORMER.NHEADS", 4,
    "MODEL.MASK_FORMER.DIM_FEEDFORWARD", 128, "MODEL.MASK_FORMER.DEC_LAYERS", 4,
    "MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "MODEL.CLIP_REFINER.ENABLED", False,
]


def golden_cfg():
    return get_focus_cfg("cod/focus_dinov2_large.yaml", OVERRIDES)


@pytest.fixture(scope="module")
def golden(shared_reference, tmp_path_factory):
    gdir = shared_reference / "golden_dev"
    model = build_model(golden_cfg()).eval()
    sd = torch.load(gdir / "weights_fp16.pth", map_location="cpu")["model"]
    sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
    path = tmp_path_factory.mktemp("golden") / "weights.pth"
    torch.save({"model": sd}, path)
    result = model.load_state_dict(torch.load(path)["model"], strict=False)
    assert not result.missing_keys and not result.unexpected_keys, result  # CLIP keys dropped silently
    DetectionCheckpointer(model).load(str(path))
    outputs = torch.load(gdir / "outputs.pth", map_location="cpu", weights_only=False)

    captured = {}
    model.backbone.register_forward_hook(lambda m, i, o: captured.__setitem__("backbone", o))
    model.sem_seg_head.pixel_decoder.register_forward_hook(lambda m, i, o: captured.__setitem__("pixel_decoder", o))
    model.sem_seg_head.predictor.register_forward_hook(lambda m, i, o: captured.__setitem__("predictor", o))
    results = {}
    for name, gold in outputs.items():
        if name == "meta":
            continue
        bgr = cv2.imread(str(gdir / gold["input"]["file"]), cv2.IMREAD_COLOR)
        image = torch.from_numpy(bgr[:, :, ::-1].copy()).permute(2, 0, 1).float()
        assert list(image.shape[1:]) == gold["input"]["image_hw"]
        with torch.no_grad():
            final = model([{"image": image, "height": gold["input"]["height"], "width": gold["input"]["width"]}])[0]
        results[name] = (dict(captured), final, gold)
    return results


def _close(ours, gold, what):
    tol = 1e-4 * max(1.0, gold.abs().max().item())
    assert ours.shape == gold.shape, what
    err = (ours.float() - gold).abs().max().item()
    assert err <= tol, f"{what}: max|ours - golden| = {err:.3g} > {tol:.3g}"


CASES = ["img1_256x256", "img3_h200_w260_out400x520"]


@pytest.mark.parametrize("name", CASES)
def test_backbone_features(golden, name):
    captured, _, gold = golden[name]
    for key, value in gold["backbone_features"].items():
        _close(captured["backbone"][key], value, f"{name} backbone {key}")


@pytest.mark.parametrize("name", CASES)
def test_pixel_decoder(golden, name):
    captured, _, gold = golden[name]
    mask_features, _, multi_scale = captured["pixel_decoder"]
    _close(mask_features, gold["pixel_decoder"]["mask_features"], f"{name} mask_features")
    assert len(multi_scale) == 3
    for i, (a, b) in enumerate(zip(multi_scale, gold["pixel_decoder"]["multi_scale_features"])):
        _close(a, b, f"{name} multi_scale_features[{i}]")


@pytest.mark.parametrize("name", CASES)
def test_predictor(golden, name):
    captured, _, gold = golden[name]
    for key in ("pred_logits", "pred_masks", "pred_boxes"):
        _close(captured["predictor"][key], gold["predictor"][key], f"{name} {key}")


@pytest.mark.parametrize("name", CASES)
def test_final_outputs(golden, name):
    _, final, gold = golden[name]
    _close(final["sem_seg"], gold["final"]["sem_seg"], f"{name} sem_seg")
    ours = final["instances"].pred_masks
    ref = gold["final"]["instances_pred_masks"]
    assert ours.shape == ref.shape and ours.dtype == torch.int32
    agree = (ours == ref).float().mean().item()
    assert agree >= 0.999, f"{name}: instances.pred_masks agree on {agree:.4%} of pixels"
    fg = final["foreground"]
    assert fg.shape == ref.shape and 0 <= fg.min() and fg.max() <= 1
