"""WS-SAM training: the train mapper on weak labels, one optimisation step of the tiny model, the ramp."""
import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from PIL import Image

from focus.data.mappers import MAPPER_REGISTRY
from focus.data.sparse import load_sparse_dataset, make_scribbles
from focus.engine.trainer import setup_cfg

ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]


def make_weak_dataset(root, n=4, size=(72, 96), seed=0):
    """Images with a bright disk, scribbles from the disk, soft pseudo masks, weights, a selection list."""
    rng = np.random.default_rng(seed)
    for d in ("img", "scr", "pl/pseudo", "pl/weights"):
        (root / d).mkdir(parents=True, exist_ok=True)
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    for i in range(n):
        cy, cx, r = rng.integers(20, h - 20), rng.integers(20, w - 20), rng.integers(10, 18)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        img = rng.integers(0, 80, (h, w, 3)).astype(np.uint8)
        img[mask] += 150
        Image.fromarray(img).save(root / "img" / f"im{i}.jpg")
        Image.fromarray(make_scribbles(mask, seed=i)).save(root / "scr" / f"im{i}.png")
        soft = np.clip(mask * 0.9 + 0.05 + rng.normal(0, 0.05, mask.shape), 0, 1)
        Image.fromarray(np.round(soft * 255).astype(np.uint8)).save(root / "pl/pseudo" / f"im{i}.png")
        Image.fromarray(np.full((h, w), 200, np.uint8)).save(root / "pl/weights" / f"im{i}.png")
    (root / "pl/selected.txt").write_text("".join(f"im{i}\n" for i in range(n - 1)))
    return root / "img", root / "scr", root / "pl"


@pytest.fixture(scope="module")
def weak(tmp_path_factory):
    return make_weak_dataset(tmp_path_factory.mktemp("weak"))


def test_train_mapper_outputs(weak):
    cfg = setup_cfg(str(ROOT / "configs/ws_sam/tiny.yaml"))
    mapper = MAPPER_REGISTRY.get(cfg.INPUT.DATASET_MAPPER_NAME)(cfg, True)
    dicts = load_sparse_dataset("t", *weak)
    assert len(dicts) == 3
    np.random.seed(0)
    out = mapper(dicts[0])
    assert out["image"].shape == (3, 128, 128) and out["image"].dtype == torch.uint8
    assert out["sparse"].shape == (128, 128) and set(out["sparse"].unique().tolist()) <= {-1, 0, 1}
    assert out["pseudo"].dtype == torch.float32 and 0 <= out["pseudo"].min() and out["pseudo"].max() <= 1
    assert out["pseudo_weight"].shape == (128, 128)


def test_bicubic_label_rotation_makes_foreground_from_background_scribbles():
    """docs/ws_sam.md#q9: an S-COD background line (2) rotated bicubically grows value-1 pixels on its rim."""
    s = np.zeros((100, 100), np.uint8)
    s[48:51, 15:85] = 2
    rot = np.asarray(Image.fromarray(s).rotate(7, Image.BICUBIC))
    assert (rot == 1).sum() > 20
    assert set(np.unique(np.asarray(Image.fromarray(s).rotate(7, Image.NEAREST)))) == {0, 2}


def test_one_training_step(weak, single_thread):
    cfg = setup_cfg(str(ROOT / "configs/ws_sam/tiny.yaml"), ["MODEL.WS_SAM.PIXEL_WEIGHTING", "entropy"])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    mapper = MAPPER_REGISTRY.get(cfg.INPUT.DATASET_MAPPER_NAME)(cfg, True)
    np.random.seed(1)
    batch = [mapper(d) for d in load_sparse_dataset("t", *weak)[:2]]
    for b in batch:
        del b["pseudo_weight"]  # weights computed from the pseudo masks' entropy
    losses = model(batch)
    assert set(losses) == {"loss_pseudo", "loss_sparse", "loss_ual"}
    assert losses["loss_ual"] > 0  # first call: ramp at iteration 1 of 4 (> 0)
    sum(losses.values()).backward()
    assert model.shared_encoder.conv1.weight.grad.abs().sum() > 0
    assert model.GPM.out[4].weight.grad.abs().sum() > 0


def test_ual_ramp_restarts_every_epoch_as_released():
    cfg = setup_cfg(str(ROOT / "configs/ws_sam/tiny.yaml"))
    model = build_model(cfg)
    ramps = [model._ramp() for _ in range(8)]
    np.testing.assert_allclose(ramps[:4], [(1 - np.cos(np.pi * i / 4)) / 2 for i in (1, 2, 3, 4)])
    assert ramps[4:] == ramps[:4]


@pytest.mark.parametrize("nearest", [False, True])
def test_mapper_label_rotation_quirk_and_fix(tmp_path, nearest):
    from focus.modeling.ws_sam import WSSAMTrainMapper

    Image.fromarray(np.full((100, 100, 3), 90, np.uint8)).save(tmp_path / "a.png")
    s = np.zeros((100, 100), np.uint8)
    s[48:51, 15:85] = 2  # a background line only
    Image.fromarray(s).save(tmp_path / "s.png")
    mapper = WSSAMTrainMapper(True, size=100, crop_border=0, rotate_prob=1.0, label_rotate_nearest=nearest,
                              color_jitter=False, pepper_fraction=0)
    fg = 0
    for seed in range(4):
        np.random.seed(seed)
        fg += int((mapper({"file_name": str(tmp_path / "a.png"), "sparse_file_name": str(tmp_path / "s.png")})
                   ["sparse"] == 1).sum())
    assert (fg == 0) if nearest else (fg > 0)
