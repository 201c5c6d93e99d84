"""Every folder of ../shared/data loads as a registered folder dataset and evaluates (both protocols; DIS5K also
under ``dis``, the DAVIS sample under ``vos``)."""
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog

from focus.data import ensure_registered
from focus.evaluation import DIS_METRICS, VOS_METRICS, FocusEvaluator

pytestmark = pytest.mark.filterwarnings("ignore:This class will be removed")
FOLDERS = ["sod/ECSSD-half", "fd/CASIA2-sample", "dbd/CUHK-sample", "sd/SBU-sample", "sd/ISTD-sample",
           "cod/CAMO-test-sample", "dis/DIS5K-sample", "vos"]


def gaussian_prior(h, w):
    """Centred Gaussian 'saliency' prior (σ = a quarter of each side), float32 in [0, 1]."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.exp(-(((yy - h / 2) / (h / 4)) ** 2 + ((xx - w / 2) / (w / 4)) ** 2) / 2).astype(np.float32)


def _evaluate(name, dicts, tmp_path, protocol="both"):
    ev = FocusEvaluator(name, output_dir=str(tmp_path), protocol=protocol)
    ev.reset()
    for d in dicts:
        fg = gaussian_prior(d["height"], d["width"])
        ev.process([d], [{"foreground": torch.from_numpy(fg), "mask": torch.from_numpy(fg > 0.5)}])
    return ev.evaluate()[name]


def _name(shared_data, folder):
    root = shared_data / folder
    if folder == "vos":
        return ensure_registered(f"folder:vos:{root / 'DAVIS2016-sample'}")
    return ensure_registered(f"folder:{folder.split('/')[0]}:{root / 'images'}:{root / 'masks'}")


@pytest.mark.parametrize("folder", FOLDERS)
def test_folder_evaluates(shared_data, tmp_path, folder):
    name = _name(shared_data, folder)
    dicts = DatasetCatalog.get(name)
    if folder == "dis/DIS5K-sample":
        dicts = [min(dicts, key=lambda d: d["height"] * d["width"])]  # 1558x1145; the others are slow
    res = _evaluate(name, dicts[::max(1, len(dicts) // 4)][:4], tmp_path)
    assert all(np.isfinite(v) for k, v in res.items() if k not in ("AUC", "focus/BER", "focus/AUC"))
    assert 0 <= res["Smeasure"] <= 1 and 0 <= res["focus/MAE"] <= 1


@pytest.mark.slow
@pytest.mark.parametrize("folder", FOLDERS)
def test_folder_evaluates_every_image(shared_data, tmp_path, folder):
    name = _name(shared_data, folder)
    res = _evaluate(name, DatasetCatalog.get(name), tmp_path)
    assert all(np.isfinite(v) for k, v in res.items() if k not in ("AUC", "focus/BER", "focus/AUC"))


def test_dis_and_vos_protocols_on_real_data(shared_data, tmp_path):
    name = _name(shared_data, "dis/DIS5K-sample")
    res = _evaluate(name, [min(DatasetCatalog.get(name), key=lambda d: d["height"] * d["width"])], tmp_path, "dis")
    assert list(res) == list(DIS_METRICS) and res["HCE"] >= 1 and 0 < res["mBA"] < 1
    name = _name(shared_data, "vos")
    dicts = [d for d in DatasetCatalog.get(name) if d["sequence"] == "car-shadow"][:6]
    res = _evaluate(name, dicts, tmp_path, "vos")
    assert list(res)[:7] == list(VOS_METRICS) and all(np.isfinite(v) for v in res.values())
