"""State-dict layout: our model has exactly the official keys, shapes and dtypes.

Full-size L/G models are built on the meta device (no memory, no init cost) with CLIP enabled and compared with
shared/reference/state_dict_focus_dinov2_{large,giant}.json; the golden-size model (built for real) is compared
with golden_dev/keys.txt with CLIP enabled (all keys) and disabled (all stored keys minus clip_refiner.*).
"""
import functools
import json

import open_clip
import pytest
import torch
from detectron2.modeling import build_model

import focus
from focus.config import get_focus_cfg

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]
CLIP_PREFIX = "sem_seg_head.predictor.clip_refiner."


def _keys(sd):
    return {k: (tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in sd.items()}


def _compare(ours, ref):
    assert not set(ours) - set(ref), f"keys not in the official model: {sorted(set(ours) - set(ref))[:20]}"
    assert not set(ref) - set(ours), f"official keys we lack: {sorted(set(ref) - set(ours))[:20]}"
    wrong = [(k, ours[k], ref[k]) for k in ref if ours[k] != ref[k]]
    assert not wrong, f"shape/dtype differences (ours, official): {wrong[:20]}"


def _build_on_meta(config, monkeypatch, clip):
    # open_clip moves the CLIP tower to "cpu" unless told otherwise; keep it on the meta device
    monkeypatch.setattr(open_clip, "create_model", functools.partial(open_clip.create_model, device="meta"))
    cfg = get_focus_cfg(ROOT / config, ["MODEL.CLIP_REFINER.ENABLED", clip, "MODEL.CLIP_REFINER.WEIGHTS", "",
                                        "MODEL.DEVICE", "meta", "MODEL.WEIGHTS", ""])
    with torch.device("meta"):
        return build_model(cfg)


@pytest.mark.parametrize("size", ["large", "giant"])
def test_full_size_state_dict_on_meta(size, shared_reference, monkeypatch):
    model = _build_on_meta(f"configs/cod/focus_dinov2_{size}.yaml", monkeypatch, clip=True)
    ref = json.loads((shared_reference / f"state_dict_focus_dinov2_{size}.json").read_text())
    _compare(_keys(model.state_dict()), {e["key"]: (tuple(e["shape"]), e["dtype"]) for e in ref["entries"]})
    non_persistent = set(dict(model.named_buffers())) - set(model.state_dict())
    # the CLIP text causal mask is a plain attribute officially, a non-persistent buffer in open_clip
    assert {k for k in non_persistent if not k.startswith(CLIP_PREFIX)} == {"pixel_mean", "pixel_std"}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    ref_trainable = {e["key"] for e in ref["entries"] if e["kind"] == "parameter" and e["requires_grad"]}
    assert trainable == ref_trainable
    assert sum(p.numel() for p in model.parameters()) == ref["total_parameters"]


def _golden_keys(shared_reference):
    ref, stored = {}, set()
    for line in (shared_reference / "golden_dev/keys.txt").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape, dtype, is_stored = line.split("\t")
        ref[key] = (tuple(json.loads(shape)), dtype)
        if is_stored == "yes":
            stored.add(key)
    return ref, stored


@pytest.mark.parametrize("clip", [False, True])
def test_golden_size_keys(clip, shared_reference, monkeypatch):
    ref, stored = _golden_keys(shared_reference)
    assert len(ref) == 1020
    model = _build_on_meta("configs/tiny/focus_golden.yaml", monkeypatch, clip=clip)
    ours = _keys(model.state_dict())
    if clip:
        _compare(ours, ref)
    else:
        _compare(ours, {k: v for k, v in ref.items() if k in stored and not k.startswith(CLIP_PREFIX)})


@pytest.mark.parametrize("task", ["sod", "cod", "sd", "dbd", "fd"])
@pytest.mark.parametrize("size", ["large", "giant"])
def test_every_shipped_config_builds(task, size, monkeypatch):
    """Each task/size leaf builds its full model (on the meta device, CLIP as shipped) with its task settings."""
    model = _build_on_meta(f"configs/{task}/focus_dinov2_{size}.yaml", monkeypatch, clip=True)
    assert model.backbone.embed_dim == {"large": 1024, "giant": 1536}[size]
    clip_weight = model.criterion.weight_dict["loss_clip"]
    assert clip_weight == (0.01 if task == "fd" else 1.0)
    prompts = model.sem_seg_head.predictor.clip_refiner.prompts
    assert {"sd": "shadow", "fd": "forgery"}.get(task, "salient objects") in prompts[0]


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs" / "tiny").glob("*.yaml")))
def test_tiny_configs_build_on_cpu(name):
    cfg = get_focus_cfg(f"tiny/{name}", ["MODEL.CLIP_REFINER.ENABLED", "False"])
    model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0
