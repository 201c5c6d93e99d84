"""The ``vos`` protocol: DAVIS-2016 J and F against the official evaluation's numbers, a shifted disc by hand,
the decay bins, and the evaluator (grouping frames by sequence) agreeing with the folder path."""
import json
import math

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog

from focus.data.catalog import register_video_dataset
from focus.evaluation import FocusEvaluator, score_video_folder
from focus.evaluation.folder import binarize_vos
from focus.evaluation.metrics import VOS_METRICS, davis_f, davis_j, davis_statistics, seg2bmap, standard_metric_names

pytestmark = pytest.mark.filterwarnings("ignore:This class will be removed")


@pytest.fixture(scope="module")
def golden(shared_reference, shared_data):
    root = shared_reference / "fsnet" / "eval_golden"
    if not (root / "metrics.json").is_file():
        pytest.skip(f"{root} has no metrics.json")
    return root, json.loads((root / "metrics.json").read_text()), shared_data / "vos" / "DAVIS2016-sample"


@pytest.mark.parametrize("method", ["m1_light", "m2_heavy"])
def test_equals_official_davis2016(golden, method):
    """Per frame, per sequence (mean, recall, decay) and dataset means of the official DAVIS-2016 code, 1e-6
    (the first frame is all-zero and the last all-255 on purpose: they must be left out)."""
    root, ref, gt_root = golden
    res = score_video_folder(root / "preds" / method, gt_root, vsod=False)
    ref = ref["methods"][method]
    assert res["missing"] == [] and res["num_sequences"] == 3
    for seq, r in ref["per_sequence"].items():
        assert res["evaluated_frames"][seq] == r["evaluated_frames"]
        for m in ("J", "F"):
            got = [res["per_image"][f"{seq}/{f}"][m] for f in r["evaluated_frames"]]
            np.testing.assert_allclose(got, r[m]["per_frame"], rtol=0, atol=1e-6)
            for stat in ("mean", "recall", "decay"):
                assert abs(res["per_sequence"][seq][f"{m}_{stat}"] - r[m][stat]) <= 1e-6, (seq, m, stat)
    assert list(res["metrics"]) == list(VOS_METRICS)
    for k in VOS_METRICS:
        assert abs(res["metrics"][k] - ref["dataset"][k]) <= 1e-6, k


def _disc(shape, cx, cy, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r ** 2


def test_shifted_disc_by_hand():
    """A disc of radius R = 10 in 100x100 frames, 6 frames; the prediction is the GT disc shifted right by
    (-, 0, 1, 30, 0, -) pixels (frames 0 and 5 are garbage: never evaluated).

    J of a 1-pixel shift: row y of the disc spans 2·w_y + 1 pixels (w_y = floor(sqrt(R² - y²))) and overlaps
    its shifted copy on 2·w_y pixels, so |P ∩ G| = |G| - 21 (21 rows) and J = (|G| - 21) / (|G| + 21).
    A 30-pixel shift separates the discs: J = 0. F: bound_pix = ceil(0.008 · sqrt(100² + 100²)) = 2; a shifted
    boundary lies 1 pixel from the GT's (P = R = 1, F = 1) and 30 pixels away for the big shift (F = 0).
    Per sequence (m = 4 evaluated values v0..v3): ids = round(linspace(1, 4, 5)) - 1 = [0, 1, 2, 2, 3] (2.5
    rounds up), first bin v0..v1, last bin v2..v3: decay = (v0 + v1)/2 - (v2 + v3)/2.
    """
    r, shape = 10, (100, 100)
    area = sum(2 * math.isqrt(r * r - y * y) + 1 for y in range(-r, r + 1))
    assert area == int(_disc(shape, 40, 50, r).sum()) == 317
    j1 = (area - 21) / (area + 21)
    gt = _disc(shape, 40, 50, r)
    shifts = [None, 0, 1, 30, 0, None]
    preds = [np.zeros(shape, bool) if s is None else _disc(shape, 40 + s, 50, r) for s in shifts]
    assert davis_j(preds[2], gt) == pytest.approx(j1, abs=1e-15)
    assert [davis_f(p, gt) for p in preds[1:5]] == [1.0, 1.0, 0.0, 1.0]
    j = [davis_j(p, gt) for p in preds[1:5]]
    assert j == pytest.approx([1.0, j1, 0.0, 1.0], abs=1e-15)
    mean, recall, decay = davis_statistics(j)
    assert mean == pytest.approx((2 + j1) / 4) and recall == 0.75 and decay == pytest.approx(j1 / 2)
    assert davis_statistics([1.0, 1.0, 0.0, 1.0]) == pytest.approx((0.75, 0.75, 0.5))


def test_seg2bmap_and_empty_conventions():
    """Boundary pixels: those differing from the east/south/south-east neighbour; the bottom-right never."""
    seg = np.zeros((5, 6), bool)
    seg[1:3, 1:4] = True
    b = seg2bmap(seg)
    expected = np.zeros_like(seg)
    expected[0, 0:4] = True  # south / south-east neighbour inside
    expected[1:3, 0] = True
    expected[1, 3] = expected[2, 3] = True  # east neighbour outside
    expected[2, 1:3] = True  # south neighbour outside
    assert (b == expected).all()
    assert not seg2bmap(np.ones((4, 4), bool)).any()
    empty, full = np.zeros((20, 20), bool), _disc((20, 20), 10, 10, 5)
    assert davis_j(empty, empty) == 1.0 and davis_f(empty, empty) == 1.0
    assert davis_f(empty, full) == 0.0 and davis_f(full, empty) == 0.0


def test_decay_bins_uint8_quirk():
    """The official bin boundaries are cast to uint8: beyond 256 evaluated frames they wrap
    (docs/evaluation.md#vos-decay); `uint8_ids=False` (TEST.VOS_EXACT_DECAY_BINS) keeps them exact."""
    v = np.r_[np.ones(150), np.zeros(150)]  # 300 frames: quality drops half-way
    exact = davis_statistics(v, uint8_ids=False)[2]
    assert exact == pytest.approx(1.0)  # bins 0..75 (all 1) and 224..299 (all 0)
    assert davis_statistics(v)[2] != pytest.approx(exact)
    short = np.linspace(1, 0, 50)
    assert davis_statistics(short) == davis_statistics(short, uint8_ids=False)


def test_binarize_vos():
    assert binarize_vos(np.array([[0, 1]], np.uint8)).tolist() == [[False, True]]  # 0/1 masks
    assert binarize_vos(np.array([[0, 255]], np.uint8)).tolist() == [[False, True]]
    assert binarize_vos(np.array([[0, 100, 128, 129]], np.uint8)).tolist() == [[False, False, False, True]]


@pytest.fixture()
def video(tmp_path):
    """Two sequences (5 and 4 frames) in the <root>/<seq>/{frames,masks} layout, soft outputs, their PNGs."""
    rng = np.random.default_rng(0)
    root, preds = tmp_path / "vid", tmp_path / "pred"
    outputs = {}
    for seq, n in (("bear", 5), ("car", 4)):
        for d in (root / seq / "frames", root / seq / "masks", preds / seq):
            d.mkdir(parents=True)
        for t in range(n):
            gt = _disc((48, 64), 20 + 3 * t, 24, 9 + (seq == "car")) * np.uint8(255)
            soft = np.clip(cv2.GaussianBlur(np.roll(gt, t, axis=1).astype(np.float64), (0, 0), 2)
                           + rng.normal(0, 25, gt.shape), 0, 255)
            k = np.round(soft).astype(np.uint8)
            k[k == 128] = 127  # mask (p > 0.5) and the folder's binarisation (> 128) then agree
            cv2.imwrite(str(root / seq / "frames" / f"{t:05d}.jpg"), np.zeros((48, 64, 3), np.uint8))
            cv2.imwrite(str(root / seq / "masks" / f"{t:05d}.png"), gt)
            cv2.imwrite(str(preds / seq / f"{t:05d}.png"), k)
            fg = torch.from_numpy(k.astype(np.float32) / 255)
            outputs[(seq, f"{t:05d}")] = {"foreground": fg, "mask": (fg > 0.5).to(torch.uint8)}
    return root, preds, outputs


def test_evaluator_vos_equals_folder(video, tmp_path, capsys):
    """`train_net --eval-only` path == `evaluate_folder --protocol vos`: frames grouped by `sequence`, the
    first and last frame of each sequence left out, V-SOD metrics averaged per sequence then over sequences."""
    root, preds, outputs = video
    name = register_video_dataset("vos_eval_test", root, overwrite=True)
    ev = FocusEvaluator(name, output_dir=str(tmp_path / "out"), protocol="vos")
    ev.reset()
    for d in DatasetCatalog.get(name):
        ev.process([d], [outputs[(d["sequence"], d["file_name"].rsplit("/", 1)[1][:-4])]])
    res = ev.evaluate()[name]
    ref = score_video_folder(preds, root)
    names = list(VOS_METRICS) + list(standard_metric_names("vos"))
    assert list(res) == names == ref["metric_names"]
    for k in names:
        assert res[k] == pytest.approx(ref["metrics"][k], abs=1e-12), k
    assert ref["evaluated_frames"] == {"bear": ["00001", "00002", "00003"], "car": ["00001", "00002"]}
    js = json.loads((tmp_path / "out" / "vos_eval_test_vos.json").read_text())
    assert set(js["per_sequence"]) == {"bear", "car"} and js["num_images"] == 5
    assert js["metrics"]["J_mean"] == pytest.approx(np.mean([js["per_sequence"][s]["J_mean"] for s in ("bear", "car")]))
    assert (tmp_path / "out" / "vos_eval_test_vos_per_sequence.csv").read_text().startswith("sequence,J_mean")
    assert "vos protocol (2 sequences, 5 frames)" in capsys.readouterr().out
    # resume: every frame is done
    ev2 = FocusEvaluator(name, output_dir=str(tmp_path / "out"), protocol="vos")
    ev2.reset()
    assert all(ev2.is_done(d) for d in DatasetCatalog.get(name))


def test_evaluator_groups_by_parent_folder(video):
    """Dicts without `sequence` (another registration) are grouped by the frame's parent folder (here
    ``<sequence>/frames/``: the grandparent); an output without `foreground` is scored on its `mask` alone."""
    root, preds, outputs = video
    dicts = [{"file_name": str(root / seq / "frames" / f"{f}.jpg"), "sem_seg_file_name": str(root / seq / "masks" /
              f"{f}.png"), "image_id": f"{seq}_{f}", "height": 48, "width": 64} for seq, f in sorted(outputs)]
    name = "vos_eval_test_nosequence"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(task="vos")
    ev = FocusEvaluator(name, protocol="vos")
    ev.reset()
    for d in dicts:
        out = outputs[(d["file_name"].split("/")[-3], d["file_name"][-9:-4])]
        ev.process([d], [{"foreground": out["foreground"], "mask": out["mask"][None]}])
    res = ev.evaluate()[name]
    ref = score_video_folder(preds, root)["metrics"]
    for k in VOS_METRICS:
        assert res[k] == pytest.approx(ref[k], abs=1e-12), k
    ev.reset()
    for d in dicts:
        out = outputs[(d["file_name"].split("/")[-3], d["file_name"][-9:-4])]
        ev.process([d], [{"mask": out["mask"]}])
    res = ev.evaluate()[name]
    assert res["J_mean"] == pytest.approx(ref["J_mean"], abs=1e-12)
    assert res["MAE"] == pytest.approx(np.mean([ev._records["vos"][f"{s}/{f}"]["MAE"] for s, f in
                                                (("bear", "00001"), ("bear", "00002"), ("bear", "00003"))]) / 2
                                       + np.mean([ev._records["vos"][f"car/0000{i}"]["MAE"] for i in (1, 2)]) / 2)
