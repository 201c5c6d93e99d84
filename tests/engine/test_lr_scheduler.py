"""PeriodicCosineLR equals PyTorch's CosineAnnealingLR stepped before every epoch and run past T_max."""
import torch

from focus.engine.lr_scheduler import PeriodicCosineParamScheduler


def test_periodic_cosine_matches_official_epoch_schedule():
    steps, t_max, epochs, base, end = 3, 40, 159, 1e-4, 1e-6
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=base)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max, eta_min=end)
    ours = PeriodicCosineParamScheduler(t_max * steps, steps, end / base, epochs * steps)
    for epoch in range(1, epochs + 1):
        ref.step()  # the official loop steps the scheduler at the start of each epoch
        for i in range(steps):
            it = (epoch - 1) * steps + i
            assert abs(base * ours.at(it) - opt.param_groups[0]["lr"]) < 1e-12, (epoch, i)
    assert abs(base * ours.at(39 * steps) - end) < 1e-12 and abs(base * ours.at(79 * steps) - base) < 1e-12
