"""Pseudo labelling: views and their exact inverses, prompts, the ensemble, weights and selection against hand
computations, SAM through segment-anything (tiny random model), and tools/make_pseudo_labels.py end to end."""
import json

import numpy as np
import pytest
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


class _Disagreeing:
    """Predicts a fixed mask in the *original* frame, except that on horizontally flipped views it also marks the
    pixel column 0 of the original (so views disagree on known pixels)."""

    def __init__(self, base, view_of):
        self.base, self.view_of, self.calls = base, view_of, []

    def __call__(self, image, xy, labels):
        view = self.view_of[len(self.calls)]
        self.calls.append((image.shape, xy.copy()))
        m = self.base.copy()
        if view.flip == "h":
            m[:, 0] = True
        return view.apply_image(m.astype(np.float32)) > 0.5


def test_ensemble_weights_and_score_by_hand():
    h, w = 6, 8
    base = np.zeros((h, w), bool)
    base[2:4, 3:6] = True
    views = build_views()
    seg = _Disagreeing(base, views)
    image = np.zeros((h, w, 3), np.uint8)
    y, masks = pseudo_label(image, np.array([[4.0, 2.0]]), np.array([1]), seg, views)
    assert masks.shape == (12, h, w)
    expected = base.astype(np.float32)
    expected[:, 0] = 4 / 12  # 4 of the 12 views are horizontally flipped
    np.testing.assert_allclose(y, expected)
    h_col = -(1 / 3 * np.log2(1 / 3) + 2 / 3 * np.log2(2 / 3))  # 0.9183 bit
    np.testing.assert_allclose(entropy_bits(y)[:, 0], h_col, atol=1e-6)
    np.testing.assert_allclose(entropy_weights(y)[:, 0], 1 - h_col, atol=1e-6)
    assert entropy_weights(y)[0, 1] == 1
    assert abs(image_score(y) - h * h_col / (h * w)) < 1e-6
    # the prompt went through each view's map: the identity view got the point unchanged
    assert seg.calls[0][1].tolist() == [[4.0, 2.0]]


def test_sam_segmenter_tiny_random(single_thread):
    pytest.importorskip("segment_anything")
    from focus.data.pseudo_labels import SamSegmenter, build_tiny_sam

    seg = SamSegmenter(build_tiny_sam())
    img = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    m1 = seg(img, np.array([[10.0, 20.0]]), np.array([1]))
    m2 = seg(img, np.array([[10.0, 20.0], [30.0, 5.0]]), np.array([1, 0]))
    assert m1.shape == m2.shape == (40, 60) and m1.dtype == bool


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
