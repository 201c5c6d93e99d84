"""The member contract, proven by a deliberately small member defined here (a few convolutions, its own mappers):
it trains, resumes and evaluates through `tools/train_net.py`, and runs through the demo, TTA and the benchmark,
with nothing in `focus/engine/` or `tools/` knowing it (docs/members.md)."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from PIL import Image
from torch import nn

from focus.data.io import read_image, read_mask
from focus.data.mappers import MAPPER_REGISTRY, register_mapper

pytestmark = pytest.mark.usefixtures("single_thread")
SIZE = 32


def _resize(image):
    return np.asarray(Image.fromarray(image).resize((SIZE, SIZE), Image.BILINEAR))


if "toy_test" not in MAPPER_REGISTRY:

    @register_mapper("toy_test")
    class ToyTestMapper:
        """Squash every image to 32x32 (the member's own preprocessing); the output size is the original's."""

        def __init__(self, cfg, is_train=False):
            pass

        def map_image(self, image, **extras):
            tensor = torch.from_numpy(np.ascontiguousarray(_resize(image).transpose(2, 0, 1)))
            return {"image": tensor, "height": image.shape[0], "width": image.shape[1], **extras}

        def __call__(self, dataset_dict):
            return {**dataset_dict, **self.map_image(read_image(dataset_dict["file_name"]))}

    @register_mapper("toy_train")
    class ToyTrainMapper(ToyTestMapper):
        """The test mapping plus the 32x32 binary target."""

        def __call__(self, dataset_dict):
            out = super().__call__(dataset_dict)
            mask = read_mask(dataset_dict["sem_seg_file_name"])
            out["target"] = torch.from_numpy(_resize(np.repeat(mask[:, :, None], 3, 2))[:, :, 0] > 128).float()
            return out

    @META_ARCH_REGISTRY.register()
    class ToyMember(nn.Module):
        """Three convolutions; logits at 32x32, resized to each input's height/width in eval."""

        @configurable
        def __init__(self, *, channels, pixel_mean, pixel_std):
            super().__init__()
            self.net = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(channels, 1, 1))
            self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
            self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

        @classmethod
        def from_config(cls, cfg):
            return {"channels": 8, "pixel_mean": cfg.MODEL.PIXEL_MEAN, "pixel_std": cfg.MODEL.PIXEL_STD}

        def forward(self, batched_inputs):
            x = torch.stack([(b["image"].float() - self.pixel_mean) / self.pixel_std for b in batched_inputs])
            logits = self.net(x)
            if self.training:
                target = torch.stack([b["target"] for b in batched_inputs])[:, None]
                return {"loss_bce": F.binary_cross_entropy_with_logits(logits, target)}
            outputs = []
            for logit, b in zip(logits, batched_inputs):
                size = (b.get("height", SIZE), b.get("width", SIZE))
                fg = F.interpolate(logit[None].float(), size, mode="bilinear", align_corners=False)[0, 0].sigmoid()
                outputs.append({"foreground": fg, "mask": (fg > 0.5).to(torch.uint8)})
            return outputs


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A folder dataset (8 train, 3 test pairs) and the toy member's config file."""
    from focus.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("toy")
    split = generate_dataset(root / "data", "sod", n_train=8, n_test=3, size=(48, 40), seed=0)
    train = f"folder:sod:{split['train'] / 'images'}:{split['train'] / 'masks'}"
    test = f"folder:sod:{split['test'] / 'images'}:{split['test'] / 'masks'}"
    config = root / "toy.yaml"
    config.write_text(
        "MODEL:\n  META_ARCHITECTURE: ToyMember\n  DEVICE: cpu\n"
        "INPUT:\n  DATASET_MAPPER_NAME: toy_train\n  TEST_MAPPER_NAME: toy_test\n"
        f"DATASETS:\n  TRAIN: ('{train}',)\n  TEST: ('{test}',)\n"
        "DATALOADER:\n  NUM_WORKERS: 0\n"
        "SOLVER:\n  IMS_PER_BATCH: 2\n  BASE_LR: 0.01\n  MAX_ITER: 4\n  CHECKPOINT_PERIOD: 2\n"
        "  LR_SCHEDULER_NAME: WarmupPolyLR\n  WARMUP_ITERS: 0\n"
        "TEST:\n  EVAL_PROTOCOL: both\n  EVAL_PERIOD: 0\n"
        "SEED: 7\n"
    )
    return root, config, split


def _train_net(load_tool, *argv):
    tool = load_tool("train_net")
    return tool.main(tool.get_parser().parse_args(["--malloc", "default", *argv]))


def _scores(out):
    (path,) = (out / "inference").glob("*/*_standard.json")
    return json.loads(path.read_text())["metrics"]


def test_trains_resumes_and_evaluates(setup, load_tool, tmp_path, monkeypatch):
    from focus.engine.trainer import Trainer

    starts = []
    train = Trainer.train
    monkeypatch.setattr(Trainer, "train", lambda self: (starts.append(self.start_iter), train(self))[1])
    root, config, _ = setup
    out = tmp_path / "run"
    _train_net(load_tool, "--config-file", str(config), "OUTPUT_DIR", str(out))
    assert (out / "model_final.pth").is_file() and (out / "model_0000001.pth").is_file()
    assert {"Smeasure", "MAE"} <= set(_scores(out))
    assert list((out / "inference").glob("*/*_focus.json"))  # both protocols: the member's `mask` is scored

    # resume: a longer schedule continues from the last checkpoint (iteration 4), not from scratch
    _train_net(load_tool, "--config-file", str(config), "--resume", "OUTPUT_DIR", str(out), "SOLVER.MAX_ITER", "6")
    assert starts == [0, 4] and (out / "model_0000005.pth").is_file()

    evaluated = _train_net(load_tool, "--config-file", str(config), "--eval-only", "OUTPUT_DIR", str(tmp_path / "ev"),
                           "MODEL.WEIGHTS", str(out / "model_final.pth"))
    ((name, metrics),) = evaluated.items()
    assert name.startswith("folder:sod:") and {"Smeasure", "focus/SM"} <= set(metrics)
    assert metrics["Smeasure"] == pytest.approx(_scores(out)["Smeasure"])


def test_demo_tta_and_benchmark(setup, load_tool, load_cfg, tmp_path, capsys, monkeypatch):
    root, config, split = setup
    demo = load_tool("demo")
    out = tmp_path / "demo"
    images = split["test"] / "images"
    assert demo.main(["--config-file", str(config), "--input", str(images), "--output", str(out),
                      "--malloc", "default"]) == 0
    for kind, mode in (("mask", "L"), ("soft", "L"), ("cutout", "RGBA"), ("overlay", "RGB")):
        with Image.open(out / f"sod_test_00000_{kind}.png") as im:
            assert (im.mode, im.size) == (mode, (40, 48))

    from focus.engine.predictor import Predictor
    from focus.engine.tta import TTAModel

    cfg = load_cfg(str(config), "TEST.AUG.MIN_SIZES", "(24, 32)", "TEST.AUG.FLIP", "True")
    predictor = Predictor(cfg)
    inputs = [predictor.mapper.map_image(read_image(str(sorted(images.iterdir())[0])))]
    (merged,) = TTAModel(cfg, predictor.model)(inputs)
    assert merged["foreground"].shape == (48, 40) and merged["mask"].shape == (48, 40)

    bench = load_tool("benchmark")
    lin = nn.Linear(4, 4)
    monkeypatch.setattr(bench, "build_calibration", lambda device="cpu": (type("C", (), {
        "forward_features": staticmethod(lin)})(), torch.zeros(1, 4)))
    common = ["--config-file", str(config), "--size", "40", "--runs", "1", "--warmup", "0", "--no-rss",
              "--malloc", "default"]
    res = bench.main(common + ["--dtype", "bf16", "--real-images", "2", "--real-images-dir", str(images)])
    assert res["meta_architecture"] == "ToyMember" and res["real_images"]["images"] == 2
    assert bench.main(common + ["--train"])["latency_s"] > 0


def test_eval_only_with_tta(setup, load_tool, tmp_path):
    """`--eval-only` with `TEST.AUG.ENABLED`: the TTA wrapper around a model prepared for inference scores every
    image (it used to end the evaluation by asking that model to train, which it refuses)."""
    root, config, _ = setup
    evaluated = _train_net(load_tool, "--config-file", str(config), "--eval-only", "OUTPUT_DIR", str(tmp_path / "ev"),
                           "TEST.AUG.ENABLED", "True", "TEST.AUG.MIN_SIZES", "(24, 32)", "TEST.AUG.FLIP", "True")
    names = sorted(evaluated)
    assert len(names) == 2 and names[1] == names[0] + "_TTA"
    assert {"Smeasure", "focus/SM"} <= set(evaluated[names[1]])
