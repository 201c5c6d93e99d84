"""Scoring a folder of predictions against a folder of GT masks (`tools/evaluate_folder.py`).

Predictions (8-bit soft maps or binary PNGs, any mode `read_mask` accepts) are matched to GT masks by file
stem, any extensions. A prediction whose size differs from its GT is resized to the GT size (OpenCV bilinear
on the 8-bit map, as BiRefNet's evaluation does for every prediction) and listed under ``"resized"``; GT files
without a prediction (``"missing"``) and predictions without a GT (``"extra"``) are listed and not scored.

Video (`score_video_folder`, protocol ``vos``): ``<dir>/<sequence>/<frame>.png`` on both sides (a GT sequence
folder may also hold its masks in a ``masks/`` subfolder, the ``<root>/<sequence>/{frames,masks}`` layout).
"""
import math
from pathlib import Path

import cv2
import numpy as np

from ..data.io import MASK_EXTENSIONS, list_files_by_stem, read_mask
from ..errors import BadFileError, DatasetError
from .metrics import CONVENTIONS, DIS_METRICS, FOCUS_METRICS, VOS_METRICS, aggregate, dis_image_metrics, \
    focus_image_metrics, frame_sort_key, standard_image_metrics, standard_metric_names, vos_aggregate, \
    vos_frame_metrics

__all__ = ["score_folder", "score_video_folder", "score_pair", "result_dict", "vos_result_dict", "binarize_vos",
           "protocol_metric_names", "format_table", "json_safe"]

IMAGE_PROTOCOLS = ("standard", "focus", "dis")


def protocol_metric_names(protocol, task=None):
    """The metric names a protocol reports, in its table order."""
    if protocol == "standard":
        return list(standard_metric_names(task))
    if protocol == "focus":
        return list(FOCUS_METRICS)
    if protocol == "dis":
        return list(DIS_METRICS)
    if protocol == "vos":
        return list(VOS_METRICS) + list(standard_metric_names("vos"))
    raise DatasetError(f"Unknown evaluation protocol {protocol!r}; expected one of {IMAGE_PROTOCOLS + ('vos',)}")


def score_pair(pred, gt, protocol="standard", task=None, dataset_name=None):
    """Per-image record of one prediction (uint8 ``(H, W)``) and GT (uint8 ``(H, W)``, same size).

    ``standard`` and ``dis`` score the 8-bit map; ``focus`` first binarises it at ``> 128`` (the mask convention).
    """
    if protocol == "standard":
        return standard_image_metrics(pred, gt, task)
    if protocol == "dis":
        return dis_image_metrics(pred, gt)
    if protocol == "focus":
        # the official evaluator skips BER/F1/AUC on PASCAL-S by dataset name (docs/evaluation.md#focus-evaluator)
        return focus_image_metrics(np.asarray(pred) > 128, gt, with_ber_f1_auc=dataset_name != "pascal")
    raise DatasetError(f"Unknown evaluation protocol {protocol!r}; expected one of {IMAGE_PROTOCOLS}")


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
        out["flags"] = {"BER": "official convention: 0.75 x true BER, in percent (docs/focus.md#q1)"}
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
    if protocol not in IMAGE_PROTOCOLS:
        raise DatasetError(f"Unknown evaluation protocol {protocol!r}; expected one of {IMAGE_PROTOCOLS} "
                         "(video: score_video_folder)")
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
    names = protocol_metric_names(protocol, task)
    return result_dict(
        records, protocol, task,
        metric_names=list(names),
        pred_dir=str(pred_dir), gt_dir=str(gt_dir),
        resized=resized,
        missing=sorted(set(gts) - set(preds)),
        extra=sorted(set(preds) - set(gts)),
        excluded=excluded,
    )


def binarize_vos(pred):
    """Binary mask of a ``vos`` prediction read from a file (uint8 ``(H, W)``).

    A mask with at most two grey levels ``{0, v}`` (0/255 or 0/1 PNGs): any non-zero pixel, as the DAVIS code
    reads results. A soft map (more levels): ``> 128``, the mask convention of the other protocols (and FSNet's
    U-VOS binarisation of its saved maps at 0.5); docs/evaluation.md#vos-binary.
    """
    pred = np.asarray(pred)
    levels = np.unique(pred)
    if levels.size <= 2 and levels[0] == 0:
        return pred != 0
    return pred > 128


def vos_result_dict(records, sequences=None, uint8_ids=True, vsod=True, **extra):
    """The ``vos`` result JSON: ``metrics`` (dataset values), ``per_sequence``, ``per_image`` (``seq/frame``),
    ``evaluated_frames`` per sequence, ``missing`` (selected frames without a prediction)."""
    metrics, per_seq, evaluated, missing = vos_aggregate(records, sequences, uint8_ids=uint8_ids, vsod=vsod)
    names = protocol_metric_names("vos") if vsod else list(VOS_METRICS)
    keep = {(s, f) for s, fr in evaluated.items() for f in fr}
    out = {
        "protocol": "vos", "task": "vos", "metrics": metrics, "metric_names": names,
        "num_sequences": len(per_seq), "num_images": len(keep),
        "notes": CONVENTIONS["vos"], "missing": missing,
    }
    out.update(extra)
    out["per_sequence"] = per_seq
    out["evaluated_frames"] = evaluated
    out["per_image"] = {f"{s}/{f}": public_record(r) for (s, f), r in sorted(records.items()) if (s, f) in keep}
    return out


def _gt_sequence_dir(gt_dir, seq):
    d = Path(gt_dir) / seq
    return d / "masks" if (d / "masks").is_dir() else d


def score_video_folder(pred_dir, gt_dir, vsod=True, uint8_ids=True, bound_th=0.008):
    """Score ``<pred_dir>/<sequence>/<frame>.png`` against ``<gt_dir>/<sequence>[/masks]/<frame>.png`` (``vos``).

    The frames between each sequence's first and last GT frame (docs/evaluation.md#vos-frames) that have a
    prediction are scored (`vos_frame_metrics`; binary mask by `binarize_vos`, soft map = the 8-bit file).
    `vsod` False skips the V-SOD image metrics (J and F only, much faster). Predictions of another size are
    resized to the GT (bilinear on the 8-bit map, then binarised) and listed under ``"resized"``.
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    if not gt_dir.is_dir():
        raise DatasetError(f"GT folder {gt_dir} does not exist; check --gt")
    seqs = sorted(p.name for p in gt_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not seqs:
        raise DatasetError(f"no <sequence> folders in {gt_dir}; check --gt")
    records, sequences, resized, extra_seqs, excluded = {}, {}, [], [], {}
    for seq in seqs:
        gts = list_files_by_stem(_gt_sequence_dir(gt_dir, seq), MASK_EXTENSIONS)
        if not gts:
            continue
        sequences[seq] = list(gts)
        preds = list_files_by_stem(pred_dir / seq, MASK_EXTENSIONS) if (pred_dir / seq).is_dir() else {}
        for frame in sorted(gts, key=frame_sort_key)[1:-1]:
            if frame not in preds:
                continue
            try:
                gt, pred = read_mask(gts[frame]), read_mask(preds[frame])
            except BadFileError as e:  # reported and excluded, never fatal
                excluded[f"{seq}/{frame}"] = str(e)
                continue
            if pred.shape != gt.shape:
                pred = cv2.resize(pred, (gt.shape[1], gt.shape[0]), interpolation=cv2.INTER_LINEAR)
                resized.append(f"{seq}/{frame}")
            records[(seq, frame)] = vos_frame_metrics(binarize_vos(pred), gt, soft=pred, bound_th=bound_th, vsod=vsod)
    if pred_dir.is_dir():
        extra_seqs = sorted(p.name for p in pred_dir.iterdir() if p.is_dir() and p.name not in sequences)
    return vos_result_dict(records, sequences, uint8_ids=uint8_ids, vsod=vsod, pred_dir=str(pred_dir),
                           gt_dir=str(gt_dir), resized=resized, extra=extra_seqs, excluded=excluded)


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
