"""The model built from configs/fsnet/fsnet.yaml has exactly the released snapshot's keys, shapes and dtypes."""
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[3]


def test_released_manifest(shared_reference):
    from detectron2.modeling import META_ARCH_REGISTRY

    from focus.engine.trainer import setup_cfg

    manifest = json.loads((shared_reference / "fsnet" / "state_dict_fsnet.json").read_text())
    cfg = setup_cfg(str(ROOT / "configs/fsnet/fsnet.yaml"), ["MODEL.DEVICE", "cpu"])
    with torch.device("meta"):  # shapes and dtypes only: no 400 MB allocation
        model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
    sd = model.state_dict()
    entries = manifest["entries"]
    assert len(entries) == manifest["num_state_dict_keys"] == 2160
    assert list(sd) == [e["key"] for e in entries]
    for e in entries:
        t = sd[e["key"]]
        assert list(t.shape) == e["shape"], e["key"]
        assert str(t.dtype).replace("torch.", "") == e["dtype"], e["key"]
    params = dict(model.named_parameters())
    assert sum(p.numel() for p in params.values()) == manifest["total_parameters"]
    for e in entries:
        assert (e["key"] in params) == (e["kind"] == "parameter"), e["key"]
    assert manifest["released_file_key_prefix"] == "module."
    released = {"module." + k: None for k in sd}
    assert set(model.checkpoint_filter_fn(released)) == set(sd)
