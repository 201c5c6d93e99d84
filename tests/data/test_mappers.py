"""Training mapper (docs/datasets.md#train-mapper, GT of docs/focus.md#targets) and test mapper."""
import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from PIL import Image

from focus import add_focus_config
from focus.data import FocusDatasetMapper, FocusTestMapper, labels_to_instances


def _pair(tmp_path, h, w, box, name="x"):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    y0, y1, x0, x1 = box
    mask[y0:y1, x0:x1] = 200  # soft-ish value above 128 -> foreground
    Image.fromarray(img).save(tmp_path / f"{name}.png")
    Image.fromarray(mask).save(tmp_path / f"{name}_m.png")
    d = {"file_name": str(tmp_path / f"{name}.png"), "sem_seg_file_name": str(tmp_path / f"{name}_m.png"),
         "height": h, "width": w, "image_id": name}
    return d, img, mask


def test_labels_to_instances_hand_computed():
    sem = torch.full((6, 8), 1, dtype=torch.int64)
    sem[1:3, 2:5] = 0
    sem[5, :] = 255
    inst = labels_to_instances(sem)
    assert inst.gt_classes.tolist() == [0, 1]
    assert inst.gt_masks.dtype == torch.bool and inst.gt_masks.shape == (2, 6, 8)
    assert inst.gt_boxes.tensor.tolist() == [[2, 1, 5, 3], [0, 0, 8, 5]]
    only_bg = labels_to_instances(torch.ones((4, 4), dtype=torch.int64))
    assert only_bg.gt_classes.tolist() == [1]


def test_fixed_mode_crops_and_pads(tmp_path):
    d, img, mask = _pair(tmp_path, 20, 40, (2, 10, 30, 38))
    m = FocusDatasetMapper(is_train=True, augmentations=[], size_divisibility=32, size_divisibility_mode="fixed")
    out = m(d)
    assert out["image"].dtype == torch.uint8 and out["image"].shape == (3, 32, 32)
    assert out["sem_seg"].dtype == torch.int64 and out["sem_seg"].shape == (32, 32)
    np.testing.assert_array_equal(out["image"][:, :20].permute(1, 2, 0).numpy(), img[:, :32])
    assert (out["image"][:, 20:] == 128).all()
    assert (out["sem_seg"][20:] == 255).all()
    exp = np.where(mask[:, :32] > 128, 0, 1)
    np.testing.assert_array_equal(out["sem_seg"][:20].numpy(), exp)
    assert out["instances"].gt_boxes.tensor.tolist() == [[30, 2, 32, 10], [0, 0, 32, 20]]
    assert (out["height"], out["width"]) == (20, 40)


def test_divisible_mode_never_crops(tmp_path):
    d, img, _ = _pair(tmp_path, 20, 40, (2, 10, 30, 38))
    m = FocusDatasetMapper(is_train=True, augmentations=[], size_divisibility=32, size_divisibility_mode="divisible")
    out = m(d)
    assert out["image"].shape == (3, 32, 64)
    np.testing.assert_array_equal(out["image"][:, :20, :40].permute(1, 2, 0).numpy(), img)


def test_from_config_full_pipeline(tmp_path):
    d, _, _ = _pair(tmp_path, 90, 120, (20, 60, 30, 90))
    cfg = add_focus_config(get_cfg())
    cfg.INPUT.MIN_SIZE_TRAIN = (64, 80)
    cfg.INPUT.MAX_SIZE_TRAIN = 256
    cfg.INPUT.CROP.ENABLED = True
    cfg.INPUT.CROP.TYPE = "absolute"
    cfg.INPUT.CROP.SIZE = (72, 72)
    cfg.INPUT.COLOR_AUG_SSD = True
    cfg.INPUT.SIZE_DIVISIBILITY = 64
    m = FocusDatasetMapper(cfg, True)
    for _ in range(3):
        out = m(d)
        assert out["image"].shape == (3, 64, 64)
        sem = out["sem_seg"]
        assert set(torch.unique(sem).tolist()) <= {0, 1, 255}
        inst = out["instances"]
        for c, msk in zip(inst.gt_classes, inst.gt_masks):
            assert torch.equal(msk, sem == c)
    with pytest.raises(ValueError):
        FocusDatasetMapper(cfg, False)


def test_size_mismatch_in_mapper_names_both(tmp_path):
    d, _, _ = _pair(tmp_path, 20, 40, (2, 10, 30, 38))
    Image.fromarray(np.zeros((21, 40), np.uint8)).save(d["sem_seg_file_name"])
    m = FocusDatasetMapper(is_train=True, augmentations=[], size_divisibility=32)
    with pytest.raises(ValueError, match=r"x\.png.*x_m\.png"):
        m(d)


def test_test_mapper_resize(tmp_path):
    d, img, _ = _pair(tmp_path, 30, 50, (2, 10, 30, 38))
    cfg = add_focus_config(get_cfg())
    cfg.INPUT.FORMAT = "RGB"
    cfg.INPUT.MIN_SIZE_TEST = 60
    cfg.INPUT.MAX_SIZE_TEST = 2048
    out = FocusTestMapper(cfg)(d)
    assert out["image"].shape == (3, 60, 100)
    assert (out["height"], out["width"]) == (30, 50)
    assert out["sem_seg_file_name"] == d["sem_seg_file_name"] and out["image_id"] == "x"
    exp = np.asarray(Image.fromarray(img).resize((100, 60), Image.BILINEAR))
    np.testing.assert_array_equal(out["image"].permute(1, 2, 0).numpy(), exp)


def _by_hand(img, mask, seed, short_edges, crop, size):
    """The official augmentation order written out: resize (PIL bilinear / nearest labels) -> random crop ->
    SSD colour jitter -> horizontal flip -> fixed padding to `size` (image 128, labels 255)."""
    import random

    import torch.nn.functional as F
    from detectron2.projects.point_rend import ColorAugSSDTransform

    np.random.seed(seed)
    random.seed(seed)
    h, w = mask.shape
    short = np.random.choice(short_edges)
    scale = short / min(h, w)
    newh, neww = int(h * scale + 0.5), int(w * scale + 0.5)
    image = np.asarray(Image.fromarray(img).resize((neww, newh), Image.BILINEAR))
    labels = np.where(mask > 128, 0, 1).astype(np.float64)
    labels = F.interpolate(torch.from_numpy(labels)[None, None], size=(newh, neww), mode="nearest")[0, 0].numpy()
    y0 = np.random.randint(newh - crop + 1)
    x0 = np.random.randint(neww - crop + 1)
    image, labels = image[y0:y0 + crop, x0:x0 + crop], labels[y0:y0 + crop, x0:x0 + crop]
    image = ColorAugSSDTransform(img_format="RGB").apply_image(image.copy())  # python `random` draws
    flipped = np.random.uniform(0.0, 1.0) < 0.5
    if flipped:
        image, labels = image[:, ::-1], labels[:, ::-1]
    out_img = np.full((size, size, 3), 128, np.uint8)
    out_lab = np.full((size, size), 255, np.int64)
    out_img[:crop, :crop], out_lab[:crop, :crop] = image, labels
    return out_img, out_lab, flipped, (short, y0, x0)


def test_augmentation_order_and_values_for_fixed_seeds(tmp_path):
    """Mapper output for fixed seeds equals the official order computed by hand (and not, e.g., a flip before the
    crop): resize, crop, colour, flip, then the fixed 512-style padding. docs/focus.md#t10"""
    import random

    d, img, mask = _pair(tmp_path, 45, 60, (10, 30, 12, 40))
    cfg = add_focus_config(get_cfg())
    cfg.INPUT.MIN_SIZE_TRAIN = (30, 36, 40)
    cfg.INPUT.MAX_SIZE_TRAIN = 1000
    cfg.INPUT.CROP.ENABLED = True
    cfg.INPUT.CROP.TYPE = "absolute"
    cfg.INPUT.CROP.SIZE = (24, 24)
    cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA = 1.0
    cfg.INPUT.COLOR_AUG_SSD = True
    cfg.INPUT.SIZE_DIVISIBILITY = 32
    cfg.INPUT.FORMAT = "RGB"
    mapper = FocusDatasetMapper(cfg, True)
    seen_flips = set()
    for seed in range(6):
        np.random.seed(seed)
        random.seed(seed)
        out = mapper(d)
        exp_img, exp_lab, flipped, params = _by_hand(img, mask, seed, cfg.INPUT.MIN_SIZE_TRAIN, 24, 32)
        seen_flips.add(flipped)
        np.testing.assert_array_equal(out["image"].permute(1, 2, 0).numpy(), exp_img, err_msg=f"seed {seed} {params}")
        np.testing.assert_array_equal(out["sem_seg"].numpy(), exp_lab, err_msg=f"seed {seed} {params}")
        if flipped:  # a flip before the crop would have picked another window
            assert not np.array_equal(out["sem_seg"].numpy()[:24, :24], exp_lab[:24, :24][:, ::-1])
    assert seen_flips == {True, False}
