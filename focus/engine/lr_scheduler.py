"""Learning-rate schedules beyond detectron2's, selected by `SOLVER.LR_SCHEDULER_NAME` (member-agnostic)."""
import math

import torch

__all__ = [
    "LR_SCHEDULERS",
    "EpochStepDecayRecursiveCosineLR",
    "epoch_step_decay_recursive_cosine",
    "PeriodicCosineLR",
    "build_lr_scheduler",
]


def epoch_step_decay_recursive_cosine(base_lr, epochs, step_decay, gamma, t_max, eta_min):
    """Per-epoch learning rates (index e = 1..epochs; index 0 = base_lr) of the loop

        for e in 1..epochs:  lr = base_lr * gamma ** (e // step_decay);  CosineAnnealingLR(t_max, eta_min).step()

    computed with PyTorch's own scheduler, whose recursive update rescales the lr just reset by the step decay
    (hence spikes above base_lr). Returns a list of floats."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=base_lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max, eta_min=eta_min)
    lrs = [base_lr]
    for e in range(1, epochs + 1):
        for g in opt.param_groups:
            g["lr"] = base_lr * gamma ** (e // step_decay)
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


class EpochStepDecayRecursiveCosineLR(torch.optim.lr_scheduler.LRScheduler):
    """Iteration-stepped scheduler whose lr is constant within an epoch of `epoch_iters` iterations and follows
    `epoch_step_decay_recursive_cosine` across epochs (iteration i belongs to epoch i // epoch_iters + 1);
    each parameter group keeps its ratio to the optimizer's base lr."""

    def __init__(self, optimizer, max_iter, epoch_iters, step_decay, gamma, t_max, eta_min, last_epoch=-1):
        if epoch_iters <= 0:
            raise ValueError(f"SOLVER.EPOCH_ITERS must be > 0 for this scheduler, got {epoch_iters}")
        self.epoch_iters = epoch_iters
        base = max(g.get("initial_lr", g["lr"]) for g in optimizer.param_groups)
        self._base = base
        epochs = math.ceil(max(max_iter, 1) / epoch_iters) + 1
        self._table = epoch_step_decay_recursive_cosine(base, epochs, step_decay, gamma, t_max, eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        epoch = min(self.last_epoch // self.epoch_iters + 1, len(self._table) - 1)
        factor = self._table[epoch] / self._base
        return [b * factor for b in self.base_lrs]


class PeriodicCosineLR(torch.optim.lr_scheduler.LRScheduler):
    """PyTorch's `CosineAnnealingLR(t_max, eta_min)` stepped once at the *start* of every epoch of `epoch_iters`
    iterations and continued past `t_max`: constant within an epoch, the lr of epoch e (1-based) is
    `eta_min + (base - eta_min) (1 + cos(pi e / t_max)) / 2`, so it goes down to `eta_min` and back up every
    `2 t_max` epochs (WS-SAM's official schedule, docs/ws_sam.md#q7). Each group keeps its ratio to the base lr."""

    def __init__(self, optimizer, epoch_iters, t_max, eta_min, last_epoch=-1):
        if epoch_iters <= 0 or t_max <= 0:
            raise ValueError(f"SOLVER.EPOCH_ITERS and SOLVER.EPOCH_COSINE_T_MAX must be > 0, got {epoch_iters}, {t_max}")
        self.epoch_iters, self.t_max, self.eta_min = epoch_iters, t_max, eta_min
        super().__init__(optimizer, last_epoch)

    def factor(self, iteration, base):
        epoch = iteration // self.epoch_iters + 1
        lr = self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * epoch / self.t_max)) / 2
        return lr / base

    def get_lr(self):
        base = max(self.base_lrs)
        f = self.factor(self.last_epoch, base)
        return [b * f for b in self.base_lrs]


LR_SCHEDULERS = {"EpochStepDecayRecursiveCosineLR", "PeriodicCosineLR"}


def build_lr_scheduler(cfg, optimizer):
    """The scheduler `cfg.SOLVER.LR_SCHEDULER_NAME` names, when it is one of `LR_SCHEDULERS`."""
    name = cfg.SOLVER.LR_SCHEDULER_NAME
    if name == "EpochStepDecayRecursiveCosineLR":
        s = cfg.SOLVER
        return EpochStepDecayRecursiveCosineLR(optimizer, s.MAX_ITER, s.EPOCH_ITERS, s.EPOCH_STEP_DECAY,
                                               s.EPOCH_STEP_GAMMA, s.EPOCH_COSINE_T_MAX, s.EPOCH_COSINE_ETA_MIN)
    if name == "PeriodicCosineLR":
        s = cfg.SOLVER
        return PeriodicCosineLR(optimizer, s.EPOCH_ITERS, s.EPOCH_COSINE_T_MAX, s.EPOCH_COSINE_ETA_MIN)
    raise KeyError(f"SOLVER.LR_SCHEDULER_NAME {name!r} is not one of {sorted(LR_SCHEDULERS)}")
