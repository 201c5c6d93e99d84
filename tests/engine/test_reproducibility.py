"""Reproducible training (docs/reproducibility.md): the tiny config sets `SEED`, so two runs of
`tools/train_net.py` give bit-identical losses; without a seed they differ."""
import json
from pathlib import Path

import pytest
import torch

from focus.engine.cli import run_main

SMALL = [
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.CROP.SIZE", "[64,64]", "INPUT.SIZE_DIVISIBILITY", "64",
    "SOLVER.IMS_PER_BATCH", "2", "MODEL.MASK_FORMER.TRAIN_NUM_POINTS", "256", "SOLVER.MAX_ITER", "3",
    "SOLVER.CHECKPOINT_PERIOD", "1000", "TEST.EVAL_PERIOD", "0", "DATASETS.TEST", "()",
    "DATALOADER.NUM_WORKERS", "0",
]

TINY = Path(__file__).resolve().parents[2] / "configs" / "tiny" / "focus_tiny.yaml"

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def train_ds(tmp_path_factory):
    from focus.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, "sod", n_train=8, n_test=1, size=(64, 64), seed=0)
    return f"('folder:sod:{root}/sod/train/images:{root}/sod/train/masks',)"


def _losses(load_tool, out, train_ds, *opts):
    argv = ["--config-file", str(TINY), "OUTPUT_DIR", str(out), *SMALL, "DATASETS.TRAIN", train_ds,
            *opts]
    assert run_main(load_tool("train_net").cli, argv) == 0
    rows = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k.startswith("loss") or k == "total_loss"} for r in rows if "total_loss" in r]


def test_tiny_config_is_seeded(load_cfg):
    assert load_cfg("tiny/focus_tiny.yaml").SEED >= 0


def test_two_seeded_runs_are_bit_identical(load_tool, tmp_path, train_ds):
    first = _losses(load_tool, tmp_path / "a", train_ds)
    second = _losses(load_tool, tmp_path / "b", train_ds)
    assert first and first == second  # exact: every loss term (detectron2 logs the median of the 3 iterations)
    a = torch.load(tmp_path / "a" / "model_final.pth", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "model_final.pth", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the trained weights too


def test_another_seed_changes_the_losses(load_tool, tmp_path, train_ds):
    seeded = _losses(load_tool, tmp_path / "a", train_ds)
    other = _losses(load_tool, tmp_path / "b", train_ds, "SEED", "7")
    assert seeded != other
