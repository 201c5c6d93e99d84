"""Rendering (`focus.utils.visualizer`) and atomic PNG writes (`focus.utils.file_io`)."""
import os

import numpy as np
import pytest
from PIL import Image

from focus.utils.file_io import write_png
from focus.utils.visualizer import (
    OUTPUT_KINDS,
    composite_on,
    make_checkerboard,
    make_overlay,
    render_image,
    render_video_frame,
    soft_to_uint8,
)


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_soft_to_uint8_rounds_and_clips():
    p = np.array([[0.0, 1.0, 0.25, -0.1, 1.2, 0.5 / 255 + 1e-6, 0.2]], np.float32)
    np.testing.assert_array_equal(soft_to_uint8(p), [[0, 255, 64, 0, 255, 1, 51]])


def test_render_kinds_modes_and_values():
    image = _image(12, 16)
    mask = np.zeros((12, 16), np.uint8)
    mask[3:9, 4:12] = 1
    soft = mask * 0.8 + 0.1
    pred = {"mask": mask, "soft": soft.astype(np.float32)}
    m, s, c, o = (render_image(k, image, pred) for k in OUTPUT_KINDS)
    np.testing.assert_array_equal(m, mask * 255)
    np.testing.assert_array_equal(s, np.where(mask > 0, 230, 26))  # round(0.9*255)=230, round(0.1*255)=26
    assert c.shape == (12, 16, 4)
    np.testing.assert_array_equal(c[:, :, :3], image)
    np.testing.assert_array_equal(c[:, :, 3], s)
    assert o.shape == (12, 16, 3)
    outside = np.ones_like(mask, bool)
    outside[2:10, 3:13] = False  # pixels away from the contour are untouched
    np.testing.assert_array_equal(o[outside], image[outside])
    inside = np.zeros_like(mask, bool)
    inside[5:7, 6:10] = True  # interior: 50/50 blend with the overlay colour
    blend = np.rint(image[inside] * 0.5 + np.array([255, 40, 40]) * 0.5)
    np.testing.assert_array_equal(o[inside], blend.astype(np.uint8))
    for kind in OUTPUT_KINDS:
        frame = render_video_frame(kind, image, pred)
        assert frame.shape == (12, 16, 3) and frame.dtype == np.uint8
    with pytest.raises(ValueError, match="unknown output kind"):
        render_image("depth", image, pred)


def test_overlay_draws_a_contour():
    image = np.zeros((40, 40, 3), np.uint8)
    mask = np.zeros((40, 40), np.uint8)
    mask[10:30, 10:30] = 1
    out = make_overlay(image, mask, color=(0, 255, 0), alpha=0.0, contour_thickness=1)
    assert (out[10, 10:30] == [0, 255, 0]).all() and (out[20, 20] == 0).all()


def test_composite_on_checkerboard():
    board = make_checkerboard(4, 40, cell=16)
    assert board[0, 0, 0] == 204 and board[0, 16, 0] == 153 and board[0, 32, 0] == 204
    rgba = np.zeros((4, 40, 4), np.uint8)
    rgba[..., :3] = 100
    rgba[:, :20, 3] = 255
    out = composite_on(rgba, board)
    assert (out[:, :20] == 100).all()
    np.testing.assert_array_equal(out[:, 20:], board[:, 20:])


@pytest.mark.parametrize("shape,mode", [((9, 7), "L"), ((9, 7, 3), "RGB"), ((9, 7, 4), "RGBA")])
def test_write_png_round_trip(tmp_path, shape, mode):
    array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    path = tmp_path / "sub" / "x.png"
    write_png(str(path), array)
    with Image.open(path) as im:
        assert im.mode == mode
        np.testing.assert_array_equal(np.asarray(im), array)
    assert os.listdir(path.parent) == ["x.png"]


def test_write_png_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "x.png"
    write_png(str(path), np.zeros((4, 4), np.uint8))
    before = path.read_bytes()

    def killed(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_png(str(path), np.full((4, 4), 255, np.uint8))
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["x.png"]
    with pytest.raises(ValueError, match="uint8"):
        write_png(str(path), np.zeros((4, 4), np.float32))
