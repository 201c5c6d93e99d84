"""Training hooks of `focus.engine.trainer.Trainer`, for any member (docs/focus.md#training-options).

* `TimeBudget` (`SOLVER.MAX_TIME`): counts the training time and ends training after the iteration at which it
  passes the budget, the way the last iteration of `SOLVER.MAX_ITER` ends it (final checkpoint, final evaluation).
* `BestCheckpointer` (`TEST.BEST_METRIC`, `TEST.BEST_MODE`): after each evaluation, keeps the weights with the best
  value of one metric in `model_best.pth` (and `model_best.json`).
* `BudgetMetricPrinter`: detectron2's metric line, with an ETA that the time budget caps.
"""
import datetime
import json
import logging
import math
import os
import time

from detectron2.engine import HookBase
from detectron2.utils import comm
from detectron2.utils.events import CommonMetricPrinter

from ..utils.file_io import atomic_write

__all__ = ["TimeBudget", "TimeBudgetReached", "BestCheckpointer", "BudgetMetricPrinter"]

logger = logging.getLogger(__name__)


class TimeBudgetReached(Exception):
    """Raised by `TimeBudget` before the iteration that follows the one which used up the budget; the trainer's
    `after_train` hooks then run as after the last iteration, and `Trainer.train` returns normally."""


class TimeBudget(HookBase):
    """Count the training time, and stop training once it exceeds `max_time` seconds (0: count only).

    Training time is the sum, over iterations, of the time from this hook's `before_step` to its `after_step`:
    loading the batch, forward, backward and optimizer step. Placed right after detectron2's `IterationTimer`, it
    excludes the hooks that run after a step (checkpoints, evaluation, metric writers) and the start-up (model
    build, weight loading). It is cumulative over `--resume`: the count is saved in every checkpoint.

    When the count exceeds the budget after iteration `i` (0-based) and `i + 1 < max_iter`, the trainer's `max_iter`
    (and that of every hook that copied it at `before_train`, such as detectron2's `PeriodicCheckpointer`) becomes
    `i + 1` before the other hooks see the step: `model_final.pth` is written, the final evaluation runs once, and
    training ends as after the last iteration. The learning-rate schedule is left alone (it follows
    `SOLVER.MAX_ITER`). With several processes, the processes agree: training stops when any process is over. A run
    resumed with its budget already used up trains nothing and ends as a finished run does.
    """

    clock = staticmethod(time.perf_counter)  # seconds; a test may substitute a fake clock

    def __init__(self, max_time=0.0):
        self.max_time = float(max_time)
        if self.max_time < 0 or math.isnan(self.max_time):
            raise ValueError(f"SOLVER.MAX_TIME must be >= 0 seconds (0: no budget), got {max_time}")
        self.elapsed = 0.0
        self._step_start = None
        self._stop = False
        self._schedule_iters = None
        self.stopped_at = None  # the iteration count at which the budget ended training

    def before_train(self):
        self._schedule_iters = self.trainer.max_iter
        if self.max_time > 0 and self.elapsed >= self.max_time:
            # resumed after the budget ran out: nothing to train, ended as detectron2 ends a finished run (the final
            # evaluation again, whose scores the evaluator reuses for the same weights)
            self._stop = True
            self.stopped_at = self.trainer.max_iter = self.trainer.start_iter
            logger.warning(f"SOLVER.MAX_TIME: the checkpoint already trained {self.elapsed:.0f} s, its whole time "
                           f"budget of {self.max_time:g} s: nothing to train (raise SOLVER.MAX_TIME, or set it to 0, "
                           f"to train on)")

    def before_step(self):
        if self._stop:
            raise TimeBudgetReached(f"time budget of {self.max_time:g} s reached")
        self._step_start = self.clock()

    def after_step(self):
        self.elapsed += self.clock() - self._step_start
        self.trainer.storage.put_scalar("train_time", self.elapsed, smoothing_hint=False)
        if self.max_time <= 0:
            return
        done = self.trainer.iter + 1
        if done >= self.trainer.max_iter:
            return
        stop = self.elapsed >= self.max_time
        if comm.get_world_size() > 1:
            stop = any(comm.all_gather(stop))
        if not stop:
            return
        self._stop = True
        self.stopped_at = done
        for h in self.trainer._hooks:  # hooks that copied max_iter in before_train (PeriodicCheckpointer)
            if h is not self and isinstance(getattr(h, "max_iter", None), int):
                h.max_iter = done
        self.trainer.max_iter = done
        logger.info(f"time budget of {self.max_time:g} s reached at iteration {done}/{self._schedule_iters} "
                    f"({self.elapsed:.0f} s of training): stopping with the final checkpoint and evaluation")

    def after_train(self):
        if self._schedule_iters is not None:
            budget = f" of a {self.max_time:g} s budget" if self.max_time > 0 else ""
            logger.info(f"Training time: {self.elapsed:.1f} s{budget} (iterations only: data, forward, backward, "
                        f"update; cumulative over resumes){_peak_memory()}")

    def left(self):
        """Seconds of budget left (None without a budget)."""
        return max(self.max_time - self.elapsed, 0.0) if self.max_time > 0 else None

    def state_dict(self):
        return {"elapsed": self.elapsed}

    def load_state_dict(self, state_dict):
        self.elapsed = float(state_dict.get("elapsed", 0.0))


def _peak_memory():
    """"peak resident memory of this process so far: X GB" (`getrusage`: kB on Linux, bytes on macOS), or "" where
    `resource` does not exist (Windows)."""
    try:
        import resource
    except ImportError:
        return ""
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**30 if sys.platform == "darwin" else 2**20)
    return f"; peak resident memory of this process so far: {peak:.2f} GB (data-loader workers not included)"


class BestCheckpointer(HookBase):
    """Save the weights to `<file_prefix>.pth` each time an evaluation improves `metric_key` (a key of the event
    storage, e.g. "<dataset>/Smeasure" as `EvalHook` stores the trainer's `test` results).

    Place it after the `EvalHook`. It reacts to a value of `metric_key` stored at the current iteration, so it
    follows whatever schedule the evaluation has (periodic, and once after the last iteration), never scores the
    same evaluation twice and needs no period of its own. The file holds `{"model": state_dict, "iteration": i}`
    (weights only, for `MODEL.WEIGHTS`; it is written atomically and never becomes the `last_checkpoint` that
    `--resume` continues from). `<file_prefix>.json` records the metric, its value and the iteration count, so a
    resumed run (`start_iter > 0`) keeps comparing against the best so far.
    """

    def __init__(self, checkpointer, metric_key, mode="max", file_prefix="model_best"):
        if mode not in ("max", "min"):
            raise ValueError(f"TEST.BEST_MODE must be 'max' or 'min', got {mode!r}")
        self.checkpointer = checkpointer
        self.metric_key = metric_key
        self.mode = mode
        self.file_prefix = file_prefix
        self.best = None  # (value, iterations)
        self._checked_iter = None
        self._seen = False

    @property
    def _json(self):
        return os.path.join(self.checkpointer.save_dir, self.file_prefix + ".json")

    def before_train(self):
        if self.trainer.start_iter > 0 and os.path.isfile(self._json):
            with open(self._json) as f:
                rec = json.load(f)
            if rec.get("metric") == self.metric_key and rec.get("mode") == self.mode:
                self.best = (float(rec["value"]), int(rec["iterations"]))
                logger.info(f"{self.file_prefix}: best {self.metric_key} so far {self.best[0]:.4f} after "
                            f"{self.best[1]} iterations")

    def after_step(self):
        self._check(self.trainer.iter + 1)

    def after_train(self):
        self._check(self.trainer.iter)
        if not self._seen and self.trainer.iter + 1 >= self.trainer.max_iter:
            logger.warning(f"TEST.BEST_METRIC: no evaluation stored {self.metric_key!r}; no {self.file_prefix}.pth")

    def _check(self, iterations):
        storage = self.trainer.storage
        entry = storage.latest().get(self.metric_key)
        if entry is None or entry[1] != storage.iter or self._checked_iter == storage.iter:
            return
        self._checked_iter = storage.iter
        self._seen = True
        value = float(entry[0])
        if math.isnan(value) or math.isinf(value):
            logger.warning(f"{self.file_prefix}: {self.metric_key} is {value} after {iterations} iterations; ignored")
            return
        best = self.best
        better = best is None or (value > best[0] if self.mode == "max" else value < best[0])
        if not better:
            logger.info(f"{self.file_prefix}: {self.metric_key} {value:.4f} after {iterations} iterations, not better "
                        f"than {best[0]:.4f} after {best[1]}")
            return
        self.checkpointer.save(self.file_prefix, tag_last=False, model_only=True, iteration=iterations - 1)
        rec = {"metric": self.metric_key, "mode": self.mode, "value": value, "iterations": iterations}
        if comm.is_main_process():
            atomic_write(self._json, lambda f: f.write(json.dumps(rec, indent=1) + "\n"), mode="w")
        previous = f" (previous best {best[0]:.4f} after {best[1]})" if best is not None else ""
        logger.info(f"{self.file_prefix}.pth: best {self.metric_key} {value:.4f} after {iterations} "
                    f"iterations{previous}")
        self.best = (value, iterations)


class BudgetMetricPrinter(CommonMetricPrinter):
    """detectron2's metric line (all losses, their total, lr, times); the ETA, estimated from `SOLVER.MAX_ITER`, is
    capped by the time budget left and then reads e.g. "eta: 0:12:03 (time budget)"."""

    def __init__(self, max_iter=None, time_budget=None, window_size=20):
        super().__init__(max_iter, window_size)
        self._time_budget = time_budget

    def write(self):
        from detectron2.utils.events import get_event_storage

        stopped_at = self._time_budget.stopped_at if self._time_budget is not None else None
        if stopped_at is not None and get_event_storage().iter >= stopped_at:
            return  # training ended (detectron2's printer knows only MAX_ITER as the end)
        super().write()

    def _get_eta(self, storage):
        eta = super()._get_eta(storage)
        left = self._time_budget.left() if self._time_budget is not None else None
        if left is None:
            return eta
        entry = storage.latest().get("eta_seconds")
        if entry is not None and entry[1] == storage.iter and entry[0] <= left:
            return eta
        return f"{datetime.timedelta(seconds=int(left))} (time budget)"
