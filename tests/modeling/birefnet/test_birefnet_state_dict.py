"""BiRefNet models built from the released configs have exactly the official state-dict keys, shapes and dtypes."""
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[3]
CASES = [
    ("swin_v1_l.yaml", "state_dict_birefnet_swin_v1_l.json"),
    ("swin_v1_l_hr.yaml", "state_dict_birefnet_swin_v1_l.json"),
    ("swin_v1_t.yaml", "state_dict_birefnet_lite_swin_v1_t.json"),
    ("swin_v1_t_2k.yaml", "state_dict_birefnet_lite_swin_v1_t.json"),
    ("pvt_v2_b2.yaml", "state_dict_birefnet_pvt_v2_b2.json"),
]


def build_meta(config, opts=()):
    """The model of `configs/birefnet/<config>` on the meta device (no memory, no init cost)."""
    from focus.engine.trainer import setup_cfg
    from focus.modeling.birefnet import BiRefNet

    cfg = setup_cfg(str(ROOT / "configs" / "birefnet" / config), ["MODEL.DEVICE", "cpu", *opts])
    with torch.device("meta"):
        return BiRefNet(cfg)


@pytest.mark.parametrize("config,manifest", CASES)
def test_state_dict_matches_manifest(shared_reference, config, manifest):
    entries = json.loads((shared_reference / "birefnet" / manifest).read_text())["entries"]
    sd = build_meta(config).state_dict()
    ours = {k: (list(v.shape), str(v.dtype).replace("torch.", "")) for k, v in sd.items()}
    ref = {e["key"]: (e["shape"], e["dtype"]) for e in entries}
    assert sorted(set(ref) - set(ours)) == []
    assert sorted(set(ours) - set(ref)) == []
    assert {k: v for k, v in ours.items() if ref[k] != v} == {}
    assert list(ours) == [e["key"] for e in entries]  # same order, too (positional converters, docs/birefnet.md#q12)


def test_architecture_does_not_depend_on_batch_size():
    """docs/birefnet.md#q1: a batch size of 1 keeps every BatchNorm."""
    a = build_meta("swin_v1_t.yaml", ["SOLVER.IMS_PER_BATCH", "1"]).state_dict()
    b = build_meta("swin_v1_t.yaml", ["SOLVER.IMS_PER_BATCH", "8"]).state_dict()
    assert list(a) == list(b) and any(".bn_in." in k for k in a)


def test_golden_keys(shared_reference):
    lines = (shared_reference / "birefnet" / "golden_dev" / "keys.txt").read_text().splitlines()
    keys = [ln.split("\t")[0] for ln in lines if ln and not ln.startswith("#")]
    assert list(build_meta("golden.yaml").state_dict()) == keys
