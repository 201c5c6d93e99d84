"""FocusEvaluator: detectron2 DatasetEvaluator semantics, outputs, resume, size check, equality with score_folder."""
import json
import math

import cv2
import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog

from focus import add_focus_config
from focus.data import register_folder_dataset
from focus.evaluation import FocusEvaluator, build_evaluator, score_folder

pytestmark = pytest.mark.filterwarnings("ignore:This class will be removed")


@pytest.fixture()
def dataset(tmp_path):
    """6 synthetic GT masks (one empty, one full), soft predictions as PNGs and as model outputs."""
    rng = np.random.default_rng(0)
    (tmp_path / "im").mkdir()
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    (tmp_path / "bin").mkdir()
    for i in range(6):
        h, w = 40 + i, 50
        gt = np.zeros((h, w), np.uint8)
        if i == 4:
            gt[:] = 255
        elif i != 5:
            gt[5 + i:25, 10:30 + i] = 255
        pred = np.clip(cv2.GaussianBlur(gt.astype(np.float32), (0, 0), 3) + rng.normal(0, 30, gt.shape), 0, 255)
        pred = pred.astype(np.uint8)
        cv2.imwrite(str(tmp_path / "im" / f"s{i}.jpg"), np.zeros((h, w, 3), np.uint8))
        cv2.imwrite(str(tmp_path / "gt" / f"s{i}.png"), gt)
        cv2.imwrite(str(tmp_path / "pred" / f"s{i}.png"), pred)
        cv2.imwrite(str(tmp_path / "bin" / f"s{i}.png"), (pred > 128).astype(np.uint8) * 255)
    name = register_folder_dataset("eval_test_ds", tmp_path / "im", tmp_path / "gt", "sd", overwrite=True)
    return name, tmp_path


def _io(name, tmp_path):
    for d in DatasetCatalog.get(name):
        pred = cv2.imread(str(tmp_path / "pred" / f"{d['image_id']}.png"), cv2.IMREAD_GRAYSCALE)
        mask = torch.from_numpy((pred > 128).astype(np.int32))
        yield d, {"foreground": torch.from_numpy(pred.astype(np.float32) / 255), "mask": mask}


def _run(ev, pairs):
    ev.reset()
    for d, out in pairs:
        if not ev.is_done(d):
            ev.process([d], [out])
    return ev.evaluate()


def test_both_protocols_match_score_folder_and_write_files(dataset, capsys):
    name, tmp = dataset
    ev = FocusEvaluator(name, output_dir=str(tmp / "out"), protocol="both")
    res = _run(ev, _io(name, tmp))[name]
    std = score_folder(tmp / "pred", tmp / "gt", "standard", task="sd")["metrics"]
    foc = score_folder(tmp / "bin", tmp / "gt", "focus", task="sd")["metrics"]
    assert list(std) == ["Smeasure", "wFmeasure", "MAE", "adpEm", "meanEm", "maxEm", "adpFm", "meanFm", "maxFm",
                         "BER", "IoU", "Dice"]
    for k, v in std.items():
        assert res[k] == pytest.approx(v, abs=1e-12), k
    for k, v in foc.items():
        assert (math.isnan(v) and math.isnan(res[f"focus/{k}"])) or res[f"focus/{k}"] == pytest.approx(v, abs=1e-12)
    printed = capsys.readouterr().out
    assert "standard protocol" in printed and "focus protocol" in printed
    js = json.loads((tmp / "out" / "eval_test_ds_focus.json").read_text())
    assert js["protocol"] == "focus" and set(js["per_image"]) == {f"s{i}" for i in range(6)}
    assert sorted(js["undefined_per_image"]) == ["s4", "s5"]  # full and empty GT: no BER/AUC
    assert (tmp / "out" / "eval_test_ds_standard.csv").read_text().startswith("dataset,Smeasure")
    assert len((tmp / "out" / "eval_test_ds_standard_per_image.csv").read_text().splitlines()) == 7


def test_resume_skips_scored_images(dataset):
    name, tmp = dataset
    pairs = list(_io(name, tmp))
    full = _run(FocusEvaluator(name, output_dir=str(tmp / "full"), protocol="both"), pairs)
    # "interrupted" after 3 images
    ev = FocusEvaluator(name, output_dir=str(tmp / "part"), protocol="both")
    ev.reset()
    for d, out in pairs[:3]:
        ev.process([d], [out])
    ev2 = FocusEvaluator(name, output_dir=str(tmp / "part"), protocol="both")
    ev2.reset()
    assert [ev2.is_done(d) for d, _ in pairs] == [True] * 3 + [False] * 3
    calls = []
    for d, out in pairs:
        if not ev2.is_done(d):
            calls.append(d["image_id"])
            ev2.process([d], [out])
    assert calls == ["s3", "s4", "s5"]
    resumed = ev2.evaluate()
    for k, v in full[name].items():
        assert (math.isnan(v) and math.isnan(resumed[name][k])) or resumed[name][k] == v, k
    # resume=False starts afresh
    ev3 = FocusEvaluator(name, output_dir=str(tmp / "part"), protocol="both", resume=False)
    ev3.reset()
    assert not ev3.is_done(pairs[0][0])


def test_resume_only_scores_of_the_same_model(dataset):
    """A later evaluation of other weights in the same folder (the periodic evaluations of a training run) must not
    reuse the earlier model's scores."""
    name, tmp = dataset
    pairs = list(_io(name, tmp))
    ev = FocusEvaluator(name, output_dir=str(tmp / "keyed"), model_key="weights-a")
    _run(ev, pairs[:4])
    other = FocusEvaluator(name, output_dir=str(tmp / "keyed"), model_key="weights-b")
    other.reset()
    assert not any(other.is_done(d) for d, _ in pairs)
    same = FocusEvaluator(name, output_dir=str(tmp / "keyed"), model_key="weights-b")
    other.process(*zip(*pairs[:2]))
    same.reset()
    assert [same.is_done(d) for d, _ in pairs] == [True] * 2 + [False] * 4


def test_prediction_size_mismatch_names_the_file(dataset):
    name, tmp = dataset
    d, out = next(_io(name, tmp))
    ev = FocusEvaluator(name, protocol="standard")
    ev.reset()
    with pytest.raises(ValueError, match=r"s0\.png"):
        ev.process([d], [{"foreground": out["foreground"][:-1]}])


def test_gt_from_dataset_when_mapper_dropped_it(dataset):
    name, tmp = dataset
    d, out = next(_io(name, tmp))
    d = {k: v for k, v in d.items() if k != "sem_seg_file_name"}
    ev = FocusEvaluator(name, protocol="focus")
    ev.reset()
    ev.process([d], [out])
    assert set(ev.evaluate()[name]) == {"MAE", "SM", "EM", "WFM", "BER", "F1", "AUC", "FM"}


def test_build_evaluator_reads_protocol(dataset):
    name, _ = dataset
    cfg = add_focus_config(get_cfg())
    cfg.TEST.EVAL_PROTOCOL = "focus"
    ev = build_evaluator(cfg, name, None)
    assert ev.protocols == ("focus",) and ev.task == "sd"
