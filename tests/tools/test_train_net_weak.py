"""tools/train_net.py on weak labels: a tiny WS-SAM (scribbles + pseudo masks + weights) and a tiny FOCUS
(pseudo masks as its dense targets), from a `weak:` dataset built from synthetic masks."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def weak_name(tmp_path_factory):
    from focus.data.io import binarize_mask, read_mask
    from focus.data.sparse import make_scribbles
    from focus.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("weak")
    split = generate_dataset(root, "sod", n_train=4, n_test=0, size=(64, 64), seed=0)["train"]
    (root / "scr").mkdir()
    (root / "pl" / "pseudo").mkdir(parents=True)
    for m in sorted((split / "masks").iterdir()):
        mask = binarize_mask(read_mask(m))
        Image.fromarray(make_scribbles(mask, seed=1)).save(root / "scr" / m.name)
        shutil.copy(m, root / "pl" / "pseudo" / m.name)
    return f"weak:{split / 'images'}:{root / 'scr'}:{root / 'pl'}"


def _train(config, out, name, *extra):
    cmd = [sys.executable, str(ROOT / "tools/train_net.py"), "--config-file", str(ROOT / config),
           "OUTPUT_DIR", str(out), "DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", "()",
           "TEST.EVAL_PERIOD", "0", "SOLVER.CHECKPOINT_PERIOD", "100", "DATALOADER.NUM_WORKERS", "0", *extra]
    res = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    lines = [json.loads(x) for x in (out / "metrics.json").read_text().splitlines() if "total_loss" in x]
    assert lines and all(np.isfinite(x["total_loss"]) for x in lines)
    return lines


def test_tiny_ws_sam_trains_on_scribbles_and_pseudo_labels(tmp_path, weak_name):
    lines = _train("configs/ws_sam/tiny.yaml", tmp_path, weak_name, "SOLVER.MAX_ITER", "3",
                   "INPUT.WS_SAM.SIZE", "64", "MODEL.WS_SAM.SLOT_RESOLUTION", "2")
    assert {"loss_pseudo", "loss_sparse", "loss_ual"} <= set(lines[-1])


@pytest.mark.slow
def test_tiny_focus_trains_on_pseudo_labels(tmp_path, weak_name):
    _train("configs/tiny/focus_tiny.yaml", tmp_path, weak_name, "SOLVER.MAX_ITER", "2",
           "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.CROP.SIZE", "[64,64]", "INPUT.SIZE_DIVISIBILITY", "64",
           "SOLVER.IMS_PER_BATCH", "2", "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", "256")
