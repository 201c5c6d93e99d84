"""Sparse labels: S-COD scribble reading and its checks, point lists, name matching, the seeded generator."""
import json

import numpy as np
import pytest
from PIL import Image

from focus.data import ensure_registered
from focus.data.sparse import (
    load_sparse_dataset,
    make_clicks,
    make_scribbles,
    points_to_sparse,
    read_scribble,
    read_sparse,
    scribble_to_sparse,
    sparse_to_scribble,
)



def _disk(h=60, w=80):
    yy, xx = np.mgrid[:h, :w]
    return (yy - 30) ** 2 + (xx - 40) ** 2 < 18**2


def test_read_scribble_values_and_errors(tmp_path):
    s = np.zeros((4, 5), np.uint8)
    s[1, 1], s[2, 3] = 1, 2
    Image.fromarray(s).save(tmp_path / "a.png")
    assert np.array_equal(read_scribble(tmp_path / "a.png"), s)
    sp = scribble_to_sparse(s)
    assert sp[1, 1] == 1 and sp[2, 3] == 0 and (sp == -1).sum() == 18
    assert np.array_equal(sparse_to_scribble(sp), s)
    s[0, 0] = 255
    Image.fromarray(s).save(tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"bad\.png.*\[255\]"):
        read_scribble(tmp_path / "bad.png")
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="rgb.png.*mode RGB"):
        read_scribble(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="a.png.*5x4 but its image is 6x4"):
        read_sparse(tmp_path / "a.png", shape=(4, 6))


def test_points(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({"points": [[1, 2, 1], [4, 0, 0]]}))
    sp = read_sparse(tmp_path / "p.json", shape=(3, 5))
    expected = np.full((3, 5), -1)
    expected[2, 1], expected[0, 4] = 1, 0
    assert np.array_equal(sp, expected)
    assert (points_to_sparse([[2, 2]], [1], (5, 5), radius=1) == 1).sum() == 5
    with pytest.raises(ValueError, match="p.json.*outside"):
        read_sparse(tmp_path / "p.json", shape=(2, 5))
    (tmp_path / "q.json").write_text(json.dumps({"points": [[1, 2, 3]]}))
    with pytest.raises(ValueError, match="q.json.*labels"):
        read_sparse(tmp_path / "q.json", shape=(3, 5))


def test_matching_by_name_never_shifts(tmp_path):
    img, scr, pseudo = tmp_path / "img", tmp_path / "scr", tmp_path / "pl"
    for d in (img, scr, pseudo / "pseudo"):
        d.mkdir(parents=True)
    for i, stem in enumerate(["a", "b", "c", "d"]):
        Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(img / f"{stem}.jpg")
        if stem != "b":  # b has no scribble: c must keep its own
            Image.fromarray(np.full((4, 4), i % 3, np.uint8)).save(scr / f"{stem}.png")
        Image.fromarray(np.full((4, 4), 10 * i, np.uint8)).save(pseudo / "pseudo" / f"{stem}.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(scr / "zz.png")  # no image
    dicts = load_sparse_dataset("t", img, scr)
    assert [d["image_id"] for d in dicts] == ["a", "c", "d"]
    assert all(d["sparse_file_name"].endswith(d["image_id"] + ".png") for d in dicts)
    (pseudo / "selected.txt").write_text("c.png\nd\n")
    dicts = load_sparse_dataset("t", img, scr, pseudo)
    assert [d["image_id"] for d in dicts] == ["c", "d"]
    assert dicts[0]["sem_seg_file_name"].endswith("pseudo/c.png")
    name = ensure_registered(f"weak:{img}:{scr}:{pseudo}")
    from detectron2.data import DatasetCatalog

    assert len(DatasetCatalog.get(name)) == 2


def test_generated_scribbles_inside_regions_and_seeded():
    mask = _disk()
    s = make_scribbles(mask, seed=3)
    assert set(np.unique(s)) == {0, 1, 2}
    assert mask[s == 1].all() and not mask[s == 2].any()
    assert np.array_equal(s, make_scribbles(mask, seed=3))
    assert not np.array_equal(s, make_scribbles(mask, seed=4))
    assert set(np.unique(make_scribbles(np.zeros((10, 10), bool)))) == {0, 2}  # empty mask: background only


def test_generated_clicks():
    mask = _disk()
    xy, labels = make_clicks(mask, seed=0, num_fg=3, num_bg=2)
    assert labels.tolist() == [1, 1, 1, 0, 0]
    assert tuple(xy[0]) == (40, 30)  # the centre: farthest from the boundary
    rc = xy[:, ::-1].astype(int)
    assert mask[rc[:3, 0], rc[:3, 1]].all() and not mask[rc[3:, 0], rc[3:, 1]].any()
    assert np.array_equal(xy, make_clicks(mask, seed=0, num_fg=3, num_bg=2)[0])


def test_make_sparse_labels_tool(tmp_path, load_tool):
    Image.fromarray((_disk() * 255).astype(np.uint8)).save(tmp_path / "m.png")
    tool = load_tool("make_sparse_labels")
    for kind in ("scribble", "points"):
        assert tool.main(["--masks", str(tmp_path), "--out", str(tmp_path / kind), "--kind", kind]) == 0
    assert read_scribble(tmp_path / "scribble" / "m.png").max() == 2
    assert len(json.loads((tmp_path / "points" / "m.json").read_text())["points"]) == 2
