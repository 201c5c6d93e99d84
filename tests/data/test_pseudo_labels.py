"""Pseudo labelling: views and their exact inverses, prompts, the ensemble, weights and selection against hand
computations, SAM through segment-anything (tiny random model), and tools/make_pseudo_labels.py end to end."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from focus.data.pseudo_labels import (
    GrabCutSegmenter,
    View,
    build_views,
    entropy_bits,
    entropy_weights,
    image_score,
    prompts_from_sparse,
    pseudo_label,
)



@pytest.mark.parametrize("view", build_views(scales=(1.0,)) + [View("h", 1, 2.0), View("v", 3, 2.0), View("none", 2, 0.5)])
def test_view_points_follow_the_image_and_masks_invert_exactly(view):
    h, w = 12, 20
    img = np.zeros((h, w), np.float32)
    pts = np.array([[3, 4], [17, 9], [0, 0]], np.float64)
    aug_pts = view.apply_points(pts, (h, w))
    for (x, y), (ax, ay) in zip(pts.astype(int), aug_pts):
        one = img.copy()
        one[y, x] = 1
        aug = view.apply_image(one)
        if view.scale == 1.0:
            assert aug[int(round(ay)), int(round(ax))] == 1
        elif view.scale > 1:  # upsampled: the brightest pixels surround the mapped point
            rr, cc = np.nonzero(aug == aug.max())
            assert np.abs(rr - ay).max() <= 0.5 and np.abs(cc - ax).max() <= 0.5
    rng = np.random.default_rng(0)
    mask = rng.random((h, w)) > 0.5
    if view.scale == 1.0:
        assert np.array_equal(view.invert_mask(view.apply_image(mask.astype(np.float32)), (h, w)), mask)
    else:  # a blocky mask survives the down/up resizing exactly
        block = np.kron(rng.random((3, 5)) > 0.5, np.ones((4, 4))).astype(np.float32)
        assert np.array_equal(view.invert_mask(view.apply_image(block) > 0.5, (h, w)), block)


def test_default_views():
    views = build_views()
    assert len(views) == 12 and views[0] == View()
    with pytest.raises(ValueError, match="multiples of 90"):
        build_views(rotations=(45,))


def test_prompts_from_sparse():
    sparse = np.full((5, 6), -1)
    sparse[1, 1:4] = 1
    sparse[4, 5] = 0
    xy, labels = prompts_from_sparse(sparse, num_points=10, num_negative=1, seed=0)
    assert sorted(map(tuple, xy[labels == 1].astype(int))) == [(1, 1), (2, 1), (3, 1)]  # fewer than 10: all
    assert xy[labels == 0].tolist() == [[5, 4]]
    xy2, _ = prompts_from_sparse(sparse, num_points=2, seed=0)
    assert len(xy2) == 2 and np.array_equal(xy2, prompts_from_sparse(sparse, num_points=2, seed=0)[0])
    assert len(prompts_from_sparse(np.full((3, 3), -1))[0]) == 0


class _FirstColumn:
    """A segmenter (a function of its input, as a real one is) that predicts a fixed mask of the original frame and
    also marks the first column of whatever view it is shown: that column lands on a different border of the
    original for different views, so the views disagree on known pixels."""

    def __init__(self, base, views):
        self.base, self.views, self.calls = base, views, []

    def __call__(self, image, xy, labels):
        self.calls.append((image.shape, xy.copy()))
        view = next(v for v in self.views if np.array_equal(v.apply_image(self.image), image))
        m = view.apply_image(self.base.astype(np.float32)) > 0.5
        m[:, 0] = True
        return m


def test_ensemble_weights_and_score_by_hand():
    """Column 0 of a view is, in the original: column 0 for (none, 0), (h, 180), (v, 0); column W-1 for (none, 180),
    (h, 0), (v, 180); row 0 for (none, 90), (h, 90), (v, 270); row H-1 for (none, 270), (h, 270), (v, 90). So every
    border pixel gets 3/12, every corner 6/12; (v, r) is (h, r + 180): 8 distinct views, 8 segmenter calls."""
    h, w = 6, 8
    base = np.zeros((h, w), bool)
    base[2:4, 3:6] = True
    views = build_views()
    seg = _FirstColumn(base, views)
    seg.image = image = np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)  # no view coincides by chance
    y, masks = pseudo_label(image, np.array([[4.0, 2.0]]), np.array([1]), seg, views)
    assert masks.shape == (12, h, w) and len(seg.calls) == 8
    expected = base.astype(np.float32)
    expected[[0, -1], :] = expected[:, [0, -1]] = 3 / 12
    expected[[0, 0, -1, -1], [0, -1, 0, -1]] = 6 / 12
    np.testing.assert_allclose(y, expected)
    h_border = -(0.25 * np.log2(0.25) + 0.75 * np.log2(0.75))  # 0.8113 bit
    np.testing.assert_allclose(entropy_bits(y)[0, 1:-1], h_border, atol=1e-6)
    np.testing.assert_allclose(entropy_weights(y)[0, 1:-1], 1 - h_border, atol=1e-6)
    assert abs(entropy_weights(y)[0, 0]) < 1e-6 and entropy_weights(y)[1, 1] == 1  # corner: an even split
    n_border = 2 * (h - 2) + 2 * (w - 2)
    assert abs(image_score(y) - (4 * 1.0 + n_border * h_border) / (h * w)) < 1e-6
    assert seg.calls[0][1].tolist() == [[4.0, 2.0]]  # the identity view got the point unchanged


def test_views_resume_from_a_store(tmp_path):
    """An image interrupted half way: the masks already in the store are not recomputed, and the result is the
    same as in one go."""
    from focus.data.pseudo_labels import MaskStore

    h, w = 6, 8
    base = np.zeros((h, w), bool)
    base[2:4, 3:6] = True
    views = build_views()
    image = np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)
    xy = np.array([[4.0, 2.0]])
    seg = _FirstColumn(base, views)
    seg.image = image
    y_once, _ = pseudo_label(image, xy, np.array([1]), seg, views)
    store = MaskStore(tmp_path / "partial")
    seg2 = _FirstColumn(base, views)
    seg2.image = image
    pseudo_label(image, xy, np.array([1]), seg2, views[:5], store)  # "interrupted" after 5 (distinct) views
    assert len(seg2.calls) == 5 and len(list((tmp_path / "partial").glob("*.png"))) == 5
    seg3 = _FirstColumn(base, views)
    seg3.image = image
    y_resumed, _ = pseudo_label(image, xy, np.array([1]), seg3, views, store)
    assert len(seg3.calls) == 3  # only the 3 distinct views not stored yet
    np.testing.assert_array_equal(y_resumed, y_once)
    store.clear()
    assert not (tmp_path / "partial").exists()


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_sam_segmenter_tiny_random(single_thread, dtype):
    pytest.importorskip("segment_anything")
    from focus.data.pseudo_labels import SamSegmenter, build_tiny_sam

    seg = SamSegmenter(build_tiny_sam(), dtype=dtype)
    encoded = []
    qkv = seg.predictor.model.image_encoder.blocks[0].attn.qkv  # the encoder's matmuls (its output is a LayerNorm's)
    qkv.register_forward_hook(lambda m, i, o: encoded.append(o.dtype))
    img = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    m1 = seg(img, np.array([[10.0, 20.0]]), np.array([1]))
    m2 = seg(img, np.array([[10.0, 20.0], [30.0, 5.0]]), np.array([1, 0]))
    assert m1.shape == m2.shape == (40, 60) and m1.dtype == bool
    assert len(encoded) == 1  # the second prompt on the same image reuses its embedding
    assert encoded[0] == {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    assert seg.predictor.features.dtype == torch.float32  # the decoder always runs in fp32
    seg(img[::-1].copy(), np.array([[10.0, 20.0]]), np.array([1]))
    assert len(encoded) == 2


def test_grabcut_stand_in_finds_a_bright_disk():
    yy, xx = np.mgrid[:80, :100]
    disk = (yy - 40) ** 2 + (xx - 50) ** 2 < 20**2
    rng = np.random.default_rng(0)
    img = rng.integers(0, 60, (80, 100, 3)).astype(np.uint8)
    img[disk] = rng.integers(180, 255, (disk.sum(), 3))
    m = GrabCutSegmenter()(img, np.array([[50.0, 40.0], [45.0, 35.0]]), np.array([1, 1]))
    assert (m & disk).sum() / (m | disk).sum() > 0.8


def _dataset(root):
    from focus.data.sparse import make_scribbles

    (root / "img").mkdir()
    (root / "scr").mkdir()
    yy, xx = np.mgrid[:48, :64]
    for i in range(3):
        disk = (yy - 24) ** 2 + (xx - 20 - 10 * i) ** 2 < 12**2
        img = np.full((48, 64, 3), 30, np.uint8)
        img[disk] = 220
        Image.fromarray(img).save(root / "img" / f"a{i}.png")
        scr = make_scribbles(disk, seed=i) if i < 2 else np.zeros((48, 64), np.uint8)  # a2: nothing labelled
        Image.fromarray(scr).save(root / "scr" / f"a{i}.png")
    return root / "img", root / "scr"


@pytest.fixture(scope="module")
def tool(load_tool):
    return load_tool("make_pseudo_labels")


def test_tool_end_to_end_tiny_sam_and_resume(tmp_path, tool, single_thread):
    pytest.importorskip("segment_anything")
    images, sparse = _dataset(tmp_path)
    out = tmp_path / "out"
    args = ["--images", str(images), "--sparse", str(sparse), "--out", str(out), "--no-progress",
            "PSEUDO_LABELS.SAM_TYPE", "tiny", "PSEUDO_LABELS.RANDOM_WEIGHTS", "True",
            "PSEUDO_LABELS.ROTATIONS", "[0, 90]", "PSEUDO_LABELS.FLIPS", "['none', 'h']", "PSEUDO_LABELS.SELECT_THRESHOLD", "1.01"]
    assert tool.main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 3 and summary["no_foreground_label"] == 1 and summary["kept"] == 2
    assert summary["views"] == 4 and summary["computed_this_run"] == 3
    assert (out / "selected.txt").read_text().split() == ["a0", "a1"]
    y = np.asarray(Image.open(out / "pseudo" / "a0.png"))
    assert y.shape == (48, 64) and set(np.unique(y)) <= {0, 64, 128, 191, 255}  # k/4 of 4 views, rounded
    assert tool.main(args) == 0
    assert json.loads((out / "summary.json").read_text())["computed_this_run"] == 0  # resumed: nothing redone


def test_tool_sam2_tiny_random_and_bf16(tmp_path, tool, single_thread):
    """The SAM 2 path end to end (a tiny random SAM 2, no download), its encoder under bf16 autocast."""
    pytest.importorskip("sam2")
    images, sparse = _dataset(tmp_path)
    out = tmp_path / "out"
    assert tool.main(["--images", str(images), "--sparse", str(sparse), "--out", str(out), "--no-progress",
                      "--dtype", "bf16", "--limit", "1", "PSEUDO_LABELS.SEGMENTER", "sam2", "PSEUDO_LABELS.SAM_TYPE", "tiny",
                      "PSEUDO_LABELS.RANDOM_WEIGHTS", "True", "PSEUDO_LABELS.ROTATIONS", "[0, 90]",
                      "PSEUDO_LABELS.FLIPS", "['none']", "PSEUDO_LABELS.SELECT_THRESHOLD", "1.01"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["segmenter"] == "sam2:tiny:bf16" and summary["views"] == 2 and summary["kept"] == 1
    y = np.asarray(Image.open(out / "pseudo" / "a0.png"))
    assert y.shape == (48, 64) and set(np.unique(y)) <= {0, 128, 255}
    assert not any((out / "partial").rglob("*.png"))  # per-view masks removed once the image is done


def test_tool_needs_weights(tmp_path, tool):
    images, sparse = _dataset(tmp_path)
    with pytest.raises(SystemExit, match="PSEUDO_LABELS.CHECKPOINT"):
        tool.main(["--images", str(images), "--sparse", str(sparse), "--out", str(tmp_path / "o"), "--no-progress"])


def test_tool_selection_by_hand(tmp_path, tool, monkeypatch):
    """a0: the 4 views agree (score 0, kept); a1: the views also mark the augmented image's first column, which
    lands on 4 different borders of the original: row 0 in 2 views, column 0 and column W-1 in one each."""
    images, sparse = _dataset(tmp_path)
    calls = []

    def segmenter(image, xy, labels):
        calls.append(1)
        m = image[..., 0] > 128
        if len(calls) > 4:  # second image (stems are processed in order; a2 has no foreground label)
            m = m.copy()
            m[:, 0] = True
        return m

    monkeypatch.setattr(tool, "build_segmenter", lambda p: segmenter)
    args = ["--images", str(images), "--sparse", str(sparse), "--out", str(tmp_path / "o"), "--no-progress",
            "PSEUDO_LABELS.ROTATIONS", "[0, 90]", "PSEUDO_LABELS.FLIPS", "['none', 'h']",
            "PSEUDO_LABELS.SELECT_THRESHOLD", "0.03"]
    assert tool.main(args) == 0
    h_quarter = -(0.25 * np.log2(0.25) + 0.75 * np.log2(0.75))
    expected = (62 * 1.0 + (2 + 2 * 47) * h_quarter) / (48 * 64)  # 0.0455 bit
    scores = {r.split("\t")[0]: r.split("\t")[1] for r in (tmp_path / "o/scores.tsv").read_text().splitlines()[1:]}
    assert float(scores["a0"]) == 0 and abs(float(scores["a1"]) - expected) < 1e-5
    assert (tmp_path / "o/selected.txt").read_text().split() == ["a0"]
    y = np.asarray(Image.open(tmp_path / "o/pseudo/a1.png"))
    assert y[0, 5] == 128 and y[5, 0] == 64 and y[5, 63] == 64 and y[0, 0] == 191
