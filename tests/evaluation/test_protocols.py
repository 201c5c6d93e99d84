"""Both protocols against direct computations: `py_sod_metrics` (standard) and docs/evaluation.md#focus-metrics restated
(focus)."""
import math

import cv2
import numpy as np
import py_sod_metrics as psm
import pytest
from sklearn.metrics import roc_auc_score

from focus.evaluation import aggregate, focus_image_metrics, score_folder, standard_image_metrics

N_IMAGES = 8
pytestmark = pytest.mark.filterwarnings("ignore:This class will be removed")


def perturbed_predictions(gt_dir, out_dir, n=N_IMAGES, seed=0):
    """Soft 8-bit predictions made from the GT: blurred, shifted, noisy, with a false-positive blob."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    stems = []
    for i, path in enumerate(sorted(gt_dir.glob("*.png"))[:n]):
        gt = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32)
        p = cv2.GaussianBlur(gt, (0, 0), rng.uniform(1, 8))
        p = np.roll(p, (int(rng.integers(-15, 15)), int(rng.integers(-15, 15))), axis=(0, 1))
        p = p * rng.uniform(0.5, 1.0) + rng.normal(0, 20, p.shape)
        cv2.circle(p, (int(rng.integers(0, p.shape[1])), int(rng.integers(0, p.shape[0]))), 20, 180, -1)
        if i == 0:
            p = np.full_like(p, 255)  # constant map (no min-max normalisation)
        cv2.imwrite(str(out_dir / f"{path.stem}.png"), np.clip(p, 0, 255).astype(np.uint8))
        stems.append(path.stem)
    return stems


@pytest.fixture(scope="module")
def ecssd(shared_data, tmp_path_factory):
    gt_dir = shared_data / "sod" / "ECSSD-half" / "masks"
    pred_dir = tmp_path_factory.mktemp("pred")
    stems = perturbed_predictions(gt_dir, pred_dir)
    return gt_dir, pred_dir, stems


def _load(pred_dir, gt_dir, stems):
    for s in stems:
        yield (cv2.imread(str(pred_dir / f"{s}.png"), cv2.IMREAD_GRAYSCALE),
               cv2.imread(str(gt_dir / f"{s}.png"), cv2.IMREAD_GRAYSCALE))


def test_standard_equals_pysodmetrics_direct(ecssd):
    gt_dir, pred_dir, stems = ecssd
    res = score_folder(pred_dir, gt_dir, protocol="standard", task=None)
    assert res["num_images"] == N_IMAGES and len(res["missing"]) == 500 - N_IMAGES and not res["extra"]

    sm, em, wfm, mae = psm.Smeasure(), psm.Emeasure(), psm.WeightedFmeasure(), psm.MAE()
    fm_old = psm.Fmeasure()
    kw = dict(with_dynamic=False, with_adaptive=False, with_binary=True, sample_based=True)
    fmv2 = psm.FmeasureV2({
        "fm": psm.FmeasureHandler(with_dynamic=True, with_adaptive=True, beta=0.3),
        "ber": psm.BERHandler(**kw), "iou": psm.IOUHandler(**kw), "dice": psm.DICEHandler(**kw),
        "f1": psm.FmeasureHandler(**kw, beta=1.0),
    })
    aucs = []
    for pred, gt in _load(pred_dir, gt_dir, stems):
        for m in (sm, em, wfm, mae, fm_old, fmv2):
            m.step(pred, gt)
        p, g = psm.utils.prepare_data(pred, gt)
        aucs.append(roc_auc_score(g.ravel(), p.ravel()))
    e, f, v2 = em.get_results()["em"], fm_old.get_results()["fm"], fmv2.get_results()
    expected = {
        "Smeasure": sm.get_results()["sm"], "wFmeasure": wfm.get_results()["wfm"], "MAE": mae.get_results()["mae"],
        "adpEm": e["adp"], "meanEm": e["curve"].mean(), "maxEm": e["curve"].max(),
        "adpFm": f["adp"], "meanFm": f["curve"].mean(), "maxFm": f["curve"].max(),
        "BER": v2["ber"]["binary"], "IoU": v2["iou"]["binary"], "Dice": v2["dice"]["binary"],
        "F1": v2["f1"]["binary"], "AUC": np.mean(aucs),
    }
    assert list(res["metrics"]) == list(expected)
    for k, v in expected.items():
        assert abs(res["metrics"][k] - float(v)) <= 1e-9, k
    # FmeasureV2 agrees with the legacy Fmeasure class
    assert abs(v2["fm"]["adaptive"] - f["adp"]) <= 1e-12
    assert np.abs(v2["fm"]["dynamic"] - f["curve"]).max() <= 1e-12
    assert set(res["per_image"]) == set(stems)


# ---------------------------------------------------------------- docs/evaluation.md#focus-metrics, restated
def _official_calc_metrics(pred01, gt01):
    """`calc_metrics`: both scaled by 255, then the PySODMetrics formulas (docs/evaluation.md#focus-metrics)."""
    pred, gt = (pred01 * 255).astype(np.uint8), (gt01 * 255).astype(np.uint8)
    sm, em, wfm, mae, fm = psm.Smeasure(), psm.Emeasure(), psm.WeightedFmeasure(), psm.MAE(), psm.Fmeasure()
    for m in (sm, em, wfm, mae, fm):
        m.step(pred, gt)
    return {"SM": sm.get_results()["sm"], "EM": em.get_results()["em"]["curve"].mean(),
            "WFM": wfm.get_results()["wfm"], "MAE": mae.get_results()["mae"], "FM": fm.get_results()["fm"]["adp"]}


def _official_calc_ber(pred01, gt01):
    p = pred01.astype(np.float64) * 255 * 255 > 125
    g = gt01.astype(np.float64) * 255 * 255 > 125
    tp, tn = np.sum(p & g), np.sum(~p & ~g)
    fp, fn = np.sum(p & ~g), np.sum(~p & g)
    pos_err = (1 - tp / (tp + fn)) * 100
    neg_err = (1 - tn / (tn + fp)) * 100
    return pos_err, neg_err, (pos_err + neg_err) / 2, 0


def _official_calc_f1(pred01, gt01):
    tp = np.sum((pred01 == 1) & (gt01 == 1))
    fp = np.sum((pred01 == 1) & (gt01 == 0))
    fn = np.sum((pred01 == 0) & (gt01 == 1))
    return 2 * tp / (2 * tp + fp + fn + 1e-6), roc_auc_score(gt01.flatten(), pred01.flatten())


def test_focus_equals_spec_restatement(ecssd):
    gt_dir, pred_dir, stems = ecssd
    res = score_folder(pred_dir, gt_dir, protocol="focus", task="sod")
    per, bers, f1s, aucs = [], [], [], []
    for pred, gt in _load(pred_dir, gt_dir, stems):
        p01, g01 = (pred > 128).astype(np.float32), (gt > 128).astype(np.float32)
        per.append(_official_calc_metrics(p01, g01))
        bers.append(_official_calc_ber(p01, g01))
        f1, auc = _official_calc_f1(p01, g01)
        f1s.append(f1)
        aucs.append(auc)
    expected = {k: np.mean([d[k] for d in per]) for k in ("MAE", "SM", "EM", "WFM", "FM")}
    expected.update(BER=np.mean(bers), F1=np.mean(f1s), AUC=np.mean(aucs))  # BER: mean of 4-tuples
    assert list(res["metrics"]) == ["MAE", "SM", "EM", "WFM", "BER", "F1", "AUC", "FM"]
    for k, v in expected.items():
        assert abs(res["metrics"][k] - float(v)) <= 1e-9, k
    # reported BER is 0.75 x the true BER (docs/focus.md#q1); AUC = 1 - true BER / 100 per image
    true_ber = np.mean([b[2] for b in bers])
    assert abs(res["metrics"]["BER"] - 0.75 * true_ber) <= 1e-9
    assert abs(res["metrics"]["AUC"] - (1 - true_ber / 100)) <= 1e-6
    assert "0.75" in res["flags"]["BER"]


# ---------------------------------------------------------------- degenerate GT
def _soft(h=32, w=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w)).astype(np.uint8)


@pytest.mark.parametrize("gt_value", [0, 255])
def test_empty_and_full_gt_do_not_crash(gt_value):
    gt = np.full((32, 40), gt_value, np.uint8)
    pred = _soft()
    r = standard_image_metrics(pred, gt, task=None)
    p, _ = psm.utils.prepare_data(pred, gt)
    exp_sm = 1 - p.mean() if gt_value == 0 else p.mean()
    assert abs(r["Smeasure"] - exp_sm) < 1e-12
    assert math.isnan(r["AUC"])
    assert all(np.isfinite(r[k]) for k in r if k not in ("AUC", "em_curve", "fm_curve"))
    f = focus_image_metrics(pred > 128, gt)
    assert math.isnan(f["BER"]) and math.isnan(f["AUC"])
    assert np.isfinite([f[k] for k in ("MAE", "SM", "EM", "WFM", "F1", "FM")]).all()
    # perfect predictions of degenerate GT
    perfect = focus_image_metrics(gt > 128, gt)
    assert perfect["MAE"] == 0 and perfect["F1"] == pytest.approx(1.0, abs=1e-6)
    # the NaN images are left out of the BER/AUC means only
    normal_gt = np.zeros((32, 40), np.uint8)
    normal_gt[8:20, 10:30] = 255
    recs = [f, focus_image_metrics(pred > 128, normal_gt)]
    agg = aggregate(recs, "focus")
    assert agg["BER"] == recs[1]["BER"] and agg["AUC"] == recs[1]["AUC"]
    assert agg["MAE"] == pytest.approx((recs[0]["MAE"] + recs[1]["MAE"]) / 2)
    std = aggregate([r, standard_image_metrics(pred, normal_gt)], "standard")
    assert np.isfinite(list(std.values())).all()
