"""Synthetic data: deterministic, every task family, on-disk layout usable as registered datasets."""
import numpy as np
import pytest
from detectron2.data import DatasetCatalog

from focus.data import register_builtin_datasets
from focus.data.io import read_image, read_mask
from focus.data.synthetic import SYNTHETIC_TASKS, generate_dataset, generate_pair


@pytest.mark.parametrize("task", SYNTHETIC_TASKS)
def test_pairs_are_deterministic_and_varied(task):
    a_img, a_mask = generate_pair(task, seed=3, size=(96, 128), index=0)
    b_img, b_mask = generate_pair(task, seed=3, size=(96, 128), index=0)
    assert a_img.shape == (96, 128, 3) and a_img.dtype == np.uint8
    assert a_mask.shape == (96, 128) and set(np.unique(a_mask)) <= {0, 255}
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_mask, b_mask)
    fractions = []
    for i in range(6):
        img, mask = generate_pair(task, seed=3, size=(96, 128), index=i)
        frac = (mask > 0).mean()
        assert 0.002 < frac < 0.95, (task, i, frac)
        fractions.append(frac)
    assert np.std(fractions) > 0.005  # position/scale vary


def test_foreground_cue_is_present():
    """The cue differs between foreground and background (mean colour for sod, darkness for sd)."""
    img, mask = generate_pair("sod", seed=0, size=128, index=1)
    fg, bg = img[mask > 0].mean(0), img[mask == 0].mean(0)
    assert np.abs(fg - bg).max() > 30
    img, mask = generate_pair("sd", seed=0, size=128, index=2)
    assert img[mask > 0].mean() < img[mask == 0].mean()


def test_generate_dataset_layout_and_registration(tmp_path):
    generate_dataset(tmp_path / "synthetic", "dbd", n_train=3, n_test=2, size=64, seed=1)
    generate_dataset(tmp_path / "synthetic", "fd", n_train=1, n_test=1, size=64, seed=1)
    assert len(list((tmp_path / "synthetic/dbd/train/images").glob("*.jpg"))) == 3
    assert len(list((tmp_path / "synthetic/fd/test/images").glob("*.png"))) == 1
    register_builtin_datasets(root=tmp_path)
    try:
        dicts = DatasetCatalog.get("synthetic_dbd_test")
        assert len(dicts) == 2 and (dicts[0]["height"], dicts[0]["width"]) == (64, 64)
        assert read_image(dicts[0]["file_name"]).shape == (64, 64, 3)
        assert read_mask(dicts[0]["sem_seg_file_name"]).shape == (64, 64)
    finally:
        register_builtin_datasets()
