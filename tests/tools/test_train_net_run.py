"""tools/train_net.py on the tiny RUN: train, resume, evaluate under both protocols."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from focus.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("datasets")
    generate_dataset(root / "synthetic", "cod", n_train=4, n_test=2, size=(64, 48), seed=0)
    return root


def _run(out, data_root, *extra):
    cmd = [sys.executable, str(ROOT / "tools" / "train_net.py"), "--config-file",
           str(ROOT / "configs" / "run" / "tiny.yaml"), *extra, "OUTPUT_DIR", str(out)]
    env = {**os.environ, "DETECTRON2_DATASETS": str(data_root), "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


@pytest.mark.slow  # a few fp32 RUN steps at 384 px (the smallest legal input): minutes on 2 cores
def test_tiny_run_trains_resumes_and_evaluates(tmp_path, data_root):
    out = tmp_path / "run"
    _run(out, data_root, "SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "2")
    assert (out / "model_final.pth").exists()
    log = _run(out, data_root, "--resume", "SOLVER.MAX_ITER", "3")
    assert "Starting training from iteration 2" in log
    rows = [json.loads(x) for x in (out / "metrics.json").read_text().splitlines()]
    iters = [r["iteration"] for r in rows if "total_loss" in r]
    assert max(iters) == 2
    assert all("run_loss_reconstruction_not_added" in r for r in rows if "total_loss" in r)
    assert not any("loss_reconstruction" in r for r in rows)
    log = _run(out, data_root, "--eval-only", "MODEL.WEIGHTS", str(out / "model_final.pth"),
               "TEST.EVAL_PROTOCOL", "both")
    assert "synthetic_cod_test" in log and "Smeasure" in log and "copypaste" in log
