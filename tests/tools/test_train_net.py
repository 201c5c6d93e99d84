"""tools/train_net.py end to end on the tiny config: train, kill, `--resume`, `--eval-only`."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL = [
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.CROP.SIZE", "[64,64]", "INPUT.SIZE_DIVISIBILITY", "64",
    "INPUT.MIN_SIZE_TEST", "64", "SOLVER.IMS_PER_BATCH", "2", "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", "256",
    "DATASETS.TRAIN", "('synthetic_sod_train',)", "DATASETS.TEST", "('synthetic_sod_test',)",
]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from focus.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("datasets")
    generate_dataset(root / "synthetic", "sod", n_train=8, n_test=3, size=(64, 64), seed=0)
    return root


def _cmd(out, *extra):
    return [sys.executable, str(ROOT / "tools" / "train_net.py"), "--config-file",
            str(ROOT / "configs" / "tiny" / "focus_tiny.yaml"), *extra, "OUTPUT_DIR", str(out), *SMALL]


def _env(data_root):
    return {**os.environ, "DETECTRON2_DATASETS": str(data_root), "OMP_NUM_THREADS": "1"}


def _iters(out):
    lines = (out / "metrics.json").read_text().splitlines()
    return [json.loads(x)["iteration"] for x in lines if '"iteration"' in x and "total_loss" in x]


def test_train_kill_resume_then_eval_only(tmp_path, data_root):
    out = tmp_path / "run"
    env = _env(data_root)
    max_iter = ["SOLVER.MAX_ITER", "8", "SOLVER.CHECKPOINT_PERIOD", "2", "TEST.EVAL_PERIOD", "0"]
    proc = subprocess.Popen(_cmd(out, *max_iter[:0]) + max_iter, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not (out / "model_0000003.pth").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.stdout.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    tag = (out / "last_checkpoint").read_text()
    assert tag in ("model_0000003.pth", "model_0000005.pth")
    last = int(tag[6:13])

    res = subprocess.run(_cmd(out, "--resume") + max_iter, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    log = res.stdout + res.stderr
    assert f"Starting training from iteration {last + 1}" in log
    assert (out / "model_final.pth").exists()
    assert max(_iters(out)) == 7  # the same 8-iteration run, continued

    res = subprocess.run(_cmd(out, "--eval-only") + ["MODEL.WEIGHTS", str(out / "model_final.pth")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    log = res.stdout + res.stderr
    assert "Smeasure" in log and "synthetic_sod_test" in log and "copypaste" in log
