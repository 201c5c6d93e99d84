"""Generic solver options used by official recipes: the epoch-wise step-decay + recursive cosine schedule and
gradient clipping after the optimizer step."""
import pytest
import torch


def test_epoch_schedule_values():
    from focus.engine.lr_scheduler import epoch_step_decay_recursive_cosine

    lrs = epoch_step_decay_recursive_cosine(1e-4, 170, 80, 0.1, 20, 1e-5)
    expected = {1: 9.95e-5, 10: 8.78e-5, 19: 3.26e-5, 20: 1.0e-5, 21: 1.006e-4, 22: 3.68e-4, 23: 2.10e-4,
                25: 1.48e-4, 40: 1.0e-4, 80: 1.0e-5, 160: 9.4e-7}
    for e, v in expected.items():
        assert lrs[e] == pytest.approx(v, rel=2e-2), e
    assert lrs[41] == pytest.approx(lrs[1]) and lrs[62] == pytest.approx(lrs[22])


def test_scheduler_constant_within_epoch():
    from focus.engine.lr_scheduler import EpochStepDecayRecursiveCosineLR, epoch_step_decay_recursive_cosine

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([{"params": [p], "lr": 1e-4}])
    sched = EpochStepDecayRecursiveCosineLR(opt, 100, 4, 80, 0.1, 20, 1e-5)
    table = epoch_step_decay_recursive_cosine(1e-4, 30, 80, 0.1, 20, 1e-5)
    seen = []
    for _ in range(12):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([table[1]] * 4 + [table[2]] * 4 + [table[3]] * 4)


@pytest.mark.parametrize("after", [True, False])
def test_clip_after_step(after):
    from detectron2.config import get_cfg

    from focus.config import add_focus_config
    from focus.engine.trainer import build_optimizer

    cfg = add_focus_config(get_cfg())
    cfg.SOLVER.OPTIMIZER, cfg.SOLVER.BASE_LR, cfg.SOLVER.WEIGHT_DECAY = "SGD", 1.0, 0.0
    cfg.SOLVER.MOMENTUM = 0.0
    cfg.SOLVER.CLIP_GRADIENTS.ENABLED = True
    cfg.SOLVER.CLIP_GRADIENTS.CLIP_TYPE, cfg.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = "value", 0.5
    cfg.SOLVER.CLIP_GRADIENTS.AFTER_STEP = after
    model = torch.nn.Linear(1, 1, bias=False)
    model.weight.data.fill_(0.0)
    opt = build_optimizer(cfg, model)
    model.weight.grad = torch.full_like(model.weight, 3.0)
    opt.step()
    # after the step: the full gradient was applied, then clamped; before: the clamped one was applied
    assert model.weight.item() == pytest.approx(-3.0 if after else -0.5)
    assert model.weight.grad.item() == pytest.approx(0.5)
