"""`FOCUSPredictor` (test-mapper resize, output contract, CLIP never built) and the output writers."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Instances
from PIL import Image
from torch import nn

import focus  # noqa: F401  (registers FOCUS)
from focus.engine import setup_cfg
from focus.engine.predictor import (
    OUTPUT_KINDS,
    FOCUSPredictor,
    composite_on,
    make_checkerboard,
    make_overlay,
    render_image,
    render_video_frame,
    soft_to_uint8,
    write_png,
)

TINY = str(Path(__file__).resolve().parents[2] / "configs" / "tiny" / "focus_tiny.yaml")


pytestmark = pytest.mark.usefixtures("single_thread")


@META_ARCH_REGISTRY.register()
class RecordingFOCUSStub(nn.Module):
    """Stands in for FOCUS where only the predictor's plumbing is tested: records its inputs and returns the
    FOCUS output contract (docs/focus.md#inference step 11 + `foreground`) computed from the image brightness."""

    def __init__(self, cfg):
        super().__init__()
        self.calls = []

    def forward(self, batched_inputs):
        self.calls.append(batched_inputs)
        outputs = []
        for x in batched_inputs:
            h, w = x["height"], x["width"]
            grey = x["image"].float().mean(0)[None, None] / 255.0
            fg = F.interpolate(grey, (h, w), mode="bilinear", align_corners=False)[0, 0]
            instances = Instances((h, w))
            instances.pred_masks = (fg > 0.5).to(torch.int32)
            outputs.append({"sem_seg": torch.stack([fg, 1 - fg]), "instances": instances, "foreground": fg})
        return outputs


def _cfg(*opts, arch="RecordingFOCUSStub"):
    return setup_cfg(
        TINY,
        ["MODEL.META_ARCHITECTURE", arch, "MODEL.DEVICE", "cpu",
         "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "100", *opts],
    )


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def stub_predictor():
    return FOCUSPredictor(_cfg())


# (h, w) -> (h', w') for MIN_SIZE_TEST 64, MAX_SIZE_TEST 100, computed by hand with int(x + 0.5):
RESIZE_CASES = [
    ((30, 45), (64, 96)),     # 45 * 64/30 = 96
    ((45, 30), (96, 64)),
    ((50, 77), (64, 99)),     # 98.56 -> 99
    ((128, 129), (64, 65)),   # 64.5 -> 65 (Python's round() would give 64)
    ((128, 133), (64, 67)),   # 66.5 -> 67 (round-half-even would give 66)
    ((20, 50), (40, 100)),    # 64 x 160 exceeds 100: scaled by 100/160
    ((21, 50), (42, 100)),    # 64 x 152.38 -> x 0.65625 -> 42.0 x 100
    ((64, 64), (64, 64)),
]


@pytest.mark.parametrize("size,expected", RESIZE_CASES)
def test_resize_follows_test_mapper_rule(stub_predictor, size, expected):
    image = _image(*size)
    stub_predictor.model.calls.clear()
    out = stub_predictor(image)
    (inp,) = stub_predictor.model.calls[0]
    assert stub_predictor.resized_shape(*size) == expected
    assert tuple(inp["image"].shape) == (3, *expected)
    assert inp["image"].dtype == torch.uint8 and (inp["height"], inp["width"]) == size
    pil = np.asarray(Image.fromarray(image).resize(expected[::-1], Image.BILINEAR))
    np.testing.assert_array_equal(inp["image"].permute(1, 2, 0).numpy(), pil)
    assert out["mask"].shape == size and out["soft"].shape == size


def test_outputs_follow_the_model(stub_predictor):
    image = _image(37, 53, seed=1)
    out = stub_predictor(image)
    assert out["mask"].dtype == np.uint8 and out["soft"].dtype == np.float32
    np.testing.assert_array_equal(out["mask"], out["instances"].pred_masks.numpy())
    np.testing.assert_array_equal(out["soft"], out["foreground"].numpy())
    assert set(out) >= {"mask", "soft", "sem_seg", "instances", "foreground"}
    batch = stub_predictor.predict_batch([image, _image(20, 30)])
    assert [b["mask"].shape for b in batch] == [(37, 53), (20, 30)]


def test_rejects_non_rgb_uint8(stub_predictor):
    with pytest.raises(ValueError, match="RGB uint8"):
        stub_predictor(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        stub_predictor(np.zeros((8, 8, 3), np.float32))


def test_clip_disabled_on_a_clone():
    cfg = _cfg("MODEL.CLIP_REFINER.ENABLED", "True")
    predictor = FOCUSPredictor(cfg)
    assert cfg.MODEL.CLIP_REFINER.ENABLED and not predictor.cfg.MODEL.CLIP_REFINER.ENABLED
    assert not predictor.model.training


def test_tiny_focus_end_to_end():
    """The real tiny FOCUS (random weights): outputs at the input size, mask = instances.pred_masks, no CLIP."""
    torch.manual_seed(0)
    predictor = FOCUSPredictor(_cfg("MODEL.CLIP_REFINER.ENABLED", "True", arch="FOCUS"))
    assert not any("clip" in k.lower() for k in predictor.model.state_dict())
    out = predictor(_image(50, 77, seed=2))
    assert out["mask"].shape == (50, 77) and out["soft"].shape == (50, 77)
    assert tuple(out["sem_seg"].shape) == (2, 50, 77)
    np.testing.assert_array_equal(out["mask"], out["instances"].pred_masks.numpy())
    assert set(np.unique(out["mask"])) <= {0, 1}
    assert out["soft"].min() >= 0.0 and out["soft"].max() <= 1.0


def test_weights_are_loaded(tmp_path):
    torch.manual_seed(1)
    trained = FOCUSPredictor(_cfg(arch="FOCUS"))
    path = tmp_path / "model.pth"
    torch.save({"model": trained.model.state_dict()}, path)
    torch.manual_seed(2)
    loaded = FOCUSPredictor(_cfg("MODEL.WEIGHTS", str(path), arch="FOCUS"))
    image = _image(40, 52, seed=3)
    a, b = trained(image), loaded(image)
    torch.testing.assert_close(b["sem_seg"], a["sem_seg"], rtol=0, atol=0)
    np.testing.assert_array_equal(b["mask"], a["mask"])
    with pytest.raises(FileNotFoundError, match="MODEL.WEIGHTS"):
        FOCUSPredictor(_cfg("MODEL.WEIGHTS", str(tmp_path / "missing.pth")))


# --------------------------------------------------------------------------------------------- writers


def test_soft_to_uint8_rounds_and_clips():
    p = np.array([[0.0, 1.0, 0.25, -0.1, 1.2, 0.5 / 255 + 1e-6, 0.2]], np.float32)
    np.testing.assert_array_equal(soft_to_uint8(p), [[0, 255, 64, 0, 255, 1, 51]])


def test_render_kinds_modes_and_values():
    image = _image(12, 16)
    mask = np.zeros((12, 16), np.uint8)
    mask[3:9, 4:12] = 1
    soft = mask * 0.8 + 0.1
    pred = {"mask": mask, "soft": soft.astype(np.float32)}
    m, s, c, o = (render_image(k, image, pred) for k in OUTPUT_KINDS)
    np.testing.assert_array_equal(m, mask * 255)
    np.testing.assert_array_equal(s, np.where(mask > 0, 230, 26))  # round(0.9*255)=230, round(0.1*255)=26
    assert c.shape == (12, 16, 4)
    np.testing.assert_array_equal(c[:, :, :3], image)
    np.testing.assert_array_equal(c[:, :, 3], s)
    assert o.shape == (12, 16, 3)
    outside = np.ones_like(mask, bool)
    outside[2:10, 3:13] = False  # pixels away from the contour are untouched
    np.testing.assert_array_equal(o[outside], image[outside])
    inside = np.zeros_like(mask, bool)
    inside[5:7, 6:10] = True  # interior: 50/50 blend with the overlay colour
    blend = np.rint(image[inside] * 0.5 + np.array([255, 40, 40]) * 0.5)
    np.testing.assert_array_equal(o[inside], blend.astype(np.uint8))
    for kind in OUTPUT_KINDS:
        frame = render_video_frame(kind, image, pred)
        assert frame.shape == (12, 16, 3) and frame.dtype == np.uint8
    with pytest.raises(ValueError, match="unknown output kind"):
        render_image("depth", image, pred)


def test_overlay_draws_a_contour():
    image = np.zeros((40, 40, 3), np.uint8)
    mask = np.zeros((40, 40), np.uint8)
    mask[10:30, 10:30] = 1
    out = make_overlay(image, mask, color=(0, 255, 0), alpha=0.0, contour_thickness=1)
    assert (out[10, 10:30] == [0, 255, 0]).all() and (out[20, 20] == 0).all()


def test_composite_on_checkerboard():
    board = make_checkerboard(4, 40, cell=16)
    assert board[0, 0, 0] == 204 and board[0, 16, 0] == 153 and board[0, 32, 0] == 204
    rgba = np.zeros((4, 40, 4), np.uint8)
    rgba[..., :3] = 100
    rgba[:, :20, 3] = 255
    out = composite_on(rgba, board)
    assert (out[:, :20] == 100).all()
    np.testing.assert_array_equal(out[:, 20:], board[:, 20:])


@pytest.mark.parametrize("shape,mode", [((9, 7), "L"), ((9, 7, 3), "RGB"), ((9, 7, 4), "RGBA")])
def test_write_png_round_trip(tmp_path, shape, mode):
    array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    path = tmp_path / "sub" / "x.png"
    write_png(str(path), array)
    with Image.open(path) as im:
        assert im.mode == mode
        np.testing.assert_array_equal(np.asarray(im), array)
    assert os.listdir(path.parent) == ["x.png"]


def test_write_png_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "x.png"
    write_png(str(path), np.zeros((4, 4), np.uint8))
    before = path.read_bytes()

    def killed(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_png(str(path), np.full((4, 4), 255, np.uint8))
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["x.png"]
    with pytest.raises(ValueError, match="uint8"):
        write_png(str(path), np.zeros((4, 4), np.float32))
