"""`D2DINOV2` against the official golden case (docs/focus.md#golden) and the official state-dict layout."""
import json
from pathlib import Path

import cv2
import pytest
import torch
from detectron2.modeling import build_backbone

from focus.config import get_focus_cfg

ROOT = Path(__file__).resolve().parents[3]
# the golden case: overrides of the official large COD config (docs/focus.md#golden)
GOLDEN_OPTS = [
    "MODEL.DINOV2.EMBED_DIM", "192", "MODEL.DINOV2.NUM_HEADS", "3", "MODEL.DINOV2.DEPTH", "4",
    "MODEL.DINOV2.DEFORM_NUM_HEADS", "3", "MODEL.DINOV2.INTERACTION_INDEXES", "[[0,0],[1,1],[2,2],[3,3]]",
    "MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu",
]


def _cfg(path, opts=()):
    return get_focus_cfg(path, opts)


def _config_path(which, reference):
    if which == "focus":
        path = ROOT / "configs" / "cod" / "focus_dinov2_large.yaml"
        if not path.is_file():
            pytest.skip(f"{path} not present")
        return path
    return reference / "official_configs" / "cod_dinov2_large.yaml"


@pytest.fixture(scope="module")
def golden(shared_reference):
    d = shared_reference / "golden_dev"
    sd = torch.load(d / "weights_fp16.pth", map_location="cpu")["model"]
    weights = {
        k[len("backbone."):]: v.float() if v.is_floating_point() else v
        for k, v in sd.items()
        if k.startswith("backbone.")
    }
    outputs = torch.load(d / "outputs.pth", map_location="cpu", weights_only=False)
    return d, weights, outputs


def _golden_input(path, cfg):
    """Golden input: float32 RGB 0..255 (3, h, w); then the meta-arch normalises and zero-pads to /32
    (docs/focus.md#inference)."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1].copy()
    x = torch.from_numpy(img).permute(2, 0, 1).float()
    x = (x - torch.tensor(cfg.MODEL.PIXEL_MEAN).view(3, 1, 1)) / torch.tensor(cfg.MODEL.PIXEL_STD).view(3, 1, 1)
    h, w = x.shape[1:]
    padded = x.new_zeros(3, (h + 31) // 32 * 32, (w + 31) // 32 * 32)
    padded[:, :h, :w] = x
    return padded[None]


def test_focus_and_official_configs_build_the_same_backbone(shared_reference):
    """Both YAMLs (ours and the official one) give identical constructor arguments under the golden overrides."""
    from focus.modeling.backbone import D2DINOV2

    args = [
        D2DINOV2.from_config(_cfg(_config_path(which, shared_reference), GOLDEN_OPTS), None)
        for which in ("focus", "official")
    ]
    assert args[0] == args[1]


def test_golden_backbone_features(golden, shared_reference):
    d, weights, outputs = golden
    path = ROOT / "configs" / "cod" / "focus_dinov2_large.yaml"
    cfg = _cfg(path if path.is_file() else _config_path("official", shared_reference), GOLDEN_OPTS)
    with torch.device("meta"):  # every tensor is overwritten by the strict load: skip the random init
        backbone = build_backbone(cfg)
    backbone.to_empty(device="cpu")
    assert backbone.load_state_dict(weights, strict=True)
    backbone.eval()
    compared = 0
    for name, case in outputs.items():
        if not isinstance(case, dict) or "backbone_features" not in case:
            continue
        with torch.no_grad():
            feats = backbone(_golden_input(d / case["input"]["file"], cfg))
        for level, ref in case["backbone_features"].items():
            if not torch.is_tensor(ref):
                continue
            assert feats[level].shape == ref.shape, (name, level)
            err = (feats[level] - ref).abs().max().item()
            assert err <= 1e-4 * max(1.0, ref.abs().max().item()), (name, level, err)
            compared += 1
    assert compared == 7  # res2..res5 of img1, res3..res5 of img3


def _official_backbone_entries(path):
    entries = json.loads(Path(path).read_text())["entries"]
    return {
        e["key"][len("backbone."):]: (tuple(e["shape"]), e["dtype"])
        for e in entries
        if e["key"].startswith("backbone.")
    }


def _meta_backbone_entries(cfg):
    with torch.device("meta"):
        backbone = build_backbone(cfg)
    return {k: (tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in backbone.state_dict().items()}


@pytest.mark.parametrize("size", ["large", pytest.param("giant", marks=pytest.mark.slow)])
def test_backbone_keys_match_official(size, shared_reference):
    path = ROOT / "configs" / "cod" / f"focus_dinov2_{size}.yaml"
    if not path.is_file():
        path = shared_reference / "official_configs" / f"cod_dinov2_{size}.yaml"
    ours = _meta_backbone_entries(_cfg(path))
    official = _official_backbone_entries(shared_reference / f"state_dict_focus_dinov2_{size}.json")
    assert len(official) == {"large": 861, "giant": 1085}[size]  # docs/focus.md#state-dict
    assert sorted(set(official) - set(ours)) == [] and sorted(set(ours) - set(official)) == []
    assert {k: v for k, v in ours.items() if official[k] != v} == {}


def test_golden_keys_match(shared_reference):
    """The golden-size model has exactly the keys/shapes of golden_dev/keys.txt under `backbone.`."""
    official = {}
    for line in (shared_reference / "golden_dev" / "keys.txt").read_text().splitlines():
        if line.startswith("backbone."):
            key, shape, dtype, _ = line.split("\t")
            official[key[len("backbone."):]] = (tuple(json.loads(shape)), dtype)
    path = shared_reference / "official_configs" / "cod_dinov2_large.yaml"
    assert _meta_backbone_entries(_cfg(path, GOLDEN_OPTS)) == official
