"""Golden parity: the model built from configs/birefnet/golden.yaml, with the golden weights saved as a bare
released-style `.pth` and loaded through MODEL.WEIGHTS, reproduces the official outputs of golden_dev (its
README): the soft map `final.pred` of the official test script, the stride-1 logits and the gradient-attention
logits, within 1e-4, through `Predictor` (the engine of tools/demo.py). The official stride-1 path itself is
compared with our default fused one in test_birefnet_components.py.

Part of the default run: it is what says released BiRefNet checkpoints give the official outputs.
"""

import numpy as np
import pytest
import torch

ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]
TOL = 1e-4


@pytest.fixture(scope="module")
def golden(shared_reference, golden_weights_file):
    """Each golden input through `Predictor` (the engine of tools/demo.py) built from golden.yaml with MODEL.WEIGHTS
    = the golden weights as a released-style file; intermediates captured by hooks on the wrapped model."""
    from focus.data.io import read_image
    from focus.engine.predictor import Predictor
    from focus.engine.trainer import setup_cfg

    weights = golden_weights_file("birefnet")
    cfg = setup_cfg(str(ROOT / "configs" / "birefnet" / "golden.yaml"), ["MODEL.WEIGHTS", str(weights)])
    predictor = Predictor(cfg)
    model = predictor.model.model
    gdir = shared_reference / "birefnet" / "golden_dev"
    outputs = torch.load(gdir / "outputs.pth", map_location="cpu", weights_only=False)
    captured = {}
    for k in (4, 3, 2):
        getattr(model.decoder, f"gdt_convs_attn_{k}").register_forward_hook(
            lambda m, i, o, k=k: captured.__setitem__(f"decoder.gdt_convs_attn_{k}", o.clone()))
    model.decoder.register_forward_hook(lambda m, i, o: captured.__setitem__("logits", o[-1].clone()))
    results = {}
    for name, gold in outputs.items():
        image = read_image(str(gdir / gold["input"]["file"]))
        assert list(image.shape[:2]) == list(gold["input"]["image_hw"])
        results[name] = (predictor(image), dict(captured), gold)
    return results


def test_golden_soft_map_through_the_predictor(golden):
    for name, (out, captured, gold) in golden.items():
        pred = gold["final"]["pred"].numpy()
        assert out["soft"].shape == pred.shape and out["soft"].dtype == np.float32
        assert np.abs(out["soft"] - pred).max() <= TOL, name
        assert np.array_equal(out["mask"], (out["soft"] > 0.5).astype(np.uint8))
        assert (captured["logits"][:, :, ::2, ::2] - gold["logits"]).abs().max().item() <= TOL, name
        for key, ref in gold["intermediate"].items():  # gradient-attention logits at strides 32, 16, 8
            assert (captured[key] - ref).abs().max().item() <= TOL, (name, key)
        png = (out["soft"] * 255).astype(np.uint8)  # the official PNG: truncation (docs/birefnet.md#q10)
        assert np.abs(png.astype(int) - gold["final"]["png_uint8"].numpy().astype(int)).max() <= 1
