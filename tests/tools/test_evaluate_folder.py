"""tools/evaluate_folder.py: JSON shape, resize of mismatched predictions, missing/extra files."""
import json

import cv2
import numpy as np
import pytest

from focus.evaluation import score_folder

pytestmark = pytest.mark.filterwarnings("ignore:This class will be removed")


@pytest.fixture(scope="module")
def tool(load_tool):
    return load_tool("evaluate_folder")


@pytest.fixture()
def folders(tmp_path):
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    for i in range(4):
        gt = np.zeros((40, 60), np.uint8)
        gt[10:30, 15 + i:45] = 255
        cv2.imwrite(str(gt_dir / f"im{i}.png"), gt)
        pred = cv2.GaussianBlur(gt, (0, 0), 2)
        if i == 1:  # half-size prediction: resized bilinearly to the GT
            pred = cv2.resize(pred, (30, 20), interpolation=cv2.INTER_AREA)
        if i != 3:  # im3 has no prediction
            cv2.imwrite(str(pred_dir / (f"im{i}.png" if i != 2 else "im2.BMP")), pred)
    cv2.imwrite(str(pred_dir / "stray.png"), np.zeros((40, 60), np.uint8))
    return gt_dir, pred_dir


@pytest.mark.parametrize("protocol,names", [
    ("standard", ["Smeasure", "wFmeasure", "MAE", "adpEm", "meanEm", "maxEm", "adpFm", "meanFm", "maxFm"]),
    ("focus", ["MAE", "SM", "EM", "WFM", "BER", "F1", "AUC", "FM"]),
    ("dis", ["maxFm", "wFmeasure", "MAE", "Smeasure", "meanEm", "HCE", "maxEm", "meanFm", "adpEm", "adpFm", "mBA",
             "maxBIoU", "meanBIoU"]),
])
def test_cli_json(folders, tmp_path, capsys, protocol, names, tool):
    gt_dir, pred_dir = folders
    out = tmp_path / "res.json"
    tool.main(["--pred", str(pred_dir), "--gt", str(gt_dir), "--protocol", protocol, "--task", "cod",
                  "--output", str(out)])
    js = json.loads(out.read_text())
    assert js["protocol"] == protocol and list(js["metrics"]) == names
    assert set(js["per_image"]) == {"im0", "im1", "im2"}
    assert set(js["per_image"]["im0"]) == set(names)
    assert js["resized"] == ["im1"] and js["missing"] == ["im3"] and js["extra"] == ["stray"]
    printed = capsys.readouterr().out
    assert "resized" in printed and "im3" in printed and "stray" in printed


def test_resized_prediction_is_scored_as_bilinear_upsample(folders, tmp_path):
    gt_dir, pred_dir = folders
    small = cv2.imread(str(pred_dir / "im1.png"), cv2.IMREAD_GRAYSCALE)
    up = cv2.resize(small, (60, 40), interpolation=cv2.INTER_LINEAR)
    (tmp_path / "p2").mkdir()
    cv2.imwrite(str(tmp_path / "p2" / "im1.png"), up)
    a = score_folder(pred_dir, gt_dir, "standard", task="sod")["per_image"]["im1"]
    b = score_folder(tmp_path / "p2", gt_dir, "standard", task="sod")["per_image"]["im1"]
    assert a == b


def test_task_extras(folders):
    gt_dir, pred_dir = folders
    assert list(score_folder(pred_dir, gt_dir, "standard", task="fd")["metrics"])[-2:] == ["F1", "AUC"]
    assert list(score_folder(pred_dir, gt_dir, "standard", task="dbd")["metrics"])[-3:] == ["BER", "IoU", "Dice"]


def test_cli_vos_json(tool, tmp_path, capsys):
    """``<pred>/<sequence>/<frame>.png`` against ``<gt>/<sequence>/<frame>.png``: dataset means in ``metrics``,
    per-sequence values beside them, the first and last frame of each sequence not evaluated."""
    for seq, n in (("a", 5), ("b", 4)):
        (tmp_path / "gt" / seq).mkdir(parents=True)
        (tmp_path / "pred" / seq).mkdir(parents=True)
        for t in range(n):
            gt = np.zeros((40, 60), np.uint8)
            gt[10:30, 10 + t:40 + t] = 255
            cv2.imwrite(str(tmp_path / "gt" / seq / f"{t:05d}.png"), gt)
            cv2.imwrite(str(tmp_path / "pred" / seq / f"{t:05d}.png"), np.roll(gt, 2 * t, axis=1))
    out = tmp_path / "vos.json"
    tool.main(["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--protocol", "vos",
                  "--output", str(out)])
    js = json.loads(out.read_text())
    assert js["protocol"] == "vos"
    assert list(js["metrics"])[:7] == ["J_mean", "J_recall", "J_decay", "F_mean", "F_recall", "F_decay", "J&F_mean"]
    assert list(js["metrics"])[7:] == ["Smeasure", "wFmeasure", "MAE", "adpEm", "meanEm", "maxEm", "adpFm", "meanFm",
                                       "maxFm"]
    assert js["evaluated_frames"] == {"a": ["00001", "00002", "00003"], "b": ["00001", "00002"]}
    assert set(js["per_image"]) == {"a/00001", "a/00002", "a/00003", "b/00001", "b/00002"}
    per_seq = js["per_sequence"]
    assert js["metrics"]["F_mean"] == pytest.approx((per_seq["a"]["F_mean"] + per_seq["b"]["F_mean"]) / 2)
    assert js["per_sequence"]["a"]["J_decay"] > 0  # the prediction drifts away over time
    printed = capsys.readouterr().out
    assert "vos protocol, 2 sequences, 5 evaluated frames" in printed
    tool.main(["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--protocol", "vos", "--no-vsod",
                  "--output", str(out)])
    assert list(json.loads(out.read_text())["metrics"]) == list(js["metrics"])[:7]
