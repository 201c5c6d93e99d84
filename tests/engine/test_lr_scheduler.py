"""PeriodicCosineLR equals PyTorch's CosineAnnealingLR stepped before every epoch and run past T_max."""
import torch

from focus.engine.lr_scheduler import PeriodicCosineLR


def test_periodic_cosine_matches_official_epoch_schedule():
    steps, t_max, epochs, base, end = 3, 40, 159, 1e-4, 1e-6
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=base)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max, eta_min=end)
    ours_opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=base)
    ours = PeriodicCosineLR(ours_opt, steps, t_max, end)
    for epoch in range(1, epochs + 1):
        opt.step()
        ref.step()  # the official loop steps the scheduler at the start of each epoch
        for _ in range(steps):
            assert abs(ours_opt.param_groups[0]["lr"] - opt.param_groups[0]["lr"]) < 1e-12, epoch
            ours_opt.step()
            ours.step()
    lrs = [base * ours.factor(e * steps, base) for e in (39, 79)]
    assert abs(lrs[0] - end) < 1e-12 and abs(lrs[1] - base) < 1e-12
