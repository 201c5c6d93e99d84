"""Per-image metrics and their aggregation for the evaluation protocols.

``standard`` (default): the usual SOD/COD protocol on the *soft* foreground map (uint8 0..255), computed
with `py_sod_metrics` exactly as a direct user of that library would (``step(pred_uint8, gt_uint8)`` then
``get_results()``), so numbers are comparable with published tables:

* ``Smeasure`` (α = 0.5), ``MAE``, ``wFmeasure`` (β² = 1): means over images;
* ``adpEm``, ``adpFm``: adaptive threshold ``min(2·mean, 1)``, means over images (Fm with β² = 0.3);
* ``meanEm``/``maxEm``, ``meanFm``/``maxFm``: the 256-threshold curves averaged over images, then mean/max
  of the averaged curve (so ``maxFm`` is *not* the mean of per-image maxima);
* task extras on the binarised map (pysodmetrics' "binary" mode: min-max normalised prediction ``> 0.5``),
  per image then averaged: ``BER`` (the true balanced error rate, as a fraction in [0, 1]), ``IoU``, ``Dice``
  for sd/dbd; ``F1`` for fd; and ``AUC`` for fd (ROC AUC of the soft map, sklearn).

``focus``: the official protocol of docs/evaluation.md#focus on *binary* masks, under the official names
``MAE, SM, EM, WFM, BER, F1, AUC, FM`` (EM = mean E-measure over the 256 thresholds, FM = adaptive F-measure,
BER = the official 0.75 × true BER in percent, docs/focus.md#q1; AUC from the binary prediction).

Degenerate images (GT empty or full) never raise; the conventions are:

* standard: pysodmetrics' own (S-measure special cases; wFm = 0 for an empty GT; zero denominators give 0,
  so BER of an empty GT is ``1 - 0.5·TNR``); AUC is undefined for a single-class GT: NaN for that image,
  left out of the mean (``nanmean``);
* focus: the official code crashes there (docs/focus.md#q13). Here ``BER`` of an image whose GT lacks a class
  is NaN and left out of the BER mean (its ``pos_err``/``neg_err`` is 0/0); ``AUC`` likewise; ``F1`` with an
  empty GT *and* an empty prediction is 1.0 (perfect agreement), otherwise the official formula.

``dis``: the DIS5K suite of BiRefNet's evaluation (docs/evaluation.md#dis), `DIS_METRICS` in the official
column order: the standard metrics on the min-max normalised 8-bit map, plus ``HCE`` (human correction
effort), ``mBA`` (mean boundary accuracy) on the *raw* 8-bit map thresholded at 128, and the boundary-IoU curve
(``maxBIoU``/``meanBIoU`` from the image-averaged curve, like ``maxFm``).

``vos``: DAVIS-2016 region similarity J and boundary accuracy F per frame (`davis_j`, `davis_f`), their
per-sequence statistics (`davis_statistics`: mean, recall, decay) and the standard metrics averaged per
sequence (V-SOD); see `vos_aggregate` and docs/evaluation.md#vos.
"""
import math
import re

import cv2
import numpy as np
import py_sod_metrics as psm
from sklearn.metrics import roc_auc_score

__all__ = [
    "STANDARD_METRICS",
    "FOCUS_METRICS",
    "TASK_EXTRAS",
    "standard_metric_names",
    "standard_image_metrics",
    "focus_image_metrics",
    "DIS_METRICS",
    "dis_image_metrics",
    "hce",
    "boundary_accuracy",
    "boundary_iou_curve",
    "VOS_METRICS",
    "davis_j",
    "davis_f",
    "seg2bmap",
    "davis_statistics",
    "vos_frame_metrics",
    "vos_aggregate",
    "frame_sort_key",
    "aggregate",
    "CONVENTIONS",
]

STANDARD_METRICS = ("Smeasure", "wFmeasure", "MAE", "adpEm", "meanEm", "maxEm", "adpFm", "meanFm", "maxFm")
FOCUS_METRICS = ("MAE", "SM", "EM", "WFM", "BER", "F1", "AUC", "FM")
# BiRefNet's DIS5K table, in its column order.
DIS_METRICS = ("maxFm", "wFmeasure", "MAE", "Smeasure", "meanEm", "HCE", "maxEm", "meanFm", "adpEm", "adpFm", "mBA",
               "maxBIoU", "meanBIoU")
VOS_METRICS = ("J_mean", "J_recall", "J_decay", "F_mean", "F_recall", "F_decay", "J&F_mean")
# Extra standard-protocol metrics per task; task None = all of them.
TASK_EXTRAS = {"sd": ("BER", "IoU", "Dice"), "dbd": ("BER", "IoU", "Dice"), "fd": ("F1", "AUC")}
_ALL_EXTRAS = ("BER", "IoU", "Dice", "F1", "AUC")
_CURVES = {"meanEm": "em_curve", "maxEm": "em_curve", "meanFm": "fm_curve", "maxFm": "fm_curve"}

CONVENTIONS = {
    "standard": (
        "py_sod_metrics on the 8-bit soft map (pred/255, min-max normalised; GT > 128). meanEm/maxEm/meanFm/maxFm: "
        "mean/max of the per-threshold curve averaged over images. BER/IoU/Dice/F1: prediction > 0.5 after "
        "normalisation, per image, averaged; BER is the true balanced error rate as a fraction. AUC: sklearn ROC "
        "AUC of the soft map; NaN (excluded from the mean) when the GT has a single class."
    ),
    "focus": (
        "Official FOCUS protocol (docs/evaluation.md#focus) on binary masks: EM = mean E-measure over 256 "
        "thresholds, FM = adaptive F-measure (beta^2 = 0.3), WFM beta^2 = 1. BER is the OFFICIAL value = 0.75 x true "
        "BER in percent (docs/focus.md#q1); multiply by 4/3 for the true BER. Images whose GT is empty or full have "
        "no BER/AUC "
        "(excluded from those means; the official code crashes there, docs/focus.md#q13); F1 of an empty GT with an "
        "empty prediction is 1."
    ),
    "dis": (
        "BiRefNet's DIS5K evaluation (docs/evaluation.md#dis): S, MAE, wF, E and F on the 8-bit map (pred/255, min-max "
        "normalised; GT > 128); maxFm/meanFm/maxEm/meanEm/maxBIoU/meanBIoU are max/mean of the curve averaged over "
        "images; HCE (relax 5, epsilon 2.0) and mBA on the raw 8-bit map > 128 (not normalised). HCE is the mean "
        "over images (tables print it rounded to an integer). mBA of an image whose GT has no boundary is NaN and "
        "left out of the mean."
    ),
    "vos": (
        "DAVIS-2016 (docs/evaluation.md#vos): J (IoU) and F (boundary F, bound_th 0.008) on binary masks, frames "
        "1..n-2 of each sequence (first and last GT frame excluded); per sequence mean, recall (fraction > 0.5) "
        "and decay (first minus last of 4 overlapping bins); dataset values are means over sequences, J&F_mean = "
        "(J_mean + F_mean) / 2. V-SOD: the standard metrics on the 8-bit soft maps of the same frames, averaged "
        "per sequence (curves per sequence, then over sequences) and then over sequences."
    ),
}


def standard_metric_names(task=None):
    """Names of the standard-protocol metrics reported for `task` (None: every extra)."""
    extras = _ALL_EXTRAS if task is None else TASK_EXTRAS.get(task, ())
    return STANDARD_METRICS + tuple(extras)


def _as_uint8(x, what):
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x
    if x.dtype == bool:
        return x.astype(np.uint8) * 255
    raise TypeError(f"{what} must be uint8 (0..255) or bool, got {x.dtype}")


def standard_image_metrics(pred, gt, task=None):
    """Standard-protocol metrics of one image.

    Args:
        pred: uint8 ``(H, W)`` soft foreground map 0..255 (what a saved 8-bit PNG holds).
        gt: uint8 ``(H, W)`` mask 0..255 (foreground ``> 128``) or bool.
        task: selects the extras (`TASK_EXTRAS`); None computes all.
    Returns:
        dict of floats (`standard_metric_names(task)`) plus the per-threshold curves ``em_curve`` and
        ``fm_curve`` (lists of 256 floats, needed to aggregate ``max*``/``mean*`` exactly).
    """
    pred, gt = _as_uint8(pred, "prediction"), _as_uint8(gt, "GT")
    names = standard_metric_names(task)
    sm, mae, wfm, em = psm.Smeasure(), psm.MAE(), psm.WeightedFmeasure(), psm.Emeasure()
    handlers = {"fm": psm.FmeasureHandler(with_dynamic=True, with_adaptive=True, beta=0.3)}
    if "BER" in names:
        handlers["ber"] = psm.BERHandler(with_dynamic=False, with_adaptive=False, with_binary=True)
    if "IoU" in names:
        handlers["iou"] = psm.IOUHandler(with_dynamic=False, with_adaptive=False, with_binary=True)
    if "Dice" in names:
        handlers["dice"] = psm.DICEHandler(with_dynamic=False, with_adaptive=False, with_binary=True)
    if "F1" in names:
        handlers["f1"] = psm.FmeasureHandler(with_dynamic=False, with_adaptive=False, with_binary=True, beta=1.0)
    fm = psm.FmeasureV2(metric_handlers=handlers)
    for m in (sm, mae, wfm, em, fm):
        m.step(pred, gt)
    em_curve = np.asarray(em.changeable_ems[0], dtype=np.float64)
    fm_curve = np.asarray(handlers["fm"].dynamic_results[0], dtype=np.float64)
    out = {
        "Smeasure": float(sm.sms[0]),
        "wFmeasure": float(wfm.weighted_fms[0]),
        "MAE": float(mae.maes[0]),
        "adpEm": float(em.adaptive_ems[0]),
        "meanEm": float(em_curve.mean()),
        "maxEm": float(em_curve.max()),
        "adpFm": float(handlers["fm"].adaptive_results[0]),
        "meanFm": float(fm_curve.mean()),
        "maxFm": float(fm_curve.max()),
    }
    for name, key in (("BER", "ber"), ("IoU", "iou"), ("Dice", "dice"), ("F1", "f1")):
        if key in handlers:
            out[name] = float(np.asarray(handlers[key].binary_results[0]))
    if "AUC" in names:
        g = gt > 128
        if g.all() or not g.any():
            out["AUC"] = math.nan
        else:
            p, _ = psm.utils.prepare_data(pred, gt)
            out["AUC"] = float(roc_auc_score(g.ravel(), p.ravel()))
    out["em_curve"] = em_curve.tolist()
    out["fm_curve"] = fm_curve.tolist()
    return out


def focus_image_metrics(pred, gt, with_ber_f1_auc=True):
    """Official-protocol metrics of one image (docs/evaluation.md#focus-metrics).

    Args:
        pred: binary prediction ``(H, W)`` (bool or 0/1 integers; any non-zero value is foreground).
        gt: uint8 mask 0..255 (foreground ``> 128``) or bool.
        with_ber_f1_auc: False reproduces the official evaluator on the dataset named "pascal" (NaN).
    Returns:
        dict with `FOCUS_METRICS` (BER per image already in the official 0.75 × scale).
    """
    pred = np.asarray(pred) != 0
    gt = _as_uint8(gt, "GT") > 128
    if pred.shape != gt.shape:
        raise ValueError(f"Prediction shape {pred.shape} differs from GT shape {gt.shape}")
    # calc_metrics: both inputs scaled to 0/255, then pysodmetrics' prepare_data (gt > 128, pred / 255).
    p255, g255 = pred.astype(np.uint8) * 255, gt.astype(np.uint8) * 255
    sm, mae, wfm, em = psm.Smeasure(), psm.MAE(), psm.WeightedFmeasure(), psm.Emeasure()
    fm = psm.FmeasureV2({"fm": psm.FmeasureHandler(with_dynamic=False, with_adaptive=True, beta=0.3)})
    for m in (sm, mae, wfm, em, fm):
        m.step(p255, g255)
    out = {
        "MAE": float(mae.maes[0]),
        "SM": float(sm.sms[0]),
        "EM": float(np.mean(em.changeable_ems[0])),
        "WFM": float(wfm.weighted_fms[0]),
        "FM": float(np.asarray(fm._metric_handlers["fm"].adaptive_results[0])),
    }
    if not with_ber_f1_auc:
        out.update(BER=math.nan, F1=math.nan, AUC=math.nan)
        return {k: out[k] for k in FOCUS_METRICS}
    tp = float(np.count_nonzero(pred & gt))
    tn = float(np.count_nonzero(~pred & ~gt))
    fp = float(np.count_nonzero(pred & ~gt))
    fn = float(np.count_nonzero(~pred & gt))
    if tp + fn > 0 and tn + fp > 0:
        pos_err = (1 - tp / (tp + fn)) * 100
        neg_err = (1 - tn / (tn + fp)) * 100
        ber = (pos_err + neg_err) / 2
        # the evaluator averages the 4-tuple (pos_err, neg_err, BER, 0): 0.75 x BER (docs/focus.md#q1)
        out["BER"] = float(np.mean([pos_err, neg_err, ber, 0]))
        out["AUC"] = float(roc_auc_score(gt.ravel(), pred.ravel().astype(np.float32)))
    else:
        out["BER"] = math.nan
        out["AUC"] = math.nan
    if tp + fp + fn == 0:  # empty GT and empty prediction (the official branch crashes, docs/focus.md#q13)
        out["F1"] = 1.0
    else:
        out["F1"] = float(2 * tp / (2 * tp + fp + fn + 1e-6))
    return {k: out[k] for k in FOCUS_METRICS}


# ---------------------------------------------------------------------------------------------------- dis
def hce(pred, gt, relax=5, epsilon=2.0):
    """Human correction effort of one image (DIS, ECCV 2022): polygon points + independent regions to fix.

    Args:
        pred: bool ``(H, W)`` prediction (BiRefNet: the raw 8-bit map ``> 128``, not normalised).
        gt: bool ``(H, W)`` GT (``> 128``); its skeleton is always counted where the prediction misses it.
    Returns:
        int HCE = FP polygon points + FP independent regions + FN polygon points + FN independent regions.

    pysodmetrics' ``HumanCorrectionEffortMeasure.cal_hce`` is a line-for-line port of the DIS authors'
    ``relax_HCE`` (skeleton by scikit-image, contours and Douglas-Peucker by OpenCV); only its ``step``
    min-max normalises the prediction, so it is called on the binarised masks directly (docs/evaluation.md#dis-hce).
    """
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"Prediction shape {pred.shape} differs from GT shape {gt.shape}")
    return int(psm.HumanCorrectionEffortMeasure(relax=relax, epsilon=epsilon).cal_hce(pred, gt))


def boundary_accuracy(pred, gt, num_steps=5):
    """Mean boundary accuracy (CascadePSP) of one image, as BiRefNet's ``MBAMeasure`` (not in pysodmetrics).

    Args:
        pred, gt: bool ``(H, W)`` (BiRefNet: raw 8-bit maps ``> 128``).
    Returns:
        float: accuracy of `pred` inside the GT's boundary band (morphological gradient with an elliptic
        ``(2r+1)`` kernel), averaged over radii ``r_i = 1 + int(((W + H)/300 - 1)/5 · i)``, i = 0..4.
        NaN when the GT has no boundary (empty or full GT: the official code divides 0 by 0).
    """
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    h, w = gt.shape
    max_radius = (w + h) / 300
    acc = []
    for i in range(num_steps):
        r = 1 + int((max_radius - 1) / num_steps * i)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        band = cv2.morphologyEx(gt.astype(np.uint8), cv2.MORPH_GRADIENT, kernel) > 0
        n = int(band.sum())
        acc.append(np.count_nonzero(pred[band] == gt[band]) / n if n else math.nan)
    return float(sum(acc) / num_steps)


def _boundary_band(mask, dilation_ratio):
    """``mask - erode(mask)``: grey erosion (3x3 ones, ``round(ratio·diagonal)`` times, >= 1) of a zero-padded mask."""
    h, w = mask.shape
    d = max(int(round(dilation_ratio * np.sqrt(h ** 2 + w ** 2))), 1)
    padded = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=d)[1:h + 1, 1:w + 1]
    return mask - eroded


def boundary_iou_curve(pred, gt, dilation_ratio=0.02):
    """Boundary-IoU curve of one image over 256 thresholds, as BiRefNet's ``BIoUMeasure`` (not in pysodmetrics,
    whose multi-scale IoU is a different measure).

    Args:
        pred: uint8 ``(H, W)`` 8-bit map; min-max normalised like the other soft metrics, then
            ``uint8(p·255)`` (truncation) and turned into a grey boundary band.
        gt: uint8 ``(H, W)`` mask (foreground ``> 128``).
    Returns:
        float64 ``(256,)``: index i is the IoU of the prediction band ``>= 255 - i`` with the GT band,
        ``TP / (|GT band| + FP)``.
    """
    p, g = psm.utils.prepare_data(_as_uint8(pred, "prediction"), _as_uint8(gt, "GT"))
    pb = _boundary_band((p * 255).astype(np.uint8), dilation_ratio)
    gb = _boundary_band(g.astype(np.uint8) * 255, dilation_ratio) > 128
    tp = np.cumsum(np.bincount(pb[gb], minlength=256)[::-1])
    fp = np.cumsum(np.bincount(pb[~gb], minlength=256)[::-1])
    return tp / (max(np.count_nonzero(gb), 1) + fp)


def dis_image_metrics(pred, gt):
    """DIS-protocol metrics of one image (BiRefNet's ``evaluator``, docs/evaluation.md#dis).

    Args:
        pred: uint8 ``(H, W)`` 8-bit prediction (the saved PNG, resized to the GT size if needed).
        gt: uint8 ``(H, W)`` mask (foreground ``> 128``) or bool.
    Returns:
        dict with `DIS_METRICS` (``max*``/``mean*`` of this image's own curves) plus the curves ``em_curve``,
        ``fm_curve``, ``biou_curve`` needed to aggregate the dataset values exactly.
    """
    pred, gt = _as_uint8(pred, "prediction"), _as_uint8(gt, "GT")
    out = standard_image_metrics(pred, gt, task="dis")
    biou = boundary_iou_curve(pred, gt)
    out.update(
        HCE=float(hce(pred > 128, gt > 128)),  # docs/evaluation.md#dis-raw: raw map, not normalised
        mBA=boundary_accuracy(pred > 128, gt > 128),
        maxBIoU=float(biou.max()),
        meanBIoU=float(biou.mean()),
        biou_curve=biou.tolist(),
    )
    return {k: out[k] for k in DIS_METRICS + ("em_curve", "fm_curve", "biou_curve")}


# ---------------------------------------------------------------------------------------------------- vos
# The DAVIS measures are a few lines each; no maintained package provides them (the official ones are
# unpackaged Python 2 / MATLAB code).
def davis_j(pred, gt):
    """DAVIS region similarity: IoU of two bool ``(H, W)`` masks, 1.0 when both are empty."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    union = np.count_nonzero(pred | gt)
    return 1.0 if union == 0 else np.count_nonzero(pred & gt) / float(union)


def seg2bmap(seg):
    """DAVIS boundary map of a bool ``(H, W)`` mask: pixels that differ from their east, south or south-east
    neighbour (last row: east only; last column: south only; the bottom-right pixel never)."""
    seg = np.asarray(seg, bool)
    e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def davis_f(pred, gt, bound_th=0.008):
    """DAVIS boundary accuracy F of two bool ``(H, W)`` masks (the official morphological approximation).

    Boundaries (`seg2bmap`) are matched within ``ceil(bound_th · diagonal)`` pixels (a disk ``x² + y² <= r²``;
    `bound_th` >= 1 is a radius in pixels). Precision/recall conventions of the official code: no predicted
    boundary but a GT one gives F = 0, the reverse F = 0, neither F = 1.
    """
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    r = bound_th if bound_th >= 1 else math.ceil(bound_th * np.linalg.norm(pred.shape))
    r = int(r)
    bp, bg = seg2bmap(pred), seg2bmap(gt)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    disk = (xx ** 2 + yy ** 2 <= r ** 2).astype(np.uint8)  # skimage.morphology.disk(r)
    # binary dilation by a symmetric disk, zero outside the image (= skimage binary_dilation)
    dp = cv2.dilate(bp.astype(np.uint8), disk, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
    dg = cv2.dilate(bg.astype(np.uint8), disk, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
    n_p, n_g = np.count_nonzero(bp), np.count_nonzero(bg)
    if n_p == 0 and n_g > 0:
        precision, recall = 1.0, 0.0
    elif n_p > 0 and n_g == 0:
        precision, recall = 0.0, 1.0
    elif n_p == 0 and n_g == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = np.count_nonzero(bp & dg) / float(n_p)
        recall = np.count_nonzero(bg & dp) / float(n_g)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def davis_statistics(values, uint8_ids=True):
    """Per-sequence mean, recall and decay of per-frame J or F values (DAVIS ``db_statistics``).

    Args:
        values: the evaluated frames' values in temporal order (m >= 1).
        uint8_ids: reproduce the official ``astype(uint8)`` of the bin boundaries, which wraps for
            sequences of more than 256 evaluated frames (docs/evaluation.md#vos-decay); False keeps exact
            integer boundaries (``TEST.VOS_EXACT_DECAY_BINS``).
    Returns:
        ``(mean, recall, decay)``: nanmean; fraction of values strictly > 0.5; mean of the first minus mean of
        the last of 4 bins ``v[ids[k] : ids[k+1] + 1]`` with ``ids = round(linspace(1, m, 5)) - 1``
        (half-up rounding; neighbouring bins share their boundary frame).
    """
    v = np.asarray(values, dtype=np.float64)
    mean = float(np.nanmean(v)) if v.size else math.nan
    recall = float(np.nanmean(v > 0.5)) if v.size else math.nan
    ids = np.round(np.linspace(1, len(v), 5) + 1e-10) - 1
    ids = ids.astype(np.uint8) if uint8_ids else ids.astype(np.int64)
    bins = [v[ids[i]:ids[i + 1] + 1] for i in range(4)]
    with np.errstate(all="ignore"):
        first = np.nanmean(bins[0]) if bins[0].size else math.nan
        last = np.nanmean(bins[3]) if bins[3].size else math.nan
    return mean, recall, float(first - last)


def vos_frame_metrics(pred_mask, gt, soft=None, bound_th=0.008, vsod=True):
    """Per-frame record of the ``vos`` protocol.

    Args:
        pred_mask: bool ``(H, W)`` binary prediction (J and F).
        gt: uint8 ``(H, W)`` GT mask; J and F take any non-zero pixel as foreground (the DAVIS code),
            the V-SOD metrics ``> 128`` (identical for 0/255 masks).
        soft: uint8 ``(H, W)`` 8-bit soft map for the V-SOD metrics (default: the binary mask as 0/255).
        vsod: False returns J and F only (the V-SOD metrics cost ~20x more).
    Returns:
        dict with ``J``, ``F``, and the standard metrics with their curves (`standard_image_metrics`).
    """
    gt = _as_uint8(gt, "GT")
    pred_mask = np.asarray(pred_mask, bool)
    if pred_mask.shape != gt.shape:
        raise ValueError(f"Prediction shape {pred_mask.shape} differs from GT shape {gt.shape}")
    g = gt != 0
    out = {"J": float(davis_j(pred_mask, g)), "F": float(davis_f(pred_mask, g, bound_th))}
    if not vsod:
        return out
    soft = pred_mask.astype(np.uint8) * 255 if soft is None else _as_uint8(soft, "soft prediction")
    out.update(standard_image_metrics(soft, gt, task="vos"))
    return out


_DIGITS = re.compile(r"(\d+)")


def frame_sort_key(name):
    """Natural order of frame names ("img2" before "img10"; DAVIS's zero-padded names sort as strings)."""
    return [int(t) if t.isdigit() else t for t in _DIGITS.split(str(name))]


def vos_aggregate(records, sequences=None, uint8_ids=True, vsod=True):
    """Dataset values of the ``vos`` protocol.

    Args:
        records: ``{(sequence, frame): record}`` of `vos_frame_metrics` records (every scored frame).
        sequences: ``{sequence: [frame, ...]}``, every GT frame of each sequence (default: the scored ones);
            the first and the last in temporal order (`frame_sort_key`) are not evaluated, the official
            DAVIS-2016 selection (docs/evaluation.md#vos-frames).
        uint8_ids: see `davis_statistics`.
        vsod: also aggregate the standard (V-SOD) metrics (the records must hold them).
    Returns:
        ``(metrics, per_sequence, evaluated, missing)``: ``metrics`` = `VOS_METRICS` (means over sequences)
        then the standard names (per-sequence means and curves, then means over sequences);
        ``per_sequence[seq]`` the same names for one sequence plus ``num_frames``; ``evaluated[seq]`` the
        evaluated frame names; ``missing`` the ``seq/frame`` ids selected but without a record (left out).
    """
    if sequences is None:
        sequences = {}
        for seq, frame in records:
            sequences.setdefault(seq, []).append(frame)
    std_names = standard_metric_names("vos") if vsod else ()
    per_sequence, evaluated, missing = {}, {}, []
    curves = {"em_curve": [], "fm_curve": []}
    for seq in sorted(sequences):
        frames = sorted(set(sequences[seq]), key=frame_sort_key)[1:-1]
        missing += [f"{seq}/{f}" for f in frames if (seq, f) not in records]
        frames = [f for f in frames if (seq, f) in records]
        if not frames:
            continue
        recs = [records[(seq, f)] for f in frames]
        res = {}
        for name in ("J", "F"):
            m, o, d = davis_statistics([r[name] for r in recs], uint8_ids)
            res.update({f"{name}_mean": m, f"{name}_recall": o, f"{name}_decay": d})
        res["J&F_mean"] = (res["J_mean"] + res["F_mean"]) / 2
        if vsod:
            res.update(aggregate(recs, "standard", "vos"))
        for c in curves if vsod else ():
            curves[c].append(np.mean(np.array([r[c] for r in recs], dtype=np.float64), axis=0))
        res["num_frames"] = len(frames)
        per_sequence[seq], evaluated[seq] = res, frames
    metrics = {}
    if not per_sequence:
        return {n: math.nan for n in VOS_METRICS + std_names}, per_sequence, evaluated, missing
    for n in VOS_METRICS + std_names:
        if n in ("meanEm", "maxEm", "meanFm", "maxFm"):
            curve = np.mean(curves["em_curve" if n.endswith("Em") else "fm_curve"], axis=0)
            metrics[n] = float(curve.mean() if n.startswith("mean") else curve.max())
        elif n == "J&F_mean":
            metrics[n] = (metrics["J_mean"] + metrics["F_mean"]) / 2
        else:
            metrics[n] = float(np.mean([per_sequence[s][n] for s in per_sequence]))
    return metrics, per_sequence, evaluated, missing


def _nanmean(values):
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0 or np.all(np.isnan(a)):
        return math.nan
    return float(np.nanmean(a))


def aggregate(records, protocol, task=None):
    """Dataset metrics from per-image records (dicts as returned by the ``*_image_metrics`` functions).

    Returns ``{name: float}`` in the protocol's order. Standard: means over images, curves averaged then
    mean/max (exactly `py_sod_metrics` ``get_results``). Focus: means over images; negative or NaN results
    become NaN as in the official evaluator. Dis: like standard, with the boundary-IoU curve too; mBA is a
    NaN-skipping mean (docs/evaluation.md#dis-mba). Video records aggregate with `vos_aggregate`.
    """
    records = list(records)
    if protocol == "standard":
        names = standard_metric_names(task)
        if not records:
            return {n: math.nan for n in names}
        out = {}
        em = np.mean(np.array([r["em_curve"] for r in records], dtype=np.float64), axis=0)
        fm = np.mean(np.array([r["fm_curve"] for r in records], dtype=np.float64), axis=0)
        for n in names:
            if n in ("meanEm", "maxEm", "meanFm", "maxFm"):
                curve = em if n.endswith("Em") else fm
                out[n] = float(curve.mean() if n.startswith("mean") else curve.max())
            elif n == "AUC":
                out[n] = _nanmean([r[n] for r in records])
            else:
                out[n] = float(np.mean(np.array([r[n] for r in records], dtype=np.float64)))
        return out
    if protocol == "dis":
        out = {}
        curves = {c: np.mean(np.array([r[c] for r in records], dtype=np.float64), axis=0) if records else None
                  for c in ("em_curve", "fm_curve", "biou_curve")}
        for n in DIS_METRICS:
            if not records:
                out[n] = math.nan
            elif n in ("meanEm", "maxEm", "meanFm", "maxFm", "maxBIoU", "meanBIoU"):
                curve = curves["em_curve" if n.endswith("Em") else "fm_curve" if n.endswith("Fm") else "biou_curve"]
                out[n] = float(curve.mean() if n.startswith("mean") else curve.max())
            elif n == "mBA":
                out[n] = _nanmean([r[n] for r in records])
            else:
                out[n] = float(np.mean(np.array([r[n] for r in records], dtype=np.float64)))
        return out
    if protocol == "focus":
        out = {}
        for n in FOCUS_METRICS:
            v = _nanmean([r[n] for r in records])
            out[n] = math.nan if (math.isnan(v) or v < 0) else v
        return out
    raise ValueError(f"Unknown evaluation protocol {protocol!r}; expected 'standard', 'focus' or 'dis'")
