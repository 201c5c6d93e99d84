"""Scoring a folder of predictions against a folder of GT masks (`tools/evaluate_folder.py`).

Predictions (8-bit soft maps or binary PNGs, any mode `read_mask` accepts) are matched to GT masks by file
stem, any extensions. A prediction whose size differs from its GT is resized to the GT size (OpenCV bilinear
on the 8-bit map) and listed under ``"resized"``; GT files without a prediction (``"missing"``) and predictions
without a GT (``"extra"``) are listed and not scored.
"""
import math

import cv2
import numpy as np

from ..data.io import MASK_EXTENSIONS, list_files_by_stem, read_mask
from ..errors import BadFileError, DatasetError
from .metrics import CONVENTIONS, FOCUS_METRICS, aggregate, focus_image_metrics, standard_image_metrics, \
    standard_metric_names

__all__ = ["score_folder", "score_pair", "result_dict", "format_table", "json_safe"]


def score_pair(pred, gt, protocol="standard", task=None, dataset_name=None):
    """Per-image record of one prediction (uint8 ``(H, W)``) and GT (uint8 ``(H, W)``, same size).

    ``standard`` scores the 8-bit map; ``focus`` first binarises it at ``> 128`` (the mask convention).
    """
    if protocol == "standard":
        return standard_image_metrics(pred, gt, task)
    if protocol == "focus":
        # the official evaluator skips BER/F1/AUC on PASCAL-S by dataset name (spec §9.1)
        return focus_image_metrics(np.asarray(pred) > 128, gt, with_ber_f1_auc=dataset_name != "pascal")
    raise DatasetError(f"Unknown evaluation protocol {protocol!r}; expected 'standard' or 'focus'")


def public_record(record):
    """A per-image record without the threshold curves (what JSON/CSV per-image outputs show)."""
    return {k: v for k, v in record.items() if not k.endswith("_curve")}


def result_dict(records, protocol, task=None, **extra):
    """The result JSON shape: ``{"protocol", "task", "metrics", "per_image", "num_images", "notes", ...}``."""
    records = dict(records)
    metrics = aggregate(records.values(), protocol, task)
    out = {"protocol": protocol, "task": task, "metrics": metrics, "num_images": len(records)}
    if protocol == "focus":
        out["official_names"] = list(FOCUS_METRICS)
        out["flags"] = {"BER": "official convention: 0.75 x true BER, in percent (spec §13 item 1)"}
    undefined = sorted(s for s, r in records.items() if any(isinstance(v, float) and math.isnan(v)
                                                             for k, v in r.items() if not k.endswith("_curve")))
    out["undefined_per_image"] = undefined
    out["notes"] = CONVENTIONS[protocol]
    out.update(extra)
    out["per_image"] = {s: public_record(r) for s, r in records.items()}
    return out


def score_folder(pred_dir, gt_dir, protocol="standard", task=None):
    """Score every prediction in `pred_dir` against the GT of the same stem in `gt_dir`.

    Returns the JSON-ready dict of `result_dict` plus ``pred_dir``, ``gt_dir``, ``resized``, ``missing``
    and ``extra`` (lists of stems).
    """
    if protocol not in ("standard", "focus"):
        raise DatasetError(f"Unknown evaluation protocol {protocol!r}; expected 'standard' or 'focus'")
    preds = list_files_by_stem(pred_dir, MASK_EXTENSIONS)
    gts = list_files_by_stem(gt_dir, MASK_EXTENSIONS)
    if not gts:
        raise DatasetError(f"no GT masks ({', '.join(MASK_EXTENSIONS)}) in {gt_dir}; check --gt")
    if not preds:
        raise DatasetError(f"no predictions ({', '.join(MASK_EXTENSIONS)}) in {pred_dir}; check --pred")
    common = sorted(set(preds) & set(gts))
    if not common:
        raise DatasetError(f"no prediction in {pred_dir} has the name (stem) of a GT mask in {gt_dir} (e.g. "
                           f"{sorted(preds)[0]!r} vs {sorted(gts)[0]!r}); predictions and GT are matched by name")
    records, resized, excluded = {}, [], {}
    for stem in common:
        try:
            gt = read_mask(gts[stem])
            pred = read_mask(preds[stem])
        except BadFileError as e:  # reported and excluded, never fatal
            excluded[stem] = str(e)
            continue
        if pred.shape != gt.shape:
            pred = cv2.resize(pred, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_LINEAR)
            resized.append(stem)
        records[stem] = score_pair(pred, gt, protocol, task)
    if not records:
        raise DatasetError(f"no image could be scored: every prediction or GT file is unreadable (e.g. "
                           f"{next(iter(excluded.values()))})")
    if protocol == "standard":
        names = standard_metric_names(task)
    else:
        names = list(FOCUS_METRICS)
    return result_dict(
        records, protocol, task,
        metric_names=list(names),
        pred_dir=str(pred_dir), gt_dir=str(gt_dir),
        resized=resized,
        missing=sorted(set(gts) - set(preds)),
        extra=sorted(set(preds) - set(gts)),
        excluded=excluded,
    )


def format_table(rows, names, title=None):
    """A plain-text table: one row per ``(label, {metric: value})`` pair, 4 decimals."""
    label_w = max([len("dataset")] + [len(str(r[0])) for r in rows])
    widths = [max(len(n), 7) for n in names]
    lines = []
    if title:
        lines.append(title)
    lines.append("  ".join(["dataset".ljust(label_w)] + [n.rjust(w) for n, w in zip(names, widths)]))
    for label, m in rows:
        cells = []
        for n, w in zip(names, widths):
            v = m.get(n, math.nan)
            cells.append(("-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}").rjust(w))
        lines.append("  ".join([str(label).ljust(label_w)] + cells))
    return "\n".join(lines)


def json_safe(obj):
    """NaN -> None, recursively, so that the JSON is standard (NaN is not valid JSON)."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
