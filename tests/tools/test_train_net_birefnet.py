"""tools/train_net.py end to end with the tiny BiRefNet: train on a synthetic folder dataset, resume (AMP and
backbone gradient checkpointing on), evaluate."""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from focus.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("birefnet_data")
    split = generate_dataset(root, "sod", n_train=4, n_test=2, size=(72, 88), seed=0)
    return {k: f"folder:sod:{v / 'images'}:{v / 'masks'}" for k, v in split.items()}


def _train_net(load_tool, out, folders, *argv):
    tool = load_tool("train_net")
    args = ["--malloc", "default", "--config-file", str(ROOT / "configs" / "birefnet" / "tiny.yaml"), *argv,
            "OUTPUT_DIR", str(out), "DATASETS.TRAIN", f"('{folders['train']}',)",
            "DATASETS.TEST", f"('{folders['test']}',)"]
    return tool.main(tool.get_parser().parse_args(args))


def _iters(out):
    lines = (out / "metrics.json").read_text().splitlines()
    return [json.loads(x) for x in lines if '"iteration"' in x and "total_loss" in x]


def test_tiny_birefnet_trains_resumes_and_evaluates(tmp_path, folders, load_tool, monkeypatch):
    from focus.engine.trainer import Trainer

    starts = []
    train = Trainer.train
    monkeypatch.setattr(Trainer, "train", lambda self: (starts.append(self.start_iter), train(self))[1])
    out = tmp_path / "run"
    _train_net(load_tool, out, folders, "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "2")
    assert (out / "model_final.pth").exists()
    assert {"loss_bce", "loss_iou", "loss_ssim", "loss_gdt"} <= set(_iters(out)[-1])
    _train_net(load_tool, out, folders, "--resume", "SOLVER.MAX_ITER", "6", "SOLVER.CHECKPOINT_PERIOD", "2",
               "SOLVER.AMP.ENABLED", "True", "MODEL.BIREFNET.GRAD_CHECKPOINTING", "True")
    assert starts == [0, 4] and max(r["iteration"] for r in _iters(out)) == 5
    evaluated = _train_net(load_tool, tmp_path / "ev", folders, "--eval-only",
                           "MODEL.WEIGHTS", str(out / "model_final.pth"))
    ((name, metrics),) = evaluated.items()
    assert name.startswith("folder:sod:") and {"Smeasure", "MAE"} <= set(metrics)


def test_tiled_vs_resized_dis_table_from_one_command(tmp_path, folders, load_tool):
    """The documented tiled-vs-resized comparison (docs/birefnet.md#measurements): the same `--eval-only` command
    with `MODEL.BIREFNET.TILE.ENABLED False / True` and the `dis` protocol gives two DIS tables; tiling is active
    on these 72x88 images with 32-pixel tiles, so the tables differ."""
    tables = {}
    for tiled in ("False", "True"):
        evaluated = _train_net(load_tool, tmp_path / f"tile_{tiled}", folders, "--eval-only",
                               "TEST.EVAL_PROTOCOL", "dis", "MODEL.BIREFNET.TILE.ENABLED", tiled,
                               "MODEL.BIREFNET.TILE.SIZE", "32", "MODEL.BIREFNET.TILE.MIN_SCALE", "1.0")
        ((_, tables[tiled]),) = evaluated.items()
        assert {"maxFm", "wFmeasure", "MAE", "Smeasure", "HCE", "mBA"} <= set(tables[tiled])
    assert tables["False"] != tables["True"]
