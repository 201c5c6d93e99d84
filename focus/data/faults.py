"""Contain data faults: a corrupt image or a mask that does not fit its image never ends a run.

* `SkipBadSamples(mapper, num_samples, max_fraction)` wraps a training mapper: a sample whose files raise
  `focus.errors.BadFileError` is skipped (the mapper returns None, which detectron2's training loader drops),
  with one warning naming the file; when more than `max_fraction` of the `num_samples` samples are bad
  (`DATALOADER.MAX_BAD_SAMPLE_FRACTION`) the run stops with a `DatasetError` that says so.
* `ExcludeBadSamples(mapper)` wraps a test mapper: a bad sample comes back as ``{"bad_file": path, "reason":
  ...}`` so that the inference loop reports and excludes it instead of failing.
* `FaultLog` records each bad file once (path -> reason), in memory and, when given a file, as lines appended to
  it, so that data-loader worker processes report to the main process (their memory is not shared).
"""
import logging
import os

from ..errors import BadFileError, DatasetError

__all__ = ["FaultLog", "SkipBadSamples", "ExcludeBadSamples", "FAULTS"]

logger = logging.getLogger(__name__)


class FaultLog:
    """Bad input files seen by this run: `record(path, reason)` warns once per file; `faults()` lists all."""

    def __init__(self, path=None):
        self.path = path
        self._seen = {}

    def reset(self, path=None):
        """Forget everything; new records also go to `path` (truncated) if given."""
        self._seen = {}
        self.path = path
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            open(path, "w").close()

    def record(self, path, reason):
        path = str(path)
        if path in self._seen:
            return
        reason = " ".join(str(reason).split())
        self._seen[path] = reason
        logger.warning(f"Skipped bad sample {path}: {reason}")
        if self.path:
            with open(self.path, "a", encoding="utf-8") as f:  # one short O_APPEND write per line
                f.write(f"{path}\t{reason}\n")

    def faults(self):
        """`{path: reason}` of this process and, if a log file is set, of every process writing to it."""
        out = dict(self._seen)
        if self.path and os.path.isfile(self.path):
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    path, _, reason = line.rstrip("\n").partition("\t")
                    if path:
                        out.setdefault(path, reason)
        return out

    def __len__(self):
        return len(self.faults())


FAULTS = FaultLog()  # the process-wide log used by the trainer, the evaluation loop and the catalog


class SkipBadSamples:
    """Training mapper wrapper: skip (return None) samples whose files are unreadable or do not fit."""

    def __init__(self, mapper, num_samples, max_fraction=0.2, log=None):
        self.mapper = mapper
        self.num_samples = max(int(num_samples), 1)
        self.max_fraction = float(max_fraction)
        self.log = log if log is not None else FAULTS

    def __call__(self, dataset_dict):
        try:
            return self.mapper(dataset_dict)
        except BadFileError as e:
            self.log.record(e.path or dataset_dict.get("file_name"), e)
            bad = len(self.log)
            if bad > self.max_fraction * self.num_samples:
                raise DatasetError(
                    f"{bad} of {self.num_samples} training samples are unreadable or have a mask that does not fit "
                    f"(more than DATALOADER.MAX_BAD_SAMPLE_FRACTION = {self.max_fraction:g}); latest: "
                    f"{e.path or dataset_dict.get('file_name')}. Fix or remove those files, or raise the key"
                ) from None
            return None


class ExcludeBadSamples:
    """Test mapper wrapper: a sample whose image cannot be read becomes ``{"bad_file", "reason", ...}``."""

    def __init__(self, mapper, log=None):
        self.mapper = mapper
        self.log = log if log is not None else FAULTS

    def __getattr__(self, name):  # map_image, resize, ... of the wrapped mapper
        mapper = self.__dict__.get("mapper")
        if mapper is None:
            raise AttributeError(name)
        return getattr(mapper, name)

    def __call__(self, dataset_dict):
        try:
            return self.mapper(dataset_dict)
        except BadFileError as e:
            path = e.path or dataset_dict.get("file_name")
            self.log.record(path, e)
            return {**{k: v for k, v in dataset_dict.items()}, "bad_file": path, "reason": str(e)}
