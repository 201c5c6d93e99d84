"""FSNet golden parity: the official outputs of ../shared/reference/fsnet/golden_dev from our model.

The golden weights are expanded from the recipe into tmp_path and saved the way the authors released theirs: a bare
state dict whose keys carry DataParallel's ``module.`` prefix. The model is built from configs/fsnet/golden.yaml
and loaded by the project's checkpointer inside `focus.engine.predictor.Predictor`; each case is fed exactly as the
demo feeds a frame: ``predictor(frame, flow=flow_image)``.
"""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[3]
CASES = ["davis_car-shadow_00020_h480_w854", "rand_h352_w352", "rand_h251_w333"]
FAST = CASES[0]


def _read(path):
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def golden(shared_reference, golden_weights_file):
    ref = shared_reference / "fsnet" / "golden_dev"
    path = golden_weights_file("fsnet", prefix="module.")
    outputs = torch.load(ref / "outputs.pth", weights_only=False)
    keys = [k[len("module."):] for k in torch.load(path, weights_only=True)]
    return {"ref": ref, "weights": str(path), "outputs": outputs, "keys": keys}


@pytest.fixture(scope="module")
def predictor(golden):
    """`Predictor` (the demo's) from configs/fsnet/golden.yaml with MODEL.WEIGHTS = the module.-prefixed file."""
    from focus.engine.predictor import Predictor
    from focus.engine.trainer import setup_cfg

    cfg = setup_cfg(str(ROOT / "configs/fsnet/golden.yaml"), ["MODEL.WEIGHTS", golden["weights"]], eval_only=True)
    return Predictor(cfg)


def test_loads_released_layout_strictly(golden, predictor):
    model = predictor.model.model  # inside the InferenceModel wrapper
    assert list(model.state_dict()) == golden["keys"]
    saved = torch.load(golden["weights"], weights_only=True)
    assert all(k.startswith("module.") for k in saved)
    filtered = model.checkpoint_filter_fn(saved)
    assert model.load_state_dict(filtered, strict=True) is not None
    for k, v in model.state_dict().items():
        assert torch.equal(v, filtered[k]), k


def _run_case(golden, predictor, case):
    ref, gold = golden["ref"], golden["outputs"][case]
    frame, flow = _read(ref / f"{case}.png"), _read(ref / f"{case}_flow.png")
    predictor.reset()
    out = predictor(frame, flow=flow)
    final = gold["final"]
    prob = final["prob"].numpy() if torch.is_tensor(final["prob"]) else np.asarray(final["prob"])
    assert out["soft"].shape == prob.shape == frame.shape[:2]
    diff = float(np.abs(out["soft"] - prob).max())
    assert diff <= 1e-4, f"{case}: final.prob max abs diff {diff}"
    assert (out["saved_png"].int() - torch.as_tensor(final["png_uint8"]).int()).abs().max() <= 1
    mismatch = (out["mask"] != np.asarray(final["binary_uvos"])).mean()
    assert mismatch <= 1e-4
    return diff


def test_golden_fast_case(golden, predictor):
    _run_case(golden, predictor, FAST)


@pytest.mark.parametrize("case", CASES[1:])
def test_golden_other_cases(golden, predictor, case):
    _run_case(golden, predictor, case)


def test_golden_logits(golden, predictor):
    """The network alone on the 352x352 case (no resampling anywhere): logits of both decoders."""
    model, mapper = predictor.model.model, predictor.mapper
    case = "rand_h352_w352"
    ref, gold = golden["ref"], golden["outputs"][case]
    inputs = mapper.map_image(_read(ref / f"{case}.png"), flow=_read(ref / f"{case}_flow.png"))
    with torch.inference_mode():
        x, y = model._stream_inputs([inputs])
        pred_s, pred_e = model.network(x, y)
    assert (pred_s - gold["logits"]["pred_s"]).abs().max() <= 2e-5
    assert (pred_e - gold["logits"]["pred_e"]).abs().max() <= 2e-5
