"""The released WS-SAM layout: the model of configs/ws_sam/ws_sam_r50.yaml has exactly the manifest's keys
(with the released `module.` prefix), shapes and dtypes, and parameter count."""
import json

import torch
from detectron2.modeling import build_model

from focus.engine.trainer import setup_cfg

ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]


def test_released_manifest(shared_reference):
    manifest = json.loads((shared_reference / "ws_sam" / "state_dict_ws_sam.json").read_text())
    ref = {e["key"]: (tuple(e["shape"]), e["dtype"]) for e in manifest["entries"]}
    cfg = setup_cfg(str(ROOT / "configs/ws_sam/ws_sam_r50.yaml"), ["MODEL.DEVICE", "meta"])
    with torch.device("meta"):
        model = build_model(cfg)
    ours = {"module." + k: (tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in model.state_dict().items()}
    assert not set(ours) - set(ref), sorted(set(ours) - set(ref))[:20]
    assert not set(ref) - set(ours), sorted(set(ref) - set(ours))[:20]
    assert [k for k in ref if ours[k] != ref[k]] == []
    assert sum(p.numel() for p in model.parameters()) == manifest["total_parameters"]
    # the filter maps the released names onto ours unchanged
    assert set(model.checkpoint_filter_fn(dict.fromkeys(ref))) == set(model.state_dict())
