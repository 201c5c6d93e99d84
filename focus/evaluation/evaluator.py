"""`FocusEvaluator`: the one detectron2 `DatasetEvaluator` for every task, two protocols, resumable.

Replaces the official `UNIFIEDEvaluator` (spec §9.1): no COCO JSON; the GT is the mask file of each dataset
dict (binarised ``> 128``), read when the image is processed. Protocols (see `focus.evaluation.metrics`):

* ``"standard"``: py_sod_metrics on ``outputs[i]["foreground"]`` (soft ``(H, W)`` map in [0, 1], quantised
  to 8 bits with ``round(p·255)``, i.e. exactly what saving it as a PNG and running
  `tools/evaluate_folder.py` gives);
* ``"focus"``: the official metrics on ``outputs[i]["mask"]``, the member's binary ``(H, W)`` mask;
* ``"both"``: both; focus metrics are then reported as ``"focus/<name>"``.

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

from ..data.catalog import ensure_registered
from ..data.io import file_stem, read_mask
from .folder import format_table, json_safe, result_dict, score_pair
from .metrics import FOCUS_METRICS, standard_metric_names

__all__ = ["FocusEvaluator", "build_evaluator", "safe_name"]

logger = logging.getLogger(__name__)

PROTOCOLS = ("standard", "focus", "both")


def safe_name(name):
    """A file-name-safe form of a dataset name (`folder:` names hold whole paths): at most 120 characters."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[-120:]


class FocusEvaluator(DatasetEvaluator):
    """Evaluate foreground maps / binary masks of one dataset under the ``standard`` and/or ``focus`` protocol.

    Args:
        dataset_name: a registered dataset (or a ``folder:...`` name, registered on use).
        output_dir: where the resume log, JSON and CSV files go (None: nothing written, no resume).
        protocol: "standard" (default), "focus" or "both".
        task: selects the standard extras (BER/IoU/Dice for sd/dbd, F1/AUC for fd); default: the
            dataset's metadata task.
        resume: reload already scored images from ``output_dir`` (False starts the log afresh).
        model_key: identifies the model being evaluated (`focus.engine.trainer.model_fingerprint`; set by the
            inference loop): only scores of the same model are resumed, so the periodic evaluations of a training
            run, or of another checkpoint, never reuse each other's scores.
    """

    def __init__(self, dataset_name, output_dir=None, protocol="standard", task=None, resume=True, model_key=None):
        if protocol not in PROTOCOLS:
            raise ValueError(f"Unknown evaluation protocol {protocol!r}; expected one of {PROTOCOLS}")
        self.dataset_name = ensure_registered(dataset_name)
        self.metadata = MetadataCatalog.get(self.dataset_name)
        self.task = task if task is not None else getattr(self.metadata, "task", None)
        self.protocols = ("standard", "focus") if protocol == "both" else (protocol,)
        self.protocol = protocol
        self.output_dir = output_dir
        self.resume = resume
        self.model_key = model_key
        self._gt_files = None
        self._records = {p: {} for p in self.protocols}
        self._fresh = False  # records loaded from a previous run are not re-written

    # ---------------------------------------------------------------- resume log
    def _log_path(self, protocol, rank=None):
        rank = comm.get_rank() if rank is None else rank
        suffix = f".rank{rank}" if comm.get_world_size() > 1 else ""
        return Path(self.output_dir) / f"{safe_name(self.dataset_name)}_{protocol}_per_image{suffix}.jsonl"

    def reset(self):
        self._records = {p: {} for p in self.protocols}
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
                own = {k: v for k, v in self._records[p].items()}
                self._log_path(p).unlink(missing_ok=True)
                for image_id, record in own.items():
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

    def is_done(self, input_dict):
        """True if this image was already scored under every protocol (skip its inference)."""
        image_id = self._image_id(input_dict)
        return all(image_id in self._records[p] for p in self.protocols)

    # ---------------------------------------------------------------- scoring
    def _gt_file(self, input_dict):
        if "sem_seg_file_name" in input_dict:
            return input_dict["sem_seg_file_name"]
        if self._gt_files is None:
            self._gt_files = {str(d["image_id"]): d["sem_seg_file_name"] for d in DatasetCatalog.get(self.dataset_name)}
        return self._gt_files[self._image_id(input_dict)]

    @staticmethod
    def _check_size(pred, gt, what, gt_file):
        if tuple(pred.shape) != tuple(gt.shape):
            raise ValueError(
                f"{what} of size {tuple(pred.shape)} differs from the GT {gt_file} of size {tuple(gt.shape)} "
                "(predictions must be at the original image size)"
            )

    def process(self, inputs, outputs):
        for input_dict, output in zip(inputs, outputs):
            image_id = self._image_id(input_dict)
            todo = [p for p in self.protocols if image_id not in self._records[p]]
            if not todo:
                continue
            gt_file = self._gt_file(input_dict)
            gt = read_mask(gt_file)
            for p in todo:
                if p == "standard":
                    fg = output["foreground"]
                    fg = fg.detach().float().cpu().numpy() if isinstance(fg, torch.Tensor) else np.asarray(fg)
                    fg = np.squeeze(fg)
                    self._check_size(fg, gt, f"foreground map of {input_dict.get('file_name', image_id)}", gt_file)
                    pred = np.round(np.clip(fg, 0.0, 1.0) * 255).astype(np.uint8)
                else:
                    pm = output["mask"]
                    pm = pm.detach().cpu().numpy() if isinstance(pm, torch.Tensor) else np.asarray(pm)
                    pm = np.squeeze(pm)
                    self._check_size(pm, gt, f"binary mask of {input_dict.get('file_name', image_id)}", gt_file)
                    pred = (pm != 0).astype(np.uint8) * 255
                record = score_pair(pred, gt, p, self.task, dataset_name=self.dataset_name)
                self._records[p][image_id] = record
                self._append(p, image_id, record)

    # ---------------------------------------------------------------- results
    def evaluate(self):
        records = self._records
        if comm.get_world_size() > 1:
            comm.synchronize()
            gathered = comm.gather(records, dst=0)
            if not comm.is_main_process():
                return {}
            records = {p: dict(itertools.chain.from_iterable(g[p].items() for g in gathered)) for p in self.protocols}
        if not any(records.values()):
            logger.warning(f"FocusEvaluator on {self.dataset_name}: no image was scored")
            return OrderedDict()
        merged = OrderedDict()
        for p in self.protocols:
            res = result_dict(records[p], p, self.task, dataset=self.dataset_name)
            names = list(standard_metric_names(self.task) if p == "standard" else FOCUS_METRICS)
            title = f"{self.dataset_name}: {p} protocol ({len(records[p])} images)"
            if p == "focus":
                title += "  [official names; BER = 0.75 x true BER in %, spec §13 item 1]"
            print(format_table([(self.dataset_name, res["metrics"])], names, title=title), flush=True)
            prefix = "focus/" if self.protocol == "both" and p == "focus" else ""
            for n in names:
                merged[prefix + n] = res["metrics"][n]
            if self.output_dir:
                self._write(p, res, names)
        return OrderedDict({self.dataset_name: merged})

    def _write(self, protocol, res, names):
        base = Path(self.output_dir) / f"{safe_name(self.dataset_name)}_{protocol}"
        with open(f"{base}.json", "w") as fh:
            json.dump(json_safe(res), fh, indent=1)
        with open(f"{base}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["dataset"] + names)
            w.writerow([self.dataset_name] + [res["metrics"][n] for n in names])
        with open(f"{base}_per_image.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["image_id"] + names)
            for image_id, r in res["per_image"].items():
                w.writerow([image_id] + [r.get(n, math.nan) for n in names])


def build_evaluator(cfg, dataset_name, output_dir=None):
    """`FocusEvaluator` for `dataset_name` with protocol ``cfg.TEST.EVAL_PROTOCOL``."""
    return FocusEvaluator(dataset_name, output_dir=output_dir, protocol=cfg.TEST.EVAL_PROTOCOL)
