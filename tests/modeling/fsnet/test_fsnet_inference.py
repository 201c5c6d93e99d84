"""FSNet under prepare_for_inference in bf16: BPM weights stay fp32 (docs/fsnet.md#q7), outputs keep the contract."""
import copy

import numpy as np
import torch

from focus.modeling.inference import prepare_for_inference


def test_bf16_autocast_keeps_bpms_fp32(load_cfg, single_thread):
    from focus.data.mappers import build_mapper
    from focus.engine.trainer import Trainer

    cfg = load_cfg("fsnet/tiny.yaml", "INPUT.FSNET.SIZE", 64, "MODEL.FSNET.MINMAX_NORMALIZE", False)
    torch.manual_seed(0)
    model = Trainer.build_model(cfg).eval()
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    flow = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    inputs = [build_mapper(cfg, False).map_image(frame, flow=flow)]
    with torch.inference_mode():
        ref = model(inputs)[0]
    prepared = prepare_for_inference(copy.deepcopy(model), dtype="bf16", cast="autocast", pack=False)
    inner = prepared.model
    assert inner.bpm1.conv_f5[0].conv_bn[0].weight.dtype == torch.float32
    assert inner.resnet.layer1_rgb[0].conv1.weight.dtype == torch.bfloat16
    out = prepared(inputs)[0]
    assert out["foreground"].dtype == torch.float32 and out["foreground"].shape == (40, 50)
    assert out["mask"].dtype == torch.bool and torch.isfinite(out["foreground"]).all()
    assert (out["foreground"] - ref["foreground"]).abs().max() < 0.05  # sigmoid maps (min-max would amplify)
