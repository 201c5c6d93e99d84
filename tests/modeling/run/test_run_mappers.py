"""RUN's mappers: the official squash resize at test time and the training sample layout."""
import numpy as np
import pytest
import torch
from PIL import Image


def _cfg(*opts):
    from focus.config import get_focus_cfg

    return get_focus_cfg("run/tiny.yaml", list(opts))


def test_test_mapper_is_torchvision_resize_on_pil():
    from focus.data.mappers import build_mapper

    img = np.random.default_rng(0).integers(0, 256, (233, 411, 3), dtype=np.uint8)
    out = build_mapper(_cfg(), is_train=False).map_image(img, flow=1)
    expected = np.asarray(Image.fromarray(img).resize((384, 384), Image.BILINEAR)).transpose(2, 0, 1)
    assert out["image"].dtype == torch.uint8 and np.array_equal(out["image"].numpy(), expected)
    assert (out["height"], out["width"], out["flow"]) == (233, 411, 1)


def test_train_mapper_sample(tmp_path):
    import random

    from focus.data.mappers import build_mapper

    img = np.random.default_rng(1).integers(0, 256, (120, 90, 3), dtype=np.uint8)
    mask = np.zeros((120, 90), np.uint8)
    mask[30:90, 20:70] = 255
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(mask).save(tmp_path / "a_gt.png")
    random.seed(0)
    np.random.seed(0)
    out = build_mapper(_cfg(), is_train=True)({"file_name": str(tmp_path / "a.png"),
                                                "sem_seg_file_name": str(tmp_path / "a_gt.png")})
    assert out["image"].shape == (3, 384, 384) and out["image"].dtype == torch.uint8
    assert out["gt"].shape == (1, 384, 384) and 0 <= out["gt"].min() and out["gt"].max() <= 1
    assert set(torch.unique(out["edge"]).tolist()) <= {0.0, 1.0} and out["edge"].sum() > 0
    # the edge target lies on the object boundary
    inner = torch.nn.functional.max_pool2d(1 - out["gt"].round(), 41, 1, 20) == 0  # >= 20 px inside
    assert (out["edge"] * inner).sum() < 0.1 * out["edge"].sum()  # only salt-and-pepper noise
    assert (out["height"], out["width"]) == (120, 90)


def test_bad_scan_backend_names_key():
    from detectron2.modeling import build_model

    with pytest.raises(ValueError, match="MODEL.RUN.SCAN_BACKEND"):
        build_model(_cfg("MODEL.RUN.SCAN_BACKEND", "cuda_kernel"))
