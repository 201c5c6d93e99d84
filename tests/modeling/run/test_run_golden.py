"""Golden parity of RUN: the reduced official model of the golden case, loaded from a released-style file
(bare state dict, `module.` prefixes), reproduces the official saved map of each input to 1e-4."""
import json

import numpy as np
import pytest
import torch



@pytest.fixture(scope="module")
def golden(shared_reference, golden_weights_file):
    """(released-style weights path, outputs.pth dict, outputs.json dict, golden_dev folder)."""
    gdir = shared_reference / "run" / "golden_dev"
    path = golden_weights_file("run", prefix="module.")
    outputs = torch.load(gdir / "outputs.pth", weights_only=False)
    stats = json.loads((gdir / "outputs.json").read_text())
    return path, outputs, stats, gdir


def _model(weights, opts=()):
    from detectron2.modeling import build_model

    from focus.config import get_focus_cfg

    cfg = get_focus_cfg("run/golden.yaml", list(opts))
    model = build_model(cfg).eval()
    state = torch.load(weights, map_location="cpu", weights_only=True)
    incompatible = model.load_state_dict(model.checkpoint_filter_fn(state), strict=True)
    assert not incompatible.missing_keys and not incompatible.unexpected_keys
    return cfg, model


def _image(gdir, name):
    from focus.data.io import read_image

    return read_image(str(gdir / f"{name}.png"))


def test_golden_model_level(golden, single_thread):
    weights, outputs, stats, gdir = golden
    cfg, model = _model(weights, ["MODEL.RUN.TEST_OUTPUTS", "all"])
    from focus.data.mappers import build_mapper

    mapper = build_mapper(cfg, is_train=False)
    for name in ("img1_512x512", "img2_h233_w411"):
        # every official output for img1; only the prediction path for img2 (keeps the test under 20 s)
        model.test_outputs = "all" if name == "img1_512x512" else "prediction"
        ref = outputs[name]
        inp = mapper.map_image(_image(gdir, name))
        assert torch.equal(inp["image"], ref["input"]["net_input_uint8"][0])  # the official squash resize
        with torch.no_grad():
            out = model([inp])[0]
        h, w = ref["final"]["prob"].shape
        assert out["foreground"].shape == (h, w) and out["mask"].shape == (h, w)
        diff = (out["foreground"] - ref["final"]["prob"]).abs().max().item()
        assert diff < 1e-4, f"{name}: final.prob max abs diff {diff}"
        if "run_outputs" not in out:
            continue
        run = out["run_outputs"]
        assert (run["f1"] - ref["logits"][0]).abs().max().item() < 1e-3
        # SOFS (registered golden weights) and the stage-4 / ROBE outputs that depend on it
        inter = ref["intermediates"]
        assert (run["prior_cam"] - inter["gpm_prior_cam"][0]).abs().max().item() < 1e-4
        assert (run["prior_cam4"] - inter["sofs_prior_cam4"][0]).abs().max().item() < 1e-4
        for key in ("f4", "pred_b1"):
            st = stats[name]["network_outputs"][key]
            got = run[key]
            assert abs(got.mean().item() - st["mean"]) < 1e-4 * max(1.0, abs(st["mean"])), key
            assert abs(got.std().item() - st["std"]) < 1e-4 * max(1.0, st["std"]), key
            assert abs(got.max().item() - st["max"]) < 1e-3 * max(1.0, abs(st["max"])), key
        png = np.clip(np.rint(out["foreground"].numpy() * 255), 0, 255).astype(np.uint8)
        assert np.abs(png.astype(int) - np.asarray(ref["final"]["png_uint8"]).astype(int)).max() <= 1


def test_released_checkpoint_without_prefix_and_sofs_summary(golden, tmp_path, caplog):
    """A single-GPU file (no `module.`) loads too; a released file (no SOFS keys) loads with one summary line."""
    weights, _, _, _ = golden
    state = torch.load(weights, map_location="cpu", weights_only=True)
    bare = {k[len("module."):]: v for k, v in state.items() if not k.startswith("module.selective_mamba.")}
    from detectron2.modeling import build_model

    from focus.config import get_focus_cfg

    model = build_model(get_focus_cfg("run/golden.yaml"))
    with caplog.at_level("WARNING"):
        filtered = model.checkpoint_filter_fn(bare)
    res = model.load_state_dict(filtered, strict=False)
    assert not res.unexpected_keys
    assert res.missing_keys and all(k.startswith("selective_mamba.") for k in res.missing_keys)
    lines = [r.getMessage() for r in caplog.records if "selective_mamba" in r.getMessage()]
    assert len(lines) == 1 and "56 selective_mamba" in lines[0]


def test_golden_through_predictor(golden, single_thread):
    """The demo's predictor, built from golden.yaml with MODEL.WEIGHTS = the released-style file: `soft` of each
    golden input equals the official `final.prob` within 1e-4."""
    from focus.config import get_focus_cfg
    from focus.engine.predictor import Predictor

    weights, outputs, _, gdir = golden
    predictor = Predictor(get_focus_cfg("run/golden.yaml", ["MODEL.WEIGHTS", str(weights)]))
    for name in ("img1_512x512", "img2_h233_w411"):
        ref = outputs[name]["final"]["prob"]
        res = predictor(_image(gdir, name))
        assert res["soft"].shape == tuple(ref.shape) and res["mask"].dtype == np.uint8
        diff = np.abs(res["soft"] - ref.numpy()).max()
        assert diff < 1e-4, f"{name}: soft vs final.prob max abs diff {diff}"
        assert np.array_equal(res["mask"], (res["soft"] > 0.5).astype(np.uint8))
