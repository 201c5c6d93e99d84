"""tools/train_net.py end to end with the tiny BiRefNet: train on a synthetic folder dataset, resume, evaluate."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from focus.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("birefnet_data")
    split = generate_dataset(root, "sod", n_train=4, n_test=2, size=(72, 88), seed=0)
    return {k: f"folder:sod:{v / 'images'}:{v / 'masks'}" for k, v in split.items()}


def _run(out, folders, *extra):
    cmd = [sys.executable, str(ROOT / "tools" / "train_net.py"), "--config-file",
           str(ROOT / "configs" / "birefnet" / "tiny.yaml"), *extra, "OUTPUT_DIR", str(out),
           "DATASETS.TRAIN", f"('{folders['train']}',)", "DATASETS.TEST", f"('{folders['test']}',)"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


def _iters(out):
    lines = (out / "metrics.json").read_text().splitlines()
    return [json.loads(x) for x in lines if '"iteration"' in x and "total_loss" in x]


def test_tiny_birefnet_trains_resumes_and_evaluates(tmp_path, folders):
    out = tmp_path / "run"
    _run(out, folders, "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "2")
    assert (out / "model_final.pth").exists()
    rows = _iters(out)
    assert {"loss_bce", "loss_iou", "loss_ssim", "loss_gdt"} <= set(rows[-1])
    log = _run(out, folders, "--resume", "SOLVER.MAX_ITER", "6", "SOLVER.CHECKPOINT_PERIOD", "2",
               "SOLVER.AMP.ENABLED", "True", "MODEL.BIREFNET.GRAD_CHECKPOINTING", "True")
    assert "Starting training from iteration 4" in log
    assert max(r["iteration"] for r in _iters(out)) == 5
    log = _run(out, folders, "--eval-only", "MODEL.WEIGHTS", str(out / "model_final.pth"))
    assert "Smeasure" in log and "copypaste" in log
