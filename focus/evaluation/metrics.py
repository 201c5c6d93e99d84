"""Per-image metrics and their aggregation for the two evaluation protocols.

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
"""
import math

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
    "aggregate",
    "CONVENTIONS",
]

STANDARD_METRICS = ("Smeasure", "wFmeasure", "MAE", "adpEm", "meanEm", "maxEm", "adpFm", "meanFm", "maxFm")
FOCUS_METRICS = ("MAE", "SM", "EM", "WFM", "BER", "F1", "AUC", "FM")
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


def _nanmean(values):
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0 or np.all(np.isnan(a)):
        return math.nan
    return float(np.nanmean(a))


def aggregate(records, protocol, task=None):
    """Dataset metrics from per-image records (dicts as returned by the ``*_image_metrics`` functions).

    Returns ``{name: float}`` in the protocol's order. Standard: means over images, curves averaged then
    mean/max (exactly `py_sod_metrics` ``get_results``). Focus: means over images; negative or NaN results
    become NaN as in the official evaluator.
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
    if protocol == "focus":
        out = {}
        for n in FOCUS_METRICS:
            v = _nanmean([r[n] for r in records])
            out[n] = math.nan if (math.isnan(v) or v < 0) else v
        return out
    raise ValueError(f"Unknown evaluation protocol {protocol!r}; expected 'standard' or 'focus'")
