"""The ``dis`` protocol: BiRefNet's DIS5K metric suite against the official evaluation's numbers, HCE by hand,
and the evaluator / folder paths agreeing."""
import json

import cv2
import numpy as np
import pytest
import torch

from focus.data import register_folder_dataset
from focus.evaluation import FocusEvaluator, score_folder
from focus.evaluation.metrics import DIS_METRICS, aggregate, boundary_accuracy, dis_image_metrics, hce

pytestmark = pytest.mark.filterwarnings("ignore:This class will be removed")

CURVES = {"em_curve": "Em", "fm_curve": "Fm", "biou_curve": "BIoU"}
# the smallest golden image (1145x1558), scored per image in the default run with the two variants that exercise
# HCE on removed thin parts + an added blob, and the resize of a half-resolution soft map; the slow test does all
SMALL = "1#Accessories#1#Bag#3292738108_c51336a8be_o"


@pytest.fixture(scope="module")
def golden(shared_reference):
    root = shared_reference / "birefnet" / "eval_golden"
    if not (root / "metrics.json").is_file():
        pytest.skip(f"{root} has no metrics.json")
    return root, json.loads((root / "metrics.json").read_text())


def _read_pair(root, variant, stem):
    """As the official script: grey reads, prediction resized to the GT size with cv2 bilinear."""
    gt = cv2.imread(str(root / "gt" / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)
    pred = cv2.imread(str(root / "preds" / variant / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)
    if pred.shape != gt.shape:
        pred = cv2.resize(pred, (gt.shape[1], gt.shape[0]))
    return pred, gt


def _check_image(rec, ref, where):
    for k in DIS_METRICS:
        if k == "HCE":
            assert rec[k] == ref[k], where
        else:
            assert abs(rec[k] - ref[k]) <= 1e-6, (where, k, rec[k], ref[k])


@pytest.mark.parametrize("variant", ["p2_dropthin_fpblob", "p3_soft_halfres"])
def test_small_image_equals_official(golden, variant):
    root, ref = golden
    pred, gt = _read_pair(root, variant, SMALL)
    rec = dis_image_metrics(pred, gt)
    _check_image(rec, ref["per_image"][variant][SMALL], (variant, SMALL))
    assert rec["HCE"] == ref["dis_original_hce_per_image"][variant][SMALL]["HCE"]  # the DIS authors' own code


@pytest.mark.slow
def test_every_image_and_dataset_values_equal_official(golden, tmp_path):
    """All 4 variants x 3 images (up to 2748x2658, ~1 min of HCE) per image, and the dataset rows through
    `score_folder` (which resizes the half-resolution variant like the official script)."""
    root, ref = golden
    for variant, dataset_ref in ref["per_variant_dataset"].items():
        res = score_folder(root / "preds" / variant, root / "gt", protocol="dis")
        assert list(res["metrics"]) == list(DIS_METRICS)
        for stem, r in ref["per_image"][variant].items():
            _check_image(res["per_image"][stem], r, (variant, stem))
        for k in DIS_METRICS:
            assert abs(res["metrics"][k] - dataset_ref[k]) <= 1e-6, (variant, k)
        assert res["resized"] == (sorted(ref["per_image"][variant]) if variant == "p3_soft_halfres" else [])


def test_dataset_values_from_averaged_curves():
    """maxFm/meanFm/maxEm/meanEm/maxBIoU/meanBIoU come from the image-averaged curve, not per-image maxima
    (the official aggregation); HCE and the other scalars are plain means."""
    rng = np.random.default_rng(0)
    recs = []
    for i in range(3):
        gt = np.zeros((60, 80), np.uint8)
        cv2.circle(gt, (30 + 5 * i, 30), 12 + 3 * i, 255, -1)
        soft = cv2.GaussianBlur(gt, (0, 0), 1 + i).astype(np.float64) + rng.normal(0, 20 * i, gt.shape)
        recs.append(dis_image_metrics(np.clip(soft, 0, 255).astype(np.uint8), gt))
    agg = aggregate(recs, "dis")
    for name, key in (("maxFm", "fm_curve"), ("maxEm", "em_curve"), ("maxBIoU", "biou_curve")):
        curve = np.mean([r[key] for r in recs], axis=0)
        assert agg[name] == pytest.approx(curve.max(), abs=1e-15)
        assert agg[name] <= np.mean([r[name] for r in recs]) + 1e-15
    assert agg["HCE"] == pytest.approx(np.mean([r["HCE"] for r in recs]))


def _square(mask, top, left, size):
    mask[top:top + size, left:left + size] = True
    return mask


def test_hce_blob_added_by_hand():
    """A false-positive blob far from the object.

    The union of GT and prediction is eroded 5 times with the 3x3 cross (``relax`` = 5): a k x k square loses
    5 pixels on each side, so it survives only if k >= 11. The surviving core is dilated back 5 times inside
    the background and intersected with the blob: that is the relaxed FP. Its boundary never touches the
    "needs correction" condition (the dilated TP | FN_, all far away), so no polygon point is counted and the
    blob is one independent region: HCE = 0 + 1 (FP) + 0 + 0 (FN: the GT is fully covered, and so is its
    skeleton). A 10 x 10 blob is eroded away entirely: HCE = 0 (the relaxation forgives it).
    """
    gt = _square(np.zeros((120, 120), bool), 20, 20, 30)
    for size, expected in ((11, 1), (20, 1), (10, 0)):
        pred = _square(gt.copy(), 80, 80, size)
        assert hce(pred, gt) == expected, size
    pred = _square(_square(gt.copy(), 80, 80, 20), 80, 10, 15)  # two separate blobs: two regions
    assert hce(pred, gt) == 2


def test_hce_thin_structure_missed_by_hand():
    """A 1-pixel-wide, 25-pixel-long vertical line sticking out of a square, missed by the prediction.

    The missed line (FN) is thinner than the relaxation, so the eroded union removes it: the relaxed FN is
    empty. But FN also keeps the GT skeleton pixels not covered by TP, and the skeleton of a 1-pixel line is the
    line itself: FN_ = the 25 line pixels. Its contour (OpenCV starts at the top end) runs down the line and back
    up; every point touches the dilated background (condition), the way back is already visited, so there is
    one boundary segment: the straight run of 25 points, which Douglas-Peucker (epsilon 2) reduces to its 2
    end points. The region had points to correct, so it is not independent; no FP. HCE = 2.
    A second missed line (horizontal, to the right) adds another 2. The pure-pixel error is the same size
    as a blob's, but the thin structure costs more clicks, which is the point of HCE.
    """
    square = _square(np.zeros((120, 120), bool), 50, 30, 30)
    gt = square.copy()
    gt[25:50, 45] = True  # line above the square, attached to its top edge
    assert hce(square, gt) == 2
    gt[65, 60:90] = True  # second line to the right of the square
    assert hce(square, gt) == 4
    assert hce(gt, gt) == 0


def test_hce_on_raw_map_not_normalised():
    """HCE and mBA threshold the raw 8-bit map at 128 (docs/evaluation.md#dis-raw): a map squeezed into
    [90, 150] is mostly background for them, while the min-max normalised metrics see it stretched."""
    gt = np.zeros((64, 64), np.uint8)
    gt[16:48, 16:48] = 255
    pred = np.where(gt > 0, 120, 90).astype(np.uint8)  # every value <= 128: empty for HCE and mBA
    rec = dis_image_metrics(pred, gt)
    assert rec["HCE"] == hce(np.zeros_like(gt, bool), gt > 128)
    assert rec["mBA"] == pytest.approx(boundary_accuracy(np.zeros_like(gt, bool), gt > 128))
    assert rec["MAE"] == 0.0 and rec["maxFm"] == pytest.approx(1.0)  # normalised: a perfect map


def test_boundary_accuracy_by_hand():
    """64x64 image: (W + H)/300 < 1, so every radius is 1 and the band is the 3x3-ellipse (a cross) gradient
    of the GT: the 2-pixel ring across its edge. An empty prediction is right on the outer half of it."""
    gt = _square(np.zeros((64, 64), bool), 16, 16, 32)
    band = cv2.morphologyEx(gt.astype(np.uint8), cv2.MORPH_GRADIENT, np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]],
                                                                               np.uint8)) > 0
    assert band.sum() == (4 * 32 - 4) + 4 * 32  # inner ring 124 + outer ring 128 (the cross skips the corners)
    assert boundary_accuracy(np.zeros_like(gt), gt) == pytest.approx(128 / 252)
    assert boundary_accuracy(gt, gt) == 1.0
    assert np.isnan(boundary_accuracy(gt, np.zeros_like(gt)))  # no GT boundary: undefined, left out of means


@pytest.fixture()
def dis_dataset(tmp_path):
    rng = np.random.default_rng(1)
    for d in ("im", "gt", "pred"):
        (tmp_path / d).mkdir()
    for i in range(3):
        gt = np.zeros((70 + 5 * i, 90), np.uint8)
        cv2.circle(gt, (40 + i, 35), 18, 255, -1)
        gt[5:30, 70 + i] = 255  # a thin part
        soft = np.clip(cv2.GaussianBlur(gt.astype(np.float32), (0, 0), 2) / 255 + rng.normal(0, 0.05, gt.shape), 0, 1)
        cv2.imwrite(str(tmp_path / "im" / f"d{i}.jpg"), np.zeros(gt.shape + (3,), np.uint8))
        cv2.imwrite(str(tmp_path / "gt" / f"d{i}.png"), gt)
        np.save(tmp_path / f"soft{i}.npy", soft.astype(np.float32))
        cv2.imwrite(str(tmp_path / "pred" / f"d{i}.png"), np.round(soft * 255).astype(np.uint8))
    return register_folder_dataset("dis_eval_test", tmp_path / "im", tmp_path / "gt", "dis", overwrite=True), tmp_path


def test_evaluator_dis_equals_folder(dis_dataset):
    """`train_net --eval-only` path (the evaluator on model outputs) == `evaluate_folder --protocol dis` on the
    8-bit PNGs the demo writes; the evaluator reads `foreground` only."""
    from detectron2.data import DatasetCatalog

    name, tmp = dis_dataset
    ev = FocusEvaluator(name, output_dir=str(tmp / "out"), protocol="dis")
    ev.reset()
    for i, d in enumerate(DatasetCatalog.get(name)):
        ev.process([d], [{"foreground": torch.from_numpy(np.load(tmp / f"soft{i}.npy"))}])
    res = ev.evaluate()[name]
    ref = score_folder(tmp / "pred", tmp / "gt", protocol="dis")
    assert list(res) == list(DIS_METRICS)
    for k in DIS_METRICS:
        assert res[k] == ref["metrics"][k], k
    js = json.loads((tmp / "out" / "dis_eval_test_dis.json").read_text())
    assert js["protocol"] == "dis" and list(js["metrics"]) == list(DIS_METRICS)
    assert set(js["per_image"]) == {"d0", "d1", "d2"} and "biou_curve" not in js["per_image"]["d0"]
