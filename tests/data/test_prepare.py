"""datasets/prepare.py: CASIA pairing by stem and PASCAL split, idempotent, raw files untouched."""
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from focus.data import register_builtin_datasets


@pytest.fixture(scope="module")
def prepare(load_tool):
    return load_tool("datasets/prepare.py")


def _save(path, shape, value=0, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full(shape, value, np.uint8)
    arr[: shape[0] // 2] = 200  # soft foreground value: must not be rewritten
    Image.fromarray(arr).save(path)


def _digest(root):
    return {p: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_casia_and_pascal(tmp_path, capsys, prepare):
    c = tmp_path / "CASIA"
    _save(c / "CASIA2.0_revised/Tp/Tp_a.tif", (8, 10, 3))
    _save(c / "CASIA2.0_Groundtruth/Tp_a_gt.png", (8, 10))
    _save(c / "CASIA2.0_revised/Tp/Tp_b.jpg", (8, 10, 3))
    _save(c / "CASIA2.0_Groundtruth/Tp_b_gt.png", (9, 10))  # size mismatch: skipped
    _save(c / "CASIA 1.0 dataset/Modified Tp/Tp/CM/Sp_S_c.jpg", (6, 6, 3))
    _save(c / "CASIA 1.0 groundtruth/CM/Sp_S_c_gt.png", (6, 6))
    _save(c / "CASIA 1.0 dataset/Modified Tp/Tp/Sp/Sp_D_d.jpg", (6, 6, 3))
    _save(c / "CASIA 1.0 groundtruth/Sp/Sp_D_d_gt.png", (6, 6))
    _save(tmp_path / "PASCAL/Imgs/1.jpg", (5, 5, 3))
    _save(tmp_path / "PASCAL/Imgs/1.png", (5, 5))
    raw = _digest(tmp_path)
    mod = prepare
    try:
        for _ in range(2):  # idempotent
            assert mod.main(["casia", "--root", str(tmp_path)]) == 0
            assert mod.main(["pascal", "--root", str(tmp_path)]) == 0
    finally:
        register_builtin_datasets()  # `check` registered the builtin names under tmp_path
    after = _digest(tmp_path)
    assert all(after[p] == h for p, h in raw.items())  # raw files untouched
    assert sorted(p.name for p in (c / "TRAIN/image").iterdir()) == ["Tp_a.tif"]
    assert sorted(p.name for p in (c / "TEST/gt").iterdir()) == ["Sp_D_d_gt.png", "Sp_S_c_gt.png"]
    assert (tmp_path / "PASCAL/img/1.jpg").is_file() and (tmp_path / "PASCAL/gt/1.png").is_file()
    out = capsys.readouterr().out
    assert "casia_val: 2 pairs" in out and "pascal: 1 pairs" in out and "1 skipped for a size mismatch" in out
