"""`tools/train_net.py --eval-only` with ``TEST.EVAL_PROTOCOL dis`` and ``vos`` gives exactly what
`tools/evaluate_folder.py` gives on the same predictions saved as PNGs (a parameter-free member whose foreground
is the image itself, so the "predictions" are the input files)."""
import json
import shutil

import cv2
import numpy as np
import pytest
import torch
from detectron2.modeling import META_ARCH_REGISTRY
from torch import nn

from focus.data.io import read_image
from focus.data.mappers import MAPPER_REGISTRY, register_mapper
from focus.evaluation import DIS_METRICS, VOS_METRICS, score_folder, score_video_folder

pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.filterwarnings("ignore:This class will be removed")]

if "evalproto_identity" not in MAPPER_REGISTRY:

    @register_mapper("evalproto_identity")
    class IdentityTestMapper:
        """The image as it is (the dataset dict's fields, e.g. ``sequence``, are kept)."""

        def __init__(self, cfg, is_train=False):
            pass

        def map_image(self, image, **extras):
            return {"image": torch.from_numpy(image.copy()), "height": image.shape[0], "width": image.shape[1],
                    **extras}

        def __call__(self, dataset_dict):
            return {**dataset_dict, **self.map_image(read_image(dataset_dict["file_name"]))}

    @META_ARCH_REGISTRY.register()
    class ImageIsForeground(nn.Module):
        """foreground = red channel / 255; mask = foreground > 0.5 (the contract's default)."""

        def __init__(self, cfg):
            super().__init__()
            self.dummy = nn.Parameter(torch.zeros(1))

        def forward(self, batched_inputs):
            outs = []
            for b in batched_inputs:
                fg = b["image"][:, :, 0].float() / 255
                outs.append({"foreground": fg, "mask": (fg > 0.5).to(torch.uint8)})
            return outs


def _soft(gt, rng, sigma):
    k = np.clip(cv2.GaussianBlur(gt.astype(np.float64), (0, 0), sigma) + rng.normal(0, 20, gt.shape), 0, 255)
    k = np.round(k).astype(np.uint8)
    k[k == 128] = 127  # the model's mask (> 0.5) and evaluate_folder's binarisation of soft maps (> 128) agree
    return k


def _eval_only(load_tool, tmp_path, dataset, protocol):
    config = tmp_path / f"{protocol}.yaml"
    config.write_text(
        "MODEL:\n  META_ARCHITECTURE: ImageIsForeground\n  DEVICE: cpu\n  WEIGHTS: ''\n"
        "INPUT:\n  TEST_MAPPER_NAME: evalproto_identity\n"
        f"DATASETS:\n  TRAIN: ()\n  TEST: ('{dataset}',)\n"
        "DATALOADER:\n  NUM_WORKERS: 0\n"
        f"TEST:\n  EVAL_PROTOCOL: {protocol}\n"
    )
    tool = load_tool("train_net")
    args = tool.get_parser().parse_args(["--malloc", "default", "--config-file", str(config), "--eval-only",
                                         "OUTPUT_DIR", str(tmp_path / f"out_{protocol}")])
    ((name, metrics),) = tool.main(args).items()
    return metrics, list((tmp_path / f"out_{protocol}" / "inference").glob(f"*/*_{protocol}.json"))


def test_eval_only_dis(load_tool, tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "im").mkdir()
    (tmp_path / "gt").mkdir()
    for i in range(3):
        gt = np.zeros((50, 70), np.uint8)
        cv2.ellipse(gt, (35, 25), (20 - i, 12), 10 * i, 0, 360, 255, -1)
        gt[2:20, 60 + i] = 255  # a thin part
        cv2.imwrite(str(tmp_path / "im" / f"x{i}.png"), np.repeat(_soft(gt, rng, 1 + i)[:, :, None], 3, 2))
        cv2.imwrite(str(tmp_path / "gt" / f"x{i}.png"), gt)
    metrics, files = _eval_only(load_tool, tmp_path, f"folder:dis:{tmp_path / 'im'}:{tmp_path / 'gt'}", "dis")
    ref = score_folder(tmp_path / "im", tmp_path / "gt", protocol="dis")["metrics"]
    assert list(metrics) == list(DIS_METRICS)
    assert all(metrics[k] == ref[k] for k in DIS_METRICS), (metrics, ref)
    assert len(files) == 1 and json.loads(files[0].read_text())["protocol"] == "dis"


def test_eval_only_vos(load_tool, tmp_path):
    rng = np.random.default_rng(1)
    root, preds = tmp_path / "video", tmp_path / "preds"
    for seq, n in (("s1", 5), ("s2", 4)):
        (root / seq / "frames").mkdir(parents=True)
        (root / seq / "masks").mkdir()
        (preds / seq).mkdir(parents=True)
        for t in range(n):
            gt = np.zeros((40, 56), np.uint8)
            cv2.circle(gt, (18 + 3 * t, 20), 9, 255, -1)
            soft = _soft(np.roll(gt, t, axis=1), rng, 1.5)
            cv2.imwrite(str(root / seq / "frames" / f"{t:05d}.png"), np.repeat(soft[:, :, None], 3, 2))
            cv2.imwrite(str(root / seq / "masks" / f"{t:05d}.png"), gt)
            shutil.copy(root / seq / "frames" / f"{t:05d}.png", preds / seq / f"{t:05d}.png")
    metrics, files = _eval_only(load_tool, tmp_path, f"folder:vos:{root}", "vos")
    ref = score_video_folder(preds, root)
    assert list(metrics) == ref["metric_names"] and list(metrics)[:7] == list(VOS_METRICS)
    for k, v in ref["metrics"].items():
        assert metrics[k] == pytest.approx(v, abs=1e-12), k
    js = json.loads(files[0].read_text())
    assert set(js["per_sequence"]) == {"s1", "s2"} and js["evaluated_frames"]["s2"] == ["00001", "00002"]
