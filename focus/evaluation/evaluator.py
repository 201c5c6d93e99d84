"""`FocusEvaluator`: the one detectron2 `DatasetEvaluator` for every task and member, resumable.

Replaces the official `UNIFIEDEvaluator` (docs/evaluation.md#focus-evaluator): no COCO JSON; the GT is the mask file of
each dataset dict (binarised ``> 128``), read when the image is processed. It reads only the member contract's output
keys ``foreground`` (soft ``(H, W)`` map in [0, 1]) and ``mask`` (the member's binary ``(H, W)`` mask), so it serves
every member. Protocols (see `focus.evaluation.metrics`):

* ``"standard"``: py_sod_metrics on ``foreground``, quantised to 8 bits with ``round(p·255)``, i.e. exactly
  what saving it as a PNG (the demo) and running `tools/evaluate_folder.py` gives;
* ``"focus"``: the official FOCUS metrics on ``mask``;
* ``"both"``: both; focus metrics are then reported as ``"focus/<name>"``;
* ``"dis"``: BiRefNet's DIS5K suite (HCE, mBA, boundary IoU, ...) on the same 8-bit ``foreground``;
* ``"vos"``: DAVIS-2016 J and F on ``mask`` and the V-SOD metrics on ``foreground``, per sequence. Frames are
  grouped by the input dict's ``sequence`` (else the parent folder of ``file_name``) and named by its
  ``frame`` (else the file stem); each sequence's first and last GT frames are not evaluated.

Resume: every scored image is appended (flushed and fsynced) to
``<output_dir>/<dataset>_<protocol>_per_image.jsonl``. A new evaluator on the same ``output_dir`` reloads it,
`is_done(input)` tells the inference loop to skip those images, and `evaluate()` includes them.

Outputs in ``output_dir``: ``<dataset>_<protocol>.json`` (the `score_folder` JSON shape), ``<dataset>_<protocol>
.csv`` (one row) and ``<dataset>_<protocol>_per_image.csv``; the table is printed.
"""
import csv
import itertools
import json
import logging
import math
import os
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from ..data.catalog import ensure_registered, split_subset, subset_tag
from ..data.faults import FAULTS
from ..data.io import file_stem, read_mask
from ..errors import BadFileError, DatasetError
from ..utils.file_io import atomic_write
from .folder import format_table, json_safe, protocol_metric_names, result_dict, score_pair, vos_result_dict
from .metrics import VOS_METRICS, vos_frame_metrics

__all__ = ["FocusEvaluator", "build_evaluator", "reported_metric_names", "safe_name"]

logger = logging.getLogger(__name__)

PROTOCOLS = ("standard", "focus", "both", "dis", "vos")


def safe_name(name):
    """A file-name-safe form of a dataset name (`folder:` names hold whole paths): at most 120 characters; a subset
    suffix (``masks[:400]``) becomes a tag distinct for each slice (``masks_slice_400``)."""
    if re.search(r"\[-?\d*:-?\d*(:-?\d*)?\]$", name):
        try:
            base, subset = split_subset(name)
        except DatasetError:  # not a slice ([::0]): sanitised as it is
            subset = None
        if subset is not None:
            name = f"{base}_{subset_tag(subset)}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[-120:]


def _to_numpy(x):
    x = x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return np.squeeze(x)


def _binary_output(output):
    """The binary ``(H, W)`` mask of a model output (its ``mask``) as bool."""
    return _to_numpy(output["mask"]) != 0


def _soft_output(output):
    """The 8-bit ``(H, W)`` foreground map of a model output: ``round(clip(foreground, 0, 1)·255)``."""
    return np.round(np.clip(_to_numpy(output["foreground"]), 0.0, 1.0) * 255).astype(np.uint8)


def video_frame_key(d):
    """``(sequence, frame)`` of a video dataset dict: ``sequence`` (else the parent folder of ``file_name``, or
    its grandparent for the ``<sequence>/frames/<frame>`` layout) and ``frame`` when it is a name (else the
    file stem)."""
    seq = d.get("sequence")
    if seq is None:
        parent = Path(d["file_name"]).parent
        seq = parent.parent.name if parent.name == "frames" else parent.name  # <sequence>/frames/<frame>
    frame = d.get("frame")
    if not isinstance(frame, str):
        frame = file_stem(d["file_name"])
    return str(seq), frame


class FocusEvaluator(DatasetEvaluator):
    """Evaluate foreground maps / binary masks of one dataset under one protocol (or ``both``).

    Args:
        dataset_name: a registered dataset (or a ``folder:...`` name, registered on use).
        output_dir: where the resume log, JSON and CSV files go (None: nothing written, no resume).
        protocol: "standard" (default), "focus", "both", "dis" or "vos".
        task: selects the standard extras (BER/IoU/Dice for sd/dbd, F1/AUC for fd); default: the
            dataset's metadata task.
        resume: reload already scored images from ``output_dir`` (False starts the log afresh).
        vos_exact_decay_bins: ``vos`` only: exact decay bin boundaries instead of the official uint8 ones
            that wrap beyond 256 frames (docs/evaluation.md#vos-decay).
        model_key: identifies the model being evaluated (`focus.engine.trainer.model_fingerprint`; set by the
            inference loop): only scores of the same model are resumed, so the periodic evaluations of a training
            run, or of another checkpoint, never reuse each other's scores.
    """

    def __init__(self, dataset_name, output_dir=None, protocol="standard", task=None, resume=True, model_key=None,
                 vos_exact_decay_bins=False):
        if protocol not in PROTOCOLS:
            raise ValueError(f"Unknown evaluation protocol {protocol!r}; expected one of {PROTOCOLS}")
        self.dataset_name = ensure_registered(dataset_name)
        self.metadata = MetadataCatalog.get(self.dataset_name)
        self.task = task if task is not None else getattr(self.metadata, "task", None)
        self.protocols = ("standard", "focus") if protocol == "both" else (protocol,)
        self.protocol = protocol
        self.output_dir = output_dir
        self.resume = resume
        self.vos_exact_decay_bins = vos_exact_decay_bins
        self.model_key = model_key
        self._gt_files = None
        self._records = {p: {} for p in self.protocols}
        self._excluded = {}  # path -> reason: unreadable image or GT, GT that does not fit its image
        self._fresh = False  # records loaded from a previous run are not re-written

    # ---------------------------------------------------------------- resume log
    def _log_path(self, protocol, rank=None):
        rank = comm.get_rank() if rank is None else rank
        suffix = f".rank{rank}" if comm.get_world_size() > 1 else ""
        return Path(self.output_dir) / f"{safe_name(self.dataset_name)}_{protocol}_per_image{suffix}.jsonl"

    def reset(self):
        self._records = {p: {} for p in self.protocols}
        self._excluded = {}
        if not self.output_dir:
            return
        Path(self.output_dir).mkdir(parents=True, exist_ok=True)
        for p in self.protocols:
            logs = sorted(Path(self.output_dir).glob(f"{safe_name(self.dataset_name)}_{p}_per_image*.jsonl"))
            if not self.resume:
                for f in logs:
                    if f == self._log_path(p):
                        f.unlink()
                continue
            stale = False
            for f in logs:
                with open(f) as fh:
                    for line in fh:
                        line = line.strip()
                        if not line:
                            continue
                        try:
                            rec = json.loads(line)
                        except json.JSONDecodeError:  # a line cut by the interruption
                            continue
                        if rec.get("model") != self.model_key:
                            stale = True
                            continue
                        self._records[p][rec["image_id"]] = rec["metrics"]
            if stale:  # scores of another model: rewrite this rank's log with the ones that are kept
                self._log_path(p).unlink(missing_ok=True)
                for image_id, record in self._records[p].items():
                    self._append(p, image_id, record)
            if any(self._records[p].values()):
                logger.info(f"{self.dataset_name}: resuming {p} evaluation, {len(self._records[p])} image(s) "
                            f"already scored in {self.output_dir}")

    def _append(self, protocol, image_id, record):
        if not self.output_dir:
            return
        with open(self._log_path(protocol), "a") as fh:
            fh.write(json.dumps({"image_id": image_id, "metrics": record, "model": self.model_key}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    @staticmethod
    def _image_id(input_dict):
        return str(input_dict.get("image_id", file_stem(input_dict["file_name"])))

    def _record_id(self, input_dict):
        """Key of an image's records: its ``image_id``; ``vos``: ``<sequence>/<frame>``."""
        if self.protocol == "vos":
            return "/".join(video_frame_key(input_dict))
        return self._image_id(input_dict)

    def is_done(self, input_dict):
        """True if this image was already scored under every protocol (skip its inference)."""
        record_id = self._record_id(input_dict)
        return all(record_id in self._records[p] for p in self.protocols)

    # ---------------------------------------------------------------- scoring
    def _gt_file(self, input_dict):
        """The GT mask file of an input (None: a video frame without annotation)."""
        if "sem_seg_file_name" in input_dict:
            return input_dict["sem_seg_file_name"]
        if self._gt_files is None:
            self._gt_files = {str(d["image_id"]): d.get("sem_seg_file_name")
                              for d in DatasetCatalog.get(self.dataset_name)}
        if self.protocol == "vos":  # sparse annotations: frames without a mask are not scored
            return self._gt_files.get(self._image_id(input_dict))
        return self._gt_files[self._image_id(input_dict)]

    @staticmethod
    def _check_size(pred, gt, what, gt_file, input_dict=None):
        """A prediction not at the input's `height` x `width` is a model error (ValueError); a GT of another size
        than its image (and so than a correct prediction) is a data fault (`BadFileError`, image excluded)."""
        size = (input_dict or {}).get("height"), (input_dict or {}).get("width")
        wrong_pred = None not in size and tuple(pred.shape) != size
        if tuple(pred.shape) != tuple(gt.shape):
            raise (ValueError if wrong_pred else BadFileError)(
                f"{what} of size {tuple(pred.shape)} differs from the GT {gt_file} of size {tuple(gt.shape)} "
                "(predictions must be at the original image size)", *([] if wrong_pred else [gt_file])
            )

    def exclude(self, path, reason):
        """Leave an image out of the scores (unreadable, or its GT does not fit); `evaluate` reports how many."""
        self._excluded[str(path)] = " ".join(str(reason).split())
        FAULTS.record(path, reason)

    def process(self, inputs, outputs):
        for input_dict, output in zip(inputs, outputs):
            record_id = self._record_id(input_dict)
            todo = [p for p in self.protocols if record_id not in self._records[p]]
            if not todo:
                continue
            if "bad_file" in input_dict:  # unreadable image (focus.data.faults.ExcludeBadSamples)
                self.exclude(input_dict["bad_file"], input_dict.get("reason", "unreadable"))
                continue
            gt_file = self._gt_file(input_dict)
            if gt_file is None:  # an unannotated video frame
                continue
            try:
                gt = read_mask(gt_file)
                records = self._score(input_dict, output, record_id, todo, gt, gt_file)
            except BadFileError as e:  # unreadable GT, or a GT that does not fit its image: excluded, reported
                self.exclude(e.path or gt_file, e)
                continue
            for p, record in records.items():  # all protocols or none
                self._records[p][record_id] = record
                self._append(p, record_id, record)

    def _score(self, input_dict, output, record_id, todo, gt, gt_file):
        """`{protocol: record}` of one prediction; raises `BadFileError` if the GT does not fit the image."""
        where = input_dict.get("file_name", record_id)
        records = {}
        for p in todo:
            if p == "vos":
                mask = _binary_output(output)
                self._check_size(mask, gt, f"mask of {where}", gt_file, input_dict)
                soft = _soft_output(output) if "foreground" in output else None
                if soft is not None:
                    self._check_size(soft, gt, f"foreground map of {where}", gt_file, input_dict)
                records[p] = vos_frame_metrics(mask, gt, soft=soft)
            else:
                if p in ("standard", "dis"):
                    pred = _soft_output(output)
                    self._check_size(pred, gt, f"foreground map of {where}", gt_file, input_dict)
                else:
                    pm = _binary_output(output)
                    self._check_size(pm, gt, f"mask of {where}", gt_file, input_dict)
                    pred = pm.astype(np.uint8) * 255
                records[p] = score_pair(pred, gt, p, self.task, dataset_name=self.dataset_name)
        return records

    # ---------------------------------------------------------------- results
    def evaluate(self):
        records, excluded = self._records, self._excluded
        if comm.get_world_size() > 1:
            comm.synchronize()
            gathered = comm.gather((records, excluded), dst=0)
            if not comm.is_main_process():
                return {}
            records = {p: dict(itertools.chain.from_iterable(g[0][p].items() for g in gathered))
                       for p in self.protocols}
            excluded = dict(itertools.chain.from_iterable(g[1].items() for g in gathered))
        if excluded:
            listed = "; ".join(f"{p} ({r})" for p, r in sorted(excluded.items())[:10])
            print(f"{self.dataset_name}: {len(excluded)} image(s) excluded from the scores (unreadable, or a GT "
                  f"that does not fit): {listed}" + (" ..." if len(excluded) > 10 else ""), flush=True)
        if not any(records.values()):
            logger.warning(f"FocusEvaluator on {self.dataset_name}: no image was scored")
            return OrderedDict()
        merged = OrderedDict()
        for p in self.protocols:
            names = protocol_metric_names(p, self.task)
            if p == "vos":
                res = vos_result_dict(
                    {tuple(k.rsplit("/", 1)): r for k, r in records[p].items()}, self._video_sequences(),
                    uint8_ids=not self.vos_exact_decay_bins, dataset=self.dataset_name,
                )
                if res["missing"]:
                    logger.warning(f"{self.dataset_name}: {len(res['missing'])} selected frame(s) without a "
                                   f"prediction were left out: {res['missing'][:10]}")
            else:
                res = result_dict(records[p], p, self.task, dataset=self.dataset_name, excluded=dict(excluded))
            title = f"{self.dataset_name}: {p} protocol ({res['num_images']} images" + (
                f", {len(excluded)} excluded)" if excluded else ")")
            if p == "focus":
                title += "  [official names; BER = 0.75 x true BER in %, docs/focus.md#q1]"
            if p == "vos":
                title = (f"{self.dataset_name}: vos protocol ({res['num_sequences']} sequences, "
                         f"{res['num_images']} frames)")
            print(format_table([(self.dataset_name, res["metrics"])], names, title=title), flush=True)
            prefix = "focus/" if self.protocol == "both" and p == "focus" else ""
            for n in names:
                merged[prefix + n] = res["metrics"][n]
            if self.output_dir:
                self._write(p, res, names)
        return OrderedDict({self.dataset_name: merged})

    def _video_sequences(self):
        """``{sequence: [frame, ...]}`` of every annotated frame of the dataset (None if it cannot be listed)."""
        try:
            dicts = DatasetCatalog.get(self.dataset_name)
        except (FileNotFoundError, ValueError) as e:
            logger.warning(f"{self.dataset_name}: cannot list its frames ({e}); using the scored frames")
            return None
        sequences = {}
        for d in dicts:
            if d.get("sem_seg_file_name"):
                seq, frame = video_frame_key(d)
                sequences.setdefault(seq, []).append(frame)
        return sequences

    def _write(self, protocol, res, names):
        """The summary JSON/CSV and the per-image (and per-sequence) CSVs, each written atomically: complete or
        absent, even after Ctrl-C."""
        base = Path(self.output_dir) / f"{safe_name(self.dataset_name)}_{protocol}"

        def csv_rows(rows):
            return lambda fh: csv.writer(fh).writerows(rows)

        atomic_write(f"{base}.json", lambda fh: json.dump(json_safe(res), fh, indent=1), mode="w")
        atomic_write(f"{base}.csv", csv_rows([["dataset"] + names,
                                              [self.dataset_name] + [res["metrics"][n] for n in names]]), mode="w")
        cols = ["J", "F"] + names[len(VOS_METRICS):] if protocol == "vos" else names
        rows = [["image_id"] + cols] + [[i] + [r.get(n, math.nan) for n in cols] for i, r in res["per_image"].items()]
        atomic_write(f"{base}_per_image.csv", csv_rows(rows), mode="w")
        if protocol == "vos":
            rows = [["sequence"] + names + ["num_frames"]] + [
                [seq] + [r[n] for n in names] + [r["num_frames"]] for seq, r in res["per_sequence"].items()]
            atomic_write(f"{base}_per_sequence.csv", csv_rows(rows), mode="w")


def reported_metric_names(protocol, task=None):
    """The metric names `FocusEvaluator.evaluate` reports for one dataset (under "both", the focus protocol's
    prefixed "focus/"), e.g. "Smeasure" under "standard": `TEST.BEST_METRIC` picks one."""
    if protocol == "both":
        return protocol_metric_names("standard", task) + ["focus/" + n for n in protocol_metric_names("focus", task)]
    return protocol_metric_names(protocol, task)


def build_evaluator(cfg, dataset_name, output_dir=None):
    """`FocusEvaluator` for `dataset_name` with protocol ``cfg.TEST.EVAL_PROTOCOL``."""
    return FocusEvaluator(dataset_name, output_dir=output_dir, protocol=cfg.TEST.EVAL_PROTOCOL,
                          vos_exact_decay_bins=cfg.TEST.VOS_EXACT_DECAY_BINS)
