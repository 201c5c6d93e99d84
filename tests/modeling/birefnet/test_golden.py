"""Golden parity: the model built from configs/birefnet/golden.yaml, with the golden weights saved as a bare
released-style `.pth` and loaded through MODEL.WEIGHTS, reproduces the official outputs of golden_dev (its
README): the stride-1 logits and the soft map `final.pred` of the official test script, within 1e-4.

One 1024x1024 forward of this model takes 20-80 s on 2 shared CPU cores, hence `slow`.
"""
import sys

import pytest
import torch

ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]
TOL = 1e-4


def save_golden_weights(shared_reference, path):
    """Expand the recipe and save it as the released files are: a flat fp32 state dict."""
    sys.path.insert(0, str(shared_reference))
    try:
        import golden_weights
    finally:
        sys.path.pop(0)
    sd = golden_weights.expand(str(shared_reference / "birefnet" / "golden_dev" / "recipe.pth"))
    torch.save({k: v.float() if v.is_floating_point() else v for k, v in sd.items()}, path)
    return path


@pytest.fixture(scope="module")
def golden(shared_reference, tmp_path_factory):
    from detectron2.modeling import build_model

    from focus.data.io import read_image
    from focus.engine.trainer import FOCUSTrainer, setup_cfg
    from focus.modeling.birefnet import BiRefNetTestMapper

    weights = save_golden_weights(shared_reference, tmp_path_factory.mktemp("birefnet") / "golden.pth")
    cfg = setup_cfg(str(ROOT / "configs" / "birefnet" / "golden.yaml"), ["MODEL.WEIGHTS", str(weights)])
    model = build_model(cfg).eval()
    FOCUSTrainer.load_weights(cfg, model)
    mapper = BiRefNetTestMapper(cfg, is_train=False)
    gdir = shared_reference / "birefnet" / "golden_dev"
    outputs = torch.load(gdir / "outputs.pth", map_location="cpu", weights_only=False)
    captured = {}
    for k in (4, 3, 2):
        getattr(model.decoder, f"gdt_convs_attn_{k}").register_forward_hook(
            lambda m, i, o, k=k: captured.__setitem__(f"decoder.gdt_convs_attn_{k}", o))
    model.decoder.conv_out1.register_forward_hook(lambda m, i, o: captured.__setitem__("logits", o))
    results = {}
    for name, gold in outputs.items():
        inp = mapper.map_image(read_image(str(gdir / gold["input"]["file"])))
        assert [inp["height"], inp["width"]] == list(gold["input"]["image_hw"])
        with torch.no_grad():
            out = model([inp])[0]
        results[name] = (dict(captured), out, gold)
    return results


@pytest.mark.slow
def test_golden_soft_map_and_logits(golden):
    for name, (captured, out, gold) in golden.items():
        pred = gold["final"]["pred"]
        assert out["foreground"].shape == pred.shape
        assert (out["foreground"] - pred).abs().max().item() <= TOL, name
        assert torch.equal(out["mask"], out["foreground"] > 0.5)
        assert (captured["logits"][:, :, ::2, ::2] - gold["logits"]).abs().max().item() <= TOL, name
        for key, ref in gold["intermediate"].items():
            assert (captured[key] - ref).abs().max().item() <= TOL, (name, key)
        png = (out["foreground"] * 255).to(torch.uint8)  # the official PNG: truncation (docs/birefnet.md#q10)
        assert (png.int() - gold["final"]["png_uint8"].int()).abs().max().item() <= 1
