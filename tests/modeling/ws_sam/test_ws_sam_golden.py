"""Golden parity of WS-SAM with the official network (shared/reference/ws_sam/golden_dev).

The golden weights are expanded from the recipe into tmp_path and saved as the released file is (a bare state
dict whose keys start with `module.`), loaded through `MODEL.WEIGHTS`; the soft map of each input must equal the
official min-max-normalised map within 1e-4.
"""

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]
INPUTS = ["img1_320x320.png", "img2_h203_w257.png"]


@pytest.fixture(scope="module")
def golden(shared_reference, golden_weights_file):
    case = shared_reference / "ws_sam" / "golden_dev"
    path = golden_weights_file("ws_sam", prefix="module.")
    return case, path, torch.load(case / "outputs.pth", weights_only=False)


def _model(weights):
    from detectron2.modeling import build_model

    from focus.engine.trainer import setup_cfg
    from focus.modeling.checkpoint import FOCUSCheckpointer

    cfg = setup_cfg(str(ROOT / "configs/ws_sam/golden.yaml"), ["MODEL.WEIGHTS", str(weights)])
    model = build_model(cfg).eval()
    sd = torch.load(cfg.MODEL.WEIGHTS, weights_only=True)
    assert set(model.checkpoint_filter_fn(sd)) == set(model.state_dict())
    FOCUSCheckpointer(model).load(cfg.MODEL.WEIGHTS)  # the MODEL.WEIGHTS path
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd["module." + k]), k
    return cfg, model


@pytest.mark.parametrize("name", ["img1_320x320.png", "img2_h203_w257.png"])
def test_golden_model_level(golden, name):
    from focus.data.mappers import MAPPER_REGISTRY

    case, weights, outputs = golden
    cfg, model = _model(weights)
    ref = outputs[name]
    mapper = MAPPER_REGISTRY.get(cfg.INPUT.TEST_MAPPER_NAME)(cfg, False)
    image = np.asarray(Image.open(case / name).convert("RGB"))
    inputs = mapper.map_image(image)
    assert torch.equal(inputs["image"].permute(1, 2, 0), torch.as_tensor(ref["input"]["resized_uint8"]))
    with torch.no_grad():
        out = model([inputs])[0]
    assert out["foreground"].shape == tuple(ref["input"]["orig_hw"])
    assert (out["logits"][None] - ref["logits"]).abs().max() < 1e-4
    assert (out["foreground"] - torch.as_tensor(ref["final"]["prob_minmax"])).abs().max() < 1e-4
    assert torch.equal(out["mask"], (out["foreground"] > 0.5).to(torch.uint8))


@pytest.mark.parametrize("name", INPUTS)
def test_golden_through_the_predictor(golden, name):
    """The demo's path: `Predictor(cfg)` from configs/ws_sam/golden.yaml with MODEL.WEIGHTS = the released-style
    file; its `soft` map equals the official min-max map within 1e-4."""
    from focus.engine.predictor import Predictor
    from focus.engine.trainer import setup_cfg

    case, weights, outputs = golden
    cfg = setup_cfg(str(ROOT / "configs/ws_sam/golden.yaml"), ["MODEL.WEIGHTS", str(weights)])
    predictor = Predictor(cfg)
    out = predictor(np.asarray(Image.open(case / name).convert("RGB")))
    ref = outputs[name]["final"]["prob_minmax"]
    assert out["soft"].shape == ref.shape and out["soft"].dtype == np.float32
    assert np.abs(out["soft"] - np.asarray(ref)).max() < 1e-4
    assert np.array_equal(out["mask"], (out["soft"] > 0.5).astype(np.uint8))
