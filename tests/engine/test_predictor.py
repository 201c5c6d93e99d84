"""`Predictor` (the member's test mapper, the output contract, training-only parts never built)."""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detectron2.modeling import META_ARCH_REGISTRY
from PIL import Image
from torch import nn

import focus  # noqa: F401  (registers FOCUS)
from focus.engine import setup_cfg
from focus.engine.predictor import FOCUSPredictor, Predictor

TINY = str(Path(__file__).resolve().parents[2] / "configs" / "tiny" / "focus_tiny.yaml")


pytestmark = pytest.mark.usefixtures("single_thread")


@META_ARCH_REGISTRY.register()
class RecordingFOCUSStub(nn.Module):
    """Stands in for a member where only the predictor's plumbing is tested: records its inputs and returns the
    member contract (`foreground`, `mask`) computed from the image brightness."""

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
            outputs.append({"foreground": fg, "mask": (fg > 0.5).to(torch.int32)})
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
    return Predictor(_cfg("TEST.INFERENCE_PACK", "False"))


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
    stub_predictor.model.model.calls.clear()
    out = stub_predictor(image)
    (inp,) = stub_predictor.model.model.calls[0]
    assert tuple(inp["image"].shape) == (3, *expected)
    assert inp["image"].dtype == torch.uint8 and (inp["height"], inp["width"]) == size
    pil = np.asarray(Image.fromarray(image).resize(expected[::-1], Image.BILINEAR))
    np.testing.assert_array_equal(inp["image"].permute(1, 2, 0).numpy(), pil)
    assert out["mask"].shape == size and out["soft"].shape == size


def test_outputs_follow_the_model(stub_predictor):
    image = _image(37, 53, seed=1)
    out = stub_predictor(image)
    assert out["mask"].dtype == np.uint8 and out["soft"].dtype == np.float32
    np.testing.assert_array_equal(out["mask"], (out["foreground"].numpy() > 0.5).astype(np.uint8))
    np.testing.assert_array_equal(out["soft"], out["foreground"].numpy())
    assert set(out) >= {"mask", "soft", "foreground"}
    batch = stub_predictor.predict_batch([image, _image(20, 30)])
    assert [b["mask"].shape for b in batch] == [(37, 53), (20, 30)]


def test_rejects_non_rgb_uint8(stub_predictor):
    with pytest.raises(ValueError, match="RGB uint8"):
        stub_predictor(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        stub_predictor(np.zeros((8, 8, 3), np.float32))


def test_clip_disabled_on_a_clone():
    cfg = _cfg("MODEL.CLIP_REFINER.ENABLED", "True")
    predictor = Predictor(cfg)
    assert cfg.MODEL.CLIP_REFINER.ENABLED and not predictor.cfg.MODEL.CLIP_REFINER.ENABLED
    assert not predictor.model.training
    assert FOCUSPredictor is Predictor  # the earlier name stays importable


def test_tiny_focus_end_to_end():
    """The real tiny FOCUS (random weights): outputs at the input size, mask = the merge rule's, no CLIP."""
    torch.manual_seed(0)
    predictor = Predictor(_cfg("MODEL.CLIP_REFINER.ENABLED", "True", arch="FOCUS"))
    assert not any("clip" in k.lower() for k in predictor.model.model.state_dict())
    out = predictor(_image(50, 77, seed=2))
    assert out["mask"].shape == (50, 77) and out["soft"].shape == (50, 77)
    assert tuple(out["sem_seg"].shape) == (2, 50, 77)
    np.testing.assert_array_equal(out["mask"], out["instances"].pred_masks.numpy())
    assert set(np.unique(out["mask"])) <= {0, 1}
    assert out["soft"].min() >= 0.0 and out["soft"].max() <= 1.0


def test_weights_are_loaded(tmp_path):
    torch.manual_seed(1)
    trained = Predictor(_cfg(arch="FOCUS"))
    path = tmp_path / "model.pth"
    torch.save({"model": trained.model.model.state_dict()}, path)
    torch.manual_seed(2)
    loaded = Predictor(_cfg("MODEL.WEIGHTS", str(path), arch="FOCUS"))
    image = _image(40, 52, seed=3)
    a, b = trained(image), loaded(image)
    torch.testing.assert_close(b["sem_seg"], a["sem_seg"], rtol=0, atol=0)
    np.testing.assert_array_equal(b["mask"], a["mask"])
    with pytest.raises(FileNotFoundError, match="MODEL.WEIGHTS"):
        Predictor(_cfg("MODEL.WEIGHTS", str(tmp_path / "missing.pth")))
