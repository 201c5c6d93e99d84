"""Learning-rate schedules beyond detectron2's and DeepLab's, selected by `SOLVER.LR_SCHEDULER_NAME`."""
import math

from fvcore.common.param_scheduler import ParamScheduler

__all__ = ["PeriodicCosineParamScheduler", "build_periodic_cosine"]


class PeriodicCosineParamScheduler(ParamScheduler):
    """`end + (1 - end) (1 + cos(pi k S / T)) / 2` as a multiplier of the base LR, with `k = floor(it / S) + 1`.

    This is PyTorch's `CosineAnnealingLR(T_max=T/S)` stepped once at the *start* of every block of `S` iterations
    (an epoch) and continued past `T_max`, so the LR goes down to `end` and back up every `2 T` iterations (WS-SAM's
    official schedule, docs/ws_sam.md#q7). `S = 1` gives a smooth periodic cosine.
    """

    WHERE_EPSILON = 1e-6

    def __init__(self, period_iters, step_iters, end_multiplier, max_iter):
        if period_iters <= 0 or step_iters <= 0:
            raise ValueError("SOLVER.COSINE_PERIOD_ITERS and SOLVER.COSINE_STEP_ITERS must be > 0")
        self.period, self.step, self.end, self.max_iter = period_iters, step_iters, end_multiplier, max_iter

    def at(self, iteration):
        k = int(iteration) // self.step + 1
        return self.end + (1 - self.end) * (1 + math.cos(math.pi * k * self.step / self.period)) / 2

    def __call__(self, where):
        return self.at(round(where * self.max_iter))


def build_periodic_cosine(cfg, optimizer):
    """detectron2 `LRMultiplier` over `PeriodicCosineParamScheduler` from `SOLVER.COSINE_PERIOD_ITERS`,
    `SOLVER.COSINE_STEP_ITERS`, `SOLVER.BASE_LR_END` and `SOLVER.MAX_ITER`."""
    from detectron2.solver import LRMultiplier

    s = cfg.SOLVER
    sched = PeriodicCosineParamScheduler(s.COSINE_PERIOD_ITERS, s.COSINE_STEP_ITERS, s.BASE_LR_END / s.BASE_LR,
                                         s.MAX_ITER)
    return LRMultiplier(optimizer, multiplier=sched, max_iter=s.MAX_ITER)
