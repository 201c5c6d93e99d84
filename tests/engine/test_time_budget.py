"""`SOLVER.MAX_TIME` (a training-time budget) and `TEST.BEST_METRIC` (best weights of the periodic evaluations),
through tools/train_net.py on the tiny config, with a fake clock: every training step takes one second."""
import json
from pathlib import Path

import pytest
import torch
from detectron2.utils.events import EventStorage

from focus.engine.hooks import BudgetMetricPrinter, TimeBudget
from focus.engine.trainer import best_metric_key
from focus.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
TINY = str(ROOT / "configs" / "tiny" / "focus_tiny.yaml")
SMALL = [
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.CROP.SIZE", "[64,64]", "INPUT.SIZE_DIVISIBILITY", "64",
    "INPUT.MIN_SIZE_TEST", "64", "SOLVER.IMS_PER_BATCH", "2", "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", "256",
    "SOLVER.CHECKPOINT_PERIOD", "100", "TEST.EVAL_PERIOD", "2", "TEST.BEST_METRIC", "Smeasure",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from focus.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("budget_data") / "synthetic"
    generate_dataset(root, "sod", n_train=6, n_test=3, size=(64, 64), seed=0)
    r = root / "sod"
    return [
        "DATASETS.TRAIN", f"('folder:sod:{r}/train/images:{r}/train/masks',)",
        "DATASETS.TEST", f"('folder:sod:{r}/test/images:{r}/test/masks[:2]',)",  # the first 2 of 3 test images
    ]


@pytest.fixture
def one_second_steps(monkeypatch):
    ticks = iter(range(10**6))
    monkeypatch.setattr(TimeBudget, "clock", staticmethod(lambda: float(next(ticks))))  # read twice per step


def _train(load_tool, out, data, *opts, resume=False):
    """Run tools/train_net.py in-process; returns the lines it added to OUTPUT_DIR/log.txt."""
    log = out / "log.txt"
    start = log.stat().st_size if log.exists() else 0
    argv = ["--config-file", TINY, *(["--resume"] if resume else []), "OUTPUT_DIR", str(out), *SMALL, *data, *opts]
    load_tool("train_net").cli(argv)
    return log.read_text()[start:]


def _ckpt(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def test_time_budget_ends_like_the_last_iteration_and_resumes(tmp_path, data, load_tool, one_second_steps,
                                                              single_thread):
    out = tmp_path / "run"
    text = _train(load_tool, out, data, "SOLVER.MAX_ITER", "20", "SOLVER.MAX_TIME", "4")
    assert "time budget of 4 s reached at iteration 4/20 (4 s of training)" in text
    assert "Exception during training" not in text and "Training time: 4.0 s of a 4 s budget" in text
    # evaluated after iterations 2 (periodic) and 4 (final, once although a multiple of TEST.EVAL_PERIOD), each
    # time on the new weights only
    assert text.count("Evaluation results for") == 2
    assert text.count("Inference: 2 images run, 0 reused") == 2
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    final = _ckpt(out / "model_final.pth")
    assert final["iteration"] == 3 and final["trainer"]["hooks"]["TimeBudget"] == {"elapsed": 4.0}
    iters = [json.loads(x)["iteration"] for x in (out / "metrics.json").read_text().splitlines() if "total_loss" in x]
    assert max(iters) == 3
    best = json.loads((out / "model_best.json").read_text())
    assert best["metric"].endswith("test/masks[:2]/Smeasure") and best["iterations"] in (2, 4)
    assert f"model_best.pth: best {best['metric']} {best['value']:.4f} after {best['iterations']} iterations" in text
    assert set(_ckpt(out / "model_best.pth")) == {"model", "iteration"}  # weights only

    # --resume with the budget used up: nothing trained, the final evaluation again (its scores reused)
    text = _train(load_tool, out, data, "SOLVER.MAX_ITER", "20", "SOLVER.MAX_TIME", "4", resume=True)
    assert "its whole time budget of 4 s: nothing to train" in text and "Inference: 0 images run, 2 reused" in text
    assert _ckpt(out / "model_final.pth")["iteration"] == 3

    # --resume: on to SOLVER.MAX_ITER, ending as usual; the training time counts on from the checkpoint's
    text = _train(load_tool, out, data, "SOLVER.MAX_ITER", "7", "SOLVER.MAX_TIME", "0", resume=True)
    assert "Starting training from iteration 4" in text and f"best {best['metric']} so far" in text
    assert "time budget" not in text and "Training time: 7.0 s (iterations only" in text
    assert text.count("Evaluation results for") == 2  # after 6 (periodic) and 7 (final)
    assert _ckpt(out / "model_final.pth")["iteration"] == 6
    assert json.loads((out / "model_best.json").read_text())["value"] >= best["value"]
    assert (out / "last_checkpoint").read_text() == "model_final.pth"


def test_best_metric_key_is_checked_before_training(load_cfg, data):
    cfg = load_cfg("tiny/focus_tiny.yaml", *data, "TEST.BEST_METRIC", "Smeasure")
    assert best_metric_key(cfg) == cfg.DATASETS.TEST[0] + "/Smeasure"
    assert best_metric_key(load_cfg("tiny/focus_tiny.yaml", *data)) is None
    cfg = load_cfg("tiny/focus_tiny.yaml", *data, "TEST.BEST_METRIC", "SM", "TEST.EVAL_PROTOCOL", "both")
    with pytest.raises(UserError, match="'SM' is not reported .* choose one of Smeasure, .*focus/SM"):
        best_metric_key(cfg)
    cfg.TEST.BEST_METRIC = "focus/SM"
    assert best_metric_key(cfg).endswith("/focus/SM")
    cfg.TEST.BEST_MODE = "highest"
    with pytest.raises(UserError, match="BEST_MODE must be 'max' or 'min'"):
        best_metric_key(cfg)
    cfg = load_cfg("tiny/focus_tiny.yaml", "TEST.BEST_METRIC", "MAE", "DATASETS.TEST", "()")
    with pytest.raises(UserError, match="set DATASETS.TEST"):
        best_metric_key(cfg)


def test_eta_is_capped_by_the_budget_left():
    budget = TimeBudget(max_time=100)
    budget.elapsed = 90.0
    printer = BudgetMetricPrinter(max_iter=1000, time_budget=budget)
    with EventStorage(start_iter=10) as storage:
        for i in range(10, 20):
            storage.iter = i
            storage.put_scalar("time", 1.0)
        assert printer._get_eta(storage) == "0:00:10 (time budget)"  # 980 iterations of 1 s, 10 s of budget left
        budget.elapsed = 0.0
        budget.max_time = 10**5
        assert printer._get_eta(storage) == "0:16:20"  # the iterations end first
    assert BudgetMetricPrinter(max_iter=1000)._get_eta is not None and TimeBudget().left() is None
    with pytest.raises(ValueError, match="MAX_TIME must be >= 0"):
        TimeBudget(-1)
